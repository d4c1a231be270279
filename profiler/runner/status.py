"""Progress of a run folder: per shard (SLURM runs) or per worker slot / device (local runs).

``run_status(run_dir)`` reads only files (manifest, ``shards.json``, ``shards/shard-<n>.json``,
``points*.jsonl``); it never talks to a scheduler, so it works on a laptop with a copy of the folder.
A shard's ``state`` is what its job last wrote: ``pending`` (no job has started it), ``running``
(started, not finished: still running, or killed; ``--resume`` re-submits its missing points),
``finished``. ``done`` counts planned points with a record in any file.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from profiler.core.records import PointSpec, device_key, from_dict
from profiler.runner.slurm import SHARDS_FILE, read_shards, shard_file, shard_state_path
from profiler.store.runs import RunDir


@dataclass
class Progress:
    """One row: a shard, or (local runs) the whole run / one device."""

    name: str
    total: int
    done: int
    statuses: dict[str, int] = field(default_factory=dict)
    state: str = ""
    hosts: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    job_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def missing(self) -> int:
        return self.total - self.done


@dataclass
class RunStatus:
    run_dir: Path
    executor: str
    rows: list[Progress]
    total: int
    done: int
    statuses: dict[str, int]
    devices: dict[str, dict[str, int]]      # device model -> status counts (never merged across models)
    warnings: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["complete"] = self.complete
        return d


def run_status(run_dir: str | Path) -> RunStatus:
    run = RunDir.open(run_dir)
    loaded = run.load()
    by_id = loaded.by_id()
    manifest = loaded.manifest
    execution = dict((manifest.notes or {}).get("execution") or {})
    devices: dict[str, Counter] = {}
    for rec in loaded.records:
        if rec.status in ("skipped", "unavailable") and not rec.worker:
            continue
        devices.setdefault(device_key(rec.worker), Counter())[rec.status] += 1
    rows: list[Progress] = []
    extra_warnings: list[str] = []
    if (run.path / SHARDS_FILE).is_file():
        table = read_shards(run.path)
        all_ids: list[str] = []
        for sh in table["shards"]:
            ids = [from_dict(PointSpec, s, "shards.json").id for s in sh["specs"]]
            all_ids += ids
            recs = [by_id[i] for i in ids if i in by_id]
            try:
                st = json.loads(shard_state_path(run.path, sh["shard"]).read_text())
            except (OSError, json.JSONDecodeError):
                st = {}
            rows.append(Progress(
                name=f"shard {sh['shard']} ({shard_file(sh['shard'])})", total=len(ids), done=len(recs),
                statuses=dict(Counter(r.status for r in recs)), state=st.get("state", "pending"),
                hosts=sorted({str(r.worker.get("host")) for r in recs if r.worker.get("host")}
                             | ({st["host"]} if st.get("host") else set())),
                devices=sorted({device_key(r.worker) for r in recs if r.worker}),
                job_id=st.get("job_id"), started_at=st.get("started_at"), finished_at=st.get("finished_at")))
        total = len(set(all_ids))
        done = len({i for i in all_ids if i in by_id})
    else:
        planned = (manifest.notes or {}).get("planned_ids")
        if isinstance(planned, list) and planned:
            planned_set = {str(i) for i in planned}
            total, done = len(planned_set), len(planned_set & set(by_id))
        else:   # runs written before the manifest kept the planned ids
            total = int((manifest.notes or {}).get("planned_points") or len(by_id))
            done = min(len(by_id), total)
            planned_set = None
        foreign = len(set(by_id) - planned_set) if planned_set is not None else max(0, len(by_id) - total)
        if foreign:
            extra_warnings.append(f"{foreign} record(s) for points outside the run's plan (not counted as done)")
        slots: dict[str, list] = {}
        for rec in loaded.records:
            w = dict(rec.worker or {})
            if "worker_slot" in w:
                slots.setdefault(f"worker {w['worker_slot']}", []).append(rec)
        rows.append(Progress(name="run", total=total, done=done,
                             statuses=dict(Counter(r.status for r in loaded.records)),
                             state="finished" if manifest.finished_at else ("complete" if done >= total else "incomplete"),
                             hosts=sorted({str(r.worker.get("host")) for r in loaded.records if r.worker.get("host")}),
                             devices=sorted(devices)))
        for name, recs in sorted(slots.items()):
            w = recs[0].worker
            pin = ",".join(map(str, w.get("pinned_cores") or [])) or w.get("cuda_visible_devices") or ""
            rows.append(Progress(name=f"{name} ({'cores ' + pin if w.get('pinned_cores') else 'cuda ' + str(pin)})",
                                 total=len(recs), done=len(recs), statuses=dict(Counter(r.status for r in recs)),
                                 state="", hosts=sorted({str(r.worker.get('host')) for r in recs}),
                                 devices=sorted({device_key(r.worker) for r in recs})))
    return RunStatus(run_dir=run.path, executor=str(execution.get("executor", "local")), rows=rows, total=total,
                     done=done, statuses=dict(Counter(r.status for r in loaded.records)),
                     devices={k: dict(v) for k, v in devices.items()}, warnings=list(loaded.warnings) + extra_warnings)
