"""Reports from run folders: figures, a self-contained HTML file, a Markdown summary, exports.

Public API (no torch; matplotlib is imported only while figures are drawn)::

    render_run(run_dir, *, baseline=None, out=None) -> Path      # <run>/report.html + <run>/figures/
    render_runs(run_dirs, *, out, baseline=None) -> Path         # overlay of several runs
    markdown_summary(run_dirs, *, baseline=None) -> str          # short summary for a CI job
    export_run(run_dir, fmt, out=None) -> Path                   # csv | json | parquet, one row per point
"""

from __future__ import annotations

from profiler.core.lazy import lazy_import

#: public name -> the module that defines it; loaded on first use (``import profiler`` imports this
#: package, and must not pay for jinja2, matplotlib or the analysis)
_PUBLIC = {"render_run": "profiler.report.html", "render_runs": "profiler.report.html",
           "report_runs": "profiler.report.runs", "markdown_summary": "profiler.report.markdown",
           "export_run": "profiler.report.export"}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(lazy_import(_PUBLIC[name]), name)
    raise AttributeError(name)
