"""Scale-out pieces of the CLI: SLURM submission output, ``serprof status``, ``serprof bench scaleout``.

The executor choice (``--executor``, ``--devices``, ``--workers``, SLURM flags and the scenario's
``[execution]`` table) lives in ``profiler.runner.execution``; ``profiler.api.sweep`` uses it and this
module only renders. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from profiler.core.console import console as _console
from profiler.core.console import esc
from profiler.core.lazy import lazy_import

api = lazy_import("profiler.api")
execution = lazy_import('profiler.runner.execution')
runner_slurm = lazy_import('profiler.runner.slurm')
runner_scaleout_bench = lazy_import('profiler.runner.scaleout_bench')

_MOVED = ("EXECUTION_KEYS", "EXECUTORS", "SLURM_FLAGS", "ExecutorChoice", "choose_executor", "choose_for_sweep",
          "execution_table")


def __getattr__(name: str):
    """The executor choice and the ``[execution]`` table moved to ``profiler.runner.execution`` (kept importable)."""
    if name in _MOVED:
        return getattr(execution, name)
    raise AttributeError(name)


# --------------------------------------------------------------------------- slurm submission

def submit_slurm(console, spec, opts, *, out: Path | None, resume: Path | None, dry_run: bool, as_json: bool) -> None:
    """Submit (or dry-run, or resume) a SLURM sweep and render what happened."""
    render_slurm(console, runner_slurm.submit(spec, opts=opts, out=out, resume=resume, dry_run=dry_run), as_json=as_json)


def render_slurm(console, res, *, as_json: bool) -> None:
    """Render a SLURM submission (``profiler.runner.slurm.submit``'s result)."""
    if as_json:
        typer.echo(json.dumps({"run_dir": str(res.run_dir), "dry_run": res.dry_run, "resumed": res.resumed,
                               "planned": res.planned, "missing": res.missing, "shards": res.shards,
                               "job_ids": res.job_ids, "script": res.script, "warnings": res.warnings}, indent=2))
        return
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {esc(w)}", markup=True)
    if not res.shards:
        console.print(f"nothing to submit: every planned point of {res.run_dir} has a record", markup=False)
        return
    what = "would submit" if res.dry_run else "submitted"
    console.print(f"{what} {len(res.shards)} shard(s), {res.missing} point(s) of {res.planned} planned; "
                  f"run folder: {res.run_dir}", markup=False)
    for sh in res.shards:
        first, last = sh["ids"][0], sh["ids"][-1]
        typer.echo(f"  shard {sh['shard']}: {sh['points']} point(s), {first} .. {last}")
    if res.dry_run:
        console.print("job script (sbatch):", markup=False)
        typer.echo(res.script)
    else:
        console.print(f"job ids: {', '.join(res.job_ids)}", markup=False)
        console.print(f"progress: serprof status {res.run_dir}; continue after failures: "
                      f"serprof sweep --executor slurm --resume {res.run_dir}", markup=False)


# --------------------------------------------------------------------------- serprof status

def status(
    run: Path = typer.Argument(..., help="Run folder (reports/<run-id>)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Progress of a run: per shard (SLURM runs) or per worker (local runs), and per device model."""
    st = api.status(run)
    if as_json:
        typer.echo(json.dumps(st.to_dict(), indent=2, default=str))
        return

    c = _console()
    c.print(f"[bold]{esc(st.run_dir)}[/] ({esc(st.executor)}): {st.done}/{st.total} points have a record"
            + ("" if st.complete else f", {st.total - st.done} missing"))
    if st.scheduler:
        c.print(f"scheduler: {esc(st.scheduler)}")
    slurm = any(r.job_id for r in st.rows)
    t = Table(show_edge=False)
    cols = ("part", "done/total", "statuses", "state") + (("job", "attempts") if slurm else ()) + ("hosts", "devices")
    for col in cols:
        t.add_column(col, overflow="fold")
    for r in st.rows:
        stat = ", ".join(f"{k} {v}" for k, v in sorted(r.statuses.items())) or "-"
        if r.interrupted:
            stat = ("" if stat == "-" else stat + "; ") + f"interrupted {r.interrupted} (measured again)"
        state = (r.state or "-") + (f" ({r.reason})" if r.reason else "")
        job = (f"{r.job_id or '-'}" + (f" {r.scheduler_state}" if r.scheduler_state else ""),
               str(r.attempts or "-")) if slurm else ()
        t.add_row(*(Text(x) for x in (r.name, f"{r.done}/{r.total}", stat, state, *job, ", ".join(r.hosts) or "-",
                                      ", ".join(r.devices) or "-")))
    c.print(t)
    for r in st.rows:
        if r.log and (r.state.startswith("failed") or r.state == "cancelled"):
            c.print(f"{esc(r.name)}: log {esc(r.log)}")
    if len(st.devices) > 1:
        c.print("measured on " + "; ".join(f"{d}: {sum(v.values())} point(s)" for d, v in sorted(st.devices.items()))
                + " (reported per device model, never averaged)", markup=False)
    for w in st.warnings:
        c.print(f"[yellow]warning:[/] {esc(w)}")


# --------------------------------------------------------------------------- serprof bench scaleout

def bench_scaleout_cmd(
    workers: int = typer.Option(2, "--workers", help="Pinned single-core workers to compare with one."),
    out: Optional[Path] = typer.Option(None, "--out", help="Folder for the two runs (default: a temporary folder)."),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable results."),
) -> None:
    """1 pinned 1-core worker vs N: wall time ratio (target <= 0.65 for N=2) and per-point median agreement."""
    res = runner_scaleout_bench.bench_scaleout(workers=workers, out_dir=out)
    if json_out:
        typer.echo(json.dumps(res, indent=2, default=str))
        return
    typer.echo(f"sweep of {res['points']} points; 1 worker: {res['wall_1_s']:.1f} s, "
               f"{res['workers']} workers: {res['wall_n_s']:.1f} s -> ratio {res['wall_ratio']:.2f} "
               f"(target <= {res['target_wall_ratio']})")
    if res.get("run_phase_ratio") is not None:
        typer.echo(f"run phase only (plan made -> last record): {res['run_phase_1_s']:.1f} s vs "
                   f"{res['run_phase_n_s']:.1f} s -> ratio {res['run_phase_ratio']:.2f}")
    mr = res["median_ratio_of_medians"]
    typer.echo(f"per-point medians, {res['workers']} workers / 1 worker: median ratio "
               f"{'-' if mr is None else f'{mr:.3f}'}; {res['agreeing_points']}/{res['compared_points']} points "
               f"agree (95% CI of the ratio contains 1, noise floor {res['noise_floor']:.0%})")
    typer.echo("pinning: " + "; ".join(f"worker {s['slot']}: cores {s.get('cores')}" for s in res["slots"]))
    typer.echo("indicative only on a shared machine; runs kept in: " + ", ".join(res["run_dirs"]))


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``bench scaleout`` to the ``bench`` group."""
    bench_app.command("scaleout")(bench_scaleout_cmd)


def register_status(app: typer.Typer) -> None:
    """Add ``status`` to the app."""
    app.command("status")(status)
