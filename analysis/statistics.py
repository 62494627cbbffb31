"""Two-sample statistics for comparing populations of neurons (runs side by side).

Plain numpy: the dashboard computes these while it reads, without torch or scipy.
"""

from __future__ import annotations

from math import comb, exp, sqrt

import numpy as np

EXACT_LIMIT = 10_000  # n · m up to which the p-value is counted exactly (scipy's default too)


def ks_two_sample(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """The two-sided Kolmogorov–Smirnov statistic D = sup |F₁ − F₂| of two samples, and its
    p-value: exact (lattice paths, Hodges 1957) when n · m ≤ EXACT_LIMIT, else Kolmogorov's
    limit with Stephens' small-sample correction. Ties are allowed (D is then still exact; the
    p-value is conservative). (nan, nan) when a sample is empty."""
    a = np.sort(np.asarray(first, dtype=float))
    b = np.sort(np.asarray(second, dtype=float))
    n, m = a.size, b.size
    if n == 0 or m == 0:
        return float("nan"), float("nan")
    points = np.concatenate([a, b])
    steps = np.abs(
        np.searchsorted(a, points, side="right") * m - np.searchsorted(b, points, side="right") * n
    )
    largest = int(steps.max())  # D · n · m, a whole number
    statistic = largest / (n * m)
    if n * m <= EXACT_LIMIT:
        return statistic, _exact_p(n, m, largest)
    return statistic, _limit_p(n, m, statistic)


def _exact_p(n: int, m: int, largest: int) -> float:
    """P(D ≥ d) under the null: 1 − (paths from (0, 0) to (n, m) that keep |i·m − j·n| below
    d·n·m) / C(n + m, n), counted with exact integers."""
    if largest == 0:
        return 1.0
    paths = [0] * (m + 1)
    for i in range(n + 1):
        for j in range(m + 1):
            if abs(i * m - j * n) >= largest:
                paths[j] = 0
            elif i == 0 and j == 0:
                paths[j] = 1
            else:
                paths[j] = (paths[j] if i else 0) + (paths[j - 1] if j else 0)
    return min(1.0, max(0.0, 1.0 - paths[m] / comb(n + m, n)))


def _limit_p(n: int, m: int, statistic: float) -> float:
    """Kolmogorov's distribution Q(λ) = 2 Σ (−1)^(k−1) exp(−2k²λ²) at Stephens' λ."""
    effective = sqrt(n * m / (n + m))
    scaled = (effective + 0.12 + 0.11 / effective) * statistic
    if scaled < 0.2:
        return 1.0
    total = sum((-1) ** (k - 1) * exp(-2 * k * k * scaled * scaled) for k in range(1, 101))
    return min(1.0, max(0.0, 2 * total))


def correlations(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Pearson's r between ``values`` (n,) and each column of ``candidates`` (n, m); nan where
    either is constant (r is undefined there)."""
    x = np.asarray(values, dtype=np.float64)
    y = np.asarray(candidates, dtype=np.float64)
    x = x - x.mean()
    y = y - y.mean(axis=0)
    scale = np.sqrt((x * x).sum()) * np.sqrt((y * y).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x @ y) / scale
    return np.where(scale > 0, np.clip(r, -1.0, 1.0), np.nan)
