"""Timer stopping rules, warm-up and batching, driven by a fake clock and fake CUDA events."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from profiler.core.records import MeasureSettings
from profiler.core.stats import rel_ci_halfwidth
from profiler.measure.timer import (
    CudaEventTimer,
    PerfCounterTimer,
    calls_per_sample,
    measure_timing,
    warm_up,
)


class FakeClock:
    """Integer nanoseconds; only the fake workload advances it."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(round(seconds * 1e9))


class FakeEvent:
    """Models torch.cuda.Event(enable_timing=True): record() stamps the device clock; elapsed in ms."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.t_ns: int | None = None
        self.synced = False

    def record(self) -> None:
        self.t_ns = self.clock.ns

    def synchronize(self) -> None:
        self.synced = True

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert self.t_ns is not None and end.t_ns is not None and end.synced
        return (end.t_ns - self.t_ns) / 1e6


def workload(clock: FakeClock, durations):
    """A call that takes the next duration (seconds) from ``durations``."""
    it = iter(durations)
    calls = []

    def fn() -> None:
        d = next(it)
        calls.append(d)
        clock.advance(d)

    fn.calls = calls
    return fn


def settings(**kw) -> MeasureSettings:
    base = dict(warmup_s=0.05, min_warmup_calls=2, min_reps=5, max_reps=1000, target_rel_ci=0.02, time_budget_s=10.0)
    base.update(kw)
    return MeasureSettings(**base)


def cuda_timer(clock: FakeClock) -> CudaEventTimer:
    return CudaEventTimer(lambda: FakeEvent(clock))


def test_ci_target_reached_on_quiet_workload_and_warmup_excluded():
    clock = FakeClock()
    # first call: 1 s of "autotuning"; afterwards a steady 10 ms
    fn = workload(clock, itertools.chain([1.0], itertools.repeat(0.010)))
    t = measure_timing(fn, settings(), cuda_timer(clock), clock_ns=clock)
    assert t.stop_reason == "ci_target"
    assert t.timer == "cuda_event"
    assert t.warmup_calls == 2                  # 1 s already exceeds warmup_s, but min_warmup_calls=2
    assert t.warmup_s == pytest.approx(1.010)
    assert len(t.samples_s) == 6                # zero spread: tight as soon as a 95% CI exists (n = 6)
    assert all(s == pytest.approx(0.010) for s in t.samples_s)
    assert t.calls_per_sample == 1
    assert len(fn.calls) == 2 + 6


def test_three_agreeing_samples_are_not_a_confidence_interval():
    """Scheduler-quantized samples (3 x 216 ms, then the true 6 ms) must not stop at min_reps=3."""
    clock = FakeClock()
    fn = workload(clock, itertools.chain([0.216] * 5, itertools.repeat(0.006)))
    t = measure_timing(fn, settings(min_reps=3, min_warmup_calls=2, warmup_s=0.0), cuda_timer(clock),
                       clock_ns=clock)
    assert t.stop_reason == "ci_target"
    assert len(t.samples_s) >= 6
    assert float(np.median(t.samples_s)) == pytest.approx(0.006)


def test_warmup_runs_for_its_time_budget():
    clock = FakeClock()
    fn = workload(clock, itertools.repeat(0.010))
    calls, wall_s, est = warm_up(fn, settings(warmup_s=0.1, min_warmup_calls=1), clock_ns=clock)
    assert calls == 10 and wall_s == pytest.approx(0.1) and est == pytest.approx(0.010)


def test_time_budget_stops_a_noisy_point():
    clock = FakeClock()
    # alternating 5 / 15 ms: the median's CI spans both values and never gets within 2%
    fn = workload(clock, itertools.cycle([0.005, 0.015]))
    t = measure_timing(fn, settings(time_budget_s=0.2, warmup_s=0.0), cuda_timer(clock), clock_ns=clock)
    assert t.stop_reason == "time_budget"
    assert len(t.samples_s) == 20               # 20 samples x 10 ms mean = the 0.2 s budget
    assert sorted(set(round(s, 6) for s in t.samples_s)) == [0.005, 0.015]


def test_max_reps_caps_the_samples():
    clock = FakeClock()
    fn = workload(clock, itertools.cycle([0.005, 0.015]))
    t = measure_timing(fn, settings(max_reps=7, time_budget_s=1e6), cuda_timer(clock), clock_ns=clock)
    assert t.stop_reason == "max_reps" and len(t.samples_s) == 7


def test_min_reps_wins_over_the_budget():
    clock = FakeClock()
    noisy = workload(clock, itertools.cycle([1.0, 3.0]))
    t = measure_timing(noisy, settings(time_budget_s=0.5, min_reps=5), cuda_timer(clock), clock_ns=clock)
    assert len(t.samples_s) == 5 and t.stop_reason == "time_budget"


def test_noisy_but_converging_workload_stops_at_the_target():
    rng = np.random.default_rng(1)
    clock = FakeClock()
    fn = workload(clock, (0.01 * x for x in rng.lognormal(0.0, 0.05, size=10_000)))
    t = measure_timing(fn, settings(), cuda_timer(clock), clock_ns=clock)
    assert t.stop_reason == "ci_target"
    assert len(t.samples_s) > 5
    assert rel_ci_halfwidth(t.samples_s) <= 0.02
    assert rel_ci_halfwidth(t.samples_s[:-1]) > 0.02 or len(t.samples_s) > 30  # did not run on needlessly


def test_flush_and_reset_run_outside_the_timed_region():
    clock = FakeClock()
    fn = workload(clock, itertools.repeat(0.010))
    counts = {"flush": 0, "reset": 0}

    def flush() -> None:
        counts["flush"] += 1
        clock.advance(0.5)          # an expensive L2 flush must not show in the samples

    def reset() -> None:
        counts["reset"] += 1
        clock.advance(0.25)

    t = measure_timing(fn, settings(time_budget_s=1e6), cuda_timer(clock), clock_ns=clock, flush=flush, reset=reset)
    assert all(s == pytest.approx(0.010) for s in t.samples_s)
    assert counts["flush"] == len(t.samples_s)
    assert counts["reset"] == len(t.samples_s) + t.warmup_calls


def test_cpu_timer_batches_short_calls():
    clock = FakeClock()
    fn = workload(clock, itertools.repeat(10e-6))     # 10 us: 100 calls make the 1 ms minimum sample
    t = measure_timing(fn, settings(), PerfCounterTimer(clock), clock_ns=clock)
    assert t.timer == "perf_counter_ns"
    assert t.calls_per_sample == 100
    assert all(s == pytest.approx(10e-6) for s in t.samples_s)


def test_no_batching_when_a_reset_is_needed():
    clock = FakeClock()
    fn = workload(clock, itertools.repeat(10e-6))
    t = measure_timing(fn, settings(), PerfCounterTimer(clock), clock_ns=clock, reset=lambda: None)
    assert t.calls_per_sample == 1


def test_calls_per_sample_rule():
    timer = PerfCounterTimer()
    assert calls_per_sample(2e-3, timer) == 1
    assert calls_per_sample(3e-4, timer) == 4
    assert calls_per_sample(3e-4, timer, batching=False) == 1


def test_bad_rep_settings_are_rejected():
    with pytest.raises(ValueError):
        measure_timing(lambda: None, settings(min_reps=10, max_reps=5), PerfCounterTimer())
