"""Order-statistic median CI: coverage and edge cases."""

from __future__ import annotations

import math

import numpy as np

from profiler.core.stats import median_ci, rel_ci_halfwidth, summarize


def test_median_ci_brackets_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 0.1, 50)
    lo, hi = median_ci(x)
    assert lo <= np.median(x) <= hi
    lo2, hi2 = median_ci(rng.lognormal(0, 0.1, 800))
    assert (hi2 - lo2) < (hi - lo)


def test_median_ci_coverage_is_at_least_nominal():
    rng = np.random.default_rng(1)
    true_median = 1.0  # lognormal(0, s) has median exp(0) = 1
    hits = 0
    trials = 2000
    for _ in range(trials):
        lo, hi = median_ci(rng.lognormal(0, 0.3, 15))
        hits += lo <= true_median <= hi
    assert hits / trials >= 0.94


def test_tiny_samples_give_full_range_not_a_false_precision():
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)
    assert median_ci([2.0]) == (2.0, 2.0)
    assert all(math.isnan(v) for v in median_ci([]))
    assert rel_ci_halfwidth([1.0]) == math.inf


def test_summarize_values():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.n == 5 and s.median == 3.0 and s.min == 1.0 and s.max == 100.0
    assert s.ci_low <= 3.0 <= s.ci_high
