"""``serprof selftest``: a thin skin over ``profiler.api.selftest`` (checks in ``profiler.probes.selftest``,
table in ``profiler.report.selftest``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from profiler.core.console import console
from profiler.core.lazy import lazy_import
from profiler.report.selftest import selftest_summary, selftest_table

api = lazy_import("profiler.api")


def selftest(
    device: str = typer.Option("cpu", "--device", help="cpu | cuda (cuda without CUDA -> exit 3)."),
    quick: bool = typer.Option(False, "--quick", help="Every check, shrunk (one op, fp32, short budgets): seconds, for tests."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Also write the result as JSON to this file."),
) -> None:
    """Can serprof's numbers be trusted here? Timer vs the field's references, memory, energy, every
    backend's correctness, the launch-bound diagnosis, environment and conditions. Run it first on a new
    GPU (`serprof selftest --device cuda`, about 8 minutes); CPU takes about 2.

    Exit codes: 0 = every check passed (checks this machine cannot run are reported, not failed);
    1 = a check failed; 2 = bad input; 3 = --device cuda without a CUDA device.
    """
    c = console()
    result = api.selftest(device=device, quick=quick, json_out=json_out,
                          progress=lambda name: print(f"selftest: {name} ...", file=sys.stderr, flush=True))
    c.print(selftest_table(result))
    for line in selftest_summary(result, str(json_out) if json_out else None):
        c.print(line, markup=False, highlight=False)
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    app.command("selftest")(selftest)
