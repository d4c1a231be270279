"""LightNet attention: linear attention whose keys are normalised by a cumulative softmax.

As ``fla.ops.lightnet.chunk_lightnet`` (fla's ``fused_additive_gate`` followed by ``chunk_gla``):
per key channel ``z_t = logcumsumexp_{s<=t} k_s``, keys ``k'_t = exp(k_t - z_t)``, decay
``gk_t = z_{t-1} - z_t <= 0`` (``gk_0 = 0``), then GLA:
``S_t = Diag(e^{gk_t}) S_{t-1} + k'_t v_t^T``, ``o_t = scale * S_t^T q_t``. Equivalently
``o_t = scale * sum_{s<=t} (q_t * e^{-z_t}) . e^{k_s} v_s``. Inputs as the fla layer produces them:
``q = silu(randn)``, ``k`` raw logits ``randn``, ``v ~ N(0, 1)``; layout (B, T, H, D); optional python
float ``inputs["scale"]`` (default ``D ** -0.5``).

Backends
--------
* ``torch``: ``z`` by ``torch.logcumsumexp`` over the whole sequence, then the generic chunkwise GLA
  (``chunked.gla_chunked``, C=64) with the chunk-local log gate ``b_t = z_ref - z_t``, where
  ``z_ref`` is ``z`` at the end of the previous chunk (``z_0`` for the first chunk; ``gk_0 = 0`` makes
  that exact). Numerical safety, for any logits: ``z`` is non-decreasing, so ``b <= 0`` and every
  inter-chunk factor ``e^{b}``, ``e^{b[-1]-b}`` is ``<= 1``; the intra-chunk factor ``e^{-b}`` is
  bounded by ``e^{span}`` with ``span = z_end - z_ref``, which ``gla_chunked`` keeps below 30 and
  otherwise replaces by exact pairwise decays (see ``chunked``). ``k' = e^{k-z} <= 1`` always.
  Randn logits give spans of a few units (the first chunk ~5-10, later ones ``log((n+1)/n)``).
* ``fla`` (``chunk_lightnet``) and ``fla-recurrent`` (``fused_recurrent_lightnet``): Triton, CUDA (or
  CPU under Triton's interpreter); both have a backward (through the additive gate).

Reference (fla has none): an independent token-by-token form -- ``torch.logcumsumexp`` for the gate,
then ``fla.ops.gla.naive.naive_recurrent_gla`` (a Python loop over tokens; its fixed ``K**-0.5`` scale
is undone by pre-scaling q), fp32.
"""

from __future__ import annotations

from profiler.core.lazy import lazy_import
from profiler.kernels import chunked as ck
from profiler.kernels import recurrent as rc
from profiler.kernels.base import Backend, KernelSpec, Shape, require_causal

fla_lightnet = lazy_import('fla.ops.lightnet')

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

fla_gla_naive = lazy_import('fla.ops.gla.naive')

#: The token loop costs ~60-130 us per token here; 2048 tokens stay well under 2 s with autograd.
REFERENCE_MAX_T = 2048


def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
    """q = silu(randn), k = randn (raw logits), v = randn; (B, T, H, D), deterministic in ``seed``."""
    gen = ck.generator(seed)
    dims = (shape.B, shape.T, shape.H, shape.D)
    dt = ck.torch_dtype(dtype)
    q = F.silu(ck.randn(dims, gen))
    k = ck.randn(dims, gen)
    v = ck.randn(dims, gen)
    return {n: x.to(device=device, dtype=dt) for n, x in (("q", q), ("k", k), ("v", v))}


def gate(k) -> tuple:
    """``(k', z)``: ``z = logcumsumexp_t k`` and ``k' = exp(k - z)`` in fp32, layout (B, T, H, K)."""
    z = torch.logcumsumexp(k.float(), dim=1)
    return (k.float() - z).exp(), z


# ----------------------------------------------------------------------------- backends

def run_torch(inputs, causal: bool = True):
    """Chunkwise LightNet without a full-length logcumsumexp (see the module docstring)."""
    require_causal(causal, "lightnet/torch")

    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    B, T, H, D = q.shape
    C = ck.CHUNK
    kc = ck.to_chunks(k, C, pad=float("-inf"))           # padded logits carry no mass
    m = kc.amax(-2, keepdim=True)                          # (B, H, N, 1, K) chunk max
    w = (kc - m).exp()                                     # e^{k - m} <= 1
    z_end = torch.logcumsumexp(m + w.sum(-2, keepdim=True).log(), dim=2)  # z at each chunk's end
    z_ref = torch.cat([kc[:, :, :1, :1], z_end[:, :, :-1]], dim=2)        # z_0, then previous end
    N = kc.shape[2]
    base = torch.ones(N, 1, 1, device=kc.device)
    base[0] = 0.0                                          # chunk 0 has no mass before z_ref = k_0
    kf = w * (m - z_ref).clamp(max=ck.SAFE_SPAN).exp()    # e^{k - z_ref} (clamped in over-span chunks)
    # e^{z_t - z_ref} >= 1 (z is non-decreasing); the clamp only acts on rounding and on over-span chunks
    # (recomputed below), keeping their values finite so autograd never meets 0/0
    qg = (ck.to_chunks(q, C) * ck.scale_of(inputs, D)) / (kf.cumsum(-2) + base).clamp_min(1.0)  # q e^{b}
    kd = w * (m - z_end).exp()                             # e^{k - z_end} <= 1
    del w
    vc = ck.to_chunks(v, C)
    o, S = ck.key_gated_core(qg, kf, kd, vc, (z_ref - z_end).exp().transpose(-1, -2))
    span = (z_end - z_ref).amax(dim=(-1, -2))              # (B, H, N) total log decay per chunk
    bad = span > ck.SAFE_SPAN
    if bool(bad.any()):
        o = _exact_chunks(o, S, q, kc, vc, z_ref, bad.reshape(-1).nonzero().squeeze(1), ck.scale_of(inputs, D))
    return ck.from_chunks(o, T, q.dtype)


def _exact_chunks(o, S, q, kc, vc, z_ref, idx, scale):
    """Recompute the chunks whose decay exceeds ``SAFE_SPAN`` exactly: local logcumsumexp, pairwise decays."""
    B, H, N, C, K = kc.shape
    V = vc.shape[-1]

    def rows(x):
        return x.reshape(B * H * N, x.shape[-2], x.shape[-1]).index_select(0, idx)

    kb, zr = rows(kc), rows(z_ref)
    zl = torch.logcumsumexp(kb, dim=1)
    zt = torch.where((idx % N == 0)[:, None, None], zl, torch.logaddexp(zl, zr))
    b = zr - zt                                            # <= 0
    qb = rows(ck.to_chunks(q, C) * scale)
    exact = ck.pairwise_intra(qb, (kb - zt).exp(), rows(vc), b, None) + (qb * b.exp()) @ rows(S)
    return o.reshape(B * H * N, C, V).index_copy(0, idx, exact).view(B, H, N, C, V)


def _fla(fn_name: str):
    return ck.fla_op("lightnet", "fla.ops.lightnet", fn_name, ("q", "k", "v"))


def reference(inputs, causal: bool = True):
    """Token-by-token fp32: logcumsumexp gate, then ``naive_recurrent_gla`` (independent of ``torch``)."""
    require_causal(causal, "lightnet reference")

    q, k, v = (inputs[n].float() for n in ("q", "k", "v"))
    D = q.shape[-1]
    kp, z = gate(k)
    gk = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1] - z[:, 1:]], dim=1)
    # naive_recurrent_gla always multiplies q by K**-0.5: pre-scale to get ``scale``
    o, _ = fla_gla_naive.naive_recurrent_gla(q * (ck.scale_of(inputs, D) * D ** 0.5), kp, v, gk)
    return o


# ----------------------------------------------------------------------------- analytic models

def flops(shape: Shape, causal: bool = True) -> float:
    """``B*H*Tp*(2C(K+V) + 4KV)`` (one chunkwise GLA pass, C=64, Tp = T padded to C).

    The logcumsumexp gate and the elementwise gating are O(T*D) and not counted. Causal only.
    """
    return shape.B * shape.H * ck.gla_flops(shape.T, shape.D, shape.D)


def bytes_moved(shape: Shape, itemsize: int, causal: bool = True) -> float:
    """Read q, k, v and write o once: ``4*B*T*H*D*itemsize``."""
    return 4.0 * shape.B * shape.T * shape.H * shape.D * itemsize


def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
    """Predicted peak bytes allocated by one call above its inputs (terms: ``chunked.torch_peak_terms``).

    ``torch``, with ``a`` = one fp32 chunked (B, H, Tp, D) tensor, ``st`` = the (K, V) states of all
    chunks, ``sc`` = the (C, C) scores of all chunks (``a = st = sc`` when D = C = 64):
      fwd ``5a + max(2st, st + sc + a)``: chunked logits, ``e^{k-z_ref}``, ``q e^{b}``,
      ``e^{k-z_end}`` and chunked v stay alive; then either the scan (contributions + states) or the
      intra-chunk step (states + scores + output) is the peak.
      fwdbwd ``10a + 3st + 2sc`` + input gradients ``3*B*T*H*D*itemsize`` (+ ``a`` when casting an fp32
      gradient to a lower input dtype). Fitted to torch.profiler peaks (D = 32, 64, 128; within ~5%).
    ``fla`` / ``fla-recurrent``: k', the fp32 gate (2 B*T*H*D*4) + output (+ chunk states for ``fla``);
    fwdbwd adds the gradients of q, k, v. Not measurable here (no GPU): indicative.
    """
    a, st, sc, io = ck.torch_peak_terms(shape, itemsize)
    if backend == "torch":
        if mode == "fwdbwd":
            return int(10 * a + 3 * st + 2 * sc + 3 * io + (a if itemsize != 4 else 0))
        return int(5 * a + max(2 * st, st + sc + a))
    base = 2 * shape.B * shape.T * shape.H * shape.D * 4 + io + (st if backend == "fla" else 0)
    return int(base if mode != "fwdbwd" else base + 3 * io)


# ----------------------------------------------------------------------------- recurrent form (decode)

def decode_start(inputs, T0: int) -> dict:
    """State after T0 tokens: ``z = logsumexp_{s<T0} k_s`` (B, H, K) and ``S = sum_s e^{k_s - z} v_s^T``
    (the gates telescope: ``e^{G_T - G_s} k'_s = e^{k_s - z_T}``), fp32."""
    k = inputs["k"][:, :T0].float()
    z = torch.logsumexp(k, dim=1)                                   # (B, H, K)
    S = rc.gated_state((k - z[:, None]).exp(), inputs["v"][:, :T0])
    return {"S": S, "z": z}


def decode_step(state, inputs, t: int, scale: float):
    """Token t: ``z' = logaddexp(z, k_t)``, ``k' = e^{k_t - z'}``, gate ``z - z'``, then ``recurrent.step``."""
    k = rc.token(inputs, "k", t).float()
    z = state["z"]
    z_new = torch.logaddexp(z, k)
    o = rc.step(state["S"], rc.token(inputs, "q", t).float() * scale, (k - z_new).exp(), rc.token(inputs, "v", t),
                gk=z - z_new)
    z.copy_(z_new)
    return o


def decode_fla(state, inputs, t0: int, t1: int, scale: float, step: int = 1):
    """``fused_recurrent_lightnet`` one token per call, ``(S, z)`` carried in place (z as fla's [B, 1, H, K])."""
    S, z = state["S"], state["z"]
    B, H, K = z.shape
    outs = []
    for t in range(t0, t1, step):   # decode: one call per token; streaming: one call per chunk
        o, (S1, z1) = fla_lightnet.fused_recurrent_lightnet(*(inputs[n][:, t:min(t + step, t1)] for n in ("q", "k", "v")), scale=scale,
                                               initial_state=(S, z.view(B, 1, H, K)), output_final_state=True)
        S.copy_(S1)
        z.copy_(z1.reshape(B, H, K))
        outs.append(o)
    return torch.cat(outs, dim=1)


def decode_chunk(state, inputs, t0: int, t1: int, scale: float):
    """Streaming chunk at once: ``z_t = logaddexp(z, logcumsumexp(k))`` inside the chunk, then
    ``recurrent.gla_chunk`` with ``k' = e^{k - z_t}`` and gates ``z_{t-1} - z_t``."""
    k = inputs["k"][:, t0:t1].float()
    z0 = state["z"].unsqueeze(1)                                        # (B, 1, H, K)
    z = torch.logaddexp(z0, torch.logcumsumexp(k, dim=1))
    gk = torch.cat([z0, z[:, :-1]], dim=1) - z
    o = rc.gla_chunk(state["S"], inputs["q"][:, t0:t1].float() * scale, (k - z).exp(), inputs["v"][:, t0:t1], gk=gk)
    state["z"].copy_(z[:, -1])
    return o


RECURRENT = rc.LinearForm(
    start=decode_start, step=decode_step, fla=decode_fla, chunk=decode_chunk,
    state_shapes=lambda s: {"S": (s.B, s.H, s.D, s.D), "z": (s.B, s.H, s.D)},
    step_flops=lambda s: 6.0 * s.B * s.H * s.D * s.D,
)


# ----------------------------------------------------------------------------- registry entry

_FLA = dict(devices=("cuda",), requires=("fla", "triton"), interpretable=True, varlen="cu_seqlens")

KERNEL = KernelSpec(
    name="lightnet",
    group="gated",
    title="LightNet attention",
    family="linear",
    make_inputs=make_inputs,
    backends={
        "torch": Backend("torch", run_torch, varlen="per_sequence", description="logcumsumexp gate + chunkwise GLA (C=64), any device"),
        "fla": Backend("fla", _fla("chunk_lightnet"), description="fla.ops.lightnet.chunk_lightnet (Triton)", **_FLA),
        "fla-recurrent": Backend("fla-recurrent", _fla("fused_recurrent_lightnet"),
                                 description="fla.ops.lightnet.fused_recurrent_lightnet (Triton, token loop)", **_FLA),
    },
    reference=reference,
    reference_name="token loop: logcumsumexp gate + fla naive_recurrent_gla (fp32)",
    flops=flops,
    bytes_moved=bytes_moved,
    memory_bytes=memory_bytes,
    grad_inputs=("q", "k", "v"),
    max_head_dim=None,
    reference_max_T=REFERENCE_MAX_T,
    recurrent=RECURRENT,
    description="Linear attention with cumulative-softmax key normalisation (GLA form): O(T) chunkwise.",
)
