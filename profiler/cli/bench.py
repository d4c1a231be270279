"""serprof CLI command group: ``bench`` (benchmarks that print numbers; not tests).

* ``serprof bench kernels``: every CPU kernel backend vs SDPA (time, peak memory, speedup, slopes;
  per kernel group, slope over 4k..16k and ratio to the group's fastest, flagged against issue 17);
* ``serprof bench timer``: serprof's timer vs ``torch.utils.benchmark.Timer.adaptive_autorange``;
  ``--device cuda``: serprof's device time and call latency vs triton ``do_bench``,
  ``do_bench_cudagraph`` and the Timer (exit 3 without CUDA);
* ``serprof bench memory``: naive softmax peak memory vs its analytic model.

Thin commands over ``profiler.runner.bench``. The ``bench`` sub-app is module-level (``bench_app``)
so other command modules can add commands to it (e.g. ``bench gate``) with ``@bench_app.command()``.
torch is imported only inside the commands.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional

import typer
from rich.table import Table

from profiler.cli.scaleout import register_bench
from profiler.core.console import console
from profiler.core.errors import UsageError, did_you_mean
from profiler.core.fmt import mib, ms
from profiler.core.lazy import lazy_import
from profiler.core.paths import write_file
from profiler.core.units import parse_lengths

core_records = lazy_import('profiler.core.records')
bench = lazy_import('profiler.runner.bench')
runner = lazy_import('profiler.runner')
measure_device = lazy_import('profiler.measure.device')

bench_app = typer.Typer(help="Benchmarks of the kernels and of the measurement engine (print numbers).",
                        rich_markup_mode=None,
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` group to the app."""
    register_bench(bench_app)
    app.add_typer(bench_app, name="bench")


# --------------------------------------------------------------------------- helpers

def _parse_lengths(text: str) -> list[int]:
    """The sweep's length syntax (``512..16k``, ``1k,2k``, ``1k..8k:+1k``)."""
    try:
        Ts = sorted(set(int(x) for x in parse_lengths(text)))
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--lengths: {exc}") from None
    if not Ts or Ts[0] < 1:
        raise UsageError("--lengths: lengths must be positive")
    return Ts


def _fmt_ms(s: float | None) -> str:
    return ms(s)


def _fmt_mib(b: float | None) -> str:
    return mib(b)


def _fmt_x(v: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _console():
    return console()


# --------------------------------------------------------------------------- bench kernels

@bench_app.command("kernels")
def kernels_cmd(
    lengths: Optional[str] = typer.Option(None, "--lengths", help="sequence lengths (512..16k, 1k,4k, ...); default 512..16k, with --quick 4k,8k,16k"),
    kernels: Optional[str] = typer.Option(None, "--kernels",
                                          help="comma list of kernel[:backend[:causal|full]] (default: every backend in the registry that runs on CPU); SDPA causal and non-causal are always included"),
    quick: bool = typer.Option(False, "--quick", help="fit-range lengths only (4k,8k,16k) and fewer repetitions: indicative numbers in minutes"),
    json_out: bool = typer.Option(False, "--json", help="print machine-readable results"),
) -> None:
    """Time every CPU kernel backend (B=1, H=4, D=64, fp32, fwd) against SDPA; one worker process per series.

    Prints medians, memory, speedups, and per kernel group (``KernelSpec.group``) the log-log time
    slope over 4k..16k and each member's ratio to the group's fastest at 16k, flagging, for linear-family kernels,
    slope > 1.15 and ratio > 2 (issue 17's limits for the chunkwise engine).
    """
    Ts = _parse_lengths(lengths) if lengths else (list(bench.QUICK_LENGTHS) if quick else _parse_lengths("512..16k"))
    settings = bench.QUICK_SETTINGS if quick else bench.KERNEL_BENCH_SETTINGS
    series = bench.parse_series(kernels.split(",")) if kernels else bench.default_series()
    console = _console() if not json_out else None

    def progress(rec) -> None:
        if console is not None:
            med = bench.median_s(rec)
            console.print(f"  {rec.spec.kernel}/{rec.spec.backend}/{'causal' if rec.spec.causal else 'full'} "
                          f"T={rec.spec.T}: {rec.status} {_fmt_ms(med)} ms" + (f" ({rec.reason})" if rec.reason else ""),
                          highlight=False, markup=False)

    if console is not None:
        console.print(f"[bold]bench kernels[/]: {len(series)} series x {len(Ts)} lengths, one worker per series "
                      "(timings on a shared machine are indicative only)")
    records = bench.bench_kernels(series, Ts, settings=settings, on_record=progress)
    summary = bench.summarize_kernels(records)
    families = bench.family_rows(summary)
    if json_out:
        typer.echo(json.dumps({
            "settings": core_records.to_dict(settings), "shape": bench.SHAPE, "fit_range": bench.FIT_RANGE,
            "limits": {"slope": bench.SLOPE_LIMIT, "ratio": bench.RATIO_LIMIT},
            "summary": [core_records.to_dict(s) for s in summary],
            "families": [{**core_records.to_dict(r), "flagged": r.flagged} for r in families],
            "records": [core_records.to_dict(r) for r in records],
        }))
        return
    _render_kernels(console, summary, Ts, records)
    _render_families(console, families)


def _render_families(console, rows) -> None:
    """Issue 17's acceptance table: per group, slope (with its points) and ratio to the fastest."""
    lo, hi = bench.FIT_RANGE
    at_T = rows[0].at_T if rows else hi
    t = Table(title=f"per kernel group: time slope over T={lo}..{hi} (log-log least squares) and ratio to the "
                    f"group's fastest at T={at_T} (same causality); flags, for linear-family kernels: "
                    f"slope > {bench.SLOPE_LIMIT}, ratio > {bench.RATIO_LIMIT:g}")
    for c in ("group", "series", "slope", "points (T: ms)", f"ms at T={at_T}", "ratio", "fastest", "flag"):
        t.add_column(c, justify="right" if c in ("slope", "ratio") or c.startswith("ms") else "left",
                     no_wrap=c in ("series", "group"))
    for r in rows:
        flags = ", ".join(x for x, on in (("slope", r.slope_flag), ("ratio", r.ratio_flag)) if on)
        pts = " ".join(f"{T // 1024 if T % 1024 == 0 else T}{'k' if T % 1024 == 0 else ''}:{_fmt_ms(m)}"
                       for T, m in r.slope_points)
        t.add_row(r.group, r.label, _fmt_x(r.slope), pts or "-", _fmt_ms(r.median_s), _fmt_x(r.ratio, "{:.2f}x"),
                  r.fastest or "-", flags or "ok")
    console.print(t)
    flagged = [r for r in rows if r.flagged]
    linear = [r for r in rows if r.family == "linear"]
    console.print(f"acceptance (issue 17): {len(linear) - len(flagged)} of {len(linear)} linear-family series within limits"
                  + (f"; flagged: {', '.join(r.label for r in flagged)}" if flagged else ""),
                  highlight=False, markup=False)


def _render_kernels(console, summary, Ts, records) -> None:
    threads = next((r.worker.get("threads") for r in records if r.worker), None)
    lo, hi = bench.FIT_RANGE
    for title, getter, fmt in (
        ("median time, ms", lambda s: s.median_s, _fmt_ms),
        ("peak memory (torch allocations during the call), MiB", lambda s: s.peak_bytes, _fmt_mib),
        ("speedup vs SDPA non-causal (same run)", lambda s: s.speedup_vs_sdpa_full, lambda v: _fmt_x(v, "{:.1f}x")),
    ):
        t = Table(title=f"{title}  [B=1 H=4 D=64 fp32 fwd, CPU, {threads} threads]")
        t.add_column("series", no_wrap=True)
        for T in Ts:
            t.add_column(f"T={T}", justify="right")
        for s in summary:
            vals = dict(zip(s.lengths, getter(s)))
            stat = dict(zip(s.lengths, s.statuses))
            t.add_row(s.label, *[fmt(vals.get(T)) if stat.get(T) == "ok" else stat.get(T, "-") for T in Ts])
        console.print(t)
    t = Table(title=f"log-log slopes over T={lo}..{hi}")
    t.add_column("series", no_wrap=True)
    t.add_column("time slope", justify="right")
    t.add_column("memory slope", justify="right")
    t.add_column(f"speedup at T={max(Ts)}", justify="right")
    for s in summary:
        last = dict(zip(s.lengths, s.speedup_vs_sdpa_full)).get(max(Ts))
        t.add_row(s.label, _fmt_x(s.time_slope), _fmt_x(s.memory_slope), _fmt_x(last, "{:.1f}x"))
    console.print(t)
    for s in summary:
        for T, status, reason in zip(s.lengths, s.statuses, s.reasons):
            if status != "ok":
                console.print(f"{s.label} T={T}: {status}: {reason}", highlight=False, markup=False)


# --------------------------------------------------------------------------- bench timer

@bench_app.command("timer")
def timer_cmd(
    ops: Optional[str] = typer.Option(None, "--ops", help="comma list of kernel:backend:T (default: CPU softmax:sdpa:1024,softmax:sdpa:4096,retnet:torch:4096; CUDA softmax:sdpa:4096,retnet:fla:4096)"),
    rounds: int = typer.Option(2, "--rounds", min=1, help="alternating rounds per op (CPU)"),
    json_out: bool = typer.Option(False, "--json"),
    device: str = typer.Option("cpu", "--device", help="cpu: vs torch Timer; cuda: device time and call latency vs triton do_bench, do_bench_cudagraph and torch Timer"),
    json_path: Optional[str] = typer.Option(None, "--json-out", help="also write the results as JSON to this file"),
) -> None:
    """Timing fidelity: serprof vs the field's timers on the same op, in the same process."""
    if ops is not None:
        for o in ops.split(","):
            bench.parse_op(o.strip())   # a bad op is exit 2 here, before any (re-)exec or CUDA check
    if device == "cuda":
        _timer_cuda(ops, json_out, json_path)
        return
    if device != "cpu":
        raise UsageError(f"--device {device!r}: {did_you_mean(device, ('cpu', 'cuda'))}")

    env = runner.allocator.worker_environment("cpu", os.environ)
    if env != dict(os.environ):
        # glibc reads MALLOC_* at start-up only: compare both timers in a process with the workers'
        # allocator regime, or process history (not the timers) decides which one sees page faults.
        args = (["bench", "timer", "--rounds", str(rounds)] + (["--ops", ops] if ops else []) + (["--json"] if json_out else [])
                + (["--json-out", json_path] if json_path else []))
        raise typer.Exit(subprocess.run([sys.executable, "-m", "profiler", *args], env=env).returncode)

    op_list = [o.strip() for o in ops.split(",") if o.strip()] if ops else list(bench.DEFAULT_FIDELITY_OPS)
    rows = bench.timer_fidelity(op_list, rounds=rounds)
    data = [{**r.__dict__, "ratio": r.ratio, "matched_ratio": r.matched_ratio} for r in rows]
    if json_path:
        _write_json(json_path, data)
    if json_out:
        typer.echo(json.dumps(data))
        return

    t = Table(title="timer fidelity (CPU, same process; target: ratio within 1 +- 0.05 with no more wall time)")
    for c in ("op", "Timer median ms", "Timer wall s", "serprof median ms", "ratio", "serprof wall s",
              "matched median ms", "matched ratio", "matched wall s"):
        t.add_column(c, justify="left" if c == "op" else "right", no_wrap=c == "op")
    for r in rows:
        t.add_row(r.op, _fmt_ms(r.timer_median_s), f"{r.timer_wall_s:.2f}", _fmt_ms(r.serprof_median_s),
                  f"{r.ratio:.3f}", f"{r.serprof_wall_s:.2f}", _fmt_ms(r.matched_median_s), f"{r.matched_ratio:.3f}",
                  f"{r.matched_wall_s:.2f}")
    console = _console()
    console.print(t)
    console.print("serprof = default MeasureSettings; matched = serprof given the Timer's wall time as its total "
                  "budget. Shared machine: indicative only.", highlight=False)


def _write_json(path: str, data) -> None:
    write_file(path, json.dumps(data, indent=1) + "\n", "--json-out")


def _timer_cuda(ops: Optional[str], json_out: bool, json_path: Optional[str], *, device=None, tools=None,
                make_call=None, console=None) -> None:
    """``bench timer --device cuda`` (the seams let tests run it with a simulated device)."""
    if device is None:
        device = measure_device.get_device("cuda")   # UnavailableError without CUDA: one line, exit 3
    op_list = [o.strip() for o in ops.split(",") if o.strip()] if ops else list(bench.DEFAULT_CUDA_OPS)
    rows = bench.cuda_timer_comparison(op_list, device=device, tools=tools, make_call=make_call)
    data = {"device": device.name(), "settings": _settings_dict(bench.CUDA_TIMER_SETTINGS),
            "tools": bench.CUDA_TOOL_NOTES, "rows": [r.to_dict() for r in rows]}
    if json_path:
        _write_json(json_path, data)
    if json_out:
        typer.echo(json.dumps(data))
        return
    render_cuda_timers(rows, device.name(), console or _console())


def _settings_dict(s) -> dict:
    return core_records.to_dict(s)


def render_cuda_timers(rows, device_name: str, console) -> None:
    """The side-by-side table of ``bench timer --device cuda`` (ms per call, ratios to serprof)."""
    tools = list(rows[0].tools_s) if rows else list(bench.CUDA_TOOL_NOTES)
    t = Table(title=f"CUDA timers, ms per call ({device_name}; bf16 B=1 H=4 D=64 fwd)")
    for c in ["op", "serprof device", "method", "serprof latency", "launch-bound", *tools,
              *[f"device/{x}" for x in tools]]:
        t.add_column(c, justify="left" if c in ("op", "method") else "right", no_wrap=c == "op")
    for r in rows:
        lb = "-" if r.launch_bound is None else ("yes" if r.launch_bound else "no")
        t.add_row(r.op, _fmt_ms(r.serprof_device_s), r.serprof_method or "-", _fmt_ms(r.serprof_latency_s), lb,
                  *[_fmt_ms(r.tools_s.get(x)) for x in tools], *[_fmt_x(r.ratio(x), "{:.3f}") for x in tools])
    console.print(t)
    for name, note in bench.CUDA_TOOL_NOTES.items():
        console.print(f"{name}: {note}", highlight=False, markup=False)
    console.print("serprof device: device time (method shown); serprof latency: sync-to-sync, one isolated call.",
                  highlight=False)
    for r in rows:
        if r.serprof_method_reason:
            console.print(f"{r.op}: fallback because {r.serprof_method_reason}", highlight=False, markup=False)
        for who, err in r.errors.items():
            console.print(f"{r.op}: {who} failed: {err}", highlight=False, markup=False)


# --------------------------------------------------------------------------- bench memory

@bench_app.command("memory")
def memory_cmd(
    length: int = typer.Option(4096, "--length", min=1, help="sequence length T"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Naive softmax (B=1, H=4, fp32, fwd): CPU peak memory measured vs the kernel's analytic model."""
    rows = bench.memory_check(length)
    if json_out:
        typer.echo(json.dumps([{**r.__dict__, "ratio": r.ratio, "within_15pct": r.within()} for r in rows]))
        return

    t = Table(title="CPU peak memory vs analytic model (target: within +-15%)")
    for c in ("point", "measured MiB", "analytic MiB", "ratio", "within 15%"):
        t.add_column(c, justify="left" if c == "point" else "right", no_wrap=c == "point")
    for r in rows:
        if r.status != "ok":
            t.add_row(r.label, r.status, _fmt_mib(r.analytic_bytes), "-", "-")
            continue
        t.add_row(r.label, _fmt_mib(r.measured_bytes), _fmt_mib(r.analytic_bytes), _fmt_x(r.ratio, "{:.3f}"),
                  "yes" if r.within() else "NO")
    console = _console()
    console.print(t)
    for r in rows:
        if r.status != "ok":
            console.print(f"{r.label}: {r.status}: {r.reason}", highlight=False, markup=False)
