"""The selectivity indexes of docs/algorithms.md §4, from responses to perturbed top patches.

Every function takes a neuron's unperturbed responses ``a`` (K,) and perturbed responses
``a_prime`` (K,) or (K, V), read at the same map positions under the same conditions, and returns
plain numbers. Sums run over the top-K images j.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from analysis.selectivity.perturbations import ORIENTATION_ANGLES, SYMMETRY_AXES

HISTOGRAM_BINS = 10
POPULATION_THRESHOLD = 0.1  # classes at or above this share of the weight form the population code


def _ratio(a_prime: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Σ_j a'_j / Σ_j a_j, per variant."""
    total = float(np.sum(a))
    return np.sum(a_prime, axis=0) / total if total > 0 else np.full(a_prime.shape[1:], np.nan)


def colour_index(a: np.ndarray, a_grey: np.ndarray) -> tuple[float, float]:
    """(CSI, bounded CSI). CSI = 1 − Σa'_j / Σa_j; it is negative when grey excites more.

    Bounded: mean_j [1 − clip(a'_(j) / a_(j), 0, 1)] with both curves sorted descending.
    """
    csi = 1.0 - float(_ratio(a_grey, a))
    a_sorted = np.sort(a)[::-1]
    grey_sorted = np.sort(a_grey)[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(a_sorted > 0, grey_sorted / a_sorted, 1.0)
    bounded = float(np.mean(1.0 - np.clip(relative, 0.0, 1.0)))
    return csi, bounded


def orientation_index(a: np.ndarray, a_rotated: np.ndarray) -> tuple[float, list[float]]:
    """(OI, tuning curve). OI = mean_θ clip(1 − Σa'_j(θ) / Σa_j, 0, 1).

    The tuning curve is the relative response Σa'_j(θ) / Σa_j at θ = 15°, …, 345°: 1 means
    rotating the patch by θ leaves the response intact, 0 that it abolishes it.
    """
    curve = _ratio(a_rotated, a)
    index = float(np.mean(np.clip(1.0 - curve, 0.0, 1.0)))
    return index, [float(v) for v in curve]


def symmetry_index(a: np.ndarray, a_mirrored: np.ndarray) -> tuple[float, list[float]]:
    """(SI, per-axis). SI = mean over the four axes of clip(Σa'_j / Σa_j, 0, 1)."""
    per_axis = np.clip(_ratio(a_mirrored, a), 0.0, 1.0)
    return float(np.mean(per_axis)), [float(v) for v in per_axis]


def shape_index(a: np.ndarray, a_shuffled: np.ndarray) -> float:
    """1 − Σa'_j / Σa_j for pixel-shuffled patches: high when the spatial layout matters."""
    return 1.0 - float(_ratio(a_shuffled, a))


@dataclass(frozen=True)
class ClassSelectivity:
    index: float
    top_class: str | None
    distribution: dict[str, float]  # classes with a share ≥ POPULATION_THRESHOLD
    population_code: int


def class_index(
    values: np.ndarray, labels: Sequence[str | None], threshold: float = 1.0
) -> ClassSelectivity:
    """Class selectivity from the labels of the top images (docs/algorithms.md §4).

    w_j = a_j / a_1 (negative weights count as 0); f_c = Σ_{j∈c} w_j / Σ_j w_j; M = number of
    classes, by descending f_c, needed for the cumulative f to reach ``threshold``;
    CSI = (N − M) / (N − 1).
    """
    weights = np.clip(values / values[0], 0.0, None) if values[0] > 0 else np.zeros_like(values)
    total = float(weights.sum())
    n = len(values)
    if total <= 0 or n < 2 or all(label is None for label in labels):
        return ClassSelectivity(float("nan"), None, {}, 0)
    shares: dict[str, float] = {}
    for weight, label in zip(weights, labels, strict=True):
        if label is not None and weight > 0:
            shares[label] = shares.get(label, 0.0) + float(weight) / total
    ranked = sorted(shares.items(), key=lambda item: (-item[1], item[0]))
    cumulative, needed = 0.0, 0
    for _, share in ranked:
        cumulative += share
        needed += 1
        if cumulative >= threshold - 1e-9:
            break
    distribution = {label: share for label, share in ranked if share >= POPULATION_THRESHOLD}
    return ClassSelectivity(
        index=(n - needed) / (n - 1),
        top_class=ranked[0][0] if ranked else None,
        distribution=distribution,
        population_code=len(distribution),
    )


@dataclass
class NeuronIndexes:
    """Every index of one neuron, with the details a dashboard plots."""

    color: float
    color_bounded: float
    orientation: float
    orientation_curve: list[float]
    symmetry: float
    symmetry_axes: list[float]
    shape: float
    klass: ClassSelectivity
    extra: dict[str, object] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        return {
            "color": self.color,
            "orientation": self.orientation,
            "symmetry": self.symmetry,
            "class": self.klass.index,
            "shape": self.shape,
        }

    def details(self) -> dict[str, object]:
        return {
            "color_bounded": self.color_bounded,
            "orientation_angles": list(ORIENTATION_ANGLES),
            "orientation_curve": self.orientation_curve,
            "symmetry_axes": dict(zip(map(str, SYMMETRY_AXES), self.symmetry_axes, strict=True)),
            "class_distribution": self.klass.distribution,
            "top_class": self.klass.top_class,
            "population_code": self.klass.population_code,
        }


def neuron_indexes(
    responses: dict[str, np.ndarray], values: np.ndarray, labels: Sequence[str | None]
) -> NeuronIndexes:
    """All perturbation indexes of one neuron from the engine's responses (K, V) per family."""
    a = responses["identity"][:, 0]
    color, bounded = colour_index(a, responses["color"][:, 0])
    orientation, curve = orientation_index(a, responses["orientation"])
    symmetry, axes = symmetry_index(a, responses["symmetry"])
    return NeuronIndexes(
        color=color,
        color_bounded=bounded,
        orientation=orientation,
        orientation_curve=curve,
        symmetry=symmetry,
        symmetry_axes=axes,
        shape=shape_index(a, responses["shape"][:, 0]),
        klass=class_index(values, labels),
    )


def population_summary(
    indexes: dict[str, list[float]], threshold: float = 0.5
) -> dict[str, dict[str, object]]:
    """Per index: a 10-bin histogram on [0, 1], the count outside it, and the share above
    ``threshold`` among the neurons that have a value."""
    summary: dict[str, dict[str, object]] = {}
    for name, raw in indexes.items():
        values = np.array([v for v in raw if v is not None and np.isfinite(v)], dtype=float)
        counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=HISTOGRAM_BINS, range=(0, 1))
        summary[name] = {
            "bins": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
            "below_zero": int(np.sum(values < 0)),
            "neurons": int(values.size),
            "threshold": threshold,
            "fraction_above": float(np.mean(values > threshold)) if values.size else None,
            "mean": float(values.mean()) if values.size else None,
        }
    return summary
