"""serprof CLI command group: kernels (``serprof list``, ``serprof verify``).

Thin commands over ``profiler.kernels`` and ``profiler.measure.verify``: parse flags, call one library
function, render a table or JSON, choose the exit code (1: a check failed; 2 and 3 come from
``UsageError`` / ``UnavailableError`` through ``profiler.cli.main``). torch is imported only inside
the commands; ``list`` never imports fla.
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.table import Table

from profiler.core.console import console as _console
from profiler.core.console import esc
from profiler.core.fmt import sci
from profiler.core.lazy import lazy_import

api = lazy_import("profiler.api")
from profiler.core import settings as measure_settings
from profiler.core.errors import UsageError

_KM = measure_settings.lookup("kernel_modules")


def _kernel_module_option():
    """``--kernel-module`` as the settings model declares it (repeatable)."""
    return typer.Option(None, _KM.flag, help=_KM.help_text(), metavar="<module>")

DEVICES = ("cpu", "cuda")


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


#: How ``serprof list`` titles each level (the ``level`` of a scenario / ``--level``).
LEVEL_TITLES = {"kernel": "kernel level: attention kernels (--level kernel, the default)",
                "layer": "layer level: the study's seq2seq layers (--level layer, scenarios/paper.toml)",
                "model": "model level: each layer inside the SER head (--level model)"}


def list_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    device: str = typer.Option("all", "--device", help="cpu, cuda or all."),
    level: str = typer.Option("all", "--level", help="kernel, layer, model or all: the entries a scenario's "
                              "`kernels` can name at that level."),
    kernel_module: Optional[List[str]] = _kernel_module_option(),
    fla: bool = typer.Option(False, "--fla", help="List the installed fla's op families instead: which kernel "
                             "covers each, or why it is left out."),
) -> None:
    """List every entry x backend x device of each level (kernels, layers, SER model): available or not, and why."""
    if fla:
        _list_fla(api.fla_coverage(), json_out)
        return
    rows = api.list_kernels(device, level=level, kernel_modules=kernel_module)
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return

    console = _console()
    for lv in dict.fromkeys(r["level"] for r in rows):
        table = Table(title=LEVEL_TITLES.get(lv, lv))
        mine = [r for r in rows if r["level"] == lv]
        width = {"kernel": max(len(r["kernel"]) for r in mine), "backend": max(len(r["backend"]) for r in mine),
                 "status": len("unavailable")}
        for col in ("kernel" if lv == "kernel" else "entry", "group", "backend", "device", "status", "phases",
                    "reason / note"):   # names are never cut or wrapped: a name is what the user types next
            w = width.get("kernel" if col == "entry" else col)
            table.add_column(col, no_wrap=w is not None, min_width=w)
        for r in rows:
            if r["level"] != lv:
                continue
            status = "[green]available[/green]" if r["available"] else "[red]unavailable[/red]"
            note = r["description"] if r["available"] else r["reason"]
            if r.get("origin", "built-in") != "built-in":
                note = f"{note} [{r['origin']}]"
            phases = ", ".join(r["phases"])
            table.add_row(esc(r["kernel"]), esc(r.get("group") or r["family"]), esc(r["backend"]), esc(r["device"]),
                          status, phases,
                          esc(note))
        console.print(table)


def _list_fla(rows: list[dict], json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        raise UsageError("--fla: flash-linear-attention (fla) is not installed")

    table = Table(title=f"fla.ops families: {sum(r['covered'] for r in rows)} of {len(rows)} covered")
    for col in ("family", "entry points", "kernel", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(esc(r["family"]), esc(", ".join(r["entry_points"])), esc(r["kernel"] or "-"), esc(r["reason"]))
    _console().print(table)


def _fmt(x: float | None) -> str:
    return sci(x)


def verify_cmd(
    kernels: Optional[str] = typer.Option(None, "--kernels", help="Comma-separated kernels (default: all)."),
    backend: Optional[str] = typer.Option(None, "--backend", help="Comma-separated backends (default: every available one)."),
    lengths: Optional[str] = typer.Option(None, "--lengths", help="Sequence lengths, e.g. '63,256' or '1k..4k' (default 1,100; --interpret: 64)."),
    batch: Optional[str] = typer.Option(None, "--batch", help="Batch sizes, e.g. '1,3' (default 2; --interpret: 1)."),
    heads: int = typer.Option(2, "--heads", help="Number of heads."),
    head_dim: int = typer.Option(32, "--head-dim", help="Head dimension."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp32, fp16, bf16, comma-separated (default fp32; --interpret: fp32,fp16)."),
    mode: str = typer.Option("fwd,fwdbwd", "--mode", help="fwd, fwdbwd or both (comma-separated)."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    interpret: bool = typer.Option(False, "--interpret", help="Run the fla Triton backends on CPU under Triton's interpreter (correctness only)."),
    max_t: Optional[int] = typer.Option(None, "--max-t", help="Longest T compared in full (default: each kernel's reference limit)."),
    seed: int = typer.Option(0, "--seed", help="Input seed."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    phase: str = typer.Option("prefill", "--phase", help="prefill, or decode / streaming: the decode backends' "
                              "outputs after each length against the full-sequence reference."),
    decode_steps: int = typer.Option(2, "--decode-steps", help="Decode: tokens checked after each length."),
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", help="Streaming: tokens per chunk."),
    kernel_module: Optional[List[str]] = _kernel_module_option(),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="Check processes at a time, one per kernel/backend "
                                       "(default: CUDA min(8, CPUs), since compiling Triton kernels is CPU-bound "
                                       "and a CUDA fault must not poison other backends; CPU 1, in this process)."),
) -> None:
    """Check backends against their fp32 references; exit 1 if any error exceeds its tolerance."""
    results = api.verify(kernels, backend, lengths=lengths, batch=batch, heads=heads, head_dim=head_dim,
                         dtypes=dtype, modes=mode, device=device, interpret=interpret, max_t=max_t, seed=seed,
                         phase=phase, decode_steps=decode_steps, chunk_size=chunk_size,
                         kernel_modules=kernel_module, jobs=jobs)
    failed = [r for r in results if r.failed]
    if json_out:
        typer.echo(json.dumps({"passed": not failed, "results": [r.to_dict() for r in results]}, indent=2))
    else:
        _render(results, interpret)
    if failed:
        raise typer.Exit(1)


_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def _render(results, interpret: bool) -> None:
    title = "serprof verify" + (" (Triton interpreter on CPU: correctness only)" if interpret else "")
    table = Table(title=title)
    for col in ("kernel", "backend", "dtype", "mode", "causal", "shape B,T,H,D", "against",
                "max abs err", "max rel err", "grad rel err", "tolerance", "verdict"):
        table.add_column(col, justify="right" if "err" in col or col == "tolerance" else "left")
    for r in results:
        s = r.shape
        c = r.correctness
        verdict = ("[yellow]skipped[/yellow]" if r.skipped else "[green]ok[/green]" if r.passed
                   else ("[red]error[/red]" if r.error else "[red]FAIL[/red]"))
        checked = "" if c is None or c.checked_T in (None, s.T) else f" (rows<{c.checked_T})"
        table.add_row(r.kernel, r.backend, _SHORT.get(r.dtype, r.dtype), r.mode, "causal" if r.causal else "full",
                      f"{s.B},{s.T},{s.H},{s.D}{checked}", r.against or "reference",
                      _fmt(c and c.max_abs_err), _fmt(c and c.max_rel_err), _fmt(c and c.grad_max_rel_err),
                      _fmt(c and c.tolerance), verdict)
    console = _console()          # off a terminal: full width (profiler.core.console)
    console.print(table)
    for r in results:
        if r.error:
            console.print(f"[red]{esc(f'{r.kernel}/{r.backend} {r.dtype} {r.mode}: {r.error}')}[/red]")
    skipped = sorted({f"{r.kernel}/{r.backend} {r.dtype}: {r.skipped}" for r in results if r.skipped})
    for line in skipped:
        console.print(f"[yellow]skipped {esc(line)}[/yellow]")
    ran = [r for r in results if not r.skipped]
    n_bad = sum(not r.passed for r in ran)
    n_skip = len(results) - len(ran)
    console.print(f"{len(ran) - n_bad}/{len(ran)} checks within tolerance"
                  + (f"; {n_skip} combination{'s' if n_skip != 1 else ''} skipped (not supported)" if n_skip else ""))


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command("list")(list_cmd)
    app.command("verify")(verify_cmd)
