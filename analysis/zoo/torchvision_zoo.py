"""torchvision's pretrained weights, by their enum name (``IMAGENET1K_V2``, ``DEFAULT``), read from
the torch hub cache under the file name torchvision itself downloads them to."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from analysis.metadata import (
    META_CLASS_IDS,
    META_CLASSES,
    META_INPUT_SIZE,
    META_MEAN,
    META_RESIZE,
    META_SOURCE,
    META_STD,
)
from analysis.resize import ResizePolicy
from analysis.zoo import Pretrained, ZooError
from analysis.zoo.caches import torch_hub_checkpoints

# ImageNet-1k's WordNet ids in class order (the sorted folder names of its training set), as
# timm ships them in timm/data/_info/imagenet_synsets.txt.
IMAGENET_1K_IDS = (Path(__file__).parent / "imagenet_1k_synsets.txt").read_text().split()
WEIGHTS_NAME = re.compile(r"[A-Z][A-Z0-9_]*")  # IMAGENET1K_V2, DEFAULT: never a file's name


def is_weights_name(text: str) -> bool:
    """Whether ``--weights`` names torchvision weights rather than a file."""
    return bool(WEIGHTS_NAME.fullmatch(text)) and not Path(text).exists()


def weights_entry(name: str, tag: str) -> Any:
    """The weights enum member ``tag`` of architecture ``name``."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name)
    except ValueError:
        raise ZooError(f"torchvision's {name} has no pretrained weights") from None
    if tag not in weights.__members__:
        known = ", ".join(weights.__members__)
        raise ZooError(f"torchvision's {name} has no weights {tag!r} (it has {known})")
    return weights[tag]


def checkpoint_file(entry: Any) -> Path:
    """Where torchvision keeps ``entry``'s file once downloaded."""
    return torch_hub_checkpoints() / Path(urlparse(entry.url).path).name


def pretrained(name: str, tag: str) -> Pretrained:
    """The weights ``tag`` of torchvision's ``name`` from the torch hub cache, with their
    preprocessing and class names."""
    entry = weights_entry(name, tag)
    path = checkpoint_file(entry)
    if not path.is_file():
        raise ZooError(
            f"torchvision's {name} weights {entry.name} are not in the torch hub cache: looked "
            f"for {path}; on a machine with internet, torchvision.models.get_model({name!r}, "
            f"weights={entry.name!r}) downloads that file, then copy it there (TORCH_HOME "
            "moves the cache)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ZooError(f"{path} is not a readable weights file: {error}".splitlines()[0]) from None
    return Pretrained(state, path, {**metadata(entry), META_SOURCE: f"torchvision {entry.name}"})


def metadata(entry: Any) -> dict[str, str]:
    """What ``entry`` says of its input (its evaluation transform) and classes."""
    found: dict[str, str] = {}
    transform = entry.transforms()
    crop, resize = getattr(transform, "crop_size", None), getattr(transform, "resize_size", None)
    if crop and resize:
        interpolation = str(getattr(transform, "interpolation", "bilinear")).rsplit(".")[-1]
        policy = ResizePolicy(
            "center-crop",
            int(resize[0]),
            "bicubic" if interpolation.lower() == "bicubic" else "bilinear",
        )
        found[META_INPUT_SIZE] = str(int(crop[0]))
        found[META_RESIZE] = policy.value
        found[META_MEAN] = ",".join(str(value) for value in transform.mean)
        found[META_STD] = ",".join(str(value) for value in transform.std)
    categories = entry.meta.get("categories")
    if categories:
        found[META_CLASSES] = json.dumps([str(name) for name in categories])
        if len(categories) == len(IMAGENET_1K_IDS):  # ImageNet-1k, in its usual sorted order
            found[META_CLASS_IDS] = json.dumps(IMAGENET_1K_IDS)
    return found
