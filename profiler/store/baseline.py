"""Compact baseline files: what a gate needs from a run, in one small JSON file.

``baselines/NAME.json`` holds, per point: the spec (its id is the matching key), status, the raw
latency samples (seconds; optionally thinned), peak memory (bytes) and energy per call (J), plus the
run's environment fingerprint and calibration. ``load_side`` reads either a run folder or such a
file and returns a ``LoadedRun``, so every gate works on both.

Thinning (``max_samples``) keeps ``max_samples`` evenly spaced order statistics (the sample's
quantiles at (i + 0.5) / max_samples): the distribution's shape is kept, and since the gate's
bootstrap then sees fewer samples its interval widens, i.e. thinning errs on the quiet side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from profiler.core.errors import UsageError
from profiler.core.paths import read_json, write_file
from profiler.core.records import (
    Energy,
    Manifest,
    Memory,
    PointRecord,
    PointSpec,
    RecordError,
    Timing,
    from_dict,
    to_dict,
    upgrade_spec_dict,
)
from profiler.store.runs import LoadedRun, RunDir, utc_now

FORMAT = "serprof-baseline"
#: 2: layer/model specs hold the per-head dim in ``D`` (``PointSpec.hidden`` = H * D); a version-1 file's
#: layer specs held the hidden size and load converted (``profiler.core.records.upgrade_spec_dict``).
BASELINE_SCHEMA_VERSION = 2


def thin(samples, max_samples: int | None) -> list[float]:
    """At most ``max_samples`` values that keep the sample's quantiles (order is not kept)."""
    x = [float(s) for s in samples]
    if max_samples is None or len(x) <= max_samples:
        return x
    q = (np.arange(max_samples) + 0.5) / max_samples
    return [float(v) for v in np.quantile(np.asarray(x), q)]


def thin_groups(timing: Timing, max_samples: int | None) -> tuple[list[float], list[int]]:
    """The samples thinned per worker process (``max_samples`` in all, split evenly between the
    processes, at least 5 each), and the per-process counts (empty for a one-process timing)."""
    groups = timing.process_groups()
    if len(groups) == 1:
        return thin(groups[0], max_samples), []
    per = None if max_samples is None else max(5, max_samples // len(groups))
    out: list[float] = []
    counts: list[int] = []
    for g in groups:
        t = thin(g, per)
        out.extend(t)
        counts.append(len(t))
    return out, counts


def baseline_dict(run: LoadedRun, max_samples: int | None = None) -> dict[str, Any]:
    points = []
    for rec in sorted(run.records, key=lambda r: r.id):
        p: dict[str, Any] = {"id": rec.id, "spec": to_dict(rec.spec), "status": rec.status}
        if rec.reason:
            p["reason"] = rec.reason
        if rec.timing is not None:
            p["samples_s"], counts = thin_groups(rec.timing, max_samples)
            if counts:
                p["process_counts"] = counts
            p["timer"] = rec.timing.timer
            if rec.timing.quantity:
                p["quantity"] = rec.timing.quantity
        if rec.call_latency is not None:   # CUDA: the sync-to-sync samples beside the device time
            p["call_samples_s"], counts = thin_groups(rec.call_latency, max_samples)
            if counts:
                p["call_process_counts"] = counts
        if rec.memory is not None:
            p["peak_bytes"] = rec.memory.peak_bytes
        if rec.energy is not None:
            p["energy_j"] = rec.energy.energy_j
        points.append(p)
    m = run.manifest
    return {
        "format": FORMAT, "schema_version": BASELINE_SCHEMA_VERSION, "created_at": utc_now(),
        "source_run": str(run.path), "run_id": m.run_id, "run_created_at": m.created_at,
        "serprof_version": m.serprof_version, "environment": to_dict(m.environment),
        "calibration": to_dict(m.calibration) if m.calibration is not None else None,
        "max_samples": max_samples, "points": points,
    }


def save_baseline(run_path: str | os.PathLike, out: str | os.PathLike, max_samples: int | None = None, *,
                  flag: str = "--out") -> Path:
    """Write the compact baseline of a run folder to ``out`` (parent folders created; ``flag`` names it in errors)."""
    if max_samples is not None and max_samples < 5:
        raise UsageError(f"--max-samples must be >= 5 (the gate needs at least 5 samples), got {max_samples}")
    run = RunDir.open(run_path).load()
    data = baseline_dict(run, max_samples)
    return write_file(out, json.dumps(data, indent=1, sort_keys=True) + "\n", flag)


def load_baseline(path: str | os.PathLike) -> LoadedRun:
    """Read a compact baseline file back into a ``LoadedRun`` (records carry only what gates use)."""
    p = Path(path)
    data = read_json(p, "baseline file")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(f"{p}: not a serprof baseline file (expected \"format\": \"{FORMAT}\"); "
                         f"give a run folder or a file from `serprof baseline save`")
    version = data.get("schema_version", 0)
    if type(version) is not int or version < 0:   # bool is an int subclass: not a version either
        raise UsageError(f"{p}: key 'schema_version' must be a whole number >= 0, got {version!r}")
    if version > BASELINE_SCHEMA_VERSION:
        raise UsageError(f"{p}: baseline schema_version {version} is newer than this serprof")
    if not isinstance(data.get("points", []), list):
        raise UsageError(f"{p}: key 'points' must be a list, got {type(data['points']).__name__}")
    records = []
    for i, pt in enumerate(data.get("points", [])):
        where = f"{p}: points[{i}]"
        try:
            spec = from_dict(PointSpec, upgrade_spec_dict(pt["spec"], version, f"{where}.spec"), f"{where}.spec")
            samples = pt.get("samples_s")
            timing = (Timing(tuple(float(s) for s in samples), pt.get("timer", ""), quantity=pt.get("quantity", ""),
                             process_counts=tuple(int(c) for c in pt.get("process_counts") or ()))
                      if samples is not None else None)
            calls = pt.get("call_samples_s")
            call = (Timing(tuple(float(s) for s in calls), "sync_wall", quantity="call_latency", method="sync_wall",
                           process_counts=tuple(int(c) for c in pt.get("call_process_counts") or ()))
                    if calls is not None else None)
            memory = Memory(pt.get("peak_bytes"), "baseline") if "peak_bytes" in pt else None
            energy = Energy(pt.get("energy_j")) if "energy_j" in pt else None
            records.append(PointRecord(spec, pt["status"], pt.get("reason"), timing, memory, energy,
                                       call_latency=call))
        except KeyError as exc:
            raise UsageError(f"{where}: missing key {exc.args[0]!r}") from None
        except (RecordError, TypeError, ValueError) as exc:
            raise UsageError(f"{where}: {exc}") from None
    manifest = Manifest(run_id=str(data.get("run_id", p.stem)), created_at=str(data.get("run_created_at", "")),
                        scenario={}, environment=data.get("environment") or {},
                        calibration=data.get("calibration"), serprof_version=str(data.get("serprof_version", "")))
    return LoadedRun(p, manifest, records, [])


def load_side(path: str | os.PathLike) -> LoadedRun:
    """A run folder or a compact baseline file, whichever ``path`` is."""
    p = Path(path)
    if p.is_dir():
        return RunDir.open(p).load()
    if p.is_file():
        return load_baseline(p)
    raise UsageError(f"{p} does not exist (give a run folder or a baseline .json)")
