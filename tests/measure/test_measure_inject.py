"""The test-only slowdown knob behind gate-eval's detection runs, and the CPU share of a timing."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from profiler.core.records import MeasureSettings, Timing
from profiler.measure import inject
from profiler.measure.timer import time_host_call


def test_parse_and_match():
    assert inject.parse("0.15") == [("", 0.15)]
    assert inject.parse("retnet/torch=0.2; softmax=0.1") == [("retnet/torch", 0.2), ("softmax", 0.1)]
    env = {inject.ENV_VAR: "retnet/torch=0.2;softmax=0.1"}
    assert inject.fraction_for("kernel/retnet/torch/cpu", env) == 0.2
    assert inject.fraction_for("kernel/lightnet/torch/cpu", env) == 0.0
    assert inject.fraction_for("anything", {}) == 0.0
    for bad in ("x=abc", "-0.1", "nan"):
        with pytest.raises(ValueError, match=inject.ENV_VAR):
            inject.parse(bad)


def test_slowed_call_takes_exactly_one_plus_fraction_of_its_own_time():
    now = [0]

    def clock():
        now[0] += 1          # every clock read advances 1 ns; the call itself takes 1000 ns
        return now[0]

    def call():
        now[0] += 1000

    slow = inject.slowed(call, 0.5, clock_ns=clock)
    t0 = now[0]
    slow()
    assert now[0] - t0 == pytest.approx(1500, abs=4)


@dataclass
class _Work:
    call: object
    extra: dict = field(default_factory=dict)


def test_apply_marks_the_workload():
    w = _Work(lambda: None)
    assert inject.apply(w, "kernel/retnet", {}) is w
    slowed = inject.apply(w, "kernel/retnet", {inject.ENV_VAR: "0.15"})
    assert slowed.extra == {"injected_slowdown": 0.15} and slowed.call is not w.call


def test_host_timing_records_the_cpu_share_of_the_sampling_phase():
    settings = MeasureSettings(warmup_s=0.0, min_warmup_calls=1, min_reps=5, max_reps=5, time_budget_s=10)

    def busy():
        t = time.perf_counter()
        while time.perf_counter() - t < 2e-3:
            pass

    def sleepy():
        time.sleep(2e-3)

    t_busy = time_host_call(busy, settings, threads=1).timing
    t_sleep = time_host_call(sleepy, settings, threads=1).timing
    assert t_busy.cpu_share is not None and t_busy.cpu_s > 0 and t_busy.threads == 1
    assert t_sleep.cpu_share < t_busy.cpu_share          # a process that does not run shows it
    assert Timing((1.0,), "x").cpu_share is None


def test_concat_keeps_process_groups_and_adds_cpu_time():
    a = Timing((1.0, 2.0), "t", warmup_s=0.5, cpu_s=1.0, cpu_wall_s=2.0, threads=2)
    b = Timing((3.0,), "t", warmup_s=0.25, cpu_s=0.5, cpu_wall_s=1.0, threads=2)
    c = Timing.concat([a, b])
    assert c.samples_s == (1.0, 2.0, 3.0) and c.process_counts == (2, 1) and c.processes == 2
    assert c.process_groups() == ((1.0, 2.0), (3.0,))
    assert c.warmup_s == 0.75 and c.cpu_s == 1.5 and c.cpu_share == pytest.approx(1.5 / (3.0 * 2))
    assert Timing.concat([a]) is a
    # counts that do not add up fall back to one group
    assert Timing((1.0, 2.0), "t", process_counts=(5,)).process_groups() == ((1.0, 2.0),)
