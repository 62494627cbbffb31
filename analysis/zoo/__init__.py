"""The zoos researchers use, offline: torchvision's and timm's architectures with the pretrained
weights already in their local caches, and what those weights say about their input (size,
mean, std, resize and crop) and their classes.

Nothing is downloaded: a missing file is an error naming the file looked for, where, and how
to put it there. Weights are read without unpickling code (safetensors, or ``torch.load`` with
``weights_only=True``). timm is an optional extra, imported only when a ``timm:`` spec is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


class ZooError(ValueError):
    """A zoo model or its weights that cannot be had; the message says why, in one line."""


@dataclass
class Pretrained:
    """Weights found in a cache: the state dict, its file, and what they say (metadata keys of
    :mod:`analysis.metadata`)."""

    state: dict[str, torch.Tensor]
    path: Path
    metadata: dict[str, str] = field(default_factory=dict)
