"""Decode and streaming: a mechanism run token by token (or chunk by chunk) after a context of T.

Phases (``PointSpec.phase``; ``profiler.core.settings.PHASES``)
---------------------------------------------------------------
* ``decode``: a context of ``T`` tokens is summarised *outside* the timed region (the carried state of
  a linear mechanism, or a KV cache of length T pre-allocated for ``T + steps`` tokens as a serving
  engine would); one timed call then processes ``steps`` more tokens one at a time, updating the state
  (or writing the cache) in place. Times are per call; per token = per call / steps.
* ``streaming``: the same, but one timed call processes one chunk of ``C`` tokens at once (option
  ``chunk=C``): a live-audio model that receives one 20-40 ms frame (1-2 tokens at 50 frames/s) per call.
  Linear mechanisms run a chunk of ``CHUNK_MIN`` tokens or more in the chunkwise form with the
  carried state as initial state (``gla_chunk``; KDA's WY form with an initial state), shorter chunks
  token by token through the step; softmax attends the chunk's C queries to the
  cache in one SDPA call (causal inside the chunk). fla backends run the chunk in one
  ``fused_recurrent_*`` call from the carried state (decode: one call per token).

Repeated timed calls re-process the same tokens: a KV cache rewrites the same slots (same cost every
call); a state keeps advancing, which changes its values but not the work of a step.

Two kinds of recurrent form (``KernelSpec.recurrent``)
------------------------------------------------------
``LinearForm`` (fixed-size state; retnet, lightnet, gsa, kda): on CPU (and as the ``torch`` backend on
any device) every mechanism goes through the one shared recurrent step ``step``::

    S <- Diag(e^{gk}) S Diag(e^{gv})                 (log gates <= 0; either side optional)
    S <- S + k v^T                                   (plain)   or
    S <- S + k (beta (v - S^T k))^T                  (delta rule, KDA)
    o  = S^T q                                       (q already scaled)

whose state update is ``chunked.advance`` -- the same function the chunkwise engine's state recurrence
(``chunked.scan_states``) runs per chunk, so the decode step is the chunkwise engine at chunk length 1;
a streaming chunk runs ``gla_chunk`` (the engine's per-chunk form with an initial state, built from
``chunked.pairwise_intra`` and ``advance``).
The state after the context is built by the kernel's ``start`` (a closed form over all T tokens,
``gated_state``, or the chunkwise engine with its final state), never by the step being timed.
The ``fla-recurrent`` backend calls fla's ``fused_recurrent_*`` with ``initial_state`` and
``output_final_state=True`` for each token (streaming: each chunk) and copies the final state back
into the carried tensor.

``CacheForm`` (softmax, FoX): query length 1 (or C) against a pre-allocated KV cache through
``torch.nn.functional.scaled_dot_product_attention``; FoX adds its forget bias ``G_i - G_j`` from a
cache of cumulative log gates. A kernel without a recurrent form is dropped from a decode or
streaming plan with the reason (``unsupported``).

Correctness (``check``): the decode outputs from the context state must equal the kernel's fp32
full-sequence reference on the same ``T + steps`` tokens at the same positions, within the dtype's
tolerance; for long T the context is shortened to what the reference affords (``checked_T``).

Memory (``carried_bytes``): a linear state is ``B*H*K*V*4`` bytes (plus small side vectors), constant
in T; a KV cache is ``2*B*H*T*D*itemsize`` (+ ``B*H*T*8`` for FoX's fp64 gate cache), linear in T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.core.records import Correctness
from profiler.kernels.base import Analytic, Shape, Workload
from profiler.kernels.chunked import (  # the state recurrence shared with the chunkwise engine
    advance,
    pairwise_intra,
)
from profiler.kernels.verify import _rel, tolerance_for

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

if TYPE_CHECKING:
    import torch

    from profiler.core.records import Correctness, PointSpec
    from profiler.kernels.base import KernelSpec

#: Backend of a linear mechanism that runs fla's fused recurrent kernels with a carried state.
FLA_BACKEND = "fla-recurrent"
#: Longest piece ``gla_chunk`` handles in one exact pairwise block (its cost grows as C^2 D per head).
SUB_CHUNK = 16
#: Shortest streaming chunk run in the chunkwise form; shorter ones (a 20-40 ms frame is 1-2 tokens)
#: run token by token, which costs less than the chunkwise form's fixed work (measured on CPU: about
#: even at 8 tokens, the token loop 2-3x faster at 2).
CHUNK_MIN = 8


# ----------------------------------------------------------------------------- the shared step

def step(S: "torch.Tensor", q, k, v, gk=None, gv=None, beta=None) -> "torch.Tensor":
    """One token of a gated (delta-rule) linear recurrence, ``S`` ``(B, H, K, V)`` fp32 updated in place.

    ``q, k`` ``(B, H, K)``; ``v`` ``(B, H, V)``; ``gk`` / ``gv`` log gates (<= 0) broadcastable to
    ``(B, H, K)`` / ``(B, H, V)``; ``beta`` ``(B, H)`` turns on the delta rule (module doc). ``q`` is
    already scaled. Inputs are upcast to fp32. Returns ``o = S^T q`` ``(B, H, V)`` fp32.
    """
    q, k, v = q.float(), k.float(), v.float()
    decay = None
    if gk is not None:
        decay = gk.float().exp().unsqueeze(-1)
    if gv is not None:
        dv = gv.float().exp().unsqueeze(-2)
        decay = dv if decay is None else decay * dv
    if beta is None:
        advance(S, k.unsqueeze(-1) * v.unsqueeze(-2), decay, out=S)
    else:
        if decay is not None:
            S.mul_(decay)
        u = (v - (k.unsqueeze(-2) @ S).squeeze(-2)) * beta.float().unsqueeze(-1)
        advance(S, k.unsqueeze(-1) * u.unsqueeze(-2), out=S)
    return (q.unsqueeze(-2) @ S).squeeze(-2)


def gla_chunk(S: "torch.Tensor", q, k, v, gk=None, gv=None) -> "torch.Tensor":
    """A chunk of C tokens of a gated linear recurrence from the carried state ``S`` ``(B, H, K, V)``
    (fp32, updated in place): the chunkwise engine's form for one chunk with an initial state.

    ``q`` (scaled), ``k`` ``(B, C, H, K)``, ``v`` ``(B, C, H, V)``, log gates ``(B|1, C, H, K|1)`` /
    ``(.., V|1)``. With ``b`` the inclusive cumulative gates inside the chunk:
    ``o_i = ((q_i e^{bk_i}) S) e^{bv_i} + sum_{j<=i} (q_i . k_j e^{bk_i-bk_j}) v_j e^{bv_i-bv_j}`` (the
    intra-chunk part exact for any gate: ``chunked.pairwise_intra``), then
    ``S <- Diag(e^{bk_C}) S Diag(e^{bv_C}) + gated_state(chunk)``. Returns ``(B, C, H, V)`` fp32.
    A chunk longer than ``SUB_CHUNK`` runs as consecutive sub-chunks (the pairwise form costs
    ``C^2 D`` per head), each from the state the previous one left.
    """
    B, C, H, K = q.shape
    if C > SUB_CHUNK:
        def part(x, a, b):
            return None if x is None else (x if x.shape[1] == 1 else x[:, a:b])

        return torch.cat([gla_chunk(S, *(part(x, a, min(a + SUB_CHUNK, C)) for x in (q, k, v, gk, gv)))
                          for a in range(0, C, SUB_CHUNK)], dim=1)
    V = v.shape[-1]

    def heads(x, D):          # (B|1, C, H, D|1) -> (B*H, C, D) fp32
        return x.float().expand(B, C, H, D).transpose(1, 2).reshape(B * H, C, D)

    qh, kh, vh = heads(q, K), heads(k, K), heads(v, V)
    bk = heads(gk, K).cumsum(1) if gk is not None else None
    bv = heads(gv, V).cumsum(1) if gv is not None else None
    Sf = S.view(B * H, K, V)
    inter = (qh * bk.exp() if bk is not None else qh) @ Sf
    if bv is not None:
        inter = inter * bv.exp()
    o = pairwise_intra(qh, kh, vh, bk, bv) + inter
    decay = None
    if bk is not None:
        decay = bk[:, -1].exp().unsqueeze(-1)
    if bv is not None:
        dv = bv[:, -1].exp().unsqueeze(-2)
        decay = dv if decay is None else decay * dv
    U = gated_state(k, v, gk, gv).view(B * H, K, V)
    advance(Sf, U, decay, out=Sf)
    return o.view(B, H, C, V).transpose(1, 2)


def suffix_decay(g: "torch.Tensor") -> "torch.Tensor":
    """``e^{sum_{r=s+1}^{T-1} g_r}`` per token ``s`` of log gates ``g`` ``(B, T, H, *)`` (<= 1, fp32).

    The exclusive suffix sums are accumulated in fp64 (no cancellation for long T)."""
    gd = g.double()
    suf = gd.flip(1).cumsum(1).flip(1) - gd
    return suf.exp().float()


def gated_state(k, v, gk=None, gv=None) -> "torch.Tensor":
    """The state after all T tokens of a gated linear recurrence started from zero, in closed form:
    ``S = sum_s (k_s * e^{Gk_T - Gk_s}) (v_s * e^{Gv_T - Gv_s})^T`` ``(B, H, K, V)`` fp32.

    ``k`` ``(B, T, H, K)``, ``v`` ``(B, T, H, V)``, log gates ``(B|1, T, H, K|1)`` / ``(.., V|1)``.
    Every exponent is <= 0 (exact for any gate); one batched matmul instead of T steps.
    """
    kk, vv = k.float(), v.float()
    if gk is not None:
        kk = kk * suffix_decay(gk)
    if gv is not None:
        vv = vv * suffix_decay(gv)
    return torch.einsum("bthk,bthv->bhkv", kk, vv).contiguous()


def token(inputs: Mapping[str, Any], name: str, t: int):
    """Token ``t`` of a time-indexed input ``(B, T, H, ...)`` -> ``(B, H, ...)`` (a view)."""
    return inputs[name][:, t]


# ----------------------------------------------------------------------------- forms

class _Phases:
    """What ``KernelSpec`` calls for a decode / streaming point (module functions below)."""

    def build(self, kernel, point, device: str, seed: int) -> Workload:
        return build(kernel, point, device, seed)

    def check(self, kernel, point, device: str, seed: int, max_T: int | None):
        return check(kernel, point, device, seed, max_T)

    def analytic(self, kernel, point, itemsize: int) -> Analytic:
        return analytic(kernel, point, itemsize)


@dataclass(frozen=True)
class LinearForm(_Phases):
    """A fixed-size carried state (see module doc).

    ``start(inputs, T0) -> {name: fp32 tensor}``: the state after tokens ``[0, T0)``.
    ``step(state, inputs, t, scale) -> (B, H, V)``: token ``t`` through ``recurrent.step``, in place.
    ``state_shapes(shape) -> {name: dims}``: the carried fp32 tensors (analytic bytes).
    ``fla(state, inputs, t0, t1, scale, step) -> (B, t1-t0, H, V)``: fla's fused recurrent kernel, one
    call per ``step`` tokens (decode 1, streaming the chunk), state carried (``FLA_BACKEND``); None: no
    fla decode path.
    ``step_flops(shape) -> float``: FLOPs of one token (2 per multiply-add).
    ``chunk(state, inputs, t0, t1, scale) -> (B, t1-t0, H, V)``: a streaming chunk at once from the
    state (the chunkwise form with an initial state, e.g. ``gla_chunk``); None: token by token.
    """

    start: Callable[..., dict]
    step: Callable[..., Any]
    state_shapes: Callable[[Shape], Mapping[str, tuple[int, ...]]]
    step_flops: Callable[[Shape], float]
    fla: Callable[..., Any] | None = None
    chunk: Callable[..., Any] | None = None
    kind: str = "state"

    def backends(self) -> tuple[str, ...]:
        return ("torch",) + ((FLA_BACKEND,) if self.fla is not None else ())


@dataclass(frozen=True)
class CacheForm(_Phases):
    """Softmax-type attention reading a KV cache (see module doc). ``gate``: the name of a per-token,
    per-head log forget gate input (FoX's ``g``), whose cumulative sum is cached for the bias."""

    gate: str | None = None
    backend_names: tuple[str, ...] = ("sdpa",)
    kind: str = "cache"

    def backends(self) -> tuple[str, ...]:
        return self.backend_names


Form = LinearForm | CacheForm


def unsupported(kernel: "KernelSpec", backend: str, phase: str) -> str | None:
    """Why ``kernel/backend`` cannot run ``phase`` (None: it can)."""
    if phase == "prefill":
        return None
    form = getattr(kernel, "recurrent", None)
    if form is None:
        return f"{kernel.name} has no recurrent form: {phase} needs a carried state or a KV cache"
    if backend not in form.backends():
        return (f"{phase} of {kernel.name} runs through {', '.join(form.backends())} "
                f"({'recurrent step' if form.kind == 'state' else 'KV cache'}), not {backend}")
    return None


def tokens_per_call(point: "PointSpec") -> int:
    return point.tokens_per_call


# ----------------------------------------------------------------------------- carried memory

def carried_bytes(kernel: "KernelSpec", shape: Shape, itemsize: int) -> int:
    """Analytic bytes carried between calls after a context of ``shape.T`` tokens, for ``shape.B`` streams:
    the fp32 state tensors (constant in T), or the KV cache ``2*B*H*T*D*itemsize`` (+ FoX's fp64 gate
    cache ``B*H*T*8``), linear in T."""
    form = kernel.recurrent
    if form.kind == "state":
        total = 0
        for dims in form.state_shapes(shape).values():
            n = 1
            for d in dims:
                n *= d
            total += 4 * n
        return total
    kv = 2 * shape.B * shape.H * shape.T * shape.D * itemsize
    return kv + (shape.B * shape.H * shape.T * 8 if form.gate else 0)


def analytic(kernel: "KernelSpec", point: "PointSpec", itemsize: int) -> Analytic:
    """FLOPs and minimum bytes of one timed call (``n`` tokens after a context of T), and its working memory.

    State: ``n * step_flops``; bytes: the state read and written per token (decode) or once per chunk
    (streaming) plus the tokens' q, k, v, o. Cache: ``4*B*H*D`` FLOPs per (query, key) pair; bytes: the cache read per query token plus the
    new rows written. Working memory above the carried state and inputs: one token's temporaries
    (state: a (K, V) outer product per head; cache: the scores of the chunk).
    """
    form = kernel.recurrent
    n = point.tokens_per_call
    shape = Shape(point.B, point.T, point.H, point.D)
    B, T, H, D = shape.B, shape.T, shape.H, shape.D
    tok = 4 * B * H * D * itemsize
    if form.kind == "state":
        sb = carried_bytes(kernel, shape, itemsize)
        passes = n if point.phase == "decode" else 1
        return Analytic(n * float(form.step_flops(shape)), float(passes * 2 * sb + n * tok), int(sb))
    pairs = sum(T + i + 1 for i in range(n))
    flops = 4.0 * B * H * D * pairs
    cache_rows = 2 * B * H * D * itemsize
    moved = float(cache_rows * (T + n) * (n if point.phase == "decode" else 1) + n * tok)
    work = B * H * n * (T + n) * 4 * 2
    return Analytic(flops, moved, int(work))


# ----------------------------------------------------------------------------- a carried context

@dataclass
class Context:
    """Inputs for ``T + n`` tokens and what the first T of them left behind (state or cache)."""

    inputs: dict
    T: int
    n: int
    carried: dict = field(default_factory=dict)
    scale: float = 1.0

    @property
    def carried_nbytes(self) -> int:
        """Bytes of the carried tensors as allocated (the measured state / cache size)."""
        return sum(int(t.nbytes) for t in self.carried.values())


def _scale(inputs, D: int) -> float:
    s = inputs.get("scale") if hasattr(inputs, "get") else None
    return float(s) if s is not None else D ** -0.5


def context(kernel: "KernelSpec", point: "PointSpec", device: str, seed: int, T: int | None = None,
            n: int | None = None, inputs: dict | None = None) -> Context:
    """Inputs for ``T + n`` tokens (``make_inputs``) and the carried state / cache after the first T."""
    T = point.T if T is None else T
    n = point.tokens_per_call if n is None else n
    if inputs is None:
        inputs = kernel.make_inputs(Shape(point.B, T + n, point.H, point.D), getattr(torch, point.dtype), device, seed)
    scale = _scale(inputs, point.D)
    form = kernel.recurrent
    with torch.no_grad():
        if form.kind == "state":
            carried = {name: t.contiguous() for name, t in form.start(inputs, T).items()}
        else:
            carried = _cache_start(form, inputs, T, T + n)
    return Context(inputs=inputs, T=T, n=n, carried=carried, scale=scale)


def _cache_start(form: CacheForm, inputs, T: int, capacity: int) -> dict:
    """K and V caches ``(B, H, capacity, D)`` in the input dtype, rows ``[0, T)`` filled (and FoX's
    cumulative gate cache ``(B, H, capacity)`` fp64)."""
    k, v = inputs["k"], inputs["v"]
    B, _, H, D = k.shape
    out = {}
    for name, x in (("k_cache", k), ("v_cache", v)):
        c = torch.zeros(B, H, capacity, x.shape[-1], dtype=x.dtype, device=x.device)
        c[:, :, :T] = x[:, :T].transpose(1, 2)
        out[name] = c
    if form.gate:
        # fp64: the bias G_i - G_j is a difference of two long cumulative sums (|G| ~ 0.8 T for FoX's
        # gates), which fp32 would round to ~1e-4 at T = 4k
        G = torch.zeros(B, H, capacity, dtype=torch.float64, device=k.device)
        G[:, :, :T] = inputs[form.gate][:, :T].double().cumsum(1).transpose(1, 2)
        out["g_cache"] = G
    return out


def _cache_attend(form: CacheForm, ctx: Context, t0: int, t1: int):
    """Queries ``[t0, t1)`` written to and attending the cache ``[0, t1)`` (causal inside the chunk)."""
    c, inp = ctx.carried, ctx.inputs
    kc, vc = c["k_cache"], c["v_cache"]
    kc[:, :, t0:t1] = inp["k"][:, t0:t1].transpose(1, 2)
    vc[:, :, t0:t1] = inp["v"][:, t0:t1].transpose(1, 2)
    q = inp["q"][:, t0:t1].transpose(1, 2)
    n = t1 - t0
    mask = None
    if form.gate:
        G = c["g_cache"]
        prev = G[:, :, t0 - 1:t0] if t0 > 0 else torch.zeros_like(G[:, :, :1])
        G[:, :, t0:t1] = prev + inp[form.gate][:, t0:t1].double().cumsum(1).transpose(1, 2)
        mask = (G[:, :, t0:t1, None] - G[:, :, None, :t1]).to(q.dtype)
    if n > 1:
        rows = torch.arange(t0, t1, device=q.device)[:, None]
        future = torch.arange(t1, device=q.device)[None, :] > rows
        if mask is None:
            mask = ~future
        else:
            mask = mask.masked_fill(future, float("-inf"))
    o = F.scaled_dot_product_attention(q, kc[:, :, :t1], vc[:, :, :t1], attn_mask=mask, scale=ctx.scale)
    return o.transpose(1, 2)


def advance_context(kernel: "KernelSpec", backend: str, ctx: Context, phase: str) -> "torch.Tensor":
    """Process tokens ``[T, T + n)`` from the carried context, in place: decode one token per step,
    streaming one chunk per call (module doc). Returns the outputs ``(B, n, H, V)``."""
    form = kernel.recurrent
    t0, t1 = ctx.T, ctx.T + ctx.n
    if form.kind == "cache":
        if phase == "streaming":
            return _cache_attend(form, ctx, t0, t1)
        return torch.cat([_cache_attend(form, ctx, t, t + 1) for t in range(t0, t1)], dim=1)
    if backend == FLA_BACKEND:
        return form.fla(ctx.carried, ctx.inputs, t0, t1, ctx.scale, step=ctx.n if phase == "streaming" else 1)
    if phase == "streaming" and form.chunk is not None and ctx.n >= CHUNK_MIN:
        return form.chunk(ctx.carried, ctx.inputs, t0, t1, ctx.scale)
    return torch.stack([form.step(ctx.carried, ctx.inputs, t, ctx.scale) for t in range(t0, t1)], dim=1)


# ----------------------------------------------------------------------------- workload and check

def build(kernel: "KernelSpec", point: "PointSpec", device: str, seed: int) -> Workload:
    """The timed call of a decode / streaming point; inputs and the carried context built here, outside
    timing. ``extra``: carried bytes (measured from the allocated tensors, and analytic), its kind,
    tokens per call."""
    if point.mode != "fwd":
        raise UsageError(f"--phase {point.phase} measures inference only; use --mode fwd")
    ctx = context(kernel, point, device, seed)
    itemsize = ctx.inputs["q"].element_size()
    backend = point.backend

    def call() -> None:
        with torch.no_grad():
            advance_context(kernel, backend, ctx, point.phase)

    extra = {"phase": point.phase, "tokens_per_call": ctx.n, "carried_kind": kernel.recurrent.kind,
             "carried_bytes": ctx.carried_nbytes,
             # a cache holds T + n rows once the call wrote its tokens (it is allocated for them up front)
             "carried_bytes_analytic": carried_bytes(kernel, Shape(point.B, point.T + (
                 ctx.n if kernel.recurrent.kind == "cache" else 0), point.H, point.D), itemsize)}
    inputs = dict(ctx.inputs)
    inputs.update(ctx.carried)
    return Workload(call, None, inputs, extra)


def check(kernel: "KernelSpec", point: "PointSpec", device: str, seed: int = 0,
          max_T: int | None = None) -> "Correctness":
    """Decode / streaming outputs from the context state against the fp32 full-sequence reference at the
    same positions (module doc). The context is ``min(T, max_T, reference_max_T) - n`` tokens when the
    reference cannot afford ``T + n`` (at least 1); ``checked_T`` records it. Decode steps beyond half of
    what the reference affords are checked on the first ``cap // 2`` steps (the same step, repeated);
    a streaming chunk is always checked whole."""
    n = point.tokens_per_call
    cap = min(x for x in (max_T, kernel.reference_max_T, point.T + n) if x is not None)
    if point.phase == "decode":
        n = min(n, max(1, cap // 2))
    T = max(1, min(point.T, cap - n))
    inputs = kernel.make_inputs(Shape(point.B, T + n, point.H, point.D), getattr(torch, point.dtype), device, seed)
    ctx = context(kernel, point, device, seed, T=T, n=n, inputs=inputs)
    with torch.no_grad():
        out = advance_context(kernel, point.backend, ctx, point.phase)
        ref = kernel.reference({k: (x.float() if getattr(x, "is_floating_point", lambda: False)() else x)
                                for k, x in inputs.items()}, True)[:, T:T + n]
    abs_err, rel_err = _rel(out.float(), ref.float())
    requires = kernel.backends[point.backend].requires
    tol = tolerance_for(point.dtype, requires, device)
    what = f"{kernel.reference_name}, full sequence of {T + n} tokens vs {point.phase} after {T}"
    return Correctness(reference=what, max_abs_err=abs_err, max_rel_err=rel_err, tolerance=tol,
                       passed=bool(rel_err <= tol), checked_T=T)


__all__ = ["FLA_BACKEND", "LinearForm", "CacheForm", "Context", "advance", "step", "gla_chunk", "gated_state",
           "suffix_decay",
           "unsupported", "carried_bytes", "analytic", "context", "advance_context", "build", "check", "token"]
