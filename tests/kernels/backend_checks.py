"""Shared check of the kernel tests: a kernel's torch backend against its fp32 reference, forward and
gradients (on the folder's sys.path via ``conftest.py``)."""

from __future__ import annotations

import torch

from profiler.kernels import registry
from profiler.kernels.verify import _rel


def torch_matches_reference(name: str, x: dict, out_shape, *, tol: float = 1e-5, grads=None) -> torch.Tensor:
    """Run ``name``'s torch backend and its reference (causal) on copies of ``x``; assert both outputs
    have ``out_shape`` and agree within ``tol`` (max relative error, ``verify._rel``), then backpropagate
    one random upstream gradient through both and assert the same of every input in ``grads`` (default:
    every input). Returns the torch backend's output."""
    k = registry()[name]
    grads = list(x) if grads is None else list(grads)
    xs = {n: t.clone().requires_grad_(n in grads) for n, t in x.items()}
    xr = {n: t.clone().requires_grad_(n in grads) for n, t in x.items()}
    o, ref = k.backends["torch"].run(xs, True), k.reference(xr, True)
    assert o.shape == ref.shape == tuple(out_shape)
    assert _rel(o, ref)[1] <= tol
    g = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
    o.backward(g)
    ref.backward(g)
    for n in grads:
        assert _rel(xs[n].grad, xr[n].grad)[1] <= tol, n
    return o
