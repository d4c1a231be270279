"""FoX, forgetting attention: softmax attention with a data-dependent forget-gate bias.

``o_i = sum_j softmax_j(scale * q_i . k_j + G_i - G_j) v_j`` over ``j <= i``, ``G = cumsum_t(g)``,
``g = logsigmoid(.) <= 0`` one scalar per token and head (fp32 ``[B, T, H]``, as fla's layer makes it).

Non-causal (bidirectional) variant, serprof's own definition since fla has none: every key is
visible and the bias is symmetric, ``-|G_i - G_j|``; for ``j <= i`` this equals the causal bias, for
``j > i`` it is the same decay read backwards (``G_j - G_i``).

Backends
--------
* ``torch``: exact, O(T^2 * D) time, never a T x T tensor. On CPU the forward runs on torch's fused
  flash-attention kernel (``_sdpa_forward``): the forget bias splits into a per-row constant
  (dropped by softmax, restored in the log-sum-exp) and one key vector per query block (an
  additive mask broadcast over the block's rows), diagonal squares exact; O(T * D) memory, within
  ~1.5x of SDPA causal at T=16k. Elsewhere (or without that private op) it is blockwise over query
  blocks with an explicit score tile (O(T * block) memory). A custom autograd function recomputes
  the probabilities block by block in the backward pass (flash-attention style), so fwd+bwd is O(T)
  memory too. Compute is fp32 whatever the input dtype; the output has the input's dtype.
* ``torch-pruned``: the same, but skips key blocks whose forget bias is so negative that their
  total weight cannot reach fp32 resolution. The bound is rigorous, not a heuristic: with
  ``S = scale * max_i |q_i| * max_j |k_j|`` every logit is within ``[-S, S]`` and the diagonal term
  has bias 0, so key ``j`` carries at most ``exp(2 S + bias_ij)`` of row ``i``'s mass; keys with
  ``bias <= -(2 S + ln T + 40)`` together weigh less than ``e^-40`` (4e-18) of every row and are
  skipped. Exact to fp32 tolerance by construction; its speed depends on the gate values (strong
  forgetting -> near-linear time), which is why ``torch`` (the mechanism's full O(T^2) work, as
  fla's GPU kernel does it) stays the default.
* ``fla``: ``fla.ops.forgetting_attn.parallel_forgetting_attn`` (Triton, causal only, ``K <= 256``;
  CUDA, or CPU under Triton's interpreter).

Reference: an exact dense-by-query-blocks form in fp64 (``reference``, causal and non-causal; it also
accepts fewer queries than keys). fla's ``naive_forgetting_attn`` (``naive_reference``) is the
independent oracle in the tests; ``reference`` explains why it is not the verifier's oracle.
"""

from __future__ import annotations

import math

from profiler.core.lazy import lazy_import
from profiler.kernels.base import Backend, KernelSpec, Shape
from profiler.kernels.recurrent import CacheForm
from profiler.kernels.softmax import (
    REFERENCE_MAX_T,
    TILE_ELEMENTS,
    blocked_attention,
    randn,
    scale_of,
)

torch = lazy_import("torch")

fla_forgetting_attn = lazy_import('fla.ops.forgetting_attn')
fla_forgetting_attn_naive = lazy_import('fla.ops.forgetting_attn.naive')

#: Skip threshold margin (natural-log units) on top of 2*S + ln T; see the module docstring.
PRUNE_MARGIN = 40.0
MAX_HEAD_DIM = 256
#: Rows sharing one fp64 reference point of G when the forget bias is formed (see ``_add_bias``).
SUB_ROWS = 16
#: Block lengths of the SDPA forward (``_sdpa_forward``), outer to inner; squares up to the last are exact.
SDPA_BLOCKS = (1024, 128)


def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
    """q, k, v ~ N(0, 1) (B, T, H, D) in ``dtype``; g = logsigmoid(N(0, 1)) fp32 (B, T, H)."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    dims = (shape.B, shape.T, shape.H, shape.D)
    out = {name: randn(dims, gen, dtype, device) for name in ("q", "k", "v")}
    out["g"] = torch.nn.functional.logsigmoid(randn((shape.B, shape.T, shape.H), gen, torch.float32, device))
    return out


def _block_len(BH: int, T: int) -> int:
    b = TILE_ELEMENTS // max(1, BH * T)
    return int(min(max(b, 16), 1024))


def _key_range(G, i0: int, i1: int, causal: bool, thr: float | None) -> tuple[int, int]:
    """Keys ``[j0, j1)`` that query rows ``[i0, i1)`` must see (all but provably negligible ones).

    ``G`` is (B, H, T) fp64. With ``thr`` None nothing is pruned. The bias bound uses the interval
    ``[min G_block, max G_block]``: ``max_i (G_i - G_j) <= max G_block - G_j`` (causal) and
    ``max_i -|G_i - G_j| <= -dist(G_j, interval)`` (non-causal), both conservative.
    """
    T = G.shape[-1]
    j1 = i1 if causal else T
    if thr is None:
        return 0, j1
    blk = G[..., i0:i1]
    gmax = blk.amax(-1, keepdim=True)
    cand = G[..., :j1]
    if causal:
        bound = gmax - cand
    else:
        gmin = blk.amin(-1, keepdim=True)
        bound = -torch.clamp(torch.maximum(gmin - cand, cand - gmax), min=0.0)
    keep = (bound > -thr).flatten(0, -2).any(0)
    idx = torch.nonzero(keep)
    if idx.numel() == 0:  # cannot happen (the diagonal has bias 0); be safe
        return 0, j1
    return int(idx[0]), int(idx[-1]) + 1


def _add_bias(s, G, i0: int, i1: int, j0: int, j1: int, causal: bool) -> None:
    """Add the forget bias of rows [i0, i1) x keys [j0, j1) to the fp32 logits ``s`` in place.

    ``G_i - G_j`` is split around a reference row ``r`` every ``SUB_ROWS`` rows,
    ``(G_i - G_r) + (G_r - G_j)``, both parts rounded to fp32 from fp64 ``G``. The first part is a
    sum of at most ``SUB_ROWS`` gates (small, precise); the second is small for keys near the
    diagonal and large (imprecise but weightless) only for far keys. Plain ``s + G_i - G_j`` in fp32
    (fla's naive form) loses ``ulp(|G_i|)``, about T * 6e-8, per logit instead.
    """
    B, H, _, nk = s.shape
    n_full = (i1 - i0) // SUB_ROWS * SUB_ROWS
    for r0, r1 in ((i0, i0 + n_full), (i0 + n_full, i1)):
        n = r1 - r0
        if n == 0:
            continue
        sub = SUB_ROWS if r1 == i0 + n_full else n
        ns = n // sub
        Gr = G[..., r0:r1:sub]                                             # (B, H, ns)
        a = (G[..., r0:r1].reshape(B, H, ns, sub) - Gr[..., None]).float()  # (B, H, ns, sub)
        b = (Gr[..., None] - G[..., None, j0:j1]).float()                  # (B, H, ns, nk)
        view = s[:, :, r0 - i0:r1 - i0].view(B, H, ns, sub, nk)
        if causal:
            view.add_(a[..., None]).add_(b[..., None, :])
        else:
            view.sub_((a[..., None] + b[..., None, :]).abs_())


def _scores(qh, kh, G, i0, i1, j0, j1, scale, causal):
    """fp32 logits of rows [i0, i1) x keys [j0, j1) with the forget bias and the causal mask."""
    s = torch.matmul(qh[:, :, i0:i1], kh[:, :, j0:j1].transpose(-1, -2)).mul_(scale)
    _add_bias(s, G, i0, i1, j0, j1, causal)
    if causal and i1 - 1 >= j0:
        rows = torch.arange(i0, i1, device=s.device)[:, None]
        cols = torch.arange(j0, j1, device=s.device)[None, :]
        s.masked_fill_(cols > rows, float("-inf"))
    return s


def _prune_threshold(qh, kh, T: int, scale: float) -> float:
    S = scale * float(qh.norm(dim=-1).max()) * float(kh.norm(dim=-1).max())
    return 2.0 * S + math.log(max(T, 2)) + PRUNE_MARGIN


def _fox_forward(qh, kh, vh, G, scale, causal, prune):
    """fp32 (B, H, T, *) q, k, v and fp64 G (B, H, T) -> (o fp32 (B, H, T, Dv), lse fp32 (B, H, T))."""
    B, H, T, _ = qh.shape
    o = torch.empty(B, H, T, vh.shape[-1], dtype=torch.float32, device=qh.device)
    lse = torch.empty(B, H, T, dtype=torch.float32, device=qh.device)
    thr = _prune_threshold(qh, kh, T, scale) if prune else None
    blk = _block_len(B * H, T)
    for i0 in range(0, T, blk):
        i1 = min(T, i0 + blk)
        j0, j1 = _key_range(G, i0, i1, causal, thr)
        s = _scores(qh, kh, G, i0, i1, j0, j1, scale, causal)
        m = s.amax(-1, keepdim=True)
        p = s.sub_(m).exp_()
        denom = p.sum(-1, keepdim=True)
        o[:, :, i0:i1] = torch.matmul(p, vh[:, :, j0:j1]).div_(denom)
        lse[:, :, i0:i1] = (m + denom.log()).squeeze(-1)
        del s, p
    return o, lse


def _flash_cpu():
    """torch's CPU flash-attention op (output and log-sum-exp; additive float mask), or None."""
    try:
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    except (AttributeError, RuntimeError):  # a private op: absent in other torch versions
        return None


def _sdpa_forward(qh, kh, vh, G, scale: float, causal: bool, blocks=SDPA_BLOCKS):
    """Exact FoX forward on torch's CPU flash-attention kernel. Returns (o fp32, lse fp64 (N, H, T)).

    Queries go in blocks of ``b`` (the first of ``blocks`` below T). For block ``[i0, i1)``:

    * keys left of it, ``j < i0``: bias ``G_i - G_j = (G_i - G_i0) + (G_i0 - G_j)``. The first term is
      constant along the row, so softmax drops it (it returns in the log-sum-exp, added in fp64);
      the second is one key vector, passed as a (1, j) additive mask broadcast over the block's
      rows. It is rounded to fp32 from fp64 G, so its error is at most ``ulp(|bias_ij|)``: exact
      near the diagonal, imprecise only where ``exp(bias)`` makes the key weightless.
    * non-causal, keys right of it, ``j >= i1``: bias ``G_j - G_i``, likewise about ``i1 - 1``;
    * the diagonal square: FoX on ``b`` tokens, every square of the sequence batched into one
      recursive call; at the last block length the full (b x b) bias is formed in fp64 and
      rounded once (plus the kernel's causal skip).

    Partial results merge by their log-sum-exps in fp64. Work: the causal (or full) ``q k^T``
    pairs once, in the fused kernel (no T x T tensor; memory O(T * D)); extra work is the merge,
    O(T * D) per level.
    """
    flash = _flash_cpu()
    N, H, T, D = qh.shape
    b = next((x for x in blocks if x < T), None)
    if b is None:  # exact square
        d = G[..., :, None] - G[..., None, :]
        mask = (d if causal else d.abs_().neg_()).float()
        o, lse = flash(qh, kh, vh, is_causal=causal, attn_mask=mask, scale=scale)
        return o, lse.double()
    n = T // b
    full = n * b

    def squares(x, lo, hi, nb):
        return x[:, :, lo:hi].unflatten(2, (nb, -1)).transpose(1, 2).flatten(0, 1)

    o_d, L_d = _sdpa_forward(*(squares(x, 0, full, n).contiguous() for x in (qh, kh, vh)),
                             squares(G, 0, full, n).contiguous(), scale, causal, blocks)
    o_d = o_d.unflatten(0, (N, n)).transpose(1, 2).flatten(2, 3)
    L_d = L_d.unflatten(0, (N, n)).transpose(1, 2).flatten(2, 3)
    if full < T:
        o_r, L_r = _sdpa_forward(qh[:, :, full:], kh[:, :, full:], vh[:, :, full:], G[..., full:], scale, causal, blocks)
        o_d, L_d = torch.cat([o_d, o_r], 2), torch.cat([L_d, L_r], 2)
    starts = list(range(0, full, b)) + ([full] if full < T else [])
    for i0 in starts:
        i1 = min(T, i0 + b)
        Gi = G[..., i0:i1]
        parts = []
        if i0 > 0:
            ref = G[..., i0:i0 + 1]
            mask = (ref - G[..., :i0]).float()[..., None, :]
            o, lse = flash(qh[:, :, i0:i1], kh[:, :, :i0], vh[:, :, :i0], attn_mask=mask, scale=scale)
            parts.append((o, lse.double() + (Gi - ref)))
        if not causal and i1 < T:
            ref = G[..., i1 - 1:i1]
            mask = (G[..., i1:] - ref).float()[..., None, :]
            o, lse = flash(qh[:, :, i0:i1], kh[:, :, i1:], vh[:, :, i1:], attn_mask=mask, scale=scale)
            parts.append((o, lse.double() + (ref - Gi)))
        if not parts:
            continue
        Ls = [L_d[..., i0:i1]] + [L for _, L in parts]
        L = torch.stack(Ls).logsumexp(0)
        acc = o_d[:, :, i0:i1].mul_((Ls[0] - L).exp_().float()[..., None])
        for o, Lp in parts:
            acc.add_(o.mul_((Lp - L).exp_().float()[..., None]))
        L_d[..., i0:i1] = L
    return o_d, L_d


def _fox_backward(qh, kh, vh, G, o, lse, do, scale, causal, prune):
    """Flash-style backward: recompute p per query block. Returns fp32 dq, dk, dv (B,H,T,D), fp64 dG (B,H,T)."""
    B, H, T, _ = qh.shape
    dq = torch.zeros_like(qh)
    dk = torch.zeros_like(kh)
    dv = torch.zeros_like(vh)
    dG = torch.zeros_like(G)
    delta = (do * o).sum(-1)  # (B, H, T)
    thr = _prune_threshold(qh, kh, T, scale) if prune else None
    blk = _block_len(B * H, T)
    for i0 in range(0, T, blk):
        i1 = min(T, i0 + blk)
        j0, j1 = _key_range(G, i0, i1, causal, thr)
        s = _scores(qh, kh, G, i0, i1, j0, j1, scale, causal)
        p = s.sub_(lse[:, :, i0:i1, None]).exp_()
        dob = do[:, :, i0:i1]
        dv[:, :, j0:j1] += torch.matmul(p.transpose(-1, -2), dob)
        dp = torch.matmul(dob, vh[:, :, j0:j1].transpose(-1, -2))
        ds = dp.sub_(delta[:, :, i0:i1, None]).mul_(p)
        del p, s
        dq[:, :, i0:i1] += torch.matmul(ds, kh[:, :, j0:j1]) * scale
        dk[:, :, j0:j1] += torch.matmul(ds.transpose(-1, -2), qh[:, :, i0:i1]) * scale
        # d bias / d G: causal bias G_i - G_j; non-causal sign(i - j) * (G_i - G_j) (0 on the diagonal)
        if not causal:
            rows = torch.arange(i0, i1, device=ds.device)[:, None]
            cols = torch.arange(j0, j1, device=ds.device)[None, :]
            sign = (cols < rows).float() - (cols > rows).float()
            ds = ds.mul_(sign)
        dG[:, :, i0:i1] += ds.sum(-1)
        dG[:, :, j0:j1] -= ds.sum(-2)
    return dq, dk, dv, dG


def _fox_function():
    class FoxAttention(torch.autograd.Function):
        """Blockwise exact FoX with an O(T)-memory recomputing backward."""

        @staticmethod
        def forward(ctx, q, k, v, g, scale, causal, prune):
            qh, kh, vh = (x.detach().float().transpose(1, 2).contiguous() for x in (q, k, v))
            G = g.detach().double().cumsum(1).transpose(1, 2).contiguous()
            if prune or _flash_cpu() is None or qh.device.type != "cpu" or vh.shape[-1] != qh.shape[-1]:
                o, lse = _fox_forward(qh, kh, vh, G, scale, causal, prune)
            else:
                o, lse = _sdpa_forward(qh, kh, vh, G, scale, causal)
                lse = lse.float()
            ctx.save_for_backward(qh, kh, vh, G, o, lse)
            ctx.args = (scale, causal, prune, q.dtype, k.dtype, v.dtype, g.dtype)
            return o.transpose(1, 2).to(q.dtype)

        @staticmethod
        def backward(ctx, do):
            qh, kh, vh, G, o, lse = ctx.saved_tensors
            scale, causal, prune, qdt, kdt, vdt, gdt = ctx.args
            doh = do.float().transpose(1, 2).contiguous()
            dq, dk, dv, dG = _fox_backward(qh, kh, vh, G, o, lse, doh, scale, causal, prune)
            # G = cumsum(g) over time -> dg_t = sum_{s >= t} dG_s
            dg = dG.flip(-1).cumsum(-1).flip(-1).transpose(1, 2)
            return (dq.transpose(1, 2).to(qdt), dk.transpose(1, 2).to(kdt), dv.transpose(1, 2).to(vdt),
                    dg.to(gdt), None, None, None)

    return FoxAttention


_FN = None


def _apply(inputs, causal: bool, prune: bool):
    global _FN
    if _FN is None:
        _FN = _fox_function()
    q = inputs["q"]
    return _FN.apply(q, inputs["k"], inputs["v"], inputs["g"], scale_of(inputs, q.shape[-1]), causal, prune)


def run_torch(inputs, causal: bool):
    return _apply(inputs, causal, prune=False)


def run_torch_pruned(inputs, causal: bool):
    return _apply(inputs, causal, prune=True)


def run_fla(inputs, causal: bool):
    if not causal:
        raise ValueError("fla parallel_forgetting_attn is causal only")
    q = inputs["q"]
    kw = {"cu_seqlens": inputs["cu_seqlens"]} if "cu_seqlens" in inputs else {}   # a packed varlen batch
    return fla_forgetting_attn.parallel_forgetting_attn(q, inputs["k"], inputs["v"], inputs["g"],
                                                        scale=scale_of(inputs, q.shape[-1]), **kw)


def reference(inputs, causal: bool):
    """Exact FoX by query blocks in fp64 (G included); q may be shorter than k (queries at 0..Tq-1).

    Why not fla's ``naive_forgetting_attn`` as the verifier's oracle: it adds ``G_i`` and ``G_j`` to
    fp32 logits one after the other, losing ``ulp(|G_i|)`` (about T * 6e-8) per logit, so at T = 1000
    it is itself 2e-5 off the exact result (1e-4 at T = 4096) and cannot certify 1e-5. The tests
    check this form against it where it is accurate (and the torch backend against both).
    """
    q, k = inputs["q"], inputs["k"]
    G = inputs["g"].double().cumsum(1).transpose(1, 2)  # (B, H, Tk)
    Tq = q.shape[1]

    def bias(i0, i1):
        d = G[..., i0:i1, None] - G[..., None, :]
        return d if causal else -d.abs()

    if Tq > k.shape[1]:
        raise ValueError(f"more queries ({Tq}) than keys ({k.shape[1]})")
    return blocked_attention(q, k, inputs["v"], scale=scale_of(inputs, q.shape[-1]), causal=causal, bias=bias)


def naive_reference(inputs, causal: bool = True):
    """fla's ``naive_forgetting_attn`` (causal only, dense fp32): an independent oracle for tests."""
    if not causal:
        raise ValueError("naive_forgetting_attn is causal only")
    q = inputs["q"]
    f = {n: inputs[n].float() for n in ("q", "k", "v", "g")}
    return fla_forgetting_attn_naive.naive_forgetting_attn(f["q"], f["k"], f["v"], f["g"], scale=scale_of(inputs, q.shape[-1]))


# ----------------------------------------------------------------------------- analytic models

def flops(shape: Shape, causal: bool) -> float:
    """Matmul FLOPs (2 per multiply-add) of ``q k^T`` and ``p v``: 4*D per attended pair.

    The bias add, mask and softmax are not counted (as for softmax attention); pruning is ignored.
    """
    T = shape.T
    pairs = T * (T + 1) / 2 if causal else float(T) * T
    return 4.0 * shape.B * shape.H * shape.D * pairs


def bytes_moved(shape: Shape, itemsize: int, causal: bool) -> float:
    """Minimum DRAM traffic of a fused kernel: read q, k, v (itemsize) and g (fp32), write o."""
    B, T, H, D = shape.B, shape.T, shape.H, shape.D
    return 4.0 * B * T * H * D * itemsize + 4.0 * B * T * H


def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool, mode: str) -> int:
    """Peak bytes allocated by one call above its inputs.

    ``torch`` forward (``_sdpa_forward``): fp32 (B, H, T, D) copies of q, k, v and the output
    (4 * B*T*H*D*4), one more copy of q, k, v per block level below T (the batched diagonal
    squares), G and the log-sum-exps (fp64), and the exact bias of the smallest squares (fp64 and
    fp32, B*H*T*side*12). Upper bound when T is not a multiple of the block.
    ``torch-pruned`` forward: fp32 (B, H, T, D) copies of q, k, v and the fp32 output
    (4 * B*T*H*D*4), G and the log-sum-exp (2 * B*H*T*4), the output in the input dtype, and the
    block working set: one fp32 (B, H, block, T) score tile (``B*H*block*T*4``, block from
    ``TILE_ELEMENTS``; non-causal adds the tile-sized ``-|G_i - G_j|`` temporary). fwd+bwd adds fp32
    dq, dk, dv, dO and their casts (about 5 * B*T*H*D*4 more) and a second tile (dP next to P). Pruning only lowers the tile (not modelled).
    ``fla`` forward: output + fp32 LSE + fp32 G (fla's ``chunk_global_cumsum``); fwd+bwd adds dq,
    dk, dv (fp32 in the kernel) and dg.
    """
    B, T, H, D = shape.B, shape.T, shape.H, shape.D
    act4 = B * T * H * D * 4
    act = B * T * H * D * itemsize
    vec = B * H * T * 4
    if backend == "fla":
        base = act + 2 * vec
        return int(base + (3 * act4 + 2 * vec if mode == "fwdbwd" else 0))
    blk = min(_block_len(B * H, T), T)
    tile = B * H * blk * T * 4
    fwd = 4 * act4 + 2 * vec + act + (1 if causal else 2) * tile
    if mode == "fwdbwd":
        return int(fwd + 5 * act4 + 2 * vec + tile)
    if backend == "torch-pruned":
        return int(fwd)
    levels = sum(1 for b in SDPA_BLOCKS if b < T)
    side = min([T] + [b for b in SDPA_BLOCKS if b < T])
    return int((4 + 3 * levels) * act4 + 4 * vec + B * H * T * side * (8 + 4))


KERNEL = KernelSpec(
    name="fox",
    group="softmax",
    title="FoX (forgetting attention)",
    family="quadratic",
    make_inputs=make_inputs,
    backends={
        "torch": Backend("torch", run_torch, causal=(True, False), varlen="per_sequence",
                         description="blockwise exact softmax with forget bias, O(T) memory, recomputing backward"),
        "torch-pruned": Backend("torch-pruned", run_torch_pruned, causal=(True, False), varlen="per_sequence",
                                description="as torch, skipping keys whose forget bias provably cannot matter in fp32"),
        "fla": Backend("fla", run_fla, devices=("cuda",), requires=("fla", "triton"), interpretable=True,
                       varlen="cu_seqlens", description="fla.ops.forgetting_attn.parallel_forgetting_attn (Triton, causal only)"),
    },
    reference=reference,
    reference_name="exact FoX by query blocks (fp64; fla naive_forgetting_attn cross-checked in tests)",
    flops=flops,
    bytes_moved=bytes_moved,
    memory_bytes=memory_bytes,
    grad_inputs=("q", "k", "v", "g"),
    max_head_dim=MAX_HEAD_DIM,
    reference_max_T=REFERENCE_MAX_T,
    description="Softmax attention with a cumulative log forget-gate bias G_i - G_j: O(T^2) time, "
                "O(T) memory. Non-causal: bias -|G_i - G_j| (serprof's bidirectional variant).",
    default_backend="torch",
    # decode / streaming: SDPA against a pre-allocated KV cache plus a cache of G, bias G_i - G_j
    recurrent=CacheForm(gate="g", backend_names=("torch", "fla")),   # fla: attn_decoding_one_step with g
)
