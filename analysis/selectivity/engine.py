"""Perturb each top patch in place and re-read the neuron at the same map position
(docs/algorithms.md §4).

For neuron c and its top image j, the receptive window of a_j is cut out, perturbed, pasted back
into the otherwise unchanged image, and the image goes through the network truncated after the
layer; a'_j is read at the original (row, col).

Only the window can influence that unit, so instead of the whole image the engine forwards a
crop around it: the crop starts on a multiple of the layer's stride (so every intermediate grid
lines up) and touches the image border wherever the window does (so the network's own zero
padding is reproduced). Early layers thus run on crops of a few pixels. All neurons, all ranks
and all variants of a layer go through in large batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from analysis.exported import ANY_INPUT, InputConstraints, ProgramInputError, input_constraints
from analysis.fusion import batch_norms_folded
from analysis.hooks import forward_until, layer_hooks
from analysis.models import InputSpec
from analysis.receptive_field import ReceptiveField
from analysis.selectivity.perturbations import Perturbation

GREY = 0.5
MAX_BATCH_GROWTH = 8
CACHED_IMAGES = 64
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class CropPlan:
    """Where each (neuron, rank) sample is cut from its image, and where to read the unit."""

    size: tuple[int, int]  # (height, width) of every crop
    top: torch.Tensor  # (S,) crop origin in the image
    left: torch.Tensor
    window_top: torch.Tensor  # (S,) window origin relative to the crop (may be negative)
    window_left: torch.Tensor
    read_row: torch.Tensor  # (S,) unit position in the crop's output map
    read_col: torch.Tensor


def plan_crops(
    field: ReceptiveField,
    rows: torch.Tensor,
    cols: torch.Tensor,
    image_size: tuple[int, int],
    accepted: InputConstraints = ANY_INPUT,
) -> CropPlan:
    """Crops of one common size, aligned to the stride, that contain every window; each axis is
    cropped on its own, or kept whole where an aligned crop would not be smaller than the image
    or the image is no multiple of the stride.

    An exported program may refuse so small an input (it carries the size constraints of its
    whole graph, not of the layers before this one): then the crops grow, a stride at a time,
    to the smallest size it ``accepted``. A larger crop holds more of the same image around
    the same window, so the neuron reads the same value; the whole image is the last resort."""
    rows, cols = rows.long(), cols.long()
    r0 = field.offset[0] + rows * field.stride[0]
    c0 = field.offset[1] + cols * field.stride[1]
    chosen = accepted.smallest_size(
        _crop_lengths(field.size[0], field.stride[0], image_size[0]),
        _crop_lengths(field.size[1], field.stride[1], image_size[1]),
    )
    if chosen is None:
        raise ProgramInputError(
            f"the exported program cannot take a crop or the whole {image_size[0]}×"
            f"{image_size[1]} image: {accepted.describe()}"
        )
    height, top = _crop_axis(r0, chosen[0], field.stride[0], image_size[0])
    width, left = _crop_axis(c0, chosen[1], field.stride[1], image_size[1])
    return CropPlan(
        size=(height, width),
        top=top,
        left=left,
        window_top=r0 - top,
        window_left=c0 - left,
        read_row=rows - top // field.stride[0],
        read_col=cols - left // field.stride[1],
    )


def _crop_lengths(extent: int, stride: int, image: int) -> list[int]:
    """One axis's crop lengths, smallest first: the least aligned length that holds a window
    (an aligned origin is at most stride − 1 pixels before the window's start), the longer
    aligned ones, and the whole axis."""
    length = -(-(extent + stride - 1) // stride) * stride
    if image % stride or length >= image:
        return [image]
    return [*range(length, image, stride), image]


def _crop_axis(
    starts: torch.Tensor, length: int, stride: int, image: int
) -> tuple[int, torch.Tensor]:
    """One axis of the plan: the crop length and each sample's crop origin."""
    if length >= image:
        return image, torch.zeros_like(starts)
    # Both bounds are multiples of the stride, so the clamped origin stays aligned.
    return length, (starts.clamp_min(0) // stride * stride).clamp_max(image - length)


Overlap = tuple[tuple[slice, slice], tuple[slice, slice]]


def _cut_windows(
    crops: torch.Tensor, overlaps: list[Overlap], field: ReceptiveField
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window patches (B, 3, h, w), grey where the window leaves the crop, and the mask of
    where it does not (B, h, w)."""
    height, width = field.size
    batch, channels = crops.shape[:2]
    patches = torch.full(
        (batch, channels, height, width), GREY, dtype=crops.dtype, device=crops.device
    )
    mask = torch.zeros(batch, height, width, device=crops.device)
    for sample, (crop_part, patch_part) in enumerate(overlaps):
        patches[(sample, slice(None), *patch_part)] = crops[(sample, slice(None), *crop_part)]
        mask[(sample, *patch_part)] = 1.0
    return patches, mask


def _overlaps(
    window_top: torch.Tensor, window_left: torch.Tensor, crops: torch.Tensor, field: ReceptiveField
) -> list[Overlap]:
    """Per sample, where its window and its crop overlap: (rows, cols) in the crop and the same
    pixels' (rows, cols) in the window."""
    crop_h, crop_w = crops.shape[-2:]
    height, width = field.size
    return [
        tuple(zip(_span(top, height, crop_h), _span(left, width, crop_w), strict=True))
        for top, left in zip(window_top.tolist(), window_left.tolist(), strict=True)
    ]


def _span(start: int, size: int, extent: int) -> tuple[slice, slice]:
    """A window of ``size`` from ``start`` over ``[0, extent)``: the covered slice of the extent
    and the matching slice of the window (empty where they do not meet)."""
    first = max(start, 0)
    last = max(min(start + size, extent), first)
    return slice(first, last), slice(first - start, last - start)


def perturbation_responses(
    model: nn.Module,
    layer: str,
    field: ReceptiveField,
    channels: Sequence[int],
    rows: np.ndarray,
    cols: np.ndarray,
    images: np.ndarray,
    load_image: Callable[[int], np.ndarray],
    input_spec: InputSpec,
    perturbations: Sequence[Perturbation],
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    progress: ProgressCallback | None = None,
) -> dict[str, np.ndarray]:
    """Responses of each neuron in ``channels`` to every variant: name → (len(channels), K, V).

    ``rows``, ``cols`` and ``images`` are the layer's top-K arrays (all channels × K). Neurons
    whose top lists share an (image, position) share its perturbed forwards: every channel of
    the layer is read from the same output.
    """
    device = torch.device(device)
    k = rows.shape[1]
    chosen = np.asarray(list(channels), dtype=np.int64)
    entry_channel = torch.from_numpy(chosen).repeat_interleave(k)
    entry_row = torch.as_tensor(rows[chosen].reshape(-1)).long()
    entry_col = torch.as_tensor(cols[chosen].reshape(-1)).long()
    entry_image = torch.as_tensor(images[chosen].reshape(-1)).long()
    span = int(max(entry_row.max(), entry_col.max())) + 1 if len(entry_row) else 1
    keys = (entry_image * span + entry_row) * span + entry_col
    unique_keys, sample_of_entry = torch.unique(keys, return_inverse=True)
    sample_image = unique_keys // (span * span)
    sample_row = unique_keys // span % span
    sample_col = unique_keys % span
    entry_order = torch.argsort(sample_of_entry, stable=True)
    sorted_samples = sample_of_entry[entry_order]
    plan = plan_crops(field, sample_row, sample_col, input_spec.size, input_constraints(model))
    variants = sum(p.variants for p in perturbations)
    # ``batch_size`` counts full-size images per forward; small crops fit more, up to
    # MAX_BATCH_GROWTH times as many (beyond that, preparing the stimuli dominates).
    pixel_budget = batch_size * input_spec.height * input_spec.width
    crop_pixels = plan.size[0] * plan.size[1]
    stimuli_budget = min(pixel_budget // crop_pixels, MAX_BATCH_GROWTH * batch_size)
    per_chunk = max(1, stimuli_budget // variants)
    cuda = device.type == "cuda"
    responses = torch.empty(len(entry_channel), variants)
    captured: dict[str, torch.Tensor] = {}

    def keep(_name: str, output: torch.Tensor) -> None:
        captured["out"] = output

    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    # Channels-last convolutions run 1.2–1.7× faster on CPUs (oneDNN) as on GPUs.
    model.to(memory_format=torch.channels_last)
    cache: dict[int, torch.Tensor] = {}
    samples = len(unique_keys)
    with (
        batch_norms_folded(model, [layer], input_spec.probe(device)),
        layer_hooks(model, [layer], keep, stop_early=True),
        torch.no_grad(),
        autocast,
    ):
        for start in range(0, samples, per_chunk):
            chunk = slice(start, start + per_chunk)
            crops = _load_crops(sample_image[chunk], plan, chunk, load_image, cache).to(device)
            stimuli = _perturbed_stimuli(crops, plan, chunk, field, perturbations, variants)
            stimuli = stimuli.contiguous(memory_format=torch.channels_last)
            forward_until(model, input_spec.normalise(stimuli))
            out = captured.pop("out")
            out = out.reshape(len(crops), variants, *out.shape[1:])
            first, last = torch.searchsorted(sorted_samples, torch.tensor([start, chunk.stop]))
            entries = entry_order[first:last]
            local = (sample_of_entry[entries] - start).to(device)
            read = out[
                local[:, None],
                torch.arange(variants, device=device)[None, :],
                entry_channel[entries].to(device)[:, None],
                plan.read_row[sample_of_entry[entries]].to(device)[:, None],
                plan.read_col[sample_of_entry[entries]].to(device)[:, None],
            ]
            responses[entries] = read.float().cpu()
            if progress:
                progress(min(chunk.stop, samples), samples)
    shaped = responses.reshape(len(chosen), k, variants).numpy()
    result, first_variant = {}, 0
    for perturbation in perturbations:
        result[perturbation.name] = shaped[
            :, :, first_variant : first_variant + perturbation.variants
        ]
        first_variant += perturbation.variants
    return result


def _perturbed_stimuli(
    crops: torch.Tensor,
    plan: CropPlan,
    chunk: slice,
    field: ReceptiveField,
    perturbations: Sequence[Perturbation],
    variants: int,
) -> torch.Tensor:
    """Every variant of every crop, its window replaced by the perturbed patch: (B·V, 3, h, w).

    Only the part of each window inside its crop is pasted: a late layer's window can be
    twice the image on each side, and a canvas padded to hold it whole, copied for all 30
    variants, was 0.9 GB per pair of ResNet-18 ``layer4`` samples (20 of the stage's 85 s on
    four photos)."""
    device = crops.device
    window_top = plan.window_top[chunk].to(device)
    window_left = plan.window_left[chunk].to(device)
    overlaps = _overlaps(window_top, window_left, crops, field)
    patches, mask = _cut_windows(crops, overlaps, field)
    variant_patches = torch.cat([p.apply(patches, mask) for p in perturbations], dim=1)
    batch, channels, crop_h, crop_w = crops.shape
    stimuli = crops[:, None].repeat(1, variants, 1, 1, 1)
    everything = slice(None)
    for sample, (crop_part, patch_part) in enumerate(overlaps):
        stimuli[(sample, everything, everything, *crop_part)] = variant_patches[
            (sample, everything, everything, *patch_part)
        ]
    return stimuli.reshape(batch * variants, channels, crop_h, crop_w)


def _load_crops(
    image_ids: torch.Tensor,
    plan: CropPlan,
    chunk: slice,
    load_image: Callable[[int], np.ndarray],
    cache: dict[int, torch.Tensor],
) -> torch.Tensor:
    crops = []
    for offset, image_id in enumerate(image_ids.tolist()):
        if image_id not in cache:
            # Samples come sorted by image, so a few images at a time are all this needs.
            if len(cache) >= CACHED_IMAGES:
                cache.clear()
            cache[image_id] = torch.from_numpy(load_image(image_id)).permute(2, 0, 1)
        top = int(plan.top[chunk][offset])
        left = int(plan.left[chunk][offset])
        crops.append(cache[image_id][:, top : top + plan.size[0], left : left + plan.size[1]])
    return torch.stack(crops)
