"""Output paths are checked before any work starts: one line and exit 2 instead of a late traceback.

``check_output_file(path, flag)`` - a file serprof will write (``--markdown``, ``--json-out``,
``-o`` of export, a baseline): not a folder, its parent folder exists and is writable, and an
existing file is writable.
``check_output_dir(path, flag)`` - a folder serprof will create or fill (``sweep --out``, report
``--out``): not a file, and the nearest existing ancestor is a writable folder.
``check_appendable(path)`` - a file a sweep appends records to (``points.jsonl``) can be opened for
appending right now (opening for append changes nothing).
Each raises ``UsageError`` naming the flag and the path.

The checks run before work starts; they cannot foresee every OS refusal (``/proc``, a full disk, a
read-only mount seen as writable by root), so every write goes through the helpers below too, and every
input file through the readers: ``make_dir``, ``write_file``, ``output_errors`` (a block that writes,
e.g. a CSV or a figure) and ``read_text`` / ``read_json`` turn ``OSError`` and decoding errors into one
``UsageError`` line naming the flag (or what the file is) and the path.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

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


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)) or type(exc).__name__


def make_dir(path: str | os.PathLike, flag: str) -> Path:
    """Create the folder ``path`` (and its parents) if missing; an OS error is one line naming ``flag``."""
    p = Path(path)
    _bad_chars(p, flag)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot create folder {p} ({_why(exc)})") from None
    return p


@contextmanager
def output_errors(path: str | os.PathLike, flag: str) -> Iterator[None]:
    """A block that writes ``path``: an ``OSError`` inside it becomes one line naming ``flag`` and the path."""
    try:
        yield
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write {path} ({_why(exc)})") from None


def write_file(path: str | os.PathLike, data: str | bytes, flag: str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename (parents created).

    A failed write leaves an existing file as it was and no temporary file behind.
    """
    p = Path(path)
    _bad_chars(p, flag)
    make_dir(p.parent, flag)
    tmp = p.with_name(p.name + ".tmp")
    try:
        with output_errors(p, flag):
            if isinstance(data, str):
                tmp.write_text(data, encoding="utf-8")
            else:
                tmp.write_bytes(data)
            os.replace(tmp, p)
    except UsageError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return p


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of an input file; a missing or unreadable file or bad UTF-8 is one line naming it."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {p} cannot be read: it is a folder, not a file") from None
    except OSError as exc:
        raise UsageError(f"{what} {p} cannot be read ({_why(exc)})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {p} is not UTF-8 text (byte {exc.start})") from None


def read_json(path: str | os.PathLike, what: str) -> Any:
    """The JSON value of an input file (``read_text``, then invalid JSON is one line naming the file)."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{what} {path} is not valid JSON ({_why(exc)})") from None
