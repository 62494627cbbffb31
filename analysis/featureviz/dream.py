"""DeepDream: amplify whatever a layer sees in a real image, at growing scales
(docs/algorithms.md §7).

Mordvintsev et al. (2015): maximise the mean square of a layer's activations starting from an
image. Working from a small copy upwards ("octaves") lets large structures emerge first; at each
octave the detail that the smaller copy had lost is added back before optimising further.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from analysis.exported import input_constraints
from analysis.featureviz.objectives import deepdream
from analysis.featureviz.param import fourier_from_images
from analysis.featureviz.render import render
from analysis.featureviz.transform import Padding, RobustnessTransform, resize
from analysis.models import InputSpec

ProgressCallback = Callable[[int, int], None]
# Small moves only: the image must stay registered with the photograph it came from.
DREAM_TRANSFORM = RobustnessTransform(
    pad=0, jitter=8, scale=(1.0, 1.0), degrees=0.0, late_jitter=0, padding=Padding.REFLECT
)


def dream(
    model: nn.Module,
    image: torch.Tensor,
    layer: str,
    input_spec: InputSpec,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 32,
    lr: float = 0.05,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """Dream ``image`` (3, H, W) in [0, 1] at ``layer``; returns the dreamt image, same size.

    The network sees each octave at that octave's own size (convolutions run at any size), so
    ``input_spec`` contributes only its normalisation (and, for a greyscale model, a grey
    result). The model must be on ``image``'s device.
    """
    sizes = octave_sizes(image.shape[-2:], octaves, octave_scale)
    require_octaves(model, sizes)
    original = image[None].float()
    current = resize(original, sizes[0])
    previous_original = current
    for octave, size in enumerate(sizes):
        if octave:
            scaled_original = resize(original, size)
            detail = scaled_original - resize(previous_original, size)
            current = (resize(current, size) + detail).clamp(0, 1)
            previous_original = scaled_original
        result = render(
            model,
            deepdream(layer),
            fourier_from_images(current),
            input_spec,
            steps=steps,
            lr=lr,
            transform=DREAM_TRANSFORM,
            redirect_steps=0,
            seed=seed + octave,
            progress=_octave_progress(progress, octave, octaves, steps),
            view_size=size,
        )
        current = result.images.to(image.device)
    return input_spec.as_seen(current)[0]


def octave_sizes(
    size: tuple[int, int], octaves: int, octave_scale: float = 1.4
) -> list[tuple[int, int]]:
    """The (height, width) of each octave, smallest first, the last the image's own."""
    height, width = size
    return [
        (max(8, round(height / octave_scale**k)), max(8, round(width / octave_scale**k)))
        for k in reversed(range(octaves))
    ]


def require_octaves(model: nn.Module, sizes: list[tuple[int, int]]) -> None:
    """Refuse, before any octave is dreamt, a dream whose octaves a program cannot take (an
    exported program of fixed size takes none but the input size)."""
    accepted = input_constraints(model)
    for height, width in sizes:
        accepted.require(height, width, f"the {height}×{width} px octave of this dream")


def _octave_progress(
    progress: ProgressCallback | None, octave: int, octaves: int, steps: int
) -> ProgressCallback | None:
    if progress is None:
        return None
    return lambda step, _total: progress(octave * steps + step, octaves * steps)
