"""One call that analyses a whole run folder: ``analyze(loaded_run, baseline=None) -> RunAnalysis``.

It gathers the per-series fits (``fits``), the comparisons with the softmax baseline
(``crossover``), the OOM frontier (``frontier``), the roofline (``roofline``), failures,
correctness errors, interpreted points and noise flags. CUDA records with two timings also get
the parallel call-latency series (``call_series``) with their own fits, comparisons and roofline,
the launch-bound statements (``launch``) and, where recorded, first-call costs (``first_calls``). Runs measured on several device models are
split by model (``devices``): nothing is fitted, compared or averaged across two models. Everything is derived from the stored
records; nothing is measured, and torch is never imported, so a report rebuilds anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from profiler.analysis.conditions import RunConditions, run_conditions
from profiler.analysis.crossover import (
    Comparison,
    Variant,
    choose_baseline,
    compare_all,
)
from profiler.analysis.decode import DecodeAnalysis, analyze_decode
from profiler.analysis.devices import RunDevices, run_devices
from profiler.analysis.fits import (
    CostModel,
    SlopeFit,
    fit_latency,
    fit_memory,
    fit_memory_slope,
)
from profiler.analysis.frontier import Frontier, frontiers
from profiler.analysis.launch import (
    FirstCalls,
    LaunchBound,
    first_calls,
    launch_analysis,
)
from profiler.analysis.roofline import RooflinePoint, roofline
from profiler.analysis.ser import SerAnalysis, ser_analysis
from profiler.analysis.series import (
    Series,
    SeriesKey,
    build_series,
    interpreted_records,
)
from profiler.analysis.varlen import VarlenAnalysis, analyze_varlen
from profiler.core.records import PointRecord, energy_per_call
from profiler.store.runs import LoadedRun


@dataclass(frozen=True)
class SeriesFit:
    key: SeriesKey
    slope: SlopeFit | None
    cost: CostModel | None
    memory_slope: SlopeFit | None
    memory_model: CostModel | None


@dataclass
class RunAnalysis:
    """Everything the report shows about one run (values, not text)."""

    run: LoadedRun
    series: list[Series]
    fits: dict[SeriesKey, SeriesFit]
    baseline: Variant | None
    comparisons: list[Comparison]
    frontiers: list[Frontier]
    roofline: list[RooflinePoint]
    failures: list[PointRecord]
    wrong: list[PointRecord]
    correctness: list[PointRecord]
    interpreted: list[PointRecord]
    flagged: list[tuple[str, tuple[str, ...]]]       # (point id, flags)
    energy_note: str | None                          # why there is no energy, when none exists
    status_counts: dict[str, int] = field(default_factory=dict)
    devices: RunDevices | None = None
    ser: SerAnalysis | None = None                   # layer/model-level (SER) view, when the run has such points
    call_series: list[Series] = field(default_factory=list)   # call latency, where records store it apart
    call_fits: dict[SeriesKey, SeriesFit] = field(default_factory=dict)
    call_comparisons: list[Comparison] = field(default_factory=list)
    launch: list[LaunchBound] = field(default_factory=list)
    first_calls: list[FirstCalls] = field(default_factory=list)
    decode: DecodeAnalysis | None = None             # decode / streaming view, when the run has such points
    conditions: RunConditions | None = None          # clocks, temperature, frequency, throttling (None: not recorded)
    varlen: VarlenAnalysis | None = None             # packed vs padded variable-length batches (--varlen)

    @property
    def manifest(self):
        return self.run.manifest

    @property
    def label(self) -> str:
        return self.run.manifest.run_id

    def comparison_for(self, key: SeriesKey) -> Comparison | None:
        return next((c for c in self.comparisons if c.series.key == key), None)

    def call_comparison_for(self, key: SeriesKey) -> Comparison | None:
        return next((c for c in self.call_comparisons if c.series.key == key), None)

    def call_series_for(self, key: SeriesKey) -> Series | None:
        return next((s for s in self.call_series if s.key == key), None)

    def launch_for(self, key: SeriesKey) -> LaunchBound | None:
        return next((x for x in self.launch if x.key == key), None)

    def first_calls_for(self, key: SeriesKey) -> FirstCalls | None:
        return next((x for x in self.first_calls if x.key == key), None)

    @property
    def two_timings(self) -> bool:
        """True when some records store device time and call latency apart (new CUDA schema)."""
        return bool(self.call_series)

    def frontier_for(self, key: SeriesKey) -> Frontier | None:
        return next((f for f in self.frontiers if f.key == key), None)

    @property
    def has_energy(self) -> bool:
        return any(p.energy_j is not None for s in self.series for p in s.points)


def _energy_note(records: list[PointRecord]) -> str | None:
    reasons = [r.energy.reason for r in records
               if r.energy is not None and energy_per_call(r.energy)[0] is None and r.energy.reason]
    if any(energy_per_call(r.energy)[0] is not None for r in records):
        return None
    if reasons:
        return max(set(reasons), key=reasons.count)
    return "no energy was recorded for any point"


def analyze(run: LoadedRun, baseline: str | None = None) -> RunAnalysis:
    """Analyse a loaded run. ``baseline``: ``KERNEL[/BACKEND[/causal|full]]`` (UsageError if absent)."""
    records = run.records
    env: Mapping[str, Any] = run.manifest.environment or {}
    devices = run_devices(records, env, run.manifest.calibration, run.path)
    series = build_series(records, devices.models)
    call_series = build_series(records, devices.models, metric="call_latency")
    fits = {s.key: _fit(s) for s in series}
    call_fits = {s.key: _fit(s) for s in call_series}
    base = choose_baseline(series, baseline)
    comparisons = compare_all(series, base)
    call_comparisons = compare_all(call_series, base)
    fr = frontiers(series, records, env, devices)
    roof = roofline(series, run.manifest.calibration, env, devices=devices)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    flagged = [(p.record.id, p.flags) for s in series for p in s.points if p.flags]
    order = lambda r: (r.spec.kernel, r.spec.backend, r.spec.dtype, r.spec.mode, r.spec.B, r.spec.T)  # noqa: E731
    return RunAnalysis(
        run=run, series=series, fits=fits, baseline=base, comparisons=comparisons, frontiers=fr,
        roofline=roof,
        failures=sorted((r for r in records if r.status not in ("ok", "wrong")), key=order),
        wrong=sorted((r for r in records if r.status == "wrong"), key=order),
        correctness=sorted((r for r in records if r.correctness is not None), key=order),
        interpreted=sorted(interpreted_records(records), key=order),
        flagged=flagged, energy_note=_energy_note(records), status_counts=counts, devices=devices,
        ser=ser_analysis(records, comparisons, series),
        call_series=call_series, call_fits=call_fits, call_comparisons=call_comparisons,
        launch=launch_analysis(series, call_series), first_calls=first_calls(series),
        decode=analyze_decode(series, _audio_rate(run.manifest.scenario or {}),
                              bandwidth_bytes_per_s=(run.manifest.calibration or {}).get("bandwidth_bytes_per_s"),
                              device_memory_bytes=next((i.memory_bytes for i in devices.infos if i.memory_bytes), None)),
        conditions=run_conditions(records),
        varlen=analyze_varlen(records),
    )


def _audio_rate(scenario: Mapping[str, Any]) -> float | None:
    """Sequence positions per second of audio the run's scenario maps T with (frame_rate + text_rate)."""
    try:
        r = float(scenario.get("frame_rate", 0) or 0) + float(scenario.get("text_rate", 0) or 0)
    except (TypeError, ValueError):
        return None
    return r if r > 0 else None


def _fit(s: Series) -> SeriesFit:
    slope, cost = fit_latency(s)
    return SeriesFit(s.key, slope, cost, fit_memory_slope(s), fit_memory(s))
