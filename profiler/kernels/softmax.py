"""Softmax attention: the quadratic baseline every efficient mechanism is compared with.

``o_i = sum_j softmax_j(scale * q_i . k_j [+ causal mask]) v_j`` in layout ``(B, T, H, D)``.

Backends
--------
* ``sdpa``: ``torch.nn.functional.scaled_dot_product_attention`` (any device; on this CPU it picks
  the flash-style kernel with O(T) memory). ``sdpa-flash`` / ``sdpa-efficient`` / ``sdpa-cudnn`` /
  ``sdpa-math`` pin one implementation through ``torch.nn.attention.sdpa_kernel`` (CUDA; ``sdpa-math``
  also on CPU). A pinned implementation that cannot take the point raises (torch's own reason),
  which the record keeps; torch never silently falls back to another kernel.
* ``flex``: ``torch.nn.attention.flex_attention.flex_attention`` under ``torch.compile`` (CUDA and
  CPU where inductor can compile it; the compile is the point's first call, recorded in
  ``first_call``, never timed; no backward on CPU in torch 2.13). Causal via a ``create_block_mask`` block mask built once per
  (T, device) outside the timed call. ``run_flex(..., compiled=False)`` is the eager form (tests).
* ``flash-attn``: the flash-attn package's ``flash_attn_func`` (CUDA, fp16/bf16, D <= 256; the
  optional extra ``serprof[flash]``; skipped with the reason when the package is missing).
* ``naive``: the study's baseline, explicit ``T x T`` scores, then softmax, then ``@ v``. Scores and
  probabilities coexist at the softmax, so its forward peak is ``2 * B*H*T*T * itemsize`` (plus the
  output, and a ``T x T`` bool mask when causal); the memory model says exactly that.
* ``fla``: ``fla.ops.attn.parallel_attn`` (Triton, causal only, ``D <= 256``; CUDA, or CPU under
  Triton's interpreter for correctness).

Every backend reads an optional python float ``inputs["scale"]`` (default ``D ** -0.5``).

Packed varlen batches (``profiler.kernels.varlen``): ``flex`` (document mask), ``flash-attn``
(``flash_attn_varlen_func``) and ``fla`` (``parallel_attn(cu_seqlens=...)``) take ``cu_seqlens``; the
SDPA backends and ``naive`` run once per sequence, because torch 2.13's SDPA on nested jagged tensors
refuses ``is_causal=True`` ("Nested tensors for query / key are not supported when is_causal=True")
and varlen points are causal.

Shape axes (issue 18): k and v may have fewer heads than q (``kv_heads``: GQA/MQA) and v its own head
dim (``value_dim``); a causal sliding ``window`` of w keys (query i sees keys ``i-w+1 .. i``) arrives as
``inputs["window"]``. How each backend takes them (``GQA_IMPL`` / ``WINDOW_IMPL``, stored in each
record's ``extra``): SDPA ``enable_gqa=True`` and, for a window, a boolean ``(T, T)`` band mask built
once per (T, w, device) outside the timed call (no fused sliding-window path in SDPA; flash and
cuDNN pins take no mask, so they drop windows); FlexAttention ``enable_gqa`` and a sliding-window
``BlockMask`` (blocks wholly outside the band are skipped); flash-attn native GQA and
``window_size=(w-1, 0)`` (no Dv != D in flash-attn 2); fla ``parallel_attn`` native GQA, Dv and
``window_size``; naive: k, v repeated per query head and the band mask on its scores.

Reference: exact attention computed per block of queries (``blocked_attention``) from the fp32 values
of the inputs, accumulated in fp64, so a non-causal reference at long T needs O(T * block) memory,
never ``T x T``. It also accepts fewer
queries than keys (queries are positions ``0..Tq-1``), which ``profiler.measure.verify`` uses to check a
long non-causal point on a prefix of query rows against all keys.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

from profiler.core import counting
from profiler.core.lazy import lazy_import
from profiler.kernels.base import SHAPE_AXES, Backend, KernelSpec, Shape, expand_kv
from profiler.kernels.recurrent import CacheForm

torch_flex_attention = lazy_import("torch.nn.attention.flex_attention")

torch = lazy_import("torch")
flash_attn = lazy_import("flash_attn")   # optional extra serprof[flash]
F = lazy_import("torch.nn.functional")
torch_attention = lazy_import("torch.nn.attention")

fla_attn = lazy_import('fla.ops.attn')

if TYPE_CHECKING:
    import torch

#: Elements of one fp32 (B, H, block, T) score tile in the blocked reference / FoX (32 MiB).
TILE_ELEMENTS = 1 << 23
#: Longest causal T the verifier compares in full (longer points compare a prefix of this length).
REFERENCE_MAX_T = 4096


# ----------------------------------------------------------------------------- shared helpers

def torch_dtype(dtype):
    """'float32' / torch.dtype -> torch.dtype."""
    return dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype))


def randn(shape: tuple[int, ...], gen, dtype, device) -> "torch.Tensor":
    """Standard normal numbers from a CPU generator (identical on every device), cast and moved."""
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=torch_dtype(dtype))


def scale_of(inputs, D: int) -> float:
    """``inputs["scale"]`` if given (a python float), else ``D ** -0.5``."""
    s = inputs.get("scale")
    return float(s) if s is not None else D ** -0.5


def make_qkv(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
    """q (B, T, H, D), k (B, T, Hkv, D), v (B, T, Hkv, Dv) ~ N(0, 1), deterministic in ``seed`` on
    every device (the default shape draws exactly the values it always did)."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    B, T = shape.B, shape.T
    dims = {"q": (B, T, shape.H, shape.D), "k": (B, T, shape.Hkv, shape.D), "v": (B, T, shape.Hkv, shape.Dv)}
    return {name: randn(d, gen, dtype, device) for name, d in dims.items()}


def window_of(inputs) -> int:
    """``inputs["window"]`` (0: none)."""
    return int(inputs.get("window") or 0)


_BAND_MASKS: dict = {}


def band_mask(Tq: int, Tk: int, window: int, device) -> "torch.Tensor":
    """Boolean (Tq, Tk) mask, True where query i may see key j: ``i - window < j <= i`` (built once)."""
    key = (Tq, Tk, window, str(device))
    if key not in _BAND_MASKS:
        i = torch.arange(Tq, device=device)[:, None]
        j = torch.arange(Tk, device=device)[None, :]
        _BAND_MASKS[key] = (j <= i) & (j > i - window)
    return _BAND_MASKS[key]


def _block_rows(rows_per_query: int, T: int) -> int:
    """Query-block length so that a (rows_per_query, block, T) fp32 tile stays within TILE_ELEMENTS."""
    b = TILE_ELEMENTS // max(1, rows_per_query * T)
    return int(min(max(b, 16), 1024))


def blocked_attention(q, k, v, *, scale: float, causal: bool, bias=None, compute=None,
                      window: int = 0) -> "torch.Tensor":
    """Exact softmax attention, one block of queries at a time (O(T * block) memory).

    Computed in ``compute`` precision (default float64, so the oracle's own rounding is far below
    any tolerance checked against it) and returned as fp32 (B, Tq, H, D). ``q`` may be shorter than
    ``k`` (queries at positions ``0..Tq-1``). ``bias(i0, i1)``, if given, returns the additive logit
    bias of query rows ``[i0, i1)`` against all keys as (B, H, i1-i0, Tk) (FoX uses this). k and v
    may have fewer heads (GQA: repeated per query head) and v its own dim; ``window`` > 0: query i
    sees keys ``i-window+1 .. i`` only.
    """
    compute = compute or torch.float64
    B, Tq, H, D = q.shape
    Tk = k.shape[1]
    k, v = expand_kv(k, H), expand_kv(v, H)
    qh, kh, vh = (x.to(compute).transpose(1, 2) for x in (q, k, v))
    out = torch.empty(B, H, Tq, vh.shape[-1], dtype=torch.float32, device=q.device)
    blk = _block_rows(2 * B * H, Tk)
    for i0 in range(0, Tq, blk):
        i1 = min(Tq, i0 + blk)
        s = torch.matmul(qh[:, :, i0:i1], kh.transpose(-1, -2)).mul_(scale)
        if bias is not None:
            s.add_(bias(i0, i1))
        if causal or window:
            rows = torch.arange(i0, i1, device=q.device)[:, None]
            cols = torch.arange(Tk, device=q.device)[None, :]
            s.masked_fill_(cols > rows, float("-inf"))
            if window:
                s.masked_fill_(cols <= rows - window, float("-inf"))
        out[:, :, i0:i1] = torch.matmul(torch.softmax(s, dim=-1), vh)
    return out.transpose(1, 2)


# ----------------------------------------------------------------------------- backends

def _sdpa(inputs, causal: bool, which: str | None = None):
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    scale = scale_of(inputs, q.shape[-1])
    args = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    kw: dict = {"scale": scale, "is_causal": causal}
    if k.shape[2] != q.shape[2]:
        kw["enable_gqa"] = True
    w = window_of(inputs)
    if w:
        kw["is_causal"], kw["attn_mask"] = False, band_mask(q.shape[1], k.shape[1], w, q.device)
    if which is None:
        o = F.scaled_dot_product_attention(*args, **kw)
    else:
        with torch_attention.sdpa_kernel(getattr(torch_attention.SDPBackend, which)):
            o = F.scaled_dot_product_attention(*args, **kw)
    return o.transpose(1, 2)


def run_sdpa(inputs, causal: bool):
    return _sdpa(inputs, causal)


def run_sdpa_flash(inputs, causal: bool):
    return _sdpa(inputs, causal, "FLASH_ATTENTION")


def run_sdpa_efficient(inputs, causal: bool):
    return _sdpa(inputs, causal, "EFFICIENT_ATTENTION")


def run_sdpa_math(inputs, causal: bool):
    return _sdpa(inputs, causal, "MATH")


def run_sdpa_cudnn(inputs, causal: bool):
    return _sdpa(inputs, causal, "CUDNN_ATTENTION")


_FLEX_COMPILED: dict = {}
_BLOCK_MASKS: dict = {}


def _causal_mask(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def _window_mask(window: int):
    def mask(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx < window)
    return mask


def flex_block_mask(Tq: int, Tk: int, device, window: int = 0) -> object:
    """The causal (or sliding-window) ``BlockMask`` for (Tq, Tk) on ``device``, built once (outside
    every timed call)."""
    key = (Tq, Tk, str(device), window)
    if key not in _BLOCK_MASKS:
        mod = _window_mask(window) if window else _causal_mask
        _BLOCK_MASKS[key] = torch_flex_attention.create_block_mask(mod, B=None, H=None, Q_LEN=Tq, KV_LEN=Tk, device=str(device))
    return _BLOCK_MASKS[key]


#: Test seam: ``SERPROF_FLEX_COMPILE=0`` runs FlexAttention eagerly (tests/conftest.py sets it, so the
#: suite never pays inductor's compile on CPU, ~30-60 s per shape on 2 cores). Never set for measurements.
FLEX_COMPILE_ENV = "SERPROF_FLEX_COMPILE"


def _document_mask(cu: "torch.Tensor"):
    """Causal document mask of a packed batch: a query sees earlier keys of its own sequence only."""
    doc = torch.repeat_interleave(torch.arange(cu.numel() - 1, device=cu.device), cu[1:] - cu[:-1])

    def mask(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (doc[q_idx] == doc[kv_idx])

    return mask


def flex_document_mask(cu: "torch.Tensor") -> object:
    """The document ``BlockMask`` of offsets ``cu`` (built once per packing and device, outside timed calls)."""
    key = ("doc", tuple(int(x) for x in cu.tolist()), str(cu.device))
    if key not in _BLOCK_MASKS:
        T = key[1][-1]
        _BLOCK_MASKS[key] = torch_flex_attention.create_block_mask(_document_mask(cu), B=None, H=None, Q_LEN=T,
                                                                   KV_LEN=T, device=str(cu.device))
    return _BLOCK_MASKS[key]


def run_flex(inputs, causal: bool, *, compiled: bool | None = None):
    """FlexAttention (compiled unless ``compiled=False`` or the test seam; one compiled function per process)."""
    if compiled is None:
        compiled = os.environ.get(FLEX_COMPILE_ENV, "1") != "0"
    fn = torch_flex_attention.flex_attention
    if compiled:
        if "fn" not in _FLEX_COMPILED:
            _FLEX_COMPILED["fn"] = torch.compile(torch_flex_attention.flex_attention, dynamic=False)
        fn = _FLEX_COMPILED["fn"]
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    w = window_of(inputs)
    if "cu_seqlens" in inputs:   # a packed varlen batch: the document mask (causal within each sequence)
        mask = flex_document_mask(inputs["cu_seqlens"])
    else:
        mask = flex_block_mask(q.shape[1], k.shape[1], q.device, w) if (causal or w) else None
    args = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    kw = {"block_mask": mask, "scale": scale_of(inputs, q.shape[-1]), "enable_gqa": k.shape[2] != q.shape[2]}
    if compiled:
        return fn(*args, **kw).transpose(1, 2)

    with warnings.catch_warnings():   # "called without torch.compile()": eager is what was asked for
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **kw).transpose(1, 2)


def run_flash_attn(inputs, causal: bool):
    """flash-attn's ``flash_attn_func`` (layout (B, T, H, D), as here); a packed varlen batch goes through
    ``flash_attn_varlen_func`` (``(N, H, D)`` tokens, int32 offsets, the longest sequence as ``max_seqlen``)."""
    q, w = inputs["q"], window_of(inputs)
    kw = {"window_size": (w - 1, 0)} if w else {}
    if "cu_seqlens" in inputs:
        cu, m = inputs["cu_seqlens"].to(torch.int32), int(inputs["max_seqlen"])
        o = flash_attn.flash_attn_varlen_func(q[0], inputs["k"][0], inputs["v"][0], cu, cu, m, m,
                                              softmax_scale=scale_of(inputs, q.shape[-1]), causal=causal, **kw)
        return o.unsqueeze(0)
    return flash_attn.flash_attn_func(q, inputs["k"], inputs["v"], softmax_scale=scale_of(inputs, q.shape[-1]),
                                      causal=causal or bool(w), **kw)


def run_naive(inputs, causal: bool):
    """Explicit (B, H, T, T) scores, softmax into a second (B, H, T, T) tensor, then ``@ v`` (GQA: k
    and v repeated per query head; window: the band mask on the scores)."""
    q = inputs["q"]
    H, T, w = q.shape[2], q.shape[1], window_of(inputs)
    k, v = expand_kv(inputs["k"], H), expand_kv(inputs["v"], H)
    scale = scale_of(inputs, q.shape[-1])
    scores = torch.matmul(q.transpose(1, 2), k.transpose(1, 2).transpose(-1, -2))
    scores = scores.mul_(scale) if not scores.requires_grad else scores * scale
    if causal or w:
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).triu_(1)
        if w:
            mask |= ~band_mask(T, T, w, q.device)
        scores = scores.masked_fill_(mask, float("-inf")) if not scores.requires_grad else scores.masked_fill(mask, float("-inf"))
        del mask
    probs = torch.softmax(scores, dim=-1)
    del scores
    return torch.matmul(probs, v.transpose(1, 2)).transpose(1, 2)


def run_fla(inputs, causal: bool):
    if not causal:
        raise ValueError("fla parallel_attn is causal only")
    q, w = inputs["q"], window_of(inputs)
    kw = {"cu_seqlens": inputs["cu_seqlens"]} if "cu_seqlens" in inputs else {}   # a packed varlen batch
    return fla_attn.parallel_attn(q, inputs["k"], inputs["v"], scale=scale_of(inputs, q.shape[-1]),
                                  window_size=w or None, **kw)


def reference(inputs, causal: bool):
    """Exact attention by query blocks, fp64 accumulation (returns fp32 (B, Tq, H, Dv))."""
    q = inputs["q"]
    return blocked_attention(q, inputs["k"], inputs["v"], scale=scale_of(inputs, q.shape[-1]), causal=causal,
                             window=window_of(inputs))


# ----------------------------------------------------------------------------- analytic models

def _pairs(T: int, causal: bool) -> float:
    """Number of (query, key) pairs attended: T*(T+1)/2 causal, T*T otherwise."""
    return T * (T + 1) / 2 if causal else float(T) * T


def flops(shape: Shape, causal: bool) -> float:
    """Matmul FLOPs of the forward (2 per multiply-add): ``q k^T`` and ``p v``, each 2*D per pair.

    Softmax exponentials and the mask are not counted (FlashAttention's convention).
    """
    return 4.0 * shape.B * shape.H * shape.D * _pairs(shape.T, causal)


def bytes_moved(shape: Shape, itemsize: int, causal: bool) -> float:
    """Minimum DRAM traffic of a fused kernel: read q, k, v and write o once."""
    return 4.0 * shape.B * shape.T * shape.H * shape.D * itemsize


def count(shape: Shape, causal: bool, mode: str, itemsize: int) -> tuple[float, float]:
    """``profiler.core.counting``: ``B*Hq*pairs(T, causal, window)*(2D + 2Dv)`` x the mode's factor
    (fwd 1, bwd 2.5, fwdbwd 3.5); bytes: q, k, v (Hkv heads), o once (x2 bwd, x3 fwdbwd)."""
    a = shape.counting(causal)
    return counting.softmax_flops(a, mode), counting.io_bytes(a, itemsize, mode)


def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool, mode: str) -> int:
    """Peak bytes allocated by one call above its inputs (Hq query heads, Hkv key/value heads, Dv).

    * ``naive``: forward ``2*B*H*T^2*itemsize``: scores and probabilities coexist at the softmax; the
      causal T^2 bool mask is freed before it and the output allocated after the scores are freed
      (measured on CPU at T=4096, B=1, H=4, fp32: 512.0 MiB = the model); fwd+bwd ``3*B*H*T^2*itemsize`` (saved probabilities, their gradient and the
      scores' gradient coexist in the softmax backward) + the gradients of q, k, v. GQA adds the
      repeated k and v (H heads); a window does not shrink the T x T tensors.
    * ``sdpa-math``: materialises like ``naive``.
    * ``sdpa`` / ``sdpa-flash`` / ``sdpa-efficient`` / ``sdpa-cudnn`` / ``flex`` / ``flash-attn`` / ``fla``: output + fp32 log-sum-exp (B*H*T*4);
      fwd+bwd (and bwd) adds the gradients of q, k, v and an fp32 row-sum buffer. A window through
      SDPA adds its (T, T) bool band mask.
    """
    B, T, H, D, Hkv, Dv = shape.B, shape.T, shape.H, shape.D, shape.Hkv, shape.Dv
    out = B * T * H * Dv * itemsize
    grads = B * T * (H * D + Hkv * (D + Dv)) * itemsize
    tt = B * H * T * T * itemsize
    lse = B * H * T * 4
    bwd = mode in ("fwdbwd", "bwd")
    band = T * T if shape.window and backend.startswith("sdpa") else 0
    if backend in ("naive", "sdpa-math"):
        rep = B * T * H * (D + Dv) * itemsize if Hkv != H else 0
        if bwd:
            return int(3 * tt + out + grads + 2 * rep + band)
        return int(2 * tt + rep + band)
    if bwd:
        return int(out + grads + 2 * lse + band)
    return int(out + lse + band)


#: How each backend takes the shape axes (stored in the record's ``extra``: ``kv_heads_impl``, ``window_impl``).
AXIS_IMPL = {
    "sdpa": {"kv_heads": "sdpa enable_gqa", "window": "sdpa boolean band mask (no fused sliding window)"},
    "sdpa-efficient": {"kv_heads": "sdpa enable_gqa", "window": "sdpa boolean band mask (no fused sliding window)"},
    "sdpa-math": {"kv_heads": "sdpa enable_gqa", "window": "sdpa boolean band mask (no fused sliding window)"},
    "sdpa-flash": {"kv_heads": "sdpa enable_gqa"},
    "sdpa-cudnn": {"kv_heads": "sdpa enable_gqa"},
    "flex": {"kv_heads": "flex enable_gqa", "window": "FlexAttention sliding-window BlockMask"},
    "flash-attn": {"kv_heads": "flash-attn native GQA", "window": "flash-attn window_size=(w-1, 0)"},
    "fla": {"kv_heads": "fla parallel_attn native GQA", "window": "fla parallel_attn window_size"},
    "naive": {"kv_heads": "k, v repeated per query head", "window": "band mask on the explicit scores"},
}


# ----------------------------------------------------------------------------- registry entry

_CUDA_NOTE = "CUDA only: pins this SDPA implementation via torch.nn.attention.sdpa_kernel"
_PIN_NOTE = "pins this SDPA implementation via torch.nn.attention.sdpa_kernel (CPU and CUDA)"

KERNEL = KernelSpec(
    name="softmax",
    group="softmax",
    title="Softmax attention",
    family="quadratic",
    make_inputs=make_qkv,
    backends={
        "sdpa": Backend("sdpa", run_sdpa, causal=(True, False), varlen="per_sequence",
                        description="torch scaled_dot_product_attention (implementation chosen by torch)"),
        "sdpa-flash": Backend("sdpa-flash", run_sdpa_flash, devices=("cuda",), causal=(True, False), varlen="per_sequence",
                              dtypes=("float16", "bfloat16"), description=_CUDA_NOTE),
        "sdpa-efficient": Backend("sdpa-efficient", run_sdpa_efficient, devices=("cuda",), causal=(True, False),
                                  varlen="per_sequence",
                                  description=_CUDA_NOTE),
        "sdpa-cudnn": Backend("sdpa-cudnn", run_sdpa_cudnn, devices=("cuda",), causal=(True, False), varlen="per_sequence",
                              dtypes=("float16", "bfloat16"), description=_CUDA_NOTE + " (cuDNN attention)"),
        "sdpa-math": Backend("sdpa-math", run_sdpa_math, causal=(True, False), varlen="per_sequence",
                             description=_PIN_NOTE),
        "flex": Backend("flex", run_flex, causal=(True, False), requires=("torch.nn.attention.flex_attention",),
                        varlen="cu_seqlens",
                        backward_devices=("cuda",),   # torch 2.13: "FlexAttention does not support backward on CPU"
                        description="torch FlexAttention, torch.compile'd (first call = compile); "
                                    "causal via a block mask"),
        "flash-attn": Backend("flash-attn", run_flash_attn, devices=("cuda",), causal=(True, False), varlen="cu_seqlens",
                              requires=("flash_attn",), dtypes=("float16", "bfloat16"),
                              description="flash-attn's flash_attn_func (optional extra serprof[flash])"),
        "naive": Backend("naive", run_naive, causal=(True, False), varlen="per_sequence",
                         description="explicit T x T scores + softmax, then @ v (the study's baseline)"),
        "fla": Backend("fla", run_fla, devices=("cuda",), requires=("fla", "triton"), interpretable=True, varlen="cu_seqlens",
                       description="fla.ops.attn.parallel_attn (Triton, causal only)"),
    },
    reference=reference,
    reference_name="exact attention by query blocks (fp64 accumulation)",
    flops=flops,
    bytes_moved=bytes_moved,
    memory_bytes=memory_bytes,
    grad_inputs=("q", "k", "v"),
    max_head_dim=None,
    reference_max_T=REFERENCE_MAX_T,
    description="Scaled dot-product softmax attention, causal and non-causal: O(T^2) time.",
    default_backend="sdpa",
    backend_max_head_dim={"fla": 256, "flash-attn": 256},
    # decode / streaming: a pre-allocated KV cache read by SDPA, flash-attn's flash_attn_with_kvcache, or
    # fla's attn_decoding_one_step (``profiler.kernels.recurrent.cache_attend``)
    recurrent=CacheForm(backend_names=("sdpa", "flash-attn", "fla")),
    count=count,
    formulas=(counting.FORMULAS["softmax_flops"], counting.FORMULAS["io_bytes"]),
    shape_axes=SHAPE_AXES,
    backend_axes={"sdpa-flash": ("kv_heads", "value_dim"), "sdpa-cudnn": ("kv_heads", "value_dim"),
                  "flash-attn": ("kv_heads", "window")},
    axis_impl=AXIS_IMPL,
)
