"""Neuron Features: the activation-weighted mean of a neuron's top patches (SPEC §3).

Patch j is the raw RGB input cut to the neuron's *unclipped* receptive window at the position of
a_j, so the window's centre is the patch's centre; pixels outside the image are mid-grey. With
w_j = a_j / a_1, NF = Σ_j (w_j / Σ_k w_k) · patch_j. The float NF is the result; contrast is
stretched only for display.

Work is grouped by image so each image is loaded once per chunk of channels, however many of the
layer's neurons chose it, and only the part of each window inside the image is ever read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from analysis.receptive_field import ReceptiveField

GREY = 0.5
COVERAGE_FLOOR = 0.1
TILE_LIMIT = 96  # sprite tiles: at most this many pixels a side (the NF keeps full resolution)
ImageLoader = Callable[[int], np.ndarray]


@dataclass
class NeuronFeature:
    """A neuron's NF, its coverage-normalised variant, and its top patches for display."""

    mean: np.ndarray  # (h, w, 3) float32, the NF of SPEC §3
    coverage_mean: np.ndarray  # (h, w, 3): each pixel averages only the patches that cover it
    tiles: list[np.ndarray]  # per rank: the patch sampled every ``tile_step`` pixels, grey outside


def cut_patch(
    image: np.ndarray, window: tuple[int, int, int, int], step: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The unclipped ``window`` (r0, r1, c0, c1) of ``image`` (H, W, 3), sampled every ``step``
    pixels, and its inside mask."""
    r0, r1, c0, c1 = window
    rows, cols = np.arange(r0, r1, step), np.arange(c0, c1, step)
    height, width = image.shape[:2]
    row_in, col_in = (rows >= 0) & (rows < height), (cols >= 0) & (cols < width)
    patch = np.full((len(rows), len(cols), 3), GREY, dtype=np.float32)
    patch[np.ix_(row_in, col_in)] = image[np.ix_(rows[row_in], cols[col_in])]
    return patch, np.outer(row_in, col_in)


def tile_step(field: ReceptiveField) -> int:
    """The sampling step that keeps a sprite tile within TILE_LIMIT pixels a side."""
    return max(1, -(-max(field.size) // TILE_LIMIT))


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

    ``load_image(index)`` returns the image the model saw, (H, W, 3) float in [0, 1]. Patches
    with a_j ≤ 0 get zero weight, as they did not drive the neuron.

    The NF is linear in the patches, and a patch is the image inside the window and grey
    outside, so NF = Σ_j ŵ_j · image_j|inside + grey · (1 − Σ_j ŵ_j · inside_j), with ŵ_j =
    w_j / Σ_k w_k: each patch is accumulated over the part of its window inside the image only,
    in float64. A late layer's window can be many times the image, mostly grey: this reads no
    grey pixel. Channels are processed in chunks whose accumulators fit ``memory_budget``
    bytes; within a chunk each image is loaded once, however many neurons chose it.
    """
    live = [int(c) for c in np.flatnonzero(~dead)]
    height, width = field.size
    chunk = max(1, memory_budget // max(1, height * width * 4 * 8 * 2))
    step = tile_step(field)
    for start in range(0, len(live), chunk):
        channels = live[start : start + chunk]
        weights = {c: _normalised_weights(values[c]) for c in channels}
        sums = {c: np.zeros((height, width, 3)) for c in channels}
        cover = {c: np.zeros((height, width)) for c in channels}
        tiles = {c: [np.empty(0)] * values.shape[1] for c in channels}
        by_image: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for channel in channels:
            for rank in range(values.shape[1]):
                by_image[int(images[channel, rank])].append((channel, rank))
        for index in sorted(by_image):
            image = load_image(index)
            for channel, rank in by_image[index]:
                window = field.window(int(rows[channel, rank]), int(cols[channel, rank]))
                tiles[channel][rank] = cut_patch(image, window, step)[0]
                _accumulate(sums[channel], cover[channel], image, window, weights[channel][rank])
        for channel in channels:
            yield channel, _finish(sums[channel], cover[channel], tiles[channel])


def _normalised_weights(values: np.ndarray) -> np.ndarray:
    """ŵ_j = w_j / Σ_k w_k with w_j = max(a_j / a_1, 0)."""
    weights = np.clip(values / values[0], 0.0, None).astype(np.float64)
    return weights / weights.sum()


def _accumulate(
    total: np.ndarray,
    cover: np.ndarray,
    image: np.ndarray,
    window: tuple[int, int, int, int],
    weight: float,
) -> None:
    """Add ``weight`` × the part of ``window`` inside ``image`` (and its coverage)."""
    if weight == 0:
        return
    r0, r1, c0, c1 = window
    height, width = image.shape[:2]
    top, bottom, left, right = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
    if top < bottom and left < right:
        inside = (slice(top - r0, bottom - r0), slice(left - c0, right - c0))
        total[inside] += weight * image[top:bottom, left:right].astype(np.float64)
        cover[inside] += weight


def _finish(total: np.ndarray, cover: np.ndarray, tiles: list[np.ndarray]) -> NeuronFeature:
    mean = total + GREY * (1.0 - cover)[..., None]
    coverage_mean = np.where(
        (cover >= COVERAGE_FLOOR)[..., None],
        total / np.maximum(cover, 1e-12)[..., None],
        GREY,
    )
    return NeuronFeature(
        mean=mean.astype(np.float32), coverage_mean=coverage_mean.astype(np.float32), tiles=tiles
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
