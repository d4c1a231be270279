"""A short Markdown summary of one or more runs, for a CI job summary or a PR comment.

Deterministic for a given run folder (the bootstrap is seeded), so it is tested against golden files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from profiler.analysis.summary import RunAnalysis
from profiler.report.text import sentences, summary_rows


def _cell(s: str) -> str:
    """Escape a table/text cell: pipes, newlines and HTML (CI summaries render inline HTML)."""
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("*", "\\*").replace("|", "\\|").replace("\n", " "))


def run_markdown(a: RunAnalysis) -> str:
    m = a.manifest
    name = (m.scenario or {}).get("name", m.run_id)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(a.status_counts.items()))
    lines = [f"### serprof: {_cell(name)} (`{_cell(m.run_id)}`)", "", f"Points: {counts or 'none'}.", ""]
    lines += [f"- {_cell(s)}" for s in sentences(a)]
    rows = summary_rows(a)
    if rows:
        lines += ["", "| mechanism | config | exponent k [95% CI] | faster than baseline | max speedup | "
                      "max memory saving | longest T |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            mech = f"**{_cell(r.variant)}** (baseline)" if r.is_baseline else _cell(r.variant)
            lines.append("| " + " | ".join([mech] + [_cell(x) for x in (r.facet, r.slope, r.crossover, r.max_speedup,
                                                                r.max_memory_saving, r.longest_T)]) + " |")
    failed = a.failures + a.wrong
    if failed:
        lines += ["", f"<details><summary>{len(failed)} failed or wrong point(s)</summary>", ""]
        lines += [f"- `{_cell(r.id)}`: {_cell(r.status)}, {_cell(r.reason or '')}" for r in failed]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def markdown_summary(run_dirs: Sequence[Path | str], *, baseline: str | None = None) -> str:
    """Markdown for each run folder, separated by blank lines."""
    from profiler.report.html import load_analysis

    return "\n".join(run_markdown(load_analysis(d, baseline)) for d in run_dirs)
