"""Shape-axis points through the one measurement pipeline: CPU, and the simulated CUDA device."""

from __future__ import annotations

import dataclasses

import pytest
from measure_fake_cuda import FakeGpu, fake_cuda_device, simulate_device_work

from profiler.analysis.series import build_series
from profiler.core.records import MeasureSettings, PointSpec
from profiler.measure import point

FAST = MeasureSettings(warmup_s=0.01, min_warmup_calls=1, min_reps=3, max_reps=10, time_budget_s=0.05,
                       measure_energy=False, processes=1)
GQA_BWD = PointSpec(kernel="softmax", backend="sdpa", T=64, H=4, D=16, mode="bwd", kv_heads=1, value_dim=32, window=16)


def test_cpu_bwd_gqa_window_point_is_verified_counted_and_stored():
    rec = point.measure_point(GQA_BWD, FAST)
    assert rec.status == "ok" and rec.correctness.passed and rec.correctness.grad_max_rel_err is not None
    assert (rec.spec.kv_heads, rec.spec.value_dim, rec.spec.window) == (1, 32, 16)
    pairs = 16 * 17 // 2 + (64 - 16) * 16
    assert rec.flops == 2.5 * 4 * pairs * (2 * 16 + 2 * 32)
    assert rec.extra["flops_formula"].startswith("B * Hq * pairs") and "band mask" in rec.extra["window_impl"]
    again = type(rec).from_dict(rec.to_dict()) if hasattr(type(rec), "from_dict") else rec
    assert again.spec.id == GQA_BWD.id



@pytest.mark.parametrize("spec", [
    dataclasses.replace(GQA_BWD, device="cuda"),
    PointSpec(kernel="kda", backend="torch", device="cuda", T=24, H=4, D=16, mode="fwd", kv_heads=2, value_dim=32),
])
def test_fake_cuda_point_with_shape_axes_has_device_time(monkeypatch, spec):
    gpu = FakeGpu()
    dev = fake_cuda_device(gpu)
    op = gpu.op(30e-6, 5e-3, kernels=3)       # 5 ms of simulated device work: the budgets end in a few calls
    simulate_device_work(monkeypatch, lambda _work: op)
    rec = point.measure_point(spec, dataclasses.replace(FAST, measure_memory=False, warmup_s=0.0), device=dev)
    assert rec.status == "ok" and rec.correctness.passed
    assert rec.timing.quantity == "device_time" and rec.timing.median_s == pytest.approx(5e-3, rel=0.05)
    assert rec.spec.kv_heads == spec.kv_heads and rec.extra["kv_heads_impl"]
    (series,) = build_series([rec])
    assert series.key.kv_heads == spec.kv_heads and series.key.value_dim == 32
    assert f"H4:KV{spec.kv_heads} Dv32" in series.key.facet_label
