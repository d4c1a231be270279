"""Pure statistics added for the gate: ratio interval, Holm, binomial intervals."""

from __future__ import annotations

import numpy as np
import pytest

from profiler.core.stats import (
    clopper_pearson_interval,
    holm_adjust,
    one_sided_p,
    ratio_of_medians,
    ratio_of_quantiles,
    wilson_interval,
)


def test_holm_matches_textbook_example():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 with running max
    np.testing.assert_allclose(holm_adjust(p), [0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([]).size == 0
    assert holm_adjust([0.9, 0.8]).max() <= 1.0


def test_ratio_interval_covers_true_ratio_and_is_seeded():
    rng = np.random.default_rng(3)
    b = rng.lognormal(np.log(1e-3), 0.05, 80)
    c = rng.lognormal(np.log(1.2e-3), 0.05, 80)
    e1 = ratio_of_medians(b, c, seed=1)
    e2 = ratio_of_medians(b, c, seed=1)
    assert e1 == e2
    assert e1.ci_low < 1.2 < e1.ci_high
    assert e1.ci_high - e1.ci_low < 0.1
    wider = ratio_of_medians(b, c, seed=1, noise_floor=0.05)
    assert wider.ci_high - wider.ci_low > e1.ci_high - e1.ci_low
    q = ratio_of_quantiles(b, c, q=0.1)
    assert 1.1 < q.ratio < 1.3


def test_one_sided_p_orders_with_threshold():
    rng = np.random.default_rng(4)
    e = ratio_of_medians(rng.lognormal(0, 0.05, 60), rng.lognormal(np.log(1.3), 0.05, 60))
    assert one_sided_p(e, 1.05) < 1e-6
    assert one_sided_p(e, 1.5) > 0.99


def test_binomial_intervals():
    lo, hi = clopper_pearson_interval(0, 300)
    assert lo == 0.0 and 0.009 < hi < 0.0125   # "rule of three": ~3/300
    lo, hi = wilson_interval(95, 100)
    assert lo < 0.95 < hi
    with pytest.raises(ValueError):
        ratio_of_medians([], [1.0])
