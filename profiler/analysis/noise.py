"""Estimate a machine's noise profile from A/A runs: separate runs of identical code.

Method (per point, then pooled per size class of median latency, ``profiler.core.noise``):

* every run ``r`` of the point has ``k_r`` worker processes; ``y_ri = log quantile`` of process ``i``
  (the statistic the default gate compares: q10 on CPU, the median on CUDA; of the samples divided
  by their drift controls where the records have them, as the gate does),
  ``m_r`` the run's mean of its ``y_ri``;
* **between processes**: the pooled sample variance of the ``y_ri`` around their run's ``m_r``
  (``sum (k_r - 1)`` degrees of freedom);
* **between runs**: the sample variance of the ``m_r`` (``R - 1`` degrees of freedom) minus what the
  processes explain (``process_var / k``), floored at zero: the run effect shared by all processes
  of a run (machine state: frequency, neighbours, page cache);
* runs measured in one process each cannot separate the two: their whole run-to-run variance is
  stored as between-process variance, which is what a one-process gate then needs;
* per class, variances are pooled weighted by their degrees of freedom. The points of one run share
  the run's state, so the between-run degrees of freedom count at most three points per class:
  ``(R - 1) * min(points, 3)``.

``aa_ratio_sd`` is the observed SD of the log ratio of two runs' estimates, ``sqrt(2 var(m_r))``,
the number the model must reproduce. Nothing here measures: ``profiler.api.gate_calibrate`` runs the
sweeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from profiler.core.noise import NoiseClass, NoiseProfile, size_class
from profiler.core.stats import (
    auto_quantile,
    group_log_quantiles,
    slow_outliers_removed,
)
from profiler.store.runs import LoadedRun, utc_now

#: Points of one run share its state: count at most this many as independent for the run term.
MAX_INDEPENDENT_POINTS = 3


@dataclass(frozen=True)
class PointNoise:
    """One point's noise over the runs (log scale), before pooling."""

    point: str
    median_s: float
    runs: int
    processes: int               # processes per run (the smallest)
    process_var: float | None    # None when every run has one process
    process_df: float
    run_mean_var: float          # sample variance of the runs' estimates
    run_df: float


def _run_estimates(records) -> tuple[list[float], list[np.ndarray], list[int]]:
    """Per run: its mean over processes of the log quantile the gate compares (``auto_quantile``:
    q10 on CPU, the median on CUDA), and the per-process values."""
    means, ys, ks = [], [], []
    for rec in records:
        groups = [np.asarray(g, dtype=float)
                  for g in (rec.timing.controlled_groups() or rec.timing.process_groups())]
        groups = [g[np.isfinite(g) & (g > 0)] for g in groups]
        groups = [g for g in groups if g.size]
        if not groups:
            continue
        y = slow_outliers_removed(group_log_quantiles(groups, auto_quantile(rec.spec.device)))
        means.append(float(y.mean()))
        ys.append(y)
        ks.append(len(groups))
    return means, ys, ks


def point_noise(runs: Sequence[LoadedRun]) -> list[PointNoise]:
    """Noise of every point measured ``ok`` with samples in at least two of ``runs``."""
    by_id: dict[str, list] = {}
    for run in runs:
        for rec in run.records:
            if rec.status == "ok" and rec.timing is not None and rec.timing.samples_s and not rec.spec.interpret:
                by_id.setdefault(rec.id, []).append(rec)
    out = []
    for pid, recs in sorted(by_id.items()):
        means, ys, ks = _run_estimates(recs)
        if len(means) < 2:
            continue
        within = [(float(((y - y.mean()) ** 2).sum()), y.size - 1) for y in ys if y.size >= 2]
        pdf = float(sum(d for _, d in within))
        pvar = sum(ss for ss, _ in within) / pdf if pdf > 0 else None
        median = float(np.median(np.concatenate([np.asarray(r.timing.samples_s, dtype=float) for r in recs])))
        out.append(PointNoise(pid, median, len(means), min(ks), pvar, pdf,
                              float(np.var(means, ddof=1)), len(means) - 1.0))
    return out


def estimate_profile(runs: Sequence[LoadedRun], *, source: str = "") -> NoiseProfile:
    """The noise profile of the machine the A/A ``runs`` were measured on (see module doc).

    Raises ``ValueError`` when fewer than two runs share a measured point.
    """
    points = point_noise(runs)
    if not points:
        raise ValueError("no point was measured ok in at least two of the runs")
    classes: dict[tuple[float, float], list[PointNoise]] = {}
    for p in points:
        classes.setdefault(size_class(p.median_s), []).append(p)
    out = []
    for (lo, hi), pts in sorted(classes.items()):
        with_proc = [p for p in pts if p.process_var is not None and p.process_df > 0]
        if with_proc:
            pdf = sum(p.process_df for p in with_proc)
            pvar = sum(p.process_var * p.process_df for p in with_proc) / pdf
        else:
            pdf, pvar = 0.0, 0.0
        run_vars, run_dfs = [], []
        for p in pts:
            if p.process_var is None:   # one process per run: all of it counts as process variance
                run_vars.append(0.0)
            else:
                run_vars.append(max(0.0, p.run_mean_var - pvar / max(1, p.processes)))
            run_dfs.append(p.run_df)
        if not with_proc:
            pvar = float(np.average([p.run_mean_var for p in pts], weights=[p.run_df for p in pts]))
            pdf = float(sum(p.run_df for p in pts[:MAX_INDEPENDENT_POINTS]))
        rvar = float(np.average(run_vars, weights=run_dfs))
        rdf = float(max(run_dfs) * min(len(pts), MAX_INDEPENDENT_POINTS))
        aa = math.sqrt(2.0 * float(np.average([p.run_mean_var for p in pts], weights=run_dfs)))
        out.append(NoiseClass(lo, hi, process_sd=math.sqrt(pvar), process_df=float(pdf), run_sd=math.sqrt(rvar),
                              run_df=rdf, points=len(pts), aa_ratio_sd=aa))
    machine = {}
    env = runs[0].manifest.environment or {}
    for key in ("hostname", "cpu_model", "cpu_count", "cpu_affinity_count", "device_name", "torch_threads"):
        if key in env:
            machine[key] = env[key]
    processes = min((p.processes for p in points), default=1)
    return NoiseProfile(tuple(out), machine=machine, created_at=utc_now(), runs=len(runs), processes=processes,
                        source=source)
