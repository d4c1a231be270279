"""RetNet kernel: torch backend vs fla's naive references, gradients, dtypes, analytic models."""

from __future__ import annotations

import itertools
import json
import os
import tempfile

import pytest
import torch

from profiler.kernels import retnet
from profiler.kernels.base import Shape

TS = (1, 63, 64, 100, 512, 1000)
GRID = list(itertools.product(TS, (1, 3), (1, 4), (32, 64, 128)))


def rel(a, b, floor: float = 0.0):
    """max|a - b| / max|b| (the denominator floored: a gradient that is exactly zero in theory, e.g. of k
    at T=1 in LightNet, is rounding noise in the reference)."""
    return ((a.float() - b.float()).abs().max() / max(b.float().abs().max().item(), floor)).item()


@pytest.mark.parametrize("T,B,H,D", GRID, ids=lambda x: str(x))
def test_forward_matches_fla_reference(T, B, H, D):
    inp = retnet.make_inputs(Shape(B, T, H, D), torch.float32, "cpu", seed=T + D)
    out = retnet.run_torch(inp, True)
    assert out.shape == (B, T, H, D) and out.dtype == torch.float32
    assert rel(out, retnet.reference(inp, True)) <= 1e-5


def test_independent_quadratic_form_and_scale():
    """Against fla's parallel naive_retention ([B, H, T, D], fixed D**-0.5) and with a custom scale."""
    from fla.ops.retention.naive import naive_retention

    inp = retnet.make_inputs(Shape(2, 150, 3, 32), torch.float32, "cpu", seed=1)
    ref = naive_retention(*(inp[n].transpose(1, 2) for n in ("q", "k", "v"))).transpose(1, 2)
    assert rel(retnet.run_torch(inp, True), ref) <= 1e-5
    scaled = dict(inp, scale=1.0)
    assert rel(retnet.run_torch(scaled, True), retnet.reference(scaled, True)) <= 1e-5
    # scale really is applied (output is linear in q . k)
    assert rel(retnet.run_torch(scaled, True), retnet.run_torch(inp, True) * 32 ** 0.5) <= 1e-5


@pytest.mark.parametrize("T,B,H,D", [(100, 2, 3, 32), (64, 1, 4, 64), (1, 3, 1, 128)])
def test_gradients_match_reference(T, B, H, D):
    inp = retnet.make_inputs(Shape(B, T, H, D), torch.float32, "cpu", seed=7)
    grad = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(3))
    grads = []
    for fn in (retnet.run_torch, retnet.reference):
        x = {n: t.clone().requires_grad_() for n, t in inp.items()}
        (fn(x, True) * grad).sum().backward()
        grads.append({n: x[n].grad for n in retnet.KERNEL.grad_inputs})
    for n in retnet.KERNEL.grad_inputs:
        assert rel(grads[0][n], grads[1][n], floor=1.0) <= 1e-5, n


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runs_in_fp32_and_returns_input_dtype(dtype):
    inp = retnet.make_inputs(Shape(1, 130, 2, 64), dtype, "cpu", seed=0)
    out = retnet.run_torch(inp, True)
    assert out.dtype == dtype
    assert rel(out, retnet.reference(inp, True)) <= 1e-2


def test_inputs_are_deterministic_and_normal():
    a = retnet.make_inputs(Shape(2, 50, 2, 16), torch.float32, "cpu", seed=5)
    b = retnet.make_inputs(Shape(2, 50, 2, 16), torch.float32, "cpu", seed=5)
    c = retnet.make_inputs(Shape(2, 50, 2, 16), torch.float32, "cpu", seed=6)
    assert set(a) == {"q", "k", "v"}
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["q"], c["q"])
    assert abs(a["q"].std().item() - 1) < 0.2


def test_fixed_decay_is_fla_s():
    g = retnet.log_gamma(4)
    assert torch.allclose(g.exp(), torch.tensor([1 - 2 ** -5, 1 - 2 ** -6, 1 - 2 ** -7, 1 - 2 ** -8]))


def test_non_causal_is_a_usage_error():
    from profiler.errors import UsageError

    inp = retnet.make_inputs(Shape(1, 8, 1, 8), torch.float32, "cpu", seed=0)
    with pytest.raises(UsageError):
        retnet.run_torch(inp, False)


def test_fla_backends_registered_and_unavailable_on_cpu():
    names = set(retnet.KERNEL.backends)
    assert {"torch", "fla", "fla-recurrent", "fla-parallel", "fla-fused-chunk"} <= names
    for n in names - {"torch"}:
        ok, why = retnet.KERNEL.backends[n].availability("cpu")
        assert not ok and "cuda" in why
        assert retnet.KERNEL.backends[n].interpretable
    assert retnet.KERNEL.backends["torch"].availability("cpu") == (True, "ok")


def _peak_bytes(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    path = tempfile.mktemp(suffix=".json")
    prof.export_chrome_trace(path)
    with open(path) as f:
        events = json.load(f)["traceEvents"]
    os.remove(path)
    cur = peak = 0
    for e in sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"]):
        cur += e["args"]["Bytes"]
        peak = max(peak, cur)
    return peak


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_memory_model_matches_measured_peak(mode):
    shape = Shape(1, 2048, 4, 64)
    inp = retnet.make_inputs(shape, torch.float32, "cpu", seed=0)
    if mode == "fwd":
        def call():
            with torch.no_grad():
                retnet.run_torch(inp, True)
    else:
        x = {n: t.clone().requires_grad_() for n, t in inp.items()}
        grad = torch.randn(1, 2048, 4, 64)

        def call():
            retnet.run_torch(x, True).backward(grad)
    measured = _peak_bytes(call)
    model = retnet.memory_bytes(shape, 4, "torch", True, mode)
    assert 0.9 <= model / measured <= 1.1, (model, measured)


def test_analytic_models_scale_linearly():
    s1, s2 = Shape(1, 4096, 4, 64), Shape(1, 8192, 4, 64)
    assert retnet.flops(s2, True) == pytest.approx(2 * retnet.flops(s1, True))
    assert retnet.bytes_moved(s1, 4, True) == 4 * 4096 * 4 * 64 * 4
    assert retnet.memory_bytes(s2, 4, "torch", True, "fwd") == 2 * retnet.memory_bytes(s1, 4, "torch", True, "fwd")
