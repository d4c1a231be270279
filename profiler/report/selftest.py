"""Rendering of ``serprof selftest`` (``profiler.analysis.selftest.SelftestResult``): a console table and a summary."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

_STATE = {"ok": "[green]ok[/]", "failed": "[red]FAILED[/]", "unavailable": "[yellow]n/a here[/]"}


def selftest_table(result: Any) -> Table:
    """One row per check: group, check, state, what was measured (numbers with their reference)."""
    t = Table(title=f"serprof selftest --device {result.device}" + (" --quick" if result.quick else ""))
    for col in ("group", "check", "state", "measured"):
        t.add_column(col, overflow="fold")
    for c in result.checks:
        t.add_row(c.group, escape(c.name), _STATE[c.state], escape(c.detail))
    return t


def selftest_summary(result: Any, json_path: str | None = None) -> list[str]:
    """Closing lines: the verdict, failures by name, where the JSON went."""
    n = len(result.checks)
    ok = sum(c.state == "ok" for c in result.checks)
    na = sum(c.state == "unavailable" for c in result.checks)
    head = (f"PASSED: {ok} of {n} checks ok, {na} not applicable on this machine, in {result.wall_s:.0f} s"
            if result.passed else
            f"FAILED: {', '.join(f'{c.group}/{c.name}' for c in result.failed)} ({len(result.failed)} of {n})")
    lines = [head]
    if json_path:
        lines.append(f"JSON: {json_path}")
    return lines
