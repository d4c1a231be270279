"""The acceptance sweep ``--varlen lognormal --tokens 16k --kernels softmax,retnet,kda,gla`` planned for CUDA and
measured on the simulated CUDA device (tensors on the CPU: no GPU here): packed and padded points carry
device time, call latency, the per-sequence check and tokens/s."""

from __future__ import annotations

import pytest
from measure_fake_cuda import FakeGpu, fake_cuda_device, simulate_device_work

from profiler.analysis.varlen import analyze_varlen
from profiler.core.records import MeasureSettings
from profiler.measure import point
from profiler.planning import points as planning_points
from profiler.planning.points import make_plan
from profiler.planning.scenario import build_spec


def test_acceptance_sweep_on_the_fake_cuda_device(monkeypatch):
    dist, tokens = "lognormal", 16384
    monkeypatch.setattr(planning_points, "cuda_available", lambda: True)
    spec = build_spec(None, {"kernels": "softmax,retnet,kda,gla", "varlen": dist, "tokens": str(tokens),
                             "device": "cuda", "heads": 1, "head_dim": 16, "memory_budget": "64GiB"})
    plan = make_plan(spec, cuda_available_flag=True)
    packed = {(p.spec.kernel, p.spec.backend) for p in plan.points if p.spec.option("layout") is None}
    assert {("softmax", "fla"), ("softmax", "sdpa-efficient"), ("retnet", "fla"), ("kda", "fla"),
            ("kda", "torch"), ("gla", "fla"), ("gla", "torch")} <= packed
    # measure the softmax/sdpa pair (the fla ones need Triton on a GPU: see test_fla_varlen_interpret.py)
    pair = [p.spec for p in plan.points if (p.spec.kernel, p.spec.backend) == ("softmax", "sdpa")]
    assert len(pair) == 2
    gpu = FakeGpu()
    dev = fake_cuda_device(gpu)
    ops = {"packed": gpu.op(30e-6, 200e-6, kernels=8), "padded": gpu.op(10e-6, 500e-6)}
    # device work of the simulated GPU by layout; the inputs stay as built
    simulate_device_work(monkeypatch, lambda work: ops[work.extra["varlen"]["layout"]], keep_host_call=False)
    settings = MeasureSettings(warmup_s=0.0, min_warmup_calls=1, min_reps=3, max_reps=10, time_budget_s=0.05,
                               measure_energy=False, measure_memory=False, processes=1, verify_max_T=128,
                               varlen=dist, tokens=tokens)
    records = [point.measure_point(p, settings, device=dev) for p in pair]
    for r in records:
        assert r.status == "ok" and r.correctness.passed and r.correctness.checked_T == 128
        assert len(r.correctness.per_sequence_rel_err) == r.extra["varlen"]["count"]
        assert r.timing.quantity == "device_time" and r.call_latency is not None
    (row,) = analyze_varlen(records).rows
    assert row.packed_tokens_per_s == pytest.approx(tokens / 200e-6, rel=0.05)
    assert row.padded_tokens_per_s == pytest.approx(tokens / 500e-6, rel=0.05)
    assert row.speedup == pytest.approx(2.5, rel=0.05)
