"""Scaling fits of one series: a log-log exponent with a bootstrap CI, and a cost model.

Methodology
-----------
*Exponent.* ``slope`` is the least-squares slope of log(median latency) on log(T). Its 95% CI comes
from a seeded bootstrap over the raw samples: each replicate resamples every point's samples with
replacement, takes the medians and refits the slope; that interval (2.5/97.5 percentiles of the
replicate slopes) covers the sampling noise of each median. With three or more points it is widened
to include the ordinary least-squares t-interval of the slope from the log-log residuals, which
covers point-to-point scatter (machine-state changes between points, a curved log-log plot): the
reported CI is the union of the two, so tight per-point samples never make a poor power-law fit look
precise. Short sequences are dominated by dispatch overhead,
so the exponent is fitted on the upper part of the sweep (T >= T_max / 8, at least three points when
the sweep has them); the fitted range is part of the result.

*Cost model.* ``a + b*T + c*T^2`` with a, b, c >= 0 (``scipy.optimize.nnls``), fitted on all points,
each row weighted by 1/y so relative errors count equally at every T. It is for prediction
(interpolation, and cautious extrapolation such as the OOM frontier), stated with its fitted range.
The same model fits peak memory (bytes) against T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import nnls
from scipy.stats import t as student_t

from profiler.analysis.series import Series

BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 0
TAIL_FACTOR = 8.0
MIN_TAIL_POINTS = 3


@dataclass(frozen=True)
class SlopeFit:
    """Exponent k of latency ~ T^k over ``[T_min, T_max]`` with a 95% CI (sample bootstrap, widened by the residual t-interval)."""

    slope: float
    ci_low: float
    ci_high: float
    T_min: int
    T_max: int
    n_points: int


@dataclass(frozen=True)
class CostModel:
    """``y = a + b*T + c*T^2`` (all >= 0), fitted on ``[T_min, T_max]``; y in the series' unit."""

    a: float
    b: float
    c: float
    T_min: int
    T_max: int
    max_rel_residual: float

    def predict(self, T: float | np.ndarray) -> float | np.ndarray:
        T = np.asarray(T, dtype=float)
        y = self.a + self.b * T + self.c * T * T
        return float(y) if y.ndim == 0 else y

    def solve(self, y: float) -> float:
        """Largest T with predict(T) <= y (inf if the model never reaches y, 0 if a > y)."""
        a, b, c = self.a, self.b, self.c
        if a > y:
            return 0.0
        if c > 0:
            return (-b + math.sqrt(b * b + 4 * c * (y - a))) / (2 * c)
        if b > 0:
            return (y - a) / b
        return math.inf

    @property
    def dominant(self) -> str:
        """Which term dominates at the top of the fitted range ('constant', 'linear', 'quadratic')."""
        T = self.T_max
        terms = {"constant": self.a, "linear": self.b * T, "quadratic": self.c * T * T}
        return max(terms, key=terms.get)


def tail_mask(T: np.ndarray) -> np.ndarray:
    """Points used for the exponent: T >= T_max/8, widened to the last three when fewer."""
    order = np.argsort(T)
    mask = T >= T.max() / TAIL_FACTOR
    if mask.sum() < MIN_TAIL_POINTS:
        mask = np.zeros_like(mask)
        mask[order[-min(MIN_TAIL_POINTS, T.size):]] = True
    return mask


def _slopes(logT: np.ndarray, logY: np.ndarray) -> np.ndarray:
    """OLS slopes of each row of logY (shape (R, n) or (n,)) on logT."""
    x = logT - logT.mean()
    y = logY - logY.mean(axis=-1, keepdims=True)
    return (y * x).sum(axis=-1) / (x * x).sum()


def fit_slope(Ts: Sequence[float], samples: Sequence[Sequence[float]], *, reps: int = BOOTSTRAP_REPS,
              seed: int = BOOTSTRAP_SEED, use_tail: bool = True) -> SlopeFit | None:
    """Exponent of median(samples) ~ T^k with a bootstrap CI; None with fewer than two distinct T."""
    T = np.asarray(Ts, dtype=float)
    if T.size < 2 or np.unique(T).size < 2:
        return None
    mask = tail_mask(T) if use_tail else np.ones(T.size, bool)
    idx = np.flatnonzero(mask)
    T = T[idx]
    data = [np.asarray(samples[i], dtype=float) for i in idx]
    if any(d.size == 0 or np.any(d <= 0) for d in data):
        return None
    logT = np.log(T)
    med = np.log(np.array([np.median(d) for d in data]))
    slope = float(_slopes(logT, med))
    rng = np.random.default_rng(seed)
    boot = np.empty((reps, T.size))
    for j, d in enumerate(data):
        draws = rng.integers(0, d.size, size=(reps, d.size))
        boot[:, j] = np.log(np.median(d[draws], axis=1))
    bs = _slopes(logT, boot)
    lo, hi = np.percentile(bs, [2.5, 97.5])
    if T.size >= 3:
        x = logT - logT.mean()
        resid = med - med.mean() - slope * x
        se = math.sqrt(float((resid * resid).sum()) / (T.size - 2) / float((x * x).sum()))
        half = float(student_t.ppf(0.975, T.size - 2)) * se
        lo, hi = min(lo, slope - half), max(hi, slope + half)
    return SlopeFit(slope, float(min(lo, slope)), float(max(hi, slope)), int(T.min()), int(T.max()), int(T.size))


def fit_cost(Ts: Sequence[float], ys: Sequence[float]) -> CostModel | None:
    """Non-negative ``a + b*T + c*T^2`` fit, rows weighted by 1/y; None without two positive points."""
    T = np.asarray(Ts, dtype=float)
    y = np.asarray(ys, dtype=float)
    ok = np.isfinite(y) & (y > 0)
    T, y = T[ok], y[ok]
    if T.size < 2 or np.unique(T).size < 2:
        return None
    scale = T.max()
    t = T / scale                                   # conditioning: columns of order 1
    A = np.stack([np.ones_like(t), t, t * t], axis=1) / y[:, None]
    coef, _ = nnls(A, np.ones_like(y))
    a, b, c = coef[0], coef[1] / scale, coef[2] / (scale * scale)
    model = CostModel(float(a), float(b), float(c), int(T.min()), int(T.max()), 0.0)
    resid = np.abs(model.predict(T) / y - 1.0)
    return CostModel(model.a, model.b, model.c, model.T_min, model.T_max, float(resid.max()))


def fit_latency(series: Series) -> tuple[SlopeFit | None, CostModel | None]:
    Ts = [p.T for p in series.points]
    return (fit_slope(Ts, [p.samples_s for p in series.points]),
            fit_cost(Ts, [p.median_s for p in series.points]))


def memory_points(series: Series) -> tuple[list[int], list[float]]:
    pts = [(p.T, float(p.peak_bytes)) for p in series.points if p.peak_bytes is not None and p.peak_bytes > 0]
    return [t for t, _ in pts], [m for _, m in pts]


def fit_memory_slope(series: Series) -> SlopeFit | None:
    """Exponent of peak memory ~ T^k (memory is one deterministic number per point: no CI width)."""
    Ts, ms = memory_points(series)
    if len(Ts) < 2:
        return None
    return fit_slope(Ts, [[m] for m in ms], reps=1)


def fit_memory(series: Series) -> CostModel | None:
    Ts, ms = memory_points(series)
    return fit_cost(Ts, ms)
