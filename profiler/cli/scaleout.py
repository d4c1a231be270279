"""Scale-out pieces of the CLI: executor flags of ``serprof sweep``, ``serprof status``, ``serprof bench scaleout``.

``serprof sweep`` (``profiler.cli.sweep``) calls ``choose_executor`` with its ``--executor``,
``--devices``, ``--workers`` and SLURM flags, then either passes the local executor to ``run_sweep``
or hands the sweep to ``submit_slurm``. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from profiler.core.console import esc
from profiler.core.errors import UsageError

EXECUTORS = ("local", "slurm")
SLURM_FLAGS = ("partition", "account", "time_limit", "gpus_per_task", "array_parallelism", "sbatch_extra", "shards")


@dataclass
class ExecutorChoice:
    kind: str                   # "local" | "slurm"
    executor: Any = None        # local: an Executor, or None for the default single worker
    slurm: Any = None           # slurm: SlurmOptions


def choose_executor(executor: str | None, device: str, *, devices: str | None = None, workers: int | None = None,
                    cores_per_worker: int | None = None, slurm: dict[str, Any] | None = None,
                    slurm_backend: str = "slurm") -> ExecutorChoice:
    """Validate the executor flags (``UsageError``: one line, exit 2) and build the executor."""
    kind = (executor or "local").strip().lower()
    if kind not in EXECUTORS:
        raise UsageError(f"--executor {executor!r} is not allowed; valid: {', '.join(EXECUTORS)}")
    given = {k: v for k, v in (slurm or {}).items() if v not in (None, "", ())}
    if kind == "local":
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{flags} {'is a SLURM option' if len(given) == 1 else 'are SLURM options'}; "
                             "add --executor slurm")
        from profiler.runner.multi import local_executor
        from profiler.runner.pinning import parse_devices

        ex = local_executor(device, parse_devices(devices) if devices else (), workers, cores_per_worker)
        return ExecutorChoice("local", executor=ex)
    if devices or workers is not None or cores_per_worker is not None:
        raise UsageError("--devices/--workers/--cores-per-worker choose local workers; with --executor slurm "
                         "each shard uses the GPUs of its job: use --gpus-per-task")
    from profiler.runner.slurm import options_from_flags

    return ExecutorChoice("slurm", slurm=options_from_flags(**given, backend=slurm_backend))


EXECUTION_KEYS = ("executor", "devices", "workers", "cores_per_worker") + SLURM_FLAGS


def execution_table(scenario: Path | None) -> dict[str, Any]:
    """The scenario file's ``[execution]`` table (validated keys; values as the flags take them)::

        [execution]
        executor = "slurm"          # local | slurm
        devices = [0, 1]            # or "0,1"; CUDA, one worker per device (local)
        workers = 2                 # CPU workers, each on its own cores (local)
        cores_per_worker = 1
        partition = "gpu"           # SLURM: partition, account, time_limit, gpus_per_task,
        time_limit = "2:00:00"      #        array_parallelism, sbatch_extra, shards
    """
    if scenario is None:
        return {}
    from profiler.core.errors import did_you_mean
    from profiler.spec.scenario import load_scenario

    table = load_scenario(scenario).get("execution") or {}
    if not isinstance(table, dict):
        raise UsageError(f"{scenario}: key 'execution' must be a table ([execution])")
    out: dict[str, Any] = {}
    for key, value in table.items():
        k = key.replace("-", "_")
        if k not in EXECUTION_KEYS:
            raise UsageError(f"{scenario}: unknown key 'execution.{key}'; {did_you_mean(k, EXECUTION_KEYS)}")
        if k == "devices" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if k == "sbatch_extra" and isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if k in ("workers", "cores_per_worker", "gpus_per_task", "array_parallelism", "shards") and (
                isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{scenario}: key 'execution.{key}' must be an integer, got {value!r}")
        if k in ("executor", "partition", "account", "time_limit", "sbatch_extra", "devices") and not (
                isinstance(value, str) or (k == "time_limit" and isinstance(value, int) and not isinstance(value, bool))):
            raise UsageError(f"{scenario}: key 'execution.{key}' must be a string, got {value!r}")
        if k == "sbatch_extra":
            from profiler.runner.slurm import parse_sbatch_extra

            parse_sbatch_extra(value, key=f"{scenario}: key 'execution.{key}'")
        out[k] = value
    return out


def choose_for_sweep(flags: dict[str, Any], *, scenario: Path | None, spec: Any, resume: Path | None) -> ExecutorChoice:
    """``serprof sweep``'s executor: flags over the scenario's ``[execution]`` table; a resumed SLURM run stays SLURM."""
    values = {**execution_table(scenario), **{k: v for k, v in flags.items() if v is not None}}
    device = spec.device if spec is not None else "auto"
    if resume is not None:
        from profiler.runner.slurm import is_slurm_run
        from profiler.store.runs import RunDir

        device = str(RunDir.open(resume).read_manifest().scenario.get("device") or "auto")
        if is_slurm_run(resume) and values.get("executor") is None:
            values["executor"] = "slurm"
    return choose_executor(values.pop("executor", None), device, devices=values.pop("devices", None),
                           workers=values.pop("workers", None), cores_per_worker=values.pop("cores_per_worker", None),
                           slurm={k: values.get(k) for k in SLURM_FLAGS})


# --------------------------------------------------------------------------- slurm submission

def submit_slurm(console, spec, opts, *, out: Path | None, resume: Path | None, dry_run: bool, as_json: bool) -> None:
    """Submit (or dry-run, or resume) a SLURM sweep and render what happened."""
    from profiler.runner.slurm import submit

    res = submit(spec, opts=opts, out=out, resume=resume, dry_run=dry_run)
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
    from profiler.runner.status import run_status

    st = run_status(run)
    if as_json:
        typer.echo(json.dumps(st.to_dict(), indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    c = Console()
    c.print(f"[bold]{esc(st.run_dir)}[/] ({esc(st.executor)}): {st.done}/{st.total} points have a record"
            + ("" if st.complete else f", {st.total - st.done} missing"))
    t = Table(show_edge=False)
    for col in ("part", "done/total", "statuses", "state", "hosts", "devices"):
        t.add_column(col, overflow="fold")
    for r in st.rows:
        stat = ", ".join(f"{k} {v}" for k, v in sorted(r.statuses.items())) or "-"
        t.add_row(*(Text(x) for x in (r.name, f"{r.done}/{r.total}", stat, r.state or "-", ", ".join(r.hosts) or "-",
                                      ", ".join(r.devices) or "-")))
    c.print(t)
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
    from profiler.tools.scaleout_bench import bench_scaleout

    res = bench_scaleout(workers=workers, out_dir=out)
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
