"""serprof CLI command group: report, export, frontier.

Thin commands over ``profiler.report`` and ``profiler.probes.frontier``; heavy imports (numpy,
matplotlib, torch for the frontier probe) happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from profiler.core.console import console as _console
from profiler.core.lazy import lazy_import
from profiler.core.paths import check_output_file, write_file

api = lazy_import("profiler.api")
store_runs = lazy_import('profiler.store.runs')
probes_frontier = lazy_import('profiler.probes.frontier')


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("report")(report)
    app.command("export")(export)
    app.command("frontier")(frontier)


def report(
    runs: List[Path] = typer.Argument(..., help="Run folder(s); several are overlaid with a legend per run."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="Reference: KERNEL, KERNEL/BACKEND or "
                                           "KERNEL/BACKEND/causal|full "
                                           "(default: like with like, causal softmax for causal series and full softmax for non-causal "
                                           "ones: SDPA, else naive, else torch)."),
    markdown: Optional[str] = typer.Option(None, "--markdown", help="Also write a short Markdown summary to FILE ('-': stdout)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default: RUN/report.html; for overlays "
                                       "reports/overlay-<time>/report.html)."),
) -> None:
    """Render the HTML report (figures, fits, crossovers, frontier) from stored run folder(s)."""
    if out is not None:
        check_output_file(out, "--out", create_parents=True)
    if markdown is not None and markdown != "-":
        check_output_file(markdown, "--markdown")
    _print_load_warnings(runs)
    path = api.report(runs, baseline=baseline, out=out)
    text = api.markdown_summary(runs, baseline=baseline) if markdown is not None else None
    if markdown is not None:
        if markdown == "-":
            typer.echo(text, nl=False)
        else:
            write_file(markdown, text, "--markdown")
    typer.echo(f"report: {path}", err=markdown == "-")


def export(
    run: Path = typer.Argument(..., help="Run folder."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv | json | parquet (parquet needs pyarrow); one typed column table for all three."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (default: RUN/points.<format>)."),
) -> None:
    """Flatten a run's records to one row per point (median/CI, memory, energy, correctness)."""
    path = api.export(run, fmt, output)
    _print_load_warnings([run])
    typer.echo(str(path))


def _print_load_warnings(runs) -> None:
    """Skipped or duplicate records of the run folders, one line each on stderr (plain text)."""
    for run in runs:
        for w in store_runs.load_warnings(run):
            typer.echo(f"serprof: warning: {w}", err=True)


def frontier(
    device_memory: str = typer.Option(..., "--device-memory", help="Device memory, e.g. 80GiB, 24GB, 16e9."),
    kernels: Optional[str] = typer.Option(None, "--kernels", help="Comma-separated kernels (default: all)."),
    dtype: str = typer.Option("bfloat16", "--dtype", help="float32 | float16 | bfloat16."),
    batch: int = typer.Option(1, "--batch", "-B", help="Batch size."),
    heads: int = typer.Option(4, "--heads", "-H", help="Heads."),
    head_dim: int = typer.Option(64, "--head-dim", "-D", help="Head dim."),
    mode: str = typer.Option("fwd", "--mode", help="fwd | fwdbwd."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Longest T that fits each kernel on a device of a given memory size (no GPU needed).

    fla kernels: fla's host code runs on CPU in 'dry' interpretation (kernel bodies skipped) and its
    allocations are measured exactly at a few T, then fitted; other backends use the kernel's analytic
    memory model. The allocator terms this cannot see are printed with the answer.
    """
    mem = probes_frontier.parse_bytes(device_memory)
    names = [k.strip() for k in kernels.split(",") if k.strip()] if kernels else None
    results = api.frontier(mem, kernels=names, dtype=dtype, B=batch, H=heads, D=head_dim, mode=mode)
    if as_json:
        typer.echo(json.dumps({"device_memory_bytes": mem, "unseen_terms": list(probes_frontier.UNSEEN_TERMS),
                               "results": [r.to_dict() for r in results]}, indent=2))
        return

    t = Table(title=f"Longest T that fits in {mem / 2**30:.1f} GiB ({dtype}, {mode}, B={batch}, H={heads}, D={head_dim})")
    for col in ("kernel", "backend", "method", "max T", "memory at max T"):
        t.add_column(col, justify="right" if col.startswith(("max", "memory")) else "left")
    for r in results:
        t.add_row(r.kernel, r.backend, r.method, r.max_T_text, r.bytes_text)
    con = _console()
    con.print(t)
    con.print("fla-dry: fla's host code run on CPU with kernel bodies skipped; allocations measured exactly "
              "at a few T and fitted (a + bT + cT^2). analytic: the kernel's memory model + inputs.")
    for r in results:
        if r.method == "unavailable" or r.method == "fla-dry":
            con.print(f"  {r.kernel}/{r.backend}: {r.note}", markup=False)
    con.print("Not included (leave headroom for them): " + "; ".join(probes_frontier.UNSEEN_TERMS))
