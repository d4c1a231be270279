"""GSA kernel: torch backend vs fla naive_recurrent_gsa, strong gates, gradients of q, k, v, s, g, models."""

from __future__ import annotations

import itertools

import pytest
import torch

from profiler.kernels import gsa as mod
from profiler.kernels.base import Shape

TS = (1, 63, 64, 100, 512, 1000)
# every T with a rotation of (B, H, D) so each listed value appears (the reference is a token loop)
COMBOS = list(itertools.product((1, 3), (1, 4), (32, 64, 128)))
GRID = [(T, *COMBOS[(n * 5 + m) % len(COMBOS)]) for n, T in enumerate(TS) for m in range(3)]


def rel(a, b, floor: float = 0.0):
    """max|a - b| / max|b| (the denominator floored: a gradient that is exactly zero in theory, e.g. of k
    at T=1 in LightNet, is rounding noise in the reference)."""
    return ((a.float() - b.float()).abs().max() / max(b.float().abs().max().item(), floor)).item()


@pytest.mark.parametrize("T,B,H,D", [pytest.param(*g, id="-".join(map(str, g)),
                                                  marks=pytest.mark.long if g[1] * g[2] * g[3] > 256 else ())
                                     for g in GRID])   # B*H*D > 256: seconds each against the token loop
def test_forward_matches_fla_reference(T, B, H, D):
    inp = mod.make_inputs(Shape(B, T, H, D), torch.float32, "cpu", seed=T + D)
    out = mod.run_torch(inp, True)
    assert out.shape == (B, T, H, D) and out.dtype == torch.float32
    assert rel(out, mod.reference(inp, True)) <= 1e-5


def test_custom_scale_is_applied():
    inp = mod.make_inputs(Shape(2, 150, 3, 32), torch.float32, "cpu", seed=1)
    scaled = dict(inp, scale=1.0)
    assert rel(mod.run_torch(scaled, True), mod.reference(scaled, True)) <= 1e-5
    assert rel(mod.run_torch(scaled, True), mod.run_torch(inp, True)) > 1e-3  # the scale matters


@pytest.mark.parametrize("divisor", [0.05, 0.01])
def test_exact_and_finite_for_strong_gates(divisor):
    """Gates far stronger than the layer's (logsigmoid/0.05: chunks decay by e^-100s): the over-span
    chunks take the exact pairwise path; output matches the token loop and gradients stay finite."""
    import torch.nn.functional as F

    inp = mod.make_inputs(Shape(1, 150, 2, 32), torch.float32, "cpu", seed=2)
    g = F.logsigmoid(torch.randn(1, 150, 2, 32, generator=torch.Generator().manual_seed(9))) / divisor
    inp = dict(inp, g=g, s=1 - g.exp())
    x = {n: t.clone().requires_grad_() for n, t in inp.items()}
    out = mod.run_torch(x, True)
    assert rel(out, mod.reference(inp, True)) <= 1e-5
    out.sum().backward()
    assert all(torch.isfinite(x[n].grad).all() for n in mod.KERNEL.grad_inputs)


def test_inputs_are_deterministic_and_in_layer_ranges():
    a = mod.make_inputs(Shape(2, 50, 2, 16), torch.float32, "cpu", seed=5)
    b = mod.make_inputs(Shape(2, 50, 2, 16), torch.float32, "cpu", seed=5)
    c = mod.make_inputs(Shape(2, 50, 2, 16), torch.float32, "cpu", seed=6)
    assert set(a) == {"q", "k", "v", "s", "g"}
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["q"], c["q"])
    assert all(a[n].min() >= -0.2785 for n in "qkv")           # silu(randn)
    assert a["g"].max() <= 0 and a["g"].min() > -2              # logsigmoid(randn) / 8
    assert torch.allclose(a["s"], 1 - a["g"].exp()) and a["s"].shape == a["g"].shape


# ----------------------------------------------------------------------------- non-causal (bidirectional)

NC_GRID = list(itertools.product((1, 63, 100), (1, 2), (1, 2), (16, 32)))


def _old_sum_of_two_scans(inp):
    """The previous bidirectional form: two whole causal GSA calls (one on the flipped inputs), summed."""
    flipped = {n: (t.flip(1) if torch.is_tensor(t) else t) for n, t in inp.items()}
    return mod.run_torch(inp, True) + mod.run_torch(flipped, True).flip(1)


@pytest.mark.parametrize("T,B,H,D", NC_GRID, ids=lambda x: str(x))
def test_noncausal_matches_dense_fp64_reference(T, B, H, D):
    inp = mod.make_inputs(Shape(B, T, H, D), torch.float32, "cpu", seed=11 * T + D)
    out = mod.run_torch(inp, False)
    assert out.shape == (B, T, H, D) and out.dtype == torch.float32
    assert rel(out, mod.dense_noncausal(inp)) <= 1e-5
    assert mod.reference(inp, False).dtype == torch.float32


def test_dense_reference_is_the_fwd_and_reversed_recurrence():
    """The dense form equals FLA.md's recurrences run forward and from the end (each token's own gate,
    as fused_recurrent_gsa(reverse=True)), diagonal once per pass, softmax on the combined scores."""
    inp = mod.make_inputs(Shape(1, 40, 2, 8), torch.float64, "cpu", seed=4)
    q, k, v, s, g = (inp[n].transpose(1, 2) for n in "qkvsg")
    sc = 8 ** -0.5
    T = q.shape[2]

    def scan(x, y, z, decay_last, order):   # state (B, H, X, Z): h = h * e^{g_t} + y_t z_t^T, out x_t^T h
        h = torch.zeros(*x.shape[:2], y.shape[-1], z.shape[-1], dtype=torch.float64)
        out = torch.zeros(*x.shape[:3], z.shape[-1], dtype=torch.float64)
        for t in order:
            e = g[:, :, t].exp()
            h = h * (e[..., None, :] if decay_last else e[..., :, None]) + y[:, :, t, :, None] * z[:, :, t, None, :]
            out[:, :, t] = (x[:, :, t, :, None] * h).sum(-2)
        return out

    fwd, rev = range(T), range(T - 1, -1, -1)
    ok = scan(q * sc, k, s, True, fwd) + scan(q * sc, k, s, True, rev) - sc * (q * k).sum(-1, keepdim=True) * s
    p = ok.softmax(-1)
    o = scan(p, s, v, False, fwd) + scan(p, s, v, False, rev) - (p * s).sum(-1, keepdim=True) * v
    assert rel(mod.dense_noncausal(inp), o.transpose(1, 2)) <= 1e-12


def test_noncausal_is_not_the_old_sum_of_two_scans():
    inp = mod.make_inputs(Shape(2, 100, 2, 32), torch.float32, "cpu", seed=5)
    ref = mod.dense_noncausal(inp)
    assert rel(mod.run_torch(inp, False), ref) <= 1e-5
    assert rel(_old_sum_of_two_scans(inp), ref) > 1e-3


def test_noncausal_sees_the_future_and_reference_accepts_fewer_queries():
    inp = mod.make_inputs(Shape(1, 80, 2, 16), torch.float32, "cpu", seed=6)
    later = dict(inp, v=inp["v"].clone())
    later["v"][:, -1] += 1.0
    a, b = mod.run_torch(inp, False), mod.run_torch(later, False)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-6
    prefix = mod.dense_noncausal(dict(inp, q=inp["q"][:, :30]))
    assert rel(prefix, mod.dense_noncausal(inp)[:, :30]) <= 1e-12


@pytest.mark.parametrize("divisor", [8.0, 0.05])
def test_noncausal_gradients_finite_and_match_dense(divisor):
    """Layer-range gates and far stronger ones (over-span chunks take the exact pairwise path)."""
    import torch.nn.functional as F

    inp = mod.make_inputs(Shape(2, 100, 2, 16), torch.float32, "cpu", seed=8)
    g = F.logsigmoid(torch.randn(2, 100, 2, 16, generator=torch.Generator().manual_seed(2))) / divisor
    inp = dict(inp, g=g, s=1 - g.exp())
    grad = torch.randn(2, 100, 2, 16, generator=torch.Generator().manual_seed(3))
    grads = []
    for fn in (lambda x: mod.run_torch(x, False), mod.dense_noncausal):
        x = {n: t.clone().requires_grad_() for n, t in inp.items()}
        (fn(x) * grad).sum().backward()
        grads.append({n: x[n].grad for n in mod.KERNEL.grad_inputs})
    for n in mod.KERNEL.grad_inputs:
        assert torch.isfinite(grads[0][n]).all(), n
        assert rel(grads[0][n], grads[1][n], floor=1.0) <= 1e-5, n


def test_noncausal_registered_and_fla_backends_stay_causal_only():
    from profiler.core.errors import UsageError

    assert mod.KERNEL.backends["torch"].causal == (True, False)
    inp = mod.make_inputs(Shape(1, 8, 1, 8), torch.float32, "cpu", seed=0)
    for name in ("fla", "fla-recurrent"):
        assert mod.KERNEL.backends[name].causal == (True,)
        with pytest.raises(UsageError, match="causal only"):
            mod.KERNEL.backends[name].run(inp, False)
    s = Shape(1, 4096, 4, 64)
    assert mod.flops(s, False) == 2 * mod.flops(s, True)
    assert mod.memory_bytes(s, 4, "torch", False, "fwd") > mod.memory_bytes(s, 4, "torch", True, "fwd")
