"""Shape axes (issue 18): grouped key/value heads, a value dim != D, sliding windows and bwd mode.

Each backend is checked against an independent form: the fp32 reference on the same inputs, and for
the window and GQA, a brute-force band-masked attention written here (k, v repeated per query head).
"""

import math

import pytest
import torch

from profiler.core import counting
from profiler.core.records import PointSpec
from profiler.kernels import registry
from profiler.kernels.base import Shape, expand_kv
from profiler.kernels.verify import verify_point_against_reference


def _brute(q, k, v, window, causal=True):
    """Attention with explicit scores and a (T, T) band mask; k, v repeated to q's heads."""
    H, T = q.shape[2], q.shape[1]
    k, v = expand_kv(k, H).double(), expand_kv(v, H).double()
    s = torch.einsum("bihd,bjhd->bhij", q.double(), k) * q.shape[-1] ** -0.5
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = (j <= i) if causal else torch.ones(T, T, dtype=torch.bool)
    if window:
        allowed = allowed & (j > i - window)
    s = s.masked_fill(~allowed, float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", torch.softmax(s, -1), v)


def test_make_inputs_shapes_and_default_draws_unchanged():
    k = registry()["softmax"]
    x = k.make_inputs(Shape(2, 9, 4, 16, kv_heads=1, value_dim=24), "float32", "cpu", 0)
    assert x["q"].shape == (2, 9, 4, 16) and x["k"].shape == (2, 9, 1, 16) and x["v"].shape == (2, 9, 1, 24)
    a = k.make_inputs(Shape(1, 9, 4, 16), "float32", "cpu", 3)
    b = k.make_inputs(Shape(1, 9, 4, 16, kv_heads=4, value_dim=16), "float32", "cpu", 3)
    assert all(torch.equal(a[n], b[n]) for n in "qkv")
    kda = registry()["kda"].make_inputs(Shape(1, 9, 4, 16, kv_heads=2, value_dim=8), "float32", "cpu", 0)
    assert kda["k"].shape == (1, 9, 2, 16) and kda["g"].shape == (1, 9, 2, 16) and kda["beta"].shape == (1, 9, 2)
    assert kda["v"].shape == (1, 9, 2, 8)


@pytest.mark.parametrize("backend", ["sdpa", "sdpa-math", "naive", "flex"])
@pytest.mark.parametrize("kv,dv,window", [(1, 0, 0), (2, 24, 0), (0, 0, 5), (1, 24, 7)])
def test_softmax_backends_take_gqa_dv_window(backend, kv, dv, window):
    spec = registry()["softmax"]
    shape = Shape(2, 33, 4, 16, kv, dv, window)
    x = spec.make_inputs(shape, "float32", "cpu", 1)
    if window:
        x["window"] = window
    out = spec.backends[backend].run(x, True)
    want = _brute(x["q"], x["k"], x["v"], window)
    assert out.shape == (2, 33, 4, shape.Dv)
    assert (out.double() - want).abs().max() < 1e-5
    ref = spec.reference(x, True)
    assert (ref.double() - want).abs().max() < 1e-6   # the reference returns fp32


def test_window_changes_the_output_and_one_is_the_diagonal():
    """A window must act: w=1 returns v of the query's own (kv) head; a wide window equals full causal."""
    spec = registry()["softmax"]
    x = spec.make_inputs(Shape(1, 20, 2, 8, kv_heads=1), "float32", "cpu", 2)
    full = spec.backends["sdpa"].run(x, True)
    o1 = spec.backends["sdpa"].run({**x, "window": 1}, True)
    assert torch.allclose(o1, x["v"].expand(-1, -1, 2, -1), atol=1e-6)
    assert torch.allclose(spec.backends["sdpa"].run({**x, "window": 20}, True), full, atol=1e-6)
    assert not torch.allclose(spec.backends["sdpa"].run({**x, "window": 4}, True), full, atol=1e-3)


@pytest.mark.parametrize("kernel", ["retnet", "kda"])
@pytest.mark.parametrize("kv,dv", [(2, 0), (0, 48), (1, 48)])
def test_linear_kernels_take_shared_heads_and_dv(kernel, kv, dv):
    spec = registry()[kernel]
    c = verify_point_against_reference(spec, "torch", Shape(1, 70, 4, 32, kv, dv), "float32", "cpu", True, "fwdbwd",
                                       seed=4)
    assert c.passed, c
    # shared heads really are shared: query heads of one group see identical k, v
    x = spec.make_inputs(Shape(1, 70, 4, 32, kv, dv), "float32", "cpu", 4)
    assert x["k"].shape[2] == (kv or 4) and x["v"].shape[-1] == (dv or 32)


def test_bwd_workload_times_the_backward_alone_with_fwdbwd_gradients():
    spec = registry()["softmax"]
    p = PointSpec("softmax", "sdpa", T=40, H=4, D=16, mode="bwd", kv_heads=2, value_dim=24, window=9)
    work = spec.build(p, "cpu", 0)
    assert "bwd" in work.extra and work.extra["kv_heads_impl"] == "sdpa enable_gqa"
    assert "band mask" in work.extra["window_impl"]
    calls = []
    for _ in range(2):   # repeatable: the saved tensors stay alive (retain_graph)
        work.call_with_reset()
        calls.append({n: work.inputs[n].grad.clone() for n in "qkv"})
    ref = spec.build(PointSpec("softmax", "sdpa", T=40, H=4, D=16, mode="fwdbwd", kv_heads=2, value_dim=24, window=9),
                     "cpu", 0)
    ref.call_with_reset()
    for n in "qkv":
        assert torch.equal(calls[0][n], calls[1][n])
        assert torch.allclose(calls[0][n], ref.inputs[n].grad, atol=1e-6)
    assert spec.verify(p, "cpu", 0, None)[0].passed


def test_analytic_counts_window_gqa_dv_and_mode():
    spec = registry()["softmax"]
    T, w, H, D, Dv = 1024, 256, 8, 64, 128
    base = dict(kernel="softmax", backend="sdpa", T=T, H=H, D=D, kv_heads=2, value_dim=Dv, window=w)
    fwd = spec.analytic(PointSpec(**base), 2)
    pairs = w * (w + 1) // 2 + (T - w) * w          # hand count: first w queries see 1..w keys, the rest w
    assert fwd.flops == H * pairs * (2 * D + 2 * Dv)
    assert fwd.bytes_moved == T * (H * D + 2 * D + 2 * Dv + H * Dv) * 2
    assert spec.analytic(PointSpec(**{**base, "mode": "bwd"}), 2).flops == 2.5 * fwd.flops
    assert spec.analytic(PointSpec(**{**base, "mode": "fwdbwd"}), 2).flops == 3.5 * fwd.flops
    # default points keep the numbers they always had
    old = spec.analytic(PointSpec("softmax", "sdpa", T=T, H=H, D=D), 4)
    assert old.flops == 4.0 * H * D * T * (T + 1) / 2 and old.bytes_moved == 4.0 * T * H * D * 4
    r = registry()["retnet"].analytic(PointSpec("retnet", "torch", T=100, H=2, D=32, value_dim=64, mode="bwd"), 4)
    assert r.flops == 2 * 2 * 128 * (2 * 64 * 96 + 4 * 32 * 64)
    assert r.flops == counting.linear_flops(counting.AttnShape(1, 100, 2, 32, Dv=64), "bwd")


def test_memory_model_accounts_for_gqa_and_dv():
    spec = registry()["softmax"]
    m = lambda **kw: spec.memory_bytes(Shape(1, 4096, 8, 64, **kw), 2, "sdpa", True, "fwdbwd")  # noqa: E731
    assert m(kv_heads=1) < m()                       # fewer key/value gradients
    assert m(value_dim=128) > m()                    # wider output and dv
    assert m(window=512) == m() + 4096 * 4096        # SDPA's bool band mask
    assert spec.input_bytes(Shape(1, 10, 8, 64, kv_heads=2, value_dim=32), 2, "fwd") == 10 * (
        8 * 64 + 2 * 96 + 8 * 32) * 2


def test_ids_unchanged_by_default_and_extended_when_set():
    p = PointSpec("softmax", "sdpa")
    assert p.id == "kernel/softmax/sdpa/cpu/float32/fwd/B1/T1024/H4/D64/causal"
    q = PointSpec("softmax", "sdpa", mode="bwd", kv_heads=1, value_dim=128, window=256)
    assert q.id == "kernel/softmax/sdpa/cpu/float32/bwd/B1/T1024/H4/D64/causal/KV1/Dv128/W256"
    assert q.series_key != PointSpec("softmax", "sdpa", mode="bwd").series_key
    assert (q.Hkv, q.Dv, p.Hkv, p.Dv) == (1, 128, 4, 64)
    assert math.isclose(counting.attended_pairs(1024, True, 256), q.window * 257 / 2 + (1024 - 256) * 256)
