"""RetNet kernel: torch backend vs fla's naive references, gradients, dtypes, analytic models."""

from __future__ import annotations

import itertools

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
