"""Shared chunkwise helpers: layout round trip, state scan, generic GLA vs a token loop (both gate sides)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from profiler.kernels import chunked as ck


def _loop_gla(q, k, v, gk=None, gv=None):
    """Token loop of S_t = Diag(e^gk) S Diag(e^gv) + k v^T, o_t = S^T q, layout (B, T, H, D), fp64."""
    q, k, v = (x.double() for x in (q, k, v))
    B, T, H, K = q.shape
    S = torch.zeros(B, H, K, v.shape[-1], dtype=torch.float64)
    out = []
    for t in range(T):
        if gk is not None:
            S = S * gk[:, t].double().exp()[..., None]
        if gv is not None:
            S = S * gv[:, t].double().exp()[..., None, :]
        S = S + k[:, t, :, :, None] * v[:, t, :, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(out, 1)


def test_to_from_chunks_round_trip_and_padding():
    x = torch.randn(2, 70, 3, 5)
    xc = ck.to_chunks(x, 32)
    assert xc.shape == (2, 3, 3, 32, 5)
    assert torch.equal(ck.from_chunks(xc, 70), x)
    assert (xc[:, :, -1, 6:] == 0).all()
    edge = ck.to_chunks(x, 32, pad="edge")
    assert torch.equal(edge[:, :, -1, 6:], x[:, -1:].transpose(1, 2).expand(2, 3, 26, 5))
    assert torch.isinf(ck.to_chunks(x, 32, pad=float("-inf"))[:, :, -1, 6:]).all()


@pytest.mark.parametrize("grad", [False, True])
def test_scan_states_is_the_exclusive_recurrence(grad):
    U = torch.randn(2, 3, 5, 4, 6, requires_grad=grad)
    dk = torch.rand(2, 3, 5, 4, 1)
    got = ck.scan_states(U, dk)
    S = torch.zeros(2, 3, 4, 6)
    for n in range(5):
        assert torch.allclose(got[:, :, n], S, atol=1e-6)
        S = dk[:, :, n] * S + U[:, :, n]


@pytest.mark.parametrize("side,strength", [("k", 1.0), ("v", 1.0), ("k", 60.0), ("v", 60.0), (None, 0.0)])
def test_gla_chunked_matches_token_loop(side, strength):
    """Any gate strength: strength 60 makes every 16-token chunk decay far beyond SAFE_SPAN."""
    B, T, H, D, C = 2, 45, 2, 8, 16
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, T, H, D, generator=gen) for _ in range(3))
    g = F.logsigmoid(torch.randn(B, T, H, D, generator=gen)) * strength
    b = ck.chunk_local_cumsum(ck.to_chunks(g, C))
    gate = ck.chunk_gate(b) if side else None
    if strength > ck.SAFE_SPAN / C:
        assert gate.bad is not None and gate.bad.numel() > 0
    o = ck.gla_chunked(*(ck.to_chunks(x, C) for x in (q, k, v)),
                       gk=gate if side == "k" else None, gv=gate if side == "v" else None)
    ref = _loop_gla(q, k, v, gk=g if side == "k" else None, gv=g if side == "v" else None)
    out = ck.from_chunks(o, T)
    assert torch.isfinite(out).all()
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() <= 1e-5


def test_decay_chunked_matches_token_loop():
    B, T, H, D, C = 1, 40, 3, 8, 16
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, T, H, D, generator=gen) for _ in range(3))
    lg = torch.tensor([-0.03, -0.5, -3.0])
    o = ck.from_chunks(ck.decay_chunked(*(ck.to_chunks(x, C) for x in (q, k, v)), lg, scale=0.5), T)
    ref = _loop_gla(q * 0.5, k, v, gk=lg[None, None, :, None].expand(B, T, H, D))
    assert ((o.double() - ref).abs().max() / ref.abs().max()).item() <= 1e-5


def test_flop_model_counts_padded_chunks():
    assert ck.gla_flops(64, 8, 8, C=64) == 64 * (2 * 64 * 16 + 4 * 64)
    assert ck.gla_flops(65, 8, 8, C=64) == 2 * ck.gla_flops(64, 8, 8, C=64)
