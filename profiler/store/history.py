"""A folder of earlier baseline runs (the gate's ``--history``): the newest N, oldest first.

The folder holds run folders (``serprof sweep --out``) and/or compact baseline files
(``serprof baseline save``) of the main branch, e.g. one per merge kept by CI. Their order is the
time they were measured (``manifest.created_at``), not their names.
"""

from __future__ import annotations

from pathlib import Path

from profiler.core.errors import UsageError
from profiler.store.baseline import load_side
from profiler.store.runs import LoadedRun


def load_history(folder: str | Path, newest: int = 10) -> list[LoadedRun]:
    """The newest ``newest`` runs in ``folder``, oldest first (``UsageError`` naming ``--history``)."""
    d = Path(folder)
    if not d.is_dir():
        raise UsageError(f"--history: {d} is not a folder (give a folder of baseline run folders or files)")
    if isinstance(newest, bool) or not isinstance(newest, int) or not 2 <= newest <= 1000:
        raise UsageError(f"--history-runs must be a whole number from 2 to 1000, got {newest!r}")
    runs = []
    for p in sorted(d.iterdir()):
        if p.is_dir() and (p / "manifest.json").is_file() or p.is_file() and p.suffix == ".json":
            runs.append(load_side(p))
    if len(runs) < 2:
        raise UsageError(f"--history: {d} holds {len(runs)} run(s); the spread needs at least two")
    runs.sort(key=lambda r: (r.manifest.created_at or "", str(r.path)))
    return runs[-newest:]
