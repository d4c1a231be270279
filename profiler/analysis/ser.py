"""Speech-emotion (SER) view of a run's layer- and model-level records: audio time, replays, payoff.

Pure functions over stored records (no torch):

* ``audio_seconds(record)``: the seconds of audio a point's T stands for: ``extra['audio_s']`` when
  stored, else ``T / (frame_rate + text_rate)`` from the point's options (the rates the sweep
  converted ``--audio`` with); None for points whose T did not come from audio.
* ``replay_rows(records)``: the utterance-replay points (option ``replay=N``; summary in
  ``extra['replay']['summary']``: mean, p50, p95 with bootstrap intervals, max, total, utterances/s,
  peak memory, real-time factor).
* ``per_minute(series)``: latency and energy per minute of audio (``median / (audio_s / 60)``) of
  fixed-length points whose T came from audio: constant for a linear-cost layer, growing with the
  duration for a quadratic one.
* ``payoffs(comparisons)``: the interpolated latency crossover T* of each layer against the study's
  softmax baseline (``analysis.crossover``), converted to seconds of audio with the series' rates.
* ``ser_analysis(records, comparisons, series)``: all of the above plus the study comparison
  (``profiler.analysis.study.study_section``); None when the run has no layer/model-level points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from profiler.analysis.study import study_section
from profiler.core.records import PointRecord, PointSpec

SER_LEVELS = ("layer", "model")


def audio_rate(spec: PointSpec) -> float | None:
    """Sequence positions per second of audio (speech frames + text tokens), from the point's options."""
    o = dict(spec.options)
    if "frame_rate" not in o:
        return None
    try:
        r = float(o["frame_rate"]) + float(o.get("text_rate", 0.0))
    except ValueError:
        return None
    return r if r > 0 else None


def audio_seconds(rec: PointRecord) -> float | None:
    """Seconds of audio the point's T stands for (None when T did not come from audio)."""
    v = (rec.extra or {}).get("audio_s")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return float(v)
    o = dict(rec.spec.options)
    if "audio_s" in o:
        try:
            return float(o["audio_s"])
        except ValueError:
            pass
    r = audio_rate(rec.spec)
    return rec.spec.T / r if r else None


def is_replay(rec: PointRecord) -> bool:
    return rec.spec.option("replay") is not None


def series_name(spec: PointSpec) -> str:
    """How the SER tables name a point's variant: ``causal`` | ``non-causal`` | ``bidirectional``."""
    if spec.option("bidirectional") == "1":
        return "bidirectional"
    return "causal" if spec.causal else "non-causal"


@dataclass(frozen=True)
class ReplayRow:
    """One utterance-replay point (seconds, bytes)."""

    record: PointRecord
    layer: str
    level: str
    series: str
    backend: str
    device: str
    dtype: str
    batch: int
    n: int
    mean_s: float
    mean_ci: tuple[float, float] | None
    p50_s: float | None
    p50_ci: tuple[float, float] | None
    p95_s: float | None
    p95_ci: tuple[float, float] | None
    max_s: float | None
    total_s: float | None
    utterances_per_s: float | None
    peak_bytes: int | None
    audio_s: float | None
    real_time_factor: float | None
    distribution: str


def _ci(summary: Mapping[str, Any], key: str) -> tuple[float, float] | None:
    v = summary.get(f"{key}_ci")
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return float(v[0]), float(v[1])
    return None


def _num(summary: Mapping[str, Any], key: str) -> float | None:
    v = summary.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def replay_rows(records: Sequence[PointRecord]) -> list[ReplayRow]:
    """One row per successful replay point, softmax first, then by layer name."""
    rows = []
    for r in records:
        if r.status != "ok" or not is_replay(r):
            continue
        rep = (r.extra or {}).get("replay") or {}
        summ = rep.get("summary") if isinstance(rep, Mapping) else None
        if not isinstance(summ, Mapping) or _num(summ, "mean_s") is None:
            continue
        dist = rep.get("distribution") or {}
        rows.append(ReplayRow(
            record=r, layer=r.spec.kernel, level=r.spec.level, series=series_name(r.spec), backend=r.spec.backend,
            device=r.spec.device, dtype=r.spec.dtype, batch=int(summ.get("batch_size") or r.spec.B),
            n=int(summ.get("n") or 0), mean_s=float(summ["mean_s"]), mean_ci=_ci(summ, "mean_s"),
            p50_s=_num(summ, "p50_s"), p50_ci=_ci(summ, "p50_s"), p95_s=_num(summ, "p95_s"),
            p95_ci=_ci(summ, "p95_s"), max_s=_num(summ, "max_s"), total_s=_num(summ, "total_s"),
            utterances_per_s=_num(summ, "utterances_per_s"),
            peak_bytes=int(summ["peak_bytes"]) if _num(summ, "peak_bytes") else None,
            audio_s=_num(summ, "audio_s"), real_time_factor=_num(summ, "real_time_factor"),
            distribution=str(dist.get("name") if isinstance(dist, Mapping) else "") or r.spec.option("distribution", "") or "",
        ))
    rows.sort(key=lambda x: (x.level, x.layer != "softmax", x.layer, x.series, x.backend, x.dtype, x.batch))
    return rows


@dataclass(frozen=True)
class PerMinute:
    """Cost per minute of audio at one fixed-length point."""

    audio_s: float
    T: int
    latency_per_min_s: float
    energy_per_min_j: float | None


def per_minute(series) -> list[PerMinute]:
    """Per-minute-of-audio cost of a series' points whose T came from audio (sorted by duration)."""
    out = []
    for p in series.points:
        a = audio_seconds(p.record)
        if a is None or a <= 0:
            continue
        scale = 60.0 / a
        out.append(PerMinute(a, p.T, p.median_s * scale, p.energy_j * scale if p.energy_j is not None else None))
    return sorted(out, key=lambda x: x.audio_s)


@dataclass(frozen=True)
class Payoff:
    """Interpolated duration from which a layer is faster than the study's softmax baseline."""

    layer: str
    series: str                     # causal | non-causal | bidirectional
    variant: str
    facet: str
    kind: str                       # crossover kind: always | never | at | lost | n/a
    T_star: float | None
    audio_s: float | None           # T* in seconds of audio
    audio_low_s: float | None
    audio_high_s: float | None
    T_min: int | None = None        # the compared lengths (for "always" / "never")
    T_max: int | None = None
    rate: float | None = None       # positions per second of audio (None: T given directly)


def payoffs(comparisons) -> list[Payoff]:
    """Latency crossovers of layer/model-level comparisons, in seconds of audio."""
    out = []
    for c in comparisons:
        key = c.series.key
        if key.level not in SER_LEVELS or key.kernel == "softmax":
            continue
        rate = audio_rate_of_series(c.series)
        x = c.latency
        conv = (lambda T: T / rate if rate and T is not None and math.isfinite(T) else None)  # noqa: E731
        spec = c.series.points[0].record.spec
        out.append(Payoff(key.kernel, series_name(spec), key.variant, key.facet_label, x.kind, x.T_star,
                          conv(x.T_star), conv(x.T_low), conv(x.T_high), x.T_min, x.T_max, rate))
    return out


def audio_rate_of_series(series) -> float | None:
    for p in series.points:
        r = audio_rate(p.record.spec)
        if r:
            return r
    return None


@dataclass
class SerAnalysis:
    """The SER section of a report (values; the report formats them)."""

    study: Any                                    # profiler.analysis.study.StudySection
    replays: list[ReplayRow]
    payoffs: list[Payoff]
    per_minute: list[tuple[Any, list[PerMinute]]]  # (series, points) of series with audio-derived T
    rates: list[tuple[float, float]] = field(default_factory=list)  # (speech frames/s, text tokens/s)


def ser_analysis(records: Sequence[PointRecord], comparisons, series) -> SerAnalysis | None:
    """SER view of a run; None when it has no layer- or model-level points."""
    recs = [r for r in records if r.spec.level in SER_LEVELS]
    if not recs:
        return None
    rates = sorted({(float(o["frame_rate"]), float(o.get("text_rate", 0.0)))
                    for o in (dict(r.spec.options) for r in recs) if "frame_rate" in o})
    pm = [(s, per_minute(s)) for s in series if s.key.level in SER_LEVELS]
    # the study measured whole utterances: its comparison reads prefill points only (decode / streaming
    # points have their own section, ``analysis.decode``; payoffs compare series within one phase)
    whole = [r for r in recs if r.spec.phase == "prefill"]
    return SerAnalysis(study=study_section(whole), replays=replay_rows(whole), payoffs=payoffs(comparisons),
                       per_minute=[(s, p) for s, p in pm if p], rates=rates)
