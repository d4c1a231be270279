"""Checks shared by the chunkwise linear kernels RetNet, LightNet and GSA (one parametrized copy).

The memory model is compared with the product's own CPU meter (``ProfilerMemoryMeter``), so a wrong
model and a wrong meter cannot hide each other behind a second, test-only implementation.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from profiler.core.errors import UsageError
from profiler.kernels.base import Shape
from profiler.measure.memory import ProfilerMemoryMeter

#: kernel -> (its fla backends, number of (B, T, H, D)-sized tensors read or written: inputs + output)
KERNELS = {
    "retnet": ({"fla", "fla-recurrent", "fla-parallel", "fla-fused-chunk"}, 4),
    "lightnet": ({"fla", "fla-recurrent"}, 4),
    "gsa": ({"fla", "fla-recurrent"}, 6),
}


def rel(a, b, floor: float = 0.0):
    """max|a - b| / max|b| (the denominator floored: a gradient that is exactly zero in theory, e.g. of k
    at T=1 in LightNet, is rounding noise in the reference)."""
    return ((a.float() - b.float()).abs().max() / max(b.float().abs().max().item(), floor)).item()


@pytest.fixture(params=sorted(KERNELS))
def kernel(request):
    return request.param, importlib.import_module(f"profiler.kernels.{request.param}")


def test_non_causal_is_a_usage_error(kernel):
    name, mod = kernel
    if name == "gsa":  # GSA's torch backend has a non-causal form (tested in test_kernels_gsa.py)
        assert mod.KERNEL.backends["torch"].causal == (True, False)
        return
    inp = mod.make_inputs(Shape(1, 8, 1, 8), torch.float32, "cpu", seed=0)
    with pytest.raises(UsageError, match="causal only"):
        mod.run_torch(inp, False)


@pytest.mark.parametrize("T,B,H,D", [(100, 2, 3, 32), (64, 1, 4, 64), (1, 3, 1, 128)])
def test_gradients_match_reference(kernel, T, B, H, D):
    _, mod = kernel
    inp = mod.make_inputs(Shape(B, T, H, D), torch.float32, "cpu", seed=7)
    grad = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(3))
    grads = []
    for fn in (mod.run_torch, mod.reference):
        x = {n: t.clone().requires_grad_() for n, t in inp.items()}
        (fn(x, True) * grad).sum().backward()
        grads.append({n: x[n].grad for n in mod.KERNEL.grad_inputs})
    for n in mod.KERNEL.grad_inputs:
        assert rel(grads[0][n], grads[1][n], floor=1.0) <= 1e-5, n


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_runs_in_fp32_and_returns_input_dtype(kernel, dtype):
    _, mod = kernel
    inp = mod.make_inputs(Shape(1, 130, 2, 64), dtype, "cpu", seed=0)
    out = mod.run_torch(inp, True)
    assert out.dtype == dtype
    assert rel(out, mod.reference(inp, True)) <= 1e-2


def test_fla_backends_registered_and_unavailable_on_cpu(kernel):
    name, mod = kernel
    names = set(mod.KERNEL.backends)
    assert names == {"torch"} | KERNELS[name][0]
    for n in names - {"torch"}:
        ok, why = mod.KERNEL.backends[n].availability("cpu")
        assert not ok and "cuda" in why
        assert mod.KERNEL.backends[n].interpretable
    assert mod.KERNEL.backends["torch"].availability("cpu") == (True, "ok")


@pytest.mark.parametrize("mode", ["fwd", "fwdbwd"])
def test_memory_model_matches_measured_peak(kernel, mode):
    _, mod = kernel
    shape = Shape(1, 2048, 4, 64)
    inp = mod.make_inputs(shape, torch.float32, "cpu", seed=0)
    if mode == "fwd":
        def call():
            with torch.no_grad():
                mod.run_torch(inp, True)
    else:
        x = {n: t.clone().requires_grad_() for n, t in inp.items()}
        grad = torch.randn(1, 2048, 4, 64)

        def call():
            mod.run_torch(x, True).backward(grad)
    measured = ProfilerMemoryMeter().measure(call).peak_bytes
    model = mod.memory_bytes(shape, 4, "torch", True, mode)
    assert 0.9 <= model / measured <= 1.1, (model, measured)


def test_analytic_models_scale_linearly(kernel):
    name, mod = kernel
    s1, s2 = Shape(1, 4096, 4, 64), Shape(1, 8192, 4, 64)
    assert mod.flops(s2, True) == pytest.approx(2 * mod.flops(s1, True))
    assert mod.bytes_moved(s1, 4, True) == KERNELS[name][1] * 4096 * 4 * 64 * 4
    assert mod.memory_bytes(s2, 4, "torch", True, "fwd") == 2 * mod.memory_bytes(s1, 4, "torch", True, "fwd")
