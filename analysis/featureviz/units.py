"""Visualise many units at once: every channel of a layer, or every class of the output.

This is what the worker calls. Units are rendered as batches of one image per unit (``diversity``
images per unit when asked), as large as the device's memory allows, by gradient ascent or by the
genetic search. Each unit's result carries its final activation and, for comparison, its mean
activation over random Fourier images of the same parameterisation, so a reader can tell a
visualisation that truly drives its neuron from one that merely exists.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from analysis.featureviz import objectives
from analysis.featureviz.genetic import GeneticSettings, evolve
from analysis.featureviz.objectives import Objective
from analysis.featureviz.param import fourier_image
from analysis.featureviz.render import bf16_pays, evaluate, frozen, render
from analysis.featureviz.targets import Method, Target
from analysis.hooks import model_device
from analysis.models import InputSpec

ProgressCallback = Callable[[int, int], None]
CPU_BATCH = 64
MAX_BATCH = 1024
# Weight of the diversity term relative to the unit's own objective (whose scale varies by layer:
# the term is multiplied by the mean absolute objective of a random start).
DIVERSITY_WEIGHT = 0.5


@dataclass(frozen=True)
class RenderSettings:
    """Everything that changes the images: a stored result is reused only for equal settings."""

    steps: int = 512
    size: int = 128
    lr: float = 0.05
    decay: float = 1.0
    diversity: int = 0  # 0: one image per unit; N ≥ 2: N images pushed apart from each other
    method: Method = Method.GRADIENT
    seed: int = 0
    random_samples: int = 4
    # The size at which the network sees the images. None: channels are seen at the image's own
    # size (as Lucid does: one image pixel is one input pixel, the scale of the NFs), classes at
    # the model's input size (a classifier head may need it). Lucent upsamples to 224 instead.
    view_size: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method(self.method))  # accept "gradient" as well

    def as_params(self) -> dict[str, Any]:
        return {**asdict(self), "method": self.method.value}

    @property
    def images_per_unit(self) -> int:
        return max(1, self.diversity)

    @property
    def population_factor(self) -> float:
        """Cost of a step relative to a gradient step: the genetic search forwards a population
        of images per unit but takes no gradients (a backward costs about one forward)."""
        return GeneticSettings().population / 2 if self.method is Method.XDREAM else 1.0

    def view(self, target: Target, input_spec: InputSpec) -> tuple[int, int]:
        """The (height, width) at which the network sees the images of ``target``."""
        if self.view_size:
            return self.view_size, self.view_size
        return (self.size, self.size) if target.layer is not None else input_spec.size


@dataclass
class UnitImages:
    """One unit's images (V, 3, H, W) in [0, 1], their activations, and the random baseline."""

    unit: int
    images: torch.Tensor
    activations: list[float]
    random_activation: float


def unit_objective(target: Target, units: Sequence[int]) -> Objective:
    """Image i maximises unit ``units[i]`` of ``target``."""
    if target.layer is None:
        return objectives.class_logits(units, output=target.output)
    return objectives.channels(target.layer, units)


def render_units(
    model: nn.Module,
    target: Target,
    units: Sequence[int],
    input_spec: InputSpec,
    settings: RenderSettings = RenderSettings(),
    batch_size: int | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[list[UnitImages]]:
    """Render ``units`` batch by batch, yielding each batch's results as soon as they exist.

    ``progress(done, total)`` counts optimisation steps over all batches.
    """
    per_unit = settings.images_per_unit
    device = model_device(model)
    chunk = max(1, (batch_size or default_batch_size(device)) // per_unit)
    units = list(units)
    batches = [units[i : i + chunk] for i in range(0, len(units), chunk)]
    total = settings.steps * len(batches)
    for number, batch in enumerate(batches):

        def step(done: int, _steps: int, base: int = number * settings.steps) -> None:
            if progress:
                progress(base + done, total)

        yield _render_batch(model, target, batch, input_spec, settings, step)


def estimate_seconds(
    model: nn.Module,
    target: Target,
    count: int,
    input_spec: InputSpec,
    settings: RenderSettings = RenderSettings(),
    batch_size: int | None = None,
) -> float:
    """Seconds ``render_units`` will take for ``count`` units, from two timed trial steps of a
    full batch (the first step, which warms caches up, is not counted)."""
    device = model_device(model)
    per_unit = settings.images_per_unit
    chunk = max(1, (batch_size or default_batch_size(device)) // per_unit)
    trial = min(count, chunk)
    objective = unit_objective(target, [0] * trial * per_unit)
    images = fourier_image(trial * per_unit, settings.size, device=device)
    view = settings.view(target, input_spec)
    render(model, objective, images, input_spec, steps=1, view_size=view)
    started = time.perf_counter()
    render(model, objective, images, input_spec, steps=2, redirect_steps=0, view_size=view)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    per_step = (time.perf_counter() - started) / 2
    factor = settings.population_factor
    return per_step * factor * settings.steps * math.ceil(count / chunk)


def default_batch_size(device: torch.device) -> int:
    """Images per batch: bounded on a CPU (larger batches gain nothing there), and on a GPU as
    many as fit in three quarters of its free memory at a conservative 24 MiB per image."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _total = torch.cuda.mem_get_info(device)
    return int(max(1, min(MAX_BATCH, 0.75 * free // (24 << 20))))


def _render_batch(
    model: nn.Module,
    target: Target,
    units: list[int],
    input_spec: InputSpec,
    settings: RenderSettings,
    progress: ProgressCallback,
) -> list[UnitImages]:
    per_unit = settings.images_per_unit
    per_image = [unit for unit in units for _ in range(per_unit)]
    objective = unit_objective(target, per_image)
    device = model_device(model)
    view = settings.view(target, input_spec)
    random_scores = _random_scores(
        model, objective, len(per_image), input_spec, settings, device, view
    )
    if settings.method is Method.XDREAM:
        images, scores = _evolve(model, target, units, input_spec, settings, device, progress)
    else:
        if per_unit > 1 and target.layer is not None:
            weight = DIVERSITY_WEIGHT * float(random_scores.abs().mean().clamp(min=1e-3))
            objective = objective - weight * objectives.diversity(target.layer, group=per_unit)
        generator = torch.Generator().manual_seed(settings.seed)
        param = fourier_image(
            len(per_image), settings.size, decay=settings.decay, device=device, generator=generator
        )
        result = render(
            model,
            objective,
            param,
            input_spec,
            steps=settings.steps,
            lr=settings.lr,
            seed=settings.seed,
            progress=progress,
            view_size=view,
        )
        images = result.images
        # Scores without the diversity term: the unit's own activation.
        own = unit_objective(target, per_image)
        scores = evaluate(model, own, images.to(device), input_spec, view_size=view)
    images = input_spec.as_seen(images)
    return [
        UnitImages(
            unit=unit,
            images=images[i * per_unit : (i + 1) * per_unit],
            activations=[float(v) for v in scores[i * per_unit : (i + 1) * per_unit]],
            random_activation=float(random_scores[i * per_unit : (i + 1) * per_unit].mean()),
        )
        for i, unit in enumerate(units)
    ]


def _random_scores(
    model: nn.Module,
    objective: Objective,
    count: int,
    input_spec: InputSpec,
    settings: RenderSettings,
    device: torch.device,
    view: tuple[int, int],
) -> torch.Tensor:
    """Each image's objective averaged over random Fourier images (the optimiser's start)."""
    generator = torch.Generator().manual_seed(settings.seed + 1)
    total = torch.zeros(count)
    for _ in range(settings.random_samples):
        param = fourier_image(
            count, settings.size, decay=settings.decay, device=device, generator=generator
        )
        with torch.no_grad():
            images = param.images()
        total += evaluate(model, objective, images, input_spec, view_size=view)
    return total / max(1, settings.random_samples)


def _evolve(
    model: nn.Module,
    target: Target,
    units: list[int],
    input_spec: InputSpec,
    settings: RenderSettings,
    device: torch.device,
    progress: ProgressCallback,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The genetic search, one population per image (``diversity`` independent searches per
    unit); no gradients are taken, so any model will do."""
    genetic = GeneticSettings()
    searches = [unit for unit in units for _ in range(settings.images_per_unit)]
    population = [unit for unit in searches for _ in range(genetic.population)]
    objective = unit_objective(target, population)
    autocast = bf16_pays(device)
    view = settings.view(target, input_spec)

    def scorer(images: torch.Tensor) -> torch.Tensor:
        return evaluate(model, objective, images, input_spec, autocast, view).to(device)

    template = fourier_image(1, settings.size, decay=settings.decay, device=device)
    with frozen(model):
        found = evolve(
            scorer,
            template,
            len(searches),
            settings.steps,
            genetic,
            seed=settings.seed,
            progress=progress,
        )
    own = unit_objective(target, searches)
    scores = evaluate(model, own, found.images.to(device), input_spec, view_size=view)
    return found.images, scores
