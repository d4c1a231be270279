"""Gate evaluation benchmark: how often the gate false-alarms and how often it detects, measured the
way a user meets it.

Designs (``serprof gate-eval --design``)
-----------------------------------------
``sweeps``
    ``pairs`` A/A pairs of *separate* default sweeps of identical code (``run_sweep``, each in its own
    worker processes, ``settings.processes`` of them per point), each pair gated with the defaults
    (``compare_runs``: default rules, the machine's noise profile): a failed gate is a false alarm.
    Then ``detect_runs`` sweeps whose workers run with the test-only knob
    ``SERPROF_INJECT_SLOWDOWN`` (``profiler.measure.inject``: every call ``1 + slowdown`` times
    slower), each gated against the plain sweep measured just before it: a failed gate with a
    latency regression is a detection. Sweeps are ordered plain, plain, slowed, ... so slow drift hits
    both kinds alike. Calibration is skipped (it does not change a default gate).
``interleave``
    ``interleave_runs`` runs of ``gate-interleave`` of two identical refs (HEAD vs HEAD of the
    serprof checkout) and as many with the slowdown injected into side B's processes.
``dial``
    The older in-process check below: a matmul "dial" kernel with exact extra work, two timings
    seconds apart per comparison, no process replication.

Each rate is reported with a Clopper-Pearson 95% interval, the share of ``unclear`` verdicts, and
the wall time per gated point (what the gate's replication costs).

Dial method
-----------
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
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from profiler.analysis.compare import compare_runs
from profiler.analysis.gates import RuleSet
from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.core.records import (
    Manifest,
    MeasureSettings,
    Memory,
    PointRecord,
    PointSpec,
    Timing,
)
from profiler.core.stats import clopper_pearson_interval
from profiler.measure.inject import ENV_VAR
from profiler.measure.timer import PerfCounterTimer, measure_timing
from profiler.planning.scenario import build_spec
from profiler.runner.interleaved_ab import InterleavePlan, run_interleaved
from profiler.runner.local import LocalExecutor
from profiler.runner.sweep import run_sweep
from profiler.store.runs import LoadedRun, RunDir

torch = lazy_import("torch")

TARGETS = {0.0: ("<=", 0.01), 10.0: (">=", 0.95), 20.0: (">=", 0.99)}
#: Targets of the realistic designs (issue: false alarms <= 2%, +15% detected in >= 90%)
FALSE_ALARM_TARGET = 0.02
DETECTION_TARGET = 0.90
#: What ``gate-calibrate`` and ``gate-eval`` measure by default: short and long points of a linear
#: kernel and of softmax (size classes from ~0.3 ms to ~10 ms on a 2-core CPU).
CALIBRATION_POINTS = {"kernels": "retnet,softmax", "backends": "torch,sdpa", "lengths": "256,1k,4k",
                      "causal": "causal", "device": "cpu"}
EVAL_POINTS = {"kernels": "retnet,softmax", "backends": "torch,sdpa", "lengths": "1k", "causal": "causal",
               "device": "cpu"}


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
        base = cls(comparisons=40, samples=30) if quick else cls()
        s = cls(**{**asdict(base), **kw,
                   "comparisons": base.comparisons if comparisons is None else comparisons,
                   "samples": base.samples if samples is None else samples})
        if not 1 <= s.comparisons <= 100_000:
            raise UsageError(f"--comparisons must be from 1 to 100000 (got {s.comparisons})")
        if not 5 <= s.samples <= 1_000_000:
            raise UsageError(f"--samples must be from 5 to 1000000 (got {s.samples})")

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
    """Time a callable like serprof's timer does."""
    ms = MeasureSettings(warmup_s=settings.warmup_s, min_warmup_calls=2, min_reps=settings.samples,
                         max_reps=settings.samples, target_rel_ci=0.0, time_budget_s=1e9)
    timer = PerfCounterTimer()

    def measure(fn):
        return measure_timing(fn, ms, timer).samples_s

    return measure, "profiler.measure.timer.measure_timing (perf_counter_ns)"


def _loaded(samples: tuple[float, ...], name: str):
    spec = PointSpec(kernel="dial", backend="torch", T=1024)
    rec = PointRecord(spec, "ok", timing=Timing(samples, "perf_counter_ns"), memory=Memory(None, "none"))
    return LoadedRun(name, Manifest(run_id=name, created_at="", scenario={}, environment={}), [rec], [])


def run_gate_eval(settings: EvalSettings, progress: Callable[[str], None] | None = None) -> EvalReport:
    """Run the benchmark (see module docstring); ``progress`` receives short status lines."""
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


# --------------------------------------------------------------------------- realistic designs

@dataclass(frozen=True)
class GateRun:
    """One gate of the evaluation: A/A or with an injected slowdown."""

    design: str                 # sweeps | interleave
    injected: float             # 0 for A/A
    failed: bool                # the gate exited 1
    latency_regressions: int
    unclear: int
    checks: int
    ratios: tuple[float, ...]
    wall_s: float               # measuring both sides
    points: int


@dataclass(frozen=True)
class RateRow:
    design: str
    injected: float
    runs: int
    flagged: int
    ci_low: float
    ci_high: float
    unclear_share: float
    median_ratio: float
    wall_s_per_point: float
    target_text: str
    met: bool | None

    @property
    def rate(self) -> float:
        return self.flagged / self.runs if self.runs else math.nan


def summarize_gate_runs(runs: list[GateRun]) -> list[RateRow]:
    """Per design and injected slowdown: flagged rate (A/A: any failed gate; slowed: a latency
    regression) with its Clopper-Pearson interval, against the issue's targets."""
    rows = []
    keys = sorted({(r.design, r.injected) for r in runs})
    for design, inj in keys:
        sel = [r for r in runs if r.design == design and r.injected == inj]
        flagged = sum(1 for r in sel if (r.failed if inj == 0 else r.latency_regressions > 0))
        lo, hi = clopper_pearson_interval(flagged, len(sel))
        ratios = [x for r in sel for x in r.ratios]
        rate = flagged / len(sel)
        if inj == 0:
            text, met = f"<= {FALSE_ALARM_TARGET:.0%}", rate <= FALSE_ALARM_TARGET
        else:
            text, met = f">= {DETECTION_TARGET:.0%}", rate >= DETECTION_TARGET
        rows.append(RateRow(design, inj, len(sel), flagged, lo, hi,
                            sum(r.unclear for r in sel) / max(1, sum(r.checks for r in sel)),
                            float(np.median(ratios)) if ratios else math.nan,
                            sum(r.wall_s for r in sel) / max(1, sum(r.points for r in sel)), text, met))
    return rows


def _gate_run(design: str, injected: float, result, wall_s: float, points: int) -> GateRun:
    lat = [c for c in result.checks if c.metric in ("latency", "call_latency")]
    return GateRun(design, injected, not result.passed, sum(1 for c in lat if c.verdict == "regression"),
                   sum(1 for c in lat if c.verdict == "unclear"), len(lat),
                   tuple(c.ratio for c in lat if math.isfinite(c.ratio)), wall_s, points)


def eval_spec(overrides=None, processes: int | None = None):
    """The sweep every evaluation run measures: ``EVAL_POINTS`` (or ``overrides``) with default settings."""
    values = dict(overrides or EVAL_POINTS)
    if processes is not None:
        values["processes"] = processes
    return build_spec(None, values)


def one_sweep(spec, out, env_extra=None):
    """One separate sweep, as ``serprof sweep`` runs it (fresh workers; no calibration), loaded back."""
    env = dict(os.environ, **env_extra) if env_extra else None
    t0 = time.perf_counter()
    run_sweep(spec, out=out, executor=LocalExecutor(env=env), calibrate=False)
    return RunDir.open(out).load(), time.perf_counter() - t0


def calibration_sweeps(*, repeats: int, processes: int, overrides=None, keep=None, progress=None):
    """``repeats`` separate sweeps of ``CALIBRATION_POINTS`` for ``gate-calibrate``: (runs, source text)."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 2 <= repeats <= 100:
        raise UsageError(f"--repeats must be a whole number from 2 to 100, got {repeats!r}")
    spec = eval_spec(overrides or CALIBRATION_POINTS, processes)
    root = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="serprof-calibrate-"))
    runs = []
    for i in range(repeats):
        run, wall = one_sweep(spec, root / f"aa-{i + 1:02d}")
        runs.append(run)
        if progress:
            progress(f"  A/A sweep {i + 1}/{repeats}: {len(run.records)} points in {wall:.0f} s")
    source = (f"gate-calibrate: {repeats} sweeps of {', '.join(f'{k}={v}' for k, v in (overrides or CALIBRATION_POINTS).items())}"
              f", {processes} processes per point")
    return runs, source


@dataclass(frozen=True)
class RealEvalSettings:
    designs: tuple[str, ...] = ("sweeps", "interleave")
    pairs: int = 60
    detect_runs: int = 30
    interleave_runs: int = 30
    interleave_detect_runs: int = 30
    slowdown: float = 0.15
    processes: int | None = None      # None: the sweep default
    rounds: int | None = None          # None: gate-interleave's defaults (rounds and samples)
    reps: int | None = None
    interleave_kernels: tuple[str, ...] = ("retnet",)
    interleave_lengths: tuple[int, ...] = (256, 1024)


def run_real_eval(settings: RealEvalSettings, *, noise=None, repo=".", keep=None, progress=None,
                  overrides=None) -> list[GateRun]:
    """Run the ``sweeps`` and ``interleave`` designs (module doc); every gate at its defaults."""
    say = progress or (lambda msg: None)
    out: list[GateRun] = []
    root = Path(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="serprof-gate-eval-"))
    slow_env = {ENV_VAR: f"{settings.slowdown:g}"}
    if "sweeps" in settings.designs:
        spec = eval_spec(overrides, settings.processes)
        for i in range(max(settings.pairs, settings.detect_runs)):
            a = b = None
            if i < settings.pairs or i < settings.detect_runs:
                a, wa = one_sweep(spec, root / f"p{i:03d}-a")
            if i < settings.pairs:
                b, wb = one_sweep(spec, root / f"p{i:03d}-b")
                res = compare_runs(a, b, RuleSet.parse(), noise=noise)
                out.append(_gate_run("sweeps", 0.0, res, wa + wb, len(b.records)))
                say(f"  sweeps A/A {i + 1}/{settings.pairs}: {'FAIL' if not res.passed else 'pass'}"
                    f" ({_ratios_text(res)})")
            if i < settings.detect_runs:
                c, wc = one_sweep(spec, root / f"p{i:03d}-c", slow_env)
                ref = b if b is not None else a
                res = compare_runs(ref, c, RuleSet.parse(), noise=noise)
                out.append(_gate_run("sweeps", settings.slowdown, res, wa + wc, len(c.records)))
                say(f"  sweeps +{settings.slowdown:.0%} {i + 1}/{settings.detect_runs}: "
                    f"{'detected' if out[-1].latency_regressions else 'missed'} ({_ratios_text(res)})")
            if keep is None:
                for suffix in ("a", "b", "c"):
                    shutil.rmtree(root / f"p{i:03d}-{suffix}", ignore_errors=True)
    if "interleave" in settings.designs:
        plan = InterleavePlan.from_cli(list(settings.interleave_kernels), "", [str(t) for t in settings.interleave_lengths],
                                       1, 4, 64, rounds=settings.rounds, reps=settings.reps)
        n = max(settings.interleave_runs, settings.interleave_detect_runs)
        for i in range(n):
            for inj in ((0.0, settings.slowdown) if i < settings.interleave_detect_runs else (0.0,)):
                if inj == 0.0 and i >= settings.interleave_runs:
                    continue
                t0 = time.perf_counter()
                a, b = run_interleaved(Path(repo), "HEAD", "HEAD", plan, env_b=slow_env if inj else None)
                res = compare_runs(a, b, RuleSet.parse(), noise=noise, runs_apart=0,
                                   design=f"interleaved: {plan.rounds} fresh processes per side, ABBA, {plan.samples_text} per point")
                out.append(_gate_run("interleave", inj, res, time.perf_counter() - t0, len(settings.interleave_lengths) * len(settings.interleave_kernels)))
                say(f"  interleave {'A/A' if not inj else f'+{inj:.0%}'} {i + 1}: "
                    f"{'FAIL' if not res.passed else 'pass'} ({_ratios_text(res)})")
    if keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _ratios_text(result) -> str:
    lat = [c for c in result.checks if c.metric in ("latency", "call_latency")]
    return ", ".join(f"x{c.ratio:.3f}{'' if c.verdict == 'pass' else ' ' + c.verdict}" for c in lat)
