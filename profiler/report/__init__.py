"""Reports from run folders: figures, a self-contained HTML file, a Markdown summary, exports.

Public API (no torch; matplotlib is imported only while figures are drawn)::

    render_run(run_dir, *, baseline=None, out=None) -> Path      # <run>/report.html + <run>/figures/
    render_runs(run_dirs, *, out, baseline=None) -> Path         # overlay of several runs
    markdown_summary(run_dirs, *, baseline=None) -> str          # short summary for a CI job
    export_run(run_dir, fmt, out=None) -> Path                   # csv | json | parquet, one row per point
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

__all__ = ["render_run", "render_runs", "markdown_summary", "export_run", "report_runs"]

if TYPE_CHECKING:
    from profiler.report.export import export_run
    from profiler.report.html import render_run, render_runs
    from profiler.report.markdown import markdown_summary


def __getattr__(name: str):
    if name in ("render_run", "render_runs"):
        from profiler.report import html

        return getattr(html, name)
    if name == "markdown_summary":
        from profiler.report.markdown import markdown_summary

        return markdown_summary
    if name == "export_run":
        from profiler.report.export import export_run

        return export_run
    raise AttributeError(name)


def report_runs(runs: str | Path | Sequence[str | Path], *, baseline: str | None = None,
                out: str | Path | None = None, markdown: bool = False) -> tuple[Path, str | None]:
    """``serprof report``: the HTML report of one run (or an overlay of several); ``(html path, markdown or None)``."""
    from profiler.core.errors import UsageError
    from profiler.report.html import render_run, render_runs
    from profiler.report.markdown import markdown_summary

    run_list = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not run_list:
        raise UsageError("report needs at least one run folder")
    if len(run_list) == 1:
        path = render_run(run_list[0], baseline=baseline, out=Path(out) if out is not None else None)
    else:
        if out is None:
            from datetime import datetime, timezone

            out = Path("reports") / f"overlay-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}" / "report.html"
        path = render_runs(run_list, out=Path(out), baseline=baseline)
    text = markdown_summary(run_list, baseline=baseline) if markdown else None
    return path, text
