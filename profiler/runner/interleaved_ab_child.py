"""The child side of interleaved A/B (``profiler.runner.interleaved_ab``): one fresh process times
every point with one git ref's serprof, then exits.

Loaded by file path in an isolated child (``profiler.core.isolated``) whose ``PYTHONPATH`` is the
ref's snapshot, so every ``profiler`` import below is *that ref's* code; ``measure`` checks it. The
code here must therefore run against older serprof layouts: each import of serprof has a fallback
(``profiler.records`` before the ``core/`` layout; a perf_counter_ns loop for a ref without
``profiler.measure.timer``).

Method per process: build every point's inputs, warm each up (the ref's ``warm_up``; fixed
``warmup_s`` otherwise), then per point ``reps`` samples (or adaptive: ``measure``), each followed by a fixed control op (a
128x128 matmul) timed on its own, so drift within the process is visible. CPU time and wall time per
point give the share of the process that was on a core. ``SERPROF_INJECT_SLOWDOWN``
(``"pattern=fraction;..."``) stretches matching calls by busy-waiting (gate-eval's detections).
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any, Callable

import torch

#: this ref's package (imported by name: ``import profiler`` would read as an import of the package root)
profiler = importlib.import_module("profiler")

try:
    from profiler.measure.timer import PerfCounterTimer, calls_per_sample, warm_up
    try:
        MeasureSettings = importlib.import_module("profiler.core.records").MeasureSettings
    except ImportError:  # a ref from before the core/ layout
        MeasureSettings = importlib.import_module("profiler.records").MeasureSettings
    TIMER: Any = PerfCounterTimer()
    TIMER_NAME = "profiler.measure.timer"
except Exception:  # noqa: BLE001 - a ref without serprof's timer: time with a plain loop
    TIMER, TIMER_NAME = None, "perf_counter_ns loop"

try:
    from profiler.kernels import Shape, get_kernel
except ImportError:  # only the 'dial' control is measurable with such a ref
    Shape = get_kernel = None


def _slowdowns() -> dict[str, float]:
    slow = {}
    for part in os.environ.get("SERPROF_INJECT_SLOWDOWN", "").split(";"):
        if part.strip():
            pat, _, frac = part.strip().rpartition("=")
            slow[pat] = float(frac)
    return slow


def _slowed(fn: Callable[[], None], frac: float) -> Callable[[], None]:
    def call():
        t0 = time.perf_counter_ns()
        fn()
        end = t0 + (time.perf_counter_ns() - t0) * (1.0 + frac)
        while time.perf_counter_ns() < end:
            pass
    return call


def _call(p: dict[str, Any]) -> Callable[[], None]:
    if p["kernel"] == "dial":   # a synthetic control: n matmuls, n grows with backend "dialN" (+N%)
        n_units = 40 + round(40 * float(p["backend"][4:] or 0) / 100) if p["backend"].startswith("dial") else 40
        a, b, o = torch.randn(128, 128), torch.randn(128, 128), torch.empty(128, 128)

        def fn(a=a, b=b, o=o, n=n_units):
            for _ in range(n):
                torch.mm(a, b, out=o)
        return fn
    if get_kernel is None:
        raise RuntimeError(f"this ref's profiler has no kernel registry (kernel {p['kernel']!r})")
    spec = get_kernel(p["kernel"])
    be = spec.backends[p["backend"] or spec.default_backend]
    inputs = spec.make_inputs(Shape(p["B"], p["T"], p["H"], p["D"]), "float32", "cpu", 0)

    def fn(be=be, inputs=inputs, causal=p["causal"]):
        with torch.no_grad():
            be.run(inputs, causal)
    return fn


def measure(tree: str, threads: int, warmup_s: float, reps: int | None, points: list[dict[str, Any]],
            min_reps: int = 5, max_reps: int = 30, sample_s: float = 0.3) -> dict[str, Any]:
    """Samples (seconds) per point id from this process, with its CPU share and control samples.

    ``reps`` samples per point, or (``reps`` None) at least ``min_reps`` and then more until
    ``sample_s`` seconds of sampling or ``max_reps``.
    """
    if not profiler.__file__.startswith(tree):
        raise RuntimeError(f"profiler imported from {profiler.__file__}, not from {tree}")
    torch.set_num_threads(threads)
    slow = _slowdowns()
    calls, ks = {}, {}
    for p in points:
        fn = _call(p)
        frac = next((f for pat, f in slow.items() if pat in p["id"]), 0.0)
        calls[p["id"]] = _slowed(fn, frac) if frac > 0 else fn
    for pid, fn in calls.items():
        if TIMER is not None:
            _, _, est = warm_up(fn, MeasureSettings(warmup_s=warmup_s))
            ks[pid] = calls_per_sample(est, TIMER)
        else:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < warmup_s:
                fn()
            ks[pid] = 1
    ca, cb, co = torch.randn(128, 128), torch.randn(128, 128), torch.empty(128, 128)

    def control():
        torch.mm(ca, cb, out=co)
    control()
    out, cpu, ctl = {}, {}, {}
    for pid, fn in calls.items():
        c0, w0 = time.process_time(), time.perf_counter()
        s, c = [], []
        while (len(s) < reps if reps is not None else
               len(s) < min_reps or (len(s) < max_reps and time.perf_counter() - w0 < sample_s)):
            if TIMER is not None:
                s.append(TIMER.sample(fn, ks[pid]))
            else:
                t0 = time.perf_counter_ns()
                fn()
                s.append((time.perf_counter_ns() - t0) / 1e9)
            control()
            t0 = time.perf_counter_ns()
            control()
            c.append((time.perf_counter_ns() - t0) / 1e9)
        out[pid], ctl[pid] = s, c
        cpu[pid] = [time.process_time() - c0, time.perf_counter() - w0]
    return {"ok": True, "timer": TIMER_NAME, "torch": torch.__version__, "profiler": profiler.__file__,
            "pid": os.getpid(), "threads": torch.get_num_threads(), "samples": out, "cpu": cpu, "controls": ctl}
