"""The local executor: points of one device, measured one at a time in a worker process.

One worker process serves consecutive points (and consecutive groups: kernel/backend/dtype/mode)
that need the same process environment (device, device index, Triton interpreter on or off), so
torch and fla are imported once per worker, not per point. The sweep process never measures.

A worker is an isolated child process (``profiler.core.isolated``: its own session, killed with the
sweep, stderr to ``<run>/logs``) that runs ``profiler.runner.worker``'s functions. Per point the parent
calls ``point`` and waits:

* a record arrives -> done;
* the child dies (segfault, abort, SIGKILL from the OOM killer): ``ChildCrashed`` -> ``crashed`` record
  naming the signal or exit code and the last line of the worker's stderr; a fresh worker takes the
  next point;
* nothing within ``settings.point_timeout_s``: ``ChildTimedOut`` (the worker's process group is
  SIGKILLed) -> ``timeout`` record; a fresh worker continues;
* a ``crashed`` record whose reason is a device fault (``profiler.core.failures.device_fault``: a sticky
  CUDA error such as "misaligned address") -> the worker is replaced, so that one kernel's fault cannot
  turn the following points of other kernels into crashes.

A Ctrl-C in the terminal reaches only the sweep process (workers run in their own session), which
then stops its workers deliberately.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from profiler.core.failures import device_fault
from profiler.core.isolated import ChildFailure, ChildTimedOut, IsolatedProcess
from profiler.core.records import (
    MeasureSettings,
    PointRecord,
    PointSpec,
    Timing,
    from_dict,
    to_dict,
)
from profiler.runner import allocator
from profiler.runner.base import Executor, ExecutorStats, PointQueue, RunEvents

READY_TIMEOUT_S = 600.0   # imports on a loaded 2-core machine can take long; this is a safety net
CALIBRATE_TIMEOUT_S = 120.0
WORKER = "profiler.runner.worker"   # the functions a worker process runs (start, point, calibrate_device)


class WorkerProcess:
    """One measurement worker: an isolated child process (``profiler.core.isolated``) set up by
    ``profiler.runner.worker.start`` with the sweep's CPU allocator regime and, for fla points,
    Triton's interpreter."""

    def __init__(self, device: str, device_index: int = 0, interpret: bool = False,
                 log_dir: Path | None = None, env: Mapping[str, str] | None = None):
        self.device, self.device_index, self.interpret = device, device_index, interpret
        child_env = allocator.worker_environment(device, os.environ if env is None else env)
        if interpret:
            child_env["TRITON_INTERPRET"] = "1"
        self.child = IsolatedProcess(child_env, name="worker", log_dir=log_dir)
        self.child.submit(f"{WORKER}:start", {"device": device, "device_index": device_index, "interpret": interpret})
        self.info: dict[str, Any] = {}
        self.import_s: float | None = None
        self.env: dict[str, Any] | None = None   # torch's view of the devices, from the worker

    @property
    def pid(self) -> int:
        return self.child.pid

    def alive(self) -> bool:
        return self.child.alive()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """The worker's ``start`` result (started in ``__init__``, so several workers start together)."""
        msg = self.child.result(timeout)
        self.info = dict(msg.get("worker") or {})
        self.import_s = msg.get("import_s")
        self.env = msg.get("env")
        return msg

    def call(self, fn: str, kwargs: Mapping[str, Any], timeout_s: float) -> Any:
        return self.child.call(f"{WORKER}:{fn}", kwargs, timeout_s=timeout_s)

    def kill(self) -> None:
        """SIGKILL the worker's own process group (it runs in a session of its own)."""
        self.child.kill()

    def stop(self, grace_s: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``grace_s``."""
        self.child.stop(grace_s)


class LocalExecutor(Executor):
    """Single-device executor: one worker at a time (``settings.processes`` of them when a point is
    replicated), replaced after a crash or timeout.

    **Replication across processes.** With ``settings.processes = k > 1`` each point is measured once
    in each of ``k`` independent, long-lived worker processes (started together; the first one to
    measure a point rotates from point to point so no process is always first). Each replica times
    the point with ``time_budget_s / k``; the first replica of a point also verifies it and measures
    memory and energy, the others only time it. The record's ``Timing.process_counts`` says how many
    samples came from which process, ``worker["process_pids"]`` which processes they were. Between-
    process differences (memory layout, allocator state, core placement) are what a single worker
    cannot show and what the CI gate's intervals must include (``profiler.analysis.compare``).
    Interpreted points are never replicated (their one call is not a performance number).
    """

    name = "local"

    def __init__(self, device_index: int = 0, log_dir: Path | None = None,
                 env: Mapping[str, str] | None = None):
        self.device_index = device_index
        self.log_dir = log_dir
        self.env = env
        self.stats = ExecutorStats()
        self._workers: list[WorkerProcess] = []
        self._worker_key: tuple | None = None
        self._rotation = 0
        self.worker_env: dict[str, Any] | None = None   # first worker's torch/device info (for the manifest)
        self._events = RunEvents()

    # ---------------------------------------------------------------- workers
    @property
    def _worker(self) -> WorkerProcess | None:
        return self._workers[0] if self._workers else None

    def _workers_for(self, device: str, interpret: bool, count: int = 1) -> list[WorkerProcess]:
        """``count`` live workers for this process environment (new ones started together)."""
        key = (device, self.device_index, interpret)
        if self._worker_key != key or any(not w.alive() for w in self._workers):
            keep = [w for w in self._workers if w.alive()] if self._worker_key == key else []
            for w in self._workers:
                if w not in keep:
                    w.stop()
            self._workers = keep
        self._worker_key = key
        missing = count - len(self._workers)
        if missing > 0:
            t0 = time.perf_counter()
            fresh = [WorkerProcess(device, self.device_index, interpret, self.log_dir, self.env) for _ in range(missing)]
            ready: list[WorkerProcess] = []
            try:
                for w in fresh:
                    msg = w.wait_ready()
                    ready.append(w)
                    if msg.get("import_s") is not None:
                        self.stats.import_s.append(float(msg["import_s"]))
                    if self.worker_env is None and w.env:
                        self.worker_env = dict(w.env)
                    self._events.on_worker_ready(w.info)
            except ChildFailure:
                for w in fresh:
                    w.kill()
                raise
            self.stats.worker_starts += len(fresh)
            self.stats.worker_start_s += time.perf_counter() - t0
            self._workers.extend(ready)
        return self._workers[:count]

    def _worker_for(self, device: str, interpret: bool) -> WorkerProcess:
        return self._workers_for(device, interpret, 1)[0]

    def _discard_worker(self, worker: WorkerProcess | None = None) -> None:
        """Kill ``worker`` (default: all workers)."""
        victims = list(self._workers) if worker is None else [worker]
        for w in victims:
            w.kill()
        self._workers = [w for w in self._workers if w not in victims]
        if not self._workers:
            self._worker_key = None

    # ---------------------------------------------------------------- points
    def measure(self, spec: PointSpec, settings: MeasureSettings) -> PointRecord:
        """One point in a worker (in ``settings.processes`` workers when replicated); every outcome is a record."""
        k = 1 if spec.interpret else max(1, int(getattr(settings, "processes", 1) or 1))
        try:
            workers = self._workers_for(spec.device, spec.interpret, k)
        except ChildTimedOut:
            return PointRecord(spec=spec, status="crashed",
                               reason=f"worker failed to start: worker did not start within {READY_TIMEOUT_S:g} s")
        except ChildFailure as exc:
            return PointRecord(spec=spec, status="crashed", reason=f"worker failed to start: {exc}")
        if k == 1:
            return self._measure_in(workers[0], spec, settings)
        start = self._rotation % k
        self._rotation += 1
        order = [workers[(start + i) % k] for i in range(k)]
        share = replace(settings, time_budget_s=settings.time_budget_s / k, processes=1)
        timing_only = replace(share, verify=False, measure_memory=False, measure_energy=False)
        records: list[PointRecord] = []
        for i, w in enumerate(order):
            rec = self._measure_in(w, spec, share if i == 0 else timing_only)
            if rec.status != "ok":
                return rec
            records.append(rec)
        return merge_replicas(records)

    def _measure_in(self, w: WorkerProcess, spec: PointSpec, settings: MeasureSettings) -> PointRecord:
        t0 = time.perf_counter()
        try:
            rec = from_dict(PointRecord, w.call("point", {"spec": to_dict(spec), "settings": to_dict(settings),
                                                          "device_index": self.device_index},
                                                settings.point_timeout_s), "worker record")
            if rec.status == "crashed" and device_fault(rec.reason):
                # a sticky CUDA error: every later call in that worker would fail with it
                self._discard_worker(w)
                self.stats.worker_faults += 1
                rec = replace(rec, reason=f"{rec.reason} (a device fault: the worker was replaced, later points "
                                          "run in a fresh one)")
            return rec
        except ChildTimedOut:
            info = dict(w.info)
            self._discard_worker(w)
            return PointRecord(spec=spec, status="timeout", worker=info, wall_s=time.perf_counter() - t0,
                               reason=f"no result within the point timeout of {settings.point_timeout_s:g} s; worker killed")
        except ChildFailure as exc:   # crashed, or (a bug in the worker) raised
            info = dict(w.info)
            self._discard_worker(w)
            return PointRecord(spec=spec, status="crashed", worker=info, wall_s=time.perf_counter() - t0,
                               reason=f"{exc} while measuring this point")

    def run(self, queue: PointQueue, settings: MeasureSettings, events: RunEvents) -> None:
        self._events = events
        while True:
            spec, skipped = queue.next()
            for rec in skipped:
                events.on_record(rec)
            if spec is None:
                return
            events.on_point_start(spec)
            rec = self.measure(spec, settings)
            queue.report(rec)
            events.on_record(rec)

    def calibrate(self, device: str, *, budget_s: float = 1.0,
                  dtypes: tuple[str, ...] | None = None) -> Mapping[str, Any] | None:
        try:
            w = self._worker_for(device, False)
            return w.call("calibrate_device", {"device": device, "budget_s": budget_s,
                                               "dtypes": list(dtypes) if dtypes else None}, CALIBRATE_TIMEOUT_S)
        except ChildTimedOut:
            self._discard_worker()
            return {"error": "calibration timed out"}
        except ChildFailure as exc:
            self._discard_worker()
            return {"error": str(exc)}

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "device_index": self.device_index, "workers": 1,
                "worker_reuse": "one worker per process environment (device, interpreter), reused across groups"}

    def close(self) -> None:
        for w in self._workers:
            w.stop()
        self._workers = []
        self._worker_key = None


def merge_replicas(records: list[PointRecord]) -> PointRecord:
    """One record from the ``ok`` records of one point measured in several processes (in order).

    Timings (and CUDA call latencies) concatenate with ``Timing.concat``; verification, memory,
    energy and the first call come from the first replica; ``wall_s`` adds up.
    """
    first = records[0]
    timings = [r.timing for r in records if r.timing is not None]
    lats = [r.call_latency for r in records if r.call_latency is not None]
    worker = dict(first.worker or {})
    worker["process_pids"] = [(r.worker or {}).get("pid") for r in records]
    return replace(first, timing=Timing.concat(timings) if len(timings) == len(records) else first.timing,
                   call_latency=Timing.concat(lats) if lats and len(lats) == len(records) else first.call_latency,
                   worker=worker, wall_s=sum(r.wall_s or 0.0 for r in records))
