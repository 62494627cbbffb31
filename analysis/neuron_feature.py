"""Neuron Features: the activation-weighted mean of a neuron's top patches (SPEC §3).

Patch j is the raw RGB input cut to the neuron's *unclipped* receptive window at the position of
a_j, so the window's centre is the patch's centre; pixels outside the image are mid-grey. With
w_j = a_j / a_1, NF = Σ_j (w_j / Σ_k w_k) · patch_j. The float NF is the result; contrast is
stretched only for display.

Work is grouped by image so each image is decoded once per layer, however many of the layer's
neurons chose it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from analysis.receptive_field import ReceptiveField

GREY = 0.5
COVERAGE_FLOOR = 0.1
ImageLoader = Callable[[int], np.ndarray]


@dataclass
class NeuronFeature:
    """A neuron's NF, its coverage-normalised variant, and its top patches."""

    mean: np.ndarray  # (h, w, 3) float32, the NF of SPEC §3
    coverage_mean: np.ndarray  # (h, w, 3): each pixel averages only the patches that cover it
    patches: list[np.ndarray]  # (h, w, 3) float32 per rank, grey outside the image


def cut_patch(
    image: np.ndarray, window: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """The unclipped ``window`` (r0, r1, c0, c1) of ``image`` (H, W, 3), and its inside mask."""
    r0, r1, c0, c1 = window
    height, width = image.shape[:2]
    patch = np.full((r1 - r0, c1 - c0, 3), GREY, dtype=np.float32)
    inside = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    top, bottom = max(r0, 0), min(r1, height)
    left, right = max(c0, 0), min(c1, width)
    if top < bottom and left < right:
        patch[top - r0 : bottom - r0, left - c0 : right - c0] = image[top:bottom, left:right]
        inside[top - r0 : bottom - r0, left - c0 : right - c0] = True
    return patch, inside


def neuron_features(
    values: np.ndarray,
    images: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    field: ReceptiveField,
    load_image: ImageLoader,
    dead: np.ndarray,
    memory_budget: int = 1 << 30,
) -> Iterator[tuple[int, NeuronFeature]]:
    """Yield ``(channel, NF)`` for every live channel of a layer from its top-K arrays (C, K).

    ``load_image(index)`` returns the image the model saw, (H, W, 3) float in [0, 1]. Channels are
    processed in chunks whose patches fit ``memory_budget`` bytes; within a chunk each image is
    loaded once. Patches with a_j ≤ 0 get zero weight, as they did not drive the neuron.
    """
    live = [int(c) for c in np.flatnonzero(~dead)]
    k = values.shape[1]
    patch_bytes = field.size[0] * field.size[1] * 3 * 4 * 2
    chunk = max(1, memory_budget // max(1, k * patch_bytes))
    for start in range(0, len(live), chunk):
        channels = live[start : start + chunk]
        by_image: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for channel in channels:
            for rank in range(k):
                by_image[int(images[channel, rank])].append((channel, rank))
        patches = {c: [np.empty(0)] * k for c in channels}
        insides = {c: [np.empty(0)] * k for c in channels}
        for index in sorted(by_image):
            image = load_image(index)
            for channel, rank in by_image[index]:
                window = field.window(int(rows[channel, rank]), int(cols[channel, rank]))
                patches[channel][rank], insides[channel][rank] = cut_patch(image, window)
        for channel in channels:
            yield channel, _weighted_mean(values[channel], patches[channel], insides[channel])


def _weighted_mean(
    values: np.ndarray, patches: list[np.ndarray], insides: list[np.ndarray]
) -> NeuronFeature:
    weights = np.clip(values / values[0], 0.0, None).astype(np.float64)
    stack = np.stack(patches).astype(np.float64)
    inside = np.stack(insides).astype(np.float64)
    total = weights.sum()
    mean = np.tensordot(weights / total, stack, axes=1)
    coverage = np.tensordot(weights, inside, axes=1)
    covered_sum = np.tensordot(weights, stack * inside[..., None], axes=1)
    coverage_mean = np.where(
        (coverage >= COVERAGE_FLOOR * total)[..., None],
        covered_sum / np.maximum(coverage, 1e-12)[..., None],
        GREY,
    )
    return NeuronFeature(
        mean=mean.astype(np.float32),
        coverage_mean=coverage_mean.astype(np.float32),
        patches=patches,
    )


def contrast_stretched(image: np.ndarray) -> np.ndarray:
    """Map a float image linearly so its minimum is 0 and its maximum 255 (uint8, for display)."""
    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.full_like(image, GREY)
    return np.round(scaled * 255).astype(np.uint8)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as uint8, without stretching (for patches)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def sprite(patches: list[np.ndarray], columns: int = 10, gap: int = 1) -> np.ndarray:
    """Tile same-sized patches in rank order into one uint8 image, ``columns`` per row."""
    height, width = patches[0].shape[:2]
    count = len(patches)
    grid_rows = -(-count // columns)
    cols = min(columns, count)
    sheet = np.full(
        (grid_rows * (height + gap) - gap, cols * (width + gap) - gap, 3), 255, dtype=np.uint8
    )
    for rank, patch in enumerate(patches):
        r, c = divmod(rank, columns)
        sheet[
            r * (height + gap) : r * (height + gap) + height,
            c * (width + gap) : c * (width + gap) + width,
        ] = to_uint8(patch)
    return sheet
