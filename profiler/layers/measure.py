"""Measure one layer- or model-level point (``PointSpec.level`` ``layer`` | ``model``).

``measure_layer_point(spec, settings, device_index=0, device=None) -> PointRecord``; the kernel-level
``profiler.measure.point.measure_point`` hands these points here. Per point, in order:

1. **Correctness** (``settings.verify``): the point's module on an input of ``min(T, 256)`` tokens
   against an oracle on the same input and weights, in fp32: for the ``torch`` ports the same layer
   with every mechanism call replaced by the kernel's fp32 reference (fla naive forms or the
   kernels' own slow forms: ``profiler.layers.common.oracle``); for ``fla`` layers the fp32 torch
   port with the fla weights loaded. Tolerance: 1e-3 relative (fp32), 3e-2 (fp16), 6e-2 (bf16).
2. **Timing, memory, energy** of ``Workload.call`` with the device's timer, memory meter and energy
   meter, exactly as kernel points (``profiler.measure``).
3. **Utterance replay** instead of fixed-T timing when the point has option ``replay=N``: N
   utterance durations drawn from the ``distribution`` option (default ``msp-podcast-like``) with
   ``settings.seed``, converted to T with the point's rates, timed one call per batch of ``B``
   (``profiler.utterances.replay``). ``Timing.samples_s`` holds the per-utterance latencies and
   ``PointRecord.extra['replay']`` the summary (mean/p50/p95 with intervals, max, total, utt/s,
   peak memory), the raw per-batch times, the ``packing`` and the tokens computed against the real
   ones. Option ``packing=packed`` (fla layers, layer level): each batch is one packed sequence with
   ``cu_seqlens`` (``profiler.layers.packed``) instead of a zero-padded [B, max T, D] tensor; its
   correctness check runs three utterances of different lengths packed through the fla layer
   against the fp32 torch port on each utterance alone (``verify_packed``).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

from profiler.records import Correctness, Energy, MeasureSettings, Memory, PointRecord, PointSpec, Timing

VERIFY_T = 256
TOLERANCE = {"float32": 1e-3, "float16": 3e-2, "bfloat16": 6e-2}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def verify(spec: PointSpec, torch_device: str, seed: int, max_T: int = VERIFY_T) -> Correctness:
    """Compare the point's module with its fp32 oracle on a ``min(T, max_T)``-token input."""
    import dataclasses

    import torch

    from profiler.layers.common import oracle
    from profiler.layers.workload import build_module, make_inputs

    Tc = max(2, min(spec.T, max_T))
    small = dataclasses.replace(spec, T=Tc, B=min(spec.B, 2), options=tuple(o for o in spec.options if o[0] != "audio_s"))
    module = build_module(small, device=torch_device, seed=seed)
    inputs = make_inputs(small, device=torch_device, seed=seed)
    if spec.backend == "fla":
        ref_spec = dataclasses.replace(small, backend="torch", dtype="float32", device="cpu")
        ref_module = build_module(ref_spec, seed=seed)
        ref_module.load_state_dict({k: v.float().cpu() for k, v in module.state_dict().items()}, strict=True)
        name = "fp32 torch port with the fla weights"
        oracle_ctx = None
    else:
        ref_module = build_module(dataclasses.replace(small, dtype="float32", device="cpu"), seed=seed)
        name = "fp32 layer on the kernels' reference forms"
        oracle_ctx = oracle
    args = [inputs[k] for k in (("speech", "text") if spec.level == "model" else ("x",))]
    with torch.no_grad():
        out = module(*args)
        out = (out[0] if isinstance(out, tuple) else out).float().cpu()
        ref_args = [a.float().cpu() for a in args]
        if oracle_ctx is not None:
            with oracle_ctx():
                ref = ref_module(*ref_args)
        else:
            ref = ref_module(*ref_args)
    ref = ref.float()
    abs_err = (out - ref).abs().max().item()
    rel = abs_err / max(ref.abs().max().item(), 1e-30)
    tol = TOLERANCE.get(spec.dtype, 1e-3)
    return Correctness(reference=name, max_abs_err=abs_err, max_rel_err=rel, tolerance=tol,
                       passed=bool(rel <= tol), checked_T=Tc)


def verify_packed(spec: PointSpec, torch_device: str, seed: int, max_T: int = VERIFY_T) -> Correctness:
    """Packed fla call on three utterances (T/3, T/2, T tokens, T = ``min(spec.T, max_T)``) against the
    fp32 torch port (fla weights loaded) on each utterance alone at batch 1."""
    import dataclasses

    import torch

    from profiler.layers.packed import packed_fn, packed_inputs, split_packed
    from profiler.layers.workload import build_module, make_inputs

    Tc = max(6, min(spec.T, max_T))
    lengths = [Tc // 3, Tc // 2, Tc]
    small = dataclasses.replace(spec, T=Tc, B=3, options=())
    module = build_module(small, device=torch_device, seed=seed)
    ref_module = build_module(dataclasses.replace(small, backend="torch", dtype="float32", device="cpu"), seed=seed)
    ref_module.load_state_dict({k: v.float().cpu() for k, v in module.state_dict().items()}, strict=True)
    full = make_inputs(small, device=torch_device, seed=seed)["x"]
    abs_err, ref_max = 0.0, 0.0
    with torch.no_grad():
        outs = split_packed(packed_fn(module)(packed_inputs(lengths, full)), lengths)
        for i, (t, o) in enumerate(zip(lengths, outs)):
            ref = ref_module(full[i:i + 1, :t].float().cpu())[0].float()
            abs_err = max(abs_err, (o.float().cpu() - ref).abs().max().item())
            ref_max = max(ref_max, ref.abs().max().item())
    rel = abs_err / max(ref_max, 1e-30)
    tol = TOLERANCE.get(spec.dtype, 1e-3)
    return Correctness(reference="fp32 torch port with the fla weights, each utterance alone (packed call)",
                       max_abs_err=abs_err, max_rel_err=rel, tolerance=tol, passed=bool(rel <= tol), checked_T=Tc)


def _replay(spec: PointSpec, settings: MeasureSettings, dev, meter):
    import torch

    from profiler.audio import rates_from_options
    from profiler.layers.packed import packed_fn, packed_inputs
    from profiler.layers.workload import padded_inputs, workload_for
    from profiler.utterances import get_distribution, replay

    n = int(spec.option("replay", "1000"))
    dist = get_distribution(spec.option("distribution", "msp-podcast-like"))
    durations = dist.sample(n, settings.seed)
    rates = rates_from_options(spec.options)
    work = workload_for(spec, dev.torch_device, getattr(torch, spec.dtype), settings.seed)
    full = work.inputs
    timer = dev.sample_timer()
    packing = spec.option("packing", "padded")
    if packing == "packed" and (spec.backend != "fla" or spec.level != "layer"):
        from profiler.errors import UsageError

        raise UsageError(f"packed replay runs the fla layers at level layer only (got {spec.backend}, level {spec.level})")
    fn = packed_fn(work.module) if packing == "packed" else work.fn

    def prepare(lengths):
        inputs = packed_inputs(lengths, full["x"]) if packing == "packed" else padded_inputs(spec, lengths, full)

        def call() -> None:
            with torch.no_grad():
                fn(inputs)
            dev.synchronize()

        return call

    peak = None
    if settings.measure_memory:
        def peak(call):
            return meter.measure(call).peak_bytes
    res = replay(durations, rates.to_T, prepare, batch_size=spec.B, warmup_calls=max(1, settings.min_warmup_calls),
                 time_call=lambda call: timer.sample(call, 1), peak_bytes=peak, distribution=dist.to_dict(),
                 seed=settings.seed, packing=packing)
    return res, timer.name, meter.method


def measure_layer_point(spec: PointSpec, settings: MeasureSettings, *, device_index: int = 0,
                        device=None) -> PointRecord:
    """Verify, then time, memory and energy of one layer/model point (see module doc)."""
    import torch

    from profiler.layers.planning import entry as layer_entry
    from profiler.kernels.base import Shape
    from profiler.measure.device import get_device
    from profiler.measure.timer import interpreted_timing

    t0 = time.perf_counter()
    started = _now()
    entry = layer_entry(spec.kernel, spec.level)
    dev = device if device is not None else get_device(spec.device, device_index)
    worker = dev.info()
    shape = Shape(spec.B, spec.T, spec.H, spec.D)
    bad = entry.check_shape(shape)
    if bad:
        return PointRecord(spec=spec, status="skipped", reason=bad, worker=worker, started_at=started,
                           wall_s=time.perf_counter() - t0)
    itemsize = torch.empty((), dtype=getattr(torch, spec.dtype)).element_size()
    flops = float(entry.flops(shape, spec.causal))
    analytic = int(entry.memory_bytes(shape, itemsize, spec.backend, spec.causal, spec.mode))
    moved = float(entry.bytes_moved(shape, itemsize, spec.causal))

    correctness = None
    if settings.verify:
        check = verify_packed if spec.option("packing") == "packed" else verify
        correctness = check(spec, dev.torch_device, settings.seed, min(VERIFY_T, settings.verify_max_T))
        if not correctness.passed:
            return PointRecord(spec=spec, status="wrong", correctness=correctness, flops=flops, bytes_moved=moved,
                               reason=f"output differs from {correctness.reference}: max rel err "
                                      f"{correctness.max_rel_err:.3g} > tolerance {correctness.tolerance:.3g}",
                               worker=worker, started_at=started, wall_s=time.perf_counter() - t0)

    meter = dev.memory_meter()
    from profiler.layers.planning import head_shape

    extra: dict = {"params": head_shape(spec.kernel, spec.D, spec.H)[2]}
    if spec.option("audio_s") is not None:
        extra["audio_s"] = float(spec.option("audio_s"))
    elif spec.option("frame_rate") is not None and spec.option("replay") is None:
        from profiler.audio import rates_from_options

        r = rates_from_options(spec.options)   # the duration this T stands for (up to rounding)
        extra["audio_s"] = spec.T / (r.frame_rate_hz + r.text_rate_hz)
    if spec.option("replay") is not None:
        res, timer_name, method = _replay(spec, settings, dev, meter)
        timing = Timing(samples_s=res.latency_s, timer=timer_name, warmup_calls=res.warmup_calls,
                        stop_reason="replay")
        memory = Memory(peak_bytes=res.peak_bytes, method=method if res.peak_bytes is not None else "none",
                        analytic_bytes=analytic)
        extra["replay"] = res.to_extra()
        energy = Energy(energy_j=None, reason="utterance replay: energy is measured at fixed-T points")
        return PointRecord(spec=spec, status="ok", timing=timing, memory=memory, energy=energy,
                           correctness=correctness, flops=None, worker=worker, started_at=started,
                           wall_s=time.perf_counter() - t0, extra=extra)

    from profiler.layers.workload import workload_for

    work = workload_for(spec, dev.torch_device, getattr(torch, spec.dtype), settings.seed)
    in_bytes = sum(t.nbytes for t in work.inputs.values())
    reset = work.reset if spec.mode == "fwdbwd" else None

    def call_with_reset() -> None:
        if reset is not None:
            reset()
        work.call()

    timed = None
    if spec.interpret:
        c0 = time.perf_counter_ns()
        reading = meter.measure(call_with_reset) if settings.measure_memory else (call_with_reset() or None)
        timing = interpreted_timing((time.perf_counter_ns() - c0) / 1e9)
        energy = Energy(energy_j=None, reason="interpreted point (Triton interpreter on CPU): no energy")
    else:
        flush = dev.l2_flusher() if settings.l2_flush else None
        timed = dev.time_call(work.call, settings, reset=reset, flush=flush)  # CUDA: device time + call latency
        timing = timed.timing
        extra.update(timed.extra)
        reading = meter.measure(call_with_reset) if settings.measure_memory else None
        if settings.measure_energy:
            energy = dev.energy_meter().measure(call_with_reset, window_s=settings.energy_window_s, sync=dev.synchronize)
        else:
            energy = Energy(energy_j=None, reason="energy not measured (measure_energy is off)")
    memory = Memory(peak_bytes=reading.peak_bytes if reading is not None else None,
                    method=meter.method if reading is not None else "none",
                    reserved_bytes=reading.reserved_bytes if reading is not None else None,
                    analytic_bytes=analytic, input_bytes=in_bytes)
    return PointRecord(spec=spec, status="ok", timing=timing, memory=memory, energy=energy, correctness=correctness,
                       flops=flops, bytes_moved=moved, worker=worker, started_at=started,
                       wall_s=time.perf_counter() - t0, extra=extra,
                       **(timed.record_fields(extra=False) if timed is not None else {}))

