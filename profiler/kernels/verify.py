"""Correctness of a kernel backend against its reference (``KernelSpec.verify``; ``profiler.measure.verify``
runs it for the sweep's per-point check and for ``serprof verify``).

Method (``verify_point_against_reference``)
    1. Build the kernel's inputs (``make_inputs(shape, dtype, device, seed)``) unless given.
    2. Run the backend on them. Mode ``fwdbwd``: the tensors in ``grad_inputs`` require grad and
       ``out.backward(dO)`` runs with a fixed random ``dO`` (seed + 1); ``bwd`` is checked the same way.
    3. Run the oracle (the kernel's ``reference``, or another backend with ``against=``) on the same
       inputs cast to fp32, with autograd for the gradients.
    4. Relative error = ``max|out - ref| / max|ref|`` (forward), and the same per gradient
       (``grad_max_rel_err`` is the largest over the inputs; a gradient whose reference is (near)
       zero is scaled by ``GRAD_SCALE_FLOOR`` of the largest reference gradient); non-finite values
       count as infinite.
       ``passed`` = both within the tolerance of the dtype (``TOLERANCES``).

Long sequences: the oracles are quadratic or token loops, so above ``max_T`` (default: the
kernel's ``reference_max_T``) only a part is compared, exactly:
    * causal: the oracle sees the first ``max_T`` tokens of every time-indexed input and is compared
      with the backend's first ``max_T`` output rows (a causal output prefix depends only on the input
      prefix); ``dO`` is zero beyond the prefix, so the backend's gradients beyond it are zero and
      its prefix gradients are the oracle's.
    * non-causal: the oracle sees the first ``m = clamp(max_T**2 // T, 64, max_T)`` queries and all
      keys (a reference of a non-causal kernel must accept fewer queries than keys); rows and ``dq``
      are compared on the prefix, ``dk``/``dv``/gates in full.
``Correctness.checked_T`` records the number of rows compared.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from profiler.core.errors import UnavailableError, UsageError, did_you_mean
from profiler.core.lazy import lazy_import
from profiler.core.records import DTYPES, MODES, Correctness
from profiler.kernels import interpret as fla_interpret
from profiler.kernels.interpret import BF16_REASON, INTERPRETABLE_DTYPES
from profiler.kernels.origins import label

torch = lazy_import("torch")

if TYPE_CHECKING:
    from profiler.kernels.base import KernelSpec, Shape

#: Largest accepted max relative error (forward and every gradient) per dtype.
#: fp32: the targets of the study; fp16/bf16: a few units of the format's rounding (2^-11, 2^-8)
#: accumulated over softmax / chunk sums.
TOLERANCES: dict[str, float] = {"float32": 1e-5, "float16": 5e-3, "bfloat16": 3e-2}
#: Triton kernels on CUDA run fp32 ``tl.dot`` in TF32 (10-bit mantissa) by default: fp16-class error.
TF32_TOLERANCE = 5e-3
#: A gradient that is (near) zero in the reference, e.g. dq and dk at T = 1 where the softmax is
#: constant and the backend returns rounding noise from p * (dP - rowsum(dO * O)), is compared on
#: 10% of the largest reference gradient's scale instead of its own (tiny) one.
GRAD_SCALE_FLOOR = 0.1


def tolerance_for(dtype: str, backend_requires: Sequence[str] = (), device: str = "cpu") -> float:
    """The tolerance row that applies to a backend's output in ``dtype`` on ``device``."""
    if dtype == "float32" and "triton" in backend_requires and device.startswith("cuda"):
        return TF32_TOLERANCE
    return TOLERANCES[dtype]


def _rel(out, ref, floor: float = 0.0) -> tuple[float, float]:
    """(max abs error, max abs error / max(max |ref|, floor)) in float64; non-finite -> inf."""
    if out.shape != ref.shape:
        raise ValueError(f"backend output shape {tuple(out.shape)} != reference shape {tuple(ref.shape)}")
    if out.numel() == 0:
        return 0.0, 0.0
    a, b = out.detach().double(), ref.detach().double()
    if not bool(torch.isfinite(a).all()) or not bool(torch.isfinite(b).all()):
        return math.inf, math.inf
    err = float((a - b).abs().max())
    scale = max(float(b.abs().max()), floor)
    if scale == 0.0:
        return err, (0.0 if err == 0.0 else math.inf)
    return err, err / scale


def _time_indexed(t, B: int, T: int) -> bool:
    return getattr(t, "dim", lambda: 0)() >= 2 and t.shape[0] == B and t.shape[1] == T


class KernelContractError(RuntimeError):
    """A kernel breaks the ``KernelSpec`` contract (output shape/dtype, a reference that raises); the
    message is one line naming the kernel and, for a plugin, where it comes from."""


def _label(spec: KernelSpec) -> str:
    return label(spec)


def _check_output(spec: KernelSpec, backend: str, out, shape: Shape, dtype: str) -> None:
    """The backend returned a tensor of shape (B, T, H, Dv) in the inputs' dtype."""
    where = f"{_label(spec)}, backend {backend!r}"
    if not torch.is_tensor(out):
        raise KernelContractError(f"{where}: run returned {type(out).__name__}, expected a tensor (B, T, H, Dv)")
    if out.dim() != 4 or tuple(out.shape[:3]) != (shape.B, shape.T, shape.H) or (
            shape.value_dim and out.shape[3] != shape.Dv):
        raise KernelContractError(f"{where}: output shape {tuple(out.shape)}, expected "
                                  f"({shape.B}, {shape.T}, {shape.H}, Dv)")
    if out.dtype != getattr(torch, dtype):
        raise KernelContractError(f"{where}: output dtype {out.dtype}, expected torch.{dtype} (the inputs' dtype)")


def _run_oracle(spec: KernelSpec, oracle, against: str | None, rx, causal: bool):
    if against is not None:
        return oracle(rx, causal)
    try:
        return oracle(rx, causal)
    except Exception as exc:  # noqa: BLE001 - a reference that fails is the kernel's fault, named as such
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise KernelContractError(f"{_label(spec)}: reference raised {type(exc).__name__}: {first}") from None


def _validate(spec: KernelSpec, backend: str, shape: Shape, dtype: str, device: str, causal: bool, mode: str,
              interpret: bool):
    kernel = spec.name
    if backend not in spec.backends:
        raise UsageError(f"kernel {kernel!r} has no backend {backend!r}; {did_you_mean(backend, spec.backends)}")
    b = spec.backends[backend]
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; {did_you_mean(dtype, DTYPES)}")
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}; {did_you_mean(mode, MODES)}")
    why = spec.check_shape(shape)
    if why:
        raise UsageError(why)
    why = spec.backend_limit(backend, shape) or spec.axis_unsupported(backend, shape)
    if why:
        raise UsageError(why)
    if causal not in b.causal:
        kind = "causal" if causal else "non-causal"
        raise UsageError(f"{kernel}/{backend} has no {kind} mode (supported: "
                         f"{', '.join('causal' if c else 'non-causal' for c in b.causal)})")
    if dtype not in b.dtypes:
        raise UsageError(f"{kernel}/{backend} does not support {dtype}; valid: {', '.join(b.dtypes)}")
    if mode in ("fwdbwd", "bwd") and not b.has_backward(device):
        on = "" if not b.backward else f" on {device.split(':')[0]}"
        raise UsageError(f"{kernel}/{backend} has no backward pass{on}; use --mode fwd")
    if interpret:
        if dtype not in INTERPRETABLE_DTYPES:
            raise UsageError(BF16_REASON)
    ok, reason = b.availability(device.split(":")[0], interpret=interpret)
    if not ok:
        raise UnavailableError(f"{kernel}/{backend} is unavailable on {device.split(':')[0]}: {reason}")
    return spec, b


def verify_point_against_reference(spec: KernelSpec, backend: str, shape: Shape, dtype: str, device: str, causal: bool, mode: str,
                seed: int = 0, max_T: int | None = None, *, inputs=None, interpret: bool = False,
                against: str | None = None) -> Correctness:
    """Compare one backend with the kernel's reference (or backend ``against``) on the same inputs.

    ``device`` may carry an index (``cuda:1``). ``interpret``: run on CPU under Triton's interpreter
    (enters interpret mode; see ``profiler.kernels.interpret``). Raises ``UsageError`` for an invalid
    combination and ``UnavailableError`` when the backend cannot run here; a backend that fails
    raises its own exception, one that disagrees yields ``passed=False``.
    """
    return verify_against_backend(spec, backend, shape, dtype, device, causal, mode, seed, max_T, inputs=inputs,
                         interpret=interpret, oracles=(against,))[0]


def verify_against_backend(spec: KernelSpec, backend: str, shape: Shape, dtype: str, device: str, causal: bool, mode: str,
                  seed: int = 0, max_T: int | None = None, *, inputs=None, interpret: bool = False,
                  oracles: Sequence[str | None] = (None,)) -> list[Correctness]:
    """``verify_point_against_reference`` for several oracles at once (None: the reference; a name: that backend in
    fp32), running the backend under test only once. One ``Correctness`` per oracle, in order."""
    kernel = spec.name
    spec, b = _validate(spec, backend, shape, dtype, device, causal, mode, interpret)
    if interpret:
        fla_interpret.enable()

    if inputs is None:
        inputs = spec.make_inputs(shape, dtype, device, seed)
        if shape.window:
            inputs["window"] = int(shape.window)
    B, T = shape.B, shape.T
    limit = max_T if max_T is not None else spec.reference_max_T
    m = T if limit is None or T <= limit else int(limit)
    if m < T and not causal:
        m = int(min(limit, max(64, limit * limit // T), T))
    prefix_all = m < T and causal

    grads = [n for n in spec.grad_inputs
             if mode in ("fwdbwd", "bwd") and n in inputs and torch.is_tensor(inputs[n]) and inputs[n].is_floating_point()]

    # --- the backend under test
    x = {n: (t.detach().requires_grad_(True) if n in grads else t) for n, t in inputs.items()}
    with torch.enable_grad() if grads else torch.no_grad():
        out = b.run(x, causal)
        _check_output(spec, backend, out, shape, dtype)
        dO = None
        if grads:
            gen = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
            dO = torch.randn(out.shape, generator=gen, dtype=torch.float32).to(out.device, out.dtype)
            if m < T:
                dO[:, m:] = 0
            out.backward(dO)
    got_grads = {n: x[n].grad for n in grads}
    tol = tolerance_for(dtype, b.requires, device)

    def cut(n, t):
        if not torch.is_tensor(t):
            return t, False
        t = t.detach()
        t = t.float() if t.is_floating_point() else t
        if m < T and _time_indexed(t, B, T) and (prefix_all or n == "q"):
            return t[:, :m].contiguous(), True
        return t, False

    results = []
    for against in oracles:
        if against is None:
            oracle, oracle_name = spec.reference, spec.reference_name
        else:
            if m < T and not causal:
                raise UsageError("comparing two backends on a long non-causal T is not supported; raise max_T")
            oracle = _validate(spec, against, shape, "float32", device, causal, "fwd", False)[1].run
            oracle_name = f"{kernel}/{against} backend in fp32"
        # the oracle, on the same values in fp32 (time-sliced beyond max_T)
        rx, sliced = {}, {}
        for n, t in inputs.items():
            rx[n], sliced[n] = cut(n, t)
            if n in grads:
                rx[n].requires_grad_(True)
        with torch.enable_grad() if grads else torch.no_grad():
            ref = _run_oracle(spec, oracle, against, rx, causal)
            if grads:
                ref.backward(dO[:, :m].to(ref.device, ref.dtype))  # the same (rounded) values

        abs_err, rel_err = _rel(out[:, :m].float(), ref.float())
        grad_rel = None
        if grads:
            grad_rel = 0.0
            pairs = []
            for n in grads:
                g, rg = got_grads[n], rx[n].grad
                if g is None and rg is None:
                    continue
                # autograd leaves .grad None for an input that never reached the output (RWKV6's decay at
                # T=1): its gradient is exactly zero
                if rg is None:
                    rg = torch.zeros_like(rx[n], dtype=torch.float32)
                if g is None:
                    g = torch.zeros_like(rg)
                    sliced = {**sliced, n: False}
                pairs.append((g[:, :m] if sliced[n] else g, rg))
            floor = GRAD_SCALE_FLOOR * max((float(rg.detach().abs().max()) for _, rg in pairs if rg.numel()), default=0.0)
            for g, rg in pairs:
                grad_rel = max(grad_rel, _rel(g.float(), rg.float(), floor)[1])
        passed = rel_err <= tol and (grad_rel is None or grad_rel <= tol)
        results.append(Correctness(reference=oracle_name, max_abs_err=abs_err, max_rel_err=rel_err, tolerance=tol,
                                   passed=bool(passed), checked_T=m, grad_max_rel_err=grad_rel))
    return results
