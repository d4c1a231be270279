"""fla families whose memory is not one decayed K x V state, as declarative kernels (issue 17 item 2).

=================  ===============================================  ==========================================
kernel             memory                                           CPU ``torch`` backend
=================  ===============================================  ==========================================
log_linear_attn    a Fenwick tree of decayed K x V states: key j    chunkwise, O(T log T): exact C x C tiles
                   reaches query i through level                    inside a chunk, per-level block states
                   ``bit_length(i XOR j)``, weighted by the         across chunks (``_log_linear_torch``)
                   query's per-level scale
ttt                TTT-Linear's inner model (W, b), trained on      the mini-batch dual form (16 tokens), a
                   each 16-token mini-batch by one gradient step    loop over T/16 mini-batches (``_ttt_torch``)
                   of a layer-normed reconstruction loss
cyfa               aligned key and value memories over M relative-  two scalar-decay linear-attention passes of
                   time slots, moved along by a learned clock,      the shared engine (``chunkwise.py``) with the
                   read through a softmax over the slots            slot rotation and readout between them
=================  ===============================================  ==========================================

Each row is a ``catalog_attn.AttnFamily`` (inputs in the value ranges the matching layer produces, the fla
backends, an fp32 reference, a timed CPU backend, FLOP / byte / memory models, a report group) turned into a
``KernelSpec`` by ``catalog_attn.kernel``. ``KERNELS`` reaches the registry after ``catalog_attn``'s;
``COVERED`` and ``NO_CPU`` feed ``profiler.kernels.fla_coverage``. Cheap to import (torch and fla load
lazily).
"""

from __future__ import annotations

import contextlib
import importlib
import math
from typing import TYPE_CHECKING

from profiler.core.lazy import lazy_import
from profiler.kernels import chunked as ck
from profiler.kernels import chunkwise as cw
from profiler.kernels import interpret
from profiler.kernels.base import KernelSpec, Shape
from profiler.kernels.catalog import _mamba_dt_bias, _mamba_gate, _naive, _randn
from profiler.kernels.catalog_attn import AttnFamily, FlaOp, kernel

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

if TYPE_CHECKING:
    import torch


# ----------------------------------------------------------------------------- log-linear attention

LL_CHUNK = 64                 # chunk_log_linear_attn's chunk (BT) and its key block (BLOCK_K)
LL_INTRA_LEVELS = 7           # levels inside a 64-token chunk: log2(64) + 1
LL_LAYER_LEVELS = 15          # LogLinearMamba2's MAX_NUM_LEVELS: ceil(log2(16384)) + 1
LL_MAX_T = 64 * 2048          # chunk_log_linear_attn raises beyond 2048 chunks ("less than 2**17")


def ll_levels(T: int) -> int:
    """Level scales per token: the layer's 15, or ``ceil(log2 T) + 1`` where T exceeds the layer's 16384
    (so that no level, i.e. no key, gets a zero weight)."""
    return max(LL_LAYER_LEVELS, math.ceil(math.log2(max(T, 1))) + 1)


def ll_level(i: int, j: int) -> int:
    """The Fenwick level through which key ``j <= i`` reaches query ``i``: ``bit_length(i XOR j)`` (0: itself)."""
    return (i ^ j).bit_length()


def _ll_inputs(s: Shape, gen) -> dict:
    """``LogLinearMamba2`` (n_groups = 1) at init: q = C and k = B are ``silu`` of the short convolution's
    output (one group shared by the H heads, D = the state size), ``v = x * dt`` with ``x = silu(.)``
    (Dv = the head dim), ``dt = softplus(. + dt_bias)`` (Mamba init), the Mamba2 decay
    ``g = A dt`` with ``A = -exp(A_log) = -(1, ..., H)`` (fp32, as the layer hands it over) and the
    per-level scales ``softplus(L * dl)`` with ``L = 1`` at init (``ll_levels(T)`` levels); projections
    N(0, 1)."""
    q, k = (F.silu(_randn(gen, s.B, s.T, 1, s.D)) for _ in range(2))
    x = F.silu(_randn(gen, s.B, s.T, s.H, s.Dv))
    dt = F.softplus(_randn(gen, s.B, s.T, s.H) + _mamba_dt_bias(s.H, gen))
    A = -torch.arange(1, s.H + 1, dtype=torch.float32)
    lam = F.softplus(_randn(gen, s.B, s.T, s.H, ll_levels(s.T)))
    return {"q": q, "k": k, "v": x * dt[..., None], "g": A * dt, "level_scales": lam}


def _ll_backend_check(backend: str, s: Shape) -> str | None:
    """chunk_log_linear_attn's own limits (the torch backend takes any shape)."""
    if backend == "torch":
        return None
    if s.D % LL_CHUNK:
        return (f"log_linear_attn/{backend}: key (state) dim {s.D} must be a multiple of {LL_CHUNK} "
                "(chunk_log_linear_attn); use --head-dim 64 or 128")
    if s.Dv & (s.Dv - 1):
        return f"log_linear_attn/{backend}: value dim {s.Dv} must be a power of two (chunk_log_linear_attn)"
    if s.T > LL_MAX_T:
        return f"log_linear_attn/{backend}: T={s.T} exceeds chunk_log_linear_attn's limit of {LL_MAX_T}"
    return None


def _ref_log_linear(x: dict, scale: float) -> "torch.Tensor":
    """fla ``naive_log_linear_attn`` in fp64 (T x T: the hierarchical mask times the Mamba2 decays
    ``exp(segsum(g))``; fp64 because its segsum subtracts global cumsums), fp32 out."""
    o = _naive("fla.ops.log_linear_attn.naive", "naive_log_linear_attn")(
        *(x[n].double() for n in ("q", "k", "v", "g", "level_scales")), scale=scale)
    return o.float()


def _ll_lut(C: int, device) -> "torch.Tensor":
    """(C, C) int64: ``bit_length(i XOR j)``, the level of each (query, key) pair inside an aligned chunk."""
    i = torch.arange(C, device=device)
    x = i[:, None] ^ i[None, :]
    lut = torch.zeros(C, C, dtype=torch.long, device=device)
    for b in range(C.bit_length()):
        lut += (x >= (1 << b)).long()
    return lut


def _log_linear_torch(x: dict, scale: float) -> "torch.Tensor":
    """Log-linear attention chunkwise (C = 64), fp32, O(T log T) time and O(T) memory.

    ``o_i = scale sum_{j <= i} lambda_i[l(i, j)] exp(G_i - G_j) (q_i . k_j) v_j`` with ``l(i, j) =
    bit_length(i XOR j)`` and ``G`` the cumulative log decay. Inside a chunk the levels are 0..6: exact
    (C, C) tiles ``(Q K^T) * exp(b_i - b_j) * lambda_i[l(i, j)]`` (b: the chunk-local cumsum). A key in an
    earlier chunk is at level ``7 + m``, m the highest bit in which the chunk indices differ: the query's
    chunk n has bit m set and the key lies in the aligned block of ``2^m`` chunks just before n's. So per
    level m: block states ``W_m`` (each block's ``sum exp(G_end - G_j) k_j v_j^T``, built pairwise from
    the per-chunk states, decays composed without subtraction), read by the chunks with bit m set with
    ``exp(b_i + E)``, E the decay from the block's end to the chunk's start (an exclusive cumsum of the
    chunk totals within the group): each chunk reads popcount(n) states, as fla's kernel does.
    q, k may have fewer (group) heads than v; they are shared by ``H / G`` consecutive heads."""
    C = LL_CHUNK
    q, k, v, g, lam = x["q"], x["k"], x["v"], x["g"], x["level_scales"]
    B, T, G = q.shape[:3]
    H, L = v.shape[2], lam.shape[-1]
    R, N = H // G, ck.num_chunks(T, C)
    if L < LL_INTRA_LEVELS:
        lam = F.pad(lam, (0, LL_INTRA_LEVELS - L))
    qc, kc = ck.to_chunks(q, C)[:, :, None], ck.to_chunks(k, C)[:, :, None]   # (B, G, 1, N, C, K)

    def heads(t):
        c = ck.to_chunks(t, C)
        return c.view(B, G, R, *c.shape[2:])

    vc, lc = heads(v), heads(lam)                      # (B, G, R, N, C, V), (B, G, R, N, C, L)
    b = heads(g).cumsum(-1)                            # (B, G, R, N, C) chunk-local inclusive cumsum
    lut = _ll_lut(C, q.device)
    tril = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    decay = (b[..., :, None] - b[..., None, :]).masked_fill(~tril, float("-inf")).exp()
    A = (qc @ kc.transpose(-1, -2)) * decay
    del decay
    A = A * lc.gather(-1, lut.expand(*lc.shape[:-1], C))
    o = A @ vc
    del A
    a = b[..., -1]                                     # chunk totals (B, G, R, N)
    W = (kc * (a[..., None] - b).exp()[..., None]).transpose(-1, -2) @ vc    # per-chunk states (.., N, K, V)
    tot, m, n = a, 0, torch.arange(N, device=q.device)
    while (1 << m) < N:
        span, lev = 1 << m, LL_INTRA_LEVELS + m
        sel = n[((n >> m) & 1) == 1]
        if lev < lam.shape[-1]:
            ag = F.pad(a, (0, (-N) % span)).view(*a.shape[:-1], -1, span)
            E = F.pad(ag[..., :-1], (1, 0)).cumsum(-1).reshape(*a.shape[:-1], -1)[..., :N]
            coef = ((E.index_select(-1, sel)[..., None] + b.index_select(3, sel)).exp()
                    * lc[..., lev].index_select(3, sel))                     # (B, G, R, Ns, C)
            read = (qc.index_select(3, sel) * coef[..., None]) @ W.index_select(3, (sel >> m) - 1)
            o = o.index_add(3, sel, read)
        if (2 << m) < N:                               # the next level's blocks: pairs of this level's
            if W.shape[3] % 2:
                W, tot = F.pad(W, (0, 0, 0, 0, 0, 1)), F.pad(tot, (0, 1))
            W = W[..., 1::2, :, :] + tot[..., 1::2, None, None].exp() * W[..., 0::2, :, :]
            tot = tot[..., 0::2] + tot[..., 1::2]
        m += 1
    return ck.from_chunks(o.reshape(B, H, N, C, -1) * scale, T)


def _ll_reads(N: int) -> int:
    """State reads of all N chunks: sum of popcount(n) for n < N (chunks with bit m set, per level)."""
    total, m = 0, 0
    while (1 << m) < N:
        total += (N >> (m + 1)) << m
        total += max(0, (N & ((2 << m) - 1)) - (1 << m))
        m += 1
    return total


def _ll_flops(s: Shape) -> float:
    """Matmul FLOPs per (batch, head), T padded to C = 64: per chunk the (C, C) tile ``Q K^T`` and ``A V``
    (``2C^2(K+V)``) and its state ``K^T V`` (``2CKV``); per chunk n, ``popcount(n)`` level reads ``Q W``
    (``2CKV`` each): O(T log T). Decays, level weights and the pairwise state sums are not counted."""
    C, N = LL_CHUNK, ck.num_chunks(s.T, LL_CHUNK)
    per_bh = N * (2.0 * C * C * (s.D + s.Dv) + 2.0 * C * s.D * s.Dv) + _ll_reads(N) * 2.0 * C * s.D * s.Dv
    return s.B * s.H * per_bh


def _ll_io(s: Shape, itemsize: int) -> float:
    """Read q, k (one group), v, the fp32 g, the level scales; write o."""
    return float(s.B * s.T * ((2 * s.D + 2 * s.H * s.Dv + s.H * ll_levels(s.T)) * itemsize + s.H * 4))


def _ll_memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
    """torch forward: the fp32 chunked v, level scales, g and its cumsum (q, k of the one group are views
    when T is a multiple of 64 and fp32, else copies), then the larger of the intra-chunk stage (three
    (C, C) tiles per chunk and head alive at once, plus the group's ``Q K^T``) and the level stage (output,
    the key-side decayed keys and the chunk states; then per level the reads, a new output and the pairwise
    block states): checked against torch.profiler peaks in the tests. fwd+bwd (structural): autograd keeps
    the tiles and every level's tensors, plus the input gradients. fla: its (T, H, K/64, V) partial outputs
    in the input dtype, their sum, the fp32 chunk-local cumsum of g; fwd+bwd adds the input gradients and the
    same again."""
    B, T, H, K, V, C = s.B, s.T, s.H, s.D, s.Dv, LL_CHUNK
    Tp, N = ck.padded_T(T, C), ck.num_chunks(T, C)
    L = max(ll_levels(T), LL_INTRA_LEVELS)
    grads = B * T * (2 * K + H * (V + 1 + L)) * itemsize
    if backend == "torch":
        copies = 0 if (Tp == T and itemsize == 4) else 2 * 4 * B * Tp * K
        chunks = copies + 4 * B * H * Tp * (V + L + 2)
        tile, qk = 4 * B * H * Tp * C, 4 * B * Tp * C
        out, keys, st = 4 * B * H * Tp * V, 4 * B * H * Tp * K, 4 * B * H * N * K * V
        level = max(out + keys + st, 2.5 * out + 1.5 * st + keys / 2)
        fwd = chunks + max(3 * tile + qk, level)
        if mode == "fwd":
            return int(fwd)
        levels = max(1, math.ceil(math.log2(max(N, 1))))
        return int(chunks + 4 * tile + levels * (out + st + keys) + grads + fwd)
    fwd = B * T * H * V * itemsize * (K // LL_CHUNK + 1) + B * T * H * 4
    return int(fwd + (grads + fwd if mode in ("fwdbwd", "bwd") else 0))


# ----------------------------------------------------------------------------- TTT-Linear

TTT_MINI_BATCH = 16           # TTT-Linear's mini_batch_size; chunk_ttt_linear's chunk_size
TTT_EPS = 1e-6                # the inner LayerNorm's eps (TTT-Linear; fla's default)
TTT_BASE_LR = 1.0             # TTT-Linear's ttt_base_lr
#: the fla backends' dtypes: fp16 fwd+bwd overflows in d eta (the exact gradient exceeds fp16's range)
TTT_DTYPES = ("float32", "bfloat16")


def _ttt_inputs(s: Shape, gen) -> dict:
    """TTT-Linear (Sun et al. 2024, ttt-lm-pytorch ``TTTLinear``; fla 0.6.0 ships the ops but no layer) at
    init: q, k, v ~ N(0, 1) projections (RoPE over positions mod 16 keeps that distribution); fla's per-token
    learning rate ``eta_t = base_lr sigmoid(x_t . w_lr) / D`` times TTT's token factor ``1 / (1 + t mod 16)``
    (``x . w_lr ~ N(0, 1)``: w_lr ~ N(0, 0.02) over ~2k channels; TTT-Linear's own eta is the (query, key)
    product ``token_i lr_j``, fla's op takes one per token); the inner LayerNorm's weight and bias
    (H, D) at their init 1 and 0 plus a 0.1 N(0, 1) spread (a trained layer's; it keeps the affine path
    exercised); the inner model's initial weights ``W1 ~ N(0, 0.02)`` (H, D, D) tiled over the batch and
    ``b1 = 0``, fp32 as fla takes them."""
    B, T, H, D = s.B, s.T, s.H, s.D
    q, k, v = (_randn(gen, B, T, H, D) for _ in range(3))
    token = 1.0 / (1.0 + (torch.arange(T, dtype=torch.float32) % TTT_MINI_BATCH))
    eta = (TTT_BASE_LR * torch.sigmoid(_randn(gen, B, T, H)) / D * token[None, :, None])[..., None]
    w = 1.0 + 0.1 * _randn(gen, H, D)
    b = 0.1 * _randn(gen, H, D)
    h0 = (0.02 * _randn(gen, H, D, D)).expand(B, H, D, D).contiguous()
    return {"q": q, "k": k, "v": v, "eta": eta, "w": w, "b": b, "h0": h0, "hb0": torch.zeros(B, H, 1, D)}


def _ttt_check(s: Shape) -> str | None:
    if s.value_dim and s.value_dim != s.D:
        return "ttt: the value dim must equal the key dim (TTT-Linear's inner model is D x D)"
    return None


def _ttt_call(fn, args: dict):
    """fla's TTT ops take the inner model's initial state as ``initial_state`` / ``initial_state_bias``."""
    h0, hb0 = args.pop("h0"), args.pop("hb0")
    return fn(**args, initial_state=h0, initial_state_bias=hb0, eps=TTT_EPS, chunk_size=TTT_MINI_BATCH)


def _ref_ttt(x: dict, scale: float) -> "torch.Tensor":
    """fla ``chunk_ttt_linear_ref`` (fp32, a loop over 16-token mini-batches; it scales q in place, so it
    gets a copy)."""
    o, _, _ = _naive("fla.ops.ttt.naive", "chunk_ttt_linear_ref")(
        x["q"].clone(), x["k"], x["v"], x["w"], x["b"], x["eta"], scale=scale, eps=TTT_EPS,
        mini_batch_size=TTT_MINI_BATCH, initial_state=x["h0"], initial_state_bias=x["hb0"])
    return o


def _layer_norm(x: "torch.Tensor", eps: float) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(normalised x, 1 / std) over the last dim (biased variance)."""
    xc = x - x.mean(-1, keepdim=True)
    rstd = (xc.pow(2).mean(-1, keepdim=True) + eps).rsqrt()
    return xc * rstd, rstd


def _ttt_torch(x: dict, scale: float) -> "torch.Tensor":
    """TTT-Linear's mini-batch dual form (16 tokens), fp32: per mini-batch, with the inner model (W, b)
    from the previous one, ``Z = K W + b``, the gradient of ``|LN(Z) w + b_ln - (V - K)|^2 / 2`` through
    the LayerNorm, ``G = (D g - sum g - Zhat (g . Zhat)) rstd / D`` with ``g = w (LN(Z) w + b_ln - V + K)``;
    ``o_i = q_i W + b - eta_i sum_{j <= i} (q_i . k_j + 1) G_j``; then ``W -= eta_last K^T G``,
    ``b -= eta_last sum G``; output ``o + LN(o) w + b_ln``. A loop over T/16 mini-batches (each one
    trains on the previous one's result), batched over B and H."""
    C = TTT_MINI_BATCH
    q, k, v = (x[n] for n in ("q", "k", "v"))
    T, D = q.shape[1], q.shape[-1]
    qc, kc, vc = ck.to_chunks(q.float() * scale, C), ck.to_chunks(k, C), ck.to_chunks(v, C)   # (B, H, N, C, D)
    ec = ck.to_chunks(x["eta"], C, pad="edge")                  # (B, H, N, C, 1): the last real eta carries on
    w, bl = x["w"].float()[:, None, :], x["b"].float()[:, None, :]                # (H, 1, D)
    h, hb = x["h0"].float(), x["hb0"].float()
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    outs = []
    for i in range(qc.shape[2]):
        qi, ki, vi, ei = qc[:, :, i], kc[:, :, i], vc[:, :, i], ec[:, :, i]
        zhat, rstd = _layer_norm(ki @ h + hb, TTT_EPS)
        gr = (zhat * w + bl - (vi - ki)) * w
        G = (D * gr - gr.sum(-1, keepdim=True) - zhat * (gr * zhat).sum(-1, keepdim=True)) * rstd / D
        A = ((qi @ ki.transpose(-1, -2)) + 1.0).masked_fill(~causal, 0.0)
        o = qi @ h + hb - ei * (A @ G)
        e_last = ei[:, :, -1:]                                  # (B, H, 1, 1)
        h = h - (e_last * ki).transpose(-1, -2) @ G
        hb = hb - (e_last * G).sum(-2, keepdim=True)
        outs.append(o + _layer_norm(o, TTT_EPS)[0] * w + bl)
    return ck.from_chunks(torch.stack(outs, 2), T)


def _ttt_flops(s: Shape) -> float:
    """Matmul FLOPs per token and head (T padded to 16): ``K W`` and ``Q W`` (``2D^2`` each), the state
    update ``K^T G`` (``2D^2``), the (16, 16) scores and ``A G`` (``2CD`` each); the LayerNorm gradient is
    elementwise and not counted."""
    Tp = ck.padded_T(s.T, TTT_MINI_BATCH)
    return s.B * s.H * Tp * (6.0 * s.D * s.D + 4.0 * TTT_MINI_BATCH * s.D)


def _ttt_io(s: Shape, itemsize: int) -> float:
    """Read q, k, v, eta, w, b and the fp32 initial W, b; write o."""
    BTH = s.B * s.T * s.H
    return float(BTH * (4 * s.D + 1) * itemsize + 2 * s.H * s.D * itemsize + s.B * s.H * (s.D * s.D + s.D) * 4)


def _ttt_memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
    """torch: the fp32 chunked q, k, v, eta, the per-mini-batch outputs and their stack (``6a``, a = one fp32
    (B, H, Tp, D) tensor); fwd+bwd: autograd keeps about a dozen (B, H, 16, D) tensors and the inner (D, D)
    weights of every mini-batch, plus the input gradients. ``fla`` (chunk_ttt_linear): the inner weights at
    every 16-token chunk start (B, T/16, H, D, D) and their biases in the input dtype, the updated values,
    the output and the group-norm residual; ``fla-fused-chunk``: the output and the group-norm residual.
    fwd+bwd adds the input gradients and the forward again. Structural (not fitted)."""
    B, T, H, D = s.B, s.T, s.H, s.D
    Tp, NT = ck.padded_T(T, TTT_MINI_BATCH), ck.num_chunks(T, TTT_MINI_BATCH)
    io = B * T * H * D * itemsize
    grads = 3 * io + B * T * H * itemsize + 2 * H * D * itemsize + B * H * (D * D + D) * 4
    if backend == "torch":
        a = 4 * B * H * Tp * D
        fwd = 6 * a + B * T * H * D * 4
        if mode == "fwd":
            return int(fwd)
        return int(fwd + 12 * a + 2 * B * H * NT * D * D * 4 + grads)
    fwd = 3 * io + (B * NT * H * (D * D + D) * itemsize if backend == "fla" else 0)
    return int(fwd + (grads + fwd if mode in ("fwdbwd", "bwd") else 0))


# ----------------------------------------------------------------------------- CyFA

CYFA_SLOTS = 128              # CyclicFlowAttention's num_slots (M); the readout has M - 1 rows
CYFA_NORM_EPS = 1e-5          # its q / k RMSNorm eps (norm_eps)


def _cyfa_inputs(s: Shape, gen) -> dict:
    """``CyclicFlowAttention`` at init (M = 128 slots): q, k, v ~ N(0, 1) (projections through the short
    convolution, no activation); the Mamba2 decay ``g = -exp(A_log) softplus(a + dt_bias)`` with
    ``A ~ U(0, 16)`` per head; write strength ``beta = sigmoid(.)`` and clock step ``delta = sigmoid(.)``
    (all three fp32, as the layer hands them over); the readout (H, M-1, M-1) at its identity init and the
    q / k RMSNorm weights (D,) at 1, fp32 parameters; projections N(0, 1)."""
    B, T, H, D, M = s.B, s.T, s.H, s.D, CYFA_SLOTS
    q, k = (_randn(gen, B, T, H, D) for _ in range(2))
    v = _randn(gen, B, T, H, s.Dv)
    return {"q": q, "k": k, "v": v, "g": _mamba_gate(s, gen), "delta": torch.sigmoid(_randn(gen, B, T, H)),
            "beta": torch.sigmoid(_randn(gen, B, T, H)),
            "readout": torch.eye(M - 1, dtype=torch.float32).expand(H, M - 1, M - 1).contiguous(),
            "q_norm_weight": torch.ones(D), "k_norm_weight": torch.ones(D)}


_CYFA_FP32 = ("g", "delta", "beta", "readout", "q_norm_weight", "k_norm_weight")


def _cyfa_call(fn, args: dict):
    """The layer's call (RMSNorm eps 1e-5). Under Triton's interpreter (CPU tensors) fla's host-side
    ``require_cuda`` guard is lifted for the call (``interpret.host_guard_lifted``): a device check, not
    numerics."""
    module = importlib.import_module(fn.__module__)
    guard = (interpret.host_guard_lifted(module, "validate_cyfa_inputs", require_cuda=False)
             if interpret.is_enabled() and not args["q"].is_cuda else contextlib.nullcontext())
    with guard:
        return fn(**args, q_norm_eps=CYFA_NORM_EPS, k_norm_eps=CYFA_NORM_EPS)


def _ref_cyfa(x: dict, scale: float) -> "torch.Tensor":
    """fla ``naive_recurrent_cyfa`` (fp32 token loop)."""
    o, _ = _naive("fla.ops.cyfa.naive", "naive_recurrent_cyfa")(
        x["q"], x["k"], x["v"], x["g"], x["delta"], x["beta"], x["readout"], x["q_norm_weight"],
        x["k_norm_weight"], CYFA_NORM_EPS, CYFA_NORM_EPS, scale=scale)
    return o.float()


def cyfa_rotation(lam: "torch.Tensor", M: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``(cos, sin)`` of each slot's phase at clock ``lam`` (..., M): slot m belongs to frequency pair
    ``p = m // 2``; its phase ``2 pi c / (M - 1)`` with ``c = (floor(lam) p mod (M - 1)) + frac(lam) p``,
    wrapped into ``(-(M-1)/2, (M-1)/2]`` (the integer part reduced exactly, as fla does)."""
    period = M - 1
    pair = torch.arange(M, device=lam.device) // 2
    whole = torch.floor(lam)
    c = (whole.long().remainder(period)[..., None] * pair).remainder(period).to(lam.dtype)
    c = c + (lam - whole)[..., None] * pair.to(lam.dtype)
    c = torch.where(c > period * 0.5, c - period, c)
    phase = c * (2 * math.pi / period)
    return phase.cos(), phase.sin()


def _pair_swap(x: "torch.Tensor") -> "torch.Tensor":
    """Each slot's partner (even m <-> m + 1)."""
    return x.view(*x.shape[:-1], -1, 2).flip(-1).reshape(x.shape)


def cyfa_readout_table(readout: "torch.Tensor") -> "torch.Tensor":
    """``readout @ basis`` (H, M-1, M): the learned readout times the fixed Fourier basis of the M - 1 clock
    positions (cos / sin per frequency pair; column 0 scaled by ``(M-1)^-1/2``, column 1 zero, the others by
    ``(2/(M-1))^1/2``)."""
    R = readout.shape[-1]
    M = R + 1
    m = torch.arange(M, device=readout.device)
    omega = (m // 2).float() * (2 * math.pi / R)
    ang = torch.arange(R, device=readout.device, dtype=torch.float32)[:, None] * omega
    basis = torch.where(m % 2 == 1, ang.sin(), ang.cos())
    norm = torch.full((M,), (2.0 / R) ** 0.5, device=readout.device)
    norm[0], norm[1] = R ** -0.5, 0.0
    return readout.float() @ (basis * norm)


def _cyfa_torch(x: dict, scale: float) -> "torch.Tensor":
    """CyFA as two scalar-decay linear-attention passes of the shared engine (``chunkwise.chunkwise``, fp32):
    q, k RMS-normalised; clock ``lam = cumsum(delta)``; each token writes the slot atom
    ``beta_t a(lam_t)`` (the rotated unit cosine / sine per pair). Pass 1: slot logits
    ``r_t = sum_{j <= t} e^{G_t - G_j} (scale q_t . k_j) beta_j a(lam_j)``; rotated back by ``lam_t``, read
    through the readout table, softmax over its M - 1 rows, mapped back and rotated forward: weights ``w_t``.
    Pass 2: ``o_t = sum_{j <= t} e^{G_t - G_j} (w_t . beta_j a(lam_j)) v_j``. O(T)."""
    q, k = (x[n].float() for n in ("q", "k"))
    M = x["readout"].shape[-1] + 1
    q = q * (q.pow(2).mean(-1, keepdim=True) + CYFA_NORM_EPS).rsqrt() * x["q_norm_weight"].float()
    k = k * (k.pow(2).mean(-1, keepdim=True) + CYFA_NORM_EPS).rsqrt() * x["k_norm_weight"].float()
    lam = x["delta"].float().cumsum(1)                         # (B, T, H)
    cos, sin = cyfa_rotation(lam, M)                           # (B, T, H, M)
    even = (torch.arange(M, device=q.device) % 2 == 0)
    amp = torch.full((M,), (2.0 / (M - 1)) ** 0.5, device=q.device)
    amp[:2] = (M - 1) ** -0.5
    write = x["beta"].float()[..., None] * amp * torch.where(even, cos, -sin)
    g = x["g"].float()
    raw = cw.chunkwise(q, k, write, g=g, scale=scale).float()
    sw = _pair_swap(raw)
    rot = torch.where(even, cos * raw - sin * sw, sin * sw + cos * raw)
    table = cyfa_readout_table(x["readout"])                   # (H, M-1, M)
    probs = torch.einsum("hrm,bthm->bthr", table, rot).softmax(-1)
    coeff = torch.einsum("hrm,bthr->bthm", table, probs)
    sc = _pair_swap(coeff)
    weights = torch.where(even, cos * coeff + sin * sc, -sin * sc + cos * coeff)
    return cw.chunkwise(weights, write, x["v"].float(), g=g, scale=1.0).float()


def _cyfa_flops(s: Shape) -> float:
    """Two chunkwise scalar-decay passes (``chunked.gla_flops``: keys D -> M slots, then M slots -> values
    Dv) and the readout (``4 (M-1) M`` per token: logits and their map back); rotations, norms, softmax not
    counted."""
    M = CYFA_SLOTS
    per_bh = ck.gla_flops(s.T, s.D, M) + ck.gla_flops(s.T, M, s.Dv) + 4.0 * (M - 1) * M * s.T
    return s.B * s.H * per_bh


def _cyfa_io(s: Shape, itemsize: int) -> float:
    """Read q, k, v, the fp32 g, delta, beta, readout and norm weights; write o."""
    M = CYFA_SLOTS
    return float(s.B * s.T * s.H * ((2 * s.D + 2 * s.Dv) * itemsize + 3 * 4)
                 + 4 * (s.H * (M - 1) ** 2 + 2 * s.D))


def _cyfa_memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
    """torch: the slot-sized (B, T, H, M) fp32 tensors (clock cos / sin, writes, logits and their rotation,
    probabilities, weights: about ten) next to the engine's two passes (chunked inputs, (C, C) tiles, the
    (K, M) and (M, V) chunk states); fwd+bwd: autograd keeps them, plus the input gradients. fla: the fp32
    clock, the slot logits and weights (B, T, H, M), the two passes' chunk states and the output; fwd+bwd
    adds the input gradients and the forward again. Structural (not fitted)."""
    B, T, H, D, V, M = s.B, s.T, s.H, s.D, s.Dv, CYFA_SLOTS
    Tp, N = ck.padded_T(T), ck.num_chunks(T, cw.CHUNK)
    slot = 4 * B * T * H * M
    states = 4 * B * H * N * (D * M + M * V)
    grads = B * T * H * (2 * D + V) * itemsize + 3 * B * T * H * 4
    if backend == "torch":
        passes = 4 * B * H * Tp * (D + M + V + 2 * cw.CHUNK)
        fwd = 10 * slot + passes + states
        return int(fwd if mode == "fwd" else 2 * fwd + grads)
    fwd = 3 * slot + states + B * T * H * (V * itemsize + 4)
    return int(fwd + (grads + fwd if mode in ("fwdbwd", "bwd") else 0))


# ----------------------------------------------------------------------------- the rows

FAMILIES: tuple[AttnFamily, ...] = (
    AttnFamily(
        name="log_linear_attn", fla="log_linear_attn", title="Log-linear attention (Log-Linear Mamba2)",
        group="linear+decay",
        description="Mamba2-decayed linear attention over a Fenwick tree of states: key j reaches query i "
                    "through level bit_length(i XOR j), weighted by the query's level scale (O(T log T)). "
                    "LogLinearMamba2's inputs: one q / k group of state size D shared by the H heads, "
                    "v = x dt, g = -h dt (fp32), level scales softplus(.) (15 levels, more beyond T = 16384), "
                    "scale 1. fla: D a multiple of 64, Dv a power of two, T <= 131072.",
        inputs=("q", "k", "v", "g", "level_scales"), make=_ll_inputs,
        reference=_ref_log_linear, reference_name="fla naive_log_linear_attn (fp64, T x T)",
        reference_max_T=1024,
        backends={"fla": FlaOp("chunk_log_linear_attn")},
        flops=_ll_flops, io=_ll_io, memory=_ll_memory,
        flops_doc=_ll_flops.__doc__ or "", memory_doc=_ll_memory.__doc__ or "",
        torch_run=_log_linear_torch,
        torch_description="chunkwise log-linear attention (C=64): exact (C, C) tiles inside a chunk, Fenwick "
                          "block states across chunks (popcount(n) reads per chunk), pure PyTorch, O(T log T)",
        grad_inputs=("q", "k", "v", "g", "level_scales"), shape_axes=("value_dim",), family="linear",
        keep_fp32=("g",), scale=1.0, backend_check=_ll_backend_check,
    ),
    AttnFamily(
        name="ttt", fla="ttt", title="TTT-Linear (test-time training, linear inner model)", group="delta-rule",
        description="A linear inner model (W, b) trained online: every 16-token mini-batch takes one gradient "
                    "step of |LN(k W + b) w_ln + b_ln - (v - k)|^2 (learning rate eta) and the queries read "
                    "o = q W' + b' in the dual form, then o + LN(o) (TTT-Linear's ranges at init; fla 0.6.0 "
                    "has the ops but no layer; scale 1 as TTT-Linear; Dv = D). fla backends fp32 / bf16: in fp16 "
                    "the learning rate's gradient overflows (|d eta| ~ 8e4 at D = 32, 1.5e5 at D = 64, over "
                    "fp16's 65504; fla's kernels need eta in q's dtype).",
        inputs=("q", "k", "v", "eta", "w", "b", "h0", "hb0"), make=_ttt_inputs,
        reference=_ref_ttt, reference_name="fla chunk_ttt_linear_ref (fp32, mini-batch loop)",
        reference_max_T=4096,
        backends={"fla": FlaOp("chunk_ttt_linear", dtypes=TTT_DTYPES),
                  "fla-fused-chunk": FlaOp("fused_chunk_ttt_linear", dtypes=TTT_DTYPES, max_head_dim=128)},
        flops=_ttt_flops, io=_ttt_io, memory=_ttt_memory,
        flops_doc=_ttt_flops.__doc__ or "", memory_doc=_ttt_memory.__doc__ or "",
        torch_run=_ttt_torch,
        torch_description="TTT-Linear's mini-batch dual form (16 tokens), a loop over T/16 mini-batches batched "
                          "over B and H (the inner model's update is sequential across mini-batches), pure "
                          "PyTorch fp32, O(T)",
        call=_ttt_call, grad_inputs=("q", "k", "v", "eta", "w", "b", "h0", "hb0"), family="linear",
        shape_check=_ttt_check, keep_fp32=("h0", "hb0"), scale=1.0,
    ),
    AttnFamily(
        name="cyfa", fla="cyfa", title="CyFA (cyclic flow attention, relative-time slots)", group="gated",
        description="Aligned key and value memories over M = 128 relative-time slots, decayed by a Mamba2 gate; "
                    "a learned clock (cumsum of sigmoid steps) rotates each write into the slots, and the read is "
                    "a softmax over the M - 1 readout rows of the rotated slot logits (CyclicFlowAttention's "
                    "inputs at init: q, k RMS-normalised in the kernel, sigmoid write strengths, identity "
                    "readout; scale D**-0.5).",
        inputs=("q", "k", "v", "g", "delta", "beta", "readout", "q_norm_weight", "k_norm_weight"),
        make=_cyfa_inputs,
        reference=_ref_cyfa, reference_name="fla naive_recurrent_cyfa (fp32 token loop)",
        reference_max_T=2048,
        backends={"fla": FlaOp("chunk_cyfa"), "fla-recurrent": FlaOp("fused_recurrent_cyfa", backward=False)},
        flops=_cyfa_flops, io=_cyfa_io, memory=_cyfa_memory,
        flops_doc=_cyfa_flops.__doc__ or "", memory_doc=_cyfa_memory.__doc__ or "",
        torch_run=_cyfa_torch,
        torch_description="two scalar-decay passes of the shared chunkwise engine (chunkwise.py, C=64; keys to M "
                          "slots, slots to values) with the clock rotation and slot readout between them, pure "
                          "PyTorch, O(T)",
        call=_cyfa_call, grad_inputs=("q", "k", "v", "g", "delta", "beta", "readout", "q_norm_weight",
                                      "k_norm_weight"),
        shape_axes=("value_dim",), family="linear", keep_fp32=_CYFA_FP32,
    ),
)

#: Kernel names, in display order (``profiler.kernels.MECHANISMS`` appends them).
NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
#: fla.ops package -> serprof kernel (``fla_coverage``).
COVERED: dict[str, str] = {f.fla: f.name for f in FAMILIES}
#: fla.ops package -> why its kernel has no timed CPU backend (none here: every row has one).
NO_CPU: dict[str, str] = {f.fla: f.no_torch_reason for f in FAMILIES if f.torch_run is None}

KERNELS: tuple[KernelSpec, ...] = tuple(kernel(f) for f in FAMILIES)

__all__ = ["FAMILIES", "NAMES", "COVERED", "NO_CPU", "KERNELS", "ll_levels", "ll_level", "cyfa_rotation",
           "cyfa_readout_table", "LL_CHUNK", "TTT_MINI_BATCH", "CYFA_SLOTS"]
