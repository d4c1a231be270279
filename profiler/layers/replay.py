"""Utterance replay of a layer point (option ``replay=N``): the study's one-call-per-utterance protocol.

``replay_point`` draws N utterance durations from the point's ``distribution`` option (default
``msp-podcast-like``) with ``settings.seed``, converts them to T with the point's rates and times one
call per batch of ``B`` with the device's sample timer (``profiler.layers.utterances.replay``), the
device synchronised inside each timed call. Batches are zero-padded slices of the point's inputs, or
(option ``packing=packed``, fla layers at level ``layer``) one packed sequence with ``cu_seqlens``
(``profiler.layers.packed``). Returns ``(Timing, peak bytes or None, extra)``: ``Timing.samples_s``
holds the per-utterance latencies, ``extra['replay']`` the summary (mean/p50/p95 with intervals, max,
total, utt/s, peak memory), the raw per-batch times, the packing and the tokens computed against the
real ones.
"""

from __future__ import annotations

from typing import Any

from profiler.core.audio import rates_from_options
from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.core.records import MeasureSettings, PointSpec, Timing
from profiler.layers.packed import packed_fn, packed_inputs
from profiler.layers.utterances import get_distribution, replay
from profiler.layers.workload import padded_inputs

torch = lazy_import("torch")


def replay_point(spec: PointSpec, settings: MeasureSettings, dev: Any, meter: Any, work: Any
                 ) -> tuple[Timing, int | None, dict[str, Any]]:
    """Time the utterance replay of ``work`` (a ``profiler.layers.workload.Workload``) on ``dev``."""
    n = int(spec.option("replay", "1000"))
    dist = get_distribution(spec.option("distribution", "msp-podcast-like"))
    durations = dist.sample(n, settings.seed)
    rates = rates_from_options(spec.options)
    full = work.inputs
    timer = dev.sample_timer()
    packing = spec.option("packing", "padded")
    if packing == "packed" and (spec.backend != "fla" or spec.level != "layer"):
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
    timing = Timing(samples_s=res.latency_s, timer=timer.name, warmup_calls=res.warmup_calls, stop_reason="replay")
    return timing, res.peak_bytes, {"replay": res.to_extra()}
