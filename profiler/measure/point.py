"""The one measurement pipeline: a point of any level (kernel, layer, model) -> its record.

``measure_point(spec, settings, device_index=0) -> PointRecord`` is what the runner's workers call.
The point's entry (``profiler.planning.registry.get_entry``: a kernel, a layer or the SER head) supplies
the shape constraints, the analytic models, the verification and the workload; everything below is
written once for every level. Per point, in this order:

1. **Shape**: an impossible shape is a ``skipped`` record with the entry's reason.
2. **Correctness** (``settings.verify``): ``profiler.measure.verify.verify_point`` (the same function
   ``serprof verify`` runs) compares the backend with the entry's fp32 reference on the same inputs.
   A failure returns status ``wrong`` with the error and nothing else is measured.
3. **Workload** (``entry.build``): inputs and the call, built outside every timed region. ``fwd``
   calls run under ``torch.no_grad()``; ``fwdbwd`` calls run forward plus backward of a fixed
   random output gradient, and ``reset`` clears gradients between repetitions, outside timing.
4. **Timing** (``Device.time_call``, under ``profiler.measure.conditions.measure_under_conditions``:
   ``cooldown_s`` of idle first, clocks/temperature/throttling or CPU frequency/load/pinning sampled
   before, during and after; a throttled timing is measured once more after a cool-down and the
   record's ``conditions`` say whether it stayed throttled): the first call timed alone (compile, autotune, lazy init:
   ``PointRecord.first_call``), warm-up by time budget, then repetitions until the CI target or the
   time budget. CPU: ``perf_counter_ns`` around the calls, which is the call latency. CUDA: two
   timings from one session (``profiler.measure.cuda_time``): device time (CUDA-graph replay, else
   kineto kernel durations, else events after an enqueued spin; ``PointRecord.timing``) and call
   latency (sync, one call, sync; ``PointRecord.call_latency``). A workload with a ``replay`` (the
   SER utterance replay) times its own sequence of calls instead.
5. **Memory** (``profiler.measure.memory``): one further call under the device's memory meter, plus
   the entry's analytic model and the bytes of the inputs.
6. **Energy** (``profiler.measure.energy``): a window of repeated calls on the device's meter, or a
   record saying why there is none.

Exceptions (out of memory and others) propagate: the runner turns them into statuses.
Interpreted points (fla Triton kernels on CPU under Triton's interpreter, which the worker activates)
get one call, timed with ``perf_counter_ns`` and measured for memory at once, stored with timer
``interpreted``; such a time is never a performance number and no energy is measured.
"""

from __future__ import annotations

import time

from profiler.core.records import (
    Correctness,
    Energy,
    MeasureSettings,
    Memory,
    PointRecord,
    PointSpec,
)
from profiler.core.settings import lookup
from profiler.kernels import use_kernel_modules
from profiler.kernels.base import Shape
from profiler.measure import inject
from profiler.measure.conditions import measure_under_conditions
from profiler.measure.device import Device, get_device
from profiler.measure.timer import interpreted_timing
from profiler.measure.verify import verify_point
from profiler.planning.registry import get_entry
from profiler.store.runs import utc_now

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}


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


def _no_energy(reason: str) -> Energy:
    return Energy(energy_j=None, reason=reason)


def measure_point(spec: PointSpec, settings: MeasureSettings, *, device_index: int = 0,
                  device: Device | None = None) -> PointRecord:
    """Verify, time, and measure memory and energy of one point (see module doc).

    ``device`` overrides the device built from ``spec.device`` (a seam for tests).
    """
    t0 = time.perf_counter()
    started = utc_now()
    if settings.kernel_modules and spec.level == "kernel":   # plugin kernels (stored with the run's settings)

        use_kernel_modules(settings.kernel_modules, lookup("kernel_modules").toml_key)
    entry = get_entry(spec.level, spec.kernel)
    dev = device if device is not None else get_device(spec.device, device_index)
    worker = dev.info()

    def record(status: str, **fields) -> PointRecord:
        return PointRecord(spec=spec, status=status, worker=worker, started_at=started,
                           wall_s=time.perf_counter() - t0, **fields)

    bad = entry.check_shape(Shape(spec.B, spec.T, spec.H, spec.D))
    if bad:
        return record("skipped", reason=bad)
    model = entry.analytic(spec, ITEMSIZE[spec.dtype])

    correctness = None
    if settings.verify:
        correctness = verify_point(spec, dev.torch_device, settings.seed, settings.verify_max_T)[0]
        if not correctness.passed:
            return record("wrong", reason=wrong_reason(correctness), correctness=correctness,
                          flops=model.flops, bytes_moved=model.bytes_moved)

    work = inject.apply(entry.build(spec, dev.torch_device, settings.seed), spec.id)   # test-only knob
    meter = dev.memory_meter()
    in_bytes: int | None = work.input_bytes
    reading = None
    if work.replay is not None:
        timing, peak, extra = work.replay(dev, settings, meter)
        work.extra.update(extra)
        memory = Memory(peak_bytes=peak, method=meter.method if peak is not None else "none",
                        analytic_bytes=model.memory_bytes)
        return record("ok", timing=timing, memory=memory, correctness=correctness, flops=model.flops,
                      bytes_moved=model.bytes_moved, extra=work.extra,
                      energy=_no_energy("utterance replay: energy is measured at fixed-T points"))
    timed = conditions = None
    if spec.interpret:
        took: list[float] = []

        def timed_call() -> None:
            c0 = time.perf_counter_ns()
            work.call_with_reset()
            took.append((time.perf_counter_ns() - c0) / 1e9)

        if settings.measure_memory:
            reading = meter.measure(timed_call)  # the one call is timed and measured at once
        else:
            timed_call()
        timing = interpreted_timing(took[0])
        energy = _no_energy("interpreted point (Triton interpreter on CPU): no energy")
    else:
        flush = dev.l2_flusher() if settings.l2_flush else None
        # CUDA: device time + call latency; conditions sampled around them, re-measured once if throttled
        timed, conditions = measure_under_conditions(
            lambda: dev.time_call(work.call, settings, reset=work.reset, flush=flush), dev.conditions_probe(),
            cooldown_s=settings.cooldown_s, l2=settings.l2 if dev.type == "cuda" else "n/a",
            clocks_locked=settings.lock_clocks if dev.type == "cuda" else None)
        timing = timed.timing
        work.extra.update(timed.extra)
        if settings.measure_memory:
            if work.reset is not None:
                work.reset()  # frees the last repetition's gradients outside the measured call
            reading = meter.measure(work.call)
        if settings.measure_energy:
            energy = dev.energy_meter().measure(work.call_with_reset, window_s=settings.energy_window_s,
                                                sync=dev.synchronize)
        else:
            energy = _no_energy("energy not measured (measure_energy is off)")

    if "varlen" in work.extra and timing.median_s:   # packed / padded batch: real tokens per second
        work.extra["varlen"]["tokens_per_s"] = work.extra["varlen"]["real_tokens"] / timing.median_s
    memory = Memory(
        peak_bytes=reading.peak_bytes if reading is not None else None,
        method=meter.method if reading is not None else "none",
        reserved_bytes=reading.reserved_bytes if reading is not None else None,
        analytic_bytes=model.memory_bytes, input_bytes=in_bytes,
    )
    return record("ok", timing=timing, memory=memory, energy=energy, correctness=correctness, flops=model.flops,
                  bytes_moved=model.bytes_moved, extra=work.extra, conditions=conditions,
                  **(timed.record_fields(extra=False) if timed is not None else {}))
