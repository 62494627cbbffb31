"""Time of all selectivity indexes as a multiple of the sweep's time over the same images.

    python -m benchmarks.indexes                                   # demo CNN, CPU
    python -m benchmarks.indexes --model torchvision:vgg16 --device cuda --channels-per-layer 64

The dataset is 10,000 generated stimuli (the demo's shapes and textures, upscaled to the model's
input size) held in memory, so neither side reads files. The sweep (K = 100, every default
layer) is timed first; then colour, orientation (23 rotations), symmetry (4 mirrors), shape and
class indexes of every live neuron of every layer. With ``--channels-per-layer N`` only the
first N channels of each layer are measured and the total is extrapolated linearly to all
channels (printed as such): on a GPU a full VGG16 run does not fit one 10-minute device call.
Physiology (1,321 stimuli per layer set, one pass) is timed separately.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from analysis.demo.stimuli import generate
from analysis.hooks import forward_until, layer_hooks
from analysis.layers import LayerInfo, list_layers
from analysis.models import InputSpec
from analysis.physiology import electrodes, layer_physiology
from analysis.selectivity.engine import MAX_BATCH_GROWTH, plan_crops
from analysis.selectivity.layer import layer_indexes
from analysis.selectivity.perturbations import ALL
from analysis.sweep import LayerTopK, TopKRecorder
from benchmarks.common import add_common_options, autocast, machine_description, prepare_model


def stimuli(count: int, size: int) -> tuple[np.ndarray, list[str]]:
    """``count`` demo stimuli as uint8 (N, size, size, 3), with their class labels."""
    images, labels = generate(-(-count // 10), seed=1)
    images, labels = images[:count], labels[:count]
    if size != images.shape[1]:
        resized = []
        for start in range(0, count, 512):
            part = torch.from_numpy(images[start : start + 512]).permute(0, 3, 1, 2).float()
            part = F.interpolate(part, size=(size, size), mode="bilinear", antialias=True)
            resized.append(part.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy())
        images = np.concatenate(resized)
    return images, [str(label) for label in labels]


def forward_bound(
    model: torch.nn.Module,
    layer: LayerInfo,
    topk: LayerTopK,
    input_spec: InputSpec,
    device: torch.device,
    batch_size: int,
) -> tuple[int, tuple[int, int], float]:
    """The index stage's own bound for one layer: the perturbed forwards docs/algorithms.md §4
    needs, timed as plain truncated forwards of random crops of the engine's size, in the engine's
    batches.

    Returns (forwards, crop size, seconds). The network runs channels-last, as in the engine.
    Forwards = distinct (image, position) samples among
    the live neurons' top-K × the 30 variants: neurons sharing a sample share its forwards.
    """
    live = ~topk.dead
    keys = torch.stack([topk.images[live], topk.rows[live].long(), topk.cols[live].long()], -1)
    samples = torch.unique(keys.reshape(-1, 3), dim=0)
    plan = plan_crops(layer.receptive_field, samples[:, 1], samples[:, 2], input_spec.size)
    variants = sum(p.variants for p in ALL)
    height, width = plan.size
    budget = batch_size * input_spec.height * input_spec.width // (height * width)
    per_forward = max(1, min(budget, MAX_BATCH_GROWTH * batch_size) // variants) * variants
    total = len(samples) * variants
    crops = torch.rand(per_forward, 3, height, width, device=device)
    normalised = input_spec.normalise(crops).contiguous(memory_format=torch.channels_last)
    model.to(memory_format=torch.channels_last)  # the engine's layout
    hooks = layer_hooks(model, [layer.name], lambda *_: None, stop_early=True)
    with hooks, torch.no_grad(), autocast(device):
        forward_until(model, normalised[:2])  # warm-up
        started = time.perf_counter()
        for first in range(0, total, per_forward):
            forward_until(model, normalised[: min(per_forward, total - first)])
        if device.type == "cuda":
            torch.cuda.synchronize()
    return total, plan.size, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--top-k", type=int, default=100)
    parser.add_argument("--channels-per-layer", type=int, help="measure a subset, extrapolate")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    model, input_spec, layer_names = prepare_model(args.model, args.input_size, device)
    batch_size = args.batch_size or (256 if device.type == "cuda" else 64)
    images, labels = stimuli(args.images, input_spec.height)
    print(f"machine: {machine_description(device)}")
    print(
        f"model: {args.model}, {input_spec.height} px, {len(layer_names)} layers, "
        f"{len(images)} images, K = {args.top_k}"
    )

    # The sweep over the in-memory dataset.
    recorder = TopKRecorder(model, layer_names, args.top_k, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    with recorder, torch.no_grad(), autocast(device):
        for first in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[first : first + batch_size]).to(device)
            batch = batch.permute(0, 3, 1, 2).float().div(255)
            if device.type == "cuda":
                batch = batch.contiguous(memory_format=torch.channels_last)
            indices = torch.arange(first, first + len(batch), device=device)
            valid = torch.ones(len(batch), dtype=torch.bool, device=device)
            recorder.forward(input_spec.normalise(batch), indices, valid)
        result = recorder.result([])
    sweep_s = time.perf_counter() - started
    print(f"sweep: {sweep_s:.2f} s ({len(images) / sweep_s:,.0f} img/s, data in memory)")

    infos = {info.name: info for info in list_layers(model, input_spec)}
    pixels = images  # uint8; the loader converts one image at a time

    def load(index: int) -> np.ndarray:
        return pixels[index].astype(np.float32) / 255.0

    started = time.perf_counter()
    recording = {name: electrodes(infos[name], infos) for name in layer_names}
    layer_physiology(model, recording, input_spec, device)
    physiology_s = time.perf_counter() - started

    measured_total, extrapolated_total, bound_total = 0.0, 0.0, 0.0
    for name in layer_names:
        full = result.layers[name]
        keep = args.channels_per_layer or full.channels
        topk = LayerTopK(
            full.values[:keep],
            full.images[:keep],
            full.rows[:keep],
            full.cols[:keep],
            full.maxima_sum[:keep],
            full.count,
        )
        started = time.perf_counter()
        found = layer_indexes(
            model, infos[name], topk, load, labels, input_spec, device, batch_size=batch_size
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        forwards, crop, bound = forward_bound(
            model, infos[name], topk, input_spec, device, batch_size
        )
        bound_total += bound * full.channels / topk.channels
        scale = full.channels / topk.channels
        measured_total += seconds
        extrapolated_total += seconds * scale
        colour = np.nanmean([i.color for i in found.values()]) if found else float("nan")
        print(
            f"  {name}: {topk.channels}/{full.channels} channels, {seconds:.1f} s; bound "
            f"{forwards:,} truncated forwards of {crop[0]}×{crop[1]} crops {bound:.1f} s, "
            f"ratio {seconds / bound:.2f} (mean colour index {colour:.2f})"
        )
    print(f"physiology (all layers, one pass): {physiology_s:.1f} s")
    label = "extrapolated to all channels" if args.channels_per_layer else "all channels"
    print(f"indexes, measured: {measured_total:.1f} s; {label}: {extrapolated_total:.1f} s")
    print(f"indexes / sweep time: {extrapolated_total / sweep_s:.1f}×")
    print(
        f"indexes / their bound: {extrapolated_total / bound_total:.2f} "
        f"(bound {bound_total:.1f} s; goal ≤ 1.3)"
    )


if __name__ == "__main__":
    main()
