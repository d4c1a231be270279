"""Expand a ``SweepSpec`` into an ordered list of points, each with a memory estimate.

Rules:

* Every combination kernel x backend x dtype x mode x H x D x kv heads x Dv x window x causal x B x T
  becomes a ``PointSpec``
  (its ``id`` is stable: it keys storage, resume and baselines). Duplicates collapse.
* Combinations that cannot run are *dropped* with a reason, never silently: an fla backend on CPU
  without ``--interpret``, non-causal on a causal-only backend, a head dim over the kernel's limit,
  a dtype the backend does not support, fwdbwd on a forward-only backend, a missing package, a
  packed utterance replay (``packing``) on a backend without a varlen path or at batch 1, a
  kernel-level packed varlen point (``--varlen``) on a backend without ``Backend.varlen``, or non-causal,
  a shape axis (kv heads, value dim, window) the kernel or backend cannot take, a window longer than T
  or not causal, bwd on a backend without a backward or above the kernel level.
  A ``packing`` that can yield no packed point at all is a ``UsageError``
  (``profiler.planning.axes.check_packing``).
* Order: series after series (a series is ``PointSpec.series_key``: everything but B and T), each
  from short to long by B*T, so an OOM at some size can skip the longer points of its series.
* Memory: ``est_bytes = kernel.memory_bytes(...) + input bytes`` (analytic). Points above the memory
  budget are planned as ``skipped`` with the reason, before anything runs. The default budget is
  ``DEFAULT_BUDGET_FRACTION`` of available host memory (``/proc/meminfo`` MemAvailable) on CPU, or of
  free device memory (``torch.cuda.mem_get_info``) on CUDA.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from profiler.core.errors import UnavailableError, UsageError, did_you_mean
from profiler.core.fmt import bytes_fixed
from profiler.core.lazy import lazy_import
from profiler.core.records import PointRecord, PointSpec
from profiler.kernels import varlen as kernel_varlen
from profiler.kernels.base import Shape
from profiler.kernels.recurrent import carried_bytes, unsupported
from profiler.planning import axes
from profiler.planning.registry import registry
from profiler.planning.scenario import SweepSpec

torch = lazy_import("torch")

DEFAULT_BUDGET_FRACTION = 0.7
#: CUDA budget reserve: max(CUDA_RESERVE_MIN_BYTES, CUDA_RESERVE_FRACTION x total device memory).
CUDA_RESERVE_MIN_BYTES = 2 * 2**30
CUDA_RESERVE_FRACTION = 0.05
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class PlannedPoint:
    spec: PointSpec
    est_bytes: int | None          # analytic peak above inputs + input bytes
    skip_reason: str | None = None  # set: the point is recorded as "skipped" without running

    @property
    def runnable(self) -> bool:
        return self.skip_reason is None


@dataclass(frozen=True)
class Dropped:
    """A combination that cannot run here, and why."""

    what: str
    reason: str
    unavailable: bool = False   # the backend is unavailable on this device (not an impossible combination)


@dataclass
class Plan:
    sweep: SweepSpec                 # device resolved, settings with the memory budget filled in
    points: list[PlannedPoint]
    dropped: list[Dropped] = field(default_factory=list)
    budget_source: str = ""
    requested_device: str = ""       # the device the scenario asked for ("auto", "cpu", "cuda")

    @property
    def memory_budget_bytes(self) -> int | None:
        return self.sweep.settings.memory_budget_bytes

    def runnable(self) -> list[PointSpec]:
        return [p.spec for p in self.points if p.runnable]

    def skipped_records(self) -> list[PointRecord]:
        return [PointRecord(spec=p.spec, status="skipped", reason=p.skip_reason,
                            extra={"est_bytes": p.est_bytes})
                for p in self.points if not p.runnable]

    def est_bytes(self) -> dict[str, int | None]:
        return {p.spec.id: p.est_bytes for p in self.points}


# --------------------------------------------------------------------------- device and budget

def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``. Explicit ``cuda`` without one: exit 3.

    Anything but ``auto``, ``cpu`` and ``cuda`` is a ``UsageError`` (``--device tpu`` never runs as auto).
    """
    if device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device {device!r} is not allowed; {did_you_mean(str(device), ('auto', 'cpu', 'cuda'))}")
    if device == "cpu":
        return "cpu"
    has_cuda = cuda_available()
    if device == "cuda" and not has_cuda:
        raise UnavailableError("--device cuda requested but torch sees no CUDA device "
                               "(CPU-only torch build or no GPU visible); use --device cpu")
    return "cuda" if has_cuda else "cpu"


def host_memory_available() -> int | None:
    """``MemAvailable`` from /proc/meminfo in bytes (None where unreadable)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cuda_reserve_bytes(total: int) -> int:
    """Memory kept out of the CUDA budget: the larger of 2 GiB and 5% of the device total."""
    return max(CUDA_RESERVE_MIN_BYTES, int(total * CUDA_RESERVE_FRACTION))


def default_memory_budget(device: str, device_index: int = 0) -> tuple[int | None, str]:
    """``(bytes, how it was chosen)``: CUDA total minus a reserve; on CPU a fraction of what is free now."""
    if device == "cuda":
        _free, total = torch.cuda.mem_get_info(device_index)
        reserve = cuda_reserve_bytes(int(total))
        return (max(int(total) - reserve, 0),
                f"CUDA device total {total / 2**30:.1f} GiB minus a {reserve / 2**30:.1f} GiB reserve")
    avail = host_memory_available()
    if avail is None:
        return None, "no budget: /proc/meminfo unreadable"
    return int(avail * DEFAULT_BUDGET_FRACTION), f"{DEFAULT_BUDGET_FRACTION:g} x MemAvailable"


# --------------------------------------------------------------------------- registry access

def registry_for(level: str) -> dict[str, Any]:
    """Kernels (or layers, for ``--level layer|model``) by name (``profiler.planning.registry``)."""
    return registry(level)


# --------------------------------------------------------------------------- expansion

def make_plan(sweep: SweepSpec, *, cuda_available_flag: bool | None = None) -> Plan:
    """Resolve the device and memory budget, expand, drop the impossible, order, estimate memory."""
    requested_device = sweep.device
    device = resolve_device(sweep.device) if sweep.device in ("auto", "cuda") else sweep.device
    settings = sweep.settings
    budget_source = "--memory-budget"
    if settings.memory_budget_bytes is None:
        budget, budget_source = default_memory_budget(device)
        settings = replace(settings, memory_budget_bytes=budget)
    if sweep.interpret and device != "cpu":
        raise UsageError("--interpret runs fla backends on CPU only; use it with --device cpu")
    sweep = replace(sweep, device=device, settings=settings)

    reg = registry_for(sweep.level)
    names = sweep.kernels or tuple(reg)
    for n in names:
        if n not in reg:
            raise UsageError(f"unknown kernel {n!r}; {did_you_mean(n, reg)}")
    all_backends = {b for k in reg.values() for b in k.backends}
    for b in sweep.backends:
        if b not in all_backends:
            raise UsageError(f"unknown backend {b!r}; {did_you_mean(b, all_backends)}")
    axes.check_packing(sweep, reg)
    axes.check_varlen(sweep)

    dropped: list[Dropped] = []
    series: dict[tuple, list[PlannedPoint]] = {}
    for kname in names:
        kernel = reg[kname]
        for bname, backend in kernel.backends.items():
            if sweep.backends and bname not in sweep.backends:
                continue
            ok, why = backend.availability(device, interpret=sweep.interpret,
                                           cuda_available=(device == "cuda") if cuda_available_flag is None else cuda_available_flag)
            interpret = bool(sweep.interpret and device == "cpu" and backend.interpretable)
            why_phase = phase_unsupported(kernel, bname, settings.phase)
            if why_phase:
                dropped.append(Dropped(f"{kname}/{bname} {settings.phase}", why_phase))
                continue
            if not ok:
                dropped.append(Dropped(f"{kname}/{bname} on {device}", why, unavailable=True))
                continue
            causals = sweep.causal_modes(tuple(backend.causal))
            if not causals:
                want = "non-causal" if sweep.causal == "non-causal" else "causal"
                dropped.append(Dropped(f"{kname}/{bname} {want}",
                                       f"{kname}/{bname} supports only {_causal_text(backend.causal)}"))
                continue
            if sweep.causal == "both" and len(causals) < 2:
                missing = "non-causal" if True in causals else "causal"
                dropped.append(Dropped(f"{kname}/{bname} {missing}",
                                       f"{kname}/{bname} supports only {_causal_text(backend.causal)}"))
            for dtype, mode, H, D, (kv, dv, win) in ((dt, m, H, D, sv) for dt, m, H in itertools.product(
                    sweep.dtypes, sweep.modes, sweep.heads) for D in axes.layer_dims(sweep, H)
                    for sv in axes.shape_variants(sweep)):
                # kv heads = H and Dv = D are the default shape: the same point (and id) as without the flag
                kv, dv = (0 if kv == H else kv), (0 if dv == D else dv)
                what = f"{kname}/{bname}/{dtype}/{mode}/H{H}/D{D}" + "".join(
                    f"/{t}{v}" for t, v in (("KV", kv), ("Dv", dv), ("W", win)) if v)
                if dtype not in backend.dtypes:
                    dropped.append(Dropped(what, f"{bname} supports {', '.join(backend.dtypes)} only"))
                    continue
                if interpret and dtype == "bfloat16":
                    dropped.append(Dropped(what, "bf16 is wrong under Triton's interpreter (NumPy has no bf16)"))
                    continue
                if mode == "bwd" and sweep.level != "kernel":
                    dropped.append(Dropped(what, "bwd (the backward alone) is measured at the kernel level only"))
                    continue
                if mode in ("fwdbwd", "bwd") and not backend.has_backward(sweep.device):
                    dropped.append(Dropped(what, f"{bname} has no backward pass"
                                           + ("" if not backend.backward else f" on {sweep.device}")))
                    continue
                why_shape = (kernel.check_shape(Shape(1, 1, H, D)) or _backend_head_dim(kernel, bname, D)
                             or axes.shape_unsupported(kernel, bname, Shape(1, 1, H, D, kv, dv, win), settings.phase))
                if why_shape:
                    dropped.append(Dropped(what, why_shape))
                    continue
                if settings.phase != "prefill" and mode != "fwd":
                    dropped.append(Dropped(what, f"{settings.phase} measures inference only (mode fwd)"))
                    continue
                for causal, vopts in axes.causal_variants(sweep, kernel, causals):
                    if win and not causal:
                        d = Dropped(f"{kname}/{bname} non-causal window", "a sliding window (--window) is causal: "
                                    "query i sees keys i-w+1 .. i")
                        if d not in dropped:
                            dropped.append(d)
                        continue
                    if settings.phase != "prefill" and not causal:
                        d = Dropped(f"{kname}/{bname} non-causal {settings.phase}",
                                    f"{settings.phase} is causal: a token sees only the context before it")
                        if d not in dropped:
                            dropped.append(d)
                        continue
                    for B, (T, lopts), (popts, why_pack) in _replay_product(sweep, axes, kernel, bname, vopts, causal):
                        spec = PointSpec(kernel=kname, backend=bname, device=device, dtype=dtype, mode=mode,
                                         B=B, T=T, H=H, D=D, causal=causal, level=sweep.level,
                                         interpret=interpret,
                                         options=tuple(sorted(vopts + lopts + popts + phase_options(settings))),
                                         phase=settings.phase, kv_heads=kv, value_dim=dv, window=win)
                        if win > T:
                            dropped.append(Dropped(spec.id, f"window {win} (--window) is longer than T={T}"))
                            continue
                        if settings.phase == "streaming" and settings.chunk_size > T:
                            dropped.append(Dropped(spec.id, f"chunk size {settings.chunk_size} (--chunk-size) is "
                                                            f"longer than the context T={T}"))
                            continue
                        if why_pack:   # one line per layer/backend (and batch), not per point
                            d = Dropped(f"{kname}/{bname} " + (f"{'' if causal else 'non-causal '}varlen="
                                        f"{settings.varlen} {spec.option('layout', 'packed')}" if settings.varlen
                                        else "packing=packed"), why_pack)
                            if d not in dropped:
                                dropped.append(d)
                            continue
                        why_pt = kernel.check_shape(Shape(B, T, H, D, kv, dv, win))
                        if why_pt:
                            dropped.append(Dropped(spec.id, why_pt))
                            continue
                        est = estimate_bytes(kernel, spec)
                        skip = None
                        budget = settings.memory_budget_bytes
                        if budget is not None and est is not None and est > budget:
                            skip = (f"predicted to exceed the memory budget: {_fmt_bytes(est)} > "
                                    f"{_fmt_bytes(budget)} ({budget_source})")
                        series.setdefault(spec.series_key, []).append(PlannedPoint(spec, est, skip))

    points: list[PlannedPoint] = []
    seen: set[str] = set()
    for pts in series.values():
        for p in sorted(pts, key=lambda p: (p.spec.tokens, p.spec.T, p.spec.B)):
            if p.spec.id not in seen:
                seen.add(p.spec.id)
                points.append(p)
    return Plan(sweep=sweep, points=points, dropped=dropped, budget_source=budget_source,
                requested_device=requested_device)


def _replay_product(sweep: SweepSpec, axes: Any, kernel: Any, backend: str, vopts, causal: bool):
    """``(B, (T, length options), (packing options, drop reason))`` of one series. A varlen sweep has one
    size: B=1, T=the token budget (``profiler.kernels.varlen``), in a packed and a padded layout."""
    if sweep.settings.varlen is not None:
        for popts in axes.varlen_variants(sweep, kernel, backend, causal):
            yield 1, (sweep.settings.tokens, ()), popts
        return
    for B, (T, lopts) in itertools.product(sweep.batch, axes.lengths_with_options(sweep)):
        for packing in axes.packing_variants(sweep, backend, B, vopts + lopts):
            yield B, (T, lopts), packing


def phase_unsupported(kernel: Any, backend: str, phase: str) -> str | None:
    """Why ``kernel/backend`` has no ``phase`` (decode / streaming need a recurrent form), or None."""
    if phase == "prefill":
        return None
    if getattr(kernel, "level", "kernel") != "kernel":   # layers: ``profiler.layers.streaming``
        return kernel.phase_unsupported(backend, phase)

    return unsupported(kernel, backend, phase)


def phase_options(settings: Any) -> tuple[tuple[str, str], ...]:
    """The point options of a phase: ``steps=N`` (decode), ``chunk=C`` (streaming), none for prefill."""
    if settings.phase == "decode":
        return (("steps", str(settings.decode_steps)),)
    if settings.phase == "streaming":
        return (("chunk", str(settings.chunk_size)),)
    return ()


def _backend_head_dim(kernel: Any, backend: str, D: int) -> str | None:
    return kernel.backend_limit(backend, Shape(1, 1, 1, D))


def estimate_bytes(kernel: Any, spec: PointSpec) -> int | None:
    """Analytic peak bytes of one point: the kernel's working memory above inputs plus the inputs
    (both with the point's kv heads, value dim and window: ``Shape.of``)."""
    shape = Shape.of(spec)
    itemsize = ITEMSIZE.get(spec.dtype, 4)
    if spec.phase != "prefill":   # carried state / cache + one call's temporaries + inputs of T + n tokens

        n = spec.tokens_per_call
        work = kernel.analytic(spec, itemsize).memory_bytes or 0
        carried = (carried_bytes(kernel, shape, itemsize) if getattr(kernel, "level", "kernel") == "kernel"
                   else kernel.carried_bytes(shape, itemsize))
        return int(carried + work
                   + kernel.input_bytes(Shape(spec.B, spec.T + n, spec.H, spec.D), itemsize, "fwd"))
    if spec.option("varlen"):   # packed / padded variable-length batch (profiler.kernels.varlen)
        pack = kernel_varlen.packing(spec)
        return (kernel_varlen.working_bytes(kernel, spec, pack, itemsize)
                + kernel_varlen.input_bytes(kernel, spec, pack, itemsize))
    try:
        work = int(kernel.memory_bytes(shape, itemsize, spec.backend, spec.causal, spec.mode))
    except Exception:  # a model that cannot estimate this case: no estimate, never a guess
        return None
    return work + int(kernel.input_bytes(shape, itemsize, spec.mode))


def _causal_text(flags) -> str:
    flags = tuple(flags)
    if flags == (True,):
        return "causal"
    if flags == (False,):
        return "non-causal"
    return "causal and non-causal"


def _fmt_bytes(n: float) -> str:
    return bytes_fixed(n)


fmt_bytes = _fmt_bytes

__all__ = ["Plan", "PlannedPoint", "Dropped", "make_plan", "resolve_device", "default_memory_budget",
           "estimate_bytes", "host_memory_available", "fmt_bytes"]
