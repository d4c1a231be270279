"""Run folders: ``manifest.json`` plus one JSON line per finished point.

Layout of ``reports/<run-id>/``::

    manifest.json     schema_version, scenario, settings, environment, calibration, timestamps
    points.jsonl      one PointRecord per line, appended and fsync'ed as each point ends
    points-*.jsonl    further record files (shards of a scale-out run); merged on load

A line cut short by a kill, a line that is not UTF-8 or not JSON, and a record that does not fit the
schema (wrong field type, unknown ``schema_version``) are skipped on load with a warning naming the
file and line. If the same point id appears twice (a re-submitted shard, a re-run) ``pick_record``
decides, deterministically: ``ok`` wins over a failure unless the failure is newer and a deliberate
re-run; else the newer by ``started_at``, else the later in reading order (``points.jsonl`` first,
then shards by name). A duplicate is warned about unless the record kept is a newer deliberate re-run
(``sweep --resume RUN --rerun PATTERN``): that one replaces the earlier record silently. JSON only;
never pickle.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from profiler.core.errors import UsageError
from profiler.core.records import Manifest, PointRecord, RecordError, from_dict, to_dict
from profiler.core.settings import check_all

MANIFEST = "manifest.json"
POINTS = "points.jsonl"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id(name: str = "run") -> str:
    """``<name>-YYYYmmdd-HHMMSS-<4 hex>``: sortable by time, unique across concurrent runs."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:40] or "run"
    return f"{safe}-{stamp}-{secrets.token_hex(2)}"


@dataclass
class LoadedRun:
    """Everything read from a run folder."""

    path: Path
    manifest: Manifest
    records: list[PointRecord]
    warnings: list[str] = field(default_factory=list)

    def by_id(self) -> dict[str, PointRecord]:
        return {r.id: r for r in self.records}


class RunDir:
    """Read and append to one run folder."""

    def __init__(self, path: str | os.PathLike, points_file: str = POINTS):
        self.path = Path(path)
        self.points_file = points_file

    # ---------------------------------------------------------------- creation / opening
    @classmethod
    def create(cls, path: str | os.PathLike, manifest: Manifest) -> "RunDir":
        run = cls(path)
        if (run.path / MANIFEST).exists():
            raise UsageError(f"{run.path} already holds a run; use --resume {run.path} or another --out")
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_manifest(manifest)
        (run.path / POINTS).touch()
        return run

    @classmethod
    def open(cls, path: str | os.PathLike, points_file: str = POINTS) -> "RunDir":
        run = cls(path, points_file)
        if not run.path.is_dir():
            raise UsageError(f"{run.path} is not a folder")
        if not (run.path / MANIFEST).is_file():
            raise UsageError(f"{run.path} is not a serprof run folder (no {MANIFEST})")
        run.read_manifest()  # validates
        return run

    # ---------------------------------------------------------------- manifest
    def read_manifest(self) -> Manifest:
        p = self.path / MANIFEST
        try:
            data = json.loads(p.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise UsageError(f"{p}: cannot read run manifest (not UTF-8 at byte {exc.start})") from None
        except (OSError, ValueError, RecursionError) as exc:
            raise UsageError(f"{p}: cannot read run manifest ({exc})") from None
        try:
            manifest = from_dict(Manifest, data, str(p))
        except RecordError as exc:
            raise UsageError(str(exc)) from None
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{p}: invalid run manifest ({exc})") from None

        check_all(manifest.settings, f"{p}: settings")
        return manifest

    def write_manifest(self, manifest: Manifest) -> None:
        """Atomic replace: a kill never leaves a half-written manifest."""
        p = self.path / MANIFEST
        tmp = p.with_suffix(".json.tmp")
        with open(tmp, "w") as fh:
            json.dump(to_dict(manifest), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)

    # ---------------------------------------------------------------- records
    def append(self, record: PointRecord) -> None:
        """Append one record as one line, then flush and fsync so a finished point survives a kill."""
        line = json.dumps(to_dict(record), separators=(",", ":"), allow_nan=True)
        p = self.path / self.points_file
        # A previous writer killed mid-line leaves no trailing newline: start on a fresh line.
        needs_nl = p.exists() and p.stat().st_size > 0 and _last_byte(p) != b"\n"
        with open(p, "a") as fh:
            if needs_nl:
                fh.write("\n")
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def record_files(self) -> list[Path]:
        # The main file first, then shards by name, so "the later record" is well defined.
        files = sorted(self.path.glob("points*.jsonl"), key=lambda f: (f.name != POINTS, f.name))
        return [f for f in files if f.is_file()]

    def load(self) -> LoadedRun:
        manifest = self.read_manifest()
        records, warnings = read_records(self.record_files())
        return LoadedRun(self.path, manifest, records, warnings)

    def done_ids(self) -> set[str]:
        records, _ = read_records(self.record_files())
        return {r.id for r in records}


def load_warnings(path: str | os.PathLike) -> list[str]:
    """What loading a run folder would warn about (skipped lines, duplicates), for commands to print."""
    return RunDir.open(path).load().warnings


def _last_byte(p: Path) -> bytes:
    with open(p, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def _is_ok(rec: PointRecord) -> bool:
    return rec.status == "ok"


def _is_rerun(rec: PointRecord) -> bool:
    return bool((rec.extra or {}).get("rerun") is True)


def _newer(a: PointRecord, b: PointRecord) -> bool:
    """``a`` started after ``b`` (both timestamps known); ISO 8601 UTC strings compare as text."""
    return bool(a.started_at and b.started_at and a.started_at > b.started_at)


def pick_record(old: PointRecord, new: PointRecord) -> PointRecord:
    """Which of two records of one point counts (``new`` was read after ``old``). Deterministic:

    * an ``ok`` record wins over a failure, whichever came later - unless the failure is newer
      (``started_at``) *and* marked as a deliberate re-run (``extra.rerun``, written by
      ``serprof sweep --resume RUN --rerun PATTERN``);
    * otherwise (both ok, or both failures) the newer one by ``started_at`` wins; without both
      timestamps, the one read later (``points.jsonl`` first, then shards by name).
    """
    if _is_ok(old) != _is_ok(new):
        ok, failed = (old, new) if _is_ok(old) else (new, old)
        if _is_rerun(failed) and _newer(failed, ok):
            return failed
        return ok
    if old.started_at and new.started_at and old.started_at > new.started_at:
        return old
    return new


def _deliberate(keep: PointRecord, other: PointRecord) -> bool:
    """The kept record is a newer deliberate re-run of the point: the expected outcome, no warning."""
    return _is_rerun(keep) and _newer(keep, other)


def read_records(files: Iterable[Path]) -> tuple[list[PointRecord], list[str]]:
    """Read JSON-lines record files; skip (and warn about) torn, undecodable or invalid lines.

    Every warning names the file and line. A line that is not UTF-8, not JSON, not an object, of an
    unknown ``schema_version`` or with a field of the wrong type is skipped; duplicates resolve by
    ``pick_record``, with a warning unless the winner is a newer deliberate re-run (``--rerun``).
    """
    by_id: dict[str, PointRecord] = {}
    warnings: list[str] = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            warnings.append(f"{path}: cannot read ({exc.strerror or exc}); file ignored")
            continue
        lines = raw.split(b"\n")
        for lineno, bline in enumerate(lines, 1):
            if not bline.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                line = bline.decode("utf-8")
            except UnicodeDecodeError as exc:
                warnings.append(f"{where}: not UTF-8 (byte {bline[exc.start]:#04x} at column {exc.start + 1}); line ignored")
                continue
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                last = lineno == len(lines) or all(not x.strip() for x in lines[lineno:])
                what = "half-written last line (interrupted run)" if last else "unreadable line"
                warnings.append(f"{where}: {what} ignored")
                continue
            try:
                rec = from_dict(PointRecord, data, where)
            except RecordError as exc:
                warnings.append(f"{exc}; line ignored")
                continue
            except (TypeError, ValueError, RecursionError) as exc:   # anything else the schema did not foresee
                warnings.append(f"{where}: invalid record ({type(exc).__name__}: {exc}); line ignored")
                continue
            old = by_id.get(rec.id)
            if old is not None:
                keep = pick_record(old, rec)
                if not _deliberate(keep, old if keep is rec else rec):
                    which = ("the later one" if keep is rec else "the earlier one") + (
                        f" ({keep.status})" if old.status != rec.status else "")
                    warnings.append(f"{where}: duplicate record for {rec.id}; keeping {which}")
                rec = keep
            by_id[rec.id] = rec
    return list(by_id.values()), warnings
