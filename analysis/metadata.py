"""The keys under which a weights file records what the model expects and means, in its
safetensors metadata. Plain Python: the web process reads them (class names) without torch.
"""

import json

# How the model wants its input.
META_INPUT_SIZE = "neuronscope.input_size"  # "N" or "H,W"
META_INPUT_CHANNELS = "neuronscope.input_channels"  # "1" (greyscale) or "3"
META_MEAN = "neuronscope.mean"
META_STD = "neuronscope.std"
# The names of the output classes in logit order: a JSON list, or comma-separated (the demo).
META_CLASSES = "neuronscope.classes"
# The classes' ids in the same order (ImageNet's WordNet ids, "n01440764"): how a dataset whose
# folders are named by them (ImageNet's own layout) gets its labels' names.
META_CLASS_IDS = "neuronscope.class_ids"
# How an image file becomes its input, when the model says (a zoo model's evaluation transform,
# as a run's resize text: "center-crop 232", "center-crop 235 bicubic").
META_RESIZE = "neuronscope.resize"
# Where the weights came from, for people: "torchvision IMAGENET1K_V2", "timm/resnet50.a1_in1k".
META_SOURCE = "neuronscope.source"


def class_names(meta: dict[str, str] | None) -> list[str]:
    """The output classes' names in logit order, [] when the weights do not say: a JSON list
    (names may hold commas: "tench, Tinca tinca"), or the demo's comma-separated names."""
    text = (meta or {}).get(META_CLASSES, "")
    if text.startswith("["):
        try:
            names = json.loads(text)
        except ValueError:
            return []
        return [str(name) for name in names] if isinstance(names, list) else []
    return text.split(",") if text else []


def label_names(meta: dict[str, str] | None) -> dict[str, str]:
    """Class id → name ("n01440764" → "tench") where the weights name both, else {}."""
    try:
        ids = json.loads((meta or {}).get(META_CLASS_IDS, "[]"))
    except ValueError:
        return {}
    names = class_names(meta)
    if not isinstance(ids, list) or len(ids) != len(names):
        return {}
    return {str(key): name for key, name in zip(ids, names, strict=True)}
