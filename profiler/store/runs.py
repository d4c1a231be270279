"""Run folders: ``manifest.json`` plus one JSON line per finished point.

Layout of ``reports/<run-id>/``::

    manifest.json     schema_version, scenario, settings, environment, calibration, timestamps
    points.jsonl      one PointRecord per line, appended and fsync'ed as each point ends
    points-*.jsonl    further record files (shards of a scale-out run); merged on load

A line cut short by a kill is detected on load, ignored and reported as a warning. If the same
point id appears twice (a re-submitted shard) the later one wins — by ``started_at`` when both
records have it, else by reading order (``points.jsonl`` first, then shards by name) — with a warning. JSON only; never pickle.
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
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UsageError(f"{p}: cannot read run manifest ({exc})") from None
        try:
            return from_dict(Manifest, data, str(p))
        except RecordError as exc:
            raise UsageError(str(exc)) from None

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


def _last_byte(p: Path) -> bytes:
    with open(p, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def read_records(files: Iterable[Path]) -> tuple[list[PointRecord], list[str]]:
    """Read JSON-lines record files; skip (and warn about) torn or invalid lines."""
    by_id: dict[str, PointRecord] = {}
    warnings: list[str] = []
    for path in files:
        lines = path.read_text().split("\n")
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                last = lineno == len(lines) or all(not x.strip() for x in lines[lineno:])
                what = "half-written last line (interrupted run)" if last else "unreadable line"
                warnings.append(f"{where}: {what} ignored")
                continue
            try:
                rec = from_dict(PointRecord, data, where)
            except RecordError as exc:
                warnings.append(f"{exc}; line ignored")
                continue
            old = by_id.get(rec.id)
            if old is not None:
                warnings.append(f"{where}: duplicate record for {rec.id}; keeping the later one")
                if old.started_at and rec.started_at and old.started_at > rec.started_at:
                    continue
            by_id[rec.id] = rec
    return list(by_id.values()), warnings
