"""Longest sequence that fits on a device of a given memory size, without that device.

Methodology
-----------
*fla backends* ("dry" interpretation, FLA.md section 5b): in a fresh interpreted child process
(``profiler.kernels.interpret.run_isolated``) inside ``profiler.kernels.interpret.dry()``, every
``@triton.jit`` kernel body is skipped (autotuners keep one config so nothing is benchmarked), so
fla's host code runs on the CPU and allocates exactly the buffers it would allocate on CUDA, in the
same order. One forward (or forward+backward) call runs under torch.profiler, and the peak of the
running sum of allocation events (``profiler.measure.memory.ProfilerMemoryMeter``) is the call's
tensor-allocation peak. This is measured at a few lengths (default 1k..8k), added to the input bytes,
and fitted with ``a + b*T + c*T^2`` (``analysis.fits.fit_cost``); the fit's largest residual is
reported (fla's host allocations are exactly linear in T, so it should be ~0) and the model is solved
for the device size.

*other backends*: the kernel's analytic memory model (``KernelSpec.memory_bytes``) plus the inputs.

Not seen by either (printed with every answer): the CUDA caching allocator's block rounding and
fragmentation, Triton autotuning and cache-flush buffers, the CUDA context and library workspaces
(cuBLAS/cuDNN), and other processes on the GPU. Host code that branches on values a kernel computed
would read uninitialised memory in dry mode; fla's chunk kernels do not.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from profiler.analysis.fits import CostModel, fit_cost
from profiler.core.errors import UnavailableError, UsageError
from profiler.core.lazy import lazy_import
from profiler.kernels import MECHANISMS, get_kernel
from profiler.kernels.base import Shape
from profiler.kernels.interpret import InterpretError, dry, run_isolated
from profiler.measure.memory import ProfilerMemoryMeter
from profiler.report.text import fmt_bytes

torch = lazy_import("torch")

UNSEEN_TERMS = (
    "CUDA caching-allocator block rounding (512 B) and fragmentation",
    "Triton autotuning and cache-flush buffers",
    "CUDA context and cuBLAS/cuDNN workspaces (typically 0.3-1 GiB)",
    "other processes on the GPU",
)
PROBE_TS = (1024, 2048, 4096, 8192)
_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """'80GiB', '24GB', '16e9', '512 MiB' -> bytes (UsageError on anything else)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*", text or "")
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"--device-memory {text!r}: expected a size like 80GiB, 24GB or 16e9 "
                         f"(units: {', '.join(u for u in _UNITS if u)})")
    value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not value >= 1:
        raise UsageError(f"--device-memory {text!r} must be at least one byte")
    if not value <= 2 ** 60:   # also catches inf (1e999)
        raise UsageError(f"--device-memory {text!r} is too large (at most 2**60 bytes = 1 EiB)")
    return int(value)


@dataclass
class FrontierResult:
    kernel: str
    backend: str
    method: str                        # "fla-dry" (measured, dry interpretation) | "analytic" | "unavailable"
    max_T: float | None
    bytes_at_max_T: float | None
    note: str
    measured: list[tuple[int, int]] = field(default_factory=list)   # (T, inputs + peak bytes)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["max_T"] is not None and math.isinf(d["max_T"]):
            d["max_T"] = None
        return d

    @property
    def max_T_text(self) -> str:
        if self.max_T is None:
            return "–"
        return "unbounded" if math.isinf(self.max_T) else f"{int(self.max_T):,}"

    @property
    def bytes_text(self) -> str:
        return fmt_bytes(self.bytes_at_max_T)


# --------------------------------------------------------------------------- child process side

def _call(spec, backend, inputs, mode: str):
    if mode == "fwdbwd":
        def fn():
            out = backend.run(inputs, True)
            out = out[0] if isinstance(out, tuple) else out
            out.backward(torch.ones_like(out))
        return fn
    def fwd():
        with torch.no_grad():
            backend.run(inputs, True)
    return fwd


def _input_bytes(inputs) -> int:
    return int(sum(t.numel() * t.element_size() for t in inputs.values() if hasattr(t, "element_size")))


def _make(spec, T: int, dtype: str, B: int, H: int, D: int, mode: str):
    inputs = spec.make_inputs(Shape(B, T, H, D), dtype, "cpu", 0)
    if mode == "fwdbwd":
        for name in spec.grad_inputs:
            if name in inputs:
                inputs[name].requires_grad_(True)
    return inputs


def _probe_fla(spec, dtype, B, H, D, mode, Ts) -> list[tuple[int, int]]:
    meter = ProfilerMemoryMeter()
    backend = spec.backends["fla"]
    out = []
    for T in Ts:
        inputs = _make(spec, T, dtype, B, H, D, mode)
        reading = meter.measure(_call(spec, backend, inputs, mode))
        out.append((T, _input_bytes(inputs) + int(reading.peak_bytes or 0)))
    return out


def probe_child(**args) -> list[dict]:
    """Runs in the interpreted child (``run_isolated``): everything inside ``fla_interpret.dry()``."""
    warnings.filterwarnings("ignore")
    with dry():
        return _child(args)


def _child(args: dict) -> list[dict]:
    """Measure fla backends dry, model the others (call inside ``dry()`` in an interpreted process)."""
    names = args["kernels"] or list(MECHANISMS)
    unknown = [n for n in names if n not in MECHANISMS]
    if unknown:
        return [{"error": f"unknown kernel {unknown[0]!r}; valid: {', '.join(MECHANISMS)}"}]
    reg = {}
    results: list[FrontierResult] = []
    for n in names:
        try:
            reg[n] = get_kernel(n)
        except (ImportError, AttributeError, UsageError) as exc:
            results.append(FrontierResult(n, "-", "unavailable", None, None, f"cannot load kernel: {exc}"))
    mem, dtype, B, H, D, mode = (args[k] for k in ("mem", "dtype", "B", "H", "D", "mode"))
    itemsize = {"float32": 4, "float16": 2, "bfloat16": 2}[dtype]
    for name, spec in reg.items():
        for bname, backend in spec.backends.items():
            if bname == "fla":
                try:
                    pts = _probe_fla(spec, dtype, B, H, D, mode, args["Ts"])
                except Exception as exc:  # a failed probe is a result, not a crash of the command
                    results.append(FrontierResult(name, bname, "unavailable", None, None,
                                                  f"dry probe failed: {type(exc).__name__}: {str(exc)[:200]}"))
                    continue
                model = _exact_linear(pts) or fit_cost([t for t, _ in pts], [b for _, b in pts])
                tmax = math.floor(model.solve(mem)) if model else None
                results.append(FrontierResult(
                    name, bname, "fla-dry", tmax,
                    model.predict(tmax) if model and tmax is not None and math.isfinite(tmax) else None,
                    f"measured at T={pts[0][0]}..{pts[-1][0]}, max fit residual "
                    f"{(model.max_rel_residual if model else math.nan) * 100:.2f}%", pts))
            elif bname in (spec.default_backend, "naive") and "cuda" in backend.devices:
                shape_in = [_input_bytes(_make(spec, T, dtype, B, H, D, "fwd")) for T in (1024, 2048)]
                per_T = (shape_in[1] - shape_in[0]) / 1024.0
                const = shape_in[0] - per_T * 1024

                def total(T: int) -> float:
                    return const + per_T * T + spec.memory_bytes(Shape(B, T, H, D), itemsize, bname, True, mode)

                tmax = _bisect(total, mem)
                results.append(FrontierResult(name, bname, "analytic", tmax,
                                              total(int(tmax)) if tmax and math.isfinite(tmax) else None,
                                              "kernel's analytic memory model + inputs (causal)"))
    return [r.to_dict() for r in results]


def _exact_linear(pts: list[tuple[int, int]]):
    """``a + b*T`` through the points when they are linear to 1e-6 (fla's host allocations are), else None."""
    T = np.array([t for t, _ in pts], float)
    y = np.array([b for _, b in pts], float)
    (b, a), *_ = np.linalg.lstsq(np.stack([T, np.ones_like(T)], 1), y, rcond=None)
    resid = float(np.max(np.abs((a + b * T) / y - 1)))
    if a < 0 or b <= 0 or resid > 1e-6:
        return None
    return CostModel(float(a), float(b), 0.0, int(T.min()), int(T.max()), resid)


def _bisect(total, mem: float, hi_limit: int = 1 << 34) -> float:
    """Largest integer T >= 1 with total(T) <= mem (0 if even T=1 does not fit)."""
    if total(1) > mem:
        return 0
    lo, hi = 1, 2
    while total(hi) <= mem:
        lo, hi = hi, hi * 2
        if hi > hi_limit:
            return math.inf
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if total(mid) <= mem else (lo, mid)
    return lo


# --------------------------------------------------------------------------- parent side

def probe_frontier(device_memory_bytes: int, *, kernels: list[str] | None = None, dtype: str = "bfloat16",
                   B: int = 1, H: int = 4, D: int = 64, mode: str = "fwd",
                   Ts: tuple[int, ...] = PROBE_TS, timeout_s: float = 900.0) -> list[FrontierResult]:
    """Run the probe in a fresh interpreted child process (``fla_interpret.run_isolated``: Triton's
    interpreter must be on before fla decorates its kernels); UnavailableError if the child fails."""
    if dtype not in ("float32", "float16", "bfloat16"):
        raise UsageError(f"--dtype {dtype!r}: valid: bfloat16, float16, float32")
    if mode not in ("fwd", "fwdbwd"):
        raise UsageError(f"--mode {mode!r}: valid: fwd, fwdbwd")
    if min(B, H, D) < 1:
        raise UsageError("--batch, --heads and --head-dim must be >= 1")
    args = {"mem": device_memory_bytes, "kernels": kernels, "dtype": dtype, "B": B, "H": H, "D": D,
            "mode": mode, "Ts": list(Ts)}

    try:
        rows = run_isolated("profiler.probes.frontier:probe_child", args, timeout_s=timeout_s)
    except InterpretError as exc:
        tail = (str(exc).strip().splitlines() or ["no output"])[-1]
        raise UnavailableError(f"frontier probe failed: {tail}") from None
    if rows and "error" in rows[0]:
        raise UsageError(rows[0]["error"])
    out = []
    for r in rows:
        r["measured"] = [tuple(x) for x in r.get("measured", [])]
        if r["max_T"] is None and r["method"] != "unavailable":
            r["max_T"] = math.inf
        out.append(FrontierResult(**r))
    return out

