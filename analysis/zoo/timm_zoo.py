"""timm's models by name (``resnet50``, ``convnext_tiny.fb_in22k_ft_in1k``), their pretrained
weights from the Hugging Face hub cache (``model.safetensors`` only: timm's hub repositories
hold them, and a ``pytorch_model.bin`` would be a pickle), their evaluation transform and the
names of their ImageNet classes.

A name with a pretrained tag loads those weights (an error names the file when they are not
cached); a bare architecture name has random weights, as ``torchvision:NAME`` has. Either way the
input follows the tag's configuration (timm's ``resolve_data_config``), which a user's
``--input-size``, ``--mean``, ``--std`` and ``--resize`` override.
"""

from __future__ import annotations

import json
import math
from typing import Any

from torch import nn

from analysis.metadata import (
    META_CLASS_IDS,
    META_CLASSES,
    META_INPUT_SIZE,
    META_MEAN,
    META_RESIZE,
    META_SOURCE,
    META_STD,
)
from analysis.resize import INTERPOLATIONS, ResizePolicy
from analysis.safetensors_io import SafetensorsError, load_safetensors
from analysis.zoo import Pretrained, ZooError
from analysis.zoo.caches import hf_cached_file, hf_repo_folder

WEIGHTS_FILE = "model.safetensors"


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ZooError(
            "timm is not installed: pip install -e '.[timm]' (or pip install timm)"
        ) from None
    return timm


def build(name: str) -> nn.Module:
    """timm's architecture ``name`` (a pretrained tag after a dot picks its configuration),
    with random weights."""
    timm = _timm()
    try:
        return timm.create_model(name, pretrained=False)
    except RuntimeError as error:
        architecture = name.partition(".")[0]
        raise ZooError(
            f"timm cannot build {name!r}: {str(error).splitlines()[0]} "
            f"(timm.list_models('{architecture}*', pretrained=True) lists the names)"
        ) from None


def has_tag(name: str) -> bool:
    return "." in name


def pretrained(model: nn.Module, name: str) -> Pretrained:
    """The cached weights of ``name`` (which has a tag) for ``model`` built from it."""
    config = model.pretrained_cfg
    repo = config.get("hf_hub_id")
    if not repo:
        raise ZooError(
            f"timm's {name} weights are not on the Hugging Face hub (they download from "
            f"{config.get('url') or 'nowhere timm knows'}); pass --weights FILE"
        )
    filename = config.get("hf_hub_filename") or WEIGHTS_FILE
    path = hf_cached_file(repo, filename)
    if path is None:
        raise ZooError(
            f"timm's {name} weights are not in the Hugging Face cache: looked for "
            f"{hf_repo_folder(repo)}/snapshots/*/{filename}; on a machine with internet, "
            f"timm.create_model({name!r}, pretrained=True) downloads them, then copy that "
            "models--… folder there (HF_HOME or HF_HUB_CACHE moves the cache)"
        )
    try:
        state, _ = load_safetensors(path)
    except SafetensorsError as error:
        raise ZooError(str(error)) from None
    return Pretrained(state, path, {**classes(model), META_SOURCE: repo})


def preprocessing(model: nn.Module) -> dict[str, str]:
    """Input size, mean, std and resize of ``model``'s configuration, as metadata."""
    from timm.data import resolve_data_config

    config = resolve_data_config({}, model=model)
    _channels, height, width = config["input_size"]
    interpolation = config.get("interpolation", "bilinear")
    interpolation = interpolation if interpolation in INTERPOLATIONS else "bilinear"
    if config.get("crop_mode", "center") == "squash":
        policy = ResizePolicy("whole", None, interpolation)
    else:
        crop = float(config.get("crop_pct") or 1.0)
        policy = ResizePolicy("center-crop", math.floor(min(height, width) / crop), interpolation)
    return {
        META_INPUT_SIZE: str(height) if height == width else f"{height},{width}",
        META_MEAN: ",".join(str(value) for value in config["mean"]),
        META_STD: ",".join(str(value) for value in config["std"]),
        META_RESIZE: policy.value,
    }


def classes(model: nn.Module) -> dict[str, str]:
    """The names of ``model``'s ImageNet classes (the first of each class's descriptions:
    "tench"), when its configuration says which ImageNet it was trained on."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if not subset:
        return {}
    info = ImageNetInfo(subset)
    names = [text.split(",")[0].strip() for text in info.label_descriptions()]
    if len(names) != getattr(model, "num_classes", len(names)):
        return {}
    return {META_CLASSES: json.dumps(names), META_CLASS_IDS: json.dumps(info.label_names())}
