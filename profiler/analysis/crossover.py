"""Comparisons with a softmax baseline: ratios at every T and crossover lengths T*.

Baseline. One mechanism (``kernel/backend/causal|full``) is the reference; each other series is
compared with the baseline series that agrees on everything else (level, device, dtype, mode, B, H,
D). Default: softmax SDPA non-causal if the run has it, else naive softmax, else SDPA causal. Users
pick another with ``KERNEL[/BACKEND[/causal|full]]``. Layer- and model-level series whose match
group lacks the chosen baseline are compared with the study's own baseline layer there
(``softmax/torch/full``, else ``softmax/torch/causal``), so a run with kernels and layers compares both.

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
from profiler.core.fmt import count

#: Default baseline preference: (kernel, backend, causal); first one present wins.
DEFAULT_BASELINES = (("softmax", "sdpa", False), ("softmax", "naive", False), ("softmax", "naive", True),
                     ("softmax", "sdpa", True), ("softmax", "torch", False), ("softmax", "torch", True))


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


#: The study's softmax layer (SER levels): the baseline of layer/model groups without the chosen one.
LAYER_BASELINES = (("softmax", "torch", False), ("softmax", "torch", True))


def choose_baseline(series: Sequence[Series], requested: str | None = None) -> Variant | None:
    """The baseline mechanism: ``requested`` (``KERNEL[/BACKEND[/causal|full]]``) or the default order.

    Raises UsageError naming the mechanisms present when ``requested`` matches none of them.
    """
    present: list[Variant] = []
    for s in series:
        v = Variant.of(s.key)
        if v not in present:
            present.append(v)
    if requested is None:
        for k, b, c in DEFAULT_BASELINES:
            if Variant(k, b, c) in present:
                return Variant(k, b, c)
        return next((v for v in sorted(present, key=lambda v: v.window != 0) if v.kernel == "softmax"), None)
    parts = requested.strip().split("/")
    if not parts[0] or len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("causal", "full")):
        raise UsageError(f"--baseline {requested!r}: expected KERNEL[/BACKEND[/causal|full]], e.g. softmax/sdpa/full")
    cands = [v for v in present if v.kernel == parts[0]
             and (len(parts) < 2 or v.backend == parts[1])
             and (len(parts) < 3 or v.causal == (parts[2] == "causal"))]
    if not cands:
        valid = ", ".join(str(v) for v in present) or "none (the run has no successful points)"
        raise UsageError(f"--baseline {requested!r} matches no measured series; valid: {valid}")
    order = {Variant(*d): i for i, d in enumerate(DEFAULT_BASELINES)}
    cands.sort(key=lambda v: (v.window != 0, order.get(v, len(order)), v.causal))  # full attention, non-causal first
    return cands[0]


@dataclass(frozen=True)
class Crossover:
    """When a variant becomes better than the baseline on one metric."""

    kind: str                      # "always" | "never" | "at" | "lost" | "n/a"
    T_star: float | None = None
    T_low: float | None = None     # earliest plausible T* (optimistic bound)
    T_high: float | None = None    # latest plausible T* (None: beyond the sweep)
    T_min: int | None = None
    T_max: int | None = None

    def text(self, metric: str = "faster") -> str:
        if self.kind == "always":
            return f"{metric} at every measured T ({_fmt_T(self.T_min)}..{_fmt_T(self.T_max)})"
        if self.kind == "never":
            return f"never {metric} within the sweep (T≤{_fmt_T(self.T_max)})"
        if self.kind == "lost":
            return f"{metric} at short T only, not at T={_fmt_T(self.T_max)}"
        if self.kind == "at":
            lo = _fmt_T(self.T_low) if self.T_low is not None else "?"
            hi = _fmt_T(self.T_high) if self.T_high is not None else f">{_fmt_T(self.T_max)}"
            return f"{metric} from T*≈{_fmt_T(self.T_star)} (interval {lo}..{hi})"
        return "not comparable (no common lengths)"

    @property
    def short(self) -> str:
        if self.kind == "at":
            return f"T*≈{_fmt_T(self.T_star)}"
        return {"always": "always", "never": "never in sweep", "lost": "short T only"}.get(self.kind, "n/a")


def _fmt_T(T: float | None) -> str:
    return count(T, missing="?", infinite=None)


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


def compare_all(series: Sequence[Series], baseline: Variant | None) -> list[Comparison]:
    """Every non-baseline series against the baseline series with the same match key."""
    if baseline is None:
        return []
    bases = {s.key.match_key: s for s in series if Variant.of(s.key) == baseline}
    for pref in LAYER_BASELINES:
        for s in series:
            if s.key.level != "kernel" and s.key.match_key not in bases and Variant.of(s.key) == Variant(*pref):
                bases[s.key.match_key] = s
    base_keys = {b.key for b in bases.values()}
    out = []
    for s in series:
        if s.key in base_keys:
            continue
        b = bases.get(s.key.match_key)
        if b is not None:
            out.append(compare(s, b))
    return out
