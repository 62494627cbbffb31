"""An image described by Neuron Features (Nefesi's image decomposition).

Forward the image once, to every layer asked for; divide each channel by that neuron's dataset
maximum a_1, so 1 means "as strongly as on its best image"; at each map position keep the channel
with the highest normalised value; accept positions greedily, strongest first, while their
receptive windows overlap the windows already accepted by at most a set fraction of their area
(default 0: no overlap); paste the accepted neurons' NFs over their windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from analysis.decomposition.placement import (
    Placement,
    Window,
    greedy_placements,
    layer_outputs,
    normalise,
)
from analysis.hooks import model_device
from analysis.neuron_feature import GREY
from analysis.receptive_field import ReceptiveField


@dataclass
class LayerDecomposition:
    """A layer's accepted neurons, strongest first, and per map position the ``top`` channels
    with their normalised values (for "which neurons fire here")."""

    placements: list[Placement]
    top_channels: np.ndarray  # (H, W, n) int
    top_values: np.ndarray  # (H, W, n) float, normalised
    normalised: np.ndarray  # (C, H, W) float32: every channel's map, for heat maps


def decompose(
    model: nn.Module,
    image: torch.Tensor,
    layers: dict[str, tuple[ReceptiveField, torch.Tensor]],
    max_overlap: float = 0.0,
    top_n: int = 5,
) -> dict[str, LayerDecomposition]:
    """Decompose one normalised image (1, 3, H, W) at every layer of ``layers`` (name → its
    receptive field and its neurons' dataset maxima), from a single forward pass."""
    outputs = layer_outputs(model, image.to(model_device(model)), list(layers))
    found = {}
    for name, (field_, maxima) in layers.items():
        raw = outputs[name][0]
        scaled = normalise(raw, maxima)
        count = min(top_n, scaled.shape[0])
        values, channels = scaled.topk(count, dim=0)
        found[name] = LayerDecomposition(
            placements=greedy_placements(scaled, raw, field_, max_overlap),
            top_channels=channels.permute(1, 2, 0).cpu().numpy(),
            top_values=values.permute(1, 2, 0).clamp(min=-1e9).cpu().numpy(),
            normalised=scaled.clamp(min=0).cpu().numpy(),
        )
    return found


def paste_features(
    image: np.ndarray,
    placements: Sequence[Placement],
    features: dict[int, np.ndarray],
    reach: Window | None = None,
    *,
    stretched: bool = False,
) -> np.ndarray:
    """``image`` (H, W, 3) with each placement's NF pasted over its window, the strongest on top;
    the parts of a window outside the image are cut off. ``features`` may hold each NF over
    the part ``reach`` of its window only (as stored): the rest of the window is grey.

    ``stretched``: each NF is pasted with its contrast stretched to [0, 1], as the NF grid shows
    it. A deep neuron's NF averages many patches into a faint, nearly grey mean; pasted raw, a
    deep layer's composite is grey boxes nobody can read."""
    canvas = image.copy()
    for placement in sorted(placements, key=lambda p: p.normalised):
        feature = features.get(placement.channel)
        if feature is None:
            continue
        if stretched:
            feature = stretched_contrast(feature)
        r0, r1, c0, c1 = placement.window
        if reach is not None and feature.shape[:2] != (r1 - r0, c1 - c0):
            _paste_clipped(canvas, np.float32(GREY), placement.window)
            r0, c0 = r0 + reach[0], c0 + reach[2]
            r1, c1 = r0 + feature.shape[0], c0 + feature.shape[1]
        _paste_clipped(canvas, feature, (r0, r1, c0, c1))
    return canvas


def stretched_contrast(feature: np.ndarray) -> np.ndarray:
    """A float image mapped linearly onto [0, 1] (its minimum to 0, its maximum to 1); a flat
    one stays grey."""
    low, high = float(feature.min()), float(feature.max())
    if high <= low:
        return np.full(feature.shape, GREY, np.float32)
    return ((feature - low) / (high - low)).astype(np.float32)


def _paste_clipped(canvas: np.ndarray, patch: np.ndarray | np.float32, window: Window) -> None:
    """Write ``patch`` (the window's size, or one value) over ``window`` of the (H, W, 3)
    ``canvas``, clipped to the canvas."""
    r0, r1, c0, c1 = window
    height, width = canvas.shape[:2]
    top, bottom, left, right = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
    if top < bottom and left < right:
        if isinstance(patch, np.ndarray):
            patch = patch[top - r0 : bottom - r0, left - c0 : right - c0]
        canvas[top:bottom, left:right] = patch
