"""Measure one point inside a worker process: verify, then time, then peak memory, then energy.

``measure_point(spec, settings, device_index=0) -> PointRecord`` is the one entry point the runner
calls. Per point, in this order:

1. **Correctness** (``settings.verify``): ``profiler.verify.check_point`` compares the backend with
   the kernel's fp32 reference on the same inputs (a T-prefix beyond ``verify_max_T``). A failure
   returns status ``wrong`` with the error and nothing else is measured.
2. **Inputs** from the registry (``kernel.make_inputs``), built outside every timed region. In
   ``fwdbwd`` mode the tensors in ``kernel.grad_inputs`` require grad; the measured call is the
   forward plus ``out.backward(g)`` with a fixed random ``g`` (seeded), and the gradients are set
   to None between repetitions, outside the timing. In ``fwd`` mode the call runs under
   ``torch.no_grad()``.
3. **Timing** (``profiler.measure.timer``): warm-up by time budget, then repetitions until the CI
   target or the time budget; CUDA events with optional L2 flush, perf_counter_ns on CPU.
4. **Memory** (``profiler.measure.memory``): one further call under the device's memory meter, plus
   the kernel's analytic model and the bytes of the inputs.
5. **Energy** (``profiler.measure.energy``): a window of repeated calls on the device's meter, or a
   record saying why there is none.

Exceptions (out of memory and others) propagate: the runner turns them into statuses.
Interpreted points (fla Triton kernels on CPU under Triton's interpreter, which the worker activates)
get one call, timed with ``perf_counter_ns`` and measured for memory at once, stored with timer
``interpreted``; such a time is never a performance number and no energy is measured.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

from profiler.kernels import get_backend, get_kernel
from profiler.kernels.base import KernelSpec, Shape, forward_backward_flops
from profiler.measure.device import Device, get_device
from profiler.measure.timer import interpreted_timing
from profiler.records import Correctness, Energy, MeasureSettings, Memory, PointRecord, PointSpec


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def input_bytes(inputs: dict) -> int:
    """Bytes of the tensors among ``inputs`` (non-tensor parameters ignored)."""
    total = 0
    for v in inputs.values():
        nbytes = getattr(v, "nbytes", None)
        if isinstance(nbytes, int) and hasattr(v, "dtype"):
            total += nbytes
    return total


def build_call(kernel: KernelSpec, run: Callable, inputs: dict, spec: PointSpec,
               seed: int = 0) -> tuple[Callable[[], Any], Callable[[], None] | None]:
    """``(call, reset)`` for the point's mode; ``reset`` is None in ``fwd`` mode.

    fwdbwd: the inputs named in ``kernel.grad_inputs`` are made leaves requiring grad (in place);
    the output gradient is drawn once, on the first call, from a generator seeded with ``seed``.
    """
    import torch

    causal = spec.causal
    if spec.mode == "fwd":
        def call_fwd() -> None:
            with torch.no_grad():
                run(inputs, causal)

        return call_fwd, None

    leaves = []
    for name in kernel.grad_inputs:
        t = inputs[name]
        if t.is_floating_point():
            t.requires_grad_(True)
            leaves.append(t)
    state: dict[str, Any] = {}

    def call_fwdbwd() -> None:
        out = run(inputs, causal)
        g = state.get("grad")
        if g is None:
            gen = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
            g = torch.randn(out.shape, generator=gen, dtype=torch.float32).to(device=out.device, dtype=out.dtype)
            state["grad"] = g
        out.backward(g)

    def reset() -> None:
        for t in leaves:
            t.grad = None

    return call_fwdbwd, reset


def _check(spec: PointSpec, shape: Shape, settings: MeasureSettings, torch_device: str) -> Correctness:
    from profiler.verify import check_point

    return check_point(spec.kernel, spec.backend, shape, spec.dtype, torch_device, spec.causal, spec.mode,
                       settings.seed, settings.verify_max_T, interpret=spec.interpret)


def wrong_reason(c: Correctness) -> str:
    """One line saying what disagreed with the reference, by how much."""
    tol = c.tolerance
    parts = []
    if c.max_rel_err is None:
        parts.append("the backend failed to produce an output")
    elif not c.max_rel_err <= tol:
        parts.append(f"output max rel err {c.max_rel_err:.3g}")
    if c.grad_max_rel_err is not None and not c.grad_max_rel_err <= tol:
        parts.append(f"gradient max rel err {c.grad_max_rel_err:.3g}")
    if not parts:
        parts.append("the check did not pass")
    return f"differs from {c.reference}: {'; '.join(parts)} (tolerance {tol:.3g})"


def _analytic(kernel: KernelSpec, spec: PointSpec, shape: Shape, itemsize: int) -> tuple[float | None, float | None, int | None]:
    flops = float(kernel.flops(shape, spec.causal))
    if spec.mode == "fwdbwd":
        flops = forward_backward_flops(flops)
        moved = None  # the kernels carry a forward byte model only
    else:
        moved = float(kernel.bytes_moved(shape, itemsize, spec.causal))
    mem = int(kernel.memory_bytes(shape, itemsize, spec.backend, spec.causal, spec.mode))
    return flops, moved, mem


def measure_point(spec: PointSpec, settings: MeasureSettings, *, device_index: int = 0,
                  device: Device | None = None) -> PointRecord:
    """Verify, time, and measure memory and energy of one point (see module doc).

    ``device`` overrides the device built from ``spec.device`` (a seam for tests).
    """
    if spec.level != "kernel":  # whole layers and the SER head (profiler.layers)
        from profiler.layers.measure import measure_layer_point

        return measure_layer_point(spec, settings, device_index=device_index, device=device)
    import torch

    t0 = time.perf_counter()
    started = _utc_now()
    kernel = get_kernel(spec.kernel)
    backend = get_backend(spec.kernel, spec.backend)
    dev = device if device is not None else get_device(spec.device, device_index)
    shape = Shape(spec.B, spec.T, spec.H, spec.D)
    bad = kernel.check_shape(shape)
    if bad:
        return PointRecord(spec=spec, status="skipped", reason=bad, worker=dev.info(), started_at=started,
                           wall_s=time.perf_counter() - t0)
    dtype = getattr(torch, spec.dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    flops, moved, analytic_mem = _analytic(kernel, spec, shape, itemsize)
    worker = dev.info()

    correctness = None
    if settings.verify:
        correctness = _check(spec, shape, settings, dev.torch_device)
        if not correctness.passed:
            return PointRecord(spec=spec, status="wrong", reason=wrong_reason(correctness), correctness=correctness, flops=flops,
                               bytes_moved=moved, worker=worker, started_at=started, wall_s=time.perf_counter() - t0)

    inputs = kernel.make_inputs(shape, dtype, dev.torch_device, settings.seed)
    in_bytes = input_bytes(inputs)
    call, reset = build_call(kernel, backend.run, inputs, spec, settings.seed)
    meter = dev.memory_meter()

    def call_with_reset() -> None:
        if reset is not None:
            reset()
        call()

    timed = None
    if spec.interpret:
        if reset is not None:
            reset()
        took: list[float] = []

        def timed_call() -> None:
            c0 = time.perf_counter_ns()
            call()
            took.append((time.perf_counter_ns() - c0) / 1e9)

        reading = None
        if settings.measure_memory:
            reading = meter.measure(timed_call)  # the one call is timed and measured at once
        else:
            timed_call()
        timing = interpreted_timing(took[0])
        energy = Energy(energy_j=None, reason="interpreted point (Triton interpreter on CPU): no energy")
    else:
        flush = dev.l2_flusher() if settings.l2_flush else None
        timed = dev.time_call(call, settings, reset=reset, flush=flush)  # CUDA: device time + call latency
        timing = timed.timing
        reading = None
        if settings.measure_memory:
            if reset is not None:
                reset()  # frees last repetition's gradients outside the measured call
            reading = meter.measure(call)
        if settings.measure_energy:
            energy = dev.energy_meter().measure(call_with_reset, window_s=settings.energy_window_s,
                                                sync=dev.synchronize)
        else:
            energy = Energy(energy_j=None, reason="energy not measured (measure_energy is off)")

    memory = Memory(
        peak_bytes=reading.peak_bytes if reading is not None else None,
        method=meter.method if reading is not None else "none",
        reserved_bytes=reading.reserved_bytes if reading is not None else None,
        analytic_bytes=analytic_mem, input_bytes=in_bytes,
    )
    return PointRecord(spec=spec, status="ok", timing=timing, memory=memory, energy=energy,
                       correctness=correctness, flops=flops, bytes_moved=moved, worker=worker,
                       started_at=started, wall_s=time.perf_counter() - t0,
                       **(timed.record_fields() if timed is not None else {}))
