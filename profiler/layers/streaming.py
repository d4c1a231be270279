"""Streaming and decode of a whole SER layer (level ``layer``, ``--phase streaming|decode``): the layer
processes the sequence in chunks with what its mechanism carries between calls, as a live-audio model
would with 20-40 ms frames (1-2 positions each at 50 frames/s).

A port that streams declares (``profiler.layers.<layer>``):

* ``stream_kernel``: the mechanism whose recurrent form it runs (``profiler.kernels.recurrent``);
* ``stream_inputs(x, carried, t0)``: the mechanism inputs of tokens ``x`` [B, n, hidden] at positions
  ``t0..t0+n-1`` (RoPE at those positions; KDA's short convolutions continue from their carried last
  ``conv_size - 1`` inputs) -- the same function its full-sequence ``forward`` calls;
* ``stream_output(o, x)``: the per-token output part (gate, norm, output projection);
* ``stream_carried_bytes(B, T, itemsize)``: the analytic bytes it carries after T tokens.

Context (outside the timed region): the first T positions of ``x`` through ``stream_inputs``, then the
mechanism's ``start`` (a linear state in closed form / by the chunkwise engine) or a KV cache
pre-allocated for ``T + n`` positions with rows ``[0, T)`` filled. Timed call: ``n`` positions after T
-- streaming one chunk of ``C`` (``recurrent.advance_state``: the chunkwise form from the carried state
for ``C >= CHUNK_MIN``, else the shared step token by token; softmax / FoX one SDPA call of C queries
on the cache), decode ``n`` single-token steps (each with its own projections). Repeated calls
re-process the same positions (the state keeps advancing; a cache rewrites the same rows).

Correctness (``check``): context then several consecutive chunks (``CHECK_CHUNKS``, so the carried
state crosses chunk boundaries) against the full-sequence layer in fp32 on the kernels' reference
forms (``common.oracle``), same weights and input, at the same positions; tolerance as prefill layer
points (``verify.TOLERANCE``).

Backend ``fla`` (RetNet, LightNet, GSA, KDA): the fla layer class itself streams through its own cache
(``past_key_values=fla.models.utils.Cache()``, ``use_cache=True``; ``FlaStream``), checked against the
fp32 torch port with the fla weights (CPU: under Triton's interpreter, correctness only). What cannot
stream is said with the reason (``unsupported``): fla's ForgettingAttention class, the SER head (its
attention pooling reads the whole utterance), non-causal / bidirectional variants.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from profiler.core.lazy import lazy_import
from profiler.core.records import Correctness, PointSpec
from profiler.kernels import recurrent as rc
from profiler.layers import build_fla
from profiler.layers.common import oracle
from profiler.layers.verify import TOLERANCE, VERIFY_T
from profiler.layers.workload import build_module, make_inputs

torch = lazy_import("torch")
fla_model_utils = lazy_import("fla.models.utils")   # the fla layers' past_key_values cache (backend fla)

#: Consecutive chunks (or decode steps) the correctness check streams after its context.
CHECK_CHUNKS = 3


#: fla layer classes that stream through their own ``past_key_values`` cache (``fla.models.utils.Cache``).
FLA_STREAMING = ("retnet", "lightnet", "gsa", "kda")


def unsupported(level: str, backend: str, phase: str, layer: str = "") -> str | None:
    """Why a layer point cannot run ``phase`` (None: it can). Every torch port has a streaming form; the
    fla linear layers stream through their ``past_key_values`` cache."""
    if phase == "prefill":
        return None
    if level != "layer":
        return (f"{phase} at level {level}: the SER head's attention pooling reads the whole utterance; "
                "stream the layer (--level layer)")
    if backend == "fla" and layer not in FLA_STREAMING:
        return (f"{phase} of fla's {layer or 'layer'} class is not measured: fla 0.6.0's ForgettingAttention "
                "appends to its cache on every call and decodes one token only with an attention mask "
                "(the torch port streams: backend torch)")
    return None


class FlaStream:
    """An fla layer class streaming through its own cache (``past_key_values``, ``use_cache=True``):
    the real serving path of an fla model. ``carried`` holds the cache object."""

    def __init__(self, module):
        self.module = module

    def start(self, x, capacity: int) -> dict:
        cache = fla_model_utils.Cache()
        with torch.no_grad():
            self.module(x, past_key_values=cache, use_cache=True)
        return {"fla_cache": cache}

    def advance(self, x, carried: dict, t0: int, phase: str):
        if phase == "decode" and x.shape[1] > 1:
            return torch.cat([self.advance(x[:, i:i + 1], carried, t0 + i, phase) for i in range(x.shape[1])], 1)
        out = self.module(x, past_key_values=carried["fla_cache"], use_cache=True)
        return out[0] if isinstance(out, tuple) else out


def _tensors(obj):
    """Every tensor inside a (nested) cache structure."""
    if hasattr(obj, "nbytes") and hasattr(obj, "dim"):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)
    elif hasattr(obj, "__len__") and hasattr(obj, "__getitem__") and not isinstance(obj, (str, bytes)):
        for i in range(len(obj)):
            yield from _tensors(obj[i])


def _streamer(module):
    return module if hasattr(module, "stream_inputs") else None


def _form(module):
    return importlib.import_module(f"profiler.kernels.{module.stream_kernel}").KERNEL.recurrent


def _scale(inputs: dict) -> float:
    return rc._scale(inputs, inputs["q"].shape[-1])


def start(module, x, capacity: int) -> dict:
    """What the layer carries after the tokens ``x`` [B, T, hidden] (positions 0..T-1): the mechanism's
    state (fp32) or a KV cache for ``capacity`` positions, plus the port's own (convolution tails)."""
    if isinstance(module, FlaStream):
        return module.start(x, capacity)
    carried: dict[str, Any] = {}
    with torch.no_grad():
        inputs = module.stream_inputs(x, carried, 0)
        form = _form(module)
        T = x.shape[1]
        if form.kind == "state":
            carried.update({k: t.contiguous() for k, t in form.start(inputs, T).items()})
        else:
            carried.update(rc.cache_start(form, inputs, T, capacity))
    return carried


def advance(module, x, carried: dict, t0: int, phase: str) -> "torch.Tensor":
    """Positions ``t0..t0+n-1`` (tokens ``x`` [B, n, hidden]) from ``carried`` (updated in place): one
    chunk (streaming) or n single-token steps (decode). Returns the layer output [B, n, hidden]."""
    if isinstance(module, FlaStream):
        return module.advance(x, carried, t0, phase)
    if phase == "decode" and x.shape[1] > 1:
        return torch.cat([advance(module, x[:, i:i + 1], carried, t0 + i, phase) for i in range(x.shape[1])], 1)
    form = _form(module)
    inputs = module.stream_inputs(x, carried, t0)
    if form.kind == "state":
        o = rc.advance_state(form, carried, inputs, 0, x.shape[1], _scale(inputs), phase)
    else:
        o = rc.cache_attend(form, carried, inputs, t0, _scale(inputs))
    return module.stream_output(o.to(x.dtype), x)


def carried_bytes(module, B: int, T: int, itemsize: int) -> int:
    """Analytic bytes the layer carries after T positions (``stream_carried_bytes`` of the port)."""
    return int(module.stream_carried_bytes(B, T, itemsize))


@dataclasses.dataclass
class StreamWorkload:
    """The timed call of a layer streaming / decode point and what it carries (built outside timing)."""

    module: Any
    x: Any
    carried: dict
    T: int
    n: int
    phase: str

    def call(self) -> None:
        with torch.no_grad():
            advance(self.module, self.x[:, self.T:self.T + self.n], self.carried, self.T, self.phase)

    @property
    def carried_nbytes(self) -> int:
        return sum(int(t.nbytes) for t in _tensors(self.carried))


def _module(point: PointSpec, device: str, seed: int):
    """The streaming module of a point: the torch port, or the fla class (``layer_idx=0``) wrapped."""
    if point.backend == "fla":
        torch.manual_seed(seed)
        m = build_fla(point.kernel, point.hidden, point.H, layer_idx=0).to(device=device, dtype=getattr(torch, point.dtype))
        module = FlaStream(m.eval())
    else:
        module = build_module(point, device=device, seed=seed)
    for p in (module.module if isinstance(module, FlaStream) else module).parameters():
        p.requires_grad_(False)
    return module


def workload(point: PointSpec, device: str, seed: int) -> StreamWorkload:
    """Module, input of ``T + n`` positions and the carried context after T (point's dtype)."""
    n = point.tokens_per_call
    full = dataclasses.replace(point, T=point.T + n)
    module = _module(full, device, seed)
    x = make_inputs(full, device=device, seed=seed)["x"]
    carried = start(module, x[:, :point.T], point.T + n)
    return StreamWorkload(module, x, carried, point.T, n, point.phase)


def check(point: PointSpec, device: str, seed: int, max_T: int = VERIFY_T) -> Correctness:
    """Context then ``CHECK_CHUNKS`` chunks (decode: steps) streamed, against the fp32 full-sequence layer
    on the kernels' reference forms at the same positions. The context is shortened to what the
    reference affords (``checked_T``): ``min(T, max_T)`` positions in all, at least one of context."""
    n = point.tokens_per_call
    steps = CHECK_CHUNKS * n
    T = max(1, min(point.T, max(1, max_T - steps)))
    small = dataclasses.replace(point, T=T + steps, B=min(point.B, 2), phase="prefill", options=())
    module = _module(small, device, seed)
    x = make_inputs(small, device=device, seed=seed)["x"]
    ref_module = build_module(dataclasses.replace(small, backend="torch", dtype="float32", device="cpu"), seed=seed)
    if isinstance(module, FlaStream):   # fla: against the fp32 port with the fla weights (as prefill)
        ref_module.load_state_dict({k: v.float().cpu() for k, v in module.module.state_dict().items()}, strict=True)
    with torch.no_grad():
        carried = start(module, x[:, :T], T + steps)
        outs = [advance(module, x[:, t:t + n], carried, t, point.phase) for t in range(T, T + steps, n)]
        got = torch.cat(outs, dim=1).float().cpu()
        with oracle():
            ref = ref_module(x.float().cpu())[:, T:T + steps].float()
    abs_err = (got - ref).abs().max().item()
    rel = abs_err / max(ref.abs().max().item(), 1e-30)
    tol = TOLERANCE.get(point.dtype, 1e-3)
    what = (f"fp32 layer on the kernels' reference forms, full sequence of {T + steps} positions vs "
            f"{point.phase} of {CHECK_CHUNKS} x {n} after {T}")
    return Correctness(reference=what, max_abs_err=abs_err, max_rel_err=rel, tolerance=tol,
                       passed=bool(rel <= tol and abs_err == abs_err), checked_T=T)


__all__ = ["CHECK_CHUNKS", "FLA_STREAMING", "FlaStream", "unsupported", "start", "advance", "carried_bytes", "workload", "check",
           "StreamWorkload"]
