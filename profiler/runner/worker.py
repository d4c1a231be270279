"""A measurement worker process: ``python -m profiler.runner.worker --result-fd N``.

The worker imports torch (and, through the backends, fla when a point needs it) once, then reads
commands from stdin (see ``profiler.runner.protocol``) and measures the points it is sent, in order,
writing each ``PointRecord`` back as one JSON line on the result pipe.

Failure classification inside the worker (the worker survives these):

* ``torch.OutOfMemoryError``, ``MemoryError``, or a ``RuntimeError`` saying "can't allocate memory" /
  "out of memory" -> status ``oom``;
* any other exception -> status ``crashed`` with the exception text.

A segfault, abort, SIGKILL or hang kills or stalls the process itself; the parent
(``profiler.runner.local``) turns that into ``crashed`` / ``timeout`` and starts a fresh worker. The
worker asks Linux to SIGKILL it if the sweep process dies (``PR_SET_PDEATHSIG``), so a killed sweep
leaves no orphan measuring in the background.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import os
import signal
import socket
import sys
import time
import traceback
from dataclasses import replace
from typing import Any, Callable

from profiler.core.records import (
    MeasureSettings,
    PointRecord,
    PointSpec,
    from_dict,
    to_dict,
)
from profiler.kernels import interpret
from profiler.measure.calibrate import calibrate
from profiler.measure.compile_cache import apply_cache_env
from profiler.measure.point import measure_point
from profiler.runner import pinning
from profiler.runner.allocator import describe
from profiler.runner.env import cpu_model, torch_info
from profiler.runner.protocol import decode, encode
from profiler.store.runs import utc_now

MEASURE_ENV = "SERPROF_MEASURE_FN"   # test seam: "module:function" replacing measure_point (tests/fakes)
OOM_TEXTS = ("can't allocate memory", "out of memory", "cannot allocate memory", "failed to allocate")


def _set_pdeathsig() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def load_measure() -> Callable[..., PointRecord]:
    target = os.environ.get(MEASURE_ENV)
    if target:
        mod, _, fn = target.partition(":")
        return getattr(importlib.import_module(mod), fn)

    return measure_point


def is_oom(exc: BaseException) -> bool:
    """An allocation failure (CUDA or CPU), as opposed to any other error."""
    if isinstance(exc, MemoryError):
        return True
    torch = sys.modules.get("torch")
    if torch is not None:
        oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
        if oom_type is not None and isinstance(exc, oom_type):
            return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return any(t in text for t in OOM_TEXTS)
    return False


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


def _activate_interpreter() -> None:
    """Patch Triton's interpreter for fla (TRITON_INTERPRET=1 is already set by the parent)."""
    interpret.enable()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="profiler.runner.worker")
    ap.add_argument("--result-fd", type=int, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--device-index", type=int, default=0)
    ap.add_argument("--interpret", action="store_true")
    args = ap.parse_args(argv)
    _set_pdeathsig()

    pin = pinning.apply_from_env()
    out = os.fdopen(args.result_fd, "wb", buffering=0)

    apply_cache_env()   # before torch/Triton are imported: compiled kernels and autotune results persist
    t0 = time.perf_counter()
    if args.interpret:
        _activate_interpreter()
    measure = load_measure()
    import_s = time.perf_counter() - t0
    if pin.get("pinned_threads"):
        pinning.apply_threads(pin["pinned_threads"])
    info = {**worker_info(args.device, args.device_index), **pin}
    ready: dict[str, Any] = {"type": "ready", "pid": os.getpid(), "import_s": import_s, "worker": info}
    if not os.environ.get(MEASURE_ENV):   # torch details for the manifest, so the sweep process needn't import torch

        ready["env"] = torch_info(args.device_index)
    out.write(encode(ready))

    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        msg = decode(line)
        cmd = msg.get("cmd")
        if cmd == "exit":
            break
        if cmd == "point":
            spec = from_dict(PointSpec, msg["spec"], "spec")
            settings = from_dict(MeasureSettings, msg["settings"], "settings")
            rec = run_point(measure, spec, settings, int(msg.get("device_index", args.device_index)), info)
            out.write(encode({"type": "record", "record": to_dict(rec)}))
        elif cmd == "calibrate":
            try:
                cal = calibrate(msg.get("device", args.device), budget_s=float(msg.get("budget_s", 1.0)),
                                device_index=args.device_index, dtypes=msg.get("dtypes"))
            except Exception as exc:  # noqa: BLE001 - a failed calibration is recorded, not fatal
                cal = {"error": _short(exc)}
            out.write(encode({"type": "calibration", "calibration": cal}))
        else:
            out.write(encode({"type": "error", "error": f"unknown command {cmd!r}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
