"""GSA, gated slot attention: two gated linear-attention passes with a softmax over M slots between.

As ``fla.ops.gsa.chunk_gsa`` with a slot-axis log forget gate ``g`` (``[B, T, H, M]``, ``<= 0``) and
slot inputs ``s``: ``hk_t = hk_{t-1} Diag(e^{g_t}) + k_t s_t^T``, ``ok_t = scale * hk_t^T q_t``
(an M-vector), ``p_t = softmax_M(ok_t)``, ``hv_t = Diag(e^{g_t}) hv_{t-1} + s_t v_t^T``,
``o_t = hv_t^T p_t``. Here ``M = D`` slots. Inputs in the ranges of fla's ``GatedSlotAttention``
layer: ``q, k = silu(randn)`` (swish feature map), ``v = silu(randn)``, ``g = logsigmoid(randn) / 8``,
``s = 1 - exp(g)``; layout (B, T, H, D). Optional python float ``inputs["scale"]`` (default
``D ** -0.5`` as fla's ops; the fla layer passes ``scale=1``).

Non-causal (bidirectional) GSA (FLA.md sections 1 and 4: "fwd + reversed scan for both passes").
The reversed scan is the same recurrence run from the end with each token's own gate, as
``fused_recurrent_gsa(reverse=True)``: ``hk'_t = hk'_{t+1} Diag(e^{g_t}) + k_t s_t^T``. Unrolled,
the slot-wise decay between positions t and s is ``D(t, s) = prod_{r=s+1..t} e^{g_r}`` for
``s <= t`` (forward) and ``prod_{r=t..s-1} e^{g_r}`` for ``s > t`` (reversed), so

* pass 1: ``ok_t = scale * sum_{all s} (q_t . k_s) s_s * D(t, s)`` = forward ok + reversed ok
  - ``scale (q_t . k_t) s_t`` (the diagonal, counted by both scans, once);
* ``p_t = softmax_M(ok_t)`` on the *combined* slot scores;
* pass 2: ``o_t = sum_{all s} (p_t . (s_s * D(t, s))) v_s`` = forward + reversed pass 2 on the
  same ``p`` - ``(p_t . s_t) v_t``.

This is not the sum of two whole causal GSA calls (one per direction), which would take two
separate softmaxes over half-context scores.

Backends
--------
* ``torch`` (causal and non-causal): the chunk-local cumsum ``b`` of ``g`` (C=64) is exponentiated once
  (``chunked.chunk_gate``) and shared by both passes of ``chunked.gla_chunked``: pass 1 is GLA with the
  gate on the *value* (slot) side, pass 2 is GLA(p, s, v) with the gate on the *key* (slot) side and
  scale 1. Exact for any gate: inter-chunk factors have exponents <= 0; a chunk whose total decay
  exceeds ``chunked.SAFE_SPAN`` (30; the layer's gate gives at most ~10 per 64 tokens) is recomputed
  with exact pairwise decays. Non-causal: the same passes on the inputs and on the time-flipped
  inputs (each with its own chunk gate), combined per pass as above (the softmax between).
* ``fla`` (``chunk_gsa``) and ``fla-recurrent`` (``fused_recurrent_gsa``): Triton, CUDA (or CPU under
  Triton's interpreter); both have a backward.

Reference: causal, ``fla.ops.gsa.naive.naive_recurrent_gsa`` (two token loops), fp32; non-causal,
``dense_noncausal``: the O(T^2 M) pairwise form above in fp64 (decay exponents masked per direction
before ``exp``, so all are <= 0), by query blocks; it accepts fewer queries than keys (the queries
are then the first positions).
"""

from __future__ import annotations

from profiler.core.lazy import lazy_import
from profiler.kernels import chunked as ck
from profiler.kernels import recurrent as rc
from profiler.kernels.base import Backend, KernelSpec, Shape

fla_gsa = lazy_import('fla.ops.gsa')

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")
torch_checkpoint = lazy_import("torch.utils.checkpoint")

fla_gsa_naive = lazy_import('fla.ops.gsa.naive')

#: Two token loops at ~60-130 us per token each: 2048 tokens stay under ~2 s with autograd.
REFERENCE_MAX_T = 2048
#: fla layer default: ``g = logsigmoid(f_proj x) / gate_logit_normalizer``.
GATE_LOGIT_NORMALIZER = 8.0
#: Measured peak of the non-causal torch backend over the causal one (T = 2048, D = 32..128).
NONCAUSAL_PEAK_RATIO = 1.9


def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
    """q, k, v = silu(randn); g = logsigmoid(randn)/8 and s = 1 - exp(g) with M = D slots."""
    gen = ck.generator(seed)
    dims = (shape.B, shape.T, shape.H, shape.D)
    dt = ck.torch_dtype(dtype)
    q, k, v = (F.silu(ck.randn(dims, gen)) for _ in range(3))
    g = (F.logsigmoid(ck.randn(dims, gen)) / GATE_LOGIT_NORMALIZER).to(dt)
    s = 1 - torch.exp(g.float())  # from the stored g, so s = 1 - e^g holds at the stored precision
    out = {"q": q, "k": k, "v": v, "s": s, "g": g}
    return {n: x.to(device=device, dtype=dt) for n, x in out.items()}


# ----------------------------------------------------------------------------- backends

def _passes(q, k, v, s, g, scale: float, *, C: int = ck.CHUNK):
    """Chunked inputs and shared gate of one scan direction (``(B, T, H, .)`` in, fp32 chunked out)."""
    gate = ck.chunk_gate(ck.chunk_local_cumsum(ck.to_chunks(g, C)))
    return gate, ck.to_chunks(s, C), ck.to_chunks(q, C) * scale, ck.to_chunks(k, C), ck.to_chunks(v, C)


def run_torch(inputs, causal: bool = True):
    q = inputs["q"]
    B, T, H, D = q.shape
    C = ck.CHUNK
    scale = ck.scale_of(inputs, D)
    if not causal:
        return _run_torch_noncausal(inputs, scale).to(q.dtype)
    gate = ck.chunk_gate(ck.chunk_local_cumsum(ck.to_chunks(inputs["g"], C)))
    sc = ck.to_chunks(inputs["s"], C)
    qc = ck.to_chunks(q, C) * scale
    ok = ck.gla_chunked(qc, ck.to_chunks(inputs["k"], C), sc, gv=gate)   # (B, H, N, C, M)
    del qc
    p = ok.softmax(-1)
    del ok
    o = ck.gla_chunked(p, sc, ck.to_chunks(inputs["v"], C), gk=gate)
    return ck.from_chunks(o, T, q.dtype)


def _run_torch_noncausal(inputs, scale: float):
    """Forward + reversed chunkwise scans per pass, diagonal once, softmax on the combined scores (fp32)."""
    q, k, v, s, g = (inputs[n] for n in ("q", "k", "v", "s", "g"))
    T = q.shape[1]
    C = ck.CHUNK
    fw = _passes(q, k, v, s, g, scale, C=C)
    bw = _passes(*(x.flip(1) for x in (q, k, v, s, g)), scale, C=C)
    qf, kf, sf = q.float(), k.float(), s.float()
    ok = (ck.from_chunks(ck.gla_chunked(fw[2], fw[3], fw[1], gv=fw[0]), T)
          + ck.from_chunks(ck.gla_chunked(bw[2], bw[3], bw[1], gv=bw[0]), T).flip(1)
          - (scale * (qf * kf).sum(-1, keepdim=True)) * sf)                          # (B, T, H, M)
    p = ok.softmax(-1)
    del ok
    o = (ck.from_chunks(ck.gla_chunked(ck.to_chunks(p, C), fw[1], fw[4], gk=fw[0]), T)
         + ck.from_chunks(ck.gla_chunked(ck.to_chunks(p.flip(1), C), bw[1], bw[4], gk=bw[0]), T).flip(1)
         - (p * sf).sum(-1, keepdim=True) * v.float())
    return o


def _fla(fn_name: str):
    return ck.fla_op("gsa", "fla.ops.gsa", fn_name, ("q", "k", "v", "s", "g"))


def reference(inputs, causal: bool = True):
    """Causal: fp32 ``naive_recurrent_gsa`` (fla's token-loop reference). Non-causal: ``dense_noncausal``
    (fp64) cast to fp32."""
    if not causal:
        return dense_noncausal(inputs).float()

    q, k, v, s, g = (inputs[n].float() for n in ("q", "k", "v", "s", "g"))
    o, _ = fla_gsa_naive.naive_recurrent_gsa(q, k, v, s, g, scale=ck.scale_of(inputs, q.shape[-1]))
    return o


#: Elements of one query block's fp64 ``(B, tb, T, H, M)`` pairwise decay tensor (128 MiB).
DENSE_BLOCK_ELEMENTS = 1 << 24


def dense_noncausal(inputs):
    """Non-causal GSA in fp64, O(T^2 M): ``ok_t = scale sum_s (q_t.k_s) s_s D(t,s)``, ``p = softmax_M(ok)``,
    ``o_t = sum_s (p_t . (s_s D(t,s))) v_s`` (module doc). ``q`` may have ``Tq <= T`` rows (the first
    positions). ``D(t, s) = e^{G_t - G_s}`` for ``s <= t`` and ``e^{X_s - X_t}`` for ``s > t``, with ``G``
    the inclusive and ``X = G - g`` the exclusive cumulative sum of ``g``; the exponent is chosen per
    pair before ``exp``. Query blocks bound the memory; under autograd each block is checkpointed.
    """
    q, k, v, s, g = (inputs[n].double() for n in ("q", "k", "v", "s", "g"))
    B, Tq, H, K = q.shape
    T, M = k.shape[1], s.shape[-1]
    scale = ck.scale_of(inputs, K)
    G = g.cumsum(1)
    X = G - g
    pos = torch.arange(T, device=q.device)

    def block(qb, Gb, Xb, lo):
        rows = torch.arange(lo, lo + qb.shape[1], device=q.device)
        fwd = (pos[None, :] <= rows[:, None])[None, :, :, None, None]               # s <= t
        e = torch.where(fwd, Gb[:, :, None] - G[:, None], X[:, None] - Xb[:, :, None])
        W = e.exp_() * s[:, None]                                                   # (B, tb, T, H, M)
        A = torch.einsum("bthk,bshk->btsh", qb, k) * scale
        p = (A[..., None] * W).sum(2).softmax(-1)                                    # (B, tb, H, M)
        X2 = (p[:, :, None] * W).sum(-1)                                             # (B, tb, T, H)
        return torch.einsum("btsh,bshv->bthv", X2, v)

    tb = max(1, DENSE_BLOCK_ELEMENTS // max(1, B * T * H * M))
    grad = torch.is_grad_enabled() and any(inputs[n].requires_grad for n in ("q", "k", "v", "s", "g"))
    outs = []
    for lo in range(0, Tq, tb):
        hi = min(lo + tb, Tq)
        args = (q[:, lo:hi], G[:, lo:hi], X[:, lo:hi], lo)
        outs.append(torch_checkpoint.checkpoint(block, *args, use_reentrant=False) if grad else block(*args))
    return torch.cat(outs, 1)


# ----------------------------------------------------------------------------- analytic models

def flops(shape: Shape, causal: bool = True) -> float:
    """Two chunkwise GLA passes (C=64, Tp = T padded to C, M = D slots):
    ``B*H*Tp*[(2C(K+M) + 4KM) + (2C(M+V) + 4MV)]``, twice for non-causal (forward + reversed scans);
    the softmax, gating and diagonal terms are not counted."""
    D = shape.D
    return (1 if causal else 2) * shape.B * shape.H * (ck.gla_flops(shape.T, D, D) + ck.gla_flops(shape.T, D, D))


def bytes_moved(shape: Shape, itemsize: int, causal: bool = True) -> float:
    """Read q, k, v, s, g and write o once: ``6*B*T*H*D*itemsize`` (M = D)."""
    return 6.0 * shape.B * shape.T * shape.H * shape.D * itemsize


def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
    """Predicted peak bytes allocated by one call above its inputs (terms: ``chunked.torch_peak_terms``).

    ``torch``, with ``a`` = one fp32 chunked (B, H, Tp, D) tensor, ``st`` = the (M, D) states of all
    chunks, ``sc`` = the (C, C) scores of all chunks (``a = st = sc`` when D = M = C = 64):
      fwd ``10a + max(2st, st + sc + a)``: the shared gate (``b``, ``e^b``, ``e^-b``, ``e^{b[-1]-b}``),
      chunked s, the chunked inputs of the running pass, its gated copies and the slot
      probabilities; then the scan or the intra-chunk step is the peak.
      fwdbwd ``13a + 5st + 3sc`` + input gradients ``5*B*T*H*D*itemsize`` (q, k, v, s, g; + ``a`` when
      casting an fp32 gradient to a lower input dtype). Fitted to torch.profiler peaks (D = 32, 64,
      128; within ~5%).
      non-causal: ``NONCAUSAL_PEAK_RATIO`` (1.9) times the causal model (both directions' chunked
      inputs and gates are alive together; measured 1.86-1.92x at D = 32, 64, 128, T = 2048).
    ``fla`` / ``fla-recurrent``: output, ok and p in fp32 (+ chunk states of both passes for ``fla``);
    fwdbwd adds the gradients of q, k, v, s, g. Not measurable here (no GPU): indicative.
    """
    a, st, sc, io = ck.torch_peak_terms(shape, itemsize)
    if backend == "torch":
        if mode == "fwdbwd":
            peak = 13 * a + 5 * st + 3 * sc + 5 * io + (a if itemsize != 4 else 0)
        else:
            peak = 10 * a + max(2 * st, st + sc + a)
        return int(peak if causal else NONCAUSAL_PEAK_RATIO * peak)
    base = io + 2 * shape.B * shape.T * shape.H * shape.D * 4 + (2 * st if backend == "fla" else 0)
    return int(base if mode != "fwdbwd" else base + 5 * io)


# ----------------------------------------------------------------------------- recurrent form (decode)

def decode_start(inputs, T0: int) -> dict:
    """The two slot states after T0 tokens in closed form (``recurrent.gated_state``), fp32:
    ``hk = sum_s k_s (s_s e^{G_T - G_s})^T`` (B, H, K, M), ``hv = sum_s (s_s e^{G_T - G_s}) v_s^T`` (B, H, M, V)."""
    k, v, sl, g = (inputs[n][:, :T0] for n in ("k", "v", "s", "g"))
    return {"hk": rc.gated_state(k, sl, gv=g), "hv": rc.gated_state(sl, v, gk=g)}


def decode_step(state, inputs, t: int, scale: float):
    """Token t: pass 1 ``recurrent.step`` on (scale q, k, s) with the slot gate on the value side, softmax
    over the M slots, pass 2 ``recurrent.step`` on (p, s, v) with the gate on the key side."""
    q, k, v, sl, g = (rc.token(inputs, n, t) for n in ("q", "k", "v", "s", "g"))
    ok = rc.step(state["hk"], q.float() * scale, k, sl, gv=g)
    p = torch.softmax(ok, dim=-1)
    return rc.step(state["hv"], p, sl, v, gk=g)


def decode_fla(state, inputs, t0: int, t1: int, scale: float, step: int = 1):
    """``fused_recurrent_gsa`` one token per call, ``(hk, hv)`` carried in place."""
    outs = []
    for t in range(t0, t1, step):   # decode: one call per token; streaming: one call per chunk
        o, (hk, hv) = fla_gsa.fused_recurrent_gsa(*(inputs[n][:, t:min(t + step, t1)] for n in ("q", "k", "v", "s", "g")), scale=scale,
                                          initial_state=(state["hk"], state["hv"]), output_final_state=True)
        state["hk"].copy_(hk)
        state["hv"].copy_(hv)
        outs.append(o)
    return torch.cat(outs, dim=1)


def decode_chunk(state, inputs, t0: int, t1: int, scale: float):
    """Streaming chunk at once: pass 1 (``recurrent.gla_chunk``, slot gate on the value side) for every
    token of the chunk, the softmax over slots, then pass 2 (gate on the key side)."""
    q, k, v, sl, g = (inputs[n][:, t0:t1] for n in ("q", "k", "v", "s", "g"))
    ok = rc.gla_chunk(state["hk"], q.float() * scale, k, sl, gv=g)
    return rc.gla_chunk(state["hv"], torch.softmax(ok, dim=-1), sl, v, gk=g)


RECURRENT = rc.LinearForm(
    start=decode_start, step=decode_step, fla=decode_fla, chunk=decode_chunk,
    state_shapes=lambda s: {"hk": (s.B, s.H, s.D, s.D), "hv": (s.B, s.H, s.D, s.D)},   # M = D slots
    step_flops=lambda s: 12.0 * s.B * s.H * s.D * s.D,
)


# ----------------------------------------------------------------------------- registry entry

_FLA = dict(devices=("cuda",), requires=("fla", "triton"), interpretable=True, varlen="cu_seqlens")

KERNEL = KernelSpec(
    name="gsa",
    group="gated",
    title="GSA (gated slot attention)",
    family="linear",
    make_inputs=make_inputs,
    backends={
        "torch": Backend("torch", run_torch, causal=(True, False), varlen="per_sequence",
                         description="two chunkwise GLA passes + slot softmax (C=64; non-causal: fwd + reversed scans), any device"),
        "fla": Backend("fla", _fla("chunk_gsa"), description="fla.ops.gsa.chunk_gsa (Triton)", **_FLA),
        "fla-recurrent": Backend("fla-recurrent", _fla("fused_recurrent_gsa"),
                                 description="fla.ops.gsa.fused_recurrent_gsa (Triton, token loop)", **_FLA),
    },
    reference=reference,
    reference_name="fla naive_recurrent_gsa (fp32 token loops); non-causal: dense pairwise form (fp64)",
    flops=flops,
    bytes_moved=bytes_moved,
    memory_bytes=memory_bytes,
    grad_inputs=("q", "k", "v", "s", "g"),
    max_head_dim=None,
    reference_max_T=REFERENCE_MAX_T,
    recurrent=RECURRENT,
    description="Gated slot attention (M = D slots, slot-axis forget gate): two O(T) chunkwise GLA passes.",
    notes={"slots": "M = D"},
)
