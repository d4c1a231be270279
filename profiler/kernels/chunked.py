"""Chunkwise-parallel building blocks shared by the linear-attention kernels (pure PyTorch).

The public kernels take ``(B, T, H, D)``. These helpers work in a *chunked, head-major* layout
``(B, H, N, C, D)``: ``N = ceil(T / C)`` chunks of ``C`` tokens, zero-padded at the end
(``to_chunks`` / ``from_chunks``). Padding sits after every real token, so under causal masking it
never reaches a real output; keys and values are padded with zeros, so it adds nothing to any state.

Algorithm (GLA, Yang et al. 2024; FLA.md section 4)
---------------------------------------------------
The recurrence ``S_t = Diag(a_t) S_{t-1} Diag(c_t) + k_t v_t^T``, ``o_t = S_t^T q_t`` with a
key-side gate ``a_t = exp(gk_t)`` and/or a value-side gate ``c_t = exp(gv_t)`` (log gates <= 0) is
evaluated per chunk with ``b`` = the chunk-local *inclusive* cumulative sum of the log gates (so
``b <= 0`` and non-increasing inside a chunk, ``b[-1]`` the whole chunk's decay):

* intra-chunk: ``O = e^{bv} * (tril((Q e^{bk}) (K e^{-bk})^T) (V e^{-bv}))`` -- plain BLAS;
* inter-chunk: ``O += e^{bv} * ((Q e^{bk}) S_{n-1})``;
* state: ``S_n = Diag(e^{bk[-1]}) S_{n-1} Diag(e^{bv[-1]}) + (K e^{bk[-1]-bk})^T (V e^{bv[-1]-bv})``.

Everything except the state recurrence is batched over all chunks; ``scan_states`` is the only
Python loop (``N - 1`` steps on ``(B, H, K, V)`` tensors).

Numerical safety (why this is exact for *any* gate values)
---------------------------------------------------------
The inter-chunk terms and the state update only use ``e^{b}``, ``e^{b[-1]-b}`` and ``e^{b[-1]}``,
whose exponents are all ``<= 0``: they cannot overflow, and if one underflows the true product it
belongs to is smaller still. The intra-chunk factorisation splits ``e^{b_i - b_j}`` (``<= 1``) into
``e^{b_i}`` (``<= 1``) times ``e^{-b_j}`` (``>= 1``, up to ``e^{span}``, ``span = -b[-1]`` the
chunk's total log decay). Both factors stay far from fp32 limits while ``span <= SAFE_SPAN`` (30:
``e^30 ~ 1e13``, so even with both gates and head dim 256 every product stays below ~1e38 for
inputs of magnitude <= 1e3, and no factor is below ``e^-30``, far above fp32's smallest normal).
Chunks whose span exceeds ``SAFE_SPAN`` (rare: in the input ranges the fla layers produce a 64-token
chunk decays by e^-10 at most) are recomputed with exact pairwise decays ``e^{b_i - b_j}``, masked to
``j <= i`` *before* the exponential so every exponent evaluated is ``<= 0``; the fast path sees
those chunks with their gates zeroed, so it stays finite and autograd never meets ``inf * 0``.
The pairwise form costs a ``(C, C, D)`` tensor per such chunk, so adversarial gates are exact but
slower.

All arithmetic is fp32 (inputs are upcast); callers cast the result back to the input dtype.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from profiler.core.lazy import lazy_import
from profiler.kernels.base import require_causal

torch = lazy_import("torch")

if TYPE_CHECKING:
    import torch

#: Default chunk length (tokens). 64 makes every intra-chunk matmul 64 x 64 x D.
CHUNK = 64
#: Largest within-chunk total log decay handled by the factorised (fast) intra-chunk form.
SAFE_SPAN = 30.0


# ----------------------------------------------------------------------------- inputs and scale

def torch_dtype(dtype) -> "torch.dtype":
    """``'float32'`` / ``torch.float32`` -> ``torch.float32``."""
    return dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype))


def generator(seed: int) -> "torch.Generator":
    """A CPU generator: the same numbers on every device."""
    return torch.Generator(device="cpu").manual_seed(int(seed))


def randn(shape: tuple[int, ...], gen: "torch.Generator") -> "torch.Tensor":
    """fp32 standard normal numbers on the CPU (callers transform, then cast and move)."""
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def scale_of(inputs, D: int) -> float:
    """``inputs["scale"]`` (a python float) if given, else ``D ** -0.5`` as fla's ops."""
    s = inputs.get("scale")
    return float(s) if s is not None else D ** -0.5


def fla_op(kernel: str, module: str, fn_name: str, names: tuple[str, ...] = ("q", "k", "v")):
    """An fla backend's ``run(inputs, causal)``: ``<module>.<fn_name>(*inputs[names], scale=...)``.

    Causal only (every fla op is); fla is imported on the first call, never at registry import.
    The op's output tensor is returned (its final state, if any, is dropped).
    """
    def run(inputs, causal: bool = True):
        require_causal(causal, f"{kernel}/{fn_name}")

        op = getattr(importlib.import_module(module), fn_name)
        kw = {"cu_seqlens": inputs["cu_seqlens"]} if "cu_seqlens" in inputs else {}   # a packed varlen batch
        out = op(*(inputs[n] for n in names), scale=scale_of(inputs, inputs["q"].shape[-1]), **kw)
        return out[0] if isinstance(out, tuple) else out

    run.__name__ = f"run_{fn_name}"
    return run


# ----------------------------------------------------------------------------- layout

def num_chunks(T: int, C: int) -> int:
    return -(-T // C)


def to_chunks(x: "torch.Tensor", C: int, *, pad: "str | float" = "zero") -> "torch.Tensor":
    """``(B, T, H, D)`` -> fp32 contiguous ``(B, H, N, C, D)``; ``(B, T, H)`` -> ``(B, H, N, C)``.

    ``pad="zero"`` fills the tail with zeros; ``pad="edge"`` repeats the last token (for cumulative
    quantities, so the padded tail adds no decay); a float fills with that value (e.g. ``-inf`` for
    logits that must carry no mass).
    """
    B, T, H = x.shape[:3]
    N = num_chunks(T, C)
    x = x.float().transpose(1, 2)  # (B, H, T, ...)
    extra = N * C - T
    if extra:
        if pad == "edge":
            tail = x[:, :, -1:].expand(*x.shape[:2], extra, *x.shape[3:])
        else:
            tail = x.new_full((*x.shape[:2], extra, *x.shape[3:]), 0.0 if pad == "zero" else float(pad))
        x = torch.cat([x, tail], dim=2)
    return x.reshape(B, H, N, C, *x.shape[3:]).contiguous()


def from_chunks(xc: "torch.Tensor", T: int, dtype=None) -> "torch.Tensor":
    """``(B, H, N, C, D)`` -> ``(B, T, H, D)`` (drops the padding), optionally cast to ``dtype``."""
    B, H, N, C, D = xc.shape
    out = xc.reshape(B, H, N * C, D)[:, :, :T].transpose(1, 2)
    return out if dtype is None else out.to(dtype)


def chunk_local_cumsum(gc: "torch.Tensor") -> "torch.Tensor":
    """Inclusive cumulative sum of per-step log gates within each chunk of ``(B, H, N, C, K)``."""
    return gc.cumsum(dim=-2)


# ----------------------------------------------------------------------------- recurrence

def advance(S: "torch.Tensor", U: "torch.Tensor", decay=None, out: "torch.Tensor | None" = None) -> "torch.Tensor":
    """``decay * S + U``: the state recurrence of every linear mechanism, per token (``recurrent.step``, in
    place: ``out=S``) and per chunk (``scan_states``). ``decay`` broadcasts to S (None: no decay).
    ``out`` None returns a new tensor (the form autograd can differentiate)."""
    if out is None:
        return S + U if decay is None else torch.addcmul(U, S, decay)
    if decay is None:
        return torch.add(S, U, out=out)
    return torch.addcmul(U, S, decay, out=out)


def scan_states(U: "torch.Tensor", decay_k=None, decay_v=None) -> "torch.Tensor":
    """States *entering* each chunk: ``S_{-1} = 0``, ``S_n = Diag(dk_n) S_{n-1} Diag(dv_n) + U_n``.

    ``U``: ``(B, H, N, K, V)`` per-chunk contributions. ``decay_k``: ``(..., N, K, 1)`` and/or
    ``decay_v``: ``(..., N, 1, V)`` multiplicative chunk decays (broadcastable, chunk axis at -3,
    of length N or 1). Each step is ``recurrent.advance``, the state update the decode step runs per
    token. Returns ``(B, H, N, K, V)`` whose entry ``n`` is ``S_{n-1}``. This is the only
    Python loop of the chunkwise algorithm (``N - 1`` steps). Without autograd the states are written
    into one preallocated tensor; with autograd they are stacked (list + stack briefly hold two copies).
    """
    N = U.shape[2]
    if decay_k is not None and decay_v is not None:
        decay = decay_k * decay_v
    else:
        decay = decay_k if decay_k is not None else decay_v

    def d(n):
        return decay.select(-3, n if decay.shape[-3] > 1 else 0)

    grad = torch.is_grad_enabled() and (U.requires_grad or (decay is not None and decay.requires_grad))
    if not grad:
        out = torch.empty_like(U)
        out[:, :, 0].zero_()
        for n in range(N - 1):
            advance(out[:, :, n], U[:, :, n], None if decay is None else d(n), out=out[:, :, n + 1])
        return out
    Us = U.unbind(2)
    S = torch.zeros_like(Us[0])
    states = [S]
    for n in range(N - 1):
        S = advance(S, Us[n], None if decay is None else d(n))
        states.append(S)
    return torch.stack(states, dim=2)


def pairwise_intra(q, k, v, bk=None, bv=None) -> "torch.Tensor":
    """Exact intra-chunk output of a few chunks ``(n, C, D)`` with pairwise decays ``e^{b_i - b_j}``.

    The exponent is masked to ``-inf`` for ``j > i`` *before* ``exp``, so every exponential evaluated
    is ``<= 0``: exact for any gate. Costs an ``(n, C, C, D)`` tensor; used only for chunks whose total
    decay is too large for the factorised form.
    """
    C = q.shape[-2]
    upper = torch.ones(C, C, dtype=torch.bool, device=q.device).triu_(1)  # j > i
    if bk is not None:
        dk = (bk[:, :, None, :] - bk[:, None, :, :]).masked_fill(upper[:, :, None], float("-inf"))
        A = (q[:, :, None, :] * k[:, None, :, :] * dk.exp()).sum(-1)
    else:
        A = (q @ k.transpose(-1, -2)).tril()
    if bv is not None:
        dv = (bv[:, :, None, :] - bv[:, None, :, :]).masked_fill(upper[:, :, None], float("-inf"))
        return (A[..., None] * v[:, None, :, :] * dv.exp()).sum(2)
    return A @ v


@dataclass
class ChunkGate:
    """The exponential factors of one chunk-local cumulative log gate ``b`` ``(B, H, N, C, D)``.

    Built once by ``chunk_gate`` and reusable by several GLA passes that share the gate (GSA).
    ``exp_b = e^{b}`` and ``exp_to_end = e^{b[-1]-b}`` (both <= 1), ``exp_last = e^{b[-1]}``
    ``(B, H, N, 1, D)``, ``exp_neg_b = e^{-b}`` computed with the gate zeroed in the chunks listed in
    ``bad`` (flat ``B*H*N`` indices, or None), whose span ``-min b`` exceeds ``SAFE_SPAN``; ``b`` itself
    is kept for the exact pairwise form of those chunks.
    """

    b: "torch.Tensor"
    exp_b: "torch.Tensor"
    exp_neg_b: "torch.Tensor"
    exp_to_end: "torch.Tensor"
    exp_last: "torch.Tensor"
    bad: "torch.Tensor | None"


def chunk_gate(b: "torch.Tensor", safe_span: float = SAFE_SPAN) -> ChunkGate:
    """Factors of the chunk-local inclusive cumulative log gate ``b`` (``<= 0``, non-increasing)."""
    last = b[..., -1:, :]
    span = (-last).amax(dim=(-1, -2))  # (B, H, N)
    bad_mask = span > safe_span
    bad = bad_mask.reshape(-1).nonzero().squeeze(1) if bool(bad_mask.any()) else None
    exp_b, exp_last = b.exp(), last.exp()
    if bad is None:
        # span <= SAFE_SPAN: e^{-b} = 1 / e^{b} <= e^30 and e^{b[-1]-b} = e^{b[-1]} e^{-b} <= 1, both
        # within an ulp or two of the direct exponentials and cheaper than two more exp passes
        neg = exp_b.reciprocal()
        to_end = neg * exp_last
    else:
        neg = (-b * (~bad_mask)[..., None, None].to(b.dtype)).exp()
        to_end = (last - b).exp()
    return ChunkGate(b=b, exp_b=exp_b, exp_neg_b=neg, exp_to_end=to_end, exp_last=exp_last, bad=bad)


def key_gated_core(qg, kf, kd, v, decay_k=None) -> "torch.Tensor":
    """The batched GLA core once the key-side factors are applied (all ``(B, H, N, C, .)``, fp32).

    ``qg = Q e^{b}``, ``kf = K e^{-b}``, ``kd = K e^{b[-1]-b}``, ``decay_k = e^{b[-1]}`` as
    ``(B, H, N, K, 1)`` (None: no decay). Returns ``(tril(qg kf^T) V + qg S_{n-1}, S)`` with ``S`` the
    entering states ``(B, H, N, K, V)``.
    """
    B, H, N, C, K = qg.shape
    V = v.shape[-1]
    S = scan_states(kd.transpose(-1, -2) @ v, decay_k)
    A = (qg @ kf.transpose(-1, -2)).tril_()
    o = A @ v
    del A
    return o.view(-1, C, V).baddbmm_(qg.reshape(-1, C, K), S.view(-1, K, V)).view(B, H, N, C, V), S


def gla_chunked(q, k, v, gk: ChunkGate | None = None, gv: ChunkGate | None = None) -> "torch.Tensor":
    """Chunkwise gated linear attention in the chunked layout; exact for any gates (module doc).

    ``q, k``: ``(B, H, N, C, K)``; ``v``: ``(B, H, N, C, V)`` (fp32; scale already applied to q).
    ``gk`` / ``gv``: the key-side / value-side gate (``chunk_gate`` of the chunk-local cumulative log
    gate, ``(B, H, N, C, K)`` / ``(B, H, N, C, V)``), or None. Returns ``(B, H, N, C, V)``:
    ``o_t = sum_{s<=t} (q_t . (k_s e^{Gk_t-Gk_s})) (v_s e^{Gv_t-Gv_s})``, ``G`` the global cumsums.

    Big fp32 intermediates (each over all chunks): the gated copies of q, k (and v with ``gv``), the
    ``(C, C)`` scores, the state contributions and entering states (``(K, V)`` per chunk), the output.
    """
    B, H, N, C, K = q.shape
    V = v.shape[-1]
    if gv is None:
        qg = q
        if gk is None:
            o, S = key_gated_core(q, k, k, v)
        else:
            qg = q * gk.exp_b
            o, S = key_gated_core(qg, k * gk.exp_neg_b, k * gk.exp_to_end, v, gk.exp_last.transpose(-1, -2))
    else:
        if gk is not None:
            raise NotImplementedError("gla_chunked: gates on both sides are not needed by any kernel here")
        # value-side gate: o = e^{bv} * (tril(Q K^T) (V e^{-bv}) + Q S), S decays along V
        S = scan_states(k.transpose(-1, -2) @ (v * gv.exp_to_end), None, gv.exp_last)
        A = (q @ k.transpose(-1, -2)).tril_()
        o = A @ (v * gv.exp_neg_b)
        del A
        o = o.view(-1, C, V).baddbmm_(q.reshape(-1, C, K), S.view(-1, K, V)).view(B, H, N, C, V)
        o = o * gv.exp_b
        qg = q
    bad = None
    for g in (gk, gv):
        if g is not None and g.bad is not None:
            bad = g.bad if bad is None else torch.unique(torch.cat([bad, g.bad]))
    if bad is not None:
        def rows(x):
            return None if x is None else x.reshape(B * H * N, C, x.shape[-1]).index_select(0, bad)

        inter = rows(qg) @ S.reshape(B * H * N, K, V).index_select(0, bad)
        if gv is not None:
            inter = inter * rows(gv.exp_b)
        exact = pairwise_intra(rows(q), rows(k), rows(v), rows(gk.b if gk else None), rows(gv.b if gv else None))
        o = o.reshape(B * H * N, C, V).index_copy(0, bad, exact + inter).view(B, H, N, C, V)
    return o


def decay_chunked(q, k, v, log_gamma: "torch.Tensor", scale: float = 1.0) -> "torch.Tensor":
    """Chunkwise linear attention with a constant scalar decay per head (RetNet / simple GLA).

    ``q, k``: ``(B, H, N, C, K)``, ``v``: ``(B, H, N, C, V)`` (fp32); ``log_gamma``: ``(H,)`` log decays
    ``<= 0``; ``scale`` multiplies ``q . k``. Uses ``D_ij = gamma^{i-j} [j <= i]`` inside a chunk,
    ``Q gamma^{i+1}`` against the entering state and ``K gamma^{C-1-j}`` for the state update; every
    exponent is ``<= 0``, so this is safe for any decay. The scale is folded into those factors.

    Big fp32 intermediates: ``K gamma^{C-1-j}`` (freed once the state contributions exist), the state
    contributions and entering states (``(K, V)`` per chunk), the scores ``(C, C)`` per chunk, the
    gated q, and the output.
    """
    B, H, N, C, K = q.shape
    lg = log_gamma.to(device=q.device, dtype=torch.float64)
    i = torch.arange(C, device=q.device, dtype=torch.float64)
    diff = i[:, None] - i[None, :]
    Dm = (diff[None] * lg[:, None, None]).masked_fill(diff[None] < 0, float("-inf")).exp() * scale
    Dm = Dm.to(torch.float32)[None, :, None]                                  # (1, H, 1, C, C)
    q_in = (((i + 1)[None] * lg[:, None]).exp() * scale).to(torch.float32)[None, :, None, :, None]
    k_out = ((C - 1 - i)[None] * lg[:, None]).exp().to(torch.float32)[None, :, None, :, None]
    chunk_decay = (C * lg).exp().to(torch.float32)[None, :, None, None, None]  # (1, H, 1, 1, 1)
    kd = k * k_out
    U = kd.transpose(-1, -2) @ v
    del kd
    S = scan_states(U, chunk_decay)
    del U
    A = (q @ k.transpose(-1, -2)).mul_(Dm)
    o = A @ v
    del A
    V = v.shape[-1]
    return o.view(-1, C, V).baddbmm_((q * q_in).view(-1, C, K), S.view(-1, K, V)).view(B, H, N, C, V)


# ----------------------------------------------------------------------------- analytic helpers

def gla_flops(T: int, K: int, V: int, C: int = CHUNK) -> float:
    """Matmul FLOPs per (batch, head) of one chunkwise GLA pass over ``T`` tokens (padded to C).

    Per chunk: ``Q K^T`` 2C^2K, ``A V`` 2C^2V, ``Q S`` 2CKV, ``K^T V`` 2CKV (2 FLOPs per
    multiply-add); elementwise gating, exponentials and the state decay are not counted.
    """
    Tp = num_chunks(T, C) * C
    return Tp * (2.0 * C * (K + V) + 4.0 * K * V)


def padded_T(T: int, C: int = CHUNK) -> int:
    return num_chunks(T, C) * C


def torch_peak_terms(shape, itemsize: int, C: int = CHUNK) -> tuple[int, int, int, int]:
    """Units of the torch backends' memory models: ``(a, st, sc, io)`` in bytes.

    ``a``: one fp32 chunked (B, H, Tp, D) tensor; ``st``: fp32 (D, D) states of all N chunks;
    ``sc``: fp32 (C, C) scores of all chunks; ``io``: one (B, T, H, D) tensor in the input dtype.
    """
    Tp = padded_T(shape.T, C)
    BH = shape.B * shape.H
    a = BH * Tp * shape.D * 4
    st = BH * (Tp // C) * shape.D * shape.D * 4
    sc = BH * Tp * C * 4
    return a, st, sc, shape.B * shape.T * shape.H * shape.D * itemsize


__all__ = [
    "CHUNK", "SAFE_SPAN", "ChunkGate", "advance", "torch_dtype", "generator", "randn", "scale_of", "num_chunks",
    "to_chunks", "from_chunks", "chunk_local_cumsum", "chunk_gate", "scan_states", "pairwise_intra",
    "key_gated_core", "gla_chunked", "decay_chunked", "gla_flops",
    "padded_T", "torch_peak_terms",
]
