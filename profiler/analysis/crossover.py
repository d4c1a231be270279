"""Comparisons with a softmax baseline: ratios at every T and crossover lengths T*.

Baseline: like with like. By default a causal series is compared with causal softmax and a
non-causal one with non-causal softmax (SDPA, else naive, else the torch port; ``Baseline``), each
matching on everything else (level, device, dtype, mode, B, H, D). Where the run has softmax in only
one form, every series is compared with that form and the comparison says so (``cross_causal``).
Users pick one mechanism for every series with ``KERNEL[/BACKEND[/causal|full]]``. Layer- and model-level series whose match
group lacks the chosen baseline are compared with the study's own baseline layer there
(``softmax/torch`` of the same causality, else the other), so a run with kernels and layers compares both.

Ratios, at every T both series measured: speedup = t_baseline / t_variant (medians; interval from
the two medians' 95% CIs, pessimistic over optimistic ends), memory saving = peak_baseline /
peak_variant, energy saving = E_baseline / E_variant. A ratio above 1 means the variant is better.

Crossover T*: the length from which the variant stays better, found by linear interpolation of
log(ratio) against log(T) between the last two points where the ratio crosses 1. The interval is the
same computation on the optimistic and pessimistic ratio bounds. Outcomes: "always" (better at every
measured T), "never" (never better within the sweep), "at" (T* inside the sweep), "lost" (better at
short T only, not at the longest).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from profiler.analysis.series import Series, SeriesKey
from profiler.core.errors import UsageError

#: Default baseline preference per causality: (kernel, backend); the first one present wins.
DEFAULT_BASELINES = (("softmax", "sdpa"), ("softmax", "naive"), ("softmax", "torch"))


@dataclass(frozen=True)
class Variant:
    kernel: str
    backend: str
    causal: bool
    window: int = 0        # a sliding-window softmax is its own variant (compared with full softmax)

    @classmethod
    def of(cls, key: SeriesKey) -> "Variant":
        return cls(key.kernel, key.backend, key.causal, getattr(key, "window", 0))

    def __str__(self) -> str:
        w = f" w={self.window}" if self.window else ""
        return f"{self.kernel}/{self.backend}/{'causal' if self.causal else 'full'}{w}"


@dataclass(frozen=True)
class Baseline:
    """Which mechanism each series is compared with: ``causal`` for causal series, ``full`` for
    non-causal ones (like with like). When only one is present it serves both and such comparisons
    are *cross-causal*; ``requested`` marks one mechanism the user chose for every series."""

    causal: Variant | None
    full: Variant | None
    requested: bool = False

    def for_causal(self, causal: bool) -> Variant | None:
        """The baseline of a series with this causality (the other form when this one is absent)."""
        own = self.causal if causal else self.full
        return own if own is not None else (self.full if causal else self.causal)

    def cross_causal(self, causal: bool) -> bool:
        """True when a series of this causality is compared with the other form of softmax."""
        b = self.for_causal(causal)
        return b is not None and b.causal != causal

    @property
    def variants(self) -> tuple[Variant, ...]:
        return tuple(dict.fromkeys(v for v in (self.causal, self.full) if v is not None))

    def __contains__(self, v: object) -> bool:
        return v in self.variants

    def __str__(self) -> str:
        return " and ".join(str(v) for v in self.variants)


#: The study's softmax layer (SER levels): the baseline of layer/model groups without the chosen one
#: (its own causality first, like with like).
LAYER_BASELINE = ("softmax", "torch")


def choose_baseline(series: Sequence[Series], requested: str | None = None) -> Baseline | None:
    """The baselines: ``requested`` (``KERNEL[/BACKEND[/causal|full]]``, one mechanism for every
    series) or, by default, softmax in each causality (``DEFAULT_BASELINES`` order, then any softmax).

    Raises UsageError naming the mechanisms present when ``requested`` matches none of them.
    """
    present: list[Variant] = []
    for s in series:
        v = Variant.of(s.key)
        if v not in present:
            present.append(v)
    if requested is None:
        def first(causal: bool) -> Variant | None:
            for k, b in DEFAULT_BASELINES:
                if Variant(k, b, causal) in present:
                    return Variant(k, b, causal)
            return next((v for v in sorted(present, key=lambda v: v.window != 0)
                         if v.kernel == "softmax" and v.causal == causal), None)

        causal, full = first(True), first(False)
        return Baseline(causal, full) if (causal or full) else None
    parts = requested.strip().split("/")
    if not parts[0] or len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("causal", "full")):
        raise UsageError(f"--baseline {requested!r}: expected KERNEL[/BACKEND[/causal|full]], e.g. softmax/sdpa/full")
    cands = [v for v in present if v.kernel == parts[0]
             and (len(parts) < 2 or v.backend == parts[1])
             and (len(parts) < 3 or v.causal == (parts[2] == "causal"))]
    if not cands:
        valid = ", ".join(str(v) for v in present) or "none (the run has no successful points)"
        raise UsageError(f"--baseline {requested!r} matches no measured series; valid: {valid}")
    order = {Variant(k, b, c): 2 * i + c for i, (k, b) in enumerate(DEFAULT_BASELINES) for c in (False, True)}
    cands.sort(key=lambda v: (v.window != 0, order.get(v, len(order)), v.causal))  # full attention, non-causal first
    return Baseline(cands[0], cands[0], requested=True)


@dataclass(frozen=True)
class Crossover:
    """When a variant becomes better than the baseline on one metric."""

    kind: str                      # "always" | "never" | "at" | "lost" | "n/a"
    T_star: float | None = None
    T_low: float | None = None     # earliest plausible T* (optimistic bound)
    T_high: float | None = None    # latest plausible T* (None: beyond the sweep)
    T_min: int | None = None
    T_max: int | None = None


def _cross_T(T: np.ndarray, r: np.ndarray) -> tuple[str, float | None]:
    """Kind and T* where ratio r (>1 better) last crosses 1 upward, log-log interpolated."""
    better = r > 1.0
    if better.all():
        return "always", None
    if not better[-1]:
        return ("lost", None) if better.any() else ("never", None)
    i = int(np.flatnonzero(~better)[-1])          # last point not better; i+1 .. end are better
    lt0, lt1 = math.log(T[i]), math.log(T[i + 1])
    lr0, lr1 = math.log(r[i]), math.log(r[i + 1])
    frac = (0.0 - lr0) / (lr1 - lr0) if lr1 != lr0 else 0.5
    return "at", math.exp(lt0 + frac * (lt1 - lt0))


def crossover(T: Sequence[float], ratio: Sequence[float], ratio_lo: Sequence[float] | None = None,
              ratio_hi: Sequence[float] | None = None) -> Crossover:
    """Crossover of ``ratio`` (baseline / variant; > 1 = variant better) over T, with bounds."""
    T = np.asarray(T, dtype=float)
    r = np.asarray(ratio, dtype=float)
    ok = np.isfinite(r) & (r > 0)
    T, r = T[ok], r[ok]
    if T.size == 0:
        return Crossover("n/a")
    tmin, tmax = int(T.min()), int(T.max())
    kind, ts = _cross_T(T, r)
    if kind != "at":
        return Crossover(kind, T_min=tmin, T_max=tmax)
    lo_T: float | None = ts
    hi_T: float | None = ts
    if ratio_hi is not None:   # optimistic bound -> earliest T*
        k, t = _cross_T(T, np.asarray(ratio_hi, dtype=float)[ok])
        lo_T = float(T[0]) if k == "always" else (t if k == "at" else ts)
    if ratio_lo is not None:   # pessimistic bound -> latest T*
        k, t = _cross_T(T, np.asarray(ratio_lo, dtype=float)[ok])
        hi_T = t if k == "at" else (None if k in ("never", "lost") else ts)
    if lo_T is not None:
        lo_T = min(lo_T, ts)
    if hi_T is not None:
        hi_T = max(hi_T, ts)
    return Crossover("at", ts, lo_T, hi_T, tmin, tmax)


@dataclass(frozen=True)
class RatioRow:
    """Variant vs baseline at one T (None where a metric is missing on either side)."""

    T: int
    speedup: float
    speedup_lo: float
    speedup_hi: float
    memory_saving: float | None
    energy_saving: float | None


@dataclass
class Comparison:
    """One series against its matching baseline series."""

    series: Series
    baseline: Series
    rows: list[RatioRow] = field(default_factory=list)
    latency: Crossover = Crossover("n/a")
    memory: Crossover = Crossover("n/a")
    energy: Crossover = Crossover("n/a")

    def _max(self, attr: str) -> tuple[float, int] | None:
        vals = [(getattr(r, attr), r.T) for r in self.rows if getattr(r, attr) is not None]
        return max(vals) if vals else None

    @property
    def max_speedup(self) -> tuple[float, int] | None:
        """(largest measured speedup, T where it occurred)."""
        return self._max("speedup")

    @property
    def max_memory_saving(self) -> tuple[float, int] | None:
        return self._max("memory_saving")

    @property
    def max_energy_saving(self) -> tuple[float, int] | None:
        return self._max("energy_saving")


def _safe_ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0 or a <= 0:
        return None
    return a / b


def compare(series: Series, baseline: Series) -> Comparison:
    """Ratios at each common T and crossovers of latency, memory and energy."""
    cmp = Comparison(series, baseline)
    base = {p.T: p for p in baseline.points}
    for p in series.points:
        b = base.get(p.T)
        if b is None:
            continue
        cmp.rows.append(RatioRow(
            T=p.T,
            speedup=b.median_s / p.median_s,
            speedup_lo=b.ci_low_s / p.ci_high_s,
            speedup_hi=b.ci_high_s / p.ci_low_s,
            memory_saving=_safe_ratio(b.peak_bytes, p.peak_bytes),
            energy_saving=_safe_ratio(b.energy_j, p.energy_j),
        ))
    rows = cmp.rows
    if rows:
        T = [r.T for r in rows]
        cmp.latency = crossover(T, [r.speedup for r in rows], [r.speedup_lo for r in rows],
                                [r.speedup_hi for r in rows])
        mem = [(r.T, r.memory_saving) for r in rows if r.memory_saving is not None]
        if mem:
            cmp.memory = crossover([t for t, _ in mem], [m for _, m in mem])
        en = [(r.T, r.energy_saving) for r in rows if r.energy_saving is not None]
        if en:
            cmp.energy = crossover([t for t, _ in en], [e for _, e in en])
    return cmp


def compare_all(series: Sequence[Series], baseline: Baseline | None) -> list[Comparison]:
    """Every non-baseline series against the baseline series of its causality with the same match key
    (the other causality's where the run lacks its own)."""
    if baseline is None:
        return []
    bases: dict[tuple, Series] = {}
    for s in series:
        v = Variant.of(s.key)
        for causal in (True, False):
            if baseline.for_causal(causal) == v:
                bases[(s.key.match_key, causal)] = s
    for causal in (True, False):     # layer/model groups without the chosen baseline: the study's layer
        for pc in (causal, not causal):
            for s in series:
                if s.key.level != "kernel" and Variant.of(s.key) == Variant(*LAYER_BASELINE, pc):
                    bases.setdefault((s.key.match_key, causal), s)
    base_keys = {b.key for b in bases.values()}
    out = []
    for s in series:
        if s.key in base_keys:
            continue
        b = bases.get((s.key.match_key, s.key.causal))
        if b is not None:
            out.append(compare(s, b))
    return out
