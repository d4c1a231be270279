"""``serprof selftest`` result values and the judgements that turn measured numbers into a state.

A ``SelfCheck`` is one check: its group (environment, timer, memory, energy, correctness, launch,
conditions), a name, a state (``ok``, ``failed``, ``unavailable``: this machine lacks the hardware or
permission, which only fails where the check is required on the device), a one-line detail and the
numbers behind it (``values``, SI units). ``SelftestResult.exit_code`` is 0 only when no check failed.
The tolerances are here, with their reasons, so the checks (``profiler.probes.selftest``) stay
measurement code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from profiler.core.records import to_dict

STATES = ("ok", "failed", "unavailable")
GROUPS = ("environment", "conditions", "timer", "memory", "energy", "correctness", "launch")

#: serprof's CPU median vs torch.utils.benchmark.Timer: both time the same calls with perf_counter;
#: a shared CPU moves either by up to ~10%, so 25% only fails a timer that is wrong, not noisy.
CPU_TIMER_TOLERANCE = 0.25
#: load average per CPU above which a CPU timer disagreement is "cannot judge", not "failed": the
#: reference (Timer's block means) and serprof's per-call median part ways when other processes
#: compete for the cores (on this project's 2-vCPU VM: load 3 per CPU, retnet 0.68x, softmax 0.97x)
BUSY_LOAD_PER_CPU = 1.0
#: serprof's graph device time vs triton's do_bench_cudagraph (the same method; L2 and unroll differ)
DEVICE_TIMER_TOLERANCE = 0.25
#: serprof's call latency vs a plain sync-to-sync loop (the same quantity)
LATENCY_TOLERANCE = 0.25
#: CPU peak memory vs the kernel's analytic model (``bench memory``'s target)
MEMORY_TOLERANCE = 0.15
#: CUDA allocator peak vs ``torch.cuda.max_memory_allocated`` above entry: the same counter, exact
#: but for the allocator's rounding of small blocks (512 B)
ALLOCATOR_SLACK_BYTES = 4096
#: energy per call from the counter vs mean sampled power x time per call (counter and 1-s averaged
#: power differ, a factor of two is implausible)
ENERGY_PLAUSIBLE = (0.5, 2.0)
#: idle GPU power outside this range (W) is not a believable NVML reading
IDLE_POWER_W = (5.0, 1500.0)


@dataclass(frozen=True)
class SelfCheck:
    group: str
    name: str
    state: str
    detail: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state {self.state!r} is not one of {STATES}")


@dataclass(frozen=True)
class SelftestResult:
    device: str
    quick: bool
    checks: tuple[SelfCheck, ...]
    wall_s: float
    environment: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> tuple[SelfCheck, ...]:
        return tuple(c for c in self.checks if c.state == "failed")

    @property
    def passed(self) -> bool:
        return not self.failed

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "quick": self.quick, "passed": self.passed, "exit_code": self.exit_code,
                "wall_s": self.wall_s, "checks": [to_dict(c) for c in self.checks],
                "environment": to_dict(self.environment)}


def within(ratio: float | None, tolerance: float) -> bool:
    """``ratio`` is a number within ``1 +- tolerance``."""
    return ratio is not None and abs(ratio - 1.0) <= tolerance


def ratio_state(ratio: float | None, tolerance: float) -> str:
    return "ok" if within(ratio, tolerance) else "failed"


def cpu_timer_state(ratio: float | None, load_per_cpu: float | None) -> str:
    """ok within ``CPU_TIMER_TOLERANCE``; outside it failed, or unavailable when the machine was busy."""
    if within(ratio, CPU_TIMER_TOLERANCE):
        return "ok"
    if ratio is not None and load_per_cpu is not None and load_per_cpu > BUSY_LOAD_PER_CPU:
        return "unavailable"
    return "failed"


def energy_state(net_j: float | None, gross_j: float | None, sampled_gross_j: float | None,
                 idle_w: float | None) -> str | None:
    """A long op's energy per call judged: None when plausible, else why not.

    Positive net energy, a believable idle power, net <= gross, and the counter's gross energy per
    call within ``ENERGY_PLAUSIBLE`` of the sampled power x time per call.
    """
    if net_j is None or net_j <= 0:
        return "no positive energy for an op long enough to measure"
    if idle_w is None or not IDLE_POWER_W[0] <= idle_w <= IDLE_POWER_W[1]:
        return f"idle power {idle_w} W is not a believable reading"
    if gross_j is not None and net_j > gross_j * 1.001:
        return f"net energy {net_j:.3g} J exceeds gross {gross_j:.3g} J"
    if gross_j is not None and sampled_gross_j:
        r = gross_j / sampled_gross_j
        if not ENERGY_PLAUSIBLE[0] <= r <= ENERGY_PLAUSIBLE[1]:
            return f"counter energy is {r:.2f}x the sampled power x time (expected {ENERGY_PLAUSIBLE[0]}-{ENERGY_PLAUSIBLE[1]}x)"
    return None
