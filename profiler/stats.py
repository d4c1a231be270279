"""Statistics over raw samples: the one place such formulas live (pure numpy/scipy, no torch).

* ``median_ci``: distribution-free confidence interval of the median from order statistics
  (binomial), as used by the timer's stopping rule. It needs no normality assumption, which matters
  for latency samples (right-skewed, with outliers from the OS and other tenants).
* ``summarize``: the summary the report and console show (median and its CI, mean, spread).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as sps


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Order-statistic CI of the median: ranks (j, k) with P(X_(j) <= m <= X_(k)) >= ``confidence``.

    With fewer than 6 samples no 95% interval exists; the full range is returned (honestly wide).
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = x.size
    if n == 0:
        return (math.nan, math.nan)
    if n == 1:
        return (float(x[0]), float(x[0]))
    alpha = 1.0 - confidence
    # Largest j such that P(Binom(n, .5) < j) <= alpha/2  -> lower rank j (1-based), upper n-j+1.
    j = int(sps.binom.ppf(alpha / 2, n, 0.5))
    if j < 1:
        return (float(x[0]), float(x[-1]))
    if sps.binom.cdf(j - 1, n, 0.5) > alpha / 2:
        j -= 1
    if j < 1:
        return (float(x[0]), float(x[-1]))
    return (float(x[j - 1]), float(x[n - j]))


def rel_ci_halfwidth(samples: Sequence[float], confidence: float = 0.95) -> float:
    """Half-width of the median's CI relative to the median (inf if undefined)."""
    x = np.asarray(samples, dtype=float)
    if x.size < 2:
        return math.inf
    lo, hi = median_ci(x, confidence)
    med = float(np.median(x))
    if med <= 0:
        return math.inf
    return (hi - lo) / 2.0 / med


@dataclass(frozen=True)
class Summary:
    """Summary of a sample (same unit as the samples)."""

    n: int
    median: float
    ci_low: float
    ci_high: float
    mean: float
    std: float
    min: float
    max: float
    iqr: float

    @property
    def rel_ci(self) -> float:
        """Half-width of the median's 95% CI relative to the median."""
        if not self.median or math.isnan(self.median):
            return math.inf
        return (self.ci_high - self.ci_low) / 2.0 / self.median


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Summary:
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan)
    lo, hi = median_ci(x, confidence)
    q1, q3 = np.percentile(x, [25, 75])
    return Summary(
        n=int(x.size), median=float(np.median(x)), ci_low=lo, ci_high=hi,
        mean=float(x.mean()), std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
        min=float(x.min()), max=float(x.max()), iqr=float(q3 - q1),
    )
