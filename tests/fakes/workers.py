"""Test fakes for worker processes: fault injection and stand-ins for ``measure_point``.

Workers load them through the runner's one seam, ``SERPROF_MEASURE_FN="tests.fakes.workers:NAME"``
(the tests put the repository root on ``PYTHONPATH``); the product ships none of this.

Fault injection (``SERPROF_TEST_FAULT``, read by every measure function here)

``SERPROF_TEST_FAULT="kind@pattern[;kind@pattern...]"``: before measuring a point whose id contains
``pattern``, the worker suffers ``kind``:

* ``segv``   - a real segmentation fault (reads address 0 through ctypes)
* ``abort``  - ``os.abort()`` (SIGABRT)
* ``sigkill`` - SIGKILL to itself, as the kernel's OOM killer would do
* ``hang``   - sleeps forever (the parent's point timeout must fire)
* ``alloc``  - a real allocation failure: ``torch.empty`` of 2**50 bytes (or a MemoryError without torch)
* ``raise``  - an ordinary exception inside the point
* ``sleep=S`` - sleeps S seconds, then measures normally (gives tests a window to kill the sweep)

``faulty_measure`` injects, then runs the real ``measure_point``; ``fake_measure`` and ``probe_measure``
inject, then busy-wait instead of measuring (no torch import, so workers start fast).
"""

from __future__ import annotations

import os
import signal
import time

ENV = "SERPROF_TEST_FAULT"


def parse(text: str | None) -> list[tuple[str, str]]:
    out = []
    for part in (text or "").split(";"):
        if "@" in part:
            kind, pattern = part.split("@", 1)
            out.append((kind.strip(), pattern.strip()))
    return out


def inject(point_id: str, text: str | None = None) -> None:
    """Apply the configured fault for ``point_id``, if any."""
    for kind, pattern in parse(os.environ.get(ENV) if text is None else text):
        if pattern and pattern in point_id:
            _apply(kind)


def _apply(kind: str) -> None:
    if kind == "segv":
        import ctypes

        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "alloc":
        try:
            import torch
        except ImportError:
            raise MemoryError("injected allocation failure")
        torch.empty(2**50, dtype=torch.uint8)
    elif kind == "raise":
        raise RuntimeError("injected failure inside the point")
    elif kind.startswith("sleep="):
        time.sleep(float(kind.split("=", 1)[1]))
    else:
        raise ValueError(f"{ENV}: unknown fault kind {kind!r}")


def _busy_samples(spec, default_s: float) -> tuple[float, ...]:
    """Inject the point's fault, then busy-wait ``SERPROF_FAKE_POINT_S`` (else ``default_s``) seconds
    as the "timed calls": three equal samples of a third of it each."""
    inject(spec.id)
    dur = float(os.environ.get("SERPROF_FAKE_POINT_S", str(default_s)))
    reps = 3
    t0 = time.perf_counter()
    while time.perf_counter() < t0 + dur:
        pass
    return ((time.perf_counter() - t0) / reps,) * reps


def fake_measure(spec, settings, *, device_index: int = 0):
    """Test-only stand-in for ``measure_point`` (``SERPROF_MEASURE_FN=tests.fakes.workers:fake_measure``).

    Busy-waits ``SERPROF_FAKE_POINT_S`` seconds (default 0.01) as its "timed calls" and returns an
    ``ok`` record with those samples; it imports no torch, so runner tests start workers quickly.
    """
    from profiler.core.records import PointRecord, Timing

    return PointRecord(spec=spec, status="ok", timing=Timing(samples_s=_busy_samples(spec, 0.01), timer="fake"),
                       worker={"device_index": device_index, "pid": os.getpid()},
                       extra={"settings_seen": {"verify": settings.verify, "measure_memory": settings.measure_memory,
                                                "measure_energy": settings.measure_energy,
                                                "time_budget_s": settings.time_budget_s,
                                                "processes": settings.processes}})


def probe_measure(spec, settings, *, device_index: int = 0):
    """Test/benchmark seam (``SERPROF_MEASURE_FN=tests.fakes.workers:probe_measure``).

    Busy-waits like ``fake_measure`` (default 0.05 s) and records, at measurement time, the cores every
    thread of the worker may run on (``extra.thread_cores``): a pinned worker must never be able to
    leave its set.
    """
    from profiler.core.records import PointRecord, Timing
    from profiler.runner.pinning import thread_affinities

    samples = _busy_samples(spec, 0.05)
    cores = sorted({c for cs in thread_affinities().values() for c in cs})
    return PointRecord(spec=spec, status="ok", timing=Timing(samples_s=samples, timer="fake"),
                       extra={"thread_cores": cores, "pid": os.getpid()})


def faulty_measure(spec, settings, *, device_index: int = 0):
    """The real ``measure_point`` after the fault (if any) that ``SERPROF_TEST_FAULT`` names for this point."""
    from profiler.measure.point import measure_point

    inject(spec.id)
    return measure_point(spec, settings, device_index=device_index)
