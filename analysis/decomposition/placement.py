"""Which neurons describe a picture, and where: read a layer's maps, scale each channel by its
dataset maximum, keep the best channel per position, and accept positions greedily, strongest
first, while their windows overlap those already accepted by at most a set fraction.

Shared by the image decomposition and the activation mode of composition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from analysis.hooks import forward_until, layer_hooks
from analysis.receptive_field import ReceptiveField

Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class Placement:
    """One accepted neuron: its channel, where (map row and column, input window), how strongly
    (raw and normalised by the neuron's dataset maximum)."""

    channel: int
    row: int
    col: int
    value: float
    normalised: float
    window: Window


def layer_outputs(
    model: nn.Module, inputs: torch.Tensor, layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """One forward of ``inputs`` (normalised, on the model's device), stopped after the deepest
    of ``layers``; their outputs as float32 (copied before any in-place op can change them)."""
    recorded: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        recorded[name] = output.detach().float().clone()

    with torch.no_grad(), layer_hooks(model, list(layers), keep, stop_early=True):
        forward_until(model, inputs)
    return recorded


def normalise(maps: torch.Tensor, maxima: torch.Tensor) -> torch.Tensor:
    """Divide each channel of (…, C, H, W) maps by its dataset maximum; a dead channel (maximum
    ≤ 0) is −inf everywhere, so it is never chosen."""
    maxima = maxima.to(maps.device, maps.dtype)
    live = maxima > 0
    scaled = maps / torch.where(live, maxima, torch.ones_like(maxima))[:, None, None]
    return torch.where(live[:, None, None], scaled, torch.full_like(scaled, float("-inf")))


def greedy_placements(
    normalised: torch.Tensor,
    raw: torch.Tensor,
    field: ReceptiveField,
    max_overlap: float = 0.0,
    inside: Window | None = None,
) -> list[Placement]:
    """Per position the best channel, then positions accepted strongest first while the part of
    each one's window already covered by accepted windows is at most ``max_overlap`` of its area.
    Only positions whose window lies within ``inside`` are candidates, when it is given;
    positions where no channel fires (normalised ≤ 0) are never accepted."""
    best, channels = normalised.max(0)
    height, width = best.shape
    flat_best = best.flatten()
    order = torch.argsort(flat_best, descending=True, stable=True)
    order = order[flat_best[order] > 0].tolist()
    if inside is not None:
        order = [i for i in order if _contains(inside, field.window(*divmod(i, width)))]
    if max_overlap <= 0:
        chosen = _disjoint(order, field, height, width)
    else:
        chosen = _covered_at_most(order, field, height, width, max_overlap)
    values, labels = flat_best.tolist(), channels.flatten().tolist()
    raw_values = raw.flatten(1)
    return [
        Placement(
            labels[index],
            index // width,
            index % width,
            float(raw_values[labels[index], index]),
            values[index],
            field.window(*divmod(index, width)),
        )
        for index in chosen
    ]


def _disjoint(order: list[int], field: ReceptiveField, height: int, width: int) -> list[int]:
    """Greedy choice with no overlap at all: two windows overlap exactly when their positions
    are closer than ⌈size / stride⌉ on both axes, so each acceptance blocks a rectangle of
    positions and each candidate costs one lookup."""
    reach_rows = -(-field.size[0] // field.stride[0]) - 1
    reach_cols = -(-field.size[1] // field.stride[1]) - 1
    blocked = bytearray(height * width)
    chosen = []
    for index in order:
        if blocked[index]:
            continue
        chosen.append(index)
        row, col = divmod(index, width)
        left, right = max(col - reach_cols, 0), min(col + reach_cols + 1, width)
        for blocked_row in range(max(row - reach_rows, 0), min(row + reach_rows + 1, height)):
            start = blocked_row * width
            blocked[start + left : start + right] = b"\x01" * (right - left)
    return chosen


def _covered_at_most(
    order: list[int], field: ReceptiveField, height: int, width: int, max_overlap: float
) -> list[int]:
    """Greedy choice allowing ``max_overlap`` of each window to be covered already: coverage is
    a mask over the input (with a margin, as windows may extend past the image)."""
    top, left = field.window(0, 0)[0], field.window(0, 0)[2]
    bottom, right = field.window(height - 1, width - 1)[1], field.window(height - 1, width - 1)[3]
    covered = np.zeros((bottom - top, right - left), dtype=np.int32)
    limit = max_overlap * field.size[0] * field.size[1]
    chosen = []
    for index in order:
        r0, r1, c0, c1 = field.window(*divmod(index, width))
        region = covered[r0 - top : r1 - top, c0 - left : c1 - left]
        if region.sum() <= limit:
            region[...] = 1
            chosen.append(index)
    return chosen


def _contains(outer: Window, inner: Window) -> bool:
    return (
        outer[0] <= inner[0]
        and inner[1] <= outer[1]
        and outer[2] <= inner[2]
        and inner[3] <= outer[3]
    )
