"""The shape axes in the plan (issue 18): --kv-heads, --value-dim, --window, --mode bwd."""

from __future__ import annotations

import pytest

from profiler.core.errors import UsageError
from profiler.planning import points
from profiler.planning.points import make_plan
from profiler.planning.scenario import build_spec


def _plan(**overrides):
    base = {"lengths": "256,512", "device": "cpu", "memory_budget": "8GiB", "causal": True}
    return make_plan(build_spec(None, {**base, **overrides}))


def test_acceptance_grid_plans_every_kernel_with_the_new_fields():
    plan = _plan(kernels="softmax,retnet,kda", kv_heads="1,4", value_dim="64,128", lengths="1k,2k",
                 backends="sdpa,torch")
    specs = plan.runnable()
    combos = {(s.kernel, s.kv_heads, s.value_dim) for s in specs}
    # kv 4 == H and Dv 64 == D are the default shape: the same points (and ids) as without the flags
    assert combos == {(k, kv, dv) for k in ("softmax", "retnet", "kda") for kv in (0, 1) for dv in (0, 128)}
    assert "kernel/softmax/sdpa/cpu/float32/fwd/B1/T1024/H4/D64/causal" in {s.id for s in specs}
    assert "kernel/kda/torch/cpu/float32/fwd/B1/T2048/H4/D64/causal/KV1/Dv128" in {s.id for s in specs}
    est = plan.est_bytes()
    gqa = est["kernel/softmax/sdpa/cpu/float32/fwd/B1/T2048/H4/D64/causal/KV1"]
    assert gqa < est["kernel/softmax/sdpa/cpu/float32/fwd/B1/T2048/H4/D64/causal"]   # k, v of one head


def test_kernels_that_cannot_take_an_axis_are_dropped_with_the_reason():
    plan = _plan(kernels="softmax,retnet,lightnet", window="128", backends="sdpa,torch,naive")
    kinds = {s.kernel for s in plan.runnable()}
    assert kinds == {"softmax"} and all(s.window == 128 for s in plan.runnable())
    reasons = " ".join(d.reason for d in plan.dropped)
    assert "retnet cannot take --window" in reasons and "lightnet cannot take --window" in reasons
    dv = _plan(kernels="lightnet,kda", value_dim="128", backends="torch")
    assert {s.kernel for s in dv.runnable()} == {"kda"}
    assert any("lightnet cannot take --value-dim" in d.reason for d in dv.dropped)
    wide = _plan(kernels="kda", value_dim="512", backends="torch")
    assert not wide.runnable() and any("value dim" in d.reason and "256" in d.reason for d in wide.dropped)


def test_window_longer_than_some_lengths_drops_those_points():
    plan = _plan(kernels="softmax", backends="sdpa", window="384")
    assert [s.T for s in plan.runnable()] == [512]
    assert any("window 384 (--window) is longer than T=256" in d.reason for d in plan.dropped)


def test_bwd_mode_for_every_backend_with_a_backward_only():
    plan = _plan(kernels="softmax,kda", modes="bwd", lengths="256")
    backends = {(s.kernel, s.backend) for s in plan.runnable()}
    assert ("softmax", "sdpa") in backends and ("kda", "torch") in backends
    assert ("softmax", "flex") not in backends           # FlexAttention: no backward on CPU
    assert all(s.mode == "bwd" and s.id.split("/")[5] == "bwd" for s in plan.runnable())
    assert any("flex" in d.what and "backward" in d.reason for d in plan.dropped)


@pytest.mark.parametrize("overrides, fragment", [
    ({"kv_heads": "3"}, "--kv-heads: 3 key/value heads must divide the query heads (--heads 4)"),
    ({"kv_heads": "0"}, "--kv-heads: value '0' in '0' must be >= 1"),
    ({"window": "0"}, "--window: value '0' in '0' must be >= 1"),
    ({"window": "8192"}, "--window: window 8192 is longer than every length"),
    ({"value_dim": "-2"}, "--value-dim"),
    ({"level": "layer", "kv_heads": "2"}, "kernel-level axis"),
])
def test_bad_shape_axes_are_one_line_usage_errors(overrides, fragment):
    with pytest.raises(UsageError) as exc:
        _plan(**overrides)
    msg = str(exc.value)
    assert fragment in msg and "\n" not in msg


def test_scenario_keys(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('kernels = ["softmax"]\nkv_heads = [1, 2]\nvalue_dim = 32\nwindow = 100\nlengths = "256"\n')
    spec = build_spec(f, {"device": "cpu"})
    assert (spec.kv_heads, spec.value_dims, spec.windows) == ((1, 2), (32,), (100,))
    f.write_text('kv_heads = 3\n')
    with pytest.raises(UsageError, match=r"s.toml: key 'kv_heads': 3 key/value heads must divide"):
        build_spec(f, {})


def test_fake_cuda_plan_takes_the_axes_per_backend(monkeypatch):
    monkeypatch.setattr(points, "cuda_available", lambda: True)
    plan = make_plan(build_spec(None, {"kernels": "softmax,retnet,kda", "kv_heads": "1,4", "value_dim": "64,128",
                                       "lengths": "1k,2k", "device": "cuda", "memory_budget": "8GiB",
                                       "window": "512", "dtypes": "bf16"}), cuda_available_flag=True)
    ids = {s.id for s in plan.runnable()}
    assert "kernel/softmax/fla/cuda/bfloat16/fwd/B1/T1024/H4/D64/causal/KV1/Dv128/W512" in ids
    assert "kernel/softmax/sdpa-efficient/cuda/bfloat16/fwd/B1/T2048/H4/D64/causal/KV1/W512" in ids
    reasons = {d.what: d.reason for d in plan.dropped}
    assert any("sdpa-flash" in w and "cannot take --window" in r for w, r in reasons.items())
    assert any(w.startswith("retnet/") and "cannot take --window" in r for w, r in reasons.items())
