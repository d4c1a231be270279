"""Conditions of a run's points summarised (values only): clock, temperature, power, CPU frequency and
load ranges, L2 state, cool-down, locked clocks, and which points were re-measured or stayed throttled."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from profiler.core.records import PointRecord

#: sample keys summarised as (min, max) over every point's before/during/after samples
KEYS = ("sm_clock_mhz", "mem_clock_mhz", "temp_c", "power_w", "freq_mhz", "load_1m")


@dataclass(frozen=True)
class RunConditions:
    points: int                                       # points with conditions recorded
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)   # KEYS -> (min, max)
    l2: tuple[str, ...] = ()
    cooldown_s: tuple[float, ...] = ()
    clocks_locked: tuple[bool, ...] = ()
    remeasured: tuple[str, ...] = ()                  # ids re-measured after throttling
    throttled: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (id, reasons) still throttled: not gated on
    affinity: tuple[int, ...] | None = None           # CPUs the workers were pinned to (the widest set seen)


def run_conditions(records: Sequence[PointRecord]) -> RunConditions | None:
    """None when no record carries conditions (runs from before they were sampled)."""
    with_c = [r for r in records if r.conditions is not None]
    if not with_c:
        return None
    ranges: dict[str, tuple[float, float]] = {}
    affinity: set[int] = set()
    for r in with_c:
        c = r.conditions
        for s in (c.before, *c.during, c.after):
            for k in KEYS:
                v = s.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    lo, hi = ranges.get(k, (v, v))
                    ranges[k] = (min(lo, v), max(hi, v))
            aff = s.get("affinity")
            if isinstance(aff, list):
                affinity.update(int(x) for x in aff)
    return RunConditions(
        points=len(with_c), ranges=ranges,
        l2=tuple(sorted({r.conditions.l2 for r in with_c})),
        cooldown_s=tuple(sorted({r.conditions.cooldown_s for r in with_c})),
        clocks_locked=tuple(sorted({r.conditions.clocks_locked for r in with_c if r.conditions.clocks_locked is not None})),
        remeasured=tuple(r.id for r in with_c if r.conditions.remeasured),
        throttled=tuple((r.id, r.conditions.throttle_reasons) for r in with_c if r.conditions.throttled),
        affinity=tuple(sorted(affinity)) or None)
