"""Gradient-free activation maximisation: an XDREAM-style genetic search (docs/algorithms.md §7).

Ponce et al. (Cell, 2019) evolved images for neurons recorded in monkey cortex, where no
gradient exists; the same search serves any scorer here, including networks whose forward cannot
be differentiated. The genes are a parameterisation's coefficients (a Fourier image's spectrum),
so even random children are smooth, natural-looking images.

Each generation, per unit: the best image survives unchanged; the other children each take every
gene from one of two parents (probability 0.5), parents drawn in proportion to the fitness
exp((score − best) / (std / 2)); then half of the genes mutate by N(0, 0.5²).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from analysis.featureviz.param import FourierImage

Scorer = Callable[[torch.Tensor], torch.Tensor]
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class GeneticSettings:
    population: int = 20
    elite: int = 1
    mutation_rate: float = 0.5
    mutation_sd: float = 0.5
    initial_sd: float = 0.5


@dataclass
class SearchResult:
    """The best image per unit (U, 3, H, W), its score, and the best score per generation."""

    images: torch.Tensor
    scores: torch.Tensor
    history: torch.Tensor


def evolve(
    scorer: Scorer,
    template: FourierImage,
    units: int,
    generations: int,
    settings: GeneticSettings = GeneticSettings(),
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> SearchResult:
    """Search ``generations`` generations for ``units`` independent populations at once.

    ``scorer`` receives images (units · population, 3, H, W) in [0, 1], unit-major (unit u's
    population is rows u·P … u·P + P − 1), and returns one score per image; it is called under
    ``torch.no_grad``. ``template`` gives the image size, spectrum scale and device.
    """
    generator = torch.Generator().manual_seed(seed)
    device = template.coefficients.device
    size = settings.population
    gene_shape = template.coefficients.shape[1:]
    genes = torch.randn((units, size, *gene_shape), generator=generator) * settings.initial_sd
    genes = genes.to(device)
    history = []
    with torch.no_grad():
        for generation in range(generations):
            scores = _score(scorer, template, genes)
            history.append(scores.max(1).values.cpu())
            if generation + 1 < generations:
                genes = _next_generation(genes, scores, settings, generator)
            if progress:
                progress(generation + 1, generations)
        best = scores.argmax(1)
        winners = genes[torch.arange(units, device=device), best]
        return SearchResult(
            images=template.images_of(winners).float().cpu(),
            scores=scores.max(1).values.float().cpu(),
            history=torch.stack(history, 1),
        )


def _score(scorer: Scorer, template: FourierImage, genes: torch.Tensor) -> torch.Tensor:
    units, size = genes.shape[:2]
    images = template.images_of(genes.reshape(units * size, *genes.shape[2:]))
    return scorer(images).float().reshape(units, size)


def _next_generation(
    genes: torch.Tensor,
    scores: torch.Tensor,
    settings: GeneticSettings,
    generator: torch.Generator,
) -> torch.Tensor:
    units, size = scores.shape
    device = genes.device
    best = scores.max(1, keepdim=True).values
    spread = scores.std(1, keepdim=True).clamp(min=1e-8)
    fitness = torch.exp((scores - best) / (spread / 2)).cpu()
    order = scores.argsort(1, descending=True)
    elite = genes.gather(
        1,
        order[:, : settings.elite]
        .reshape(units, -1, *[1] * (genes.dim() - 2))
        .expand(-1, -1, *genes.shape[2:]),
    )
    children = size - settings.elite
    parents = torch.multinomial(fitness, 2 * children, replacement=True, generator=generator)
    parents = parents.to(device).reshape(units, children, 2)
    rows = torch.arange(units, device=device)[:, None]
    mother, father = genes[rows, parents[..., 0]], genes[rows, parents[..., 1]]
    from_mother = torch.rand(mother.shape, generator=generator).to(device) < 0.5
    child = torch.where(from_mother, mother, father)
    mutate = torch.rand(child.shape, generator=generator).to(device) < settings.mutation_rate
    noise = torch.randn(child.shape, generator=generator).to(device) * settings.mutation_sd
    child = child + mutate * noise
    return torch.cat([elite, child], dim=1)
