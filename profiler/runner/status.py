"""Progress of a run folder: per shard (SLURM runs) or per worker slot / device (local runs).

``run_status(run_dir)`` reads the files (manifest, ``shards.json``, ``shards/shard-<n>.json``,
``points*.jsonl``) and, for a SLURM run where a SLURM client answers, the scheduler's view of each
shard's latest job (``scontrol show job``, then ``sacct`` for jobs the controller has forgotten;
``scheduler=False`` skips it, so a copy of the folder on a laptop still works). A shard's ``state``:

* from the scheduler: ``pending (Reason)``, ``running``, ``requeued`` (after a time limit or
  preemption; pending again or restarting), ``failed: TIMEOUT (Reason)`` / ``cancelled`` with the
  job's log path in ``log``, ``finished`` (COMPLETED and every point recorded);
* else what its job last wrote: ``pending`` (no job has started it), ``running`` (started, not
  finished: still running, or killed), ``requeued``, ``interrupted`` (stopped by a signal),
  ``finished``. ``--resume`` re-submits the missing points of any shard that is not finished.

``done`` counts planned points with a record in any file; ``interrupted`` counts points a signal cut
that have no record yet (a requeue or ``--resume`` measures them again).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from profiler.core.records import PointSpec, device_key, from_dict
from profiler.runner import slurm
from profiler.runner.slurm import (
    SHARDS_FILE,
    read_shards,
    shard_file,
    shard_jobs,
    shard_state_path,
)
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
    scheduler_state: str | None = None     # SLURM's own word (PENDING, RUNNING, TIMEOUT, ...), when it answered
    reason: str | None = None              # why pending / why it failed (scheduler reason or the shard's own)
    log: str | None = None                 # the job's log (stderr) path
    attempts: int = 0                      # job starts of this shard (requeues + resumes + 1)
    interrupted: int = 0                   # points a signal cut that still have no record

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
    scheduler: str | None = None            # SLURM runs: "scontrol"/"sacct" when it answered, else why not

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["complete"] = self.complete
        return d


def _combined(row: Progress, file_state: dict[str, Any], view: Any) -> None:
    """Set ``row.state`` (and reason, log) from the scheduler's ``view`` of its job and the shard's file."""
    fstate = file_state.get("state", "pending")
    if view is None:
        row.state = fstate
        if fstate in ("failed", "interrupted", "requeued"):
            row.reason = file_state.get("reason")
        return
    row.scheduler_state = view.state
    word = view.serprof_state
    if word == "pending" and (view.restarts > 0 or fstate in ("requeued", "interrupted")):
        row.state, row.reason = "requeued", f"pending: {view.reason}" if view.reason else "pending"
    elif word == "pending":
        row.state, row.reason = "pending", view.reason
    elif word == "running":
        row.state = "requeued" if fstate == "requeued" and view.state == "COMPLETING" else "running"
    elif word == "finished":
        row.state = "finished" if row.done >= row.total else "incomplete"
        if row.done < row.total:
            row.reason = f"job COMPLETED with {row.total - row.done} point(s) missing; --resume measures them"
    elif word == "requeued":
        row.state, row.reason = "requeued", view.reason
    else:                                   # failed / cancelled / suspended
        row.state = word if word in ("cancelled", "suspended") else f"failed: {view.state}"
        own = file_state.get("reason") if fstate in ("failed", "interrupted") else None
        row.reason = "; ".join(x for x in (view.reason, own) if x) or None
        row.log = view.stderr or row.log


def run_status(run_dir: str | Path, *, scheduler: bool = True) -> RunStatus:
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
    sched_note: str | None = None
    if (run.path / SHARDS_FILE).is_file():
        table = read_shards(run.path)
        jobs = shard_jobs(table)
        views: dict[str, Any] = {}
        if scheduler and jobs and execution.get("options", {}).get("backend", "slurm") == "slurm":
            views, why = slurm.scheduler_view(sorted(set(jobs.values())))
            sched_note = why or ("scontrol" + (" + sacct" if any(v.source == "sacct" for v in views.values()) else ""))
        elif jobs:
            sched_note = "not asked: states are what the shards last wrote"
        all_ids: list[str] = []
        for sh in table["shards"]:
            ids = [from_dict(PointSpec, s, "shards.json").id for s in sh["specs"]]
            all_ids += ids
            recs = [by_id[i] for i in ids if i in by_id]
            try:
                st = json.loads(shard_state_path(run.path, sh["shard"]).read_text())
            except (OSError, json.JSONDecodeError):
                st = {}
            jid = jobs.get(int(sh["shard"]))
            log = run.path / "slurm" / str(jid) / f"{jid}_0_log.err" if jid else None
            row = Progress(
                name=f"shard {sh['shard']} ({shard_file(sh['shard'])})", total=len(ids), done=len(recs),
                statuses=dict(Counter(r.status for r in recs)), state=st.get("state", "pending"),
                hosts=sorted({str(r.worker.get("host")) for r in recs if r.worker.get("host")}
                             | ({st["host"]} if st.get("host") else set())),
                devices=sorted({device_key(r.worker) for r in recs if r.worker}),
                job_id=jid or st.get("job_id"), started_at=st.get("started_at"), finished_at=st.get("finished_at"),
                log=str(log) if log is not None and log.is_file() else None, attempts=int(st.get("attempts") or 0),
                interrupted=len({i.get("id") for i in st.get("interrupted") or [] if i.get("id") not in by_id}))
            _combined(row, st, views.get(jid) if jid else None)
            if sched_note in ("scontrol", "scontrol + sacct") and jid and jid not in views and row.state == "running":
                row.state, row.reason = "lost", "the scheduler no longer knows its job; --resume re-submits its points"
            rows.append(row)
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
                     devices={k: dict(v) for k, v in devices.items()}, warnings=list(loaded.warnings) + extra_warnings,
                     scheduler=sched_note)
