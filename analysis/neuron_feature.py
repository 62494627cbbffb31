"""Neuron Features: the activation-weighted mean of a neuron's top patches (docs/algorithms.md §3).

Patch j is the raw RGB input cut to the neuron's *unclipped* receptive window at the position of
a_j, so the window's centre is the patch's centre; pixels outside the image are mid-grey. With
w_j = a_j / a_1, NF = Σ_j (w_j / Σ_k w_k) · patch_j. The float NF is the result; contrast is
stretched only for display.

Work is grouped by image and map position, so each image is loaded once per chunk of channels
and each window cut once, however many of the layer's neurons chose it; only the part of each
window inside the image is ever read, and the weighted sums run on the analysis device.

Outside the layer's *reach* (the part of the window any image pixel can fall in, see
:meth:`ReceptiveField.reach`) every patch is grey, so the NF is exactly grey there: it is
computed and kept over the reach only, and :func:`full_window` restores the rest losslessly.
Within the reach, each neuron's NF is accumulated over its own *box* (the part its patches'
images reach), grey around it by the same argument.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator
from functools import cached_property, lru_cache, partial
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from analysis.receptive_field import ReceptiveField

GREY = 0.5
GREY_UINT8 = 128  # GREY as a uint8 pixel: round(127.5), half to even, as to_uint8 rounds it
COVERAGE_FLOOR = 0.1
TILE_LIMIT = 96  # sprite tiles: at most this many pixels a side (the NF keeps full resolution)
NF_DISPLAY_LIMIT = 256  # the NF's display PNG: at most this many pixels a side
OVERLAP_BUDGET = 256 << 20  # accumulator bytes per chunk when every top image is held decoded
PixelLoader = Callable[[int], np.ndarray]
Box = tuple[int, int, int, int]  # (r0, r1, c0, c1)
Flat = TypeVar("Flat", torch.Tensor, np.ndarray)


class NeuronFeature:
    """A neuron's NF over the layer's reach, the coverage of its window when asked for, and
    its top patches for display.

    The NF is accumulated directly (grey plus each patch's weighted difference from grey), so
    it needs no finishing pass. It is accumulated over its *box* only: the smallest box of the
    reach holding every part of a weighted patch that lies inside its image. Outside the box
    no patch reaches, so the NF is exactly grey there; a late layer's box is half its reach on
    average (ResNet-50's ``layer4.2`` over 26 photographs), and drawing it reads the box only.
    The coverage, which only the coverage-normalised variant needs, is integrated from the
    patches' boxes on first use.
    """

    def __init__(
        self,
        part: np.ndarray,
        box: Box,
        cover: Callable[[], np.ndarray],
        tiles: list[np.ndarray],
        reach: Box,
        window: tuple[int, int],
    ) -> None:
        self.part = part  # (h, w, 3) float32: the NF over ``box``
        self.box = box  # where ``part`` lies in the reach
        self._cover = cover
        self.tiles = tiles  # per rank: uint8, the patch every ``tile_step`` pixels, grey outside
        self.reach = reach  # where the reach lies in the window
        self.window = window  # the whole window's (rows, cols)

    @cached_property
    def mean(self) -> np.ndarray:
        """(h, w, 3) float32: the NF of docs/algorithms.md §3 over the reach."""
        r0, r1, c0, c1 = self.reach
        return full_window(self.part, self.box, (r1 - r0, c1 - c0))

    @property
    def drawn(self) -> Box:
        """Where ``part`` lies in the window (what :func:`display_image` is given with it)."""
        r0, r1, c0, c1 = self.box
        return (r0 + self.reach[0], r1 + self.reach[0], c0 + self.reach[2], c1 + self.reach[2])

    @cached_property
    def cover(self) -> np.ndarray:
        """(h, w) float32 over the reach: Σ_j ŵ_j over the patches whose image covers each
        pixel."""
        return self._cover()

    @property
    def coverage_mean(self) -> np.ndarray:
        """(h, w, 3) over the reach: each pixel averages only the patches that cover it (grey
        where they cover less than COVERAGE_FLOOR); computed on request, as the pipeline stores
        only the NF."""
        cover = self.cover[..., None]
        covered = self.mean - np.float32(GREY) * (1.0 - cover)
        return np.divide(
            covered, cover, out=np.full_like(self.mean, GREY), where=cover >= COVERAGE_FLOOR
        )


def cut_patch(image: np.ndarray, window: tuple[int, int, int, int], step: int = 1) -> np.ndarray:
    """The unclipped ``window`` (r0, r1, c0, c1) of ``image`` (H, W, 3), sampled every ``step``
    pixels (strided slices: no index arrays). Outside the image the patch is grey, in the
    image's own dtype (float in [0, 1], or uint8)."""
    r0, r1, c0, c1 = window
    height, width = image.shape[:2]
    row_count, rows, row_span = _inside(r0, r1, step, height)
    col_count, cols, col_span = _inside(c0, c1, step, width)
    if image.dtype == np.uint8:
        patch = np.full((row_count, col_count, 3), GREY_UINT8, np.uint8)
    else:
        patch = np.full((row_count, col_count, 3), GREY, np.float32)
    if rows.start < rows.stop and cols.start < cols.stop:
        patch[rows, cols] = image[row_span, col_span]
    return patch


@lru_cache(maxsize=1 << 14)
def _inside(start: int, stop: int, step: int, extent: int) -> tuple[int, slice, slice]:
    """Of the samples start, start + step, … < stop: their count, and those inside [0, extent)
    as a slice of the sample indices and the matching strided slice of the image. Cached: a
    layer's windows repeat for every image (a sprite tile is cut per image and position)."""
    count = len(range(start, stop, step))
    first = max(0, -(start // step))
    last = min(count, max(0, -(-(extent - start) // step)))
    return count, slice(first, last), slice(start + first * step, start + last * step, step)


def full_window(feature: np.ndarray, reach: Box, window: tuple[int, int]) -> np.ndarray:
    """The NF over its whole ``window`` (rows, cols) from its part over ``reach``: grey
    elsewhere, exactly as it was defined there."""
    if feature.shape[:2] == window:
        return feature
    r0, r1, c0, c1 = reach
    whole = np.full((*window, 3), GREY, np.float32)
    whole[r0:r1, c0:c1] = feature
    return whole


def tile_step(field: ReceptiveField) -> int:
    """The sampling step that keeps a sprite tile within TILE_LIMIT pixels a side."""
    return max(1, -(-max(field.size) // TILE_LIMIT))


def neuron_features(
    values: np.ndarray,
    images: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    field: ReceptiveField,
    load_pixels: PixelLoader,
    dead: np.ndarray,
    memory_budget: int = 2 << 30,
    device: torch.device | str = "cpu",
    resident_images: int = 0,
    reach: Box | None = None,
) -> Iterator[tuple[int, NeuronFeature]]:
    """Yield ``(channel, NF)`` for every live channel of a layer from its top-K arrays (C, K),
    each over ``reach`` (:meth:`ReceptiveField.reach`; the whole window when not given).

    ``load_pixels(index)`` returns the image the model saw as uint8 (H, W, 3); it is read as
    float in [0, 1] exactly as :func:`analysis.data.load_rgb` gives it. Patches with a_j ≤ 0
    get zero weight, as they did not drive the neuron.

    The NF is linear in the patches, a patch is the image inside the window and grey outside,
    and the ŵ_j = w_j / Σ_k w_k sum to 1, so NF = grey + Σ_j ŵ_j · (image_j − grey)|inside:
    each accumulator starts grey and each patch adds its weighted difference from grey over the
    part of its window inside the image only. A late layer's window can be many times the
    image, mostly grey: this reads no grey pixel, and no pass over the whole reach follows.
    Each accumulator covers only its channel's box (:class:`NeuronFeature`), so neither is
    there a pass over the grey between the box and the reach. All images share one size.

    Work is grouped by image, and within an image by map position, so each window is cut once
    however many neurons chose it. The weighted sums are fused multiply-adds into float32
    accumulators on ``device``; the coverage Σ_j ŵ_j · inside_j (for the coverage-normalised
    variant only) is kept exactly as the boxes' corners and integrated when first asked for.

    Channels are taken in chunks whose accumulators fit ``memory_budget`` bytes, so each
    image is loaded once per chunk. When ``load_pixels`` holds at least ``resident_images``
    decoded images and the layer's top images are no more than that, chunks shrink to
    OVERLAP_BUDGET: reloading costs nothing then, and a chunk's NFs can be written while the
    next one accumulates.
    """
    live = [int(c) for c in np.flatnonzero(~dead)]
    reach = reach or (0, field.size[0], 0, field.size[1])
    top, left = reach[0], reach[2]
    height, width = reach[1] - reach[0], reach[3] - reach[2]
    distinct = len(np.unique(images[live])) if live else 0
    budget = OVERLAP_BUDGET if distinct <= resident_images else memory_budget
    chunk = max(1, budget // max(1, height * width * (3 * 4 + 8)))
    step = tile_step(field)
    for start in range(0, len(live), chunk):
        channels = live[start : start + chunk]
        weights = [_normalised_weights(values[c]).tolist() for c in channels]
        boxes = _Boxes()
        tiles = {c: [np.empty(0)] * values.shape[1] for c in channels}
        by_image: dict[int, dict[tuple[int, int], list[tuple[int, int]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for local, channel in enumerate(channels):
            for rank in range(values.shape[1]):
                position = (int(rows[channel, rank]), int(cols[channel, rank]))
                by_image[int(images[channel, rank])][position].append((local, rank))
        image_size = load_pixels(min(by_image)).shape[:2]  # loaded first below in any case
        parts = _Parts(by_image, weights, field, reach, image_size, device)
        for index in sorted(by_image):
            pixels = load_pixels(index)
            if pixels.shape[:2] != image_size:
                raise ValueError(
                    f"image {index} is {pixels.shape[1]}×{pixels.shape[0]} pixels where the "
                    f"others are {image_size[1]}×{image_size[0]}: a layer's images share one size"
                )
            image = torch.from_numpy(pixels).to(device).to(torch.float32).div_(255.0).sub_(GREY)
            for position, entries in by_image[index].items():
                r0, _, c0, _ = window = field.window(*position)
                tile = cut_patch(pixels, window, step)
                for local, rank in entries:
                    tiles[channels[local]][rank] = tile
                reached = (r0 + top, r0 + top + height, c0 + left, c0 + left + width)
                _accumulate(parts, boxes, image, reached, entries, weights)
        found = parts.finished()
        for local, channel in enumerate(channels):
            cover = partial(boxes.integrated, local, height, width)
            part, box = found[local], parts.boxes[local]
            yield channel, NeuronFeature(part, box, cover, tiles[channel], reach, field.size)


def _normalised_weights(values: np.ndarray) -> np.ndarray:
    """ŵ_j = w_j / Σ_k w_k with w_j = max(a_j / a_1, 0)."""
    weights = np.clip(values / values[0], 0.0, None).astype(np.float64)
    return weights / weights.sum()


class _Boxes:
    """Weighted boxes per chunk-local channel, summed into a coverage map in one go."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int, int, float]] = []

    def add(self, local: int, top: int, bottom: int, left: int, right: int, weight: float) -> None:
        self.rows.append((local, top, bottom, left, right, weight))

    def integrated(self, local: int, height: int, width: int) -> np.ndarray:
        """(height, width) float32: each pixel's summed weight over channel ``local``'s boxes,
        from float64 corner increments integrated along both axes."""
        corners = np.zeros((height + 1, width + 1))
        for _local, top, bottom, left, right, weight in (r for r in self.rows if r[0] == local):
            corners[top, left] += weight
            corners[top, right] -= weight
            corners[bottom, left] -= weight
            corners[bottom, right] += weight
        return corners.cumsum(0).cumsum(1)[:height, :width].astype(np.float32)


class _Parts:
    """A chunk's accumulators, one for each channel's box (:class:`NeuronFeature`), laid end
    to end in one tensor that starts grey."""

    def __init__(
        self,
        by_image: dict[int, dict[tuple[int, int], list[tuple[int, int]]]],
        weights: list[list[float]],
        field: ReceptiveField,
        reach: Box,
        image_size: tuple[int, int],
        device: torch.device | str,
    ) -> None:
        top, left = reach[0], reach[2]
        extent = (reach[1] - reach[0], reach[3] - reach[2])
        found = [[extent[0], 0, extent[1], 0] for _ in weights]  # empty until a patch is added
        for entries_at in by_image.values():
            for position, entries in entries_at.items():
                r0, _, c0, _ = field.window(*position)
                inside = _inside_box((r0 + top, c0 + left), extent, image_size)
                if inside is None:
                    continue
                for local, rank in entries:
                    if weights[local][rank]:
                        box = found[local]
                        box[0], box[1] = min(box[0], inside[0]), max(box[1], inside[1])
                        box[2], box[3] = min(box[2], inside[2]), max(box[3], inside[3])
        # a channel no patch reaches is all grey: one grey pixel stands for it
        self.boxes: list[Box] = [
            (r0, r1, c0, c1) if r0 < r1 and c0 < c1 else (0, 1, 0, 1) for r0, r1, c0, c1 in found
        ]
        sizes = [(r1 - r0) * (c1 - c0) * 3 for r0, r1, c0, c1 in self.boxes]
        self.offsets = [0, *itertools.accumulate(sizes)]
        self.sums = torch.full((self.offsets[-1],), GREY, device=device)
        self.views = [self._view(self.sums, local) for local in range(len(self.boxes))]

    def _view(self, flat: Flat, local: int) -> Flat:
        """Channel ``local``'s accumulator in ``flat``, shaped as its box."""
        r0, r1, c0, c1 = self.boxes[local]
        return flat[self.offsets[local] : self.offsets[local + 1]].reshape(r1 - r0, c1 - c0, 3)

    def finished(self) -> list[np.ndarray]:
        """Each channel's NF over its box, on the CPU (one copy from another device)."""
        flat = self.sums.cpu().numpy()
        return [self._view(flat, local) for local in range(len(self.boxes))]


def _inside_box(
    origin: tuple[int, int], extent: tuple[int, int], image: tuple[int, int]
) -> Box | None:
    """The part of an (``extent``) box whose top-left corner lies at ``origin`` in image
    coordinates that falls inside the (height, width) ``image``, as (r0, r1, c0, c1) in the
    box's coordinates; None when none does."""
    r0, c0 = origin
    top, bottom = max(r0, 0), min(r0 + extent[0], image[0])
    left, right = max(c0, 0), min(c0 + extent[1], image[1])
    if top >= bottom or left >= right:
        return None
    return (top - r0, bottom - r0, left - c0, right - c0)


def _accumulate(
    parts: _Parts,
    boxes: _Boxes,
    image: torch.Tensor,
    window: tuple[int, int, int, int],
    entries: list[tuple[int, int]],
    weights: list[list[float]],
) -> None:
    """Add each entry's weight × the part of ``window`` inside the image to its channel's sum,
    and the box it covers to ``boxes``; ``entries`` are (chunk-local channel, rank) pairs
    sharing this window."""
    r0, r1, c0, c1 = window
    height, width = image.shape[:2]
    top, bottom, left, right = max(r0, 0), min(r1, height), max(c0, 0), min(c1, width)
    if top >= bottom or left >= right:
        return
    inside = image[top:bottom, left:right]
    for local, rank in entries:
        weight = weights[local][rank]
        if weight:
            b0, _, d0, _ = parts.boxes[local]
            rows, cols = top - r0 - b0, left - c0 - d0
            parts.views[local][rows : rows + bottom - top, cols : cols + right - left].add_(
                inside, alpha=weight
            )
            boxes.add(local, top - r0, bottom - r0, left - c0, right - c0, weight)


def display_image(
    feature: np.ndarray,
    reach: Box | None = None,
    window: tuple[int, int] | None = None,
    limit: int = NF_DISPLAY_LIMIT,
) -> np.ndarray:
    """The NF over its whole ``window`` contrast-stretched to uint8 and shrunk by the smallest
    whole factor that fits ``limit`` pixels a side (box averaging): what the dashboard shows.

    ``feature`` may hold the NF over ``reach`` only: the grey around it takes part in the
    stretch and is drawn, so the picture is the one the whole window gives. A block of the
    shrunk picture that does not meet the reach is all grey, so only the blocks that do are
    drawn and averaged (a late layer's window can be 20 times its reach). The full-resolution
    float NF is stored beside it."""
    height, width = window or feature.shape[:2]
    factor = -(-max(height, width) // limit)
    low, high = float(feature.min()), float(feature.max())
    if reach is None or feature.shape[:2] == (height, width):
        return _reduced(_stretched(feature, low, high), factor)
    low, high = min(low, GREY), max(high, GREY)
    # one value for all three channels, filled as a scalar: broadcasting a (1, 1, 3) pixel
    # runs numpy's inner loop three elements at a time (0.57 ms for a 407 × 407 picture)
    grey = int(_stretched(np.full(1, GREY, np.float32), low, high)[0])
    r0, r1, c0, c1 = reach
    top, left = r0 // factor * factor, c0 // factor * factor  # the blocks meeting the reach
    bottom = min(height, -(-r1 // factor) * factor)
    right = min(width, -(-c1 // factor) * factor)
    part = np.empty((bottom - top, right - left, 3), np.uint8)
    if part.shape != feature.shape:  # else the NF covers it all: nothing to fill
        part.fill(grey)
    _stretch_into(part[r0 - top : r1 - top, c0 - left : c1 - left], feature, low, high)
    shown = np.empty((-(-height // factor), -(-width // factor), 3), np.uint8)
    shown.fill(grey)
    reduced = _reduced(part, factor)
    row, col = top // factor, left // factor
    shown[row : row + reduced.shape[0], col : col + reduced.shape[1]] = reduced
    return shown


def _reduced(pixels: np.ndarray, factor: int) -> np.ndarray:
    """``pixels`` (uint8) shrunk by box averages of ``factor`` × ``factor`` (Pillow's reduce:
    the last block in a row or column averages what is left)."""
    if factor <= 1:
        return pixels
    return np.asarray(Image.fromarray(pixels).reduce(factor))


def contrast_stretched(image: np.ndarray) -> np.ndarray:
    """Map a float image linearly so its minimum is 0 and its maximum 255 (uint8, for display)."""
    return _stretched(image, float(image.min()), float(image.max()))


def _stretched(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``low`` to 0 and ``high`` to 255, rounded to uint8; all grey when they are equal."""
    out = np.empty(image.shape, np.uint8)
    _stretch_into(out, image, low, high)
    return out


def _stretch_into(out: np.ndarray, image: np.ndarray, low: float, high: float) -> None:
    """:func:`_stretched` written into ``out`` (uint8, ``image``'s shape): the rounded values
    are whole numbers in [0, 255], so storing them is the conversion, with no uint8 copy."""
    if high <= low:
        out.fill(GREY_UINT8)
        return
    scaled = image - low  # in place from here: a late layer's NF is megabytes
    scaled /= high - low
    scaled *= 255
    out[...] = np.round(scaled, out=scaled)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A [0, 1] float image as uint8, without stretching (for patches); uint8 passes as is."""
    if image.dtype == np.uint8:
        return image
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
