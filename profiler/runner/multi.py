"""The multi-worker local executor: several devices (or disjoint CPU core sets) of one node.

One ``LocalExecutor`` per slot (``profiler.runner.pinning.Slot``: a CUDA device, or a set of CPU
cores with a thread count), each driven by its own thread, all pulling from one shared
``PointQueue``. Every slot keeps the single-device guarantees of ``LocalExecutor`` (a worker
process, crash / timeout isolation, a fresh worker after a failure) and owns its device exclusively:
two points are never timed concurrently on one device or one core.

Scheduling policy (stated in the manifest):

* **Shared queue, dynamic pull.** A slot takes the next point the moment it is free, so all slots
  finish within about one point's duration of each other, whatever the points cost.
* **Longest series first.** Series (``PointSpec.series_key``) are ordered by their estimated cost
  (the kernel's FLOP model summed over the series' points; tokens when no model is available),
  largest first, so the long tail at the end of a run is made of cheap series.
* **Within a series, short to long**, as in the plan, so an OOM (or SIGKILL / timeout) at some size
  skips the longer points of that series. Two slots may run two points of one series at once; a
  point that started before its series' OOM was known still runs (and is recorded).

Records are delivered to ``RunEvents`` under one lock (the sweep's sink appends to one file). A
Ctrl-C stops every slot's worker; points that were in flight get no record, so ``--resume`` reruns
them.
"""

from __future__ import annotations

import functools
import socket
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.core.records import MeasureSettings, PointRecord, PointSpec
from profiler.kernels import registry
from profiler.kernels.base import Shape
from profiler.runner.base import Executor, ExecutorStats, PointQueue, RunEvents
from profiler.runner.local import LocalExecutor
from profiler.runner.pinning import Slot, check_cuda_devices, cpu_slots, cuda_slots

torch = lazy_import("torch")

POLICY = ("shared queue, dynamic pull; series ordered by estimated cost (largest first); "
          "each series short to long (OOM skips the longer points of its series)")


@functools.lru_cache(maxsize=None)
def _registry() -> Mapping[str, Any] | None:
    try:
        return registry()
    except Exception:  # noqa: BLE001 - ordering falls back to tokens; never fails a run
        return None


def point_cost(spec: PointSpec) -> float:
    """Relative cost of a point for ordering: the kernel's forward FLOPs (x3 for fwdbwd), else tokens."""
    reg = _registry() if spec.level == "kernel" else None
    kernel = reg.get(spec.kernel) if reg else None
    if kernel is not None:
        try:
            flops = float(kernel.flops(Shape.of(spec), spec.causal))
            return flops * _MODE_COST.get(spec.mode, 1.0)
        except Exception:  # noqa: BLE001
            pass
    return float(spec.tokens * spec.H * spec.D) * _MODE_COST.get(spec.mode, 1.0)


#: relative cost of a mode against the forward (ordering only)
_MODE_COST = {"fwd": 1.0, "bwd": 2.0, "fwdbwd": 3.0}


def order_points(points: Sequence[PointSpec]) -> list[PointSpec]:
    """Series by estimated total cost (largest first), each series in its given (short-to-long) order."""
    series: dict[tuple, list[PointSpec]] = {}
    for p in points:
        series.setdefault(p.series_key, []).append(p)
    cost = {k: sum(point_cost(p) for p in pts) for k, pts in series.items()}
    first_seen = {k: i for i, k in enumerate(series)}
    keys = sorted(series, key=lambda k: (-cost[k], first_seen[k]))
    return [p for k in keys for p in series[k]]


class _SlotQueue:
    """A slot's view of the shared queue; stops handing out points once the run is stopping."""

    def __init__(self, shared: PointQueue, stop: threading.Event):
        self.shared, self.stop = shared, stop

    def next(self) -> tuple[PointSpec | None, list[PointRecord]]:
        if self.stop.is_set():
            return None, []
        return self.shared.next()

    def report(self, rec: PointRecord) -> None:
        self.shared.report(rec)


class MultiExecutor(Executor):
    """Several pinned slots on this node sharing one point queue (see the module docstring)."""

    name = "local"

    def __init__(self, slots: Sequence[Slot], log_dir: Path | None = None,
                 env: Mapping[str, str] | None = None):
        if not slots:
            raise ValueError("MultiExecutor needs at least one slot")
        self.slots = list(slots)
        self.env = env
        self._log_dir: Path | None = None
        self._executors = [LocalExecutor(device_index=0, env=s.env(env)) for s in self.slots]
        self.log_dir = log_dir
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.ready: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- construction helpers
    @classmethod
    def for_cpu(cls, workers: int, cores_per_worker: int | None = None, **kw: Any) -> "MultiExecutor":
        return cls(cpu_slots(workers, cores_per_worker), **kw)

    @classmethod
    def for_cuda(cls, devices: Sequence[int], **kw: Any) -> "MultiExecutor":
        return cls(cuda_slots(devices), **kw)

    # ---------------------------------------------------------------- attributes run_sweep uses
    @property
    def log_dir(self) -> Path | None:
        return self._log_dir

    @log_dir.setter
    def log_dir(self, value: Path | None) -> None:
        self._log_dir = value
        for slot, ex in zip(self.slots, self._executors):
            ex.log_dir = None if value is None else Path(value) / f"slot-{slot.index}"

    @property
    def stats(self) -> ExecutorStats:  # type: ignore[override]
        out = ExecutorStats()
        for ex in self._executors:
            out.worker_starts += ex.stats.worker_starts
            out.worker_start_s += ex.stats.worker_start_s
            out.worker_faults += ex.stats.worker_faults
            out.import_s += list(ex.stats.import_s)
        return out

    # ---------------------------------------------------------------- running
    def run(self, queue: PointQueue, settings: MeasureSettings, events: RunEvents) -> None:
        shared = PointQueue(order_points(queue.drain()))
        self._stop.clear()
        errors: list[BaseException] = []

        def locked(fn):
            def call(arg):
                with self._lock:
                    if not self._stop.is_set():
                        fn(arg)
            return call

        def on_ready(info: Mapping[str, Any]) -> None:
            self.ready.append(dict(info))
            events.on_worker_ready(info)

        slot_events = RunEvents(on_record=locked(events.on_record), on_point_start=locked(events.on_point_start),
                                on_worker_ready=locked(on_ready))

        def drive(ex: LocalExecutor) -> None:
            try:
                ex.run(_SlotQueue(shared, self._stop), settings, slot_events)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                if not self._stop.is_set():
                    errors.append(exc)
                    self._stop.set()

        threads = [threading.Thread(target=drive, args=(ex,), name=f"serprof-slot-{s.index}", daemon=True)
                   for s, ex in zip(self.slots, self._executors)]
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.2)
        except KeyboardInterrupt:
            self._stop.set()          # in-flight points get no record: --resume reruns them
            self.close()
            for t in threads:
                t.join(timeout=15)
            raise
        if errors:
            raise errors[0]

    def calibrate(self, device: str, *, budget_s: float = 1.0,
                  dtypes: tuple[str, ...] | None = None) -> Mapping[str, Any] | None:
        """Calibrate in slot 0 (pinned like every slot: the ceilings are one worker's)."""
        cal = self._executors[0].calibrate(device, budget_s=budget_s, dtypes=dtypes)
        if cal is not None and "error" not in cal:
            cal = {**cal, "scope": f"one worker: {self.slots[0].describe()}"}
        return cal

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": len(self.slots), "host": socket.gethostname(),
                "scheduling": POLICY, "slots": [s.describe() for s in self.slots],
                "pinning": _pinning_note(self.slots),
                "worker_reuse": "one worker process per slot, replaced after a crash or timeout"}

    def close(self) -> None:
        for ex in self._executors:
            try:
                ex.close()
            except Exception:  # noqa: BLE001 - closing must reach every slot
                pass


def _pinning_note(slots: Sequence[Slot]) -> str:
    if slots[0].device == "cuda":
        devs = ", ".join(str(s.cuda_device) for s in slots)
        return (f"one worker per CUDA device ({devs}); each sees only its device (CUDA_VISIBLE_DEVICES); "
                "points on one device never overlap")
    sets = "; ".join(f"worker {s.index}: cores {','.join(map(str, s.cores))}, {s.threads} thread(s)" for s in slots)
    return (f"{len(slots)} CPU workers on disjoint cores ({sets}); sched_setaffinity before torch import, "
            "torch.set_num_threads and OMP/MKL thread env set per worker; memory bandwidth and caches are shared")


# --------------------------------------------------------------------------- choosing the executor

def local_executor(device: str, devices: Sequence[int] = (), workers: int | None = None,
                   cores_per_worker: int | None = None, cuda_count: int | None = None,
                   env: Mapping[str, str] | None = None) -> Executor | None:
    """The local executor for ``--devices`` / ``--workers`` (None: the default single-worker one).

    ``device`` is the scenario's device (auto | cpu | cuda). Validation (``UsageError``, exit 2):
    ``--devices`` with ``--device cpu`` or naming a device torch does not see; ``--workers`` more than
    the usable cores; ``--workers`` > 1 on CUDA without ``--devices`` (two timing workers would share
    one GPU); ``--workers`` different from the number of ``--devices``.
    """
    if devices:
        if workers is not None and workers != len(devices):
            raise UsageError(f"--workers {workers} does not match --devices (one worker per device: "
                             f"{len(devices)}); drop --workers")
        if cores_per_worker is not None:
            raise UsageError("--cores-per-worker pins CPU workers; with --devices each worker owns a GPU")
        count = _cuda_count() if cuda_count is None and device != "cpu" else (cuda_count or 0)
        check_cuda_devices(devices, device, count)
        return MultiExecutor.for_cuda(devices, env=env)
    if workers is None and cores_per_worker is None:
        return None
    n = 1 if workers is None else workers
    if device == "cuda" or (device == "auto" and (cuda_count if cuda_count is not None else _cuda_count()) > 0):
        if n > 1:
            raise UsageError(f"--workers {n} on CUDA would time {n} workers on one GPU; "
                             "use --devices 0,1,... (one worker per GPU)")
        return None
    return MultiExecutor.for_cpu(n, cores_per_worker, env=env)


def _cuda_count() -> int:
    try:
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no usable torch CUDA: no devices
        return 0

