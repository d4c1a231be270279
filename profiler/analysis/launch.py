"""Host overhead, launch-bound points and first-call cost: what separates device time from call latency.

Launch-bound. On CUDA a point stores two timings (``analysis.series``): device time (what the GPU
spends; launch overhead hidden) and call latency (one isolated call, sync to sync, host included).
Per T both series measured: ``host_overhead = median(call latency) - median(device time)``, and the
point is *launch-bound* when ``median(device time) < LAUNCH_BOUND_FRACTION x median(call latency)``:
then Python, the framework and the kernel launches, not the GPU, decide what one call costs, and a
faster kernel would not make one call faster. A series' statement names where it is launch-bound:
when the launch-bound points are the short end of the sweep, the boundary T~ is where the ratio
device/call crosses 0.5, interpolated in log-log between the last launch-bound and the first
device-bound length (as crossovers are), e.g. "launch-bound below T~40k: host overhead 0.26-0.61
ms"; the overhead range is over the launch-bound points. Records with a single timing (CPU, old CUDA
runs) have no call-latency series and get no statement.

First call. ``record.first_call`` is the wall time of a point's first call (compile, autotune, lazy
init), timed before warm-up; per series the report shows it per T, the largest, and whether the
compile cache (``FirstCall.cache_warm``) was warm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from profiler.analysis.series import Series, SeriesKey
from profiler.core.records import (
    LAUNCH_BOUND_FRACTION,  # device time < this fraction of call latency
)


@dataclass(frozen=True)
class LaunchPoint:
    T: int
    device_s: float
    call_s: float

    @property
    def host_overhead_s(self) -> float:
        return self.call_s - self.device_s

    @property
    def launch_bound(self) -> bool:
        return self.device_s < LAUNCH_BOUND_FRACTION * self.call_s


@dataclass(frozen=True)
class LaunchBound:
    """Device time against call latency over one series."""

    key: SeriesKey
    points: tuple[LaunchPoint, ...]

    @property
    def bound(self) -> list[LaunchPoint]:
        return [p for p in self.points if p.launch_bound]

    @property
    def any(self) -> bool:
        return bool(self.bound)

    @property
    def boundary_T(self) -> float | None:
        """T where device/call crosses 0.5 when the launch-bound points are the sweep's short end."""
        flags = [p.launch_bound for p in self.points]
        k = sum(flags)
        if k == 0 or k == len(flags) or flags != [True] * k + [False] * (len(flags) - k):
            return None
        a, b = self.points[k - 1], self.points[k]
        ra, rb = math.log(a.device_s / a.call_s), math.log(b.device_s / b.call_s)
        target = math.log(LAUNCH_BOUND_FRACTION)
        frac = (target - ra) / (rb - ra) if rb != ra else 0.5
        frac = min(max(frac, 0.0), 1.0)
        return math.exp(math.log(a.T) + frac * (math.log(b.T) - math.log(a.T)))

    def overhead_range_s(self, points: Sequence[LaunchPoint] | None = None) -> tuple[float, float] | None:
        pts = list(points if points is not None else (self.bound or self.points))
        if not pts:
            return None
        h = [p.host_overhead_s for p in pts]
        return min(h), max(h)


def launch_bound(device: Series, call: Series) -> LaunchBound:
    """Compare a device-time series with its call-latency series at every common T."""
    calls = {p.T: p for p in call.points}
    pts = tuple(LaunchPoint(p.T, p.median_s, calls[p.T].median_s) for p in device.points
                if p.T in calls and p.median_s > 0 and calls[p.T].median_s > 0)
    return LaunchBound(device.key, pts)


def launch_analysis(series: Sequence[Series], call_series: Sequence[Series]) -> list[LaunchBound]:
    """One ``LaunchBound`` per series that has a call-latency twin (same key)."""
    calls = {s.key: s for s in call_series}
    return [launch_bound(s, calls[s.key]) for s in series if s.key in calls]


# --------------------------------------------------------------------------- first call

@dataclass(frozen=True)
class FirstCalls:
    """First-call wall times of one series (seconds per T) and the compile cache state."""

    key: SeriesKey
    by_T: tuple[tuple[int, float], ...]
    cache_warm: bool | None          # True: every point warm; False: any cold; None: not recorded
    cache_dir: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def max_s(self) -> float:
        return max(s for _, s in self.by_T)

    @property
    def max_T(self) -> int:
        return max(self.by_T, key=lambda ts: ts[1])[0]


def first_calls(series: Sequence[Series]) -> list[FirstCalls]:
    """Per series with any ``record.first_call``: its first-call seconds by T and the cache state."""
    out = []
    for s in series:
        fcs = [(p.T, p.record.first_call) for p in s.points if p.record.first_call is not None]
        if not fcs:
            continue
        warm = [fc.cache_warm for _, fc in fcs if fc.cache_warm is not None]
        state = None if not warm else (all(warm))
        dirs = [fc.cache_dir for _, fc in fcs if fc.cache_dir]
        notes = tuple(dict.fromkeys(fc.note for _, fc in fcs if fc.note))
        out.append(FirstCalls(s.key, tuple((T, float(fc.wall_s)) for T, fc in fcs), state,
                              dirs[0] if dirs else None, notes))
    return out
