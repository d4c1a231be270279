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
* ``cudafault`` - a sticky CUDA error as torch raises it (``torch.AcceleratorError``, "CUDA error:
  misaligned address", seen from fla's chunk_gla on an H200): from then on every point in this
  process raises the same error, as a poisoned CUDA context does
* ``refuse`` - fla 0.6.0's refusal of a known-bad Triton/GPU combination (its RuntimeError, verbatim)
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


#: set by a ``cudafault``: the process's (modelled) CUDA context is unusable from then on
_POISONED: list[str] = []

CUDA_FAULT_TEXT = ("CUDA error: misaligned address\nCUDA kernel errors might be asynchronously reported at some "
                   "other API call, so the stacktrace below might be incorrect.")
FLA_REFUSAL_TEXT = ("Triton >= 3.4.0 and < 3.7.1 on Hopper GPUs produces incorrect results for gated "
                    "chunk_bwd_dqkwg (see #640). Please upgrade Triton to >= 3.7.1 or install tilelang: "
                    "`pip install tilelang`")


def _accelerator_error(text: str) -> Exception:
    try:
        import torch

        cls = getattr(torch, "AcceleratorError", None)
    except ImportError:
        cls = None
    if cls is None:
        cls = type("AcceleratorError", (RuntimeError,), {})
    return cls(text)


def inject(point_id: str, text: str | None = None) -> None:
    """Apply the configured fault for ``point_id``, if any (and a poisoned context's error, always)."""
    if _POISONED:
        raise _accelerator_error(_POISONED[0])
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
    elif kind == "cudafault":
        _POISONED.append(CUDA_FAULT_TEXT)
        raise _accelerator_error(CUDA_FAULT_TEXT)
    elif kind == "refuse":
        raise RuntimeError(FLA_REFUSAL_TEXT)
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
