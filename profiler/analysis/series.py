"""Points and series: the per-point summaries every other analysis consumes.

A *point* summary (``PointStats``) is one stored ``PointRecord`` reduced to what analysis needs:
the median latency and its 95% CI (order statistics of the raw samples, ``profiler.core.stats``), the
samples themselves (for bootstrap fits), peak/analytic memory, energy per call and noise flags.

A *series* is the set of points that differ only in the sequence length T: kernel x backend x
dtype x mode x B x causal x device (plus level, H, D and options, which a sweep usually holds
fixed), and the shape axes: key/value heads, value dim and sliding window. Figures facet by the
grouped heads and the value dim (``SeriesKey.shape_label``: latency vs T per kv-heads ratio), and
the window is part of the mechanism's variant (``softmax/sdpa/causal w=256`` is drawn, compared and
gated beside full softmax and the linear kernels). Scaling fits, crossovers and figures work per series. In a run whose records were measured
on more than one device model (``analysis.devices``), the model is part of the series too: points
from two GPU models are never fitted, compared or averaged together, and labels name the model.

Two timings (CUDA records of the new schema). A CUDA point stores its *device time* in
``record.timing`` (``quantity == "device_time"``: graph replay, kernel durations or events after a
spin; launch overhead hidden) and its *call latency* (one isolated call, sync to sync, host
included) in ``record.call_latency``. Series therefore carry a ``metric``: ``"latency"`` reads
``record.timing`` (the primary number: device time on new CUDA records, call latency on CPU, and on
old CUDA records the single mixed timing, labelled "latency (old single timing)"), ``"call_latency"``
reads ``record.call_latency`` and exists only for records that have one. ``build_series(...,
metric="call_latency")`` gives the parallel call-latency series; fits, crossovers and the roofline
run unchanged on either list. ``quantity_label`` names what a series' numbers are.

Only ``status == "ok"`` points that were not interpreted are performance points. Utterance-replay
points (option ``replay=N``: one call per utterance of varying length) are not fixed-T points: they are
summarised by ``analysis.ser``, never fitted. Interpreted points
(``spec.interpret``: fla kernels run under Triton's CPU interpreter) are correctness evidence only:
they are listed, never fitted and never shown as performance. Pure numpy; no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from profiler.analysis.devices import assign_models
from profiler.core.records import (
    LAYER_LEVELS,
    HeadDims,
    PointRecord,
    PointSpec,
    Timing,
    energy_per_call,
)

#: A point's median CI wider than this (half-width relative to the median) is flagged (the timing's own flag).
WIDE_CI = Timing.WIDE_CI
#: Fewer timed samples than this is flagged.
FEW_SAMPLES = Timing.FEW_SAMPLES


#: Options that only record how T was derived (audio rates): part of the key, not of the label.
_HIDDEN_OPTIONS = ("frame_rate", "text_rate")


@dataclass(frozen=True)
class SeriesKey(HeadDims):
    """Identity of a series: everything in a ``PointSpec`` but T."""

    level: str
    kernel: str
    backend: str
    device: str
    dtype: str
    mode: str
    B: int
    H: int
    D: int
    causal: bool
    options: tuple[tuple[str, str], ...] = ()
    device_model: str = ""     # set only in runs measured on several device models
    phase: str = "prefill"     # PointSpec.phase: decode / streaming series are compared among themselves
    kv_heads: int = 0          # PointSpec shape axes (0: the default: kv heads = H, Dv = D, no window)
    value_dim: int = 0
    window: int = 0

    @classmethod
    def of(cls, spec: PointSpec, device_model: str = "") -> "SeriesKey":
        return cls(spec.level, spec.kernel, spec.backend, spec.device, spec.dtype, spec.mode,
                   spec.B, spec.H, spec.D, spec.causal, tuple(spec.options), device_model, spec.phase,
                   getattr(spec, "kv_heads", 0), getattr(spec, "value_dim", 0), getattr(spec, "window", 0))

    @property
    def is_layer(self) -> bool:
        """A series of whole layers (levels layer / model): ``kernel`` names the layer, ``hidden`` its width."""
        return self.level in LAYER_LEVELS

    @property
    def shape_label(self) -> str:
        """The grouped heads and value dim, when not the default: ``H8:KV2 Dv128`` ("" otherwise)."""
        parts = []
        if self.kv_heads:
            parts.append(f"H{self.H}:KV{self.kv_heads}")
        if self.value_dim:
            parts.append(f"Dv{self.value_dim}")
        return " ".join(parts)

    @property
    def variant(self) -> str:
        """``kernel/backend/causal|full`` (the mechanism as drawn in figures and tables), ``@ model`` when split."""
        v = f"{self.kernel}/{self.backend}/{'causal' if self.causal else 'full'}"
        if self.level != "kernel":
            v = f"{self.level}:{v}"
        if self.phase != "prefill":
            v = f"{self.phase}:{v}"
        shown = [(k, val) for k, val in self.options if k not in _HIDDEN_OPTIONS]
        if self.window:
            shown.insert(0, ("w", str(self.window)))
        if shown:
            v += " " + ",".join(f"{k}={val}" for k, val in shown)
        if self.device_model:
            v += f" @ {self.device_model}"
        return v

    @property
    def device_label(self) -> str:
        return f"{self.device} · {self.device_model}" if self.device_model else self.device

    @property
    def facet(self) -> tuple[str, str, str, int, str]:
        """What figures facet by: device (and model, when split), dtype, mode, batch, grouped heads / Dv."""
        return (self.device_label, self.dtype, self.mode, self.B, self.shape_label)

    @property
    def facet_label(self) -> str:
        shape = f" {self.shape_label}" if self.shape_label else ""
        return f"{self.device_label} {self.dtype} {self.mode} B={self.B}{shape}"

    @property
    def label(self) -> str:
        # the variant already names the device model when there is one
        shape = f" {self.shape_label}" if self.shape_label else ""
        return f"{self.variant} [{self.device} {self.dtype} {self.mode} B={self.B}{shape}]"

    @property
    def match_key(self) -> tuple:
        """What must agree for two series to be compared (all but the mechanism, whose variant includes
        the window): a grouped-head or wide-value series is compared with the baseline of the same shape."""
        return (self.level, self.device, self.device_model, self.dtype, self.mode, self.B, self.H, self.D,
                self.phase, tuple((k, v) for k, v in self.options if k in ("steps", "chunk")),
                self.kv_heads, self.value_dim)

    @property
    def is_softmax(self) -> bool:
        return self.kernel == "softmax"


@dataclass(frozen=True)
class PointStats:
    """One performance point reduced for analysis (SI units)."""

    record: PointRecord
    T: int
    samples_s: np.ndarray
    median_s: float
    ci_low_s: float
    ci_high_s: float
    peak_bytes: int | None
    analytic_bytes: int | None
    energy_j: float | None
    flags: tuple[str, ...] = ()

    @property
    def rel_ci(self) -> float:
        if not self.median_s or math.isnan(self.median_s):
            return math.inf
        return (self.ci_high_s - self.ci_low_s) / 2.0 / self.median_s

    @property
    def tokens_per_s(self) -> float:
        """Tokens processed per second: B x tokens per call (T for prefill, the steps or chunk otherwise)."""
        spec = self.record.spec
        return spec.B * spec.tokens_per_call / self.median_s if self.median_s > 0 else math.nan


#: Series metrics: which stored Timing a series reads.
METRICS = ("latency", "call_latency")


def timing_of(rec: PointRecord, metric: str = "latency"):
    """The record's Timing for ``metric`` (``call_latency`` is None on CPU and on old records)."""
    if metric == "latency":
        return rec.timing
    if metric == "call_latency":
        return rec.call_latency
    raise ValueError(f"unknown series metric {metric!r}; valid: {', '.join(METRICS)}")


def quantity_label(rec: PointRecord, metric: str = "latency") -> str:
    """What the numbers of ``metric`` are: device time, call latency, or the old single CUDA timing."""
    if metric == "call_latency":
        return "call latency"
    t = rec.timing
    q = t.quantity if t is not None else ""
    if q == "device_time":
        return "device time"
    if q == "call_latency" or rec.spec.device == "cpu":
        return "call latency"
    if t is not None and t.timer == "interpreted":
        return "interpreted"
    return "latency (old single timing)"


@dataclass
class Series:
    """The performance points of one series, sorted by T; ``metric``: which timing they summarise."""

    key: SeriesKey
    points: list[PointStats] = field(default_factory=list)
    metric: str = "latency"

    @property
    def quantity(self) -> str:
        """``device time`` | ``call latency`` | ``latency (old single timing)`` (from the first point)."""
        return quantity_label(self.points[0].record, self.metric) if self.points else ""

    @property
    def T(self) -> np.ndarray:
        return np.array([p.T for p in self.points], dtype=float)

    @property
    def median_s(self) -> np.ndarray:
        return np.array([p.median_s for p in self.points], dtype=float)

    def at(self, T: int) -> PointStats | None:
        for p in self.points:
            if p.T == T:
                return p
        return None


def point_flags(rec: PointRecord) -> tuple[str, ...]:
    """Noise flags of one point: why its number deserves less trust (the timing's own flags, and more)."""
    flags = []
    if rec.spec.interpret:
        flags.append("interpreted")
    if rec.timing is not None:
        flags.extend(rec.timing.noise_flags)
    if rec.energy is not None and rec.energy.throttled:
        why = ", ".join(rec.energy.throttle_reasons) or "throttled"
        flags.append(f"throttled energy window ({why})")
    if rec.flagged:
        flags.append(rec.flagged)                       # timed while throttled: never gated on
    elif rec.conditions is not None and rec.conditions.remeasured:
        flags.append(f"re-measured after throttling ({', '.join(rec.conditions.first_throttle_reasons)})")
    return tuple(flags)


def point_stats(rec: PointRecord, metric: str = "latency") -> PointStats | None:
    """Summarize one record (its ``metric`` timing); None if it has no such samples."""
    t = timing_of(rec, metric)
    if t is None or not t.samples_s:
        return None
    x = np.asarray(t.samples_s, dtype=float)
    s = t.summary
    mem = rec.memory
    peak, analytic = (mem.peak_bytes, mem.analytic_bytes) if mem else (None, None)
    if rec.spec.phase != "prefill":   # decode / streaming: a stream holds its carried state or KV cache
        peak, analytic = _plus_carried(peak, (rec.extra or {}).get("carried_bytes")), _plus_carried(
            analytic, (rec.extra or {}).get("carried_bytes_analytic"))
    energy = energy_per_call(rec.energy)[0]   # None when below resolution (never negative)
    return PointStats(
        record=rec, T=rec.spec.T, samples_s=x, median_s=s.median, ci_low_s=s.ci_low, ci_high_s=s.ci_high,
        peak_bytes=peak, analytic_bytes=analytic, energy_j=energy, flags=point_flags(rec),
    )


def _plus_carried(call_peak: int | None, carried: Any) -> int | None:
    """Memory of a decode / streaming step: the carried state or cache (the step's inputs, which the
    call's peak above its inputs leaves out) plus that peak; None when the carried bytes are unknown."""
    if not isinstance(carried, (int, float)) or isinstance(carried, bool):
        return call_peak
    return int(carried) + int(call_peak or 0)


def is_performance(rec: PointRecord) -> bool:
    """A point whose numbers may be shown as performance: ran, verified, not interpreted."""
    return (rec.status == "ok" and not rec.spec.interpret and rec.timing is not None and bool(rec.timing.samples_s)
            and rec.spec.option("replay") is None)


def build_series(records: Iterable[PointRecord], models: Mapping[str, str] | None = None,
                 metric: str = "latency") -> list[Series]:
    """Group performance points into series (sorted by kernel, backend, ... ; points by T).

    ``models``: point id -> device model (``analysis.devices.assign_models``); default: computed here.
    ``metric``: ``latency`` (``record.timing``) or ``call_latency`` (only records that store one).
    """
    records = list(records)
    if models is None:
        models = assign_models(records)
    groups: dict[SeriesKey, Series] = {}
    for rec in records:
        if not is_performance(rec):
            continue
        ps = point_stats(rec, metric)
        if ps is None:
            continue
        key = SeriesKey.of(rec.spec, models.get(rec.id, ""))
        groups.setdefault(key, Series(key, metric=metric)).points.append(ps)
    out = []
    for key in sorted(groups, key=_sort_key):
        s = groups[key]
        s.points.sort(key=lambda p: p.T)
        out.append(s)
    return out


def _sort_key(k: SeriesKey) -> tuple:
    # softmax first so that baselines lead tables and legends
    return (k.level, 0 if k.is_softmax else 1, k.kernel, k.backend, not k.causal, k.device, k.device_model,
            k.dtype, k.mode, k.B, k.H, k.D, k.kv_heads, k.value_dim, k.window, k.options)


def interpreted_records(records: Sequence[PointRecord]) -> list[PointRecord]:
    return [r for r in records if r.spec.interpret]
