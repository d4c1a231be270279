"""The one chunkwise PyTorch engine for the gated delta rule / GLA family (CPU, or any torch device).

Every linear mechanism that reduces to ::

    S_t = Diag(e^{gk_t}) e^{g_t} S_{t-1}  [(I - beta_t k_t k_t^T) ... with the delta rule]  + k_t u_t^T
    o_t = S_t^T (scale q_t)

is a *configuration* of ``chunkwise(q, k, v, g=..., gk=..., beta=..., scale=...)``:

=====================  ======================  ==================  ======
family                 ``g`` (B, T, H)         ``gk`` (B, T, H, K) ``beta``
=====================  ======================  ==================  ======
linear_attn            --                      --                  --
retention / lightning  constant log gamma_h    --                  --
simple_gla (Mamba2)    per step, per head      --                  --
gla, rwkv6-style       --                      per key channel     --
delta_rule             --                      --                  (B,T,H)
gated_delta_rule       per step, per head      --                  (B,T,H)
kda                    --                      per key channel     (B,T,H)
comba                  per step, per head      --                  (B,T,H) + read key ``p``
rwkv6                  --                      per key channel     --  + ``bonus`` u (read before write)
=====================  ======================  ==================  ======

(``u_t = v_t`` without the delta rule, ``u_t = beta_t (v_t - S'^T k_t)`` with it, ``S'`` the decayed
state.) Log gates are ``<= 0``. Three paths, chosen by the configuration:

* **scalar decay** (``g`` only, or nothing): ``scalar_chunked``. Per chunk (C = 64), with ``b`` the
  chunk-local inclusive cumsum of ``g``: ``O = (Q K^T * D) V + (Q e^{b}) S``, ``D_ij = e^{b_i - b_j}
  [j <= i]`` (the exponent masked to -inf *before* exp), ``S <- e^{b_C} S + (K e^{b_C - b})^T V``.
  Every exponent is ``<= 0``: exact for any decay, at the cost of a (C, C) mask per chunk and head.
  Without ``g`` the masks are skipped (plain causal linear attention).
* **per-key gate** (``gk``, optionally plus ``g``): ``chunked.gla_chunked`` (factorised
  ``e^{b}`` / ``e^{-b}`` with an exact pairwise fallback for chunks whose decay exceeds
  ``chunked.SAFE_SPAN``).
* **delta rule** (``beta``): ``delta_chunkwise``, the WY/UT form with exact sub-blocks, for any
  (scalar or per-key, broadcast to K) gate.

Only the state recurrence loops in Python (T / C steps); everything else is batched over all chunks,
so time and memory are linear in T. fp32 arithmetic; the output is cast to v's dtype. Autograd
works through every path.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from profiler.core.lazy import lazy_import
from profiler.kernels import chunked as ck

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

if TYPE_CHECKING:
    import torch

#: Chunk length of the scalar / GLA paths and of the delta-rule path (rows per WY/UT block).
CHUNK = 64
#: Sub-block length of the delta-rule path: diagonal c x c blocks use exact pairwise decays.
SUB_CHUNK = 8


def chunkwise(q, k, v, *, g=None, gk=None, beta=None, p=None, bonus=None,
              scale: float | None = None) -> "torch.Tensor":
    """Causal output ``(B, T, H, V)`` of the configured recurrence (module doc), in v's dtype.

    ``q, k`` ``(B, T, H, K)``, ``v`` ``(B, T, H, V)``; ``g`` ``(B|1, T|1, H)`` per-head log decay;
    ``gk`` ``(B, T, H, K)`` per-key log gate; ``beta`` ``(B, T, H)`` in (0, 1) turns on the delta rule;
    ``p`` ``(B, T, H, K)`` (delta rule only): the key the state is *read* with in the correction,
    ``u_t = beta_t (v_t - S'^T p_t)`` (Comba; default ``k``); ``bonus`` ``(H, K)`` (no delta rule):
    RWKV6's read-before-write form, ``o_t = S_{t-1}^T q_t + ((q_t * bonus) . k_t) v_t`` with
    ``S_t = Diag(e^{gk_t}) S_{t-1} + k_t v_t^T``: ``S_{t-1}^T q_t`` is the engine's plain output at
    position ``t-1`` computed with the next token's query (q shifted back by one, the output forward
    by one: exact for any gate), plus the elementwise bonus term; ``scale`` (default ``K ** -0.5``)
    multiplies q.
    """
    B, T, H, K = q.shape
    scale = K ** -0.5 if scale is None else float(scale)
    if beta is not None:
        if bonus is not None:
            raise ValueError("chunkwise: bonus (RWKV6 form) is not defined with the delta rule")
        gate = _key_gate(g, gk, q)
        return delta_chunkwise(q, k, v, gate, beta, scale, p=p)
    if p is not None:
        raise ValueError("chunkwise: p (Comba's read key) needs the delta rule (beta)")
    if bonus is not None:
        # o_t = q_t . S_{t-1} is the plain output at position t-1 computed with the *next* query:
        # shift q back by one token, run the engine, shift the output forward (o_0 reads the zero state)
        q_next = torch.cat([q[:, 1:], torch.zeros_like(q[:, :1])], dim=1)
        o = chunkwise(q_next, k, v, g=g, gk=gk, scale=scale).float()
        o = torch.cat([torch.zeros_like(o[:, :1]), o[:, :-1]], dim=1)
        diag = ((q.float() * scale) * bonus.float() * k.float()).sum(-1, keepdim=True)
        return (o + diag * v.float()).to(v.dtype)
    C = CHUNK
    if gk is not None:
        gate = _key_gate(g, gk, q)
        o = ck.gla_chunked(ck.to_chunks(q * scale, C), ck.to_chunks(k, C), ck.to_chunks(v, C),
                           gk=ck.chunk_gate(ck.to_chunks(gate, C).cumsum(-2)))
        return ck.from_chunks(o, T, v.dtype)
    if g is not None:
        g = g.expand(B, T, H)
    o = scalar_chunked(ck.to_chunks(q, C), ck.to_chunks(k, C), ck.to_chunks(v, C),
                       None if g is None else ck.to_chunks(g, C), scale)
    return ck.from_chunks(o, T, v.dtype)


def _key_gate(g, gk, q) -> "torch.Tensor":
    """The per-key log gate ``(B, T, H, K)`` fp32: ``gk + g`` broadcast (zeros when neither is given)."""
    B, T, H, K = q.shape
    out = None if gk is None else gk.float()
    if g is not None:
        gs = g.float().expand(B, T, H)[..., None]
        out = gs.expand(B, T, H, K) if out is None else out + gs
    return q.new_zeros(B, T, H, K, dtype=torch.float32) if out is None else out


def scalar_chunked(q, k, v, g=None, scale: float = 1.0) -> "torch.Tensor":
    """Chunkwise linear attention with a per-step, per-head scalar log decay, chunked layout.

    ``q, k`` ``(B, H, N, C, K)``, ``v`` ``(B, H, N, C, V)``, ``g`` ``(B, H, N, C)`` (zero-padded: the
    tail adds no decay and, having zero keys, nothing to the state) or None. Returns
    ``(B, H, N, C, V)`` fp32. Exact for any ``g <= 0`` (module doc).
    """
    B, H, N, C, K = q.shape
    V = v.shape[-1]
    if g is None:
        o, _ = ck.key_gated_core(q * scale, k, k, v)
        return o
    b = g.cumsum(-1)                                                  # (B, H, N, C) inclusive
    last = b[..., -1:]                                                # (B, H, N, 1)
    upper = torch.ones(C, C, dtype=torch.bool, device=q.device).triu_(1)
    Dm = (b[..., :, None] - b[..., None, :]).masked_fill_(upper, float("-inf")).exp_()   # (B, H, N, C, C)
    kd = k * (last - b).exp()[..., None]
    S = ck.scan_states(kd.transpose(-1, -2) @ v, last.exp()[..., None])    # entering states
    del kd
    A = (q @ k.transpose(-1, -2)).mul_(Dm)
    del Dm
    o = A @ v
    del A
    qg = q * (b.exp() * scale)[..., None]
    return o.mul_(scale).view(-1, C, V).baddbmm_(qg.view(-1, C, K), S.view(-1, K, V)).view(B, H, N, C, V)


# ----------------------------------------------------------------------------- delta rule (WY/UT)

def _intra_chunk_scores(qk: "torch.Tensor", k: "torch.Tensor", g: "torch.Tensor", c: int) -> "torch.Tensor":
    """Exact gated scores of every chunk, ``A`` of shape (Z, C, 2, C) (module doc, "Numerical safety").

    ``qk`` (Z, C, 2, K): the query-side rows (scaled q, and k); ``k`` (Z, C, K); ``g`` (Z, C, K) the
    per-step log gates (<= 0). ``A[:, i, 0, j] = sum_d qk[i,0,d] k[j,d] e^{b_i - b_j}`` for j <= i,
    ``A[:, i, 1, j]`` the same with ``qk[i,1]`` for j < i, zero elsewhere.
    """
    Z, C, _, K = qk.shape
    nb = C // c
    gb, kb, qkb = g.view(Z, nb, c, K), k.view(Z, nb, c, K), qk.view(Z, nb, c, 2, K)
    A = qk.new_zeros(Z, nb, c, 2, C)
    # Diagonal c x c blocks, one diagonal offset at a time: view A as (Z, c, 2, c, nb), take diagonals.
    diag_blocks = A.view(Z, nb, c, 2, nb, c).diagonal(0, 1, 4)
    d0 = (qkb[:, :, :, :1] @ kb.unsqueeze(-1)).view(Z, nb, c)                   # j == i: q_i . k_i
    diag_blocks.diagonal(0, 1, 3)[:, 0].copy_(d0)
    window = None                                   # window[i] = g_i + ... + g_{i-delta+1}, rows i >= delta
    for delta in range(1, c):
        window = gb[:, :, 1:] if window is None else window[:, :, 1:] + gb[:, :, 1:c - delta + 1]
        kE = kb[:, :, :c - delta] * window.exp()
        d = (qkb[:, :, delta:] @ kE.unsqueeze(-1)).squeeze(-1)                   # (Z, nb, c-delta, 2)
        diag_blocks.diagonal(-delta, 1, 3).copy_(d.permute(0, 3, 1, 2))
    window = kE = d = None
    if nb > 1:
        # suffix[j] = b_end(J) - b_j (exclusive suffix sum inside j's block J); totals: block sums
        suffix = F.pad(gb.flip(2).cumsum(2).flip(2)[:, :, 1:], (0, 0, 0, 1))
        totals = gb.sum(2)                                                          # (Z, nb, K)
        for I in range(1, nb):
            # query side: b_i - b_r = cumsum of g inside block I (r = last row of block I-1)
            qf = qkb[:, I] * gb[:, I].cumsum(1).exp().unsqueeze(2)                 # (Z, c, 2, K)
            # key side: b_r - b_j = suffix_j + sums of the blocks strictly between J and I
            between = F.pad(totals[:, 1:I].flip(1).cumsum(1).flip(1), (0, 0, 0, 1))  # (Z, I, K)
            kf = (kb[:, :I] * (suffix[:, :I] + between.unsqueeze(2)).exp()).view(Z, I * c, K)
            A[:, I, :, :, :I * c] = torch.bmm(qf.view(Z, 2 * c, K), kf.transpose(1, 2)).view(Z, c, 2, I * c)
    return A.view(Z, C, 2, C)


def delta_chunkwise(q, k, v, g, beta, scale: float | None = None, *, chunk_size: int = CHUNK,
                  sub_chunk: int = SUB_CHUNK, final_state: bool = False, initial_state=None, p=None):
    """The causal gated delta rule in the chunkwise WY/UT form (KDA's; module doc), exact for any g <= 0.

    q, k, g (B, T, H, K); v (B, T, H, V); beta (B, T, H); p (B, T, H, K) or None: the read key of the
    correction (Comba; the Akk rows and W use p instead of k). Any T >= 1; fp32 arithmetic; returns
    (B, T, H, V) in v's dtype. Autograd works through every step. ``final_state``: return
    ``(o, S)`` with ``S`` the fp32 state after the last token (B, H, K, V) (zero padding adds nothing
    to it: padded keys and betas are 0 and padded gates 0). ``initial_state``: the fp32 state
    (B, H, K, V) before the first token (None: zero), as a streaming chunk carries it.
    """
    B, T, H, K = q.shape
    V = v.shape[-1]
    scale = K ** -0.5 if scale is None else float(scale)
    c = sub_chunk
    C = min(chunk_size, c * math.ceil(T / c))     # short sequences: one chunk, no wasted padding
    if C % c:
        raise ValueError(f"chunk_size {chunk_size} must be a multiple of sub_chunk {c}")
    N = math.ceil(T / C)
    pad = N * C - T
    BH = B * H
    Z = N * BH                                    # chunk-major: row z = n * BH + (b * H + h)

    def chunks(x, extra=()):
        x = x.float()
        if pad:
            x = F.pad(x, (0, 0) * (x.dim() - 2) + (0, pad))
        # (B, N, C, H, ...) -> (N, B, H, C, ...) -> (Z, C, ...)
        return x.view(B, N, C, H, *extra).movedim(1, 0).movedim(3, 2).reshape(Z, C, *extra)

    qs = chunks(q, (K,)) * scale
    kc = chunks(k, (K,))
    gc = chunks(g, (K,))
    bc = chunks(beta).unsqueeze(-1)                                               # (Z, C, 1)
    pc = kc if p is None else chunks(p, (K,))                                     # the read key (Comba: p)
    qk = torch.stack((qs, pc), 2)                                                 # (Z, C, 2, K)
    del qs
    A = _intra_chunk_scores(qk, kc, gc, c)
    eb = gc.cumsum(1).exp()                                                       # e^{b}
    q_e = qk[:, :, 0] * eb                                                        # q e^{b}
    del qk
    rhs = pc * eb * bc
    del eb, pc
    M = A[:, :, 1] * bc                                                           # Diag(beta) Akk, unit diag implied
    W = torch.linalg.solve_triangular(M, rhs, upper=False, unitriangular=True)   # T K e^{b}
    rhs = chunks(v, (V,)) * bc
    U = torch.linalg.solve_triangular(M, rhs, upper=False, unitriangular=True)   # T V
    del M, rhs, bc
    rev = gc.flip(1).cumsum(1).flip(1)                                            # inclusive suffix sums of g
    decay = rev[:, 0].exp()                                                       # e^{b_C}, (Z, K)
    kd = (kc * F.pad(rev[:, 1:], (0, 0, 0, 1)).exp()).transpose(1, 2)            # (K e^{b_C - b})^T
    del rev, kc, gc
    R = torch.bmm(kd, U).view(N, BH, K, V)                                        # chunk input
    Tr = torch.bmm(kd, W).neg_()                                                  # chunk transition:
    Tr.diagonal(0, 1, 2).add_(decay)                                              #   Diag(e^{b_C}) - kd W
    Tr = Tr.view(N, BH, K, K)
    del kd, decay
    if torch.is_grad_enabled() and (Tr.requires_grad or R.requires_grad):
        S = R.new_zeros(BH, K, V) if initial_state is None else initial_state.float().reshape(BH, K, V)
        states = [S]
        for n in range(N - 1):
            S = torch.baddbmm(R[n], Tr[n], S)
            states.append(S)
        S_prev = torch.stack(states, 0)
        S_last = torch.baddbmm(R[N - 1], Tr[N - 1], S) if final_state else None
        del states, S
    else:
        S_prev = R.new_empty(N, BH, K, V)
        if initial_state is None:
            S_prev[0].zero_()
        else:
            S_prev[0].copy_(initial_state.reshape(BH, K, V))
        for n in range(N - 1):
            torch.baddbmm(R[n], Tr[n], S_prev[n], out=S_prev[n + 1])
        S_last = torch.baddbmm(R[N - 1], Tr[N - 1], S_prev[N - 1]) if final_state else None
    del Tr, R
    S_prev = S_prev.view(Z, K, V)
    v_new = torch.baddbmm(U, W, S_prev, alpha=-1.0)                               # U - W S
    del W, U
    o = torch.baddbmm(torch.bmm(A[:, :, 0], v_new), q_e, S_prev)
    del A, v_new, q_e, S_prev
    o = o.view(N, B, H, C, V).movedim(0, 1).movedim(3, 2).reshape(B, N * C, H, V)
    if final_state:
        return o[:, :T].to(v.dtype), S_last.view(B, H, K, V)
    return o[:, :T].to(v.dtype)


def analytic_flops(T: int, K: int, V: int, *, delta: bool, C: int = CHUNK) -> float:
    """Forward matmul FLOPs per (batch, head) of the chunkwise algorithm (T padded to C).

    Without the delta rule: ``chunked.gla_flops`` (``2C(K+V) + 4KV`` per token). With it (fla's
    chunk_* kernels do the same work): ``2CK + C(K+V) + 6KV + CV`` per token -- the scores Aqk and
    Akk, the triangular solves for W and U, ``U - W S``, the state update and ``Q S``, ``Aqk V~``.
    Elementwise gating and exponentials are not counted.
    """
    Tp = C * math.ceil(T / C)
    if not delta:
        return ck.gla_flops(T, K, V, C)
    return float(Tp * (2 * C * K + C * (K + V) + 6 * K * V + C * V))


__all__ = ["CHUNK", "SUB_CHUNK", "chunkwise", "scalar_chunked", "delta_chunkwise", "analytic_flops"]
