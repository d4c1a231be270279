"""CUDA timing: device time and call latency of one call, from one measurement session.

Why two numbers. On an H200 the fla chunk kernels are host-bound: one call's Python and launch
overhead (0.3-0.6 ms) hides 0.02-0.1 ms of device work (../evidence/h200-2026-11-30/timers.jsonl:
retnet T=1024, graph replay 0.019 ms, isolated call 0.63 ms). An event pair around back-to-back
calls measures neither quantity: it is device time when the device is the bottleneck and host
time when the host is. serprof therefore measures, per CUDA point:

* **device time** (``Timing.quantity == "device_time"``, the point's primary ``timing``): what the
  GPU spends on one call with launch overhead hidden, by the first method of this chain that works:

  1. ``cuda_graph``: capture the call in a ``torch.cuda.CUDAGraph`` after warm-up (``unroll`` calls
     per graph when one call is under ``UNROLL_BELOW_S``, so replay gaps vanish), then per sample::

         spin(SPIN_S)                       # the device is busy while the host enqueues
         start.record(); graph.replay() x n; end.record(); end.synchronize()
         sample = elapsed / (n * unroll)

     ``n`` makes a sample at least ``MIN_SAMPLE_S`` long (pilot: 3 replays).
  2. ``kineto``: when capture or replay raises (a host sync inside the op, dynamic shapes,
     ``cu_seqlens`` read on the host, ...): one call under ``torch.profiler`` per sample; the
     sample is the sum of the device kernels' durations (memcpy/memset included). The span from
     the first kernel's start to the last kernel's end is kept in ``PointRecord.extra
     ["device_span_s"]`` (gaps between kernels on the device count there, not in the sum).
  3. ``spin_events``: when the profiler fails or sees no kernels: per sample::

         synchronize(); spin(spin_s); start.record(); fn(); end.record(); end.synchronize()

     with ``spin_s`` = 1.5 x the measured call latency (+ ``SPIN_S``, at most ``MAX_SPIN_S``) so
     the host enqueues the call while the device spins and the events see device work only. One
     call per sample: an op that synchronises inside (the usual reason capture failed) would let
     the device idle between calls. For such an op the end event is enqueued after the host
     returns, so the event's own enqueue cost (~1 us) is counted.

  ``Timing.method`` names the method used and ``Timing.method_reason`` the failures of the
  earlier ones (``"cuda_graph: RuntimeError: ..."``).
* **call latency** (``PointRecord.call_latency``, ``quantity == "call_latency"``, method
  ``sync_wall``): ``synchronize(); t0 = perf_counter_ns(); fn(); synchronize(); t1`` per sample: one
  isolated call as a user sees it, host included (the study's per-utterance metric).

Both use the timer's stopping rule (``profiler.measure.timer.sample_until``: CI of the median,
``max_reps``) and share the point's time budget (half each). ``host_overhead_s`` = latency - device
time; ``launch_bound`` when device time < 50% of latency (``PointRecord`` properties).

Order per point: first call alone (``FirstCall``), warm-up (``warm_up``), call latency, device time.

L2 state (``MeasureSettings.l2``: ``warm`` by default, ``cold``; ``Timing.l2_flush`` records it):
cold with a graph captures the flush (zeroing a buffer of >= 2x L2) as a node before the call, so
every replay starts cold and the flush adds no host time; a graph of the flush alone is replayed
in the same sample and its time subtracted (``extra["l2_flush_s"]`` = the flush's median device
time). ``kineto`` and ``spin_events`` flush before each (one-call) sample, outside the measured
window. Call latency is never flushed.

What is not captured: for ``kineto``, overlap between kernels on several streams (durations are
summed) and device idle gaps inside the call (see the span); for graphs, the host work of the call
(by design: that is call latency). In fwd+bwd mode the gradient reset runs before capture; replays
rewrite the captured gradient buffers and ``unroll`` stays 1.

The CUDA API is one injected object (``CudaApi``: events, synchronize, capture, kernel intervals,
spin, host clock) so tests drive all of this with a simulated host and device timeline.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Protocol

from profiler.core.lazy import lazy_import
from profiler.core.records import MeasureSettings, Timing
from profiler.measure.timer import (
    Call,
    TimedCall,
    first_call_record,
    sample_until,
    time_first_call,
    warm_up,
)

torch = lazy_import("torch")
torch_autograd = lazy_import("torch.autograd")
torch_profiler = lazy_import("torch.profiler")

#: a call shorter than this is unrolled in the captured graph (replay gaps would show)
UNROLL_BELOW_S = 50e-6
MAX_UNROLL = 32
#: shortest event-timed sample (event resolution is ~0.5 us)
MIN_SAMPLE_S = 2e-4
MAX_REPLAYS = 10_000
#: spin enqueued before the start event of a graph sample
SPIN_S = 1e-4
MAX_SPIN_S = 0.05
#: spin_events: the spin lasts this many times the measured call latency (plus SPIN_S)
SPIN_FACTOR = 1.5
PILOT_REPLAYS = 3
METHODS = ("cuda_graph", "kineto", "spin_events")


class Event(Protocol):
    def record(self) -> None: ...
    def synchronize(self) -> None: ...
    def elapsed_time(self, end: "Event") -> float: ...   # milliseconds


class Graph(Protocol):
    def replay(self) -> None: ...


class CudaApi(Protocol):
    """The seam: everything CUDA the device-time methods use."""

    def event(self) -> Event: ...
    def synchronize(self) -> None: ...
    def capture(self, fn: Call, calls: int) -> Graph: ...     # raises when the call cannot be captured
    def kernel_intervals(self, fn: Call) -> list[tuple[float, float]]: ...  # device (start_s, end_s)
    def spin(self, seconds: float) -> None: ...               # enqueue a device busy-wait
    def clock_ns(self) -> int: ...                             # host clock


class TorchCudaApi:
    """``CudaApi`` on real CUDA through torch (``torch.cuda``, ``torch.profiler``, ``torch.cuda._sleep``)."""

    def __init__(self, index: int = 0) -> None:
        self._torch = torch
        self.index = index
        self._device = torch.device("cuda", index)
        self._cycles_per_s: float | None = None

    def event(self) -> Event:
        return self._torch.cuda.Event(enable_timing=True)

    def synchronize(self) -> None:
        self._torch.cuda.synchronize(self.index)

    def clock_ns(self) -> int:
        return time.perf_counter_ns()

    def capture(self, fn: Call, calls: int) -> Graph:
        cuda = self._torch.cuda
        side = cuda.Stream(self._device)
        side.wait_stream(cuda.current_stream(self._device))
        with cuda.stream(side):       # torch's recipe: one call on a side stream before capture
            fn()
        cuda.current_stream(self._device).wait_stream(side)
        self.synchronize()
        g = cuda.CUDAGraph()
        with cuda.graph(g):
            for _ in range(calls):
                fn()
        self.synchronize()
        g.replay()                    # a replay that fails should fail here, before timing
        self.synchronize()
        return g

    def kernel_intervals(self, fn: Call) -> list[tuple[float, float]]:
        self.synchronize()
        with torch_profiler.profile(activities=[torch_profiler.ProfilerActivity.CPU, torch_profiler.ProfilerActivity.CUDA]) as prof:
            fn()
            self.synchronize()
        out = []
        for e in prof.events():
            if getattr(e, "device_type", None) == torch_autograd.DeviceType.CUDA:
                out.append((e.time_range.start / 1e6, e.time_range.end / 1e6))
        return out

    def spin(self, seconds: float) -> None:
        if self._cycles_per_s is None:
            self._cycles_per_s = self._calibrate_spin()
        self._torch.cuda._sleep(max(1, int(seconds * self._cycles_per_s)))

    def _calibrate_spin(self, cycles: int = 1_000_000) -> float:
        self._torch.cuda._sleep(cycles)     # first launch outside the measurement
        self.synchronize()
        a, b = self.event(), self.event()
        a.record()
        self._torch.cuda._sleep(cycles)
        b.record()
        b.synchronize()
        ms = a.elapsed_time(b)
        return cycles / (ms / 1e3) if ms > 0 else 1.5e9


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def _why(method: str, exc: BaseException) -> str:
    """``method: Type: message``; a root cause hidden behind a clean-up error is named too.

    (A failed capture often surfaces as the graph context's ``capture_end`` error; the op's own
    error, e.g. "operation not permitted when stream is capturing", is its ``__context__``.)
    """
    text = f"{method}: {_first_line(exc)}"
    root = exc.__cause__ or exc.__context__
    seen = 0
    while root is not None and (root.__cause__ or root.__context__) is not None and seen < 5:
        root, seen = root.__cause__ or root.__context__, seen + 1
    if root is not None:
        text += f" (after {_first_line(root)})"
    return text


def _events_elapsed_s(api: CudaApi, body: Call, spin_s: float | None) -> float:
    start, end = api.event(), api.event()
    if spin_s:
        api.spin(spin_s)
    start.record()
    body()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def measure_call_latency(fn: Call, settings: MeasureSettings, *, sync: Call, reset: Call | None = None,
                         clock_ns: Callable[[], int] = time.perf_counter_ns, budget_s: float | None = None,
                         warmup: tuple[int, float] = (0, 0.0)) -> Timing:
    """Sync-to-sync wall time of one isolated call, repeated under the stopping rule."""
    def sample() -> float:
        sync()
        t0 = clock_ns()
        fn()
        sync()
        return (clock_ns() - t0) / 1e9

    samples, stop = sample_until(sample, settings, before=reset, clock_ns=clock_ns, budget_s=budget_s)
    return Timing(samples_s=tuple(samples), timer="perf_counter_ns", warmup_calls=warmup[0], warmup_s=warmup[1],
                  calls_per_sample=1, stop_reason=stop, target_rel_ci=settings.target_rel_ci,
                  quantity="call_latency", method="sync_wall")


def _graph(fn: Call, settings: MeasureSettings, api: CudaApi, reset: Call | None, flush: Call | None,
           budget_s: float | None, extra: dict) -> tuple[list[float], str, int, int]:
    if reset is not None:
        reset()
    if flush is not None:
        return _graph_cold(fn, settings, api, flush, budget_s, extra)
    g1 = api.capture(fn, 1)
    api.synchronize()
    pilot = _events_elapsed_s(api, lambda: [g1.replay() for _ in range(PILOT_REPLAYS)], SPIN_S) / PILOT_REPLAYS
    unroll = 1
    if reset is None and pilot < UNROLL_BELOW_S:
        unroll = int(min(MAX_UNROLL, math.ceil(UNROLL_BELOW_S / max(pilot, 1e-8))))
    g = g1 if unroll == 1 else api.capture(fn, unroll)
    n = int(min(MAX_REPLAYS, max(1, math.ceil(MIN_SAMPLE_S / max(pilot * unroll, 1e-9)))))

    def body() -> None:
        for _ in range(n):
            g.replay()

    def sample() -> float:
        return _events_elapsed_s(api, body, SPIN_S) / (n * unroll)

    samples, stop = sample_until(sample, settings, before=None, clock_ns=api.clock_ns, budget_s=budget_s)
    return samples, stop, n * unroll, unroll


def _graph_cold(fn: Call, settings: MeasureSettings, api: CudaApi, flush: Call, budget_s: float | None,
                extra: dict) -> tuple[list[float], str, int, int]:
    """Cold L2 inside the graph: per sample, ``n`` replays of [flush, call] and ``n`` of [flush] alone,
    each between one event pair; the sample is the difference over ``n``. The flush costs no host
    time (it is a node of the graph) and its device time is subtracted, paired per sample."""
    def flush_then_call() -> None:
        flush()
        fn()

    g_fc = api.capture(flush_then_call, 1)
    g_f = api.capture(flush, 1)
    api.synchronize()
    pilot = _events_elapsed_s(api, lambda: [g_fc.replay() for _ in range(PILOT_REPLAYS)], SPIN_S) / PILOT_REPLAYS
    n = int(min(MAX_REPLAYS, max(1, math.ceil(MIN_SAMPLE_S / max(pilot, 1e-9)))))
    flush_s: list[float] = []

    def sample() -> float:
        both = _events_elapsed_s(api, lambda: [g_fc.replay() for _ in range(n)], SPIN_S)
        alone = _events_elapsed_s(api, lambda: [g_f.replay() for _ in range(n)], SPIN_S)
        flush_s.append(alone / n)
        return max(0.0, both - alone) / n

    samples, stop = sample_until(sample, settings, before=None, clock_ns=api.clock_ns, budget_s=budget_s)
    extra["l2_flush"] = "in_graph"
    extra["l2_flush_s"] = sorted(flush_s)[len(flush_s) // 2] if flush_s else None
    return samples, stop, n, 1


def _kineto(fn: Call, settings: MeasureSettings, api: CudaApi, reset: Call | None, flush: Call | None,
            budget_s: float | None, extra: dict) -> tuple[list[float], str, int, int]:
    spans: list[float] = []

    def before() -> None:
        if reset is not None:
            reset()
        if flush is not None:
            flush()
        api.synchronize()       # the flush kernel must not land in the profiled window

    def sample() -> float:
        iv = api.kernel_intervals(fn)
        if not iv:
            raise RuntimeError("the profiler recorded no device kernels for the call")
        spans.append(max(e for _, e in iv) - min(s for s, _ in iv))
        return sum(e - s for s, e in iv)

    before()
    sample()                    # the first profiled call pays the profiler's start-up; not kept
    spans.clear()
    samples, stop = sample_until(sample, settings, before=before, clock_ns=api.clock_ns, budget_s=budget_s)
    extra["device_span_s"] = list(spans)
    return samples, stop, 1, 1


def _spin_events(fn: Call, settings: MeasureSettings, api: CudaApi, reset: Call | None, flush: Call | None,
                 budget_s: float | None, extra: dict, latency_s: float) -> tuple[list[float], str, int, int]:
    # One call per sample: ops that reach this method often synchronise inside (that is why capture
    # failed), and a second call would then start after the device went idle, counting host time.
    spin_s = min(MAX_SPIN_S, SPIN_FACTOR * latency_s + SPIN_S)

    def before() -> None:
        if reset is not None:
            reset()
        if flush is not None:
            flush()
        api.synchronize()

    def sample() -> float:
        return _events_elapsed_s(api, fn, spin_s)

    samples, stop = sample_until(sample, settings, before=before, clock_ns=api.clock_ns, budget_s=budget_s)
    extra["spin_s"] = spin_s
    return samples, stop, 1, 1


def measure_device_time(fn: Call, settings: MeasureSettings, api: CudaApi, *, reset: Call | None = None,
                        flush: Call | None = None, latency_s: float, budget_s: float | None = None,
                        methods: tuple[str, ...] = METHODS, warmup: tuple[int, float] = (0, 0.0),
                        extra: dict | None = None) -> Timing:
    """Device time per call by the first method of ``methods`` that works (see module doc).

    ``latency_s`` is an estimate of one call's sync-to-sync latency (sizes the spin). Raises
    ``RuntimeError`` naming every failure when no method works.
    """
    extra = {} if extra is None else extra
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown device-time methods {bad}; valid: {', '.join(METHODS)}")
    reasons: list[str] = []
    for method in methods:
        try:
            if method == "cuda_graph":
                samples, stop, cps, unroll = _graph(fn, settings, api, reset, flush, budget_s, extra)
            elif method == "kineto":
                samples, stop, cps, unroll = _kineto(fn, settings, api, reset, flush, budget_s, extra)
            else:
                samples, stop, cps, unroll = _spin_events(fn, settings, api, reset, flush, budget_s, extra, latency_s)
        except Exception as exc:  # noqa: BLE001 - a failed method is recorded and the next one tried
            reasons.append(_why(method, exc))
        else:
            return Timing(samples_s=tuple(samples), timer="kineto" if method == "kineto" else "cuda_event",
                          warmup_calls=warmup[0], warmup_s=warmup[1], calls_per_sample=cps, stop_reason=stop,
                          target_rel_ci=settings.target_rel_ci, quantity="device_time", method=method,
                          method_reason="; ".join(reasons) or None, unroll=unroll, l2_flush=flush is not None)
        try:
            api.synchronize()
        except Exception as exc:  # noqa: BLE001 - a broken context fails the next method, which is recorded
            reasons.append(_why("synchronize", exc))
    raise RuntimeError("no device-time method worked: " + "; ".join(reasons))


def time_cuda_call(fn: Call, settings: MeasureSettings, api: CudaApi, *, reset: Call | None = None,
                   flush: Call | None = None, methods: tuple[str, ...] = METHODS) -> TimedCall:
    """First call, warm-up, call latency, then device time (see module doc)."""
    sync = api.synchronize
    first = first_call_record(time_first_call(fn, sync=sync, reset=reset, clock_ns=api.clock_ns))
    n_warm, warm_s, _est = warm_up(fn, settings, sync=sync, reset=reset, clock_ns=api.clock_ns)
    half = settings.time_budget_s / 2
    latency = measure_call_latency(fn, settings, sync=sync, reset=reset, clock_ns=api.clock_ns, budget_s=half,
                                   warmup=(n_warm, warm_s))
    extra: dict[str, Any] = {}
    device = measure_device_time(fn, settings, api, reset=reset, flush=flush, latency_s=latency.median_s or 0.0,
                                 budget_s=half, methods=methods, warmup=(n_warm, warm_s), extra=extra)
    return TimedCall(device, latency, first, extra)
