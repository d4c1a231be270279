"""serprof CLI command group: ``sweep``, ``env``, ``trace``, ``doctor``.

Thin commands over ``profiler.runner.run_sweep`` and ``profiler.runner.env``: parse flags, call the library,
render with rich. torch, fla and triton are never imported at module level here.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from profiler.cli.scaleout import register_status, render_slurm
from profiler.core import settings as measure_settings
from profiler.core.console import console as _console
from profiler.core.console import esc
from profiler.core.fmt import bytes_fixed, seconds_fixed
from profiler.core.lazy import lazy_import

api = lazy_import('profiler.api')
runner_sweep = lazy_import('profiler.runner.sweep')


# --------------------------------------------------------------------------- options from the settings model

_METAVAR = {"float": "<float>", "int": "<int>", "bytes": "<size>", "choice": "<word>", "text": "<text>"}


def _setting_option(s: measure_settings.Setting) -> tuple[Any, Any]:
    """``(annotation, typer.Option)`` of setting ``s``: its flag(s) and ``--help`` line, from its declaration.

    Values arrive as text and are validated by the settings model (``measure_settings.parse``), so a
    flag and a scenario key take the same values and fail with the same message.
    """
    if s.kind == "bool":
        return Optional[bool], typer.Option(None, f"{s.flag}/{s.flag_false}", help=s.help_text())
    if s.kind == "modules":
        return Optional[List[str]], typer.Option(None, s.flag, help=s.help_text(), metavar="<module>")
    return Optional[str], typer.Option(None, s.flag, help=s.help_text(), metavar=_METAVAR[s.kind])


def with_setting_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with one option per declared measurement setting, passed to it as ``settings={name: value}``.

    ``None`` is a setting not given on the command line (the scenario's value or the default applies).
    """
    hints = typing.get_type_hints(command)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in inspect.signature(command).parameters.values() if p.name != "settings"]
    extra = []
    for s in measure_settings.SETTINGS:
        annotation, option = _setting_option(s)
        extra.append(inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation))

    @functools.wraps(command)
    def wrapper(**kw: Any) -> Any:
        chosen = {s.name: kw.pop(s.name) for s in measure_settings.SETTINGS}
        return command(**kw, settings=chosen)

    wrapper.__signature__ = inspect.Signature(own + extra)   # what typer reads
    wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
    return wrapper


# --------------------------------------------------------------------------- rendering helpers

def _fmt_s(s: float | None) -> str:
    return seconds_fixed(s)


def _fmt_bytes(n: float | None) -> str:
    return bytes_fixed(n)


def _median(rec) -> float | None:
    return rec.timing.median_s if rec.timing is not None else None


def _short_id(spec) -> str:
    c = "causal" if spec.causal else "full"
    extra = " interp" if spec.interpret else ""
    if spec.phase != "prefill":   # decode x4 / streaming x2: tokens per timed call after a context of T
        extra += f" {spec.phase} x{spec.tokens_per_call}"
    extra += "".join(f" {part}" for part in getattr(spec, "shape_parts", ()))   # KV1 Dv128 W256
    return f"{spec.kernel}/{spec.backend} {spec.dtype} {spec.mode} B{spec.B} T{spec.T} {c}{extra}"


_STATUS_STYLE = {"ok": "green", "wrong": "red", "oom": "magenta", "timeout": "yellow", "crashed": "red",
                 "skipped": "dim", "unavailable": "dim"}


class _RichObserver:
    """Progress bar (current point, elapsed, ETA) and a live table of finished points."""

    def __init__(self, console, quiet: bool = False, rows: int = 12):
        self.console = console
        self.quiet = quiet
        self.rows = rows
        self.finished: list = []
        self.live = None
        self.progress = None
        self.task = None
        self.todo_ids: set[str] = set()

    # SweepObserver protocol
    def on_plan(self, plan, todo, run_dir, resumed) -> None:
        if self.quiet:
            return

        verb = "resuming" if resumed else "run folder"
        self.console.print(f"[bold]serprof sweep[/] '{esc(plan.sweep.name)}': {len(todo)} point(s) to run, "
                           f"{len(plan.dropped)} dropped combination(s); {verb}: {esc(run_dir)}")
        _print_layer_dims(self.console, plan)
        if not resumed:
            _print_estimate(self.console, plan)
        self.todo_ids = {s.id for s in todo}
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                 console=self.console)
        self.task = self.progress.add_task("starting worker", total=max(1, len(todo)))
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.__enter__()

    def on_calibration(self, cal) -> None:
        if self.quiet or not cal or "error" in cal:
            return
        took = f" ({cal['duration_s']:.1f} s)" if isinstance(cal.get("duration_s"), (int, float)) else ""
        self.console.print(f"calibration: matmul {cal['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s, "
                           f"copy {cal['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s{took}")

    def on_worker_ready(self, info) -> None:
        pass

    def on_point_start(self, spec) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=esc(_short_id(spec)))

    def on_record(self, rec) -> None:
        self.finished.append(rec)
        if self.progress is not None and rec.id in self.todo_ids:
            self.progress.advance(self.task)
        if self.live is not None:
            self.live.update(self._render())

    def _render(self):
        t = Table(title=None, expand=False, show_edge=False)
        t.add_column("point", no_wrap=True)
        t.add_column("status", no_wrap=True)
        t.add_column("median", no_wrap=True, justify="right")
        t.add_column("peak mem", no_wrap=True, justify="right")
        t.add_column("note", no_wrap=True, overflow="ellipsis", max_width=60)
        for rec in self.finished[-self.rows:]:
            med = _median(rec)
            med_text = "interpreted" if rec.spec.interpret and med is not None else _fmt_s(med)
            peak = rec.memory.peak_bytes if rec.memory is not None else None
            style = _STATUS_STYLE.get(rec.status, "")
            note = Text((rec.reason or "")[:70])   # plain text: an OOM reason '[enforce fail ...]' stays visible
            t.add_row(Text(_short_id(rec.spec)), Text(rec.status, style=style), med_text, _fmt_bytes(peak), note)
        return Group(t, self.progress) if self.progress is not None else t

    def close(self) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(None, None, None)
            self.live = None
            if not self.console.is_terminal:
                self.console.print()   # a file/pipe gets the last frame without its newline


def _print_dry_run(console, plan) -> None:
    s = plan.sweep
    console.print(f"[bold]plan[/] {esc(s.name)}: device {s.device}, {len(plan.points)} point(s), "
                  f"memory budget {_fmt_bytes(plan.memory_budget_bytes)} ({plan.budget_source})")
    t = Table(show_edge=False)
    t.add_column("#", justify="right")
    t.add_column("point id", overflow="fold", min_width=min(60, max((len(p.spec.id) for p in plan.points), default=8)))
    t.add_column("est. memory", justify="right", no_wrap=True)
    t.add_column("plan", overflow="fold")
    for i, p in enumerate(plan.points, 1):
        t.add_row(str(i), esc(p.spec.id), _fmt_bytes(p.est_bytes),
                  "run" if p.runnable else "[dim]skipped: over the memory budget[/]")
    console.print(t)
    _print_layer_dims(console, plan)
    if plan.dropped:
        console.print(f"[bold]dropped[/] ({len(plan.dropped)}):")
        for d in plan.dropped:
            console.print(f"  {d.what}: {d.reason}", markup=False)
    _print_estimate(console, plan)


def _print_layer_dims(console, plan) -> None:
    """A layer's D is per head (as for kernels): say the model width each layer is built with."""
    dims = sorted({(p.spec.H, p.spec.D) for p in plan.points if p.spec.is_layer})
    if dims:
        console.print(f"{plan.sweep.level} dims: " + "; ".join(f"{h} heads x D {d} = hidden {h * d}" for h, d in dims),
                      markup=False)


def _print_estimate(console, plan) -> None:
    """The estimated wall time (``profiler.planning.estimate``) and, for a GPU scenario on CPU, a warning."""
    est, warning = api.sweep_estimate(plan)
    if est.points:
        console.print(f"estimated wall time: {_fmt_duration(est.total_s)} ({est.points} point(s) "
                      f"{_fmt_duration(est.points_s)}, worker start {_fmt_duration(est.startup_s)}, calibration "
                      f"{_fmt_duration(est.calibration_s)}, report {_fmt_duration(est.report_s)}; rates from "
                      f"{est.rates_from}; the budget of every point assumed used)", markup=False)
    if warning:
        console.print(f"[yellow]warning:[/] {esc(warning)}")


def _fmt_duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


# --------------------------------------------------------------------------- commands

def sweep(
    kernels: Optional[str] = typer.Option(None, "--kernels", help="Comma list of kernels, or of layers at --level layer|model (default: all)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Comma list of backends (default: every one that can run)."),
    lengths: Optional[str] = typer.Option(None, "--lengths", help="1k..64k | 1k..64k:x2 | 1k..8k:+1k | 512,1k,3000"),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch sizes, e.g. 1,4"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32,float16,bfloat16 (fp32, fp16, bf16)"),
    mode: Optional[str] = typer.Option(None, "--mode", help="fwd, fwdbwd, bwd (backward alone, forward untimed); comma list or all"),
    heads: Optional[str] = typer.Option(None, "--heads", help="Number of heads (list allowed); layers: the num_heads they are built with"),
    head_dim: Optional[str] = typer.Option(None, "--head-dim", help="Head dimension, per head at every level (list allowed; up to 256 where the kernel takes it). Layers: model width = heads x head dim (default 1024 / heads)."),
    kv_heads: Optional[str] = typer.Option(None, "--kv-heads", help="Key/value heads (GQA/MQA; list sweeps the ratio; each must divide --heads). Kernel level."),
    value_dim: Optional[str] = typer.Option(None, "--value-dim", help="Value head dim Dv != D (list allowed; kernels that cannot take it are dropped with the reason). Kernel level."),
    window: Optional[str] = typer.Option(None, "--window", help="Causal sliding window of softmax attention, in keys (list allowed; 1..T). Kernel level."),
    causal: Optional[bool] = typer.Option(None, "--causal/--non-causal",
                                          help="Only causal / only non-causal (default: both where supported)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda"),
    scenario: Optional[Path] = typer.Option(None, "--scenario", help="TOML scenario file (flags override it)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default reports/<run-id>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run folder."),
    rerun: Optional[List[str]] = typer.Option(None, "--rerun", help="With --resume: measure again the points whose id contains this text (repeatable); a re-run's record replaces the earlier one."),
    interpret: bool = typer.Option(False, "--interpret", help="Run fla backends on CPU under Triton's interpreter (correctness only)."),
    level: Optional[str] = typer.Option(None, "--level", help="kernel | layer (the study's seq2seq layers) | model (SER head)."),
    audio: Optional[str] = typer.Option(None, "--audio", help="Audio durations instead of --lengths: 2.75s..11s | 1min..20min[:N] | 5s,30s"),
    text_rate: Optional[float] = typer.Option(None, "--text-rate", help="Text tokens per second of audio (default 3; speech: 50 frames/s)."),
    bidirectional: Optional[str] = typer.Option(None, "--bidirectional", help="off | on (adds forward+reversed series of the linear layers) | only"),
    utterances: Optional[int] = typer.Option(None, "--utterances", help="Utterance replay of N MSP-Podcast-like durations (layer/model levels)."),
    packing: Optional[str] = typer.Option(None, "--packing", help="Replay batches (--batch B > 1): padded (default) | packed (fla layers, cu_seqlens; CUDA or --interpret) | both."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan, memory estimates and dropped combinations."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable results."),
    no_report: bool = typer.Option(False, "--no-report", help="Do not render the HTML report."),
    executor: Optional[str] = typer.Option(None, "--executor", help="local (default) | slurm (a job array through submitit)."),
    devices: Optional[str] = typer.Option(None, "--devices", help="CUDA devices, one pinned worker each, e.g. 0,1,2,3."),
    workers: Optional[int] = typer.Option(None, "--workers", help="CPU: N workers, each pinned to its own cores."),
    cores_per_worker: Optional[int] = typer.Option(None, "--cores-per-worker", help="CPU cores (= threads) per worker (default: cores / workers)."),
    partition: Optional[str] = typer.Option(None, "--partition", help="SLURM partition."),
    account: Optional[str] = typer.Option(None, "--account", help="SLURM account."),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", help="SLURM time limit per shard: 90, 2:00:00, 1-00:00:00, 2h."),
    gpus_per_task: Optional[int] = typer.Option(None, "--gpus-per-task", help="SLURM GPUs per shard job."),
    cpus_per_task: Optional[int] = typer.Option(None, "--cpus-per-task", help="SLURM CPUs per shard job; CPU shards: the worker's threads (default 1)."),
    array_parallelism: Optional[int] = typer.Option(None, "--array-parallelism", help="SLURM: at most this many shards at once."),
    sbatch_extra: Optional[str] = typer.Option(None, "--sbatch-extra", help="Extra sbatch flags, e.g. '--constraint=a100 --qos=high'."),
    shards: Optional[int] = typer.Option(None, "--shards", help="SLURM: number of shards (default: one per series, at most 64)."),
    settings: Optional[dict] = None,
) -> None:
    """Sweep length x batch x dtype over attention kernels; every point in a worker process."""
    # ``settings``: the measurement settings' options (--warmup, --target-ci, ...), generated from their
    # declarations (profiler.core.settings) by ``with_setting_options``.

    overrides: dict[str, Any] = {
        "kernels": kernels, "backends": backend, "lengths": lengths, "batch": batch, "dtypes": dtype,
        "modes": mode, "heads": heads, "head_dim": head_dim, "device": device,
        "kv_heads": kv_heads, "value_dim": value_dim, "window": window,
        "causal": None if causal is None else ("causal" if causal else "non-causal"),
        "interpret": True if interpret else None,
        "level": level, "audio": audio, "text_rate": text_rate, "bidirectional": bidirectional,
        "utterances": utterances, "packing": packing, **(settings or {}),
    }
    execution = {"executor": executor, "devices": devices, "workers": workers, "cores_per_worker": cores_per_worker,
                 "partition": partition, "account": account, "time_limit": time_limit,
                 "gpus_per_task": gpus_per_task, "cpus_per_task": cpus_per_task, "array_parallelism": array_parallelism,
                 "sbatch_extra": sbatch_extra, "shards": shards}
    console = _console(stderr=as_json)
    obs = _RichObserver(console, quiet=as_json)
    try:
        outcome = api.sweep_outcome(scenario, overrides, execution=execution, out=out, resume=resume, dry_run=dry_run,
                            observer=obs, render_report=not no_report, rerun=tuple(rerun or ()))
    finally:
        obs.close()
    if outcome.slurm is not None:
        render_slurm(console, outcome.slurm, as_json=as_json)
    elif outcome.plan is not None:
        _render_plan(console, outcome.plan, as_json)
    else:
        _render_result(console, outcome, as_json)
    if outcome.interrupted:
        typer.echo(f"serprof: interrupted; {runner_sweep.resume_hint(outcome.run_dir)}", err=True)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _render_plan(console, plan, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(runner_sweep.plan_as_dict(plan), indent=2))
    else:
        _print_dry_run(console, plan)


def _render_result(console, outcome, as_json: bool) -> None:
    result, report_path, report_error = outcome.result, outcome.report, outcome.report_error
    if as_json:
        typer.echo(json.dumps({
            "run_dir": str(result.run_dir), "interrupted": result.interrupted, "resumed": result.resumed,
            "counts": result.counts, "report": str(report_path) if report_path else None,
            "report_error": report_error, "wall_s": result.wall_s, "in_call_s": result.in_call_s,
            "in_call_share": result.in_call_share, "warnings": result.warnings,
            "records": [_record_summary(r) for r in result.records],
        }, indent=2))
        return
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {esc(w)}")
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result.counts.items())) or "no points"
    console.print(f"[bold]done[/] in {result.wall_s:.1f} s: {counts}")
    share = result.in_call_share
    if share is not None:
        console.print(f"time inside warm-up and timed calls: {result.in_call_s:.1f} s "
                      f"({share:.0%} of the sweep's wall time)")
    console.print(f"run folder: {result.run_dir}", markup=False)
    if report_path:
        console.print(f"report: {report_path}", markup=False)
    elif report_error:
        console.print(f"[red]report failed:[/] {esc(report_error)}")


def _record_summary(rec) -> dict[str, Any]:
    med = _median(rec)
    return {"id": rec.id, "status": rec.status, "reason": rec.reason,
            "median_s": None if rec.spec.interpret else med,
            "interpreted_s": med if rec.spec.interpret else None,
            "peak_bytes": rec.memory.peak_bytes if rec.memory else None,
            "energy_j": rec.energy.energy_j if rec.energy else None,
            "wall_s": rec.wall_s}


def env(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What serprof sees: devices, versions, NVML and RAPL availability (and why not)."""
    info = api.env()
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return

    c = _console()
    t = Table(show_header=False, show_edge=False)
    t.add_column(style="bold")
    t.add_column()

    def row(key: str, value: object) -> None:   # system text (CPU names, reasons): printed, never parsed
        t.add_row(esc(key), esc(value))

    row("host", f"{info['hostname']} ({info['platform']})")
    row("python", info["python"])
    row("cpu", f"{info['cpu_model']}, {info['cpu_count']} cpus ({info['cpu_affinity_count']} usable), "
                     f"torch threads {info.get('torch_threads')}")
    if info.get("cuda_available"):
        devs = "; ".join(f"{d['index']}: {d['name']} (sm {d['capability']}, {_fmt_bytes(d['total_memory_bytes'])})"
                         for d in info.get("cuda_devices", []))
        row("cuda", f"available, CUDA {info.get('cuda_build')}: {devs}")
    else:
        row("cuda", f"unavailable: {info.get('cuda_reason')}")
    nv = info["nvml"]
    row("nvml", f"available, driver {nv.get('driver')}" if nv["available"] else f"unavailable: {nv['reason']}")
    ra = info["rapl"]
    row("rapl", f"available: {', '.join(ra.get('zones', []))}" if ra["available"] else f"unavailable: {ra['reason']}")
    for name, ver in info["packages"].items():
        row(name, ver or "not installed")
    g = info.get("git")
    row("serprof git", f"{g['sha']}{' (dirty)' if g.get('dirty') else ''}" if g else "not a git checkout")
    c.print(t)


def trace(
    kernel: str = typer.Option(..., "--kernel", help="Kernel name (see serprof list)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Backend (default: the kernel's default)."),
    length: str = typer.Option("1k", "--length", "-T", help="Sequence length, e.g. 4k."),
    batch: int = typer.Option(1, "--batch"),
    heads: int = typer.Option(4, "--heads"),
    head_dim: int = typer.Option(64, "--head-dim"),
    dtype: str = typer.Option("float32", "--dtype"),
    mode: str = typer.Option("fwd", "--mode", help="fwd | fwdbwd"),
    causal: bool = typer.Option(True, "--causal/--non-causal"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    steps: int = typer.Option(3, "--steps", help="Profiled calls (after one warm-up call)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default reports/trace-<run-id>)."),
) -> None:
    """Profile one point under torch.profiler: a Chrome/Perfetto trace and a TensorBoard log dir."""
    res = api.trace(kernel=kernel, backend=backend, length=length, batch=batch, heads=heads, head_dim=head_dim,
                      dtype=dtype, mode=mode, causal=causal, device=device, steps=steps, out=out)
    typer.echo(f"point: {res['point']}")
    typer.echo(f"Chrome/Perfetto trace: {res['chrome_trace']}")
    typer.echo("  open https://ui.perfetto.dev and drag the file in (or chrome://tracing -> Load)")
    typer.echo(f"TensorBoard profiler log dir: {res['tensorboard_dir']}")
    typer.echo(f"  pip install 'serprof[tb]' && tensorboard --logdir {res['tensorboard_dir']}  (then the PYTORCH_PROFILER tab)")


def doctor(
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (cuda without CUDA -> exit 3)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the tiny sweep (default: a temporary folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Check the whole chain here: environment, `serprof verify`, a tiny sweep with energy.

    Exit codes: 0 = every check that can run on this machine passed (missing CUDA, NVML or RAPL
    are reported as unavailable, not as failures); 1 = a check failed (verification or a tiny-sweep
    point did not succeed); 3 = --device cuda was requested but no CUDA device is visible.
    """
    report = api.doctor(device=device, out=out)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        c = _console()
        mark = {"ok": "[green]works      [/]", "unavailable": "[yellow]unavailable[/]", "failed": "[red]FAILED     [/]"}
        for check in report["checks"]:
            c.print(f"{mark[check['state']]}  [bold]{esc(check['name'])}[/]: {esc(check['detail'])}")
        c.print(report["summary"], markup=False)
    raise typer.Exit(report["exit_code"])


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("sweep")(with_setting_options(sweep))
    app.command("env")(env)
    app.command("trace")(trace)
    app.command("doctor")(doctor)

    register_status(app)
