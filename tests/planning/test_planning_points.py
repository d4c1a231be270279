"""Plan expansion against the real kernel registry: order, drops, memory budget."""

from __future__ import annotations

import pytest

from profiler.core.errors import UsageError
from profiler.core.records import MeasureSettings
from profiler.planning.points import make_plan
from profiler.planning.scenario import SweepSpec


def _sweep(**kw) -> SweepSpec:
    kw.setdefault("device", "cpu")
    kw.setdefault("settings", MeasureSettings(memory_budget_bytes=1 << 40))
    return SweepSpec(**kw)


def test_series_ordered_short_to_long_series_after_series():
    plan = make_plan(_sweep(kernels=("softmax", "retnet"), backends=("sdpa", "torch"),
                            lengths=(2048, 256, 1024), batch=(4, 1)))
    specs = plan.runnable()
    # contiguous series, each sorted by B*T
    seen = []
    for s in specs:
        if not seen or seen[-1] != s.series_key:
            assert s.series_key not in seen, "a series was split"
            seen.append(s.series_key)
    for key in seen:
        tokens = [s.tokens for s in specs if s.series_key == key]
        assert tokens == sorted(tokens)
    assert len(specs) == len({s.id for s in specs}) == 3 * 3 * 2  # sdpa causal+full, retnet causal
    assert {s.causal for s in specs if s.kernel == "softmax"} == {True, False}
    assert {s.causal for s in specs if s.kernel == "retnet"} == {True}


def test_impossible_combinations_are_dropped_with_reasons():
    plan = make_plan(_sweep(kernels=("softmax", "retnet"), backends=("fla", "torch", "sdpa"),
                            dtypes=("float32",), lengths=(256,)))
    reasons = {d.what: d.reason for d in plan.dropped}
    assert "retnet/fla on cpu" in reasons and "--interpret" in reasons["retnet/fla on cpu"]
    assert "retnet/torch non-causal" in reasons
    assert all(s.backend != "fla" for s in plan.runnable())


def test_non_causal_only_drops_causal_only_backends():
    plan = make_plan(_sweep(kernels=("softmax", "retnet"), backends=("sdpa", "torch"), causal="non-causal",
                            lengths=(256,)))
    assert {s.kernel for s in plan.runnable()} == {"softmax"}
    assert any(d.what.startswith("retnet/torch") and "only causal" in d.reason for d in plan.dropped)


def test_interpret_keeps_fla_on_cpu_marked_and_never_bf16():
    plan = make_plan(_sweep(kernels=("retnet",), backends=("fla",), interpret=True, lengths=(64,),
                            dtypes=("float32", "bfloat16")))
    specs = plan.runnable()
    assert specs and all(s.interpret and s.device == "cpu" and s.dtype == "float32" for s in specs)
    assert all(s.id.endswith("/interpret") for s in specs)
    assert any("bf16" in d.reason for d in plan.dropped)


def test_points_over_the_memory_budget_are_skipped_before_running():
    budget = 16 << 20
    plan = make_plan(_sweep(kernels=("softmax",), backends=("naive",), lengths=(256, 1024, 4096),
                            causal="causal", settings=MeasureSettings(memory_budget_bytes=budget)))
    est = {p.spec.T: p for p in plan.points}
    assert est[256].runnable and not est[4096].runnable
    assert est[4096].est_bytes > budget
    assert "predicted to exceed the memory budget" in est[4096].skip_reason
    recs = plan.skipped_records()
    assert [r.spec.T for r in recs] == [t for t in (1024, 4096) if not est[t].runnable]
    assert all(r.status == "skipped" for r in recs)
    # the estimate grows with T^2 for the naive kernel
    assert est[4096].est_bytes > 10 * est[1024].est_bytes


def test_default_budget_comes_from_available_memory():
    plan = make_plan(SweepSpec(kernels=("retnet",), backends=("torch",), lengths=(256,), device="cpu"))
    assert plan.memory_budget_bytes is not None and plan.memory_budget_bytes > 0
    assert "MemAvailable" in plan.budget_source


def test_unknown_names_are_usage_errors():
    with pytest.raises(UsageError, match="unknown kernel 'retnett'.*did you mean 'retnet'"):
        make_plan(_sweep(kernels=("retnett",)))
    with pytest.raises(UsageError, match="unknown backend"):
        make_plan(_sweep(backends=("cudnn",)))


def test_ids_are_stable():
    a = make_plan(_sweep(kernels=("retnet",), backends=("torch",), lengths=(512,))).runnable()
    assert [s.id for s in a] == ["kernel/retnet/torch/cpu/float32/fwd/B1/T512/H4/D64/causal"]


def test_cuda_default_budget_is_device_total_minus_a_reserve(monkeypatch):
    """0.7 x free skipped the study's 124 GiB softmax layer on a 141 GiB H200: the default is now the
    device total minus max(2 GiB, 5%), whatever is free at planning time."""
    import torch

    from profiler.planning import points as plan_mod

    GiB = 2**30
    calls = []

    def fake_mem_get_info(index=0):
        calls.append(index)
        return 30 * GiB, 141 * GiB          # (free, total): another process holds most of it now

    monkeypatch.setattr(torch.cuda, "mem_get_info", fake_mem_get_info)
    budget, how = plan_mod.default_memory_budget("cuda", 1)
    assert calls == [1]
    assert budget == 141 * GiB - int(141 * GiB * 0.05)
    assert budget > 124 * GiB and "total" in how and "reserve" in how
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda index=0: (8 * GiB, 16 * GiB))
    assert plan_mod.default_memory_budget("cuda")[0] == 14 * GiB     # the 2 GiB floor
