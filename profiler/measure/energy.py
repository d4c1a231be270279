"""Energy per call from hardware energy counters, net of idle, with an interval; never a made-up number.

What is measured (``EnergyMeter.measure``; the same protocol for every counter, all seams injected)::

    once per meter: poll the counter until it changes PROBE_CHANGES times (at most probe_s)
        counter_period_s = median time between changes; counter_step_j = max(unit, smallest change)
    P = counter_period_s; idle = max(idle_s, 5 P); target = max(window_s, 20 P, 1 s)
    sync(); sleep(P)                                   # work before the sync may reach the counter late
    e_a, t_a = next_tick(); sleep(idle); e_b, t_b = next_tick()      # quiet window BEFORE
    calls = 0; while calls < min_calls or clock() - t_b < target: fn(); calls += 1
    sync(); t_end = clock(); sleep(P)                  # the counter may lag up to one period
    e_c, t_c = next_tick(); sleep(idle); e_d, t_d = next_tick()      # quiet window AFTER
    idle_before_w = (e_b - e_a) / (t_b - t_a); idle_after_w = (e_d - e_c) / (t_d - t_c)
    idle_w = (idle_before_w + idle_after_w) / 2
    net_j   = (e_c - e_b) - idle_w * (t_c - t_b)       # the span [t_b, t_c] is the window + a quiet tail
    gross_j = net_j + idle_w * (t_end - t_b)           # what the counter saw during the calls (Zeus-style)
    half_j  = 2 counter_step_j                         # one counter step at each end
            + |net_j / window| * P                     # the window's extra power, quantised by one period
            + |idle_before_w - idle_after_w| * span    # idle drift
            + 2 poll_s * mean power                    # when a tick is seen (polling interval)
    per call: energy_j = net_j / calls, energy_ci_j = ((net_j -+ half_j) / calls)

``next_tick`` polls the counter every ``poll_s`` until its value changes, so every counter reading
is taken at an update and the time of that update is known to one polling interval. The idle baseline
therefore comes from the same counter, over quiet windows adjacent to the measured one, before and
after it (their difference is the drift) -- never from ``nvmlDeviceGetPowerUsage``, which on Ampere
and newer is a 1-second moving average and still carries the preceding timing phase (that gave
negative energies). When the interval includes zero, or the net is not positive, the record says
``below_resolution=True``, ``energy_j=None`` and ``reason="below resolution: net X J/call within
±Y J"``; gross energy per call and the interval are still stored.

* NVML (``NvmlEnergyMeter``, CUDA): ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load;
  updates about every 100 ms, measured per meter). A background ``PowerSampler`` thread reads power
  (W, ``nvmlDeviceGetPowerUsage``, display only), SM clock (MHz), temperature (C) and the clock-event
  ("throttle") reason bitmask at >= 20 Hz during the window; a window in which any sample shows a
  power cap, thermal or hardware slowdown is flagged ``throttled`` with the reasons. Calls are queued
  without a sync per call; the final sync makes ``t_end`` the end of the device work.
* RAPL (``RaplEnergyMeter``, CPU): the package domains ``/sys/class/powercap/intel-rapl:N/energy_uj``
  (uJ, summed over packages; updates about every 1 ms), with wrap-around handled via
  ``max_energy_range_uj``; the same protocol with ``poll_s`` = 0.1 ms. No sampler thread.
* Otherwise ``NullEnergyMeter``: ``Energy(energy_j=None, reason=...)`` saying why (no NVML, no
  counter on this GPU, no RAPL, permission denied). A counter that does not advance within its time
  bound gives ``energy_j=None`` with that reason.

Units: joules (J), watts (W), seconds (s) in every stored value; NVML's mJ and RAPL's uJ are converted
on reading.

What is not captured
    Energy of the host (for NVML) or of the GPU and DRAM (for RAPL package domains). Other tenants'
    energy during the window is in the gross counter and is removed only insofar as it was present
    in the idle windows too; a change between the two idle windows widens the interval but a burst
    inside the window alone is not seen. The counter integrates the device's own power samples: a
    GPU that samples power for part of each period can miss short bursts, which the many-period
    window averages out but cannot correct. Per-call energy of calls much shorter than the counter
    period relies on the repetition window; a call that adds less than the interval is reported as
    below resolution, not as a number.
"""

from __future__ import annotations

import statistics
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

from profiler.core.lazy import available, lazy_import
from profiler.core.records import Energy
from profiler.measure.conditions import (  # noqa: F401 - re-exported
    DEFAULT_SAMPLER_HZ,
    THROTTLE_BITS,
    PowerSampler,
    nvml_reasons_fn,
    throttle_names,
)

pynvml = lazy_import("pynvml")

Call = Callable[[], Any]
Clock = Callable[[], float]

DEFAULT_IDLE_S = 0.5
DEFAULT_PROBE_S = 3.0     # bound on measuring the counter's period (once per meter)
PROBE_CHANGES = 5         # counter changes observed to measure its period
IDLE_PERIODS = 5          # an idle window spans at least this many counter periods
WINDOW_PERIODS = 20       # the measured window spans at least this many counter periods
MIN_WINDOW_S = 1.0

def _noop() -> None:
    return None


class EnergyMeter(ABC):
    """Measures energy per call of ``fn`` over a window of repeated calls (see module doc)."""

    name: str | None = None

    @property
    def available(self) -> bool:
        return True

    @abstractmethod
    def measure(self, fn: Call, *, window_s: float, sync: Call = _noop, min_calls: int = 1) -> Energy:
        """Run ``fn`` repeatedly for ``window_s`` and return joules per call above idle."""


class NullEnergyMeter(EnergyMeter):
    """No energy meter on this machine; ``reason`` says why. Runs nothing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    @property
    def available(self) -> bool:
        return False

    def measure(self, fn: Call, *, window_s: float, sync: Call = _noop, min_calls: int = 1) -> Energy:
        return Energy(energy_j=None, meter=None, reason=self.reason)


class CounterStalled(RuntimeError):
    """The energy counter did not change within its time bound."""


class _CounterMeter(EnergyMeter):
    """Shared window protocol (module doc) over a monotonic energy counter in joules.

    ``counter_period_s`` and ``counter_step_j`` are measured on the first ``measure`` (or ``probe``)
    and cached: one meter per worker process.
    """

    unit_j: float = 1e-3      # the counter's unit: the least change it can show
    poll_s: float = 1e-3      # polling interval while waiting for a counter update

    def __init__(self, *, idle_s: float = DEFAULT_IDLE_S, probe_s: float = DEFAULT_PROBE_S,
                 clock: Clock = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> None:
        self.idle_s = idle_s
        self.probe_s = probe_s
        self._clock = clock
        self._sleep = sleep
        self.counter_period_s: float | None = None
        self.counter_step_j: float | None = None
        self._probe_error: str | None = None
        self._probed = False

    @abstractmethod
    def _counter_j(self) -> float:
        """Energy counter reading in joules (wrap-around already unfolded)."""

    def _sampler(self) -> "PowerSampler | None":
        return None

    def _wait_change(self, e_prev: float, limit_s: float) -> tuple[float, float]:
        """Poll until the counter differs from ``e_prev``: (new reading J, clock s when seen)."""
        t_start = self._clock()
        while True:
            e, t = self._counter_j(), self._clock()
            if e != e_prev:
                return e, t
            if t - t_start >= limit_s:
                raise CounterStalled(f"{self.name} energy counter did not change within {limit_s:.3g} s")
            self._sleep(self.poll_s)

    def _next_tick(self, limit_s: float) -> tuple[float, float]:
        """The next counter update: (reading J, clock s)."""
        return self._wait_change(self._counter_j(), limit_s)

    def probe(self) -> float | None:
        """Measure the counter's update period (s) and step (J) once, within ``probe_s``; None if it stalls."""
        if self._probed:
            return self.counter_period_s
        self._probed = True
        deadline = self._clock() + self.probe_s
        e = self._counter_j()
        values, times = [e], []
        try:
            while len(times) < PROBE_CHANGES:
                e, t = self._wait_change(e, max(0.0, deadline - self._clock()))
                values.append(e)
                times.append(t)
        except CounterStalled:
            pass
        if len(times) < 3:
            self._probe_error = (f"{self.name} energy counter changed {len(times)} times in {self.probe_s:g} s; "
                                 "cannot measure its update period")
            return None
        self.counter_period_s = statistics.median(b - a for a, b in zip(times, times[1:]))
        self.counter_step_j = max(self.unit_j, min((b - a for a, b in zip(values, values[1:]) if b > a),
                                                          default=self.unit_j))
        return self.counter_period_s

    def _idle_window(self, idle_s: float, limit_s: float) -> tuple[float, float, float, float]:
        e0, t0 = self._next_tick(limit_s)
        self._sleep(idle_s)
        e1, t1 = self._next_tick(limit_s)
        return e0, t0, e1, t1

    def measure(self, fn: Call, *, window_s: float, sync: Call = _noop, min_calls: int = 1) -> Energy:
        sync()
        period = self.probe()
        if period is None:
            return Energy(energy_j=None, meter=self.name, reason=self._probe_error)
        step = self.counter_step_j or self.unit_j
        idle_s = max(self.idle_s, IDLE_PERIODS * period)
        target_s = max(window_s, WINDOW_PERIODS * period, MIN_WINDOW_S)
        limit_s = 10 * period + 0.1
        samples: tuple[dict, ...] = ()
        sampler = None
        try:
            self._sleep(period)  # work queued before the sync may reach the counter up to a period late
            e_a, t_a, e_b, t_b = self._idle_window(idle_s, limit_s)
            sampler = self._sampler()
            if sampler is not None:
                sampler.start()
            try:
                calls = 0
                while calls < min_calls or self._clock() - t_b < target_s:
                    fn()
                    calls += 1
                sync()
                t_end = self._clock()
            finally:
                samples = sampler.stop() if sampler is not None else ()
            self._sleep(period)  # the counter may lag the work by up to one period
            e_c, t_c, e_d, t_d = self._idle_window(idle_s, limit_s)
        except CounterStalled as exc:
            return Energy(energy_j=None, meter=self.name, reason=str(exc), counter_period_s=period,
                          counter_step_j=step)
        window, span = t_end - t_b, t_c - t_b
        before_w, after_w = (e_b - e_a) / (t_b - t_a), (e_d - e_c) / (t_d - t_c)
        idle_w = (before_w + after_w) / 2.0
        net_j = (e_c - e_b) - idle_w * span
        gross_j = net_j + idle_w * window
        mean_w = gross_j / window if window > 0 else None
        half_j = (2.0 * step
                  + (abs(net_j) / window * period if window > 0 else 0.0)
                  + abs(before_w - after_w) * span
                  + 2.0 * self.poll_s * max(idle_w, mean_w or 0.0))
        below = net_j <= 0.0 or net_j - half_j <= 0.0
        reasons = sorted({r for s in samples for r in s.get("throttle", ())})
        return Energy(
            energy_j=None if below else net_j / calls, meter=self.name,
            reason=f"below resolution: net {net_j / calls:.3g} J/call within ±{half_j / calls:.3g} J" if below else None,
            window_s=window, calls=calls, idle_power_w=idle_w, mean_power_w=mean_w,
            throttled=bool(reasons) if sampler is not None else None,
            throttle_reasons=tuple(reasons), samples=tuple(samples),
            gross_energy_j=gross_j / calls, energy_ci_j=((net_j - half_j) / calls, (net_j + half_j) / calls),
            idle_power_before_w=before_w, idle_power_after_w=after_w,
            counter_period_s=period, counter_step_j=step, below_resolution=below,
        )


# --------------------------------------------------------------------------- NVML


class NvmlEnergyMeter(_CounterMeter):
    """CUDA GPU energy from NVML's total-energy counter (mJ); ``nvml`` is the pynvml module (seam)."""

    name = "nvml"

    def __init__(self, nvml: Any, handle: Any, *, sampler_hz: float = DEFAULT_SAMPLER_HZ, **kw: Any) -> None:
        super().__init__(**kw)
        self._nvml = nvml
        self._handle = handle
        self._hz = sampler_hz
        self._reasons = nvml_reasons_fn(nvml)

    def _energy_mj(self) -> int:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def _power_w(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3

    def _counter_j(self) -> float:
        return self._energy_mj() / 1e3

    def read_sample(self) -> dict:
        """One sample: power (W), SM clock (MHz), temperature (C), throttle reason names."""
        n, h = self._nvml, self._handle
        mask = int(self._reasons(h)) if self._reasons is not None else 0
        return {
            "power_w": self._power_w(),
            "sm_clock_mhz": n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
            "temp_c": n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
            "throttle": list(throttle_names(mask)),
        }

    def _sampler(self) -> PowerSampler:
        return PowerSampler(self.read_sample, hz=self._hz, clock=self._clock)

    @classmethod
    def create(cls, index: int = 0, *, nvml: Any = None, uuid: str | None = None, **kw: Any) -> EnergyMeter:
        """An NVML meter for GPU ``index`` (or ``uuid``), or a ``NullEnergyMeter`` saying why not."""
        if nvml is None:
            if not available("pynvml"):
                return NullEnergyMeter("pynvml (nvidia-ml-py) is not installed")
            nvml = pynvml
        try:
            nvml.nvmlInit()
        except Exception as exc:
            return NullEnergyMeter(f"NVML unavailable: {exc}")
        try:
            handle = None
            if uuid:
                try:
                    handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
                except Exception:
                    handle = None
            if handle is None:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            nvml.nvmlDeviceGetPowerUsage(handle)
        except Exception as exc:
            return NullEnergyMeter(f"NVML energy counter not readable on GPU {index}: {exc} "
                                   "(the total-energy counter needs a Volta or newer GPU)")
        return cls(nvml, handle, **kw)


# --------------------------------------------------------------------------- RAPL

RAPL_ROOT = Path("/sys/class/powercap")


class RaplEnergyMeter(_CounterMeter):
    """CPU package energy from RAPL powercap counters (uJ), summed over packages, wrap-around handled."""

    name = "rapl"
    unit_j = 1e-6
    poll_s = 1e-4

    def __init__(self, zones: list[Path], *, idle_s: float = DEFAULT_IDLE_S, **kw: Any) -> None:
        super().__init__(idle_s=idle_s, **kw)
        self.zones = zones
        self._max_uj = [int((z / "max_energy_range_uj").read_text()) for z in zones]
        self._last_uj = [self._read_uj(z) for z in zones]
        self._total_uj = 0

    @staticmethod
    def _read_uj(zone: Path) -> int:
        return int((zone / "energy_uj").read_text())

    def _counter_j(self) -> float:
        """Unfold wrap-around: a reading below the previous one wrapped at ``max_energy_range_uj``."""
        for i, z in enumerate(self.zones):
            now = self._read_uj(z)
            delta = now - self._last_uj[i]
            if delta < 0:
                delta += self._max_uj[i]
            self._total_uj += delta
            self._last_uj[i] = now
        return self._total_uj / 1e6

    @classmethod
    def create(cls, root: Path | str = RAPL_ROOT, **kw: Any) -> EnergyMeter:
        """A RAPL meter over the package domains under ``root``, or a ``NullEnergyMeter`` saying why."""
        root = Path(root)
        zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1) if root.is_dir() else []
        if not zones:
            return NullEnergyMeter(f"no RAPL energy counters ({root}/intel-rapl:* not present on this machine)")
        try:
            return cls(zones, **kw)
        except PermissionError as exc:
            return NullEnergyMeter(f"RAPL counters not readable: permission denied on {exc.filename} "
                                   "(energy_uj is root-only on Linux >= 5.10; run as root or relax its mode)")
        except (OSError, ValueError) as exc:
            return NullEnergyMeter(f"RAPL counters not readable: {exc}")
