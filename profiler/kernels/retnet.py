"""RetNet retention: causal linear attention with a fixed exponential decay per head.

``S_t = gamma_h S_{t-1} + k_t v_t^T``, ``o_t = scale * S_t^T q_t`` with fla's fixed decays
``gamma_h = 1 - 2^(-5-h)`` (``g_gamma[h] = log gamma_h``, as ``fla.ops.retention.chunk_retention``:
about .969, .984, .992, .996 for H=4). Inputs q, k, v ~ N(0, 1), layout (B, T, H, D); an optional
python float ``inputs["scale"]`` (default ``D ** -0.5``).

Backends
--------
* ``torch``: chunkwise-parallel (``chunked.decay_chunked``, C=64): per chunk
  ``O = (Q K^T * D) V + (Q gamma^{i+1}) S`` with ``D_ij = gamma^{i-j} [j<=i]``, and
  ``S <- gamma^C S + (K gamma^{C-1-j})^T V``; only that state update loops in Python.
  Every decay exponent is <= 0, so it is safe for any gamma. fp32 arithmetic, output in the input dtype.
* ``fla`` (``chunk_retention``), ``fla-fused-chunk`` (``fused_chunk_retention``), ``fla-recurrent``
  (``fused_recurrent_retention``), ``fla-parallel`` (``parallel_retention``, quadratic): Triton, CUDA
  (or CPU under Triton's interpreter for correctness); all four have a backward.

Reference: ``fla.ops.simple_gla.naive.naive_chunk_simple_gla`` with ``g = log gamma`` broadcast to
(B, T, H), in fp32 (a chunked Python loop: fast enough up to ``REFERENCE_MAX_T``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from profiler.core import counting
from profiler.core.lazy import lazy_import
from profiler.kernels import chunked as ck
from profiler.kernels import recurrent as rc
from profiler.kernels.base import Backend, KernelSpec, Shape, expand_kv, require_causal

fla_retention = lazy_import('fla.ops.retention')

torch = lazy_import("torch")

fla_simple_gla_naive = lazy_import('fla.ops.simple_gla.naive')

if TYPE_CHECKING:
    import torch

REFERENCE_MAX_T = 8192


def log_gamma(H: int, device="cpu") -> "torch.Tensor":
    """fla's fixed per-head log decay ``log(1 - 2^(-5-h))``, fp32 ``(H,)``."""
    return (1 - 2.0 ** (-5.0 - torch.arange(H, dtype=torch.float, device=device))).log()


def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
    """q (B, T, H, D), k (B, T, Hkv, D), v (B, T, Hkv, Dv) ~ N(0, 1), deterministic in ``seed`` on every
    device. Shared key/value heads (``kv_heads``): query head h reads k, v head ``h // (H / Hkv)``
    with its own decay gamma_h, so every query head keeps its own state."""
    gen = ck.generator(seed)
    B, T = shape.B, shape.T
    dims = {"q": (B, T, shape.H, shape.D), "k": (B, T, shape.Hkv, shape.D), "v": (B, T, shape.Hkv, shape.Dv)}
    dt = ck.torch_dtype(dtype)
    return {n: ck.randn(d, gen).to(device=device, dtype=dt) for n, d in dims.items()}


def _qkv(inputs):
    """q, k, v with k and v repeated to the query heads (a no-op without shared heads)."""
    q = inputs["q"]
    return q, expand_kv(inputs["k"], q.shape[2]), expand_kv(inputs["v"], q.shape[2])


# ----------------------------------------------------------------------------- backends

def run_torch(inputs, causal: bool = True):
    require_causal(causal, "retnet/torch")
    q, k, v = _qkv(inputs)
    B, T, H, D = q.shape
    C = ck.CHUNK
    o = ck.decay_chunked(ck.to_chunks(q, C), ck.to_chunks(k, C), ck.to_chunks(v, C), log_gamma(H, q.device),
                         ck.scale_of(inputs, D))
    return ck.from_chunks(o, T, q.dtype)


def _fla(fn_name: str):
    """fla's op on k, v repeated to the query heads (fla's retention has no shared-head path)."""
    op = ck.fla_op("retnet", "fla.ops.retention", fn_name, ("q", "k", "v"))

    def run(inputs, causal: bool = True):
        q, k, v = _qkv(inputs)
        return op({**inputs, "k": k, "v": v}, causal)

    run.__name__ = op.__name__
    return run


def reference(inputs, causal: bool = True):
    """fp32 ``naive_chunk_simple_gla`` with ``g = log gamma`` (fla's own RetNet-equivalent form)."""
    require_causal(causal, "retnet reference")

    q, k, v = (x.float() for x in _qkv(inputs))
    B, T, H, D = q.shape
    g = log_gamma(H, q.device)[None, None, :].expand(B, T, H)
    o, _ = fla_simple_gla_naive.naive_chunk_simple_gla(q, k, v, g, scale=ck.scale_of(inputs, D))
    return o


# ----------------------------------------------------------------------------- analytic models

def flops(shape: Shape, causal: bool = True) -> float:
    """``B*H*Tp*(2C(K+V) + 4KV)``, Tp = T padded to the chunk C=64 (``chunked.gla_flops``).

    The chunkwise algorithm's matmuls: ``Q K^T`` and ``A V`` over C x C blocks, ``Q S`` and the state
    contribution ``K^T V``. The decay mask multiply is not counted. Causal only.
    """
    return shape.B * shape.H * ck.gla_flops(shape.T, shape.D, shape.D)


def bytes_moved(shape: Shape, itemsize: int, causal: bool = True) -> float:
    """Read q, k, v and write o once: ``4*B*T*H*D*itemsize``."""
    return 4.0 * shape.B * shape.T * shape.H * shape.D * itemsize


def count(shape: Shape, causal: bool, mode: str, itemsize: int) -> tuple[float, float]:
    """``profiler.core.counting``: ``B*Hq*Tp*(2C(K+V) + 4KV)`` (C = 64, V = Dv) x the mode's factor
    (fwd 1, bwd 2, fwdbwd 3); bytes: q, k, v (Hkv heads), o once (x2 bwd, x3 fwdbwd)."""
    a = shape.counting(True)
    return counting.linear_flops(a, mode, chunk=ck.CHUNK), counting.io_bytes(a, itemsize, mode)


def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
    """The default shape's model (below) at ``D = max(D, Dv)`` (an upper bound when Dv != D), plus,
    with shared key/value heads, k and v repeated to the query heads; bwd as fwdbwd."""
    wide = Shape(shape.B, shape.T, shape.H, max(shape.D, shape.Dv))
    rep = shape.B * shape.T * shape.H * (shape.D + shape.Dv) * itemsize if shape.Hkv != shape.H else 0
    return _memory_bytes(wide, itemsize, backend, causal, "fwdbwd" if mode == "bwd" else mode) + rep * (
        2 if mode != "fwd" else 1)


def _memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
    """Predicted peak bytes allocated by one call above its inputs (``chunked.torch_peak_terms``).

    ``torch``, with ``a`` = one fp32 chunked (B, H, Tp, D) tensor, ``st`` = the (K, V) states of all
    chunks, ``sc`` = the (C, C) scores of all chunks (``a = st = sc`` when D = C = 64):
      fwd ``3a + st + max(st, sc + a)``: chunked q, k, v and the entering states stay alive; the peak
      is either the scan (contributions + states) or the intra-chunk step (scores + output).
      fwdbwd ``7a + 2st + sc`` + the input gradients ``3*B*T*H*D*itemsize`` (+ ``a`` for an fp32
      gradient being cast when the inputs are not fp32): tensors saved by autograd plus the
      backward's transient gradients. Fitted to torch.profiler peaks (D = 32, 64, 128; within ~5%).
    ``fla`` / ``fla-fused-chunk`` / ``fla-recurrent``: output + fp32 chunk states ``st`` (FLA.md's dry
    run: 2 MiB per 1k tokens at H=4, D=64); ``fla-parallel``: output only. fwdbwd adds the
    gradients of q, k, v. Not measurable here (no GPU): indicative.
    """
    a, st, sc, io = ck.torch_peak_terms(shape, itemsize)
    if backend == "torch":
        if mode == "fwdbwd":
            return int(7 * a + 2 * st + sc + 3 * io + (a if itemsize != 4 else 0))
        return int(3 * a + st + max(st, sc + a))
    if backend == "fla-parallel":
        return int(io + (3 * io if mode == "fwdbwd" else 0))
    return int(io + st + (3 * io + st if mode == "fwdbwd" else 0))


# ----------------------------------------------------------------------------- recurrent form (decode)

def decode_start(inputs, T0: int) -> dict:
    """``S = sum_{s<T0} gamma^{T0-1-s} k_s v_s^T`` (``recurrent.gated_state``), fp32 (B, H, K, V)."""
    k = inputs["k"][:, :T0]
    lg = log_gamma(k.shape[2], k.device)[None, None, :, None].expand(1, T0, -1, 1)
    return {"S": rc.gated_state(k, inputs["v"][:, :T0], gk=lg)}


def decode_step(state, inputs, t: int, scale: float):
    """Token t: ``S = gamma S + k v^T``, ``o = S^T (scale q)`` (``recurrent.step``)."""
    q = rc.token(inputs, "q", t)
    lg = log_gamma(q.shape[1], q.device)[None, :, None]
    return rc.step(state["S"], q.float() * scale, rc.token(inputs, "k", t), rc.token(inputs, "v", t), gk=lg)


def decode_fla(state, inputs, t0: int, t1: int, scale: float, step: int = 1):
    """``fused_recurrent_retention`` one token per call, ``initial_state`` carried in place."""
    outs = []
    for t in range(t0, t1, step):   # decode: one call per token; streaming: one call per chunk
        o, S = fla_retention.fused_recurrent_retention(*(inputs[n][:, t:min(t + step, t1)] for n in ("q", "k", "v")), scale=scale,
                                         initial_state=state["S"], output_final_state=True)
        state["S"].copy_(S)
        outs.append(o)
    return torch.cat(outs, dim=1)


def decode_chunk(state, inputs, t0: int, t1: int, scale: float):
    """Streaming chunk ``[t0, t1)`` at once from the carried state (``recurrent.gla_chunk``)."""
    q, k, v = (inputs[n][:, t0:t1] for n in ("q", "k", "v"))
    lg = log_gamma(q.shape[2], q.device)[None, None, :, None].expand(1, t1 - t0, -1, 1)
    return rc.gla_chunk(state["S"], q.float() * scale, k, v, gk=lg)


RECURRENT = rc.LinearForm(
    start=decode_start, step=decode_step, fla=decode_fla, chunk=decode_chunk,
    state_shapes=lambda s: {"S": (s.B, s.H, s.D, s.D)},
    step_flops=lambda s: 6.0 * s.B * s.H * s.D * s.D,   # decay, outer product, S^T q
)


# ----------------------------------------------------------------------------- registry entry

_FLA = dict(devices=("cuda",), requires=("fla", "triton"), interpretable=True, varlen="cu_seqlens")

KERNEL = KernelSpec(
    name="retnet",
    group="linear+decay",
    title="RetNet (retention)",
    family="linear",
    make_inputs=make_inputs,
    backends={
        "torch": Backend("torch", run_torch, varlen="per_sequence",
                         description="chunkwise-parallel pure PyTorch (C=64), any device"),
        "fla": Backend("fla", _fla("chunk_retention"), description="fla.ops.retention.chunk_retention (Triton)", **_FLA),
        "fla-fused-chunk": Backend("fla-fused-chunk", _fla("fused_chunk_retention"),
                                   description="fla.ops.retention.fused_chunk_retention (Triton)", **_FLA),
        "fla-recurrent": Backend("fla-recurrent", _fla("fused_recurrent_retention"),
                                 description="fla.ops.retention.fused_recurrent_retention (Triton, token loop)", **_FLA),
        "fla-parallel": Backend("fla-parallel", _fla("parallel_retention"),
                                description="fla.ops.retention.parallel_retention (Triton, quadratic)", **_FLA),
    },
    reference=reference,
    reference_name="fla naive_chunk_simple_gla with g = log gamma (fp32)",
    flops=flops,
    bytes_moved=bytes_moved,
    memory_bytes=memory_bytes,
    grad_inputs=("q", "k", "v"),
    max_head_dim=None,
    reference_max_T=REFERENCE_MAX_T,
    recurrent=RECURRENT,
    count=count,
    formulas=(counting.FORMULAS["linear_flops"], counting.FORMULAS["io_bytes"]),
    shape_axes=("kv_heads", "value_dim"),
    description="Retention with fla's fixed per-head decay gamma_h = 1 - 2^(-5-h): O(T) chunkwise.",
)
