"""On a real GPU: a sweep through the real workers records what ARCHITECTURE.md promises (skipped without CUDA).

Every softmax backend torch offers here and fla's RetNet, prefill and decode, plus one varlen point:
correct before timing, device time from CUDA graphs or events with the call latency beside it, the
allocator's peak above the inputs, NVML energy with a gross figure, and skips that say why.
"""

from __future__ import annotations

import pytest
import torch

import profiler

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

FAST = {"warmup_s": 0.05, "time_budget_s": 0.2, "processes": 1, "energy_window_s": 0.3}


def _by_backend(run):
    return {r.spec.backend: r for r in run.records}


def test_softmax_backends_and_fla_prefill_on_cuda(tmp_path):
    run = profiler.sweep(["softmax", "retnet"], [1024], device="cuda", dtypes=["bfloat16"], causal=True,
                         backends=["sdpa", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-math", "flex",
                                   "fla"], out=tmp_path / "run", render_report=False, **FAST)
    recs = run.records
    assert recs, "no records"
    bad = [(r.spec.id, r.status, r.reason) for r in recs if r.status not in ("ok", "skipped")]
    assert not bad, bad
    ok = [r for r in recs if r.status == "ok"]
    assert {r.spec.kernel for r in ok} == {"softmax", "retnet"}
    assert {"sdpa", "sdpa-flash", "sdpa-math"} <= {r.spec.backend for r in ok if r.spec.kernel == "softmax"}
    for r in ok:
        assert r.correctness is not None and r.correctness.passed, (r.spec.id, r.correctness)
        t = r.timing
        assert t.quantity == "device_time" and t.method in ("cuda_graph", "kineto", "spin_events"), \
            (r.spec.id, t.method, t.method_reason)
        assert r.call_latency is not None and r.call_latency.median_s >= 0.8 * t.median_s, r.spec.id
        assert r.memory.peak_bytes is not None and r.memory.peak_bytes > 0, r.spec.id
        assert r.energy is not None and (r.energy.meter == "nvml" or r.energy.reason), r.spec.id
        if r.energy.energy_j is not None:
            assert r.energy.gross_energy_j is not None and r.energy.gross_energy_j > 0, r.spec.id
    for r in recs:
        if r.status == "skipped":
            assert r.reason, r.spec.id


def test_decode_and_varlen_on_cuda(tmp_path):
    run = profiler.sweep(["softmax", "gla"], [2048], device="cuda", dtypes=["bfloat16"], causal=True,
                         backends=["sdpa", "fla", "fla-recurrent"], phase="decode", out=tmp_path / "dec",
                         render_report=False, **FAST)
    ok = [r for r in run.records if r.status == "ok"]
    assert {r.spec.kernel for r in ok} == {"softmax", "gla"}, [(r.spec.id, r.status, r.reason) for r in run.records]
    assert all(r.correctness is not None and r.correctness.passed for r in ok)
    run = profiler.sweep(["softmax", "gla"], device="cuda", dtypes=["bfloat16"], causal=True,
                         backends=["sdpa", "fla"], varlen="uniform", tokens=8192, out=tmp_path / "var",
                         render_report=False, **FAST)
    ok = [r for r in run.records if r.status == "ok"]
    assert {r.spec.kernel for r in ok} == {"softmax", "gla"}, [(r.spec.id, r.status, r.reason) for r in run.records]
    assert all(r.correctness is not None and r.correctness.passed for r in ok)
