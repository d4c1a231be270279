"""serprof's public Python API: what every ``serprof`` command does, callable from Python.

The commands in ``profiler.cli`` parse flags, call one function here, render and choose the exit
code. ``import profiler`` exposes these lazily (``profiler.sweep(...)``) without importing torch::

    import profiler

    rec = profiler.measure("retnet", T=1024, B=1, H=4, D=64, dtype="float32", device="cpu")
    run = profiler.sweep(kernels=["retnet", "softmax"], lengths=[256, 512], device="cpu", out="reports/x")
    run = profiler.load("reports/x")          # the same Run from disk
    df = run.to_pandas()                      # one row per point, the columns of `serprof export`
    res = profiler.analyze(run)               # fits, crossovers, frontier, roofline (values)
    profiler.report(run, out="reports/x/report.html")
    verdict = profiler.gate(baseline=run, candidate=run)   # .passed, .regressions

Arguments are typed values: ints, lists of ints, dtype names (``"float32"``, ``"fp16"``) or
``torch.dtype``s. Measurement settings are keywords named as the settings model
declares them (``profiler.core.settings``: ``target_rel_ci=0.05``, ``time_budget_s=0.5``,
``verify=False``, ``memory_budget="8GiB"``). Errors are ``profiler.core.errors``
exceptions with a one-line message (``UsageError``: bad input; ``UnavailableError``: the device or
backend does not exist here).

``sweep_outcome(scenario, overrides, ...)`` is the lower level the ``serprof sweep`` command uses:
setting keys as the scenario file spells them, dry runs and SLURM submissions.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from profiler.analysis.compare import check_options, compare_runs
from profiler.analysis.gates import RuleSet
from profiler.analysis.noise import estimate_profile
from profiler.analysis.summary import analyze as analyze_run
from profiler.core import settings as measure_settings
from profiler.core.errors import UnavailableError, UsageError, did_you_mean
from profiler.core.lazy import lazy_import
from profiler.core.records import LEVELS, PointRecord
from profiler.core.units import parse_dtypes, parse_int_list, parse_lengths
from profiler.kernels import origin, use_kernel_modules
from profiler.kernels.base import GROUPS
from profiler.kernels.fla_coverage import coverage
from profiler.planning import names
from profiler.planning.scenario import build_spec
from profiler.report import groups as report_groups
from profiler.report.export import COLUMNS, export_run
from profiler.report.export import rows as export_rows
from profiler.report.html import render_run
from profiler.report.markdown import markdown_summary as summary
from profiler.report.runs import report_runs
from profiler.store.baseline import load_side
from profiler.store.baseline import save_baseline as save
from profiler.store.history import load_history
from profiler.store.noise import (
    default_path,
    load_noise_profile,
    save_noise_profile,
    user_path,
)
from profiler.store.runs import LoadedRun, RunDir

planning_points = lazy_import('profiler.planning.points')
probes_selftest = lazy_import('profiler.probes.selftest')

runner_execution = lazy_import('profiler.runner.execution')
runner_sweep = lazy_import('profiler.runner.sweep')
runner_slurm = lazy_import('profiler.runner.slurm')
runner_env = lazy_import('profiler.runner.env')
planning_estimate = lazy_import('profiler.planning.estimate')
runner_local = lazy_import('profiler.runner.local')
kernel_registry = lazy_import('profiler.kernels')
runner_status = lazy_import('profiler.runner.status')
planning_registry = lazy_import('profiler.planning.registry')
torch = lazy_import('torch')
probes_frontier = lazy_import('profiler.probes.frontier')
measure_trace = lazy_import('profiler.measure.trace')
runner_doctor = lazy_import('profiler.runner.doctor')
measure_verify = lazy_import('profiler.measure.verify')
measure_conditions = lazy_import('profiler.measure.conditions')
kernels_interpret = lazy_import('profiler.kernels.interpret')
probes_gate_eval = lazy_import('profiler.probes.gate_eval')
runner_interleaved_ab = lazy_import('profiler.runner.interleaved_ab')
pd = lazy_import('pandas')

__all__ = ["Run", "Analysis", "SweepOutcome", "measure", "sweep", "load", "analyze", "report", "markdown_summary",
           "export", "plan", "verify", "gate", "gate_interleave", "gate_calibrate", "status", "save_baseline", "list_kernels", "env",
           "frontier", "trace", "doctor", "sweep_outcome", "resolve_sweep"]


VERIFY_DEVICES = ("cpu", "cuda")


# --------------------------------------------------------------------------- values

@dataclass
class Run(LoadedRun):
    """A run folder's manifest and records (``LoadedRun``), as a value for notebooks.

    ``outcome`` is set when this process ran the sweep (``SweepOutcome``: report path, warnings,
    interrupted); ``None`` for a run read with ``load``.
    """

    outcome: "SweepOutcome | None" = None

    @classmethod
    def of(cls, loaded: LoadedRun, outcome: "SweepOutcome | None" = None) -> "Run":
        return cls(loaded.path, loaded.manifest, loaded.records, list(loaded.warnings), outcome)

    @property
    def interrupted(self) -> bool:
        return bool(self.outcome is not None and self.outcome.interrupted)

    @property
    def report_path(self) -> Path | None:
        """The HTML report the sweep rendered (None when not rendered or loaded from disk)."""
        return self.outcome.report if self.outcome is not None else None

    def to_pandas(self):
        """One row per point, the columns (and order) of ``serprof export`` (``profiler.report.export.COLUMNS``)."""
        return pd.DataFrame(export_rows(self.records), columns=list(COLUMNS))

    def __repr__(self) -> str:
        counts: dict[str, int] = {}
        for r in self.records:
            counts[r.status] = counts.get(r.status, 0) + 1
        status = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no points"
        kernels = sorted({f"{r.spec.kernel}/{r.spec.backend}" for r in self.records})
        Ts = sorted({r.spec.T for r in self.records})
        T = f"T={Ts[0]}..{Ts[-1]}" if len(Ts) > 1 else (f"T={Ts[0]}" if Ts else "")
        what = ", ".join(kernels[:4]) + (f" (+{len(kernels) - 4})" if len(kernels) > 4 else "")
        extra = " interrupted" if self.interrupted else ""
        return (f"<Run {self.manifest.run_id} at {self.path}: {len(self.records)} points ({status}){extra}; "
                f"{what}{'; ' + T if T else ''}>")


@dataclass(frozen=True)
class Analysis:
    """What ``analyze`` derives from a run: values (no text), one entry per series where it applies.

    ``fits``: latency slope (exponent of T, 95% CI) and ``a + bT + cT^2`` cost model per series, with
    the memory ones; ``crossovers``: each series against the softmax ``baseline`` (speed-up, memory
    and energy ratios per T; crossover lengths); ``frontiers``: longest T that ran and the predicted
    out-of-memory length; ``roofline``: achieved FLOP/s and bytes/s per point against the roofs.
    ``detail`` is the full ``profiler.analysis.summary.RunAnalysis`` the report draws from.
    """

    run: LoadedRun
    baseline: Any                 # profiler.analysis.crossover.Baseline | None (which softmax per causality)
    fits: tuple                   # of profiler.analysis.summary.SeriesFit
    crossovers: tuple             # of profiler.analysis.crossover.Comparison
    frontiers: tuple              # of profiler.analysis.frontier.Frontier
    roofline: tuple               # of profiler.analysis.roofline.RooflinePoint
    status_counts: Mapping[str, int]
    detail: Any

    def __repr__(self) -> str:
        def some(items: list[str], n: int = 6) -> str:
            return ", ".join(items[:n]) + (f" (+{len(items) - n})" if len(items) > n else "")

        slopes = [f"{f.key.variant} T^{f.slope.slope:.2f} [{f.slope.ci_low:.2f}, {f.slope.ci_high:.2f}]"
                  for f in self.fits if f.slope is not None]
        cross = [f"{c.series.key.variant} {c.latency.kind}"
                 + (f" T*={c.latency.T_star:.0f}" if c.latency.T_star is not None else "") for c in self.crossovers]
        return (f"<Analysis of {self.run.manifest.run_id}: {len(self.fits)} series"
                + (f", baseline {self.baseline}" if self.baseline is not None else "")
                + (f"; latency slopes {some(slopes)}" if slopes else "")
                + (f"; crossovers {some(cross)}" if cross else "")
                + f"; {len(self.frontiers)} frontiers, {len(self.roofline)} roofline points>")


# --------------------------------------------------------------------------- sweep

@dataclass
class SweepOutcome:
    """What ``sweep`` did. Exactly one of ``result`` (local run), ``plan`` (dry run) or ``slurm`` is set."""

    run_dir: Path | None = None
    result: Any = None            # profiler.runner.sweep.SweepResult
    plan: Any = None              # profiler.planning.points.Plan (dry run)
    slurm: Any = None             # profiler.runner.slurm submission result
    report: Path | None = None
    report_error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return bool(self.result is not None and self.result.interrupted)

    @property
    def exit_code(self) -> int:
        """0 done, 130 interrupted, 1 the report failed."""
        if self.interrupted:
            return 130
        return 1 if self.report_error else 0


def resolve_sweep(scenario: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
                  execution: Mapping[str, Any] | None = None, resume: str | Path | None = None,
                  dry_run: bool = False):
    """``(spec, executor choice)`` of a sweep, validated; ``spec`` is ``None`` on resume."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if resume is not None:
        given = [names.flag(k, v) for k, v in overrides.items()]
        if scenario is not None:
            given.append("--scenario")
        if given:
            raise UsageError(f"--resume continues a run with its stored scenario and settings; drop {', '.join(given)}")
        if dry_run:
            raise UsageError("--resume and --dry-run cannot be combined")
        spec = None
    else:
        spec = build_spec(scenario, overrides)
    choice = runner_execution.choose_for_sweep(dict(execution or {}), scenario=scenario, spec=spec, resume=resume)
    return spec, choice


#: plan-time messages (``profiler.planning.points``) that name a value without saying where it came from
_PLAN_MESSAGES = {"unknown kernel ": "kernels", "unknown backend ": "backends"}


@contextmanager
def _named_plan_errors(scenario: str | Path | None, overrides: Mapping[str, Any] | None) -> Iterator[None]:
    """Prefix the plan's "unknown kernel/backend" messages with the flag or scenario key the names came from."""
    try:
        yield
    except UsageError as exc:
        msg = str(exc)
        key = next((k for prefix, k in _PLAN_MESSAGES.items() if msg.startswith(prefix)), None)
        if key is None:
            raise

        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        if key in given:
            where = names.flag(key)
        elif scenario is not None:
            where = names.toml_where(scenario, key)
        else:
            raise
        raise UsageError(f"{where}: {msg}") from None


def sweep_outcome(scenario: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
                  execution: Mapping[str, Any] | None = None, out: str | Path | None = None,
                  resume: str | Path | None = None, dry_run: bool = False, observer: Any = None,
                  render_report: bool = True, rerun: Sequence[str] = ()) -> SweepOutcome:
    """``serprof sweep``: plan and run a sweep (or submit it to SLURM, or only plan it with ``dry_run``).

    ``scenario``: a TOML file; ``overrides``: setting keys over it (``{"kernels": "retnet",
    "target_rel_ci": 0.02}``); ``execution``: executor keys over its ``[execution]`` table;
    ``resume``: continue a run folder with its stored scenario; ``rerun`` (with ``resume``, local runs):
    measure again the points whose id contains one of these substrings. ``observer`` gets progress callbacks
    (``profiler.runner.sweep.SweepObserver``). The HTML report is rendered after a local run unless
    ``render_report`` is false; a report failure is kept in ``report_error`` (records are safe).
    """
    spec, choice = resolve_sweep(scenario, overrides, execution=execution, resume=resume, dry_run=dry_run)
    rerun = tuple(p for p in rerun if p)
    if rerun and (resume is None or dry_run or choice.kind == "slurm"):
        raise UsageError("--rerun re-measures points of an existing local run: use it with --resume RUN "
                         "(not with --dry-run or --executor slurm)")
    if choice.kind == "slurm":
        with _named_plan_errors(scenario, overrides):
            res = runner_slurm.submit(spec, opts=choice.slurm, out=out, resume=resume, dry_run=dry_run)
        return SweepOutcome(run_dir=Path(res.run_dir), slurm=res, warnings=list(res.warnings))
    if dry_run:
        with _named_plan_errors(scenario, overrides):
            return SweepOutcome(plan=runner_sweep.dry_run(spec))

    # --lock-clocks: locked for the whole local run, reset on exit, exception, Ctrl-C or SIGTERM
    # (a --resume takes the stored scenario inside run_sweep: its clocks are not locked)
    lock = spec is not None and spec.settings.lock_clocks
    with _named_plan_errors(scenario, overrides), measure_conditions.maybe_lock_clocks(
            lock, spec.device if spec is not None else "cpu"):
        result = runner_sweep.run_sweep(spec, out=out, resume=resume, observer=observer, executor=choice.executor,
                                        rerun=rerun)
    outcome = SweepOutcome(run_dir=result.run_dir, result=result, warnings=list(result.warnings))
    if render_report and not result.interrupted:
        try:
            outcome.report = _render_report(result.run_dir)
        except Exception as exc:  # noqa: BLE001 - the sweep's records are safe; say the report failed
            outcome.report_error = f"{type(exc).__name__}: {exc}"
    return outcome


def sweep_estimate(plan_: Any, calibration: Mapping[str, Any] | None = None):
    """``(Estimate, warning or None)``: how long running ``plan_`` will take here
    (``profiler.planning.estimate``; energy meters looked up on this machine)."""
    runnable = plan_.runnable()
    device = runnable[0].device if runnable else "cpu"
    meter = bool((runner_env.nvml_status() if device == "cuda" else runner_env.rapl_status()).get("available"))
    est = planning_estimate.estimate(plan_, calibration, energy_meter=meter)
    return est, planning_estimate.long_cpu_run_warning(plan_, est)


def plan(scenario: str | Path | None = None, overrides: Mapping[str, Any] | None = None):
    """The plan of a sweep without running it (points, memory estimates, dropped combinations)."""
    with _named_plan_errors(scenario, overrides):
        return runner_sweep.dry_run(build_spec(scenario, overrides))


#: keyword -> setting key of the scenario (``build_spec`` overrides); singular spellings accepted
_SPEC_KEYWORDS = {"kernels": "kernels", "kernel": "kernels", "backends": "backends", "backend": "backends",
                  "lengths": "lengths", "batch": "batch", "dtypes": "dtypes", "dtype": "dtypes", "modes": "modes",
                  "mode": "modes", "heads": "heads", "head_dim": "head_dim", "device": "device", "causal": "causal",
                  "interpret": "interpret", "level": "level", "audio": "audio", "frame_rate": "frame_rate",
                  "text_rate": "text_rate", "bidirectional": "bidirectional", "utterances": "utterances",
                  "packing": "packing", "name": "name", "description": "description",
                  "kv_heads": "kv_heads", "value_dim": "value_dim", "value_dims": "value_dim", "window": "window",
                  "windows": "window"}


def _typed(value: Any) -> Any:
    """A Python value as the scenario parser takes it: lists stay lists, ``torch.float16`` -> ``"float16"``."""
    if type(value).__module__ == "torch":          # torch.dtype, without importing torch here
        return str(value).removeprefix("torch.")
    if isinstance(value, (list, tuple)):
        return [_typed(v) for v in value]
    return value


def _overrides(spec_kw: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments -> ``build_spec`` overrides; an unknown keyword is a ``UsageError`` naming it.

    Measurement settings are looked up in the settings model (``profiler.core.settings``), which also
    validates their values.
    """
    out: dict[str, Any] = {}
    for k, v in spec_kw.items():
        if v is not None:
            out[_SPEC_KEYWORDS[k]] = _typed(v)
    for k, v in settings.items():
        if measure_settings.lookup(k) is None:
            allowed = [sp for st in measure_settings.SETTINGS for sp in st.spellings]
            raise UsageError(f"unknown keyword argument {k!r}; {did_you_mean(k, [*allowed, *_SPEC_KEYWORDS])}")
        if v is not None:
            out[k] = v
    return out


def sweep(kernels: str | Sequence[str] | None = None, lengths: int | str | Sequence[int | str] | None = None, *,
          backends: str | Sequence[str] | None = None, batch: int | Sequence[int] | None = None,
          dtypes: Any = None, modes: str | Sequence[str] | None = None, heads: int | Sequence[int] | None = None,
          head_dim: int | Sequence[int] | None = None, device: str | None = None, causal: bool | None = None,
          interpret: bool | None = None, level: str | None = None, audio: Any = None,
          scenario: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
          execution: Mapping[str, Any] | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, render_report: bool = True, rerun: Sequence[str] = (),
          observer: Any = None, **settings: Any) -> Run:
    """Run a sweep over every kernel x backend x length x batch x dtype x mode here; the ``Run``.

    Keywords override ``scenario`` (a TOML file) axis by axis; unset axes keep the scenario's (or the
    defaults: every mechanism, T = 256..4k, fp32, fwd). Each point runs in a worker process
    (``execution={"workers": 2}`` for more). ``out``: the run folder (default ``reports/<run-id>``);
    the HTML report is rendered into it unless ``render_report`` is false. ``overrides``: setting keys
    as the scenario file spells them (the older form, e.g. ``{"lengths": "256,512"}``). Interrupted
    (Ctrl-C): the finished points are kept, ``run.interrupted`` is true. SLURM submissions and dry runs:
    ``sweep_outcome`` / ``plan``.
    """
    given = dict(kernels=kernels, lengths=lengths, backends=backends, batch=batch, dtypes=dtypes, modes=modes,
                 heads=heads, head_dim=head_dim, device=device, causal=causal, interpret=interpret, level=level,
                 audio=audio)
    given.update({k: settings.pop(k) for k in list(settings) if k in _SPEC_KEYWORDS})
    merged = {**dict(overrides or {}), **_overrides(given, settings)}
    outcome = sweep_outcome(scenario, merged, execution=execution, out=out, resume=resume, observer=observer,
                            render_report=render_report, rerun=rerun)
    if outcome.slurm is not None:
        raise UsageError("profiler.sweep runs here; submit SLURM sweeps with profiler.api.sweep_outcome "
                         "or `serprof sweep --executor slurm`")
    return Run.of(_load_run(outcome.run_dir), outcome)


def _load_run(path: Path) -> LoadedRun:
    return RunDir.open(path).load()


def measure(kernel: str, *, T: int = 1024, B: int = 1, H: int = 4, D: int | None = None, dtype: Any = "float32",
            mode: str = "fwd", causal: bool = True, backend: str | None = None, device: str = "auto",
            interpret: bool = False, level: str = "kernel", **settings: Any) -> PointRecord:
    """Measure one point in a fresh worker process (as a sweep does) and return its ``PointRecord``.

    Validated as a one-point sweep (same limits, same availability checks). ``backend``: default the
    kernel's default backend when it runs on ``device``, else the first available one. Settings
    keywords as for ``sweep`` (``time_budget_s=0.5``, ``target_rel_ci=0.05``, ``verify=False``).
    A crash, timeout or OOM is a record with that status, not an exception. ``H`` heads of ``D`` dims
    each at every level: ``level="layer"`` / ``"model"`` measures ``kernel`` as a whole layer of width
    ``H * D`` (``PointSpec.hidden``); ``D`` defaults to 64 for kernels and to 1024 / H for layers.
    """
    for name, v in (("T", T), ("B", B), ("H", H), ("D", D)):
        if name == "D" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int):
            raise UsageError(f"{name} must be a whole number, got {v!r}")
    ov = _overrides(dict(kernels=[kernel], backends=[backend] if backend else None, lengths=[T], batch=[B],
                         heads=[H], head_dim=None if D is None else [D], dtypes=[dtype], modes=[mode], causal=causal, device=device,
                         interpret=interpret or None, level=level), settings)
    p = plan(None, ov)
    points = [pp.spec for pp in p.points if pp.runnable]
    if not points:
        why = "; ".join(f"{d.what}: {d.reason}" for d in p.dropped) or \
            "; ".join(f"{pp.spec.id}: {pp.skip_reason}" for pp in p.points) or "nothing planned"
        raise UsageError(f"{kernel}: nothing to measure on {p.sweep.device} ({why})")
    spec = points[0]
    if backend is None and level == "kernel":
        default = kernel_registry.get_kernel(kernel).default_backend
        spec = next((s for s in points if s.backend == default), spec)
    executor = runner_local.LocalExecutor()
    try:
        return executor.measure(spec, p.sweep.settings)
    finally:
        executor.close()


def kernel_group(kernel: str) -> str | None:
    """``KernelSpec.group`` of a registered kernel (plugins included), None when unknown."""
    spec = kernel_registry.registry().get(kernel)
    return getattr(spec, "group", None) if spec is not None else None


# the report works from stored records only: it learns the kernel groups through this seam
report_groups.use_lookup(kernel_group, GROUPS)


def _render_report(run_dir: Path) -> Path | None:
    return render_run(run_dir)


# --------------------------------------------------------------------------- report, export, status

def _path_of(run: Any) -> Path:
    return Path(run.path) if isinstance(run, LoadedRun) else Path(run)


def _paths(runs: Any) -> list[Path]:
    if isinstance(runs, (str, Path, LoadedRun)):
        return [_path_of(runs)]
    return [_path_of(r) for r in runs]


def report(runs: Any, *, baseline: str | None = None, out: str | Path | None = None) -> Path:
    """Render the HTML report of one run (a ``Run`` or a run folder) or an overlay of several; the HTML path.

    Default ``out``: ``<run>/report.html`` (overlays: ``reports/overlay-<time>/report.html``); figures are
    written beside it. ``baseline``: ``KERNEL[/BACKEND[/causal|full]]`` the crossovers compare against.
    """
    return report_runs(_paths(runs), baseline=baseline, out=out, markdown=False)[0]


def markdown_summary(runs: Any, *, baseline: str | None = None) -> str:
    """The short Markdown summary of one or more runs (what ``serprof report --markdown`` prints)."""
    return summary(_paths(runs), baseline=baseline)


def load(path: str | Path) -> Run:
    """A run folder (or a compact baseline file) as a ``Run``; unreadable lines are in ``run.warnings``."""
    return Run.of(load_side(Path(path)))


def analyze(run: Any, *, baseline: str | None = None) -> Analysis:
    """Fits, crossovers against the softmax baseline, OOM frontier and roofline of a run, as values."""
    loaded = run if isinstance(run, LoadedRun) else load(run)
    a = analyze_run(loaded, baseline)
    return Analysis(run=loaded, baseline=a.baseline, fits=tuple(a.fits.values()), crossovers=tuple(a.comparisons),
                    frontiers=tuple(a.frontiers), roofline=tuple(a.roofline), status_counts=dict(a.status_counts),
                    detail=a)


def export(run: Any, fmt: str = "csv", output: str | Path | None = None) -> Path:
    """Flatten a run's records to one row per point (csv | parquet); the file written."""
    return export_run(_path_of(run), fmt, Path(output) if output is not None else None)


def status(run: str | Path):
    """Progress of a run folder, per shard or worker and per device model (``RunStatus``)."""
    return runner_status.run_status(Path(run))


def save_baseline(run: Any, out: str | Path, *, max_samples: int | None = None) -> Path:
    """Write the compact baseline file of a run (``serprof baseline save``); the path written."""
    return save(_path_of(run), out, max_samples)


# --------------------------------------------------------------------------- kernels, environment, tools

def _phases(spec: Any, backend: str) -> list[str]:
    """The phases (``--phase``) an entry's backend measures: prefill, and decode / streaming where it has
    a recurrent form (kernels: ``profiler.kernels.recurrent``; layers: ``phase_unsupported``, i.e.
    ``profiler.layers.streaming``)."""
    per_phase = getattr(spec, "phase_unsupported", None)
    if per_phase is not None:
        return ["prefill", *(p for p in ("decode", "streaming") if per_phase(backend, p) is None)]
    form = getattr(spec, "recurrent", None)
    decode = form is not None and getattr(spec, "level", "kernel") == "kernel" and backend in form.backends()
    return ["prefill", "decode", "streaming"] if decode else ["prefill"]


def _use_kernel_modules(modules: Any) -> None:
    """Import plugin kernel modules (the ``kernel_modules`` setting) into this process's registry."""
    if not modules:
        return

    s = measure_settings.lookup("kernel_modules")
    where = s.flag   # the API keyword kernel_modules= is the same setting
    use_kernel_modules(measure_settings.parse(s, list(modules) if not isinstance(modules, str) else modules, where),
                       where)


def list_kernels(device: str = "all", *, level: str = "all", kernel_modules: Any = None) -> list[dict[str, Any]]:
    """Every entry x backend x device (``cpu``, ``cuda`` or ``all``) of each level (``kernel``, ``layer``,
    ``model`` or ``all``): ``available``, and the ``reason`` when not (``serprof list``). ``origin``:
    ``built-in`` or the plugin a kernel comes from; ``kernel_modules``: plugin modules to add first."""
    _use_kernel_modules(kernel_modules)

    if device not in (*VERIFY_DEVICES, "all"):
        raise UsageError(f"--device {device!r} is not allowed; {did_you_mean(device, (*VERIFY_DEVICES, 'all'))}")
    if level not in (*LEVELS, "all"):
        raise UsageError(f"--level {level!r} is not allowed; {did_you_mean(level, (*LEVELS, 'all'))}")
    devices = VERIFY_DEVICES if device == "all" else (device,)
    levels = LEVELS if level == "all" else (level,)
    cuda = False
    if "cuda" in devices:
        cuda = torch.cuda.is_available()

    rows = []
    for lv in levels:
        for name, spec in planning_registry.registry(lv).items():
            where = origin(name) if lv == "kernel" else "built-in"
            for bname, b in spec.backends.items():
                for dev in devices:
                    ok, why = b.availability(dev, cuda_available=cuda)
                    rows.append({"level": lv, "kernel": name, "family": spec.family, "group": _group_of(name, spec), "backend": bname, "device": dev,
                                 "available": ok, "reason": why, "causal": list(b.causal),
                                 "interpretable": b.interpretable, "description": b.description,
                                 "phases": _phases(spec, bname), "origin": where,
                                 "varlen": getattr(b, "varlen", "") or None})   # packed path (--varlen), if any
    return rows


def _group_of(name: str, spec: Any) -> str:
    """A kernel's group; a layer or model entry takes the group of the mechanism it is named after
    (``mha``, torch's multi-head softmax attention, has no kernel of its name: softmax)."""
    return (getattr(spec, "group", None) or kernel_group(name)
            or ("softmax" if getattr(spec, "family", "") == "quadratic" else "other"))


def fla_coverage() -> list[dict[str, Any]]:
    """Every ``fla.ops`` family of the installed fla: covered by which kernel, or why not (``serprof list --fla``)."""
    return coverage()


def env() -> dict[str, Any]:
    """What serprof sees here: devices, versions, NVML and RAPL availability and why not (``serprof env``)."""
    return runner_env.fingerprint(device=None)


def frontier(device_memory_bytes: int, *, kernels: Sequence[str] | None = None, dtype: str = "bfloat16", B: int = 1,
             H: int = 4, D: int = 64, mode: str = "fwd") -> list:
    """Longest T that fits each kernel in ``device_memory_bytes`` (fla: measured host-side allocations, fitted;
    other backends: the analytic memory model), without a GPU; ``FrontierProbe`` results."""
    return probes_frontier.probe_frontier(device_memory_bytes, kernels=list(kernels) if kernels else None, dtype=dtype, B=B, H=H,
                          D=D, mode=mode)


def trace(*, kernel: str, backend: str | None = None, length: int | str = "1k", batch: int = 1, heads: int = 4,
          head_dim: int = 64, dtype: Any = "float32", mode: str = "fwd", causal: bool = True, device: str = "auto",
          steps: int = 3, out: str | Path | None = None) -> dict[str, Any]:
    """One point under ``torch.profiler`` in this process: a Chrome/Perfetto trace and a TensorBoard log dir."""
    return measure_trace.trace_point(kernel=kernel, backend=backend, length=str(length), batch=batch, heads=heads,
                       head_dim=head_dim, dtype=_typed(dtype), mode=mode, causal=causal, device=device, steps=steps,
                       out=Path(out) if out is not None else None)


def doctor(*, device: str = "auto", out: str | Path | None = None) -> dict[str, Any]:
    """Check the whole chain here (environment, verify, a tiny sweep with energy); a dict with ``exit_code``."""
    return runner_doctor.run_doctor(device=device, out=Path(out) if out is not None else None)


def selftest(*, device: str = "cpu", quick: bool = False, json_out: str | Path | None = None,
             progress: Any = None):
    """``serprof selftest``: every trust check on this machine (``profiler.probes.selftest``); a
    ``SelftestResult`` (``.passed``, ``.exit_code``, ``.checks``). ``json_out``: also write it as JSON there
    (checked before anything runs). ``device='cuda'`` without CUDA raises ``UnavailableError`` (exit 3)."""
    planning_points.resolve_device(device)
    path = Path(json_out) if json_out is not None else None
    if path is not None and (path.is_dir() or not path.parent.is_dir()):
        raise UsageError(f"--json-out {str(json_out)!r}: not a file in an existing folder")
    result = probes_selftest.run_selftest(device, quick=quick, progress=progress)
    if path is not None:
        path.write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return result


# --------------------------------------------------------------------------- verify

def _split(text: str | Iterable[str] | None) -> list[str]:
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else [x for t in text for x in str(t).split(",")]
    return [t.strip() for t in items if t.strip()]


def verify(kernels: str | Sequence[str] | None = None, backends: str | Sequence[str] | None = None, *,
           lengths: str | None = None, batch: str | None = None, heads: int = 2, head_dim: int = 32,
           dtypes: str | None = None, modes: str = "fwd,fwdbwd", device: str = "cpu", interpret: bool = False,
           max_t: int | None = None, seed: int = 0, phase: str = "prefill", decode_steps: int = 1,
           chunk_size: int | None = None, kernel_modules: Any = None, jobs: int | None = None) -> list:
    """Check backends against their fp32 references; the list of results (``r.passed`` each).
    ``kernel_modules``: plugin modules to add first (default kernels: every registered one).
    ``jobs``: check processes at a time, one per kernel/backend (``profiler.measure.verify.default_jobs``:
    on CUDA several, each backend isolated; on CPU 1, in this process).

    ``phase`` ``decode`` / ``streaming``: each mechanism's decode backends, ``decode_steps`` tokens (or one
    ``chunk_size`` chunk) after each length, against the full-sequence reference (validated like the
    sweep's settings of the same names)."""
    dev_type = device.split(":")[0]
    if dev_type not in VERIFY_DEVICES:
        raise UsageError(f"unknown device {device!r}; {did_you_mean(device, VERIFY_DEVICES)}")
    if interpret and dev_type != "cpu":
        raise UsageError("--interpret runs on the CPU; drop --device cuda")
    mode_list = _split(modes)
    for m in mode_list or [""]:
        if m not in ("fwd", "fwdbwd"):
            raise UsageError(f"unknown mode {m!r}; valid: fwd, fwdbwd")

    phase_settings = measure_settings.from_values({
        "phase": (phase, "--phase"), "decode_steps": (decode_steps, "--decode-steps"),
        **({"chunk_size": (chunk_size, "--chunk-size")} if chunk_size is not None else {})})
    tokens = phase_settings.decode_steps if phase_settings.phase == "decode" else (phase_settings.chunk_size or 1)
    length_list = parse_lengths(lengths or ("64" if interpret else "1,100"))
    batch_list = parse_int_list(batch or ("1" if interpret else "2"), "batch size")
    dtype_list = parse_dtypes(dtypes or ("fp32,fp16" if interpret else "fp32"))
    if heads < 1 or head_dim < 1:
        raise UsageError("--heads and --head-dim must be >= 1")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise UsageError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    if interpret:
        if "bfloat16" in dtype_list:
            raise UsageError(kernels_interpret.BF16_REASON)
        kernels_interpret.enable()  # before anything imports fla
    if dev_type == "cuda":
        if not torch.cuda.is_available():
            raise UnavailableError("--device cuda requested but no CUDA device is visible to torch")

    _use_kernel_modules(kernel_modules)
    kernel_list = _split(kernels) or list(kernel_registry.registry())
    for k in kernel_list:
        kernel_registry.get_kernel(k)  # unknown name -> UsageError naming the valid ones
    results = measure_verify.verify_many(kernel_list, _split(backends) or None, lengths=length_list, batches=batch_list,
                          heads=heads, head_dim=head_dim, dtypes=dtype_list, modes=mode_list, device=device,
                          interpret=interpret, seed=seed, max_T=max_t, phase=phase_settings.phase, tokens=tokens,
                          jobs=jobs)
    if not results:
        raise UsageError("nothing to verify: no available backend matches the selection "
                         "(see `serprof list`; fla backends need --device cuda or --interpret)")
    return results


# --------------------------------------------------------------------------- gate

def gate(baseline: Any, candidate: Any, *, rules: Sequence[str] = (), default_rules: bool = True,
         alpha: float = 0.025, normalize: str = "none", statistic: str = "auto", noise_floor: float = 0.01,
         allow_env_mismatch: bool = False, ignore_env: Sequence[str] = (), fail_on_missing: bool = False,
         n_boot: int = 1000, seed: int = 0, noise_profile: str | Path | None = None,
         history: str | Path | None = None, history_runs: int = 10):
    """Compare a candidate run with a baseline: a ``GateResult`` (``.passed``, ``.regressions``, ``.checks``).

    Each side is a ``Run``, a run folder or (baseline) a compact baseline ``.json``. Per point the ratio
    of a latency quantile (q10 on CPU, median on CUDA) with an interval from the spread between worker
    processes and the machine's noise profile, Holm-corrected across points; a regression only when the
    whole interval lies beyond the rule's threshold (``rules``: ``"latency:+5%"``, ...).
    ``noise_profile``: the machine's noise (``gate_calibrate``); default: the first of
    ``profiler.store.noise.default_path()``, else a fixed ``noise_floor`` with a warning.
    ``history``: a folder of earlier baseline runs (run folders or baseline files) of the main branch;
    the newest ``history_runs`` of them give the between-run spread and ``baseline`` defaults to the newest.
    """
    ruleset = RuleSet.parse(list(rules), defaults=default_rules)
    check_options(alpha=alpha, normalize=normalize, statistic=statistic, noise_floor=noise_floor, n_boot=n_boot,
                  seed=seed)
    noise = load_gate_noise(noise_profile)
    past = load_history(history, history_runs) if history is not None else None
    if baseline is None:
        if not past:
            raise UsageError("gate needs --baseline RUN|FILE or --history DIR")
        base = past[-1]
    else:
        base = baseline if isinstance(baseline, LoadedRun) else load_side(Path(baseline))
    design = f"history of {len(past)} runs" if past else "two runs"
    cand = candidate if isinstance(candidate, LoadedRun) else load_side(Path(candidate))
    return compare_runs(base, cand, ruleset, alpha=alpha,
                        normalize=normalize, allow_env_mismatch=allow_env_mismatch, ignore_env=ignore_env or (),
                        n_boot=n_boot, seed=seed, fail_on_missing=fail_on_missing, statistic=statistic,
                        noise_floor=noise_floor, noise=noise, history=past, design=design)


def load_gate_noise(noise_profile: str | Path | None):
    """The noise profile a gate uses: the given file, else the default location's, else None (fallback)."""
    if noise_profile is not None:
        return load_noise_profile(noise_profile)
    path = default_path()
    return load_noise_profile(path, "noise profile (default location)") if path is not None else None


def gate_calibrate(runs: Sequence[str | Path] = (), *, out: str | Path | None = None, repeats: int = 4,
                   processes: int = 3, overrides: Mapping[str, Any] | None = None, keep: str | Path | None = None,
                   progress: Any = None):
    """Measure this machine's run-to-run noise and write the gate's noise profile: ``(profile, path)``.

    With ``runs`` (A/A run folders of identical code) the profile is estimated from them; otherwise
    ``repeats`` separate sweeps of the calibration points (``profiler.probes.gate_eval.CALIBRATION_POINTS``,
    or ``overrides``), each in ``processes`` worker processes, are run first (kept under ``keep``).
    """
    target = Path(out) if out is not None else user_path()
    try:   # before any sweep runs: an unwritable place is bad input, not a lost calibration
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: cannot create {target.parent} ({exc.strerror or exc})") from None
    if runs:
        loaded = [load_side(Path(r)) for r in runs]
        source = "runs: " + ", ".join(str(r) for r in runs)
    else:
        loaded, source = probes_gate_eval.calibration_sweeps(repeats=repeats, processes=processes, overrides=overrides, keep=keep,
                                            progress=progress)
    if len(loaded) < 2:
        raise UsageError("gate-calibrate needs at least two A/A runs (give run folders or --repeats >= 2)")
    try:
        profile = estimate_profile(loaded, source=source)
    except ValueError as exc:
        raise UsageError(f"gate-calibrate: {exc}") from None
    return profile, save_noise_profile(profile, target)


def gate_interleave(ref_a: str, ref_b: str, *, repo: str | Path = ".", kernels: str | Sequence[str] = (),
                    backend: str = "", lengths: str | Sequence[str] = (), batch: int = 1, heads: int = 4,
                    head_dim: int = 64, rounds: int | None = None, reps: int | None = None, rules: Sequence[str] = (),
                    default_rules: bool = True, alpha: float = 0.025, statistic: str = "auto",
                    noise_floor: float = 0.01, allow_env_mismatch: bool = False, ignore_env: Sequence[str] = (),
                    fail_on_missing: bool = False, n_boot: int = 1000, seed: int = 0,
                    noise_profile: str | Path | None = None, env_b: Mapping[str, str] | None = None,
                    progress: Any = None):
    """Measure two git refs in alternating fresh processes (ABBA rounds) and gate B against A: a ``GateResult``.

    Each round is one new worker process per side, so ``rounds`` processes per side are the replication
    (default ``runner.interleaved_ab.ROUNDS``); ``reps`` samples per point and process (default
    adaptive); the interval comes from the processes' spread (one job: no between-run variance).
    """
    ruleset = RuleSet.parse(list(rules), defaults=default_rules)
    check_options(alpha=alpha, statistic=statistic, noise_floor=noise_floor, n_boot=n_boot, seed=seed)
    if not ref_a or not ref_b:
        raise UsageError("gate-interleave needs --ref-a REF and --ref-b REF (git refs, e.g. origin/main and HEAD)")
    iplan = runner_interleaved_ab.InterleavePlan.from_cli(_split(kernels), backend, _split(lengths), batch, heads, head_dim,
                                    rounds=rounds, reps=reps)
    noise = load_gate_noise(noise_profile)
    base_run, cand_run = runner_interleaved_ab.run_interleaved(Path(repo), ref_a, ref_b, iplan, env_b=dict(env_b or {}), progress=progress)
    return compare_runs(base_run, cand_run, ruleset, alpha=alpha, normalize="none",
                        allow_env_mismatch=allow_env_mismatch, ignore_env=ignore_env or (), n_boot=n_boot,
                        seed=seed, fail_on_missing=fail_on_missing, statistic=statistic, noise_floor=noise_floor,
                        baseline_label=f"{ref_a} (interleaved)", candidate_label=f"{ref_b} (interleaved)",
                        noise=noise, runs_apart=0,
                        design=f"interleaved: {iplan.rounds} fresh processes per side, ABBA, {iplan.samples_text} per point")
