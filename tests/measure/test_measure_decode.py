"""Decode points through the one measurement pipeline: on CPU, and on the simulated CUDA device, where
they carry device time and call latency like prefill points."""

from __future__ import annotations

import dataclasses

import pytest
from measure_fake_cuda import FakeGpu, fake_cuda_device, simulate_device_work

from profiler.core.records import MeasureSettings, PointSpec
from profiler.measure import point

FAST = MeasureSettings(warmup_s=0.01, min_warmup_calls=1, min_reps=3, max_reps=20, time_budget_s=0.05,
                       measure_energy=False, processes=1, phase="decode", decode_steps=2)
SPEC = PointSpec(kernel="retnet", backend="torch", B=1, T=64, H=2, D=16, phase="decode", options=(("steps", "2"),))


def test_cpu_decode_point_is_verified_timed_and_carries_its_state_bytes():
    rec = point.measure_point(SPEC, FAST)
    assert rec.status == "ok" and rec.correctness.passed and rec.correctness.checked_T == 64
    assert rec.timing.n >= 3 and rec.extra["carried_bytes"] == 2 * 16 * 16 * 4 == rec.extra["carried_bytes_analytic"]
    assert rec.extra["tokens_per_call"] == 2 and rec.flops == 2 * 6.0 * 2 * 16 * 16



def test_fake_cuda_decode_point_has_device_time_and_call_latency(monkeypatch):
    gpu = FakeGpu()
    dev = fake_cuda_device(gpu)
    op = gpu.op(40e-6, 8e-6, kernels=4)       # a decode step: host-bound launches, little device work
    simulate_device_work(monkeypatch, lambda _work: op)
    rec = point.measure_point(SPEC, dataclasses.replace(FAST, measure_memory=False), device=dev)
    assert rec.status == "ok" and rec.correctness.passed
    assert rec.timing.quantity == "device_time" and rec.timing.method == "cuda_graph"
    assert rec.timing.median_s == pytest.approx(8e-6, rel=0.05)
    assert rec.call_latency is not None and rec.call_latency.median_s >= 40e-6
    assert rec.launch_bound is True and rec.extra["carried_bytes"] == 2048


LAYER = PointSpec(kernel="kda", backend="torch", level="layer", B=1, T=48, H=2, D=32, phase="streaming",
                  options=(("chunk", "2"),))


def test_cpu_layer_streaming_point_is_verified_timed_and_carries_its_state():
    """A whole SER layer streamed (chunks of 2 after 48 positions) through the same pipeline."""
    settings = dataclasses.replace(FAST, phase="streaming", decode_steps=1, chunk_size=2)
    rec = point.measure_point(LAYER, settings)
    assert rec.status == "ok" and rec.correctness.passed and "streaming of 3 x 2" in rec.correctness.reference
    assert rec.timing.n >= 3 and rec.extra["tokens_per_call"] == 2 and rec.extra["carried_kind"] == "state"
    assert rec.extra["carried_bytes"] == rec.extra["carried_bytes_analytic"] > 0 and rec.flops > 0


@pytest.mark.long   # 10-25 s on 2 cores: `make test-long` (CI runs it after `make test`)
def test_fake_cuda_layer_streaming_point_has_device_time_and_call_latency(monkeypatch):
    gpu = FakeGpu()
    dev = fake_cuda_device(gpu)
    op = gpu.op(60e-6, 12e-6, kernels=9)      # a layer chunk: projections, step, norm (host-bound)
    simulate_device_work(monkeypatch, lambda _work: op)
    settings = dataclasses.replace(FAST, phase="streaming", decode_steps=1, chunk_size=2, measure_memory=False)
    rec = point.measure_point(LAYER, settings, device=dev)
    assert rec.status == "ok" and rec.correctness.passed
    assert rec.timing.quantity == "device_time" and rec.timing.method == "cuda_graph"
    assert rec.timing.median_s == pytest.approx(12e-6, rel=0.05)
    assert rec.call_latency is not None and rec.call_latency.median_s >= 60e-6 and rec.launch_bound is True
