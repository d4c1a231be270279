"""How long a planned sweep will take: an estimate before anything runs (``sweep --dry-run``).

Per runnable point, with ``k = settings.processes`` worker processes (1 for interpreted points) and
``call`` = the roofline time of one call (``max(FLOPs / rate, bytes / bandwidth)`` from the entry's
analytic model) times ``CALL_OVER_ROOF``, the slowdown of real kernels against the roof measured on a
2-core CPU (1.3x for long softmax, 5x for short RetNet; 3x is the middle)::

    timing  = k * (warm-up + first call) + k * min(time_budget_s / k, max_reps * max(call, 1 ms))
    verify  = VERIFY_FIXED_S + VERIFY_CALLS * call(T = min(T, verify_max_T))      (when verifying)
    memory  = MEMORY_FIXED_S + call                                               (when measuring memory)
    energy  = max(energy_window_s, 1 s) + quiet windows                           (where a meter exists)

plus ``POINT_FIXED_S`` of set-up and bookkeeping per point and process; per session, the worker
start-ups, the calibration and the HTML report. The rates are the run's calibration when one is
given, else ``DEFAULT_RATES`` (the project's 2-core CPU; an H200 from its spec sheet). The stopping
rule may end a point before its budget; the estimate assumes the budget is used, so it errs long.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from profiler.core.records import PointSpec
from profiler.planning.points import ITEMSIZE, Plan
from profiler.planning.registry import get_entry

#: (FLOP/s, bytes/s) when no calibration is given: measured on the project's 2-core CPU (fp32 matmul,
#: copy), and an H200's dense bf16 / fp32 rates and HBM bandwidth from its spec sheet.
DEFAULT_RATES = {"cpu": (1.8e11, 3.6e10), "cuda": (4.0e14, 4.0e12)}
CALL_OVER_ROOF = 3.0
POINT_FIXED_S = 0.15
VERIFY_FIXED_S = 0.3
VERIFY_CALLS = 4
MEMORY_FIXED_S = 0.25
WORKER_START_S = 2.0          # import torch (and fla) in a fresh worker on a 2-core CPU
CALIBRATION_S = 3.0
REPORT_FIXED_S = 8.0
REPORT_PER_POINT_S = 0.1
MIN_SAMPLE_S = 1e-3           # the CPU timer's shortest sample (profiler.measure.timer)
#: A scenario that runs on CPU for longer than this without asking for the CPU gets a warning.
LONG_ON_CPU_S = 300.0


@dataclass(frozen=True)
class Estimate:
    """Estimated wall seconds of a sweep, split by phase (values, nothing formatted)."""

    total_s: float
    points_s: float
    startup_s: float
    calibration_s: float
    report_s: float
    points: int
    rates_from: str               # "calibration" | "defaults"


def call_seconds(spec: PointSpec, rates: tuple[float, float]) -> float:
    """Roofline seconds of one call of ``spec`` times ``CALL_OVER_ROOF`` (0 when no model)."""
    model = get_entry(spec.level, spec.kernel).analytic(spec, ITEMSIZE.get(spec.dtype, 4))
    flops, moved = model.flops or 0.0, model.bytes_moved or 0.0
    if spec.mode == "fwdbwd":
        flops, moved = 3 * flops, 3 * moved
    return CALL_OVER_ROOF * max(flops / rates[0], moved / rates[1])


def point_seconds(spec: PointSpec, settings: Any, rates: tuple[float, float], *, energy_meter: bool) -> float:
    """Estimated wall seconds of one point (see module doc)."""
    k = 1 if spec.interpret else max(1, int(getattr(settings, "processes", 1) or 1))
    call = call_seconds(spec, rates)
    if spec.interpret:
        return POINT_FIXED_S + 50 * call + (VERIFY_FIXED_S if settings.verify else 0.0)
    warm = k * (max(settings.warmup_s, settings.min_warmup_calls * call) + call)
    sample = max(call, MIN_SAMPLE_S)            # short calls are batched into samples of >= 1 ms
    timed = k * min(settings.time_budget_s / k, settings.max_reps * sample)
    timed = max(timed, settings.min_reps * k * sample)
    total = k * POINT_FIXED_S + warm + timed
    if settings.verify:
        short = spec.T <= settings.verify_max_T or spec.option("varlen")   # varlen: checked per sequence
        vspec = spec if short else replace(spec, T=settings.verify_max_T)
        total += VERIFY_FIXED_S + VERIFY_CALLS * call_seconds(vspec, rates)
    if settings.measure_memory:
        total += MEMORY_FIXED_S + call
    if settings.measure_energy and energy_meter:
        total += max(settings.energy_window_s, 1.0) + 1.0
    return total


def estimate(plan: Plan, calibration: Mapping[str, Any] | None = None, *, energy_meter: bool = False,
             report: bool = True) -> Estimate:
    """Estimated wall time of running ``plan`` (every runnable point) on its device."""
    points = plan.runnable()
    device = points[0].device if points else "cpu"
    cal = calibration or {}
    if isinstance(cal.get("matmul_flops_per_s"), (int, float)) and isinstance(cal.get("bandwidth_bytes_per_s"), (int, float)):
        rates, source = (float(cal["matmul_flops_per_s"]), float(cal["bandwidth_bytes_per_s"])), "calibration"
    else:
        rates, source = DEFAULT_RATES.get(device, DEFAULT_RATES["cpu"]), "defaults"
    settings = plan.sweep.settings
    points_s = sum(point_seconds(p, settings, rates, energy_meter=energy_meter) for p in points)
    groups = {(p.device, p.interpret) for p in points}
    k = max(1, int(getattr(settings, "processes", 1) or 1))
    startup_s = WORKER_START_S * k * len(groups) / 2.0 + (WORKER_START_S / 2.0 if points else 0.0)  # started together on 2 cores
    cal_s = CALIBRATION_S if any(not p.interpret for p in points) else 0.0
    report_s = (REPORT_FIXED_S + REPORT_PER_POINT_S * len(plan.points)) if report else 0.0
    total = points_s + startup_s + cal_s + report_s
    return Estimate(total, points_s, startup_s, cal_s, report_s, len(points), source)


def long_cpu_run_warning(plan: Plan, est: Estimate) -> str | None:
    """A warning when a scenario that did not ask for the CPU (``device = auto``) will run on the CPU
    for longer than ``LONG_ON_CPU_S`` (scenarios written for a GPU, on a machine without one)."""
    points = plan.runnable()
    if plan.requested_device != "auto" or not points or any(p.device != "cpu" for p in points):
        return None
    if est.total_s <= LONG_ON_CPU_S:
        return None
    return (f"this sweep asks for device 'auto' and runs on the CPU here: about {est.total_s / 60:.0f} minutes "
            f"({est.points} points); pass --device cuda on a GPU machine, or shorten it (--lengths, --kernels)")
