"""Latency of one call: warm-up by time budget, then repetitions until the median is known well enough.

What is measured
    The time of a call ``fn()`` (one kernel forward, or forward + backward), in seconds per call,
    as a list of raw samples. On CPU each sample is ``time.perf_counter_ns`` around
    ``calls_per_sample`` back-to-back calls, divided by that number: the call latency (host time is
    the work), stored with ``quantity="call_latency"``, ``method="perf_counter_ns"``.
    ``CudaEventTimer`` (one event pair around k calls) is kept for single-call timing such as the
    utterance replay; a CUDA *point* is timed by ``profiler.measure.cuda_time`` instead (device time
    by CUDA graph replay and call latency sync to sync), because on a host-bound GPU kernel an event
    pair around back-to-back calls measures host time.

Per point (``Device.time_call``; CPU: ``time_host_call``)::

    first_call_s = time_first_call(fn)     # sync; t0; fn(); sync; t1 -- compile/autotune/lazy init
    measure_timing(fn, ...)                # below; CUDA: cuda_time.time_cuda_call

Algorithm (``measure_timing``)::

    # warm-up: first calls, lazy initialisation and Triton autotuning are never timed
    t0 = clock(); n = 0
    while n < min_warmup_calls or clock() - t0 < warmup_s:
        reset(); fn(); sync(); n += 1              # per-call wall time kept: est = min(last calls)
    k = 1 if reset is needed else max(1, ceil(timer.min_sample_s / est))   # calls per sample
    samples = []; t1 = clock()
    loop:
        reset(); flush()                           # outside the timed region
        samples.append(timer.sample(fn, k))        # seconds per call
        if len(samples) >= max_reps:                        stop "max_reps"
        if len(samples) >= min_reps:
            if n >= 6 and rel_halfwidth(CI95(median(samples))) <= target: stop "ci_target"
            if clock() - t1 >= time_budget_s:                 stop "time_budget"

    The CI is the distribution-free order-statistic interval of ``profiler.core.stats.median_ci``; it
    is re-evaluated on every sample up to 30 samples, then every ~5% more samples (it costs
    ~0.1 ms, which would otherwise dominate very short calls).

Trade-offs
    * Batching ``k`` calls per CPU sample makes the timer's own overhead (~100 ns a read) negligible
      for calls shorter than ``min_sample_s`` (1 ms), at the price of averaging over k calls: the
      stored samples of such points are means of k calls and show less spread than single calls.
      Batching is disabled when a ``reset`` must run between calls (fwd+bwd gradient reset).
    * The stopping rule adapts the number of repetitions to the noise: quiet points stop after
      ``min_reps``; noisy ones run until ``time_budget_s``. ``min_reps`` wins over the budget.
    * The budget counts wall time of the repetition loop (reset, flush and checks included).

What is not captured
    Cold-cache behaviour (calls run back to back, warm caches; on CUDA ``flush`` can empty L2
    between repetitions) and first-call costs (timed once on their own, ``PointRecord.first_call``,
    never in the samples). On a shared machine samples include interference from other
    processes; the raw samples are kept so that it can be seen.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any, Callable, NamedTuple

from profiler.core.lazy import lazy_import
from profiler.core.records import FirstCall, MeasureSettings, Timing
from profiler.core.stats import rel_ci_halfwidth
from profiler.measure.compile_cache import cache_state

torch = lazy_import("torch")

Call = Callable[[], Any]
ClockNs = Callable[[], int]

STOP_CI = "ci_target"
#: Fewest samples for which a distribution-free 95% CI of the median exists (with fewer,
#: ``median_ci`` returns the sample range, which says nothing about coverage: three samples
#: quantized by the scheduler can agree to 0.01% and still be 3x off).
MIN_CI_SAMPLES = 6
STOP_BUDGET = "time_budget"
STOP_MAX = "max_reps"
STOP_INTERPRETED = "interpreted"


class SampleTimer(ABC):
    """Times ``calls`` back-to-back calls of ``fn`` and returns seconds per call."""

    #: stored as ``Timing.timer``
    name: str = ""
    #: a sample shorter than this is dominated by the timer's own resolution/overhead (s)
    min_sample_s: float = 1e-3

    @abstractmethod
    def sample(self, fn: Call, calls: int = 1) -> float:
        """Seconds per call over one sample of ``calls`` calls."""


class PerfCounterTimer(SampleTimer):
    """CPU: ``perf_counter_ns`` around the calls (the clock is a seam for tests)."""

    name = "perf_counter_ns"
    min_sample_s = 1e-3

    def __init__(self, clock_ns: ClockNs = time.perf_counter_ns) -> None:
        self._clock_ns = clock_ns

    def sample(self, fn: Call, calls: int = 1) -> float:
        t0 = self._clock_ns()
        for _ in range(calls):
            fn()
        t1 = self._clock_ns()
        return (t1 - t0) / 1e9 / calls


class CudaEventTimer(SampleTimer):
    """CUDA: one event pair per sample; ``elapsed_time`` is in milliseconds.

    ``event_factory`` returns an object with ``record()``, ``synchronize()`` and
    ``elapsed_time(other) -> ms`` (``torch.cuda.Event(enable_timing=True)`` by default; a fake in
    tests).
    """

    name = "cuda_event"
    min_sample_s = 2e-4   # event resolution is ~0.5 us

    def __init__(self, event_factory: Callable[[], Any] | None = None) -> None:
        if event_factory is None:
            def event_factory() -> Any:
                return torch.cuda.Event(enable_timing=True)

        self._event_factory = event_factory

    def sample(self, fn: Call, calls: int = 1) -> float:
        start, end = self._event_factory(), self._event_factory()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls


def _noop() -> None:
    return None


def warm_up(fn: Call, settings: MeasureSettings, *, sync: Call = _noop, reset: Call | None = None,
            clock_ns: ClockNs = time.perf_counter_ns) -> tuple[int, float, float]:
    """Call ``fn`` for ``settings.warmup_s`` (and at least ``min_warmup_calls`` times).

    Returns ``(calls, wall_s, estimate_s)``: the estimate of one call is the shortest of the last
    (up to) three warm-up calls, wall time with device synchronisation.
    """
    t0 = clock_ns()
    durations: list[int] = []
    while len(durations) < settings.min_warmup_calls or clock_ns() - t0 < settings.warmup_s * 1e9:
        if reset is not None:
            reset()
        c0 = clock_ns()
        fn()
        sync()
        durations.append(clock_ns() - c0)
    wall_s = (clock_ns() - t0) / 1e9
    est = min(durations[-3:]) / 1e9 if durations else 0.0
    return len(durations), wall_s, est


def calls_per_sample(estimate_s: float, timer: SampleTimer, *, batching: bool = True, max_calls: int = 100_000) -> int:
    """How many calls one sample needs to be at least ``timer.min_sample_s`` long."""
    if not batching or estimate_s >= timer.min_sample_s:
        return 1
    if estimate_s <= 0:
        return max_calls
    return int(min(max_calls, math.ceil(timer.min_sample_s / estimate_s)))


def _check_due(n: int, last_checked: int) -> bool:
    return n <= 30 or n - last_checked >= max(1, n // 20)


def sample_until(sample: Callable[[], float], settings: MeasureSettings, *, before: Call | None = None,
                 clock_ns: ClockNs = time.perf_counter_ns,
                 budget_s: float | None = None) -> tuple[list[float], str]:
    """The stopping rule: ``before(); samples.append(sample())`` until the CI target, the budget or max_reps.

    ``before`` runs outside the sample (reset, flush). ``budget_s`` overrides
    ``settings.time_budget_s``. Returns ``(samples, stop_reason)``.
    """
    if settings.min_reps < 1 or settings.max_reps < settings.min_reps:
        raise ValueError(f"need 1 <= min_reps <= max_reps (got {settings.min_reps}, {settings.max_reps})")
    samples: list[float] = []
    budget_ns = (settings.time_budget_s if budget_s is None else budget_s) * 1e9
    last_checked = 0
    t1 = clock_ns()
    while True:
        if before is not None:
            before()
        samples.append(sample())
        n = len(samples)
        if n >= settings.max_reps:
            return samples, STOP_MAX
        if n < settings.min_reps:
            continue
        if n >= MIN_CI_SAMPLES and _check_due(n, last_checked):
            last_checked = n
            if rel_ci_halfwidth(samples) <= settings.target_rel_ci:
                return samples, STOP_CI
        if clock_ns() - t1 >= budget_ns:
            return samples, STOP_BUDGET


def measure_timing(fn: Call, settings: MeasureSettings, timer: SampleTimer, *, sync: Call = _noop,
                   reset: Call | None = None, flush: Call | None = None,
                   clock_ns: ClockNs = time.perf_counter_ns, batching: bool = True,
                   cpu_clock_ns: ClockNs | None = None, threads: int | None = None,
                   control: Call | None = None) -> Timing:
    """Warm up, then sample until the CI target, the time budget or ``max_reps`` (see module doc).

    With ``cpu_clock_ns`` (the process's CPU time, all threads) the sampling phase's CPU seconds and
    wall seconds are stored (``Timing.cpu_s``, ``cpu_wall_s``, ``threads``): their ratio per thread,
    ``Timing.cpu_share``, falls well below 1 when other processes competed for the cores.

    With ``control`` (a fixed reference computation, ``cpu_control``) the second of two control calls
    is timed right after every sample (``Timing.control_samples_s``, seconds): a machine that runs everything 20%
    slower for a few seconds (a shared host's other tenants, frequency) slows both, so the gate can
    compare ``sample / control`` and cancel that drift.
    """
    if settings.min_reps < 1 or settings.max_reps < settings.min_reps:
        raise ValueError(f"need 1 <= min_reps <= max_reps (got {settings.min_reps}, {settings.max_reps})")
    warm_calls, warm_s, est = warm_up(fn, settings, sync=sync, reset=reset, clock_ns=clock_ns)
    k = calls_per_sample(est, timer, batching=batching and reset is None)

    def before() -> None:
        if reset is not None:
            reset()
        if flush is not None:
            flush()

    controls: list[float] = []

    def one_sample() -> float:
        x = timer.sample(fn, k)
        if control is not None:
            control()           # warms the caches the sample's calls left cold: the timed call measures speed
            t = clock_ns()
            control()
            controls.append((clock_ns() - t) / 1e9)
        return x

    if control is not None:
        control()   # its first call (allocation, thread pool) is never a control sample
    c0, w0 = (cpu_clock_ns(), clock_ns()) if cpu_clock_ns is not None else (0, 0)
    samples, stop = sample_until(one_sample, settings, before=before, clock_ns=clock_ns)
    cpu: dict[str, Any] = {}
    if cpu_clock_ns is not None:
        cpu = {"cpu_s": (cpu_clock_ns() - c0) / 1e9, "cpu_wall_s": (clock_ns() - w0) / 1e9, "threads": threads}
    if control is not None:
        cpu["control_samples_s"] = tuple(controls)
    return Timing(samples_s=tuple(samples), timer=timer.name, warmup_s=warm_s, warmup_calls=warm_calls,
                  calls_per_sample=k, stop_reason=stop, target_rel_ci=settings.target_rel_ci, **cpu)


def interpreted_timing(seconds: float) -> Timing:
    """The one call of an interpreted point (Triton's interpreter on CPU): recorded, never performance."""
    return Timing(samples_s=(float(seconds),), timer="interpreted", stop_reason=STOP_INTERPRETED,
                  quantity="call_latency", method="interpreted")


# --------------------------------------------------------------------------- one point's timings

class TimedCall(NamedTuple):
    """What ``Device.time_call`` returns: the point's timings, from one measurement session.

    ``timing`` is the primary metric (CUDA: device time; CPU: call latency), ``call_latency`` the
    sync-to-sync latency on CUDA (None on CPU, where ``timing`` is that), ``first_call`` the first
    call timed on its own, ``extra`` method-specific values for ``PointRecord.extra`` (may be empty).
    """

    timing: Timing
    call_latency: Timing | None
    first_call: FirstCall | None
    extra: dict[str, Any]

    def record_fields(self, extra: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``PointRecord`` besides ``timing`` (``extra`` only when non-empty)."""
        out: dict[str, Any] = {"call_latency": self.call_latency, "first_call": self.first_call}
        if extra and self.extra:
            out["extra"] = dict(self.extra)
        return out


def time_first_call(fn: Call, *, sync: Call = _noop, reset: Call | None = None,
                    clock_ns: ClockNs = time.perf_counter_ns) -> float:
    """Wall seconds of one call, synchronised before and after (compile, autotune, lazy init included)."""
    if reset is not None:
        reset()
    sync()
    t0 = clock_ns()
    fn()
    sync()
    return (clock_ns() - t0) / 1e9


def first_call_record(wall_s: float) -> FirstCall:
    """``FirstCall`` with the Triton cache state of this worker (``profiler.measure.compile_cache``)."""
    state = cache_state()
    return FirstCall(wall_s=wall_s, cache_dir=state.cache_dir, cache_warm=state.warm, note=state.note)


def time_host_call(fn: Call, settings: MeasureSettings, *, reset: Call | None = None,
                   flush: Call | None = None, clock_ns: ClockNs = time.perf_counter_ns,
                   cpu_clock_ns: ClockNs | None = time.process_time_ns, threads: int | None = None,
                   control: Call | None = None) -> TimedCall:
    """CPU: the first call on its own, then ``measure_timing`` with ``PerfCounterTimer`` as before.

    The samples are the call latency (host time is the work on CPU); the record says so with
    ``quantity="call_latency"`` and ``method="perf_counter_ns"``.
    """
    first = first_call_record(time_first_call(fn, reset=reset, clock_ns=clock_ns))
    t = measure_timing(fn, settings, PerfCounterTimer(clock_ns), reset=reset, flush=flush, clock_ns=clock_ns,
                       cpu_clock_ns=cpu_clock_ns, threads=threads, control=control)
    t = replace(t, quantity="call_latency", method="perf_counter_ns", l2_flush=flush is not None)
    return TimedCall(t, None, first, {})


def cpu_control(n: int = 128) -> Call:
    """The CPU drift control: one ``n x n`` fp32 matmul on the worker's threads (about 30-60 us at
    n = 128 on a 2-core machine), timed after every sample so the gate can divide the machine's
    momentary speed out of the kernel's samples."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    out = torch.empty(n, n)

    def control() -> None:
        torch.mm(a, b, out=out)

    return control
