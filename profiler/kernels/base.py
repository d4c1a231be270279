"""What a kernel is: one declarative entry per attention mechanism.

A ``KernelSpec`` says how to build deterministic inputs in the value ranges the real fla layers
produce, which backends can compute the mechanism (and where), what fp32 reference checks them, and
analytic FLOP, byte and memory models. Adding a kernel is one new entry, never another ``elif``
(flash-linear-attention's ``benchmarks/ops/registry.py`` is the model).

Conventions shared by every kernel and backend:

* Layout ``(B, T, H, D)`` as in fla; the output is ``(B, T, H, Dv)`` with ``Dv == D`` here.
* A backend is ``run(inputs, causal) -> output`` where ``inputs`` is the dict built by
  ``make_inputs``. Non-tensor parameters (scale, fixed decays) follow from the shapes.
* ``fwdbwd`` mode: the tensors named in ``grad_inputs`` get ``requires_grad``; the measured call is
  forward plus ``output.backward(grad)`` with a fixed random ``grad``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:  # keep import of this module cheap
    import torch

Inputs = Mapping[str, "torch.Tensor"]
RunFn = Callable[[Inputs, bool], "torch.Tensor"]

ALL_DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Shape:
    """Batch, sequence length, heads, head dim."""

    B: int
    T: int
    H: int
    D: int


@dataclass(frozen=True)
class Backend:
    """One way to compute a mechanism.

    ``devices``: device types it runs on. ``requires``: importable modules it needs (checked with
    ``importlib.util.find_spec``, i.e. without importing them). ``interpretable``: an fla Triton
    backend that can also run on CPU under Triton's interpreter (``profiler.measure.interpret``), for
    correctness only.
    """

    name: str
    run: RunFn
    devices: tuple[str, ...] = ("cpu", "cuda")
    requires: tuple[str, ...] = ()
    causal: tuple[bool, ...] = (True,)
    backward: bool = True
    dtypes: tuple[str, ...] = ALL_DTYPES
    interpretable: bool = False
    description: str = ""

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
                import torch

                cuda_available = torch.cuda.is_available()
            if not cuda_available:
                return False, "no CUDA device visible to torch"
        return True, "ok"


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
    extras: Mapping[str, object] = field(default_factory=dict)

    def check_shape(self, shape: Shape) -> str | None:
        """Return why this shape is invalid for the mechanism, or None."""
        if min(shape.B, shape.T, shape.H, shape.D) < 1:
            return f"B, T, H and D must be >= 1 (got B={shape.B}, T={shape.T}, H={shape.H}, D={shape.D})"
        if self.max_head_dim is not None and shape.D > self.max_head_dim:
            return f"{self.name}: head dim {shape.D} exceeds the limit of {self.max_head_dim}"
        return None


def require_causal(causal: bool, what: str) -> None:
    """Raise a ``UsageError`` for a causal-only backend asked for non-causal attention."""
    if not causal:
        from profiler.core.errors import UsageError

        raise UsageError(f"{what} is causal only (valid: causal=True)")


def forward_backward_flops(fwd: float) -> float:
    """Conventional fwd+bwd cost: the backward pass costs about twice the forward."""
    return 3.0 * fwd
