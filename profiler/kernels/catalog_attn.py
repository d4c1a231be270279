"""fla's feature-map and sparse / quadratic attention families as declarative kernels (issue 17 item 2).

The rows of ``profiler.kernels.catalog.FAMILIES`` are configurations of the chunkwise engine. The
families here are not (or only after a feature map), so each row (``AttnFamily``) carries its own
pieces, declared once:

* ``make``: the inputs in the value ranges the matching fla *layer* produces (fp32 CPU tensors);
* ``backends``: the fla functions (``FlaOp``: ``parallel_*`` / ``chunk_*`` as ``fla``, others by name),
  called by keyword with the row's fixed keyword arguments (``prepare`` builds extra arguments such
  as NSA's block indices from the inputs);
* ``reference``: an fp32 oracle (fla's naive function where it matches the kernel's contract, else a
  T x T masked form written here);
* ``torch_run`` (optional): a timed CPU backend, only where it is an honest implementation of the
  mechanism (based / rebased: the feature map followed by the shared chunkwise linear-attention
  engine, ``profiler.kernels.chunkwise``); rows without one have no timed CPU backend and say so;
* analytic ``flops`` (matmul FLOPs, 2 per multiply-add, forward, causal), ``io`` (elements read and
  written by one forward) and ``memory`` (peak bytes above the inputs) models, and a report ``group``.

``KERNELS`` reaches the registry next to the engine catalogue (``profiler.kernels.MECHANISMS``);
``COVERED`` feeds ``profiler.kernels.fla_coverage``. Cheap to import (torch and fla load lazily).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from profiler.core.lazy import lazy_import
from profiler.kernels import chunked as ck
from profiler.kernels import chunkwise as cw
from profiler.kernels.base import ALL_DTYPES, Backend, KernelSpec, Shape, require_causal
from profiler.kernels.catalog import _naive, _randn

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FlaOp:
    """One fla function as a backend: ``fla.ops.<family>.<fn>(q=, k=, v=, **inputs, [scale=], **kwargs)``.

    ``scale``: whether it takes ``scale=`` (``parallel_rebased`` fixes ``K**-0.5`` itself);
    ``max_head_dim``: the function's own assertion (``fused_chunk_based``: 16).
    """

    fn: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    scale: bool = True
    backward: bool = True
    dtypes: tuple[str, ...] = ALL_DTYPES
    max_head_dim: int | None = None


@dataclass(frozen=True)
class AttnFamily:
    """A declarative description of one fla op family (module doc)."""

    name: str
    fla: str                                             # fla.ops package
    title: str
    group: str
    description: str
    inputs: tuple[str, ...]                              # names ``make`` returns, in order
    make: Callable[[Shape, "torch.Generator"], dict]     # fp32 CPU tensors
    reference: Callable[[dict, float], "torch.Tensor"]   # fp32 inputs, scale -> (B, T, H, Dv)
    reference_name: str
    reference_max_T: int
    backends: Mapping[str, FlaOp]
    flops: Callable[[Shape], float]                      # forward matmul FLOPs, causal
    io: Callable[[Shape, int], float]                    # (shape, itemsize) -> bytes read + written by one forward
    memory: Callable[[Shape, int, str, str], int]        # (shape, itemsize, backend, mode) -> bytes
    flops_doc: str
    memory_doc: str
    torch_run: Callable[[dict, float], "torch.Tensor"] | None = None
    torch_description: str = ""
    no_torch_reason: str = ""
    prepare: Callable[[dict], dict] | None = None        # extra fla keyword arguments from the inputs
    call: Callable[[Callable, dict], "torch.Tensor"] | None = None   # (fla function, keyword args) -> output
    grad_inputs: tuple[str, ...] = ("q", "k", "v")
    max_head_dim: int | None = None
    shape_axes: tuple[str, ...] = ()
    family: str = "quadratic"
    shape_check: Callable[[Shape], str | None] | None = None   # constraints beyond the head dim
    kv_heads: Callable[[Shape], int] | None = None           # key/value heads when the point sets none
    keep_fp32: tuple[str, ...] = ()                          # inputs the layer hands over in fp32 (Wall's g)
    scale: float | None = None                               # the layer's fixed scale (None: D**-0.5)
    backend_check: Callable[[str, Shape], str | None] | None = None   # a backend's own shape limits


@dataclass(frozen=True)
class _Spec(KernelSpec):
    """A ``KernelSpec`` with a family's extra shape constraint (NSA's GQA group)."""

    extra_check: Callable[[Shape], str | None] | None = None
    kv_of: Callable[[Shape], int] | None = None     # key/value heads when the point sets none (NSA: H/16)
    backend_check: Callable[[str, Shape], str | None] | None = None   # a backend's own limits (log-linear)

    def check_shape(self, shape: Shape) -> str | None:
        return super().check_shape(shape) or (self.extra_check(shape) if self.extra_check else None)

    def backend_limit(self, backend: str, shape: Shape) -> str | None:
        return super().backend_limit(backend, shape) or (
            self.backend_check(backend, shape) if self.backend_check else None)

    def input_bytes(self, shape: Shape, itemsize: int, mode: str) -> int:
        if self.kv_of is not None and not shape.kv_heads:
            shape = Shape(shape.B, shape.T, shape.H, shape.D, self.kv_of(shape), shape.value_dim, shape.window)
        return super().input_bytes(shape, itemsize, mode)


def _causal_pairs(T: int) -> float:
    return T * (T + 1) / 2


# ----------------------------------------------------------------------------- based / rebased

BASED_EPS = 1e-6     # parallel_based / fused_chunk_based normaliser epsilon
REBASED_EPS = 1e-5   # parallel_rebased default (ReBasedLinearAttention's eps)


def _qkv_dims(s: Shape):
    return (s.B, s.T, s.H, s.D), (s.B, s.T, s.H, s.Dv)


def _based_inputs(s: Shape, gen) -> dict:
    """BasedLinearAttention: q, k projections to the feature dim D (N(0, 1)), v to the head dim Dv."""
    dk, dv = _qkv_dims(s)
    return {"q": _randn(gen, *dk), "k": _randn(gen, *dk), "v": _randn(gen, *dv)}


def _rebased_inputs(s: Shape, gen) -> dict:
    """ReBasedLinearAttention (parallel mode): q, k after its feature map's LayerNorm at init
    (gamma = 1, beta = 0, normalised over the feature dim), v ~ N(0, 1)."""
    dk, dv = _qkv_dims(s)
    q, k = (F.layer_norm(_randn(gen, *dk), (s.D,)) for _ in range(2))
    return {"q": q, "k": k, "v": _randn(gen, *dv)}


def _ref_based(x, scale):
    """fla ``naive_parallel_based`` (head-first, T x T, normalised, eps 1e-6)."""
    q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))
    o = _naive("fla.ops.based.naive", "naive_parallel_based")(q, k, v, scale=scale, use_norm=True)
    return o.transpose(1, 2)


def _ref_rebased(x, scale):
    """T x T form of ``parallel_rebased`` in fp64: ``A = tril((scale q k^T)^2)``, ``o = A v / (rowsum A +
    1e-5)``. (fla's ``naive_parallel_rebased`` hard-codes eps 1e-6, not the kernel's and layer's 1e-5.)
    fp64 because the first rows are ill-conditioned: with few keys ``rowsum A`` can be ~eps, where an
    fp32 rounding of ``q.k`` (a sum of D products) moves the gradients by ~1e-5 relative; fp64 makes the
    oracle exact for the fp32 tolerance."""
    q = (x["q"].float() * scale).transpose(1, 2).double()    # scaled in fp32 first, as fla's kernels do
    k, v = (x[n].transpose(1, 2).double() for n in ("k", "v"))
    T = q.shape[-2]
    A = (q @ k.transpose(-1, -2)) ** 2
    A = A.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=q.device).tril(), 0)
    return ((A @ v) / (A.sum(-1, keepdim=True) + REBASED_EPS)).transpose(1, 2).float()


def _quadratic_features(x: "torch.Tensor", lead: int, diag: float, off: float) -> "torch.Tensor":
    """fp32 ``[<lead columns, left for the caller>, diag * x_i^2, off * x_i x_j (i < j)]``, written row by
    row into one tensor (no (.., D^2) temporaries: the feature tensor is the only large allocation)."""
    x = x.float()
    D = x.shape[-1]
    out = x.new_empty(*x.shape[:-1], lead + D * (D + 1) // 2)
    out[..., lead:lead + D] = x * x * diag
    c = lead + D
    for i in range(D - 1):
        n = D - 1 - i
        out[..., c:c + n] = x[..., i:i + 1] * x[..., i + 1:] * off
        c += n
    return out


def taylor_features(x: "torch.Tensor") -> "torch.Tensor":
    """Based's feature map ``phi(x) = [1, x, x_i^2 / sqrt2, x_i x_j (i < j)]`` (fp32, 1 + D + D(D+1)/2
    features): ``phi(x) . phi(y) = 1 + x.y + (x.y)^2 / 2`` exactly (fla's ``TaylorFeatureMap`` up to the
    ``D**-1/4`` scaling it folds in)."""
    D = x.shape[-1]
    out = _quadratic_features(x, 1 + D, 2 ** -0.5, 1.0)
    out[..., :1] = 1.0
    out[..., 1:1 + D] = x.float()
    return out


def square_features(x: "torch.Tensor") -> "torch.Tensor":
    """ReBased's quadratic map ``phi(x) = [x_i^2, sqrt2 x_i x_j (i < j)]`` (fp32, D(D+1)/2 features):
    ``phi(x) . phi(y) = (x.y)^2`` exactly."""
    return _quadratic_features(x, 0, 1.0, 2 ** 0.5)


def feature_dim(D: int, taylor: bool) -> int:
    return (1 + D if taylor else 0) + D * (D + 1) // 2


def _feature_map_attention(phi, pair, eps: float, exact_scores: bool = False):
    def run(x, scale):
        """Normalised causal linear attention, chunkwise (C = ``chunkwise.CHUNK``): inside a chunk the pair
        kernel exactly, ``A = tril(pair(scale Q K^T))``; across chunks through the feature-space states
        ``S_n = sum_{chunks < n} phi(K)^T [V, 1]`` (``chunked.scan_states``), ``O += phi(scale Q) S``. v gets
        a column of ones so that the same matmuls carry the normaliser ``sum_j pair(q.k_j)``. The exact
        intra-chunk kernel keeps the first tokens (normaliser near 0 for ReBased) free of the feature
        form's cancellation; across chunks the normaliser sums >= C terms and is well conditioned.
        ``exact_scores`` (ReBased): the intra-chunk part and the normalisation in fp64. With few keys the
        normaliser can be ~eps, and both the rounding of ``q.k`` and the division's backward (two terms
        of size 1/z that nearly cancel) lose ~1e-5 relative in fp32 (see ``_ref_rebased``); costs two
        C x C fp64 matmuls per chunk next to the fp32 feature-space part."""
        C, T = cw.CHUNK, x["q"].shape[1]
        v = x["v"].float()
        qc = ck.to_chunks(x["q"].float() * scale, C)     # scaled in fp32, as fla's kernels and the reference
        kc = ck.to_chunks(x["k"], C)
        vc = ck.to_chunks(torch.cat([v, torch.ones_like(v[..., :1])], dim=-1), C)
        mask = torch.ones(C, C, dtype=torch.bool, device=qc.device).tril()
        S = ck.scan_states(phi(kc).transpose(-1, -2) @ vc)           # (B, H, N, F, Dv + 1) entering states
        inter = phi(qc) @ S
        if exact_scores:
            qc, kc, vc, inter, mask = qc.double(), kc.double(), vc.double(), inter.double(), mask.double()
        o = ck.from_chunks((pair(qc @ kc.transpose(-1, -2)) * mask) @ vc + inter, T)
        return (o[..., :-1] / (o[..., -1:] + eps)).float()
    return run


def _taylor_pair(s):
    return 1 + s + 0.5 * s * s


def _square_pair(s):
    return s * s


def _feature_map_flops(s: Shape) -> float:
    """Quadratic (``parallel_*``) matmul FLOPs, the layers' default mode: ``pairs * (2D + 2Dv)`` per head."""
    return s.B * s.H * _causal_pairs(s.T) * (2.0 * s.D + 2.0 * s.Dv)


def _feature_map_io(s: Shape, itemsize: int) -> float:
    return float(s.B * s.T * s.H * (2 * s.D + 2 * s.Dv) * itemsize)


def _feature_map_memory(taylor: bool):
    def memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
        B, T, H, D, Dv = s.B, s.T, s.H, s.D, s.Dv
        BTH = B * T * H
        grads = BTH * (2 * D + Dv) * itemsize
        if backend == "torch":
            Fd, Tp = feature_dim(D, taylor), ck.padded_T(T)
            BHT, N = B * H * Tp, Tp // cw.CHUNK
            chunks = BHT * (2 * D + Dv + 1) * 4          # chunked fp32 q, k, [v, 1]
            feats = BHT * Fd * 4                          # phi(K) or phi(Q)
            st = B * H * N * Fd * (Dv + 1) * 4            # per-chunk phi(K)^T [V, 1], or the entering states
            vo = BHT * (Dv + 1) * 4                       # one chunked output-sized tensor
            sc = BHT * cw.CHUNK * 4                       # one (C, C) tile per chunk
            if taylor:   # scores, 1 + s + s^2/2 temporaries, then the masked tile @ [v, 1] + inter
                intra = chunks + st + vo + max(4 * sc, sc + 2 * vo)
            else:        # ReBased: q, k, [v, 1] and inter become fp64 (the fp32 copies are dropped)
                intra = 2 * chunks + st + 2 * vo + max(4 * sc, 2 * sc + 4 * vo)
            fwd = max(chunks + feats + st, chunks + 2 * st, chunks + st + feats + vo, intra)
            return int(fwd + (fwd + grads if mode == "fwdbwd" else 0))
        # fla: contiguous head-first copies of q, k, v; the fp32 output and normaliser; o / z and the cast
        copies = BTH * (2 * D + Dv) * itemsize
        fwd = copies + BTH * (Dv + 1) * 4 + 2 * BTH * Dv * itemsize
        return int(fwd + (grads + BTH * (2 * D + Dv) * itemsize if mode == "fwdbwd" else 0))
    return memory


_FEATURE_MEMORY_DOC = (
    "``torch`` forward: the chunked fp32 q, k, [v, 1] plus the largest of its stages: phi(K) with the "
    "per-chunk (F, Dv+1) contributions, the scan (contributions and states), phi(Q) S, and the intra-chunk "
    "part (four (C, C) tiles per chunk or one and two output-sized tensors; ReBased in fp64 with its fp64 copies of "
    "q, k, v): checked against torch.profiler peaks within 15 % at D = 16..32. fwd+bwd (structural): twice "
    "that plus the input gradients. fla: the contiguous head-first copies of "
    "q, k, v, the fp32 output and normaliser, o / z and its cast; fwd+bwd adds dq, dk, dv and their "
    "per-block partials.")

_TORCH_FEATURE_DOC = ("chunkwise linear attention in feature space (F = {F}; chunked.py building blocks, C={C}): "
                      "exact pair kernel inside a chunk, feature-map states across chunks, a ones column for "
                      "the normaliser; pure PyTorch, O(T)")


# ----------------------------------------------------------------------------- NSA (native sparse attention)

NSA_BLOCK_SIZE = 64      # NativeSparseAttention defaults: selection / compression block size,
NSA_BLOCK_COUNT = 16     # selected blocks per query,
NSA_WINDOW = 512         # sliding window
NSA_MIN_GROUP = 16       # parallel_nsa: query heads per key/value head, a power of two >= 16


def _nsa_kv_heads(s: Shape) -> int:
    return s.kv_heads or max(1, s.H // NSA_MIN_GROUP)


def _nsa_check(s: Shape) -> str | None:
    hkv = _nsa_kv_heads(s)
    G = s.H // hkv
    if s.H % hkv or G < NSA_MIN_GROUP or G & (G - 1):
        return (f"nsa: query heads per key/value head must be a power of two >= {NSA_MIN_GROUP} (fla parallel_nsa's "
                f"GQA tile); got H={s.H}, kv heads={hkv} (default H/16): use --heads 16 (or more)")
    return None


def _nsa_pool(x: "torch.Tensor", bs: int) -> "torch.Tensor":
    """Mean of each block of ``bs`` tokens (B, ceil(T/bs), H, D), the last block over its own tokens
    (fla's ``mean_pooling``, in torch)."""
    B, T = x.shape[:2]
    n = -(-T // bs)
    pad = n * bs - T
    xs = torch.cat([x, x.new_zeros(B, pad, *x.shape[2:])], 1).view(B, n, bs, *x.shape[2:]).sum(2)
    cnt = torch.full((n,), float(bs), dtype=x.dtype, device=x.device)
    cnt[-1] = bs - pad
    return xs / cnt.view(1, n, *([1] * (x.dim() - 2)))


def _nsa_inputs(s: Shape, gen) -> dict:
    """NativeSparseAttention: q (H heads), k, v (H/16 heads), gates sigmoid(x) for the compressed, selected
    and sliding branches (its g_proj), and the selected block indices the layer builds: top-16 blocks by
    the compressed attention (first, current and previous block forced), from fla's ``naive_nsa_topk``
    (the reference of the ``parallel_nsa_topk`` kernel the layer runs) on these q, k in fp32."""
    hkv = _nsa_kv_heads(s)
    x = {"q": _randn(gen, s.B, s.T, s.H, s.D), "k": _randn(gen, s.B, s.T, hkv, s.D),
         "v": _randn(gen, s.B, s.T, hkv, s.Dv)}
    for n in ("g_cmp", "g_slc", "g_swa"):
        x[n] = torch.sigmoid(_randn(gen, s.B, s.T, s.H))
    topk = _naive("fla.ops.nsa.naive", "naive_nsa_topk")
    x["block_indices"] = topk(x["q"], _nsa_pool(x["k"], NSA_BLOCK_SIZE), NSA_BLOCK_COUNT, NSA_BLOCK_SIZE, s.D ** -0.5)
    return x


def _window_attention(q, k, v, scale: float, window: int) -> "torch.Tensor":
    """Causal softmax attention over the last ``window`` keys (T x T, k, v repeated per query head)."""
    G = q.shape[2] // k.shape[2]
    k, v = (t.repeat_interleave(G, dim=2) for t in (k, v))
    T = q.shape[1]
    i = torch.arange(T, device=q.device)
    band = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window)
    att = torch.einsum("bthd,bshd->bhts", q * scale, k).masked_fill(~band, float("-inf")).softmax(-1)
    return torch.einsum("bhts,bshv->bthv", att, v)


def _ref_nsa(x, scale):
    """fla's naive NSA branches (fp32): ``naive_nsa_compression`` on the mean-pooled k, v (pooled here in
    torch) gated by g_cmp, ``naive_nsa_selection`` of the given blocks gated by g_slc, and a T x T sliding
    window of 512 keys gated by g_swa (fla's ``naive_nsa`` calls flash-attn for that branch)."""
    q, k, v = x["q"], x["k"], x["v"]
    bs = NSA_BLOCK_SIZE
    o_cmp, _ = _naive("fla.ops.nsa.naive", "naive_nsa_compression")(q, _nsa_pool(k, bs), _nsa_pool(v, bs), bs, scale)
    o_slc = _naive("fla.ops.nsa.naive", "naive_nsa_selection")(q, k, v, x["block_indices"], bs, scale)
    o_swa = _window_attention(q, k, v, scale, _nsa_window(x))
    return o_cmp * x["g_cmp"][..., None] + o_slc * x["g_slc"][..., None] + o_swa * x["g_swa"][..., None]


def _nsa_window(inputs) -> int:
    """The sliding branch's window: the point's ``--window`` if set, else the layer's 512."""
    return int(inputs.get("window") or NSA_WINDOW)


def _nsa_prepare(inputs) -> dict:
    return {"block_counts": NSA_BLOCK_COUNT, "block_size": NSA_BLOCK_SIZE, "swa_window": _nsa_window(inputs)}


def _nsa_run(fn, args: dict) -> "torch.Tensor":
    """``parallel_nsa`` (compressed + selected branches, the given block indices) plus the sliding branch
    through fla's ``parallel_attn(window_size=512)``: what ``parallel_nsa(window_size=512)`` computes with
    flash-attn's ``flash_attn_func`` for that branch (not installed with fla, not interpretable)."""
    g_swa, window = args.pop("g_swa"), args.pop("swa_window")
    with warnings.catch_warnings():   # "block_indices is provided, overriding the selection": intended
        warnings.simplefilter("ignore")
        o = fn(**args, window_size=0)
    attn = _naive("fla.ops.attn", "parallel_attn")
    o_swa = attn(args["q"], args["k"], args["v"], scale=args["scale"], window_size=window)
    return torch.addcmul(o, o_swa, g_swa.unsqueeze(-1))


def _nsa_counts(s: Shape) -> tuple[float, float, float]:
    """Per query head, summed over queries: (compressed blocks, selected keys, window keys) attended."""
    bs, S, T, W = NSA_BLOCK_SIZE, NSA_BLOCK_COUNT, s.T, NSA_WINDOW
    cmp = slc = 0.0
    for b0 in range(0, T, bs):                 # queries t in block b = b0 // bs
        b, n = b0 // bs, min(bs, T - b0)
        cmp += n * b                           # blocks 0..b-1 complete (block b completes only at its last token)
        cmp += 1 if n == bs else 0
        full = min(S, b + 1) - 1               # selected complete blocks besides the query's own
        slc += n * full * bs + n * (n + 1) / 2  # plus the causal part of its own block
    w = min(W, T)
    swa = w * (w + 1) / 2 + (T - w) * w
    return cmp, slc, swa


def _nsa_flops(s: Shape) -> float:
    """Matmul FLOPs of the three branches, ``(2D + 2Dv)`` per attended (query, key): compressed blocks
    visible to each query, keys of its selected blocks (16 of 64, its own block causally), and a causal
    window of 512 keys; the top-k scoring and pooling are not counted (fla's ``parallel_nsa_topk`` repeats
    the compressed scores)."""
    cmp, slc, swa = _nsa_counts(s)
    return s.B * s.H * (cmp + slc + swa) * (2.0 * s.D + 2.0 * s.Dv)


def _nsa_io(s: Shape, itemsize: int) -> float:
    hkv = _nsa_kv_heads(s)
    per_token = s.H * s.D + hkv * (s.D + s.Dv) + s.H * s.Dv + 3 * s.H
    return float(s.B * s.T * (per_token * itemsize + hkv * NSA_BLOCK_COUNT * 8))


def _nsa_memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
    B, T, H, D, Dv = s.B, s.T, s.H, s.D, s.Dv
    hkv = _nsa_kv_heads(s)
    nb = -(-T // NSA_BLOCK_SIZE)
    pooled = B * nb * hkv * (D + Dv) * itemsize
    outs = 4 * B * T * H * Dv * itemsize              # o_cmp, o_slc, o_swa, the sum
    stats = 3 * B * T * H * 4                         # fp32 log-sum-exps of the three branches
    fwd = pooled + outs + stats
    grads = B * T * (H * D + hkv * (D + Dv) + 3 * H) * itemsize
    return int(fwd + (grads + outs + pooled if mode == "fwdbwd" else 0))


# ----------------------------------------------------------------------------- stick-breaking attention

SB_TILE_ELEMENTS = 1 << 24   # torch backend: (B, H, rows, keys) elements per query block (64 MiB fp32)


def _gqa_inputs(s: Shape, gen) -> dict:
    """q (H heads), k, v (Hkv heads, Dv) ~ N(0, 1): the projections of a softmax-type layer."""
    return {"q": _randn(gen, s.B, s.T, s.H, s.D), "k": _randn(gen, s.B, s.T, s.Hkv, s.D),
            "v": _randn(gen, s.B, s.T, s.Hkv, s.Dv)}


def _ref_stickbreaking(x, scale):
    """fla ``naive_stickbreaking_attn`` on fp64 copies (its fp64 mode: exact where fp32 log-space sums
    cancel near saturated logits), attend_current=False as the layer; fp32 out."""
    o, _ = _naive("fla.ops.stickbreaking_attn.naive", "naive_stickbreaking_attn")(
        x["q"].double(), x["k"].double(), x["v"].double(), scale=scale, attend_current=False)
    return o.float()


def _stickbreaking_torch(x, scale):
    """Stick-breaking attention by query blocks (O(T^2) time, O(T * rows) memory, no T x T tensor):
    per block of query rows, ``z = scale q k^T`` over the keys up to the block's last row, weights
    ``log A_ij = logsigmoid(z_ij) + sum_{j<l<i} logsigmoid(-z_il)`` (an exclusive reverse cumsum: no
    subtraction), fp32, k and v repeated per query head for GQA. At most three tiles live at once."""
    q, k, v = x["q"].float(), x["k"].float(), x["v"].float()
    B, T, H, _ = q.shape
    G = H // k.shape[2]
    k, v = k.repeat_interleave(G, dim=2), v.repeat_interleave(G, dim=2)
    rows = max(1, min(T, SB_TILE_ELEMENTS // max(1, B * H * T)))
    out = []
    for i0 in range(0, T, rows):
        i1 = min(T, i0 + rows)
        z = torch.einsum("bqhd,bkhd->bhqk", q[:, i0:i1] * scale, k[:, :i1])
        i = torch.arange(i0, i1, device=q.device)[:, None]
        mask = torch.arange(i1, device=q.device)[None, :] < i          # keys j < i
        # logsigmoid(x) = -softplus(-x): softplus keeps no (rows, keys) buffer (logsigmoid does on CPU)
        att = F.softplus(-z).neg_()                                     # log sigmoid(z)
        lomb = F.softplus(z).neg_().masked_fill_(~mask, 0.0)            # log(1 - sigmoid(z)), 0 where masked
        del z
        rev = lomb.flip(-1).cumsum_(-1)                                 # rev[m] = sum over the last m+1 keys
        del lomb
        att[..., :-1] += rev[..., :-1].flip(-1)                         # + sum_{l > j}: exclusive, no subtraction
        del rev
        att = att.masked_fill_(~mask, float("-inf")).exp_()
        out.append(torch.einsum("bhqk,bkhv->bqhv", att, v[:, :i1]))
        del att                                                         # before the next block's tiles
    return torch.cat(out, 1)


def _strict_pairs(T: int) -> float:
    return T * (T - 1) / 2


def _sb_flops(s: Shape) -> float:
    """Matmul FLOPs ``(2D + 2Dv)`` per attended (query, key) pair, keys strictly before the query
    (attend_current=False): ``T(T-1)/2`` pairs per head; sigmoids and the log-space cumsum not counted."""
    return s.B * s.H * _strict_pairs(s.T) * (2.0 * s.D + 2.0 * s.Dv)


def _gqa_io(extra_per_token: Callable[[Shape], int] = lambda s: 0):
    def io(s: Shape, itemsize: int) -> float:
        per_token = s.H * s.D + s.Hkv * (s.D + s.Dv) + s.H * s.Dv + extra_per_token(s)
        return float(s.B * s.T * per_token * itemsize)
    return io


def _sb_memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
    B, T, H, D, Dv = s.B, s.T, s.H, s.D, s.Dv
    grads = B * T * (H * D + s.Hkv * (D + Dv)) * itemsize
    if backend == "torch":
        rows = max(1, min(T, SB_TILE_ELEMENTS // max(1, B * H * T)))
        tile = B * H * rows * T * 4
        rep = 2 * B * T * H * (D + Dv) * 4 if s.Hkv != H else 0     # fp32 copies (+ GQA repeats)
        fwd = B * T * (H * D + s.Hkv * (D + Dv)) * 4 + rep + 3 * tile + 2 * B * T * H * Dv * 4
        return int(fwd + (B * H * T * T * 4 * 4 + grads if mode == "fwdbwd" else 0))   # autograd keeps every tile
    fwd = B * T * H * Dv * itemsize + 2 * B * T * H * 4                  # o, rem and its log (fp32)
    return int(fwd + (grads + B * T * H * 4 if mode == "fwdbwd" else 0))



# ----------------------------------------------------------------------------- Parallax

PX_TILE_ELEMENTS = 1 << 24   # torch backend: (B, H, rows, keys) elements per query block


def _parallax_inputs(s: Shape, gen) -> dict:
    """ParallaxAttention (qk_norm off, its default): q and the second query stream r (H heads), k, v (Hkv
    heads) ~ N(0, 1) projections; r . k enters unscaled, as in the layer."""
    x = _gqa_inputs(s, gen)
    x["r"] = _randn(gen, s.B, s.T, s.H, s.D)
    return x


def _window_of(x) -> int | None:
    w = x.get("window")
    return int(w) if w else None


def _ref_parallax(x, scale):
    """fla ``naive_parallax`` (fp32, T x T): ``p1 = softmax(scale q k^T)`` (causal, optional window),
    ``o = O1/d1 (1 + d2/d1) - O2/d1`` with ``p2 = p1 (r k^T)``."""
    return _naive("fla.ops.parallax.naive", "naive_parallax")(
        x["q"], x["r"], x["k"], x["v"], scale=scale, window_size=_window_of(x), causal=True)


def _parallax_torch(x, scale):
    """Parallax by query blocks (O(T^2) time, no T x T tensor), fp32, k and v repeated per query head:
    per block ``p1 = exp(s1 - max)`` over the visible keys, ``d1 = sum p1``, ``p2 = p1 (r k^T)``,
    ``d2 = sum p2``, ``o = (p1 v)/d1 (1 + d2/d1) - (p2 v)/d1`` (the naive form, blockwise)."""
    q, r, k, v = (x[n].float() for n in ("q", "r", "k", "v"))
    B, T, H, _ = q.shape
    G = H // k.shape[2]
    k, v = k.repeat_interleave(G, dim=2), v.repeat_interleave(G, dim=2)
    W = _window_of(x)
    rows = max(1, min(T, PX_TILE_ELEMENTS // max(1, B * H * T)))
    out = []
    for i0 in range(0, T, rows):
        i1 = min(T, i0 + rows)
        j0 = 0 if W is None else max(0, i0 - W + 1)
        i = torch.arange(i0, i1, device=q.device)[:, None]
        j = torch.arange(j0, i1, device=q.device)[None, :]
        hide = (j > i) if W is None else (j > i) | (i - j >= W)
        kb, vb = k[:, j0:i1], v[:, j0:i1]
        p1 = torch.einsum("bqhd,bkhd->bhqk", q[:, i0:i1] * scale, kb).masked_fill_(hide, float("-inf"))
        p1 = (p1 - p1.amax(-1, keepdim=True)).exp_()
        p2 = torch.einsum("bqhd,bkhd->bhqk", r[:, i0:i1], kb).mul_(p1)
        d1, d2 = p1.sum(-1), p2.sum(-1)                                  # (B, H, rows)
        o1 = torch.einsum("bhqk,bkhd->bqhd", p1, vb)
        del p1
        o2 = torch.einsum("bhqk,bkhd->bqhd", p2, vb)
        del p2
        inv = (1.0 / d1).transpose(1, 2)[..., None]                     # (B, rows, H, 1)
        out.append(o1 * inv * (1.0 + d2.transpose(1, 2)[..., None] * inv) - o2 * inv)
    return torch.cat(out, 1)


def _parallax_flops(s: Shape) -> float:
    """Matmul FLOPs per attended (query, key) pair: ``q k^T`` and ``r k^T`` (2D each), ``p1 v`` and ``p2 v``
    (2Dv each); causal pairs, or those of the point's window."""
    pairs = counting_pairs(s.T, s.window)
    return s.B * s.H * pairs * (4.0 * s.D + 4.0 * s.Dv)


def counting_pairs(T: int, window: int = 0) -> float:
    """Causal (query, key) pairs of one head, within a window of ``window`` keys when set."""
    w = window or T
    w = min(w, T)
    return w * (w + 1) / 2 + (T - w) * w


def _parallax_memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
    B, T, H, D = s.B, s.T, s.H, s.D
    grads = B * T * (2 * H * D + 2 * s.Hkv * D) * itemsize
    if backend == "torch":
        keys = min(T, (s.window or T) + PX_TILE_ELEMENTS // max(1, B * H * T))
        rows = max(1, min(T, PX_TILE_ELEMENTS // max(1, B * H * T)))
        tile = B * H * rows * keys * 4
        copies = B * T * (2 * H + 2 * H) * D * 4                        # fp32 q, r and repeated k, v
        fwd = copies + 2 * tile + 3 * B * T * H * D * 4
        return int(fwd + (B * H * T * T * 4 * 3 + grads if mode == "fwdbwd" else 0))
    fwd = B * T * H * D * (itemsize + 4) + 3 * B * T * H * 4              # o, fp32 barv, d1 / bart / m
    return int(fwd + (grads + 2 * B * T * H * 4 if mode == "fwdbwd" else 0))


# ----------------------------------------------------------------------------- Wall attention

WALL_GATE_BIAS = 8.0          # WallAttention's gate_init_bias: logsigmoid(x + 8) ~ -3e-4 at init
WALL_REF_ROWS = 64            # reference: query rows per block ((rows, T, H, K) fp64 products)


def _wall_inputs(s: Shape, gen) -> dict:
    """WallAttention (no scalar gate, its default): q (H heads), k, v (Hkv heads) ~ N(0, 1) projections and
    the per-query-head, per-channel log decay ``g = logsigmoid(x + 8)`` (g_proj with its init bias), fp32
    as the layer hands it over."""
    x = _gqa_inputs(s, gen)
    x["g"] = F.logsigmoid(_randn(gen, s.B, s.T, s.H, s.D) + WALL_GATE_BIAS)
    return x


def _ref_wall(x, scale):
    """Exact Wall attention in fp64 by query blocks: ``s_ij = scale * sum_n q_in k_jn exp(P_in - P_jn)``
    with ``P = cumsum(g)`` (every exponent <= 0 for j <= i), causal (optional window), softmax, ``@ v``.
    (fla's ``naive_wall_attn`` computes P with the Triton ``chunk_global_cumsum``: not a CPU oracle.)"""
    q, k, v, g = (x[n].double() for n in ("q", "k", "v", "g"))
    B, T, H, _ = q.shape
    G = H // k.shape[2]
    k, v = k.repeat_interleave(G, dim=2), v.repeat_interleave(G, dim=2)
    P = g.cumsum(1)
    W = _window_of(x)
    out = []
    for i0 in range(0, T, WALL_REF_ROWS):
        i1 = min(T, i0 + WALL_REF_ROWS)
        d = (P[:, i0:i1, None] - P[:, None, :i1]).clamp_max(0.0).exp()           # (B, rows, keys, H, K)
        sc = (q[:, i0:i1, None] * k[:, None, :i1] * d).sum(-1) * scale             # (B, rows, keys, H)
        i = torch.arange(i0, i1, device=q.device)[:, None]
        j = torch.arange(i1, device=q.device)[None, :]
        hide = (j > i) if W is None else (j > i) | (i - j >= W)
        p = sc.masked_fill(hide[None, :, :, None], float("-inf")).softmax(2)
        out.append(torch.einsum("bqkh,bkhv->bqhv", p, v[:, :i1]))
    return torch.cat(out, 1).float()


def _wall_flops(s: Shape) -> float:
    """``(2D + 2Dv)`` per attended (query, key) pair as softmax attention (causal, or the point's window);
    the per-channel decay factors ``exp(P_i - P_j)`` are elementwise and not counted."""
    return s.B * s.H * counting_pairs(s.T, s.window) * (2.0 * s.D + 2.0 * s.Dv)


def _wall_memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
    B, T, H, D, Dv = s.B, s.T, s.H, s.D, s.Dv
    fwd = B * T * H * Dv * itemsize + B * T * H * 4 + B * T * H * D * 4      # o, fp32 LSE, fp32 cumsum of g
    grads = B * T * (H * D + s.Hkv * (D + Dv)) * itemsize + B * T * H * D * 4
    return int(fwd + (grads + B * T * H * D * 4 if mode == "fwdbwd" else 0))

# ----------------------------------------------------------------------------- ABC

#: fla's ABC layer clamps the slot logits to [-32, 32].
ABC_CLAMP = 32.0


def _abc_inputs(s: Shape, gen) -> dict:
    """As ``fla.layers.abc.ABCAttention`` (default ``use_input_gate=False``, M = num_slots = D): q, k, v
    and slot logits s are N(0, 1) projections, s clamped to +-32."""
    B, T, H, D = s.B, s.T, s.H, s.D
    q, k, v = (torch.randn(B, T, H, D, generator=gen) for _ in range(3))
    slots = torch.randn(B, T, H, D, generator=gen).clamp(-ABC_CLAMP, ABC_CLAMP)
    return {"q": q, "k": k, "v": v, "s": slots}


#: widest span of slot logits over time for which e^{s - max} stays a normal fp32 number (e^-80 ~ 1.8e-35)
_CUMSUM_RANGE = 80.0


def abc_as_gsa(s: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """ABC's slot writes and forget gates as a GSA configuration (``naive_recurrent_abc`` without ``g``):
    with ``z_t = logcumsumexp_{r<=t} s_r`` per slot, the write is ``e^{s_t - z_t}`` and the log forget
    gate ``g_t = z_{t-1} - z_t`` (<= 0; ``g_0 = 0``): a running softmax over time of the slot logits.

    ``z`` is ``log cumsum e^{s - m} + m`` with ``m`` the slot's maximum over time (fp32): 2-4x faster
    on CPU than ``logcumsumexp`` (58 ms -> 15-30 ms at T=16k, H=4, D=64) and as accurate (max error
    against fp64 8e-7 vs 5e-7) while the logits span less than ``_CUMSUM_RANGE`` (the layer clamps
    them to +-32); wider spans fall back to ``logcumsumexp``."""
    s = s.float()
    m = s.amax(1, keepdim=True)
    if float((m - s.amin(1, keepdim=True)).max()) < _CUMSUM_RANGE:
        z = (s - m).exp().cumsum(1).log() + m
    else:
        z = s.logcumsumexp(1)
    # z_t >= s_t and z_t >= z_{t-1} exactly; the clamps keep rounding from breaking that (w <= 1, g <= 0)
    g = torch.cat((torch.zeros_like(z[:, :1]), (z[:, :-1] - z[:, 1:]).clamp_(max=0.0)), 1)
    return (s - z).clamp_(max=0.0).exp_(), g


def _ref_abc(x: dict, scale: float):
    """fla ``naive_recurrent_abc`` (two token loops, fp32; it takes (B, H, T, .) tensors)."""
    naive = importlib.import_module("fla.ops.abc.naive")
    q, k, v, s = (x[n].transpose(1, 2) for n in ("q", "k", "v", "s"))
    o, _ = naive.naive_recurrent_abc(q, k, v, s, scale=scale)
    return o.transpose(1, 2).float()


def _abc_torch(x: dict, scale: float):
    """GSA's chunkwise two-pass torch path (``profiler.kernels.gsa``) on ABC's slot writes and gates."""
    gsa = importlib.import_module("profiler.kernels.gsa")
    w, g = abc_as_gsa(x["s"])
    return gsa.run_torch({"q": x["q"], "k": x["k"], "v": x["v"], "s": w, "g": g, "scale": scale})


def _abc_flops(s: Shape) -> float:
    """As GSA (``profiler.kernels.gsa.flops``, causal): two chunkwise linear-attention passes over M = D slots."""
    return importlib.import_module("profiler.kernels.gsa").flops(s, True)


def _abc_io(s: Shape, itemsize: int) -> float:
    """Read q, k, v, s and write o once (M = D): ``5*B*T*H*D*itemsize``."""
    return 5.0 * s.B * s.T * s.H * s.D * itemsize


def _abc_memory(s: Shape, itemsize: int, backend: str, mode: str) -> int:
    """GSA's model (``profiler.kernels.gsa.memory_bytes``) plus the fp32 slot writes and gates ABC derives
    from s on the torch path (2 x B*T*H*D*4)."""
    gsa = importlib.import_module("profiler.kernels.gsa")
    extra = 2 * s.B * s.T * s.H * s.D * 4 if backend == "torch" else 0
    return int(gsa.memory_bytes(s, itemsize, "torch" if backend == "torch" else "fla", True, mode) + extra)


# ----------------------------------------------------------------------------- the rows

_QUADRATIC_REF_MAX_T = 2048   # T x T fp32 references: 16 MiB per (batch, head) at 2048

FAMILIES: tuple[AttnFamily, ...] = (
    AttnFamily(
        name="abc", fla="abc", title="ABC (attention with bounded-memory control)", group="gated",
        description="Two linear-attention passes through M = D memory slots with a softmax over the slots between "
                    "(ABCAttention): slot writes and forget gates are a running softmax over time of the slot "
                    "logits s (clamped to +-32), i.e. GSA with data-derived gates; scale D**-0.5 fixed by the "
                    "kernel.",
        inputs=("q", "k", "v", "s"), make=_abc_inputs,
        reference=_ref_abc, reference_name="fla naive_recurrent_abc (fp32 token loops)",
        reference_max_T=2048,
        backends={"fla": FlaOp("chunk_abc", scale=False)},
        flops=_abc_flops, io=_abc_io, memory=_abc_memory,
        flops_doc=_abc_flops.__doc__ or "", memory_doc=_abc_memory.__doc__ or "",
        torch_run=_abc_torch,
        torch_description="GSA's chunkwise two-pass path on ABC's slot writes e^{s - logcumsumexp(s)} and gates "
                          "(profiler.kernels.gsa, C=64)",
        grad_inputs=("q", "k", "v", "s"), family="linear",
    ),
    AttnFamily(
        name="based", fla="based", title="Based (Taylor feature-map linear attention)", group="linear+decay",
        description="Normalised causal linear attention with the 2nd-order Taylor kernel 1 + s q.k + (s q.k)^2/2 "
                    "(BasedLinearAttention: q, k are feature-dim projections, D = feature dim (16 in the layer), "
                    "v has the head dim Dv; scale D**-0.5, eps 1e-6).",
        inputs=("q", "k", "v"), make=_based_inputs,
        reference=_ref_based, reference_name="fla naive_parallel_based (fp32, T x T)",
        reference_max_T=_QUADRATIC_REF_MAX_T,
        backends={"fla": FlaOp("parallel_based", kwargs={"use_norm": True}, max_head_dim=128),
                  "fla-fused-chunk": FlaOp("fused_chunk_based", kwargs={"use_norm": True}, max_head_dim=16)},
        flops=_feature_map_flops, io=_feature_map_io, memory=_feature_map_memory(True),
        flops_doc=_feature_map_flops.__doc__ or "", memory_doc=_FEATURE_MEMORY_DOC,
        torch_run=_feature_map_attention(taylor_features, _taylor_pair, BASED_EPS),
        torch_description=_TORCH_FEATURE_DOC.format(F="1 + D + D(D+1)/2", C=cw.CHUNK),
        max_head_dim=128, shape_axes=("value_dim",),
    ),
    AttnFamily(
        name="rebased", fla="rebased", title="ReBased (quadratic feature-map linear attention)", group="linear+decay",
        description="Normalised causal linear attention with the kernel (s q.k)^2 (ReBasedLinearAttention, parallel "
                    "mode: q, k LayerNorm-ed over the feature dim D, v with head dim Dv; scale D**-0.5 fixed by "
                    "the kernel, eps 1e-5).",
        inputs=("q", "k", "v"), make=_rebased_inputs,
        reference=_ref_rebased, reference_name="T x T form of parallel_rebased (fp64, eps 1e-5)",
        reference_max_T=_QUADRATIC_REF_MAX_T,
        backends={"fla": FlaOp("parallel_rebased", kwargs={"eps": REBASED_EPS, "use_scale": True,
                                                           "use_normalize": True}, scale=False, max_head_dim=128)},
        flops=_feature_map_flops, io=_feature_map_io, memory=_feature_map_memory(False),
        flops_doc=_feature_map_flops.__doc__ or "", memory_doc=_FEATURE_MEMORY_DOC,
        torch_run=_feature_map_attention(square_features, _square_pair, REBASED_EPS, exact_scores=True),
        torch_description=_TORCH_FEATURE_DOC.format(F="D(D+1)/2", C=cw.CHUNK),
        max_head_dim=128, shape_axes=("value_dim",),
    ),
    AttnFamily(
        name="nsa", fla="nsa", title="NSA (native sparse attention)", group="sparse",
        description="NativeSparseAttention's three gated branches: attention over mean-pooled 64-token blocks, "
                    "over the 16 selected 64-token blocks (top-k of the compressed attention, first / current / "
                    "previous block forced; indices built from the inputs as the layer does), and a causal "
                    "sliding window of 512 keys (--window sets it); GQA with H/16 key/value heads (a power-of-two group >= 16).",
        inputs=("q", "k", "v", "g_cmp", "g_slc", "g_swa", "block_indices"), make=_nsa_inputs,
        reference=_ref_nsa, reference_name="fla naive_nsa_compression + naive_nsa_selection + T x T window (fp32)",
        reference_max_T=512,
        backends={"fla": FlaOp("parallel_nsa", max_head_dim=256)},
        flops=_nsa_flops, io=_nsa_io, memory=_nsa_memory,
        flops_doc=_nsa_flops.__doc__ or "", memory_doc=(
            "Structural (not fitted): pooled k, v, the three branch outputs and their sum, fp32 log-sum-exps; "
            "fwd+bwd adds the input gradients, the branch output gradients and the pooled gradients."),
        no_torch_reason=("the selected-block gather is data dependent; the fp32 reference (fla's naive NSA, a "
                         "loop over tokens) checks the fla backend but is not an honest CPU timing"),
        prepare=_nsa_prepare, call=_nsa_run,
        grad_inputs=("q", "k", "v", "g_cmp", "g_slc", "g_swa"), max_head_dim=256, shape_axes=("kv_heads", "window"),
        shape_check=_nsa_check, kv_heads=_nsa_kv_heads,
    ),
    AttnFamily(
        name="stickbreaking_attn", fla="stickbreaking_attn", title="Stick-breaking attention", group="softmax",
        description="Softmax-free attention: walking back from the query, each earlier key takes a sigmoid(scale "
                    "q.k) share of the stick the nearer keys left (attend_current=False, the layer's default; "
                    "no positional encoding, q, k, v ~ N(0, 1) projections; GQA).",
        inputs=("q", "k", "v"), make=_gqa_inputs,
        reference=_ref_stickbreaking, reference_name="fla naive_stickbreaking_attn (fp64, T x T)",
        reference_max_T=2048,
        backends={"fla": FlaOp("parallel_stickbreaking_attn", kwargs={"attend_current": False})},
        flops=_sb_flops, io=_gqa_io(), memory=_sb_memory,
        flops_doc=_sb_flops.__doc__ or "", memory_doc=(
            "``torch`` forward: fp32 copies of q, k, v (and GQA repeats), three (rows, keys) tiles of one query "
            "block (at most three of z, the log weights, log(1 - sigmoid z) and its reverse cumsum live at once), "
            "the fp32 output (checked against torch.profiler peaks within 15 %); structural for fwd+bwd: "
            "fwd+bwd: autograd keeps every block's tiles (four T x T per head) plus the input gradients. fla: the "
            "output and the fp32 remaining stick and its log; fwd+bwd adds the input gradients."),
        torch_run=_stickbreaking_torch,
        torch_description="stick-breaking by query blocks in log space (O(T^2) time like the Triton kernel, "
                          "no T x T tensor in the forward), pure PyTorch fp32",
        max_head_dim=256, shape_axes=("kv_heads", "value_dim"),
    ),
    AttnFamily(
        name="parallax", fla="parallax", title="Parallax (parameterized local linear attention)", group="softmax",
        description="Softmax attention with a first-order multiplicative correction from a second query stream r: "
                    "o = O1/d1 (1 + d2/d1) - O2/d1, p2 = p1 (r k^T) unscaled (ParallaxAttention, qk_norm off; "
                    "q, r, k, v ~ N(0, 1); GQA; --window sets its sliding window). fla's kernel is fp16/bf16 only.",
        inputs=("q", "k", "v", "r"), make=_parallax_inputs,
        reference=_ref_parallax, reference_name="fla naive_parallax (fp32, T x T)",
        reference_max_T=2048,
        backends={"fla": FlaOp("parallel_parallax", dtypes=("float16", "bfloat16"))},
        flops=_parallax_flops, io=_gqa_io(lambda s: s.H * s.D), memory=_parallax_memory,
        flops_doc=_parallax_flops.__doc__ or "", memory_doc=(
            "Structural (not fitted). ``torch`` forward: fp32 q, r and the per-query-head k, v, two (rows, keys) "
            "tiles (p1, p2) of one query block, the block outputs; fwd+bwd: autograd keeps every block's tiles. "
            "fla: the output, the fp32 bar-v and three fp32 row statistics; fwd+bwd adds the input gradients."),
        torch_run=_parallax_torch,
        torch_description="Parallax by query blocks (O(T^2) time like the Triton kernel, no T x T tensor in the "
                          "forward), pure PyTorch fp32",
        prepare=lambda inputs: {"window_size": _window_of(inputs)},
        grad_inputs=("q", "k", "v", "r"), max_head_dim=256, shape_axes=("kv_heads", "window"),
    ),
    AttnFamily(
        name="wall_attn", fla="wall_attn", title="Wall attention (per-channel decayed softmax logits)", group="gated",
        description="Softmax attention whose logits decay per channel, s_ij = scale sum_n q_in k_jn exp(P_in - P_jn), "
                    "P = cumsum(g), g = logsigmoid(x + 8) per query head and channel in fp32 (WallAttention at its "
                    "gate init, no scalar gate; GQA; --window sets its sliding window).",
        inputs=("q", "k", "v", "g"), make=_wall_inputs,
        reference=_ref_wall, reference_name="exact Wall attention by query blocks (fp64)",
        reference_max_T=1024,
        backends={"fla": FlaOp("parallel_wall_attn")},
        flops=_wall_flops, io=_gqa_io(lambda s: s.H * s.D * 2), memory=_wall_memory,
        flops_doc=_wall_flops.__doc__ or "", memory_doc=(
            "Structural (not fitted): the output, the fp32 log-sum-exp and the fp32 prefix sums of g; fwd+bwd adds "
            "the input gradients (dg in fp32) and the reversed cumsum of dg."),
        no_torch_reason=("the exact per-channel decayed logits cost O(T^2 K) elementwise work in PyTorch (the "
                         "fp64 reference); a factorised exp(P_i) exp(-P_j) form overflows for long decays: no honest "
                         "CPU timing"),
        prepare=lambda inputs: {"window_size": _window_of(inputs)},
        grad_inputs=("q", "k", "v", "g"), max_head_dim=256, shape_axes=("kv_heads", "window"),
        keep_fp32=("g",),
    ),
)

#: Kernel names, in display order (``profiler.kernels.MECHANISMS`` appends them).
NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
#: fla.ops package -> serprof kernel (``fla_coverage``).
COVERED: dict[str, str] = {f.fla: f.name for f in FAMILIES}
#: fla.ops package -> why its kernel has no timed CPU backend (``serprof list --fla`` says so).
NO_CPU: dict[str, str] = {f.fla: f.no_torch_reason for f in FAMILIES if f.torch_run is None}


# ----------------------------------------------------------------------------- KernelSpec builder

def _fixed_scale(fam: AttnFamily, inputs, D: int) -> float:
    """The scale a backend and the reference use: ``inputs["scale"]``, else the family's fixed ``scale`` (the
    layer's), else ``D**-0.5``; a family whose fla function takes no ``scale`` always uses ``D**-0.5``."""
    if any(not op.scale for op in fam.backends.values()):
        return D ** -0.5
    if inputs.get("scale") is None and fam.scale is not None:
        return float(fam.scale)
    return ck.scale_of(inputs, D)


def kernel(fam: AttnFamily) -> KernelSpec:
    """The ``KernelSpec`` of one row (module doc)."""
    names = fam.inputs

    def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
        x = fam.make(shape, ck.generator(seed))
        dt = ck.torch_dtype(dtype)
        return {n: (x[n].to(device=device, dtype=torch.float32 if n in fam.keep_fp32 else dt)
                    if x[n].is_floating_point() else x[n].to(device)) for n in names}

    def fla_run(op: FlaOp):
        def run(inputs, causal: bool = True):
            require_causal(causal, f"{fam.name}/{op.fn}")
            fn = getattr(importlib.import_module(f"fla.ops.{fam.fla}"), op.fn)
            args = {n: inputs[n] for n in names}
            if fam.prepare is not None:
                args.update(fam.prepare(inputs))
            if op.scale:
                args["scale"] = _fixed_scale(fam, inputs, inputs["q"].shape[-1])
            args.update(op.kwargs)
            out = fam.call(fn, args) if fam.call is not None else fn(**args)
            return out[0] if isinstance(out, tuple) else out
        run.__name__ = f"run_{op.fn}"
        return run

    def reference(inputs, causal: bool = True):
        require_causal(causal, f"{fam.name} reference")
        x = {n: (inputs[n].float() if inputs[n].is_floating_point() else inputs[n]) for n in names}
        if "window" in inputs:
            x["window"] = inputs["window"]
        return fam.reference(x, _fixed_scale(fam, inputs, x["q"].shape[-1]))

    backends: dict[str, Backend] = {}
    if fam.torch_run is not None:
        torch_fn = fam.torch_run

        def run_torch(inputs, causal: bool = True):
            require_causal(causal, f"{fam.name}/torch")
            q = inputs["q"]
            return torch_fn(inputs, _fixed_scale(fam, inputs, q.shape[-1])).to(inputs["v"].dtype)

        backends["torch"] = Backend("torch", run_torch, description=fam.torch_description, varlen="per_sequence")
    for bname, op in fam.backends.items():
        backends[bname] = Backend(bname, fla_run(op), devices=("cuda",), requires=("fla", "triton"),
                                  interpretable=True, backward=op.backward, dtypes=op.dtypes,
                                  description=f"fla.ops.{fam.fla}.{op.fn} (Triton"
                                              + ("; inference only)" if not op.backward else ")"))
    limits = {b: op.max_head_dim for b, op in fam.backends.items()
              if op.max_head_dim is not None and (fam.max_head_dim is None or op.max_head_dim < fam.max_head_dim)}

    def flops(shape: Shape, causal: bool = True) -> float:
        return float(fam.flops(shape))

    def bytes_moved(shape: Shape, itemsize: int, causal: bool = True) -> float:
        return float(fam.io(shape, itemsize))

    def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
        return int(fam.memory(shape, itemsize, backend, mode))

    flops.__doc__ = fam.flops_doc
    bytes_moved.__doc__ = ("Read every input once and write o once: " + " + ".join(names) + " + o (integer inputs at "
                           "their own itemsize).")
    memory_bytes.__doc__ = fam.memory_doc
    notes = {"fla": f"fla.ops.{fam.fla}"}
    notes["torch"] = fam.torch_description if fam.torch_run is not None else f"no timed CPU backend: {fam.no_torch_reason}"
    default = "torch" if fam.torch_run is not None else next(iter(fam.backends))
    return _Spec(
        extra_check=fam.shape_check, kv_of=fam.kv_heads, backend_check=fam.backend_check,
        name=fam.name, title=fam.title, family=fam.family, group=fam.group, make_inputs=make_inputs,
        backends=backends, reference=reference, reference_name=fam.reference_name,
        flops=flops, bytes_moved=bytes_moved, memory_bytes=memory_bytes,
        grad_inputs=fam.grad_inputs, max_head_dim=fam.max_head_dim, reference_max_T=fam.reference_max_T,
        backend_max_head_dim=limits, description=fam.description, default_backend=default,
        notes=notes, shape_axes=fam.shape_axes,
    )


KERNELS: tuple[KernelSpec, ...] = tuple(kernel(f) for f in FAMILIES)

__all__ = ["AttnFamily", "FlaOp", "FAMILIES", "NAMES", "COVERED", "NO_CPU", "KERNELS", "kernel", "taylor_features",
           "square_features", "feature_dim"]
