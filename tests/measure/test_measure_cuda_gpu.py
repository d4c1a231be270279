"""On a real GPU: serprof's graph device time against triton's ``do_bench_cudagraph`` (skipped without CUDA).

SDPA (bf16, B=1, H=4, D=64, T=4096) and, when fla imports, RetNet's fla chunk kernel (host-bound on
an H200: ~0.035 ms of device time under ~0.3 ms of call latency, ../evidence/h200-2026-11-30/).
"""

from __future__ import annotations

import pytest

from profiler.core.records import MeasureSettings

pytestmark = pytest.mark.gpu

SETTINGS = MeasureSettings(warmup_s=0.2, min_reps=10, max_reps=500, target_rel_ci=0.01, time_budget_s=2.0)


def _median_cudagraph_s(fn) -> float:
    from triton.testing import do_bench_cudagraph

    return float(do_bench_cudagraph(fn, rep=100, return_mode="median")) / 1e3


def _compare(fn):
    from profiler.measure.device import CudaDevice

    timed = CudaDevice(0).time_call(fn, SETTINGS)
    ref = _median_cudagraph_s(fn)
    return timed, ref


def test_sdpa_graph_device_time_matches_do_bench_cudagraph():
    import torch
    import torch.nn.functional as F

    pytest.importorskip("triton")
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, 4, 4096, 64, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))

    def fn() -> None:
        with torch.no_grad():
            F.scaled_dot_product_attention(q, k, v)

    timed, ref = _compare(fn)
    t = timed.timing
    assert t.quantity == "device_time" and t.method == "cuda_graph", t.method_reason
    assert t.median_s == pytest.approx(ref, rel=0.10)
    assert timed.call_latency.median_s >= 0.9 * t.median_s
    assert timed.first_call is not None and timed.first_call.wall_s > 0


def test_fla_retnet_graph_device_time_matches_do_bench_cudagraph():
    pytest.importorskip("triton")
    pytest.importorskip("fla")
    import torch

    from profiler.runner.bench import _op_call

    _, call = _op_call("retnet:fla:4096", "cuda", "bfloat16")

    def fn() -> None:
        with torch.no_grad():
            call()

    timed, ref = _compare(fn)
    t = timed.timing
    assert t.quantity == "device_time" and t.method == "cuda_graph", t.method_reason
    assert t.median_s == pytest.approx(ref, rel=0.10)
    # host-bound on an H200: the call latency is several times the device time
    assert timed.call_latency.median_s > 2 * t.median_s
