"""KDA, Kimi delta attention: a gated delta rule with a per-channel decay.

Recurrence (fla's ``naive_recurrent_kda``), per batch and head, state ``S`` of shape (K, V)::

    S_t = (I - beta_t k_t k_t^T) Diag(exp(g_t)) S_{t-1} + beta_t k_t v_t^T,    o_t = S_t^T (scale q_t)

Inputs (``make_inputs``), in the ranges fla's ``KimiDeltaAttention`` layer produces by default
(``use_qk_l2norm_in_kernel``, ``use_gate_in_kernel``, ``use_beta_sigmoid_in_kernel``):
q, k l2-normalised per head, v ~ N(0, 1), all (B, T, H, D); ``g = -exp(A_log[h]) *
softplus(x + dt_bias[h, :])`` (B, T, H, D) with x ~ N(0, 1), ``A_log = log U(1, 16)`` per head and
``dt_bias = dt + log(-expm1(-dt))``, ``dt = exp(U(log 1e-3, log 0.1))`` clamped at 1e-4, per channel
(``fla/layers/kda.py`` init; ``fla.ops.kda.gate.naive_kda_gate``); ``beta = sigmoid(N(0, 1))``
(B, T, H). These default gates are unbounded below (per-step log gates of tens, chunk sums of
hundreds). ``gate="bounded"`` gives fla's safe gate instead, ``lower_bound * sigmoid(exp(A_log) *
(x + dt_bias))`` with ``A_log = 0`` as the layer initialises it with ``safe_gate``. Every tensor is
cast to the requested dtype (g too). An optional python float ``inputs["scale"]`` (default D**-0.5).

Backends
--------
* ``torch`` (``kda_chunkwise`` = ``chunkwise.delta_chunkwise``, the shared engine's delta-rule path):
  chunkwise WY/UT form, exact for any gate g <= 0 (see below).
* ``fla``: ``fla.ops.kda.chunk_kda`` with the pre-computed gate (``use_gate_in_kernel=False``), no
  in-kernel l2norm or beta sigmoid (the inputs already are normalised / in (0, 1)). CUDA, or CPU under
  Triton's interpreter for correctness.
* ``fla-recurrent``: ``fla.ops.kda.fused_recurrent_kda``, same arguments; inference only.

Reference: ``fla.ops.kda.naive.naive_recurrent_kda`` (a token loop) in fp32.

The chunkwise algorithm (chunk C, sub-block c, ``b`` = inclusive within-chunk cumsum of g)
------------------------------------------------------------------------------------------------
Per chunk, batched over all chunks at once::

    Aqk[i, j] = sum_d q_i[d] k_j[d] e^{b_i[d] - b_j[d]}   (j <= i),   Akk: the same with k_i, j < i
    (I + Diag(beta) Akk) [W | U] = Diag(beta) [K e^{b} | V]          (torch.linalg.solve_triangular)
    Tr = Diag(e^{b_C}) - (K e^{b_C - b})^T W,   R = (K e^{b_C - b})^T U

then the only Python loop, over chunks: ``S_n = Tr_n S_{n-1} + R_n`` (one ``baddbmm`` per chunk), and
again batched: ``V~ = U - W S_{n-1}``, ``O = (Q e^{b}) S_{n-1} + Aqk V~``.

Numerical safety. The textbook factorisation ``(Q e^{b}) (K e^{-b})^T`` needs ``e^{-b_j}``, which
overflows fp32 once a chunk's gate sum passes about -88 (the default gate reaches hundreds): NaN.
Here every exponential has a non-positive argument, so every factor lies in [0, 1]:

* off-diagonal sub-blocks (query block I, key block J < I): reference point ``r`` = last row of
  block I-1, so ``e^{b_i - b_j} = e^{b_i - b_r} * e^{b_r - b_j}`` with ``j <= r < i``: both factors
  <= 1, and the product is a (2c x K) @ (K x Ic) matmul;
* diagonal sub-blocks (c x c): the exact pairwise ``e^{b_i - b_j}``, one diagonal offset at a time;
* ``e^{b_i}``, ``e^{b_C - b_j}`` and ``e^{b_C}`` have arguments <= 0.

A factor can only underflow to 0 where the true weight is below ~1e-38, so the result is exact up
to fp32 rounding for any g <= 0 (per-step -200 included), and never inf/NaN. The exponents are also
formed as direct sums of consecutive g (local cumsums, suffix sums, window sums), never as a
difference of two large prefix sums, so a chunk sum of -1000 next to a small step does not cost
precision through cancellation. All arithmetic is fp32; the output is cast to the input dtype.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from profiler.core import counting
from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.kernels import recurrent as rc
from profiler.kernels.base import Backend, KernelSpec, Shape, expand_kv, require_causal
from profiler.kernels.chunkwise import CHUNK, SUB_CHUNK
from profiler.kernels.chunkwise import delta_chunkwise as kda_chunkwise

fla_kda2 = lazy_import('fla.ops.kda')

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

fla_kda = lazy_import('fla.ops.kda')
fla_kda_naive = lazy_import('fla.ops.kda.naive')

if TYPE_CHECKING:
    import torch

#: fla's chunk_kda chunk length (used by the FLOP model and the fla memory model).
FLA_CHUNK = 64
#: naive_recurrent_kda costs ~0.25 ms CPU per token here at B=1, H=4, D=64 (more for larger B*H*D, ~3x
#: with backward): this keeps the fp32 oracle under ~2 s; longer T compare a causal prefix.
REFERENCE_MAX_T = 2048
#: fla asserts K <= 256.
MAX_HEAD_DIM = 256
DEFAULT_LOWER_BOUND = -5.0


# ----------------------------------------------------------------------------- inputs

def _torch_dtype(dtype) -> "torch.dtype":
    return dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype))


def _scale(inputs, D: int) -> float:
    s = inputs.get("scale") if hasattr(inputs, "get") else None
    return float(s) if s is not None else D ** -0.5


def layer_gate_params(H: int, D: int, gen: "torch.Generator") -> tuple["torch.Tensor", "torch.Tensor"]:
    """``(A_log (H,), dt_bias (H*D,))`` drawn as ``KimiDeltaAttention.__init__`` does (fp32, CPU)."""
    A_log = torch.empty(H, dtype=torch.float32).uniform_(1, 16, generator=gen).log()
    lo, hi = math.log(1e-3), math.log(0.1)
    dt = torch.exp(torch.rand(H * D, generator=gen, dtype=torch.float32) * (hi - lo) + lo).clamp(min=1e-4)
    dt_bias = dt + torch.log(-torch.expm1(-dt))
    return A_log, dt_bias


def kda_gate(x: "torch.Tensor", A_log: "torch.Tensor | None", dt_bias: "torch.Tensor",
             lower_bound: float | None = None) -> "torch.Tensor":
    """The layer's log decay from raw gate logits x (..., H, D), in fp32 (fla's ``naive_kda_gate``).

    ``-exp(A_log[h]) * softplus(x + dt_bias)``; with ``lower_bound``:
    ``lower_bound * sigmoid(exp(A_log[h]) * (x + dt_bias))`` (``A_log`` None means 0).
    """
    H, D = x.shape[-2:]
    z = x.float() + dt_bias.float().view(H, D)
    if lower_bound is None:
        return -A_log.float().exp().view(H, 1) * F.softplus(z)
    if A_log is not None:
        z = A_log.float().exp().view(H, 1) * z
    return lower_bound * torch.sigmoid(z)


def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0, *, gate: str = "default",
                lower_bound: float = DEFAULT_LOWER_BOUND) -> dict:
    """q, k, v, g, beta for one point, deterministic in ``seed`` on every device (module doc).

    Shared key/value heads (``shape.kv_heads``): k, v, g and beta have Hkv heads (one gate per key
    head), q has H; query head h reads head ``h // (H / Hkv)``. v has ``shape.Dv`` channels.

    ``gate``: ``"default"`` (the layer's unbounded ``-exp(A_log) softplus(x + dt_bias)``) or
    ``"bounded"`` (``lower_bound * sigmoid(x + dt_bias)``, fla's ``safe_gate`` with ``A_log = 0``).
    """
    if gate not in ("default", "bounded"):
        raise UsageError(f"unknown KDA gate {gate!r}; valid: bounded, default")
    B, T, H, D, Hkv = shape.B, shape.T, shape.H, shape.D, shape.Hkv
    gen = torch.Generator(device="cpu").manual_seed(int(seed))

    def randn(*dims):
        return torch.randn(dims, generator=gen, dtype=torch.float32)

    q = F.normalize(randn(B, T, H, D), p=2, dim=-1)
    k = F.normalize(randn(B, T, Hkv, D), p=2, dim=-1)
    v = randn(B, T, Hkv, shape.Dv)
    A_log, dt_bias = layer_gate_params(Hkv, D, gen)
    x = randn(B, T, Hkv, D)
    if gate == "default":
        g = kda_gate(x, A_log, dt_bias)
    else:
        g = kda_gate(x, None, dt_bias, lower_bound=lower_bound)
    beta = torch.sigmoid(randn(B, T, Hkv))
    dt = _torch_dtype(dtype)
    return {n: t.to(device=device, dtype=dt) for n, t in (("q", q), ("k", k), ("v", v), ("g", g), ("beta", beta))}


# ----------------------------------------------------------------------------- torch backend

# ----------------------------------------------------------------------------- backends

_NAMES = ("q", "k", "v", "g", "beta")


def _expanded(inputs) -> tuple:
    """q, k, v, g, beta with the key/value-side tensors repeated to the query heads (no-op if H == Hkv)."""
    H = inputs["q"].shape[2]
    return tuple(inputs[n] if n == "q" else expand_kv(inputs[n], H) for n in _NAMES)


def run_torch(inputs, causal: bool = True):
    """Chunkwise pure-PyTorch KDA (``kda_chunkwise``), any device."""
    require_causal(causal, "kda/torch")
    q, k, v, g, beta = _expanded(inputs)
    return kda_chunkwise(q, k, v, g, beta, _scale(inputs, q.shape[-1]))


#: Our inputs are already l2-normalised, gated and sigmoid-ed: fla must not apply these again.
_PRECOMPUTED = dict(use_qk_l2norm_in_kernel=False, use_gate_in_kernel=False, use_beta_sigmoid_in_kernel=False)


def _varlen(inputs) -> dict:
    """``cu_seqlens`` of a packed varlen batch (``profiler.kernels.varlen``), if any."""
    return {"cu_seqlens": inputs["cu_seqlens"]} if "cu_seqlens" in inputs else {}


def run_fla(inputs, causal: bool = True):
    """``fla.ops.kda.chunk_kda`` with the pre-computed gate (the inputs are already normalised)."""
    require_causal(causal, "kda/fla")

    q, k, v, g, beta = _expanded(inputs)
    o, _ = fla_kda.chunk_kda(q, k, v, g, beta, scale=_scale(inputs, q.shape[-1]), **_PRECOMPUTED,
                            **_varlen(inputs))
    return o


def run_fla_recurrent(inputs, causal: bool = True):
    """``fla.ops.kda.fused_recurrent_kda`` (token-sequential Triton kernel; no backward)."""
    require_causal(causal, "kda/fla-recurrent")

    q, k, v, g, beta = _expanded(inputs)
    o, _ = fla_kda.fused_recurrent_kda(q, k, v, g, beta, scale=_scale(inputs, q.shape[-1]), **_PRECOMPUTED,
                            **_varlen(inputs))
    return o


def reference(inputs, causal: bool = True):
    """fp32 ``fla.ops.kda.naive.naive_recurrent_kda`` (token loop); differentiable."""
    require_causal(causal, "kda reference")

    q, k, v, g, beta = (x.float() for x in _expanded(inputs))
    o, _ = fla_kda_naive.naive_recurrent_kda(q, k, v, g, beta, scale=_scale(inputs, q.shape[-1]))
    return o


# ----------------------------------------------------------------------------- analytic models

def _padded(T: int, C: int) -> int:
    return C * math.ceil(T / C)


def flops(shape: Shape, causal: bool = True) -> float:
    """Forward matmul FLOPs of fla's chunkwise algorithm (chunk C = 64, T padded to it), per (b, h):

    ``Tp * (2CK + C(K+V) + 6KV + CV)``: the gated scores Aqk and Akk (C^2 K each), the triangular
    solve for W and U (C^2 (K+V) / 2 multiply-adds), per chunk ``v~ = u - W S``, the state update
    ``K^T v~`` and ``Q S`` (2CKV each), and ``Aqk v~`` (C^2 V). Elementwise gating and exps are not
    counted. (The torch backend does about the same work with C = 32 plus 2CK^2 for its transition
    matrices.) Causal only.
    """
    C, K, V = FLA_CHUNK, shape.D, shape.Dv
    Tp = _padded(shape.T, C)
    return float(shape.B * shape.H * Tp * (2 * C * K + C * (K + V) + 6 * K * V + C * V))


#: ``count`` in words (stored in records, written next to the report's FLOP/s and bytes/s)
FORMULAS = ("B * Hq * Tp * (2CK + C(K+V) + 6KV + CV), C = 64, K = D, V = Dv, Tp = T padded to C, "
            "x {fwd 1, bwd 2, fwdbwd 3}",
            counting.FORMULAS["io_bytes"] + "; extra: g (Hkv*D) and beta (Hkv)")


def count(shape: Shape, causal: bool, mode: str, itemsize: int) -> tuple[float, float]:
    """``flops`` (V = Dv, Hq heads) x ``profiler.core.counting``'s linear mode factor (fwd 1, bwd 2,
    fwdbwd 3); bytes ``counting.io_bytes`` with g (Hkv*D) and beta (Hkv) as extra per-token inputs."""
    a = shape.counting(True)
    return (flops(shape) * counting.MODE_FACTOR["linear"][mode],
            counting.io_bytes(a, itemsize, mode, extra_per_token=shape.Hkv * (shape.D + 1)))


def bytes_moved(shape: Shape, itemsize: int, causal: bool = True) -> float:
    """Read q, k, v, g (B*T*H*D each) and beta (B*T*H), write o (B*T*H*D): ``B*T*H*(5D+1)*itemsize``."""
    return float(shape.B * shape.T * shape.H * (5 * shape.D + 1) * itemsize)


def _torch_backend_chunk(T: int) -> int:
    """The chunk ``kda_chunkwise`` actually uses for length T (short sequences: one smaller chunk)."""
    return min(CHUNK, SUB_CHUNK * math.ceil(T / SUB_CHUNK))


def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
    """The default shape's model (``_memory_bytes``) at ``D = max(D, Dv)`` (an upper bound when Dv != D),
    plus, with shared key/value heads, k, v, g and beta repeated to the query heads; bwd as fwdbwd."""
    wide = Shape(shape.B, shape.T, shape.H, max(shape.D, shape.Dv))
    rep = shape.B * shape.T * shape.H * (2 * shape.D + shape.Dv + 1) * itemsize if shape.Hkv != shape.H else 0
    return _memory_bytes(wide, itemsize, backend, causal, "fwdbwd" if mode == "bwd" else mode) + rep * (
        2 if mode != "fwd" else 1)


def _memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
    """Predicted peak bytes of the tensors one call allocates above its inputs.

    ``torch`` (all working tensors fp32; chunk C as used for this T, Tp = T padded to C, K = V = D):
    ``a = B*H*Tp*D*4`` (one chunked (Z, C, D) tensor), ``s = a*C/D`` (one (Z, C, C) score tensor),
    ``St = a*D/C`` (one set of per-chunk (D, D) matrices). Live sets of ``kda_chunkwise``, read from
    torch.profiler allocation traces:

    * fwd, the largest of: the solve for U (k, g, A = [Aqk|Akk] (2s), q e^b, M (s), W, chunked v,
      its right-hand side, U: ``7a + 3s``); the state loop (A, q e^b, W, U, Tr, R, states:
      ``3a + 2s + 3St``); the intra-chunk scores (k, g, stacked q|k (2a), A, suffix sums and the
      off-diagonal factors: ``8a + 2s``).
    * fwdbwd: autograd keeps every intermediate above plus the diagonal-block and off-diagonal
      factors (about c/2 + (C/c)/2 extra chunk-sized tensors), and the backward allocates their
      gradients and the input gradients. Modelled as ``37.5a + 6s + 5.5St``: the structure follows
      the live set; the coefficients are fitted to measured peaks (D = 32..256, two or more chunks:
      within 2 %; bf16/fp16 inputs within 3 %, since their gradients pass through fp32 too). A single
      chunk (T <= 64) is over-predicted by up to ~40 % (fewer sub-blocks, no state loop).

    ``fla`` (chunk_kda, C = 64, from fla 0.6.0's buffer list): fp32 gate cumsum (BTHD*4), Aqk and Akk
    (2*BTH*64*itemsize), Akk diagonal blocks (BTH*16*4), w, u, kg, v_new, o (5*BTHD*itemsize), chunk
    states h (B*H*N*D*D*itemsize): about 9x q at fp32, D = 64, as measured dry under Triton's
    interpreter (FLA.md 5b). fwdbwd (estimate, not measured): the forward's saved g, Aqk, Akk, plus
    recomputed w, u, kg, h, v_new, dh (h-sized), and fp32 dq, dk, dg, dv, dq2, dk2 and dA.
    ``fla-recurrent``: the output only (fwd only).
    """
    B, T, H, D = shape.B, shape.T, shape.H, shape.D
    if backend == "torch":
        C = _torch_backend_chunk(T)
        a = B * H * _padded(T, C) * D * 4
        s, St = a * C / D, a * D / C
        if mode == "fwdbwd":
            return int(37.5 * a + 6 * s + 5.5 * St)
        return int(max(7 * a + 3 * s, 3 * a + 2 * s + 3 * St, 8 * a + 2 * s))
    if backend == "fla-recurrent":
        return int(B * T * H * D * itemsize)
    C = FLA_CHUNK
    Tp = _padded(T, C)
    btd, bt = B * Tp * H * D, B * Tp * H
    h = B * H * (Tp // C) * D * D * itemsize
    fwd = btd * 4 + 2 * bt * C * itemsize + bt * 16 * 4 + 5 * btd * itemsize + h
    if mode == "fwdbwd":
        return int(fwd + 4 * btd * itemsize + 2 * h + 6 * btd * 4 + bt * C * 4)
    return int(fwd)


# ----------------------------------------------------------------------------- recurrent form (decode)

def decode_start(inputs, T0: int) -> dict:
    """The state after T0 tokens from the chunkwise engine run once (``kda_chunkwise(final_state=True)``)."""
    q, k, v, g, beta = (inputs[n][:, :T0] for n in _NAMES)
    _, S = kda_chunkwise(q, k, v, g, beta, 1.0, final_state=True)
    return {"S": S}


def decode_step(state, inputs, t: int, scale: float):
    """Token t: ``S = (I - beta k k^T) Diag(e^g) S + beta k v^T``, ``o = S^T (scale q)`` (``recurrent.step``)."""
    q, k, v, g, beta = (rc.token(inputs, n, t) for n in _NAMES)
    return rc.step(state["S"], q.float() * scale, k, v, gk=g, beta=beta)


def decode_fla(state, inputs, t0: int, t1: int, scale: float, step: int = 1):
    """``fused_recurrent_kda`` one token per call, ``initial_state`` carried in place."""
    outs = []
    for t in range(t0, t1, step):   # decode: one call per token; streaming: one call per chunk
        o, S = fla_kda2.fused_recurrent_kda(*(inputs[n][:, t:min(t + step, t1)] for n in _NAMES), scale=scale,
                                   initial_state=state["S"], output_final_state=True, **_PRECOMPUTED)
        state["S"].copy_(S)
        outs.append(o)
    return torch.cat(outs, dim=1)


def decode_chunk(state, inputs, t0: int, t1: int, scale: float):
    """Streaming chunk at once: the chunkwise WY form with the carried state as its initial state."""
    q, k, v, g, beta = (inputs[n][:, t0:t1] for n in _NAMES)
    o, S = kda_chunkwise(q, k, v, g, beta, scale, final_state=True, initial_state=state["S"])
    state["S"].copy_(S)
    return o.float()


RECURRENT = rc.LinearForm(
    start=decode_start, step=decode_step, fla=decode_fla, chunk=decode_chunk,
    state_shapes=lambda s: {"S": (s.B, s.H, s.D, s.D)},
    step_flops=lambda s: 8.0 * s.B * s.H * s.D * s.D,   # decay, S^T k, outer product, S^T q
)


# ----------------------------------------------------------------------------- registry entry

_FLA = dict(devices=("cuda",), requires=("fla", "triton"), interpretable=True, varlen="cu_seqlens")

KERNEL = KernelSpec(
    name="kda",
    group="delta-rule",
    title="KDA (Kimi delta attention)",
    family="linear",
    make_inputs=make_inputs,
    backends={
        "torch": Backend("torch", run_torch, varlen="per_sequence",
                         description=f"chunkwise WY/UT form (C={CHUNK}, exact sub-blocks of {SUB_CHUNK}), "
                                     "exact for unbounded gates; pure PyTorch"),
        "fla": Backend("fla", run_fla, **_FLA, description="fla.ops.kda.chunk_kda (Triton)"),
        "fla-recurrent": Backend("fla-recurrent", run_fla_recurrent, backward=False, **_FLA,
                                 description="fla.ops.kda.fused_recurrent_kda (Triton; inference only)"),
    },
    reference=reference,
    reference_name="fla.ops.kda.naive.naive_recurrent_kda (fp32 token loop)",
    flops=flops,
    bytes_moved=bytes_moved,
    memory_bytes=memory_bytes,
    grad_inputs=("q", "k", "v", "g", "beta"),
    max_head_dim=MAX_HEAD_DIM,
    reference_max_T=REFERENCE_MAX_T,
    recurrent=RECURRENT,
    count=count,
    formulas=FORMULAS,
    shape_axes=("kv_heads", "value_dim"),
    axis_impl={b: {"kv_heads": "k, v, g, beta repeated per query head"} for b in ("torch", "fla", "fla-recurrent")},
    description="Gated delta rule with a per-channel decay g = -exp(A_log) softplus(x + dt_bias) (unbounded, "
                "the KimiDeltaAttention layer's default), l2-normalised q and k, beta = sigmoid(.); causal.",
)
