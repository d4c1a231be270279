"""Gate evaluation benchmark: how often the latency gate false-alarms and how often it detects.

Method
------
A *dial kernel* does ``units`` back-to-back ``torch.mm`` of two ``n x n`` fp32 matrices on CPU;
the baseline is ``base_units`` (40) of them, and a slowdown of s% adds ``round(base_units * s/100)``
units (2.5% granularity), so the injected extra work is exact by construction.

One *comparison* is two fresh, independent "runs" of the same point, each measured like serprof
measures a point (``profiler.measure.timer.measure_timing``: warm-up by time budget, then exactly
``samples`` timed repetitions with perf_counter_ns), one of the baseline kernel and one of the
slowed kernel, in random order, followed by the real gate (``profiler.analysis.compare.compare_runs``
with the single rule ``latency:+threshold%``), once per gate statistic (``median`` and ``q10``)
on the same samples. The levels are interleaved within each repetition
so slow drift of the shared machine hits every level alike. Per level the fraction of comparisons
flagged as regressions is reported with a Clopper-Pearson 95% interval: at 0% it is the
false-alarm rate (A/A), above the threshold the detection rate.

What it does not capture: drift between runs separated by hours (different machine state); each
comparison's two runs are seconds apart. ``--normalize calibration`` exists for the former.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from profiler.core.stats import clopper_pearson_interval

TARGETS = {0.0: ("<=", 0.01), 10.0: (">=", 0.95), 20.0: (">=", 0.99)}


@dataclass(frozen=True)
class EvalSettings:
    comparisons: int = 300
    samples: int = 40
    slowdowns_pct: tuple[float, ...] = (0.0, 5.0, 10.0, 20.0)
    threshold_pct: float = 5.0
    statistics: tuple[str, ...] = ("median", "q10")
    alpha: float = 0.025
    threads: int = 1
    seed: int = 0
    n: int = 128
    base_units: int = 40
    warmup_s: float = 0.02

    @classmethod
    def preset(cls, quick: bool, *, comparisons: int | None = None, samples: int | None = None, **kw) -> "EvalSettings":
        from profiler.core.errors import UsageError

        base = cls(comparisons=40, samples=30) if quick else cls()
        s = cls(**{**asdict(base), **kw,
                   "comparisons": base.comparisons if comparisons is None else comparisons,
                   "samples": base.samples if samples is None else samples})
        if not 1 <= s.comparisons <= 100_000:
            raise UsageError(f"--comparisons must be from 1 to 100000 (got {s.comparisons})")
        if not 5 <= s.samples <= 1_000_000:
            raise UsageError(f"--samples must be from 5 to 1000000 (got {s.samples})")
        import math

        if not s.slowdowns_pct or any(not (math.isfinite(x) and 0 <= x <= 10_000) for x in s.slowdowns_pct):
            raise UsageError("--slowdowns takes finite percentages from 0 to 10000 like 0,5,10,20")
        if not (math.isfinite(s.threshold_pct) and 0 < s.threshold_pct <= 1000):
            raise UsageError(f"--threshold must be a finite percentage > 0 and <= 1000 (got {s.threshold_pct})")
        if any(x < 0 for x in s.slowdowns_pct) or not s.slowdowns_pct:
            raise UsageError("--slowdowns takes non-negative percentages like 0,5,10,20")
        if s.threads < 1:
            raise UsageError("--threads must be >= 1")
        return s

    def units(self, pct: float) -> int:
        return self.base_units + int(round(self.base_units * pct / 100.0))

    def describe(self) -> str:
        return (f"{self.comparisons} comparisons x {len(self.slowdowns_pct)} levels "
                f"({', '.join(f'+{p:g}%' for p in self.slowdowns_pct)}), {self.samples} samples per run, "
                f"dial kernel {self.base_units} x mm({self.n}x{self.n}) on {self.threads} thread(s)")


@dataclass(frozen=True)
class LevelResult:
    statistic: str
    slowdown_pct: float
    comparisons: int
    flagged: int
    ci_low: float
    ci_high: float
    median_ratio: float
    target_text: str
    met: bool | None

    @property
    def rate(self) -> float:
        return self.flagged / self.comparisons if self.comparisons else math.nan


@dataclass
class EvalReport:
    settings: EvalSettings
    rows: list[LevelResult] = field(default_factory=list)
    measure_s: float = 0.0
    gate_ms_per_comparison: float = 0.0
    timer: str = ""

    def to_dict(self) -> dict:
        return {"settings": asdict(self.settings), "timer": self.timer, "measure_s": self.measure_s,
                "gate_ms_per_comparison": self.gate_ms_per_comparison,
                "rows": [{**asdict(r), "rate": r.rate} for r in self.rows]}


def _dial_kernel(n: int, units: int, threads: int) -> Callable[[], object]:
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)

    def call() -> None:
        for _ in range(units):
            torch.mm(a, b, out=out)

    return call


def _measurer(settings: EvalSettings) -> tuple[Callable[[Callable[[], object]], tuple[float, ...]], str]:
    """Time a callable like serprof's timer does; falls back to a perf_counter_ns loop."""
    try:
        from profiler.measure.timer import PerfCounterTimer, measure_timing
        from profiler.core.records import MeasureSettings
    except ImportError:  # pragma: no cover - the timer module ships with serprof
        def fallback(fn):
            for _ in range(3):
                fn()
            out = []
            for _ in range(settings.samples):
                t0 = time.perf_counter_ns()
                fn()
                out.append((time.perf_counter_ns() - t0) / 1e9)
            return tuple(out)
        return fallback, "perf_counter_ns loop (fallback)"

    ms = MeasureSettings(warmup_s=settings.warmup_s, min_warmup_calls=2, min_reps=settings.samples,
                         max_reps=settings.samples, target_rel_ci=0.0, time_budget_s=1e9)
    timer = PerfCounterTimer()

    def measure(fn):
        return measure_timing(fn, ms, timer).samples_s

    return measure, "profiler.measure.timer.measure_timing (perf_counter_ns)"


def _loaded(samples: tuple[float, ...], name: str):
    from profiler.core.records import Manifest, Memory, PointRecord, PointSpec, Timing
    from profiler.store.runs import LoadedRun

    spec = PointSpec(kernel="dial", backend="torch", T=1024)
    rec = PointRecord(spec, "ok", timing=Timing(samples, "perf_counter_ns"), memory=Memory(None, "none"))
    return LoadedRun(name, Manifest(run_id=name, created_at="", scenario={}, environment={}), [rec], [])


def run_gate_eval(settings: EvalSettings, progress: Callable[[str], None] | None = None) -> EvalReport:
    """Run the benchmark (see module docstring); ``progress`` receives short status lines."""
    from profiler.analysis.compare import compare_runs
    from profiler.analysis.gates import RuleSet

    rules = RuleSet.parse([f"latency:+{settings.threshold_pct:g}%"], defaults=False)
    measure, timer_name = _measurer(settings)
    base = _dial_kernel(settings.n, settings.units(0.0), settings.threads)
    slowed = {p: _dial_kernel(settings.n, settings.units(p), settings.threads) for p in settings.slowdowns_pct}
    rng = np.random.default_rng(settings.seed)
    keys = [(st, p) for st in settings.statistics for p in settings.slowdowns_pct]
    flagged = {k: 0 for k in keys}
    ratios: dict[tuple, list[float]] = {k: [] for k in keys}
    gate_s = 0.0
    t_start = time.perf_counter()
    levels = list(settings.slowdowns_pct)
    for i in range(settings.comparisons):
        for j in rng.permutation(len(levels)):
            p = levels[j]
            if rng.random() < 0.5:
                a = measure(base)
                b = measure(slowed[p])
            else:
                b = measure(slowed[p])
                a = measure(base)
            for st in settings.statistics:
                g0 = time.perf_counter()
                res = compare_runs(_loaded(a, "A"), _loaded(b, "B"), rules, alpha=settings.alpha,
                                   seed=settings.seed + i, statistic=st)
                gate_s += time.perf_counter() - g0
                flagged[st, p] += bool(res.regressions)
                ratios[st, p].append(res.checks[0].ratio)
        if progress and (i + 1) % max(1, settings.comparisons // 10) == 0:
            progress(f"  {i + 1}/{settings.comparisons} repetitions, "
                     + "; ".join(f"{st} +{p:g}%: {flagged[st, p]}" for st, p in keys) + " flagged")
    total = time.perf_counter() - t_start
    report = EvalReport(settings, measure_s=total - gate_s, timer=timer_name,
                        gate_ms_per_comparison=gate_s * 1e3 / (settings.comparisons * len(keys)))
    for st, p in keys:
        lo, hi = clopper_pearson_interval(flagged[st, p], settings.comparisons)
        target = TARGETS.get(p)
        rate = flagged[st, p] / settings.comparisons
        met = None if target is None else (rate <= target[1] if target[0] == "<=" else rate >= target[1])
        text = "-" if target is None else f"{target[0]} {target[1]:.0%}"
        report.rows.append(LevelResult(st, p, settings.comparisons, flagged[st, p], lo, hi, float(np.median(ratios[st, p])),
                                       text, met))
    return report
