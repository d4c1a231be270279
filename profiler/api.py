"""serprof's public Python API: what every ``serprof`` command does, callable from Python.

The commands in ``profiler.cli`` parse flags, call one function here, render and choose the exit
code. ``import profiler`` exposes these lazily (``profiler.sweep(...)``) without importing torch::

    import profiler

    out = profiler.sweep(overrides={"kernels": "retnet", "lengths": "256,512", "device": "cpu"},
                         execution={"workers": 2})
    profiler.report(out.run_dir)
    verdict = profiler.gate(baseline="reports/base", candidate=out.run_dir)

Values use the library's setting keys (``profiler.spec.names``): scenario keys (``kernels``,
``backends``, ``lengths``, ...), the measurement settings' names (``target_rel_ci``, ``warmup_s``, ...:
``profiler.core.settings``) and the execution keys
(``executor``, ``devices``, ``workers``, SLURM options) of the scenario's ``[execution]`` table.
Errors are ``profiler.core.errors`` exceptions whose one-line message names the flag or the
scenario file and key the value came from.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from profiler.core.errors import UnavailableError, UsageError, did_you_mean

__all__ = ["SweepOutcome", "sweep", "plan", "report", "export", "verify", "gate", "gate_interleave", "gate_calibrate",
           "status",
           "resolve_sweep"]


# --------------------------------------------------------------------------- sweep

@dataclass
class SweepOutcome:
    """What ``sweep`` did. Exactly one of ``result`` (local run), ``plan`` (dry run) or ``slurm`` is set."""

    run_dir: Path | None = None
    result: Any = None            # profiler.runner.sweep.SweepResult
    plan: Any = None              # profiler.spec.plan.Plan (dry run)
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
    from profiler.runner.execution import choose_for_sweep
    from profiler.spec import names
    from profiler.spec.scenario import build_spec

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
    choice = choose_for_sweep(dict(execution or {}), scenario=scenario, spec=spec, resume=resume)
    return spec, choice


#: plan-time messages (``profiler.spec.plan``) that name a value without saying where it came from
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
        from profiler.spec import names

        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        if key in given:
            where = names.flag(key)
        elif scenario is not None:
            where = names.toml_where(scenario, key)
        else:
            raise
        raise UsageError(f"{where}: {msg}") from None


def sweep(scenario: str | Path | None = None, overrides: Mapping[str, Any] | None = None, *,
          execution: Mapping[str, Any] | None = None, out: str | Path | None = None,
          resume: str | Path | None = None, dry_run: bool = False, observer: Any = None,
          render_report: bool = True, rerun: Sequence[str] = ()) -> SweepOutcome:
    """Plan and run a sweep (or submit it to SLURM, or only plan it with ``dry_run``).

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
        from profiler.runner.slurm import submit

        with _named_plan_errors(scenario, overrides):
            res = submit(spec, opts=choice.slurm, out=out, resume=resume, dry_run=dry_run)
        return SweepOutcome(run_dir=Path(res.run_dir), slurm=res, warnings=list(res.warnings))
    if dry_run:
        from profiler.runner.sweep import dry_run as make_dry_run

        with _named_plan_errors(scenario, overrides):
            return SweepOutcome(plan=make_dry_run(spec))
    from profiler.runner.sweep import run_sweep

    with _named_plan_errors(scenario, overrides):
        result = run_sweep(spec, out=out, resume=resume, observer=observer, executor=choice.executor, rerun=rerun)
    outcome = SweepOutcome(run_dir=result.run_dir, result=result, warnings=list(result.warnings))
    if render_report and not result.interrupted:
        try:
            outcome.report = _render_report(result.run_dir)
        except Exception as exc:  # noqa: BLE001 - the sweep's records are safe; say the report failed
            outcome.report_error = f"{type(exc).__name__}: {exc}"
    return outcome


def plan(scenario: str | Path | None = None, overrides: Mapping[str, Any] | None = None):
    """The plan of a sweep without running it (points, memory estimates, dropped combinations)."""
    from profiler.runner.sweep import dry_run as make_dry_run
    from profiler.spec.scenario import build_spec

    with _named_plan_errors(scenario, overrides):
        return make_dry_run(build_spec(scenario, overrides))


def _render_report(run_dir: Path) -> Path | None:
    try:
        from profiler.report import render_run
    except ImportError:
        return None
    return render_run(run_dir)


# --------------------------------------------------------------------------- report, export, status

def report(runs: str | Path | Sequence[str | Path], *, baseline: str | None = None, out: str | Path | None = None,
           markdown: bool = False) -> tuple[Path, str | None]:
    """Render the HTML report of one run folder (or an overlay of several); ``(html path, markdown or None)``.

    ``profiler.report`` is also the package of that name: once it is imported, calling it does the same.
    """
    from profiler.report import report_runs

    return report_runs(runs, baseline=baseline, out=out, markdown=markdown)


def export(run: str | Path, fmt: str = "csv", output: str | Path | None = None) -> Path:
    """Flatten a run's records to one row per point (csv | parquet)."""
    from profiler.report.export import export_run

    return export_run(Path(run), fmt, Path(output) if output is not None else None)


def status(run: str | Path):
    """Progress of a run folder, per shard or worker and per device model (``RunStatus``)."""
    from profiler.runner.status import run_status

    return run_status(Path(run))


# --------------------------------------------------------------------------- verify

VERIFY_DEVICES = ("cpu", "cuda")


def _split(text: str | Iterable[str] | None) -> list[str]:
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else [x for t in text for x in str(t).split(",")]
    return [t.strip() for t in items if t.strip()]


def verify(kernels: str | Sequence[str] | None = None, backends: str | Sequence[str] | None = None, *,
           lengths: str | None = None, batch: str | None = None, heads: int = 2, head_dim: int = 32,
           dtypes: str | None = None, modes: str = "fwd,fwdbwd", device: str = "cpu", interpret: bool = False,
           max_t: int | None = None, seed: int = 0) -> list:
    """Check backends against their fp32 references; the list of results (``r.passed`` each)."""
    from profiler.core.units import parse_dtypes, parse_int_list, parse_lengths

    dev_type = device.split(":")[0]
    if dev_type not in VERIFY_DEVICES:
        raise UsageError(f"unknown device {device!r}; {did_you_mean(device, VERIFY_DEVICES)}")
    if interpret and dev_type != "cpu":
        raise UsageError("--interpret runs on the CPU; drop --device cuda")
    mode_list = _split(modes)
    for m in mode_list or [""]:
        if m not in ("fwd", "fwdbwd"):
            raise UsageError(f"unknown mode {m!r}; valid: fwd, fwdbwd")
    length_list = parse_lengths(lengths or ("64" if interpret else "1,100"))
    batch_list = parse_int_list(batch or ("1" if interpret else "2"), "batch size")
    dtype_list = parse_dtypes(dtypes or ("fp32,fp16" if interpret else "fp32"))
    if heads < 1 or head_dim < 1:
        raise UsageError("--heads and --head-dim must be >= 1")
    if interpret:
        from profiler.kernels.interpret import BF16_REASON, enable

        if "bfloat16" in dtype_list:
            raise UsageError(BF16_REASON)
        enable()  # before anything imports fla
    if dev_type == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UnavailableError("--device cuda requested but no CUDA device is visible to torch")
    from profiler.kernels import MECHANISMS, get_kernel
    from profiler.measure.verify import verify_many

    kernel_list = _split(kernels) or list(MECHANISMS)
    for k in kernel_list:
        get_kernel(k)  # unknown name -> UsageError naming the valid ones
    results = verify_many(kernel_list, _split(backends) or None, lengths=length_list, batches=batch_list,
                          heads=heads, head_dim=head_dim, dtypes=dtype_list, modes=mode_list, device=device,
                          interpret=interpret, seed=seed, max_T=max_t)
    if not results:
        raise UsageError("nothing to verify: no available backend matches the selection "
                         "(see `serprof list`; fla backends need --device cuda or --interpret)")
    return results


# --------------------------------------------------------------------------- gate

def gate(baseline: str | Path | None, candidate: str | Path, *, rules: Sequence[str] = (), default_rules: bool = True,
         alpha: float = 0.025, normalize: str = "none", statistic: str = "auto", noise_floor: float = 0.01,
         allow_env_mismatch: bool = False, ignore_env: Sequence[str] = (), fail_on_missing: bool = False,
         n_boot: int = 1000, seed: int = 0, noise_profile: str | Path | None = None,
         history: str | Path | None = None, history_runs: int = 10):
    """Compare a candidate run (folder) with a baseline (folder or baseline .json): a ``GateResult``.

    ``noise_profile``: the machine's noise (``gate_calibrate``); default: the first of
    ``profiler.store.noise.default_path()``, else a fixed ``noise_floor`` with a warning.
    ``history``: a folder of earlier baseline runs (run folders or baseline files) of the main branch;
    the newest ``history_runs`` of them give the between-run spread and ``baseline`` defaults to the newest.
    """
    from profiler.analysis.compare import check_options, compare_runs
    from profiler.analysis.gates import RuleSet
    from profiler.store.baseline import load_side
    from profiler.store.history import load_history

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
        base = load_side(Path(baseline))
    design = f"history of {len(past)} runs" if past else "two runs"
    return compare_runs(base, load_side(Path(candidate)), ruleset, alpha=alpha,
                        normalize=normalize, allow_env_mismatch=allow_env_mismatch, ignore_env=ignore_env or (),
                        n_boot=n_boot, seed=seed, fail_on_missing=fail_on_missing, statistic=statistic,
                        noise_floor=noise_floor, noise=noise, history=past, design=design)


def load_gate_noise(noise_profile: str | Path | None):
    """The noise profile a gate uses: the given file, else the default location's, else None (fallback)."""
    from profiler.store.noise import default_path, load_noise_profile

    if noise_profile is not None:
        return load_noise_profile(noise_profile)
    path = default_path()
    return load_noise_profile(path, "noise profile (default location)") if path is not None else None


def gate_calibrate(runs: Sequence[str | Path] = (), *, out: str | Path | None = None, repeats: int = 4,
                   processes: int = 3, overrides: Mapping[str, Any] | None = None, keep: str | Path | None = None,
                   progress: Any = None):
    """Measure this machine's run-to-run noise and write the gate's noise profile: ``(profile, path)``.

    With ``runs`` (A/A run folders of identical code) the profile is estimated from them; otherwise
    ``repeats`` separate sweeps of the calibration points (``profiler.tools.gate_eval.CALIBRATION_POINTS``,
    or ``overrides``), each in ``processes`` worker processes, are run first (kept under ``keep``).
    """
    from profiler.analysis.noise import estimate_profile
    from profiler.store.baseline import load_side
    from profiler.store.noise import save_noise_profile, user_path
    from profiler.tools.gate_eval import calibration_sweeps

    target = Path(out) if out is not None else user_path()
    if runs:
        loaded = [load_side(Path(r)) for r in runs]
        source = "runs: " + ", ".join(str(r) for r in runs)
    else:
        loaded, source = calibration_sweeps(repeats=repeats, processes=processes, overrides=overrides, keep=keep,
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
                    head_dim: int = 64, rounds: int = 10, reps: int = 5, rules: Sequence[str] = (),
                    default_rules: bool = True, alpha: float = 0.025, statistic: str = "auto",
                    noise_floor: float = 0.01, allow_env_mismatch: bool = False, ignore_env: Sequence[str] = (),
                    fail_on_missing: bool = False, n_boot: int = 1000, seed: int = 0,
                    noise_profile: str | Path | None = None, env_b: Mapping[str, str] | None = None,
                    progress: Any = None):
    """Measure two git refs in alternating fresh processes (ABBA rounds) and gate B against A: a ``GateResult``.

    Each round is one new worker process per side, so ``rounds`` processes per side are the replication;
    the interval comes from their spread (both sides are one job: no between-run variance).
    """
    from profiler.analysis.compare import check_options, compare_runs
    from profiler.analysis.gates import RuleSet
    from profiler.tools.interleave import InterleavePlan, run_interleaved

    ruleset = RuleSet.parse(list(rules), defaults=default_rules)
    check_options(alpha=alpha, statistic=statistic, noise_floor=noise_floor, n_boot=n_boot, seed=seed)
    if not ref_a or not ref_b:
        raise UsageError("gate-interleave needs --ref-a REF and --ref-b REF (git refs, e.g. origin/main and HEAD)")
    iplan = InterleavePlan.from_cli(_split(kernels), backend, _split(lengths), batch, heads, head_dim,
                                    rounds=rounds, reps=reps)
    noise = load_gate_noise(noise_profile)
    base_run, cand_run = run_interleaved(Path(repo), ref_a, ref_b, iplan, env_b=dict(env_b or {}), progress=progress)
    return compare_runs(base_run, cand_run, ruleset, alpha=alpha, normalize="none",
                        allow_env_mismatch=allow_env_mismatch, ignore_env=ignore_env or (), n_boot=n_boot,
                        seed=seed, fail_on_missing=fail_on_missing, statistic=statistic, noise_floor=noise_floor,
                        baseline_label=f"{ref_a} (interleaved)", candidate_label=f"{ref_b} (interleaved)",
                        noise=noise, runs_apart=0,
                        design=f"interleaved: {iplan.rounds} fresh processes per side, ABBA")
