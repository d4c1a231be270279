"""A measurement worker: the functions the sweep calls in its worker processes.

The parent (``profiler.runner.local``) starts an ``profiler.core.isolated.IsolatedProcess`` per
worker and calls, in order:

* ``start(device, device_index, interpret)`` once: imports torch (and, through the backends, fla
  when a point needs it), applies CPU pinning and the compile cache, and returns
  ``{"pid", "import_s", "worker": {...host, threads, device name...}, "env": {...torch's view...}}``;
* ``point(spec, settings, device_index)`` per point: the ``PointRecord`` as a dict;
* ``calibrate_device(device, budget_s, dtypes)``: the device calibration (``{"error": ...}`` when it failed).

Failure classification inside the worker (``profiler.core.failures``; the worker survives these):

* out of memory -> status ``oom``;
* a library declining this machine (fla's known-bad Triton/GPU combinations) -> ``unavailable`` with
  the library's words;
* any other exception -> status ``crashed`` with the exception text. When it is a device fault (a
  sticky CUDA error), the parent replaces this worker before the next point.

A segfault, abort, SIGKILL or hang kills or stalls the process itself; the parent turns that into
``crashed`` / ``timeout`` (``ChildCrashed`` / ``ChildTimedOut`` from the isolated-call seam) and starts
a fresh worker.
"""

from __future__ import annotations

import gc
import importlib
import os
import socket
import sys
import time
import traceback
from dataclasses import replace
from typing import Any, Callable

from profiler.core.failures import is_oom, library_refusal
from profiler.core.records import (
    MeasureSettings,
    PointRecord,
    PointSpec,
    from_dict,
    to_dict,
)
from profiler.kernels import interpret as interpret_mod
from profiler.measure.calibrate import calibrate
from profiler.measure.compile_cache import apply_cache_env
from profiler.measure.point import measure_point
from profiler.runner import pinning
from profiler.runner.allocator import describe
from profiler.runner.env import cpu_model, torch_info
from profiler.store.runs import utc_now

MEASURE_ENV = "SERPROF_MEASURE_FN"   # test seam: "module:function" replacing measure_point (tests/fakes)


def load_measure() -> Callable[..., PointRecord]:
    target = os.environ.get(MEASURE_ENV)
    if target:
        mod, _, fn = target.partition(":")
        return getattr(importlib.import_module(mod), fn)

    return measure_point


def _short(exc: BaseException, limit: int = 600) -> str:
    first = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {first[0] if first else ''}".strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    if not tb:
        return ""
    f = tb[-1]
    return f" (at {os.path.basename(f.filename)}:{f.lineno} in {f.name})"


def worker_info(device: str, device_index: int) -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid(), "device_index": device_index}
    try:
        info["affinity"] = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        info["threads"] = torch.get_num_threads()
        if device == "cuda" and torch.cuda.is_available():
            info["device_name"] = torch.cuda.get_device_name(device_index)
    if "device_name" not in info:
        info["device_name"] = cpu_model()
    if device == "cpu":
        info["cpu_malloc"] = describe()["regime"]
    return info


def run_point(measure: Callable[..., PointRecord], spec: PointSpec, settings: MeasureSettings,
              device_index: int, info: dict[str, Any]) -> PointRecord:
    """Measure one point; exceptions become ``oom`` / ``crashed`` records."""
    started = utc_now()
    t0 = time.perf_counter()
    try:
        rec = measure(spec, settings, device_index=device_index)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure of a point becomes its record
        oom = is_oom(exc)
        refusal = None if oom else library_refusal(exc)
        if refusal is not None:
            rec = PointRecord(spec=spec, status="unavailable", reason=f"the backend declines this machine: {refusal}")
        else:
            rec = PointRecord(spec=spec, status="oom" if oom else "crashed",
                              reason=_short(exc) + ("" if oom else _where(exc)))
        del exc
        _release_memory(spec.device)
    wall = time.perf_counter() - t0
    merged_worker = {**info, **dict(rec.worker or {})}

    return replace(rec, worker=merged_worker, started_at=rec.started_at or started,
                   wall_s=rec.wall_s if rec.wall_s is not None else wall)


def _release_memory(device: str) -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and device == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


#: what ``start`` set up in this worker process: the measure function and the worker's description
_state: dict[str, Any] = {}


def start(device: str = "cpu", device_index: int = 0, interpret: bool = False) -> dict[str, Any]:
    """Set the worker up (once, first call); returns what the parent records about it."""
    pin = pinning.apply_from_env()
    apply_cache_env()   # before torch/Triton are imported: compiled kernels and autotune results persist
    t0 = time.perf_counter()
    if interpret:
        interpret_mod.enable()   # TRITON_INTERPRET=1 is already set by the parent
    measure = load_measure()
    import_s = time.perf_counter() - t0
    if pin.get("pinned_threads"):
        pinning.apply_threads(pin["pinned_threads"])
    info = {**worker_info(device, device_index), **pin}
    _state.update(measure=measure, info=info, device=device, device_index=device_index)
    ready: dict[str, Any] = {"pid": os.getpid(), "import_s": import_s, "worker": info}
    if not os.environ.get(MEASURE_ENV):   # torch details for the manifest, so the sweep process needn't import torch
        ready["env"] = torch_info(device_index)
    return ready


def point(spec: dict[str, Any], settings: dict[str, Any], device_index: int | None = None) -> dict[str, Any]:
    """Measure one point (``start`` first); the record as a dict."""
    rec = run_point(_state["measure"], from_dict(PointSpec, spec, "spec"), from_dict(MeasureSettings, settings, "settings"),
                    _state["device_index"] if device_index is None else int(device_index), _state["info"])
    return to_dict(rec)


def calibrate_device(device: str | None = None, budget_s: float = 1.0, dtypes: list[str] | None = None) -> dict[str, Any]:
    """The device calibration (``profiler.measure.calibrate``); a failure is recorded, not fatal."""
    try:
        return calibrate(device or _state["device"], budget_s=float(budget_s), device_index=_state["device_index"],
                         dtypes=dtypes)
    except Exception as exc:  # noqa: BLE001 - a failed calibration is recorded, not fatal
        return {"error": _short(exc)}
