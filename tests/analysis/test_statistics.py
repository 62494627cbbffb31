"""The two-sample Kolmogorov–Smirnov test against answers counted by hand."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from analysis.statistics import correlations, ks_two_sample


def test_identical_samples_have_no_difference():
    values = np.array([0.1, 0.5, 0.5, 0.9])
    assert ks_two_sample(values, values) == (0.0, 1.0)


def test_separated_samples_reach_the_smallest_p_value():
    """Every path but the two along the edges keeps D < 1: p = 2 / C(10, 5)."""
    statistic, p = ks_two_sample(np.arange(5), np.arange(5) + 10)
    assert statistic == 1.0 and p == pytest.approx(2 / comb(10, 5))


def test_a_half_shift_counted_by_hand():
    """a = {1, 2}, b = {2, 3}: D = 1/2 (at x = 1, and at x = 2 after both steps); of the six
    lattice paths from (0, 0) to (2, 2), |i − j| < 1 all along holds for none, so p = 1."""
    assert ks_two_sample(np.array([1.0, 2.0]), np.array([2.0, 3.0])) == (0.5, 1.0)


def test_exact_p_values_equal_scipys():
    """Reference values from scipy 1.x ``ks_2samp(..., method="exact")``."""
    a = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.8])
    b = np.array([0.25, 0.5, 0.55, 0.6, 0.9, 0.95, 1.0])
    statistic, p = ks_two_sample(a, b)
    assert statistic == pytest.approx(0.6904761904761905) and p == pytest.approx(0.0675990675990676)
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=120), rng.normal(0.3, size=80)
    assert ks_two_sample(first, second) == pytest.approx((0.1375, 0.30525428901929985))


def test_large_samples_use_the_limit_within_a_few_percent_of_scipys_exact_count():
    """scipy: D = 0.2067, exact p = 6.07e-05, its asymptotic p = 5.67e-05."""
    rng = np.random.default_rng(1)
    statistic, p = ks_two_sample(rng.normal(size=300), rng.normal(0.25, size=200))
    assert statistic == pytest.approx(0.20666666666666667)
    assert p == pytest.approx(6.0732e-05, rel=0.1)


def test_an_empty_sample_has_no_answer():
    statistic, p = ks_two_sample(np.array([]), np.array([1.0]))
    assert np.isnan(statistic) and np.isnan(p)


def test_correlations_find_a_copied_column_and_leave_constant_ones_undefined():
    rng = np.random.default_rng(2)
    values = rng.normal(size=50)
    candidates = np.column_stack([rng.normal(size=50), 3 * values + 1, -values, np.ones(50)])
    r = correlations(values, candidates)
    assert r[1] == pytest.approx(1.0) and r[2] == pytest.approx(-1.0)
    assert abs(r[0]) < 0.5 and np.isnan(r[3])
    assert r[0] == pytest.approx(np.corrcoef(values, candidates[:, 0])[0, 1])
