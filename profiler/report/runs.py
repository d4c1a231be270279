"""``serprof report``: the HTML report of one run or an overlay of several, and the Markdown summary."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from profiler.core.errors import UsageError
from profiler.report.html import render_run, render_runs
from profiler.report.markdown import markdown_summary


def report_runs(runs: str | Path | Sequence[str | Path], *, baseline: str | None = None,
                out: str | Path | None = None, markdown: bool = False) -> tuple[Path, str | None]:
    """``serprof report``: the HTML report of one run (or an overlay of several); ``(html path, markdown or None)``."""
    run_list = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    if not run_list:
        raise UsageError("report needs at least one run folder")
    if len(run_list) == 1:
        path = render_run(run_list[0], baseline=baseline, out=Path(out) if out is not None else None)
    else:
        if out is None:
            out = Path("reports") / f"overlay-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}" / "report.html"
        path = render_runs(run_list, out=Path(out), baseline=baseline)
    text = markdown_summary(run_list, baseline=baseline) if markdown else None
    return path, text
