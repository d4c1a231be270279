"""Device time and call latency on a simulated CUDA device (host clock + device timeline, no GPU).

The fake is modelled on the H200 table (../evidence/h200-2026-11-30/timers.jsonl): a host-bound fla
chunk kernel (host 0.5 ms per call, device 0.02 ms) and a device-bound one (host 0.05 ms, device
10 ms). A timer that syncs and then times calls between events reports ~h for the first; serprof
must report d as device time and h + d as call latency for both.
"""

from __future__ import annotations

import itertools

import pytest
from measure_fake_cuda import CAPTURE_ERROR, FakeGpu

from profiler.core.records import (
    FirstCall,
    MeasureSettings,
    PointRecord,
    PointSpec,
    Timing,
    from_dict,
    to_dict,
)
from profiler.measure import compile_cache
from profiler.measure.cuda_time import (
    MAX_UNROLL,
    measure_call_latency,
    measure_device_time,
    time_cuda_call,
)
from profiler.measure.device import CpuDevice, CudaDevice
from profiler.measure.timer import PerfCounterTimer, measure_timing

HOST_BOUND = (0.5e-3, 0.02e-3)     # h, d (s)
DEVICE_BOUND = (0.05e-3, 10e-3)


def settings(**kw) -> MeasureSettings:
    base = dict(warmup_s=0.01, min_warmup_calls=2, min_reps=5, max_reps=200, target_rel_ci=0.02, time_budget_s=1.0)
    base.update(kw)
    return MeasureSettings(**base)


def med(t: Timing) -> float:
    return t.median_s


@pytest.mark.parametrize("h,d", [HOST_BOUND, DEVICE_BOUND], ids=["host_bound", "device_bound"])
def test_graph_device_time_and_call_latency(h, d):
    gpu = FakeGpu()
    res = time_cuda_call(gpu.op(h, d), settings(), gpu)
    dev, lat = res.timing, res.call_latency
    assert dev.quantity == "device_time" and dev.method == "cuda_graph" and dev.method_reason is None
    assert dev.timer == "cuda_event"
    assert med(dev) == pytest.approx(d, rel=0.01)
    assert lat.quantity == "call_latency" and lat.method == "sync_wall"
    assert med(lat) == pytest.approx(h + d, rel=0.01)
    assert dev.stop_reason == "ci_target" and lat.stop_reason == "ci_target"
    assert dev.l2_flush is False


def test_the_old_event_loop_measures_host_time_for_a_host_bound_op():
    """Why this module exists: events around back-to-back calls report ~h, 25x the device time."""
    from profiler.measure.timer import CudaEventTimer

    gpu = FakeGpu()
    h, d = HOST_BOUND
    t = measure_timing(gpu.op(h, d), settings(), CudaEventTimer(gpu.event), sync=gpu.synchronize,
                       clock_ns=gpu.clock_ns)
    assert med(t) > 10 * d


def test_short_calls_are_unrolled_in_the_graph():
    gpu = FakeGpu()
    h, d = HOST_BOUND
    res = time_cuda_call(gpu.op(h, d), settings(), gpu)
    assert res.timing.unroll == 3                      # ceil(50 us / 20 us)
    assert gpu.captures == [1, 3]                      # a one-call graph for the pilot, then the unrolled one
    assert res.timing.calls_per_sample % res.timing.unroll == 0
    assert res.timing.calls_per_sample * d >= 2e-4     # a sample spans at least the event resolution floor
    very_short = FakeGpu()
    r2 = time_cuda_call(very_short.op(h, 1e-7), settings(), very_short)
    assert r2.timing.unroll == MAX_UNROLL
    gpu3 = FakeGpu()
    r3 = time_cuda_call(gpu3.op(*DEVICE_BOUND), settings(), gpu3)
    assert r3.timing.unroll == 1 and r3.timing.calls_per_sample == 1


def test_replay_launch_gaps_would_show_without_unroll_and_spin():
    """A graph replay costs host time; device time must not include it even when it exceeds d."""
    gpu = FakeGpu(replay_host_s=30e-6)   # slower replay launch than the 20 us of device work
    h, d = HOST_BOUND
    res = time_cuda_call(gpu.op(h, d), settings(), gpu)
    # unroll 3 -> 60 us of device work per 30 us replay: the host stays ahead, the events see d
    assert med(res.timing) == pytest.approx(d, rel=0.01)


def test_launch_bound_and_host_overhead_on_the_record():
    spec = PointSpec("retnet", "fla", device="cuda", dtype="bfloat16")
    for (h, d), bound in ((HOST_BOUND, True), (DEVICE_BOUND, False)):
        gpu = FakeGpu()
        res = time_cuda_call(gpu.op(h, d), settings(), gpu)
        rec = PointRecord(spec=spec, status="ok", timing=res.timing, **res.record_fields())
        assert rec.launch_bound is bound
        assert rec.host_overhead_s == pytest.approx(h, rel=0.02)
        back = from_dict(PointRecord, to_dict(rec))      # survives storage
        assert back.launch_bound is bound and back.call_latency == rec.call_latency


def test_launch_bound_is_unknown_without_both_timings():
    spec = PointSpec("softmax", "sdpa")
    cpu = PointRecord(spec=spec, status="ok", timing=Timing(samples_s=(1e-3,), timer="perf_counter_ns",
                                                            quantity="call_latency"))
    assert cpu.launch_bound is None and cpu.host_overhead_s is None
    assert PointRecord(spec=spec, status="crashed").launch_bound is None


def test_capture_failure_falls_back_to_kineto_with_the_reason():
    gpu = FakeGpu()
    h, d = HOST_BOUND
    res = time_cuda_call(gpu.op(h, d, host_sync=True, kernels=2), settings(), gpu)
    t = res.timing
    assert t.method == "kineto" and t.timer == "kineto" and t.quantity == "device_time"
    assert t.method_reason.startswith("cuda_graph: RuntimeError: ") and CAPTURE_ERROR in t.method_reason
    assert med(t) == pytest.approx(d, rel=1e-6)       # sum of the kernels of one call
    spans = res.extra["device_span_s"]
    assert len(spans) == len(t.samples_s)
    # two kernels launched 0.25 ms apart by a host-bound call: the span shows the gap, the sum does not
    assert spans[0] == pytest.approx(h / 2 + d / 2, rel=1e-6)
    # the first kernel ran while the host prepared the second: latency = h + the last kernel
    assert med(res.call_latency) == pytest.approx(h + d / 2, rel=0.01)


def test_reason_names_the_root_cause_behind_a_cleanup_error():
    gpu = FakeGpu()
    inner = gpu.capture

    def capture(fn, calls):
        try:
            return inner(fn, calls)
        finally:
            raise RuntimeError("operation failed due to a previous error during capture")   # like capture_end

    gpu.capture = capture
    t = measure_device_time(gpu.op(*HOST_BOUND, host_sync=True), settings(), gpu, latency_s=1e-3)
    assert t.method == "kineto"
    assert t.method_reason == ("cuda_graph: RuntimeError: operation failed due to a previous error during capture "
                               f"(after RuntimeError: {CAPTURE_ERROR})")


def test_replay_failure_also_falls_back():
    gpu = FakeGpu(replay_fails=True)
    res = time_cuda_call(gpu.op(*DEVICE_BOUND), settings(), gpu)
    assert res.timing.method == "kineto" and "illegal memory access" in res.timing.method_reason


@pytest.mark.parametrize("h,d", [HOST_BOUND, DEVICE_BOUND], ids=["host_bound", "device_bound"])
def test_profiler_failure_falls_back_to_spin_events(h, d):
    gpu = FakeGpu(profiler_fails=True)
    res = time_cuda_call(gpu.op(h, d, host_sync=True), settings(), gpu)
    t = res.timing
    assert t.method == "spin_events" and t.timer == "cuda_event"
    reasons = t.method_reason.split("; ")
    assert [r.split(":")[0] for r in reasons] == ["cuda_graph", "kineto"]
    assert "CUPTI_ERROR_NOT_INITIALIZED" in reasons[1]
    # one call per sample: host time of a second call cannot enter; what does is the end event's own
    # enqueue after the op's internal sync (a documented limit of this last-resort method)
    assert t.calls_per_sample == 1 and d <= med(t) <= d + 1.01 * gpu.event_host_s
    assert min(gpu.spins) >= h                       # the spin covered the host's enqueue


def test_spin_events_hide_host_time():
    gpu = FakeGpu(profiler_fails=True)
    h, d = HOST_BOUND
    t = measure_device_time(gpu.op(h, d), settings(), gpu, latency_s=h + d, methods=("spin_events",))
    assert t.method == "spin_events" and t.method_reason is None
    assert med(t) == pytest.approx(d, rel=1e-6)


def test_spin_too_short_would_be_wrong():
    """The test above can fail: with latency_s underestimated the events include host time."""
    gpu = FakeGpu()
    h, d = HOST_BOUND
    t = measure_device_time(gpu.op(h, d), settings(), gpu, latency_s=0.0, methods=("spin_events",))
    assert med(t) > 2 * d


def test_every_method_failing_raises_with_all_reasons():
    gpu = FakeGpu(profiler_fails=True)

    def broken() -> None:
        if gpu.capturing is not None:
            raise RuntimeError(CAPTURE_ERROR)
        raise RuntimeError("device-side assert triggered")

    with pytest.raises(RuntimeError, match="cuda_graph.*kineto.*spin_events"):
        measure_device_time(broken, settings(), gpu, latency_s=1e-3)
    with pytest.raises(ValueError, match="unknown device-time methods"):
        measure_device_time(broken, settings(), gpu, latency_s=1e-3, methods=("nvtx",))


def test_cold_l2_flush_is_inside_the_graph_subtracted_and_costs_no_host_time():
    gpu = FakeGpu()
    h, d = HOST_BOUND
    d_flush = 1e-3
    flush = gpu.op(50e-6, d_flush)    # zeroing a 2x-L2 buffer: 1 ms of device work, 50 us to launch

    res = time_cuda_call(gpu.op(h, d), settings(l2="cold"), gpu, flush=flush)
    t = res.timing
    assert t.l2_flush is True and t.method == "cuda_graph" and t.unroll == 1
    assert flush.state["calls"] == 0            # never launched from the host: only captured as graph nodes
    assert gpu.captures[-2:] == [1, 1]          # [flush, call] and [flush] alone
    assert med(t) == pytest.approx(d, rel=1e-6)  # the flush's device time is subtracted
    assert res.extra["l2_flush_s"] == pytest.approx(d_flush, rel=1e-6)
    assert res.call_latency.l2_flush is False
    # host time per sample: the event pairs and replays only, no flush launch
    warm = time_cuda_call(gpu.op(h, d), settings(), gpu)
    assert med(warm.timing) == pytest.approx(d, rel=1e-6)


def test_reset_runs_before_capture_and_keeps_unroll_at_one():
    gpu = FakeGpu()
    resets = []
    res = time_cuda_call(gpu.op(*HOST_BOUND), settings(), gpu, reset=lambda: resets.append(1))
    assert res.timing.unroll == 1 and res.timing.method == "cuda_graph"
    assert len(resets) >= len(res.call_latency.samples_s) + res.call_latency.warmup_calls + 2


def test_first_call_is_timed_alone_and_not_in_warmup(monkeypatch):
    monkeypatch.setattr(compile_cache, "_STATE", compile_cache.CacheState("/c/triton", True, "test"))
    gpu = FakeGpu()
    h, d = DEVICE_BOUND
    fn = gpu.op(h, d, first_extra_s=2.0)
    res = time_cuda_call(fn, settings(), gpu)
    assert res.first_call == FirstCall(wall_s=pytest.approx(2.0 + h + d), cache_dir="/c/triton", cache_warm=True,
                                       note="test")
    assert res.timing.warmup_s < 1.0 and res.call_latency.warmup_calls >= 2
    assert max(res.call_latency.samples_s) < 1.0


def test_call_latency_uses_the_stopping_rule():
    gpu = FakeGpu()
    noisy = iter(itertools.cycle([0.5e-3, 1.5e-3]))

    def fn() -> None:
        gpu.host += next(noisy)

    t = measure_call_latency(fn, settings(time_budget_s=0.02), sync=gpu.synchronize, clock_ns=gpu.clock_ns)
    assert t.stop_reason == "time_budget" and len(t.samples_s) == 20


def test_cuda_device_time_call_uses_the_injected_api():
    gpu = FakeGpu()
    dev = CudaDevice(0, cuda=object(), event_factory=gpu.event, api=gpu)
    res = dev.time_call(gpu.op(*HOST_BOUND), settings())
    assert res.timing.method == "cuda_graph" and res.call_latency is not None


# --------------------------------------------------------------------------- CPU unchanged

class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_cpu_time_call_is_the_old_timer_labelled_call_latency():
    def run(with_device: bool):
        clock = Clock()
        durations = itertools.chain([0.3], itertools.cycle([0.010, 0.011, 0.0105]))

        def fn() -> None:
            clock.ns += int(next(durations) * 1e9)

        if with_device:
            return CpuDevice(clock_ns=clock).time_call(fn, settings())
        fn()   # the device times the first call on its own; the old path had it in warm-up
        return measure_timing(fn, settings(), PerfCounterTimer(clock), clock_ns=clock)

    res, old = run(True), run(False)
    assert res.call_latency is None and res.extra == {}
    assert res.timing.samples_s == old.samples_s and res.timing.calls_per_sample == old.calls_per_sample
    assert res.timing.timer == "perf_counter_ns" == old.timer
    assert res.timing.quantity == "call_latency" and res.timing.method == "perf_counter_ns"
    assert res.first_call.wall_s == pytest.approx(0.3)


def test_old_records_load_unchanged():
    old = {"spec": {"kernel": "softmax", "backend": "sdpa", "device": "cuda"}, "status": "ok",
           "timing": {"samples_s": [1e-3, 2e-3, 3e-3], "timer": "cuda_event", "calls_per_sample": 6,
                      "stop_reason": "ci_target"}, "schema_version": 1}
    rec = from_dict(PointRecord, old)
    assert rec.timing.quantity == "" and rec.timing.method == "" and rec.timing.unroll == 1
    assert rec.timing.median_s == 2e-3
    assert rec.call_latency is None and rec.first_call is None and rec.launch_bound is None


def test_new_record_round_trips():
    gpu = FakeGpu()
    res = time_cuda_call(gpu.op(*HOST_BOUND, host_sync=True), settings(), gpu)
    rec = PointRecord(spec=PointSpec("retnet", "fla", device="cuda"), status="ok", timing=res.timing,
                      **res.record_fields())
    back = from_dict(PointRecord, to_dict(rec))
    assert back == rec and len(back.extra["device_span_s"]) == len(rec.timing.samples_s)


def test_cpu_point_records_first_call_and_call_latency():
    from profiler.measure.point import measure_point

    s = MeasureSettings(warmup_s=0.01, min_reps=3, max_reps=10, time_budget_s=0.1, verify=False,
                        measure_memory=False, measure_energy=False)
    rec = measure_point(PointSpec("softmax", "sdpa", T=64), s)
    assert rec.status == "ok" and rec.timing.quantity == "call_latency" and rec.timing.method == "perf_counter_ns"
    assert rec.call_latency is None and rec.launch_bound is None
    assert rec.first_call is not None and rec.first_call.wall_s > 0
