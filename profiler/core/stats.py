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

from profiler.core.lazy import lazy_import

#: scipy.stats takes ~0.3 s to import; records (which summarise samples) are read by every command
sps = lazy_import("scipy.stats")


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
    df: float = math.inf             # degrees of freedom of the t interval (inf: normal)
    processes_baseline: int = 1
    processes_candidate: int = 1
    spread_baseline: float | None = None    # observed between-process SD of the log quantile
    spread_candidate: float | None = None


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
    """p-value of H0: true ratio <= ``threshold_ratio`` against H1: ratio > threshold (log scale;
    Student's t with ``estimate.df`` degrees of freedom, the normal when that is infinite)."""
    diff = math.log(estimate.ratio) - math.log(threshold_ratio)
    if estimate.log_se <= 0.0:
        return 0.0 if diff > 0 else 1.0
    if math.isfinite(estimate.df):
        return float(sps.t.sf(diff / estimate.log_se, estimate.df))
    return float(sps.norm.sf(diff / estimate.log_se))


# --------------------------------------------------------------------------- replicated comparisons

def auto_quantile(device: str) -> float:
    """The quantile ``statistic="auto"`` compares: q10 on CPU, the median on CUDA.

    On a shared CPU, interference from other processes only ever adds time, and it comes in bursts:
    medians of separate processes of identical code differ by 10-30% on a 2-core runner while their
    10% quantiles agree within about 1-3%, so the low quantile tracks the kernel. CUDA device time
    (graph replay) has no such tail, and its median is the usual statistic.
    """
    return 0.10 if device == "cpu" else 0.5



@dataclass(frozen=True)
class VarianceComponent:
    """A variance (log scale) and its degrees of freedom: one term of a Welch-Satterthwaite sum."""

    var: float
    df: float


def moderated_variance(sample_var: float, sample_df: float, prior_var: float, prior_df: float) -> VarianceComponent:
    """Empirical-Bayes shrinkage of a variance towards a prior (limma's moderated t; Smyth 2004).

    ``(prior_df * prior_var + sample_df * sample_var) / (prior_df + sample_df)`` with
    ``prior_df + sample_df`` degrees of freedom: three worker processes give a variance estimate with
    two degrees of freedom, far too few to trust alone; the machine's calibrated between-process
    variance stabilises it, and a side whose processes really disagree still shows it.
    """
    if sample_df <= 0:
        return VarianceComponent(prior_var, prior_df)
    if math.isinf(prior_df):
        return VarianceComponent(prior_var, math.inf)
    df = prior_df + sample_df
    return VarianceComponent((prior_df * prior_var + sample_df * sample_var) / df, df)


def welch_df(components: Sequence[VarianceComponent]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates."""
    total = sum(c.var for c in components)
    denom = sum(c.var ** 2 / c.df for c in components if c.var > 0 and math.isfinite(c.df) and c.df > 0)
    if total <= 0:
        return math.inf
    if denom <= 0:
        return math.inf
    return total ** 2 / denom


def group_log_quantiles(groups: Sequence[Sequence[float]], q: float = 0.5) -> np.ndarray:
    """``log(quantile_q(group))`` of each group of positive samples (one per worker process)."""
    return np.array([math.log(float(np.quantile(np.asarray(g, dtype=float), q))) for g in groups])


def within_log_quantile_var(samples: Sequence[float], q: float, n_boot: int, rng: np.random.Generator) -> float:
    """Bootstrap variance of ``log(quantile_q)`` of one group (sampling error within one process)."""
    x = np.asarray(samples, dtype=float)
    if x.size < 2 or n_boot < 2:
        return 0.0
    return float(np.log(_boot_quantile(x, q, n_boot, rng)).var(ddof=1))


#: A process is set aside as slow when its log statistic exceeds the side's median by more than this
#: many robust SDs (1.4826 x MAD), and by more than ``SLOW_MIN`` (log scale).
SLOW_MADS = 3.0
SLOW_MIN = math.log(1.10)


def slow_outliers_removed(y: np.ndarray) -> np.ndarray:
    """The per-process values without the *slow* outliers (needs at least 4 processes).

    Interference only adds time, and on a shared machine a worker process now and then runs 1.5-2x
    slower for its whole life (thread placement, a neighbour); a kernel change moves every process
    alike. So processes beyond ``median + max(SLOW_MADS * 1.4826 * MAD, SLOW_MIN)`` are left out, at
    most a third of them; fast outliers are kept.
    """
    if y.size < 4:
        return y
    med = float(np.median(y))
    mad = float(np.median(np.abs(y - med))) * 1.4826
    keep = y <= med + max(SLOW_MADS * mad, SLOW_MIN)
    if keep.sum() < y.size - y.size // 3:
        order = np.argsort(y)[: y.size - y.size // 3]
        keep = np.zeros(y.size, dtype=bool)
        keep[order] = True
    return y[keep]


def replicated_ratio(baseline_groups: Sequence[Sequence[float]], candidate_groups: Sequence[Sequence[float]], *,
                     q: float = 0.5, confidence: float = 0.95, process_sd: float, process_df: float,
                     run_sd: float = 0.0, run_df: float = math.inf, runs: int = 2,
                     n_boot: int = 1000, seed: int = 0) -> RatioEstimate:
    """Candidate/baseline ratio of a latency quantile from samples grouped by worker process.

    Method (a two-level random-effects model on the log scale; worker processes are the unit of
    replication, as in pyperf and asv):

    * per process ``i`` of a side, ``y_i = log quantile_q(samples of i)``; slow outlier processes are set
      aside (``slow_outliers_removed``, with 4 or more processes); the side's estimate is the mean of
      its ``y_i`` and the ratio ``exp(mean_c - mean_b)``;
    * each side's between-process variance is the sample variance of its ``y_i`` (``k - 1`` degrees of
      freedom) moderated towards the machine's calibrated ``process_sd**2`` with ``process_df``
      (``moderated_variance``); the side contributes ``var / k``. A side measured in one process has
      no between-process information: it contributes ``process_sd**2`` plus its bootstrap sampling
      variance;
    * ``runs`` of the two sides that are separate runs (2 for two sweeps, 0 when both come from
      one interleaved job) each add the between-run variance ``run_sd**2`` (``run_df``);
    * the standard error is the square root of the sum, its degrees of freedom Welch-Satterthwaite's,
      and the interval ``exp(log ratio +- t * se)``.

    Samples must be positive (seconds).
    """
    rng = np.random.default_rng(seed)
    parts: list[VarianceComponent] = []
    centres: list[float] = []
    spreads: list[float | None] = []
    counts: list[int] = []
    for groups in (baseline_groups, candidate_groups):
        groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
        if not groups:
            raise ValueError("replicated_ratio needs samples on both sides")
        if any((g <= 0).any() for g in groups):
            raise ValueError("replicated_ratio needs positive samples")
        y = slow_outliers_removed(group_log_quantiles(groups, q))
        k = y.size
        centres.append(float(y.mean()))
        counts.append(int(sum(g.size for g in groups)))
        if k >= 2:
            sd = float(y.std(ddof=1))
            spreads.append(sd)
            m = moderated_variance(sd ** 2, k - 1, process_sd ** 2, process_df)
            parts.append(VarianceComponent(m.var / k, m.df))
        else:
            spreads.append(None)
            parts.append(VarianceComponent(process_sd ** 2, process_df))
            parts.append(VarianceComponent(within_log_quantile_var(groups[0], q, n_boot, rng), max(1.0, groups[0].size - 1.0)))
    for _ in range(max(0, runs)):
        parts.append(VarianceComponent(run_sd ** 2, run_df))
    var = sum(p.var for p in parts)
    se = math.sqrt(var)
    df = welch_df(parts)
    crit = float(sps.t.ppf(0.5 + confidence / 2.0, df)) if math.isfinite(df) else float(sps.norm.ppf(0.5 + confidence / 2.0))
    log_ratio = centres[1] - centres[0]
    kb = len([g for g in baseline_groups if len(g)])
    kc = len([g for g in candidate_groups if len(g)])
    return RatioEstimate(
        ratio=math.exp(log_ratio), ci_low=math.exp(log_ratio - crit * se), ci_high=math.exp(log_ratio + crit * se),
        log_se=se, confidence=confidence, n_baseline=counts[0], n_candidate=counts[1], df=df,
        processes_baseline=kb, processes_candidate=kc, spread_baseline=spreads[0], spread_candidate=spreads[1])


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


def history_ratio(run_centres: Sequence[float], candidate_groups: Sequence[Sequence[float]], *, q: float = 0.5,
                  confidence: float = 0.95, prior_sd: float, prior_df: float, n_baseline: int = 0) -> RatioEstimate:
    """Candidate/baseline ratio against the history of ``N`` earlier runs (asv's and Bencher's way).

    ``run_centres`` holds each history run's estimate (the mean over its processes of
    ``log quantile_q``). Their sample variance (``N - 1`` degrees of freedom, moderated towards
    ``prior_sd**2``, the calibrated variance of one run's estimate) is the between-run variance as
    it really occurs; the baseline is their mean (variance ``s2 / N``) and the candidate, one new
    run from the same process, adds ``s2``: a prediction interval ``exp(log ratio +- t * sqrt(s2 (1 + 1/N)))``.
    """
    r = np.asarray(run_centres, dtype=float)
    if r.size < 2:
        raise ValueError("history_ratio needs at least two history runs")
    groups = [np.asarray(g, dtype=float) for g in candidate_groups if len(g)]
    if not groups or any((g <= 0).any() for g in groups):
        raise ValueError("history_ratio needs positive candidate samples")
    y = group_log_quantiles(groups, q)
    s2 = moderated_variance(float(r.var(ddof=1)), r.size - 1.0, prior_sd ** 2, prior_df)
    var = s2.var * (1.0 + 1.0 / r.size)
    se = math.sqrt(var)
    df = s2.df
    crit = float(sps.t.ppf(0.5 + confidence / 2.0, df)) if math.isfinite(df) else float(sps.norm.ppf(0.5 + confidence / 2.0))
    log_ratio = float(y.mean()) - float(r.mean())
    return RatioEstimate(
        ratio=math.exp(log_ratio), ci_low=math.exp(log_ratio - crit * se), ci_high=math.exp(log_ratio + crit * se),
        log_se=se, confidence=confidence, n_baseline=n_baseline, n_candidate=int(sum(g.size for g in groups)), df=df,
        processes_baseline=int(r.size), processes_candidate=int(y.size),
        spread_baseline=float(r.std(ddof=1)), spread_candidate=float(y.std(ddof=1)) if y.size > 1 else None)
