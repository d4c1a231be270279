"""Output paths are checked before any work starts: one line and exit 2 instead of a late traceback.

``check_output_file(path, flag)`` - a file serprof will write (``--markdown``, ``--json-out``,
``-o`` of export, a baseline): not a folder, its parent folder exists and is writable, and an
existing file is writable.
``check_output_dir(path, flag)`` - a folder serprof will create or fill (``sweep --out``, report
``--out``): not a file, and the nearest existing ancestor is a writable folder.
``check_appendable(path)`` - a file a sweep appends records to (``points.jsonl``) can be opened for
appending right now (opening for append changes nothing).
Each raises ``UsageError`` naming the flag and the path.
"""

from __future__ import annotations

import os
from pathlib import Path

from profiler.core.errors import UsageError


def _bad_chars(path: Path, flag: str) -> None:
    text = str(path)
    if not text.strip() or "\x00" in text:
        raise UsageError(f"{flag}: {text!r} is not a usable path")


def _writable_dir(d: Path) -> bool:
    return d.is_dir() and os.access(d, os.W_OK | os.X_OK)


def check_output_file(path: str | os.PathLike, flag: str, *, create_parents: bool = False) -> Path:
    """Validate a file to be written; returns it as a ``Path``.

    ``create_parents``: a missing parent folder is fine when it can be created (the command creates
    it); otherwise the parent must exist.
    """
    p = Path(path)
    _bad_chars(p, flag)
    if p.is_dir():
        raise UsageError(f"{flag}: {p} is a folder; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        if create_parents:
            check_output_dir(parent, flag)
            return p
        raise UsageError(f"{flag}: folder {parent} does not exist")
    if not parent.is_dir():
        raise UsageError(f"{flag}: {parent} is not a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise UsageError(f"{flag}: {p} is not writable")
    if not p.exists() and not _writable_dir(parent):
        raise UsageError(f"{flag}: cannot create files in {parent} (not writable)")
    return p


def check_output_dir(path: str | os.PathLike, flag: str) -> Path:
    """Validate a folder to be created (with parents) or written into; returns it as a ``Path``."""
    p = Path(path)
    _bad_chars(p, flag)
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{flag}: {p} exists and is not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise UsageError(f"{flag}: folder {p} is not writable")
        return p
    anc = p.absolute().parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UsageError(f"{flag}: cannot create {p}: {anc} is not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot create {p}: {anc} is not writable")
    return p


def check_appendable(path: str | os.PathLike, resume_hint: str = "") -> None:
    """Open ``path`` for appending and close it again (creates it if missing; writes nothing)."""
    p = Path(path)
    try:
        with open(p, "ab"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write records to {p} ({exc.strerror or exc}); nothing was measured"
                         + (f"; {resume_hint}" if resume_hint else "")) from None
