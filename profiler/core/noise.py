"""A machine's measured run-to-run noise: the noise profile the CI gate uses as its floor.

Latency on a shared machine varies on three levels: between samples of one process, between
worker processes of one run (memory layout, allocator state, core placement) and between runs
(machine state minutes or hours apart: frequency, neighbours, page cache). Samples within one
process cannot show the two upper levels, so a gate built on them alone cries wolf.
``serprof gate-calibrate`` measures the two upper levels on this machine from A/A runs of identical
code (``profiler.analysis.noise``) and stores them per *size class* of point (by median latency:
short calls are noisier in relative terms) as a small JSON file (``profiler.store.noise``).

All spreads are standard deviations of the natural log of a latency quantile, i.e. relative:
0.02 is about 2%. ``df`` are the degrees of freedom behind each estimate (how much to trust it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from profiler.core import fmt

NOISE_FORMAT = "serprof-noise-profile"
NOISE_SCHEMA_VERSION = 1
#: Size-class edges (seconds per call): decades from 10 us to 1 s.
CLASS_EDGES_S = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def size_class(median_s: float) -> tuple[float, float]:
    """``(low, high)`` seconds of the decade class holding ``median_s`` (open-ended at both ends)."""
    lo = 0.0
    for edge in CLASS_EDGES_S:
        if median_s < edge:
            return (lo, edge)
        lo = edge
    return (lo, math.inf)


@dataclass(frozen=True)
class NoiseClass:
    """Noise of points whose median latency lies in ``[low_s, high_s)``.

    ``process_sd``: between worker processes of one run (log scale), ``process_df`` its degrees of
    freedom; ``run_sd``: between runs, beyond what ``process_sd`` explains (the run effect shared by
    every process of a run), ``run_df``; ``points``: distinct points the class was estimated from;
    ``aa_ratio_sd``: the observed spread of A/A log ratios of two separate runs (a check on the model).
    """

    low_s: float
    high_s: float
    process_sd: float
    process_df: float
    run_sd: float
    run_df: float
    points: int = 0
    aa_ratio_sd: float | None = None

    def ratio_sd(self, processes_a: int, processes_b: int, separate_runs: bool = True) -> float:
        """Expected SD of the log ratio of two A/A measurements with this many processes per side."""
        v = self.process_sd ** 2 * (1.0 / max(1, processes_a) + 1.0 / max(1, processes_b))
        if separate_runs:
            v += 2.0 * self.run_sd ** 2
        return math.sqrt(v)

    @property
    def label(self) -> str:
        hi = "inf" if math.isinf(self.high_s) else fmt.seconds(self.high_s)
        return f"{fmt.seconds(self.low_s) if self.low_s > 0 else '0'}..{hi}"


@dataclass(frozen=True)
class NoiseProfile:
    """Per size class noise of one machine (``machine``: the environment fingerprint it was measured on)."""

    classes: tuple[NoiseClass, ...]
    machine: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""
    runs: int = 0
    processes: int = 1
    source: str = ""              # how it was made (command line or run folders)
    path: str | None = None       # where it was read from (not stored)

    def for_latency(self, median_s: float) -> NoiseClass | None:
        """The class holding ``median_s``, else the nearest measured class (None without classes)."""
        if not self.classes:
            return None
        for c in self.classes:
            if c.low_s <= median_s < c.high_s:
                return c

        def distance(c: NoiseClass) -> float:
            centre = math.sqrt(max(c.low_s, 1e-9) * (c.high_s if math.isfinite(c.high_s) else c.low_s * 10))
            return abs(math.log(max(median_s, 1e-12)) - math.log(centre))

        return min(self.classes, key=distance)

    def to_dict(self) -> dict[str, Any]:
        return {"format": NOISE_FORMAT, "schema_version": NOISE_SCHEMA_VERSION, "created_at": self.created_at,
                "runs": self.runs, "processes": self.processes, "source": self.source,
                "machine": dict(self.machine),
                "classes": [{"low_s": c.low_s, "high_s": None if math.isinf(c.high_s) else c.high_s,
                             "process_sd": c.process_sd, "process_df": c.process_df, "run_sd": c.run_sd,
                             "run_df": c.run_df, "points": c.points, "aa_ratio_sd": c.aa_ratio_sd}
                            for c in self.classes]}


#: The fallback when no profile is found: the fixed 1% of earlier serprof versions, as both the
#: between-process and the between-run spread, with few degrees of freedom (a weak prior).
def fallback_class(noise_floor: float) -> NoiseClass:
    sd = math.log1p(noise_floor)
    return NoiseClass(0.0, math.inf, process_sd=sd, process_df=4.0, run_sd=sd, run_df=math.inf, points=0)
