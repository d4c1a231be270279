"""GSA, gated slot attention: two gated linear-attention passes with a softmax over M slots between.

As ``fla.ops.gsa.chunk_gsa`` with a slot-axis log forget gate ``g`` (``[B, T, H, M]``, ``<= 0``) and
slot inputs ``s``: ``hk_t = hk_{t-1} Diag(e^{g_t}) + k_t s_t^T``, ``ok_t = scale * hk_t^T q_t``
(an M-vector), ``p_t = softmax_M(ok_t)``, ``hv_t = Diag(e^{g_t}) hv_{t-1} + s_t v_t^T``,
``o_t = hv_t^T p_t``. Here ``M = D`` slots. Inputs in the ranges of fla's ``GatedSlotAttention``
layer: ``q, k = silu(randn)`` (swish feature map), ``v = silu(randn)``, ``g = logsigmoid(randn) / 8``,
``s = 1 - exp(g)``; layout (B, T, H, D). Optional python float ``inputs["scale"]`` (default
``D ** -0.5`` as fla's ops; the fla layer passes ``scale=1``).

Backends
--------
* ``torch``: the chunk-local cumsum ``b`` of ``g`` (C=64) is exponentiated once
  (``chunked.chunk_gate``) and shared by both passes of ``chunked.gla_chunked``: pass 1 is GLA with the
  gate on the *value* (slot) side, pass 2 is GLA(p, s, v) with the gate on the *key* (slot) side and
  scale 1. Exact for any gate: inter-chunk factors have exponents <= 0; a chunk whose total decay
  exceeds ``chunked.SAFE_SPAN`` (30; the layer's gate gives at most ~10 per 64 tokens) is recomputed
  with exact pairwise decays.
* ``fla`` (``chunk_gsa``) and ``fla-recurrent`` (``fused_recurrent_gsa``): Triton, CUDA (or CPU under
  Triton's interpreter); both have a backward.

Reference: ``fla.ops.gsa.naive.naive_recurrent_gsa`` (two token loops), fp32.
"""

from __future__ import annotations

from profiler.kernels import chunked as ck
from profiler.kernels.base import Backend, KernelSpec, Shape, require_causal

#: Two token loops at ~60-130 us per token each: 2048 tokens stay under ~2 s with autograd.
REFERENCE_MAX_T = 2048
#: fla layer default: ``g = logsigmoid(f_proj x) / gate_logit_normalizer``.
GATE_LOGIT_NORMALIZER = 8.0


def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
    """q, k, v = silu(randn); g = logsigmoid(randn)/8 and s = 1 - exp(g) with M = D slots."""
    import torch
    import torch.nn.functional as F

    gen = ck.generator(seed)
    dims = (shape.B, shape.T, shape.H, shape.D)
    dt = ck.torch_dtype(dtype)
    q, k, v = (F.silu(ck.randn(dims, gen)) for _ in range(3))
    g = (F.logsigmoid(ck.randn(dims, gen)) / GATE_LOGIT_NORMALIZER).to(dt)
    s = 1 - torch.exp(g.float())  # from the stored g, so s = 1 - e^g holds at the stored precision
    out = {"q": q, "k": k, "v": v, "s": s, "g": g}
    return {n: x.to(device=device, dtype=dt) for n, x in out.items()}


# ----------------------------------------------------------------------------- backends

def run_torch(inputs, causal: bool = True):
    require_causal(causal, "gsa/torch")
    q = inputs["q"]
    B, T, H, D = q.shape
    C = ck.CHUNK
    gate = ck.chunk_gate(ck.chunk_local_cumsum(ck.to_chunks(inputs["g"], C)))
    sc = ck.to_chunks(inputs["s"], C)
    qc = ck.to_chunks(q, C) * ck.scale_of(inputs, D)
    ok = ck.gla_chunked(qc, ck.to_chunks(inputs["k"], C), sc, gv=gate)   # (B, H, N, C, M)
    del qc
    p = ok.softmax(-1)
    del ok
    o = ck.gla_chunked(p, sc, ck.to_chunks(inputs["v"], C), gk=gate)
    return ck.from_chunks(o, T, q.dtype)


def _fla(fn_name: str):
    def run(inputs, causal: bool = True):
        require_causal(causal, f"gsa/{fn_name}")
        import fla.ops.gsa as gsa

        q = inputs["q"]
        o, _ = getattr(gsa, fn_name)(q, inputs["k"], inputs["v"], inputs["s"], inputs["g"],
                                     scale=ck.scale_of(inputs, q.shape[-1]))
        return o

    run.__name__ = f"run_{fn_name}"
    return run


def reference(inputs, causal: bool = True):
    """fp32 ``naive_recurrent_gsa`` (fla's token-loop reference)."""
    require_causal(causal, "gsa reference")
    from fla.ops.gsa.naive import naive_recurrent_gsa

    q, k, v, s, g = (inputs[n].float() for n in ("q", "k", "v", "s", "g"))
    o, _ = naive_recurrent_gsa(q, k, v, s, g, scale=ck.scale_of(inputs, q.shape[-1]))
    return o


# ----------------------------------------------------------------------------- analytic models

def flops(shape: Shape, causal: bool = True) -> float:
    """Two chunkwise GLA passes (C=64, Tp = T padded to C, M = D slots):
    ``B*H*Tp*[(2C(K+M) + 4KM) + (2C(M+V) + 4MV)]``; the softmax and gating are not counted."""
    D = shape.D
    return shape.B * shape.H * (ck.gla_flops(shape.T, D, D) + ck.gla_flops(shape.T, D, D))


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
    ``fla`` / ``fla-recurrent``: output, ok and p in fp32 (+ chunk states of both passes for ``fla``);
    fwdbwd adds the gradients of q, k, v, s, g. Not measurable here (no GPU): indicative.
    """
    a, st, sc, io = ck.torch_peak_terms(shape, itemsize)
    if backend == "torch":
        if mode == "fwdbwd":
            return int(13 * a + 5 * st + 3 * sc + 5 * io + (a if itemsize != 4 else 0))
        return int(10 * a + max(2 * st, st + sc + a))
    base = io + 2 * shape.B * shape.T * shape.H * shape.D * 4 + (2 * st if backend == "fla" else 0)
    return int(base if mode != "fwdbwd" else base + 5 * io)


# ----------------------------------------------------------------------------- registry entry

_FLA = dict(devices=("cuda",), requires=("fla", "triton"), interpretable=True)

KERNEL = KernelSpec(
    name="gsa",
    title="GSA (gated slot attention)",
    family="linear",
    make_inputs=make_inputs,
    backends={
        "torch": Backend("torch", run_torch, description="two chunkwise GLA passes + slot softmax (C=64), any device"),
        "fla": Backend("fla", _fla("chunk_gsa"), description="fla.ops.gsa.chunk_gsa (Triton)", **_FLA),
        "fla-recurrent": Backend("fla-recurrent", _fla("fused_recurrent_gsa"),
                                 description="fla.ops.gsa.fused_recurrent_gsa (Triton, token loop)", **_FLA),
    },
    reference=reference,
    reference_name="fla naive_recurrent_gsa (fp32 token loops)",
    flops=flops,
    bytes_moved=bytes_moved,
    memory_bytes=memory_bytes,
    grad_inputs=("q", "k", "v", "s", "g"),
    max_head_dim=None,
    reference_max_T=REFERENCE_MAX_T,
    description="Gated slot attention (M = D slots, slot-axis forget gate): two O(T) chunkwise GLA passes.",
    extras={"slots": "M = D"},
)
