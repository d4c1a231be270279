"""The executor interface and the point queue every executor pulls from.

An ``Executor`` runs the points of a ``PointQueue`` somewhere (this machine's one device today;
several devices of a node or SLURM job arrays in later executors) and reports every finished
``PointRecord`` through ``RunEvents.on_record``. The queue owns scheduling decisions that do not
depend on where a point runs:

* order: points come out in plan order (series after series, each from short to long);
* OOM skips: after an ``oom`` (or a crash by SIGKILL, which on Linux is usually the OOM killer, or a
  ``timeout``) at some B*T, the longer points of the same series (``PointSpec.series_key``, larger
  B*T) are not run: they come out as ``skipped`` records with the reason ("OOM at T=...,B=...").

Several workers (threads of a multi-device executor) may share one queue: ``next`` and ``report``
are thread-safe.
"""

from __future__ import annotations

import abc
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from profiler.core.records import MeasureSettings, PointRecord, PointSpec


@dataclass
class RunEvents:
    """Callbacks an executor calls (from the thread that runs it). All optional."""

    on_record: Callable[[PointRecord], None] = lambda rec: None
    on_point_start: Callable[[PointSpec], None] = lambda spec: None
    on_worker_ready: Callable[[Mapping[str, Any]], None] = lambda info: None


def _failure_tag(rec: PointRecord) -> str | None:
    if rec.status == "oom":
        return "OOM"
    if rec.status == "timeout":
        return "timeout"
    if rec.status == "crashed" and "SIGKILL" in (rec.reason or ""):
        return "worker killed by SIGKILL (likely out of memory)"
    return None


class PointQueue:
    """Plan-ordered points with OOM-driven skipping of longer points of the same series."""

    def __init__(self, points: Iterable[PointSpec]):
        self._pending: deque[PointSpec] = deque(points)
        self._limits: dict[tuple, tuple[int, str]] = {}   # series_key -> (tokens, reason)
        self._lock = threading.Lock()
        self.total = len(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def next(self) -> tuple[PointSpec | None, list[PointRecord]]:
        """``(next point to run or None, skipped records produced on the way)``."""
        skipped: list[PointRecord] = []
        with self._lock:
            while self._pending:
                spec = self._pending.popleft()
                limit = self._limits.get(spec.series_key)
                if limit is not None and spec.tokens > limit[0]:
                    skipped.append(PointRecord(spec=spec, status="skipped", reason=limit[1]))
                    continue
                return spec, skipped
        return None, skipped

    def report(self, rec: PointRecord) -> None:
        """Learn from a finished point (an OOM caps its series)."""
        tag = _failure_tag(rec)
        if tag is None:
            return
        s = rec.spec
        with self._lock:
            prev = self._limits.get(s.series_key)
            if prev is None or s.tokens < prev[0]:
                self._limits[s.series_key] = (s.tokens, f"{tag} at T={s.T},B={s.B} in this series")

    def drain(self) -> list[PointSpec]:
        """Remove and return what is left (used when a run stops early)."""
        with self._lock:
            rest = list(self._pending)
            self._pending.clear()
            return rest


@dataclass
class ExecutorStats:
    """Where the executor's wall time went (for the overhead report)."""

    worker_starts: int = 0
    worker_start_s: float = 0.0     # spawn until ready (imports included)
    worker_faults: int = 0          # workers replaced after a device fault (sticky CUDA error)
    import_s: list[float] = field(default_factory=list)


class Executor(abc.ABC):
    """Runs points and reports records. Implementations: ``LocalExecutor`` (one device, here)."""

    name: str = "abstract"
    stats: ExecutorStats

    @abc.abstractmethod
    def run(self, queue: PointQueue, settings: MeasureSettings, events: RunEvents) -> None:
        """Run every point of ``queue``; every point yields exactly one ``events.on_record`` call.

        Returns when the queue is empty. ``KeyboardInterrupt`` propagates after workers are stopped.
        """

    def calibrate(self, device: str, *, budget_s: float = 1.0,
                  dtypes: tuple[str, ...] | None = None) -> Mapping[str, Any] | None:
        """Machine calibration (matmul FLOP/s per dtype in ``dtypes``, memory bandwidth) measured by a
        worker; None if unsupported."""
        return None

    def describe(self) -> dict[str, Any]:
        """Stored in the manifest: how points were executed (executor, devices, pinning)."""
        return {"executor": self.name}

    def close(self) -> None:
        """Stop all workers. Safe to call more than once."""
