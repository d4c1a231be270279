"""The local executor: points of one device, measured one at a time in a worker process.

One worker process serves consecutive points (and consecutive groups: kernel/backend/dtype/mode)
that need the same process environment (device, device index, Triton interpreter on or off), so
torch and fla are imported once per worker, not per point. The sweep process never measures.

Per point the parent sends one command and waits on the result pipe with ``select``:

* a record arrives -> done;
* the pipe closes (segfault, abort, SIGKILL from the OOM killer) -> ``crashed`` record naming the
  signal or exit code and the last line of the worker's stderr; a fresh worker takes the next point;
* nothing within ``settings.point_timeout_s`` -> the worker's process group is SIGKILLed and the
  point is recorded as ``timeout``; a fresh worker continues.

Workers run in their own session (``start_new_session``) so a Ctrl-C in the terminal reaches only the
sweep process, which then stops its worker deliberately.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

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
from profiler.runner.protocol import decode, encode

READY_TIMEOUT_S = 600.0   # imports on a loaded 2-core machine can take long; this is a safety net
CALIBRATE_TIMEOUT_S = 120.0


class WorkerDied(Exception):
    """The worker process ended unexpectedly; ``reason`` says how."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class WorkerTimeout(Exception):
    pass


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "worker stopped responding"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (likely the kernel's OOM killer)" if -returncode == signal.SIGKILL else ""
        return f"worker killed by {name}{hint}, exit code {returncode}"
    return f"worker exited with code {returncode}"


class WorkerProcess:
    """One worker subprocess with a JSON-lines command pipe (stdin) and a result pipe."""

    def __init__(self, device: str, device_index: int = 0, interpret: bool = False,
                 log_dir: Path | None = None, env: Mapping[str, str] | None = None):
        self.device, self.device_index, self.interpret = device, device_index, interpret
        r, w = os.pipe()
        child_env = allocator.worker_environment(device, os.environ if env is None else env)
        if interpret:
            child_env["TRITON_INTERPRET"] = "1"
        child_env.setdefault("PYTHONFAULTHANDLER", "1")  # a segfault prints a Python traceback to stderr
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            self._log = open(log_dir / f"worker-{time.time_ns()}.log", "w+b")
        else:
            self._log = tempfile.TemporaryFile()
        cmd = [sys.executable, "-m", "profiler.runner.worker", "--result-fd", str(w),
               "--device", device, "--device-index", str(device_index)]
        if interpret:
            cmd.append("--interpret")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=self._log, stderr=self._log,
                                     pass_fds=(w,), env=child_env, start_new_session=True)
        os.close(w)
        self._rfd = r
        self._buf = b""
        self.info: dict[str, Any] = {}
        self.import_s: float | None = None
        self.env: dict[str, Any] | None = None   # torch's view of the devices, from the worker

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        msg = self.receive(timeout)
        if msg.get("type") != "ready":
            raise WorkerDied(f"unexpected first message from worker: {msg.get('type')!r}")
        self.info = dict(msg.get("worker") or {})
        self.import_s = msg.get("import_s")
        self.env = msg.get("env")
        return msg

    def send(self, msg: dict[str, Any]) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(encode(msg))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise WorkerDied(self._death_reason()) from None

    def receive(self, timeout: float) -> dict[str, Any]:
        """Next message, or ``WorkerDied`` / ``WorkerTimeout``."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout()
            ready, _, _ = select.select([self._rfd], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._rfd, 1 << 16)
            if not chunk:
                raise WorkerDied(self._death_reason())
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return decode(line)

    def _death_reason(self) -> str:
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            rc = None
        tail = self.stderr_tail()
        return describe_exit(rc) + (f"; last stderr: {tail}" if tail else "")

    def stderr_tail(self, limit: int = 300) -> str:
        try:
            self._log.flush()
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - 4096))
            text = self._log.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines:
            return ""
        # Prefer the fault handler's headline ("Fatal Python error: Segmentation fault") when present.
        fatal = [ln for ln in lines if ln.startswith("Fatal Python error")]
        tail = fatal[-1] if fatal else lines[-1]
        return tail[:limit]

    def kill(self) -> None:
        """SIGKILL the worker's own process group (it runs in a session of its own)."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reap()

    def stop(self, grace_s: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``grace_s``."""
        if self.alive():
            try:
                self.send({"cmd": "exit"})
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=grace_s)
            except (WorkerDied, OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin,):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        try:
            os.close(self._rfd)
        except OSError:
            pass
        self._rfd = -1
        try:
            name = getattr(self._log, "name", None)
            empty = isinstance(name, str) and self._log.tell() == 0 and os.path.getsize(name) == 0
            self._log.close()
            if empty:   # keep only logs that say something (a crash's stderr)
                os.unlink(name)
                try:
                    os.rmdir(os.path.dirname(name))   # only succeeds when no other log is left
                except OSError:
                    pass
        except (OSError, ValueError):
            pass


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
                    try:
                        msg = w.wait_ready()
                    except WorkerTimeout:
                        raise WorkerDied(f"worker did not start within {READY_TIMEOUT_S:g} s") from None
                    ready.append(w)
                    if msg.get("import_s") is not None:
                        self.stats.import_s.append(float(msg["import_s"]))
                    if self.worker_env is None and w.env:
                        self.worker_env = dict(w.env)
                    self._events.on_worker_ready(w.info)
            except WorkerDied:
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
        except WorkerDied as exc:
            return PointRecord(spec=spec, status="crashed", reason=f"worker failed to start: {exc.reason}")
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
            w.send({"cmd": "point", "spec": to_dict(spec), "settings": to_dict(settings),
                    "device_index": self.device_index})
            while True:
                msg = w.receive(settings.point_timeout_s)
                if msg.get("type") == "record":
                    return from_dict(PointRecord, msg["record"], "worker record")
        except WorkerTimeout:
            info = dict(w.info)
            self._discard_worker(w)
            return PointRecord(spec=spec, status="timeout", worker=info, wall_s=time.perf_counter() - t0,
                               reason=f"no result within the point timeout of {settings.point_timeout_s:g} s; worker killed")
        except WorkerDied as exc:
            info = dict(w.info)
            self._discard_worker(w)
            return PointRecord(spec=spec, status="crashed", worker=info, wall_s=time.perf_counter() - t0,
                               reason=f"{exc.reason} while measuring this point")

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
            w.send({"cmd": "calibrate", "device": device, "budget_s": budget_s,
                    "dtypes": list(dtypes) if dtypes else None})
            msg = w.receive(CALIBRATE_TIMEOUT_S)
        except (WorkerDied, WorkerTimeout) as exc:
            self._discard_worker()
            return {"error": getattr(exc, "reason", "calibration timed out")}
        return msg.get("calibration")

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
