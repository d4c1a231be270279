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


# --------------------------------------------------------------------------- comparisons (gates)

@dataclass(frozen=True)
class RatioEstimate:
    """Candidate/baseline ratio of a quantile (the median by default) with a confidence interval and the log-scale standard error.

    ``log_se`` is the bootstrap standard error of ``log(ratio)``; the interval is the normal
    bootstrap interval ``exp(log(ratio) +- z * log_se)`` at ``confidence`` (two-sided).
    """

    ratio: float
    ci_low: float
    ci_high: float
    log_se: float
    confidence: float
    n_baseline: int
    n_candidate: int


def _boot_quantile(x: np.ndarray, q: float, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    if q == 0.5:
        return np.median(x[idx], axis=1)
    return np.quantile(x[idx], q, axis=1)


def ratio_of_quantiles(baseline: Sequence[float], candidate: Sequence[float], *, q: float = 0.5,
                       confidence: float = 0.95, n_boot: int = 1000, seed: int = 0,
                       noise_floor: float = 0.0) -> RatioEstimate:
    """Ratio ``quantile_q(candidate) / quantile_q(baseline)`` with a seeded bootstrap interval.

    Method: resample each side independently with replacement (``n_boot`` times, fixed ``seed``),
    take the standard deviation of ``log(Q(c*) / Q(b*))`` as the standard error of the log ratio,
    add ``noise_floor`` (a relative run-to-run variation that samples within one run cannot show)
    in quadrature, and form the normal interval on the log scale. The normal form (rather than
    bootstrap percentiles) gives smooth p-values (``one_sided_p``) that multiple-testing corrections
    need far into the tail. Samples must be positive (seconds).
    """
    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    if b.size == 0 or c.size == 0:
        raise ValueError("ratio_of_quantiles needs samples on both sides")
    if (b <= 0).any() or (c <= 0).any():
        raise ValueError("ratio_of_quantiles needs positive samples")
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    rng = np.random.default_rng(seed)
    log_ratio = math.log(float(np.quantile(c, q))) - math.log(float(np.quantile(b, q)))
    boot = np.log(_boot_quantile(c, q, n_boot, rng)) - np.log(_boot_quantile(b, q, n_boot, rng))
    se = float(boot.std(ddof=1)) if n_boot > 1 else 0.0
    se = math.hypot(se, math.log1p(noise_floor)) if noise_floor > 0 else se
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    return RatioEstimate(
        ratio=math.exp(log_ratio), ci_low=math.exp(log_ratio - z * se), ci_high=math.exp(log_ratio + z * se),
        log_se=se, confidence=confidence, n_baseline=int(b.size), n_candidate=int(c.size),
    )


def ratio_of_medians(baseline: Sequence[float], candidate: Sequence[float], *, confidence: float = 0.95,
                     n_boot: int = 1000, seed: int = 0, noise_floor: float = 0.0) -> RatioEstimate:
    """``ratio_of_quantiles`` at the median."""
    return ratio_of_quantiles(baseline, candidate, q=0.5, confidence=confidence, n_boot=n_boot, seed=seed,
                              noise_floor=noise_floor)


def one_sided_p(estimate: RatioEstimate, threshold_ratio: float) -> float:
    """p-value of H0: true ratio <= ``threshold_ratio`` against H1: ratio > threshold (normal, log scale)."""
    diff = math.log(estimate.ratio) - math.log(threshold_ratio)
    if estimate.log_se <= 0.0:
        return 0.0 if diff > 0 else 1.0
    return float(sps.norm.sf(diff / estimate.log_se))


def holm_adjust(pvalues: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values; reject H_i at family-wise level alpha iff adjusted p_i < alpha."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = (m - np.arange(m)) * p[order]
    adj_sorted = np.minimum(1.0, np.maximum.accumulate(scaled))
    out = np.empty(m)
    out[order] = adj_sorted
    return out


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if trials <= 0:
        return (0.0, 1.0)
    z = float(sps.norm.ppf(0.5 + confidence / 2.0))
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def clopper_pearson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval of a binomial proportion."""
    if trials <= 0:
        return (0.0, 1.0)
    a = 1.0 - confidence
    lo = 0.0 if successes == 0 else float(sps.beta.ppf(a / 2, successes, trials - successes + 1))
    hi = 1.0 if successes == trials else float(sps.beta.ppf(1 - a / 2, successes + 1, trials - successes))
    return (lo, hi)


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x) (the scaling exponent); nan with < 2 distinct x."""
    lx = np.log(np.asarray(x, dtype=float))
    ly = np.log(np.asarray(y, dtype=float))
    if lx.size < 2 or np.unique(lx).size < 2:
        return math.nan
    slope, _ = np.polyfit(lx, ly, 1)
    return float(slope)
