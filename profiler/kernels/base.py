"""What is measured: the measurable-entry protocol, and a kernel as one declarative entry.

**The protocol.** Kernels, the study's seq2seq layers and the SER head are all *entries*
(``Entry``): a planning side (``backends`` and where they run, ``check_shape`` constraints,
``analytic`` FLOP / byte / memory models, ``input_bytes``, ``reference_name``) and a measuring side
(``build(point, device, seed) -> Workload``: the call, an optional reset, its inputs;
``verify(point, device, seed, max_T) -> [Correctness]``). ``profiler.planning.registry`` finds the entry
of a point's level; ``profiler.measure.point.measure_point`` is the one pipeline that turns any
point into a record, so a new meter or timing is added there once.

**A kernel** (``KernelSpec``) is one entry per mechanism.

A ``KernelSpec`` says how to build deterministic inputs in the value ranges the real fla layers
produce, which backends can compute the mechanism (and where), what fp32 reference checks them, and
analytic FLOP, byte and memory models. Adding a kernel is one new entry, never another ``elif``
(flash-linear-attention's ``benchmarks/ops/registry.py`` is the model).

Conventions shared by every kernel and backend:

* Layout as in fla: q ``(B, T, H, D)``, k ``(B, T, Hkv, D)``, v ``(B, T, Hkv, Dv)``, output
  ``(B, T, H, Dv)`` (``Shape``: ``Hkv == H`` and ``Dv == D`` unless the point sets ``kv_heads`` /
  ``value_dim``). Query head h reads key/value head ``h // (H / Hkv)`` (SDPA's ``enable_gqa`` order).
  A sliding window reaches the backend as the python int ``inputs["window"]``.
* A backend is ``run(inputs, causal) -> output`` where ``inputs`` is the dict built by
  ``make_inputs``. Non-tensor parameters (scale, fixed decays) follow from the shapes.
* ``fwdbwd`` mode: the tensors named in ``grad_inputs`` get ``requires_grad``; the measured call is
  forward plus ``output.backward(grad)`` with a fixed random ``grad``.
* ``bwd`` mode: the forward runs once, untimed, when the workload is built; the measured call is
  ``output.backward(grad, retain_graph=True)`` alone (the saved tensors stay alive, so every
  repetition runs the same backward), the reset clears the gradients outside timing.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

from profiler.core import counting
from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.core.records import HeadDims
from profiler.kernels import interpret
from profiler.kernels.verify import verify_against_backend

torch = lazy_import("torch")
varlen = lazy_import("profiler.kernels.varlen")   # packed variable-length points (imports this module)

if TYPE_CHECKING:  # keep import of this module cheap
    import torch

    from profiler.core.records import Correctness, PointSpec

Inputs = Mapping[str, "torch.Tensor"]
RunFn = Callable[[Inputs, bool], "torch.Tensor"]

ALL_DTYPES = ("float32", "float16", "bfloat16")
#: How the report groups mechanisms (``KernelSpec.group``), in display order.
GROUPS = ("softmax", "linear+decay", "gated", "delta-rule", "sparse", "other")


@dataclass(frozen=True)
class Shape(HeadDims):
    """Batch, sequence length, query heads, head dim; and the optional shape axes (0 = default):
    ``kv_heads`` key/value heads (GQA/MQA, dividing H), ``value_dim`` (Dv), causal sliding ``window``."""

    B: int
    T: int
    H: int
    D: int
    kv_heads: int = 0
    value_dim: int = 0
    window: int = 0

    @property
    def group(self) -> int:
        """Query heads per key/value head."""
        return self.H // self.Hkv

    @classmethod
    def of(cls, point: Any, **kw: int) -> "Shape":
        """The shape of a ``PointSpec`` (``kw`` replaces fields, e.g. ``T=``)."""
        vals = dict(B=point.B, T=point.T, H=point.H, D=point.D, kv_heads=getattr(point, "kv_heads", 0),
                    value_dim=getattr(point, "value_dim", 0), window=getattr(point, "window", 0))
        vals.update(kw)
        return cls(**vals)

    def counting(self, causal: bool) -> Any:
        """The same shape as ``profiler.core.counting.AttnShape`` (the FLOP/byte formulas)."""
        return counting.AttnShape(self.B, self.T, self.H, self.D, kv_heads=self.Hkv, Dv=self.Dv, causal=causal,
                         window=self.window or None)


@dataclass(frozen=True)
class Backend:
    """One way to compute a mechanism.

    ``devices``: device types it runs on. ``requires``: importable modules it needs (checked with
    ``importlib.util.find_spec``, i.e. without importing them). ``interpretable``: an fla Triton
    backend that can also run on CPU under Triton's interpreter (``profiler.kernels.interpret``), for
    correctness only.
    """

    name: str
    run: RunFn | None = None                     # None for entries whose ``build`` makes the call (layers)
    devices: tuple[str, ...] = ("cpu", "cuda")
    requires: tuple[str, ...] = ()
    causal: tuple[bool, ...] = (True,)
    backward: bool = True
    dtypes: tuple[str, ...] = ALL_DTYPES
    interpretable: bool = False
    description: str = ""
    backward_devices: tuple[str, ...] = ()       # non-empty: the backward runs on these device types only
    # packed variable-length batches (``profiler.kernels.varlen``): "cu_seqlens" = ``run`` reads
    # ``inputs["cu_seqlens"]`` and resets at each boundary; "per_sequence" = serprof calls ``run`` once per
    # sequence; "" = no packed path (varlen points of this backend are dropped with the reason)
    varlen: str = ""

    def has_backward(self, device: str) -> bool:
        """Whether fwd+bwd can run on device type ``device`` ('cpu' / 'cuda'; an index is ignored)."""
        return self.backward and (not self.backward_devices or device.split(":")[0] in self.backward_devices)

    def availability(self, device: str, *, interpret: bool = False, cuda_available: bool | None = None) -> tuple[bool, str]:
        """``(available, reason)`` for a device type ('cpu' or 'cuda')."""
        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:
                return False, f"python package {mod!r} is not installed"
        if device == "cpu" and interpret:
            if self.interpretable:
                return True, "Triton interpreter on CPU (correctness only; timings are not performance)"
            return False, "this backend has no interpreted mode"
        if device not in self.devices:
            needs = " or ".join(self.devices)
            extra = " (or --interpret on CPU for correctness only)" if self.interpretable else ""
            return False, f"needs a {needs} device{extra}"
        if device == "cuda":
            if cuda_available is None:
                cuda_available = torch.cuda.is_available()
            if not cuda_available:
                return False, "no CUDA device visible to torch"
        return True, "ok"


@dataclass
class Workload:
    """What one point measures, built outside every timed region.

    ``call()`` runs the measured thing once (forward under ``no_grad``, or forward + backward);
    ``reset()`` (or None) runs between calls, outside timing (fwd+bwd: clears gradients);
    ``inputs`` are the tensors the call reads (their bytes are stored with the memory reading);
    ``extra`` goes to ``PointRecord.extra``. ``replay`` (or None) replaces fixed-shape timing for
    points that time a sequence of differently sized calls (the SER utterance replay):
    ``replay(device, settings, memory_meter) -> (Timing, peak bytes or None, extra)``.
    """

    call: Callable[[], Any]
    reset: Callable[[], None] | None = None
    inputs: Mapping[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    replay: Callable[..., tuple] | None = None

    def call_with_reset(self) -> None:
        if self.reset is not None:
            self.reset()
        self.call()

    @property
    def input_bytes(self) -> int:
        """Bytes of the tensors among ``inputs`` (non-tensor parameters ignored)."""
        total = 0
        for v in self.inputs.values():
            nbytes = getattr(v, "nbytes", None)
            if isinstance(nbytes, int) and hasattr(v, "dtype"):
                total += nbytes
        return total


@dataclass(frozen=True)
class Analytic:
    """Analytic models of one point: FLOPs and minimum DRAM bytes per call, working bytes above inputs."""

    flops: float | None
    bytes_moved: float | None
    memory_bytes: int | None


class Entry(Protocol):
    """A measurable entry (see module doc); ``KernelSpec`` and ``profiler.layers.entry.LayerEntry``."""

    name: str
    title: str
    family: str
    level: str
    backends: Mapping[str, Backend]
    default_backend: str
    reference_name: str
    description: str
    bidirectional: bool

    def check_shape(self, shape: Shape) -> str | None: ...
    def backend_limit(self, backend: str, shape: Shape) -> str | None: ...
    def memory_bytes(self, shape: Shape, itemsize: int, backend: str, causal: bool, mode: str) -> int: ...
    def input_bytes(self, shape: Shape, itemsize: int, mode: str) -> int: ...
    def analytic(self, point: PointSpec, itemsize: int) -> Analytic: ...
    def build(self, point: PointSpec, device: str, seed: int) -> Workload: ...
    def verify(self, point: PointSpec, device: str, seed: int, max_T: int | None,
               oracles: Sequence[str | None] = (None,)) -> list[Correctness]: ...


@dataclass(frozen=True)
class KernelSpec:
    """A mechanism: inputs, backends, reference, analytic models and constraints."""

    name: str
    title: str
    family: str                                  # "quadratic" | "linear"
    make_inputs: Callable[..., dict]             # (shape, dtype, device, seed) -> dict[str, Tensor]
    backends: Mapping[str, Backend]
    reference: RunFn                             # fp32 oracle (fla naive, or an independent slow form)
    reference_name: str
    flops: Callable[[Shape, bool], float]        # forward FLOPs per call (causal flag)
    bytes_moved: Callable[[Shape, int, bool], float]   # (shape, itemsize, causal) -> minimum DRAM bytes
    memory_bytes: Callable[[Shape, int, str, bool, str], int]  # (shape, itemsize, backend, causal, mode) -> peak bytes above inputs
    grad_inputs: tuple[str, ...] = ("q", "k", "v")
    max_head_dim: int | None = None
    reference_max_T: int | None = None           # the reference is too slow/large beyond this (None: any)
    reference_causal_prefix: bool = True         # causal: compare a T-prefix when T > reference_max_T
    description: str = ""
    default_backend: str = "torch"
    backend_max_head_dim: Mapping[str, int] = field(default_factory=dict)   # per-backend head-dim limits
    notes: Mapping[str, str] = field(default_factory=dict)                # documentation only
    # decode / streaming: ``recurrent.LinearForm`` (carried state) or ``recurrent.CacheForm`` (KV cache);
    # None: no recurrent form, such points are dropped with the reason
    recurrent: Any = None
    # report grouping (``GROUPS``): softmax / linear+decay / gated / delta-rule / sparse / other
    group: str = "other"
    # shape axes the mechanism takes (``SHAPE_AXES``: kv_heads, value_dim, window); a backend may
    # take fewer (``backend_axes``); a point asking for another one is dropped with the reason
    shape_axes: tuple[str, ...] = ()
    backend_axes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # (shape, causal, mode, itemsize) -> (FLOPs, minimum bytes) through ``profiler.core.counting``;
    # None: the forward models ``flops`` / ``bytes_moved`` (x3 for fwdbwd, x2 for bwd, no bytes)
    count: Callable[[Shape, bool, str, int], tuple[float, float]] | None = None
    # the FLOP and byte formulas of ``count`` in words (``counting.FORMULAS``), stored in each record's
    # ``extra`` (``flops_formula``, ``bytes_formula``) so the report writes them next to the rates
    formulas: tuple[str, str] = ("", "")
    # backend -> axis -> how the backend takes it (recorded in ``extra``); default for kv_heads: repeat
    axis_impl: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    level = "kernel"
    bidirectional = False

    def check_shape(self, shape: Shape) -> str | None:
        """Return why this shape is invalid for the mechanism, or None."""
        if min(shape.B, shape.T, shape.H, shape.D) < 1:
            return f"B, T, H and D must be >= 1 (got B={shape.B}, T={shape.T}, H={shape.H}, D={shape.D})"
        if self.max_head_dim is not None and shape.D > self.max_head_dim:
            return f"{self.name}: head dim {shape.D} exceeds the limit of {self.max_head_dim}"
        return None

    def backend_limit(self, backend: str, shape: Shape) -> str | None:
        """Why ``backend`` cannot run ``shape`` although the mechanism can, or None."""
        limit = self.backend_max_head_dim.get(backend)
        if limit is not None and shape.D > limit:
            return f"{self.name}/{backend}: head dim {shape.D} exceeds the backend's limit of {limit}"
        return None

    def axis_unsupported(self, backend: str, shape: Shape) -> str | None:
        """Why ``backend`` cannot take the shape axes of ``shape`` (kv heads, value dim, window), or None."""
        takes = self.backend_axes.get(backend, self.shape_axes)
        for axis, value, flag in (("kv_heads", shape.kv_heads, "--kv-heads"), ("value_dim", shape.value_dim, "--value-dim"),
                                  ("window", shape.window, "--window")):
            if value and axis not in takes:
                who = self.name if axis not in self.shape_axes else f"{self.name}/{backend}"
                return f"{who} cannot take {flag} (valid for: {', '.join(self.shape_axes) or 'no shape axis'})"
        return None

    def input_bytes(self, shape: Shape, itemsize: int, mode: str) -> int:
        """Bytes of q (H heads), k (Hkv, D), v (Hkv, Dv) and the output (H, Dv); and their gradients
        in fwd+bwd and bwd."""
        per_token = shape.H * shape.D + shape.Hkv * (shape.D + shape.Dv) + shape.H * shape.Dv
        return shape.B * shape.T * per_token * itemsize * (2 if mode in ("fwdbwd", "bwd") else 1)

    def analytic(self, point: PointSpec, itemsize: int) -> Analytic:
        """FLOPs and minimum bytes from ``count`` (``profiler.core.counting``: causality, window, GQA,
        Dv, the mode's factor); else the forward models (x3 fwd+bwd, x2 bwd, bytes forward only);
        working memory from ``memory_bytes``."""
        if point.phase != "prefill":   # decode / streaming (``profiler.kernels.recurrent``)
            return self.recurrent.analytic(self, point, itemsize)
        if point.option("varlen"):
            return varlen.analytic(self, point, itemsize)
        shape = Shape.of(point)
        if self.count is not None:
            flops, moved_n = self.count(shape, point.causal, point.mode, itemsize)
            moved: float | None = float(moved_n)
        else:
            flops = float(self.flops(shape, point.causal))
            moved = float(self.bytes_moved(shape, itemsize, point.causal))
            if point.mode in ("fwdbwd", "bwd"):
                flops, moved = forward_backward_flops(flops) * (2 / 3 if point.mode == "bwd" else 1), None
        mem = int(self.memory_bytes(shape, itemsize, point.backend, point.causal, point.mode))
        return Analytic(float(flops), moved, mem)

    def axis_extra(self, point: PointSpec) -> dict[str, str]:
        """``{kv_heads_impl, value_dim_impl, window_impl}`` for the point's non-default shape axes: how
        its backend takes them (``axis_impl``; GQA defaults to k, v repeated per query head); and the
        counting formulas (``formulas``)."""
        impl = self.axis_impl.get(point.backend, {})
        out = {}
        if self.count is not None and all(self.formulas):
            out["flops_formula"], out["bytes_formula"] = self.formulas
        for axis in SHAPE_AXES:
            if getattr(point, axis, 0):
                default = "k, v repeated per query head" if axis == "kv_heads" else "native"
                out[f"{axis}_impl"] = impl.get(axis, default)
        return out

    def inputs_for(self, point: PointSpec, device: str, seed: int) -> dict:
        """``make_inputs`` for the point's shape, with ``inputs["window"]`` when it has a window."""
        inputs = self.make_inputs(Shape.of(point), getattr(torch, point.dtype), device, seed)
        if point.window:
            inputs["window"] = int(point.window)
        return inputs

    def build(self, point: PointSpec, device: str, seed: int) -> Workload:
        """Inputs from ``make_inputs`` and the point's call (``fwd``: under ``no_grad``; ``fwdbwd``: the
        tensors in ``grad_inputs`` become leaves requiring grad, the output gradient is drawn once,
        on the first call, from a generator seeded with ``seed + 1``; ``reset`` clears the gradients)."""
        if point.phase != "prefill":
            return self.recurrent.build(self, point, device, seed)
        extra: dict[str, Any] = self.axis_extra(point)
        if point.option("varlen"):   # a packed (or padded) batch of variable-length sequences
            pack = varlen.packing(point)
            inputs = varlen.make_inputs(self, point, device, seed, pack)
            run = varlen.runner(self, point.backend, point, pack)
            extra = {**extra, "varlen": varlen.extra(self, point, pack)}
        else:
            inputs = self.inputs_for(point, device, seed)
            run = self.backends[point.backend].run
        causal = point.causal
        if point.mode == "fwd":
            def call_fwd() -> None:
                with torch.no_grad():
                    run(inputs, causal)

            return Workload(call_fwd, None, inputs, extra)
        leaves = []
        for name in self.grad_inputs:
            t = inputs[name]
            if t.is_floating_point():
                t.requires_grad_(True)
                leaves.append(t)
        state: dict[str, Any] = {}

        def grad_like(out):
            gen = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
            return torch.randn(out.shape, generator=gen, dtype=torch.float32).to(device=out.device, dtype=out.dtype)

        def reset() -> None:
            for t in leaves:
                t.grad = None

        if point.mode == "bwd":   # the forward once, untimed; each call is the backward alone
            out = run(inputs, causal)
            g = grad_like(out)

            def call_bwd() -> None:
                out.backward(g, retain_graph=True)

            return Workload(call_bwd, reset, inputs, extra={**extra,
                                                             "bwd": "forward untimed; backward(retain_graph=True) timed"})

        def call_fwdbwd() -> None:
            out = run(inputs, causal)
            g = state.get("grad")
            if g is None:
                g = state["grad"] = grad_like(out)
            out.backward(g)

        return Workload(call_fwdbwd, reset, inputs, extra)

    def verify(self, point: PointSpec, device: str, seed: int, max_T: int | None,
               oracles: Sequence[str | None] = (None,)) -> list[Correctness]:
        """The backend against the reference (and other backends in ``oracles``): ``kernels.verify``."""
        if point.phase != "prefill":
            if point.interpret:
                interpret.enable()
            return [self.recurrent.check(self, point, device, seed, max_T)]
        if point.option("varlen"):
            return [varlen.check(self, point, device, seed, max_T)]

        return verify_against_backend(self, point.backend, Shape.of(point), point.dtype,
                             device, point.causal, point.mode, seed, max_T, interpret=point.interpret,
                             oracles=oracles)


def require_causal(causal: bool, what: str) -> None:
    """Raise a ``UsageError`` for a causal-only backend asked for non-causal attention."""
    if not causal:
        raise UsageError(f"{what} is causal only (valid: causal=True)")


#: The shape axes a kernel may take (``KernelSpec.shape_axes``), as ``PointSpec`` fields.
SHAPE_AXES = ("kv_heads", "value_dim", "window")


def expand_kv(x, H: int):
    """(B, T, Hkv, ...) -> (B, T, H, ...): key/value head ``j`` serves query heads ``j*G .. j*G+G-1``
    (``repeat_interleave``, SDPA ``enable_gqa``'s order); a no-op when ``Hkv == H``."""
    Hkv = x.shape[2]
    return x if Hkv == H else x.repeat_interleave(H // Hkv, dim=2)


def forward_backward_flops(fwd: float) -> float:
    """Conventional fwd+bwd cost: the backward pass costs about twice the forward."""
    return 3.0 * fwd
