"""Decode and streaming analysis: per-token cost against the context length T, carried memory, crossovers.

Values only (the report renders them). From the decode / streaming series of a run
(``PointSpec.phase``; ``profiler.kernels.recurrent``):

* per-token latency = the median of a timed call / tokens per call (decode steps or chunk size), and
  its log-log slope against T with the 95% CI of ``fits.fit_slope`` (fitted on the upper part of the
  sweep, as for prefill): about 0 for a carried state, about 1 for a KV cache;
* tokens/s per stream and over the batch (``B`` concurrent streams);
* carried bytes at each T: measured (the allocated state / cache tensors) and analytic, with their
  log-log slope in T (0: constant state; 1: a cache growing linearly);
* the decode crossover ``T*`` per linear series: the context length from which it is faster per token
  than the softmax series of the same device, dtype, batch and phase (log-log interpolation between
  the two grid points around the sign change; ``always`` / ``never`` within the measured range);
* bandwidth: the analytic minimum bytes of a call (state read and written per token, or the KV cache
  read per query token; ``recurrent.analytic``) over its median, as a fraction of the calibrated
  DRAM bandwidth (decode is bandwidth-bound);
* the longest context whose carried memory fits the device: for a cache, the T at which the fitted
  ``bytes = a + b T`` reaches the device's memory; a state never grows (None: unbounded);
* streaming: the real-time factor of each chunk, ``latency per chunk / (chunk tokens / rate)``
  (below 1: the mechanism keeps up with live audio at that context), and the audio length the
  context stands for, ``T / rate``; ``rate`` = sequence positions per second of audio (speech frames
  + text tokens: the point's stored audio rates, else the run's ``frame_rate + text_rate``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from profiler.analysis.fits import SlopeFit, fit_slope
from profiler.analysis.ser import audio_rate
from profiler.analysis.series import Series
from profiler.core.records import PointRecord

#: Speech frames per second the streaming real-time factor assumes when the run stores none.
DEFAULT_FRAME_RATE = 50.0


@dataclass(frozen=True)
class DecodePoint:
    T: int
    per_token_s: float
    per_call_s: float
    tokens_per_s: float                  # per stream
    batch_tokens_per_s: float            # B streams together
    carried_bytes: int | None            # measured (allocated tensors)
    carried_analytic_bytes: int | None
    real_time_factor: float | None       # streaming only
    audio_s: float                       # the context as audio (T / frame rate)
    bandwidth_fraction: float | None = None   # analytic bytes per call / median / calibrated bandwidth


@dataclass(frozen=True)
class DecodeSeries:
    variant: str
    kernel: str
    backend: str
    phase: str
    facet: str
    B: int
    tokens_per_call: int
    carried_kind: str                    # "state" | "cache"
    points: tuple[DecodePoint, ...]
    slope: SlopeFit | None               # per-token latency vs T
    memory_slope: float | None           # log-log slope of carried bytes vs T
    bytes_per_token: float | None = None      # carried bytes added per context token (cache); ~0 for a state
    longest_T_fits: int | None = None         # longest context whose carried bytes fit the device (cache only)

    @property
    def match(self) -> tuple:
        return (self.phase, self.facet, self.tokens_per_call)


@dataclass(frozen=True)
class DecodeCrossover:
    variant: str
    facet: str
    kind: str                            # "at" | "always" | "never"
    T_star: float | None


@dataclass(frozen=True)
class DecodeAnalysis:
    series: tuple[DecodeSeries, ...]
    crossovers: tuple[DecodeCrossover, ...] = field(default_factory=tuple)
    frame_rate: float = DEFAULT_FRAME_RATE
    device_memory_bytes: float | None = None


def _memory_slope(Ts: Sequence[int], bs: Sequence[int | None]) -> float | None:
    pairs = [(t, b) for t, b in zip(Ts, bs) if b]
    if len(pairs) < 2:
        return None
    x = np.log([p[0] for p in pairs])
    y = np.log([p[1] for p in pairs])
    return float(np.polyfit(x, y, 1)[0])


def _linear_bytes(Ts: Sequence[int], bs: Sequence[int | None]) -> tuple[float, float] | None:
    """``(a, b)`` of ``bytes = a + b T`` by least squares (None with fewer than two measured points)."""
    pairs = [(t, b) for t, b in zip(Ts, bs) if b is not None]
    if len(pairs) < 2:
        return None
    b, a = np.polyfit([float(p[0]) for p in pairs], [float(p[1]) for p in pairs], 1)
    return float(a), float(b)


def decode_series(s: Series, frame_rate: float, bandwidth_bytes_per_s: float | None = None,
                  device_memory_bytes: float | None = None) -> DecodeSeries | None:
    """One decode / streaming series as values (None for a prefill series or one without points)."""
    if s.key.phase == "prefill" or not s.points:
        return None
    rec: PointRecord = s.points[0].record
    n = rec.spec.tokens_per_call
    frame_rate = audio_rate(rec.spec) or frame_rate
    pts = []
    for p in s.points:
        extra = p.record.extra or {}
        per_tok = p.median_s / n
        rtf = (p.median_s / (n / frame_rate)) if s.key.phase == "streaming" else None
        pts.append(DecodePoint(T=p.T, per_token_s=per_tok, per_call_s=p.median_s, tokens_per_s=1.0 / per_tok,
                               batch_tokens_per_s=s.key.B / per_tok, carried_bytes=extra.get("carried_bytes"),
                               carried_analytic_bytes=extra.get("carried_bytes_analytic"),
                               real_time_factor=rtf, audio_s=p.T / frame_rate,
                               bandwidth_fraction=(p.record.bytes_moved / p.median_s / bandwidth_bytes_per_s
                                                   if p.record.bytes_moved and bandwidth_bytes_per_s else None)))
    samples = [tuple(x / n for x in p.record.timing.samples_s) for p in s.points]
    slope = fit_slope([p.T for p in s.points], samples) if len(s.points) >= 2 else None
    kind = str((rec.extra or {}).get("carried_kind", ""))
    lin = _linear_bytes([p.T for p in pts], [p.carried_bytes for p in pts])
    per_tok = lin[1] if lin else None
    fits = None
    if kind == "cache" and lin and per_tok and per_tok > 0 and device_memory_bytes:
        fits = max(0, int((device_memory_bytes - lin[0]) / per_tok))
    return DecodeSeries(variant=s.key.variant, kernel=s.key.kernel, backend=s.key.backend, phase=s.key.phase,
                        facet=s.key.facet_label, B=s.key.B, tokens_per_call=n,
                        carried_kind=kind, points=tuple(pts), slope=slope,
                        memory_slope=_memory_slope([p.T for p in pts], [p.carried_bytes for p in pts]),
                        bytes_per_token=per_tok, longest_T_fits=fits)


def crossover(lin: DecodeSeries, base: DecodeSeries) -> DecodeCrossover:
    """Where ``lin`` becomes faster per token than ``base`` on their common T grid (module doc)."""
    a = {p.T: p.per_token_s for p in lin.points}
    b = {p.T: p.per_token_s for p in base.points}
    Ts = sorted(set(a) & set(b))
    faster = [a[T] < b[T] for T in Ts]
    if not Ts or not any(faster):
        return DecodeCrossover(lin.variant, lin.facet, "never", None)
    if all(faster):
        return DecodeCrossover(lin.variant, lin.facet, "always", None)
    i = max(j for j, f in enumerate(faster) if not f) + 1   # first T of the final run where lin is faster
    if i >= len(Ts):
        return DecodeCrossover(lin.variant, lin.facet, "never", None)
    T0, T1 = Ts[i - 1], Ts[i]
    d0 = math.log(a[T0]) - math.log(b[T0])
    d1 = math.log(a[T1]) - math.log(b[T1])
    frac = d0 / (d0 - d1) if d0 != d1 else 1.0
    return DecodeCrossover(lin.variant, lin.facet, "at", math.exp(math.log(T0) + frac * (math.log(T1) - math.log(T0))))


def analyze_decode(series: Sequence[Series], frame_rate: float | None = None, *,
                   bandwidth_bytes_per_s: float | None = None,
                   device_memory_bytes: float | None = None) -> DecodeAnalysis | None:
    """The decode view of a run's series (None when the run has no decode / streaming point).

    ``bandwidth_bytes_per_s``: the run's calibrated bandwidth; ``device_memory_bytes``: the device's
    memory (host memory on CPU), for the longest context a KV cache fits."""
    fr = frame_rate or DEFAULT_FRAME_RATE      # positions per second of audio
    out = [d for d in (decode_series(s, fr, bandwidth_bytes_per_s, device_memory_bytes) for s in series)
           if d is not None]
    if not out:
        return None
    cross = []
    for d in out:
        if d.kernel == "softmax":
            continue
        base = next((b for b in out if b.kernel == "softmax" and b.match == d.match), None)
        if base is not None:
            cross.append(crossover(d, base))
    return DecodeAnalysis(series=tuple(out), crossovers=tuple(cross), frame_rate=fr,
                          device_memory_bytes=device_memory_bytes)


__all__ = ["DecodePoint", "DecodeSeries", "DecodeCrossover", "DecodeAnalysis", "analyze_decode", "crossover",
           "decode_series", "DEFAULT_FRAME_RATE"]
