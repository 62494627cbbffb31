"""Feature visualisation throughput: ours against a Lucent-equivalent loop, same process and device.

The Lucent-equivalent side does what ``lucent.optvis.render.render_vis`` does with its defaults:
one image at a time, a 128 px Fourier image with colour decorrelation, five separate transforms
(pad 12 with grey, jitter 8, random scale, random rotation, jitter 4) drawn once for the batch,
normalisation, bilinear upsampling to 224 px (``render_vis`` upsamples images smaller than 224), a
forward hook on every module (``hook_model``), the whole network run to its logits, the weights left
trainable (so back-propagation also computes their gradients), Adam at lr 0.05.

Our side is ``analysis.featureviz.units.render_units``: every channel of the layer in batches of
one image per channel, one fused warp per image, frozen weights, the forward stopped after the
layer, bf16 autocast where it pays (CUDA; CPUs with native bf16). By default the network sees our
images at their own size, as Lucid does (``--view-size 224`` makes ours upsample like Lucent, to
separate the two effects).

Both maximise the mean of one channel of ResNet-18 ``layer3`` (random, seeded weights) for the same
number of steps. The script prints visualisations per second of each, their ratio, and the mean
final activation of both sides' images on the same channels, each measured untransformed both at
128 px and upsampled to 224 px.

On a 2-core CPU a full comparison takes hours (Lucent's own figure: 36 s per visualisation), so
``--channels`` and ``--lucent-channels`` take a subset there; the ratio is per visualisation.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from analysis.featureviz import objectives, param
from analysis.featureviz.render import evaluate
from analysis.featureviz.targets import Target
from analysis.featureviz.units import RenderSettings, render_units
from analysis.models import InputSpec, load_model
from benchmarks.common import machine_description, median

LAYER = "layer3"


def lucent_equivalent(
    model: nn.Module, unit: int, input_spec: InputSpec, steps: int, size: int, seed: int
) -> torch.Tensor:
    """One visualisation the way Lucent's ``render_vis`` computes it; returns the image."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    image = param.fourier_image(1, size, device=device, generator=generator)
    optimiser = torch.optim.Adam(image.parameters(), lr=0.05)
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, output, name=name: outputs.__setitem__(name, output)
        )
        for name, module in model.named_modules()
    ]
    scales = [1 + (i - 5) / 50 for i in range(11)]
    angles = [*range(-10, 11), *[0] * 5]
    try:
        for _ in range(steps):
            optimiser.zero_grad()
            pixels = image.images()
            pixels = F.pad(pixels, (12,) * 4, mode="constant", value=0.5)
            pixels = _jitter(pixels, 8, generator)
            pixels = _scale(pixels, scales[_pick(len(scales), generator)])
            pixels = _rotate(pixels, angles[_pick(len(angles), generator)])
            pixels = _jitter(pixels, 4, generator)
            pixels = input_spec.normalise(pixels)
            pixels = F.interpolate(pixels, size=(224, 224), mode="bilinear", align_corners=True)
            model(pixels)
            loss = -outputs[LAYER][:, unit].mean()
            loss.backward()
            optimiser.step()
    finally:
        for handle in handles:
            handle.remove()
    return image.images().detach()


def _pick(count: int, generator: torch.Generator) -> int:
    return int(torch.randint(count, (1,), generator=generator))


def _jitter(pixels: torch.Tensor, amount: int, generator: torch.Generator) -> torch.Tensor:
    dy, dx = _pick(amount, generator), _pick(amount, generator)
    return pixels[:, :, dy : dy + pixels.shape[2] - amount, dx : dx + pixels.shape[3] - amount]


def _scale(pixels: torch.Tensor, factor: float) -> torch.Tensor:
    size = (int(pixels.shape[2] * factor), int(pixels.shape[3] * factor))
    return F.interpolate(pixels, size=size, mode="bilinear", align_corners=True)


def _rotate(pixels: torch.Tensor, degrees: float) -> torch.Tensor:
    angle = math.radians(degrees)
    theta = torch.tensor(
        [[[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]]],
        device=pixels.device,
    )
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, align_corners=False)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, help="ours: channels of layer3 (default all)")
    parser.add_argument("--lucent-channels", type=int, default=3, help="Lucent side: how many")
    parser.add_argument("--batch-size", type=int, help="ours: images per batch")
    parser.add_argument("--view-size", type=int, help="ours: upsample to this size, as Lucent")
    args = parser.parse_args()
    device = torch.device(args.device)
    loaded = load_model("torchvision:resnet18", input_size=224)
    model = loaded.module.to(device)
    spec = loaded.input
    for module in model.parameters():
        module.requires_grad_(True)  # as a freshly loaded model is, for Lucent's side
    channels = args.channels or 256
    print(f"machine: {machine_description(device)}")
    print(f"ResNet-18 {LAYER}, {args.size} px images, {args.steps} steps, model input 224 px")

    lucent_seconds, lucent_images = [], []
    for unit in range(args.lucent_channels):
        synchronise(device)
        started = time.perf_counter()
        lucent_images.append(lucent_equivalent(model, unit, spec, args.steps, args.size, unit))
        synchronise(device)
        lucent_seconds.append(time.perf_counter() - started)
        print(f"  lucent-equivalent channel {unit}: {lucent_seconds[-1]:.2f} s")
    lucent_units = list(range(args.lucent_channels))

    settings = RenderSettings(
        steps=args.steps, size=args.size, random_samples=1, view_size=args.view_size
    )
    ours_seconds_per_image, activations, same_units = [], [], []
    batches = render_units(
        model, Target(LAYER), range(channels), spec, settings, batch_size=args.batch_size
    )
    synchronise(device)
    started = time.perf_counter()
    for batch in batches:
        synchronise(device)
        seconds = time.perf_counter() - started
        ours_seconds_per_image.append(seconds / len(batch))
        activations += [unit.activations[0] for unit in batch]
        same_units += [unit.images for unit in batch if unit.unit in lucent_units]
        print(f"  ours: {len(batch)} channels in {seconds:.2f} s")
        started = time.perf_counter()

    lucent_rate = 1 / median(lucent_seconds)
    ours_rate = 1 / median(ours_seconds_per_image)
    print(
        f"lucent-equivalent: {lucent_rate:.4f} visualisations/s (median of {len(lucent_seconds)})"
    )
    print(
        f"ours:              {ours_rate:.4f} visualisations/s (median of {len(activations)} "
        f"channels in {len(ours_seconds_per_image)} batches; {median(ours_seconds_per_image):.3f}"
        " s each)"
    )
    print(f"ratio ours / lucent-equivalent: {ours_rate / lucent_rate:.2f}")
    objective = objectives.channels(LAYER, lucent_units)
    for view in (args.size, 224):
        measured = [
            float(
                evaluate(
                    model,
                    objective,
                    torch.cat(images).to(device),
                    spec,
                    device.type == "cuda",
                    (view, view),
                ).mean()
            )
            for images in (lucent_images, same_units)
        ]
        print(
            f"mean final activation of channels 0..{len(lucent_units) - 1} seen at {view} px: "
            f"lucent-equivalent {measured[0]:.3f}, ours {measured[1]:.3f}"
        )
    print(
        f"mean final activation over all {len(activations)} channels rendered by us: "
        f"{sum(activations) / max(1, len(activations)):.3f}"
    )


if __name__ == "__main__":
    main()
