"""Reports from run folders: figures, a self-contained HTML file, a Markdown summary, exports.

Public API (no torch; matplotlib is imported only while figures are drawn)::

    render_run(run_dir, *, baseline=None, out=None) -> Path      # <run>/report.html + <run>/figures/
    render_runs(run_dirs, *, out, baseline=None) -> Path         # overlay of several runs
    markdown_summary(run_dirs, *, baseline=None) -> str          # short summary for a CI job
    export_run(run_dir, fmt, out=None) -> Path                   # csv | parquet, one row per point
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["render_run", "render_runs", "markdown_summary", "export_run"]

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
