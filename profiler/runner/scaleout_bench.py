"""Benchmark of the multi-worker local executor: does a second pinned CPU worker halve the wall time?

Method. The same sweep of independent points (several series, each point a real ``measure_point``
with verification, warm-up and a fixed timed budget) runs twice through ``run_sweep`` with no
calibration: once with 1 worker pinned to 1 core with 1 thread, once with N workers, each pinned to
its own single core with 1 thread (``MultiExecutor.for_cpu(n, cores_per_worker=1)``). Reported: the
wall time of each whole sweep (planning, run folder, worker start-up included), their ratio (target
on a 2-core machine: <= 0.65), the same for the run phase alone (plan made -> last record), and per point the ratio of medians (N workers / 1
worker) with a bootstrap 95% interval (``profiler.core.stats.ratio_of_medians``) plus a noise floor; a
point "agrees" when its interval contains 1.

On a shared machine both numbers are indicative only: other processes steal the pinned cores.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from profiler.core.errors import UsageError
from profiler.core.paths import check_output_dir
from profiler.core.stats import ratio_of_medians
from profiler.planning.scenario import build_spec
from profiler.runner.multi import MultiExecutor
from profiler.runner.sweep import SweepObserver, run_sweep

DEFAULT_SWEEP = {"kernels": "retnet,lightnet,fox,softmax", "backends": "torch,sdpa", "lengths": "256,512,1k,2k",
                 "device": "cpu", "name": "scaleout-bench",
                 "warmup_s": 0.1, "time_budget_s": 0.4, "target_rel_ci": 0.001}


def run_once(workers: int, overrides: Mapping[str, Any], out: Path) -> dict[str, Any]:
    class Clock(SweepObserver):
        """Start of the run phase (plan made, run folder created) and the last record."""

        planned = last = None

        def on_plan(self, *args, **kw) -> None:
            self.planned = time.perf_counter()

        def on_record(self, record) -> None:
            self.last = time.perf_counter()

    spec = build_spec(None, dict(overrides))
    ex = MultiExecutor.for_cpu(workers, cores_per_worker=1)
    clock = Clock()
    t0 = time.perf_counter()
    res = run_sweep(spec, out=out, executor=ex, calibrate=False, observer=clock)
    wall = time.perf_counter() - t0
    samples = {r.id: list(r.timing.samples_s) for r in res.records if r.status == "ok" and r.timing}
    phase = (clock.last - clock.planned) if clock.last and clock.planned else None
    return {"workers": workers, "wall_s": wall, "run_phase_s": phase, "points": len(res.records), "ok": len(samples),
            "counts": res.counts, "samples": samples, "run_dir": str(res.run_dir),
            "slots": ex.describe()["slots"]}


def bench_scaleout(workers: int = 2, overrides: Mapping[str, Any] | None = None, out_dir: Path | None = None,
                   noise_floor: float = 0.03) -> dict[str, Any]:
    """Run the sweep with 1 and ``workers`` pinned single-core workers; see the module docstring."""
    if isinstance(workers, bool) or not isinstance(workers, int) or not 2 <= workers <= 1024:
        raise UsageError(f"--workers must be a whole number from 2 to 1024 (compared with 1 worker), got {workers!r}")
    if out_dir is not None:
        check_output_dir(out_dir, "--out")
    ov = dict(DEFAULT_SWEEP if overrides is None else overrides)
    root = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="serprof-scaleout-"))
    one = run_once(1, ov, root / "workers-1")
    many = run_once(workers, ov, root / f"workers-{workers}")
    per_point = []
    for pid, base in one["samples"].items():
        cand = many["samples"].get(pid)
        if not cand:
            continue
        est = ratio_of_medians(base, cand, noise_floor=noise_floor)
        per_point.append({"id": pid, "median_1_s": statistics.median(base), "median_n_s": statistics.median(cand),
                          "ratio": est.ratio, "ci": [est.ci_low, est.ci_high],
                          "agrees": est.ci_low <= 1.0 <= est.ci_high})
    ratios = [p["ratio"] for p in per_point]
    return {
        "workers": workers,
        "wall_1_s": one["wall_s"], "wall_n_s": many["wall_s"],
        "wall_ratio": many["wall_s"] / one["wall_s"] if one["wall_s"] > 0 else None,
        "run_phase_1_s": one["run_phase_s"], "run_phase_n_s": many["run_phase_s"],
        "run_phase_ratio": (many["run_phase_s"] / one["run_phase_s"]) if one["run_phase_s"] and many["run_phase_s"] else None,
        "target_wall_ratio": 0.65,
        "points": one["points"], "ok_1": one["ok"], "ok_n": many["ok"],
        "median_ratio_of_medians": statistics.median(ratios) if ratios else None,
        "agreeing_points": sum(p["agrees"] for p in per_point), "compared_points": len(per_point),
        "noise_floor": noise_floor, "per_point": per_point,
        "run_dirs": [one["run_dir"], many["run_dir"]], "slots": many["slots"],
    }
