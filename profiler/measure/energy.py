"""Energy per call, net of idle power, from hardware energy counters; never a made-up number.

What is measured (``EnergyMeter.measure``; the same protocol for every counter)::

    idle_power_w = mean power over idle_s with nothing running        # just before the window
    sync(); e0 = counter(); t0 = clock()
    calls = 0
    while calls < min_calls or clock() - t0 < window_s: fn(); calls += 1
    sync(); e1 = counter(); t1 = clock()
    energy_j = ((e1 - e0) - idle_power_w * (t1 - t0)) / calls          # J per call above idle

* NVML (``NvmlEnergyMeter``, CUDA): ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load)
  for the counter, ``nvmlDeviceGetPowerUsage`` (mW) averaged over the idle interval for the idle
  power. A background ``PowerSampler`` thread reads power (W), SM clock (MHz), temperature (C) and
  the clock-event ("throttle") reason bitmask at >= 20 Hz during the window; a window in which any
  sample shows a power cap, thermal or hardware slowdown is flagged ``throttled`` with the reasons.
  The counter updates every ~10-100 ms depending on the GPU, hence a window of ``window_s`` (1 s by
  default) of repeated calls, not one call. Calls are queued without a sync per call; the final
  sync makes ``t1`` the end of the device work.
* RAPL (``RaplEnergyMeter``, CPU): the package domains ``/sys/class/powercap/intel-rapl:N/energy_uj``
  (uJ, summed over packages), with wrap-around handled via ``max_energy_range_uj``; idle power from
  the same counter over the idle interval. No sampler thread.
* Otherwise ``NullEnergyMeter``: ``Energy(energy_j=None, reason=...)`` saying why (no NVML, no
  counter on this GPU, no RAPL, permission denied).

What is not captured
    Energy of the host (for NVML) or of the GPU and DRAM (for RAPL package domains); energy of other
    tenants during the window is included in the gross counter and only removed insofar as it was
    present during the idle interval too. On a shared CPU the idle subtraction is therefore rough.
    Per-call energy of calls much shorter than the counter period relies on the repetition window.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Mapping

from profiler.core.records import Energy

Call = Callable[[], Any]
Clock = Callable[[], float]

DEFAULT_IDLE_S = 0.5
DEFAULT_SAMPLER_HZ = 25.0

#: NVML clock-event reason bits that mean the clocks were held down (not idle / app settings / boost).
THROTTLE_BITS: Mapping[str, int] = {
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
}


def throttle_names(mask: int) -> tuple[str, ...]:
    """Names of the throttling bits set in an NVML clock-event reason mask."""
    return tuple(name for name, bit in THROTTLE_BITS.items() if mask & bit)


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


class _CounterMeter(EnergyMeter):
    """Shared window protocol over a monotonic energy counter in joules."""

    def __init__(self, *, idle_s: float = DEFAULT_IDLE_S, clock: Clock = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.idle_s = idle_s
        self._clock = clock
        self._sleep = sleep

    @abstractmethod
    def _counter_j(self) -> float:
        """Energy counter reading in joules (wrap-around already unfolded)."""

    @abstractmethod
    def _idle_power_w(self) -> float:
        """Mean power over ``idle_s`` with nothing running."""

    def _sampler(self) -> "PowerSampler | None":
        return None

    def measure(self, fn: Call, *, window_s: float, sync: Call = _noop, min_calls: int = 1) -> Energy:
        sync()
        idle_w = self._idle_power_w()
        sampler = self._sampler()
        if sampler is not None:
            sampler.start()
        try:
            sync()
            e0, t0 = self._counter_j(), self._clock()
            calls = 0
            while calls < min_calls or self._clock() - t0 < window_s:
                fn()
                calls += 1
            sync()
            e1, t1 = self._counter_j(), self._clock()
        finally:
            samples = sampler.stop() if sampler is not None else ()
        window = t1 - t0
        gross_j = e1 - e0
        net_j = gross_j - idle_w * window
        reasons = sorted({r for s in samples for r in s.get("throttle", ())})
        return Energy(
            energy_j=net_j / calls, meter=self.name, window_s=window, calls=calls,
            idle_power_w=idle_w, mean_power_w=gross_j / window if window > 0 else None,
            throttled=bool(reasons) if sampler is not None else None,
            throttle_reasons=tuple(reasons), samples=tuple(samples),
        )


# --------------------------------------------------------------------------- NVML


class PowerSampler:
    """Background thread reading ``read() -> dict`` at ``hz``; one synchronous read at start and stop.

    The two synchronous reads make every window have at least two samples, whatever the scheduler
    does. Each sample gets ``t_s`` (seconds since ``start``).
    """

    def __init__(self, read: Callable[[], dict], hz: float = DEFAULT_SAMPLER_HZ, clock: Clock = time.perf_counter) -> None:
        self._read = read
        self._period = 1.0 / hz
        self._clock = clock
        self._samples: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _take(self) -> None:
        s = dict(self._read())
        s["t_s"] = self._clock() - self._t0
        with self._lock:
            self._samples.append(s)

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self._take()
            except Exception:  # a failed read must never kill the measurement
                pass

    def start(self) -> None:
        self._t0 = self._clock()
        self._take()
        self._thread = threading.Thread(target=self._loop, name="serprof-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[dict, ...]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()
        with self._lock:
            return tuple(sorted(self._samples, key=lambda s: s["t_s"]))


def _nvml_reasons_fn(nvml: Any) -> Callable[[Any], int] | None:
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(nvml, name, None)
        if fn is not None:
            return fn
    return None


class NvmlEnergyMeter(_CounterMeter):
    """CUDA GPU energy from NVML's total-energy counter (mJ); ``nvml`` is the pynvml module (seam)."""

    name = "nvml"

    def __init__(self, nvml: Any, handle: Any, *, sampler_hz: float = DEFAULT_SAMPLER_HZ, **kw: Any) -> None:
        super().__init__(**kw)
        self._nvml = nvml
        self._handle = handle
        self._hz = sampler_hz
        self._reasons = _nvml_reasons_fn(nvml)

    def _energy_mj(self) -> int:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)

    def _power_w(self) -> float:
        return self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1e3

    def _counter_j(self) -> float:
        return self._energy_mj() / 1e3

    def _idle_power_w(self) -> float:
        readings = []
        t0 = self._clock()
        while True:
            readings.append(self._power_w())
            if self._clock() - t0 >= self.idle_s:
                break
            self._sleep(1.0 / self._hz)
        return sum(readings) / len(readings)

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
            try:
                import pynvml as nvml
            except ImportError:
                return NullEnergyMeter("pynvml (nvidia-ml-py) is not installed")
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

    def _idle_power_w(self) -> float:
        e0, t0 = self._counter_j(), self._clock()
        self._sleep(self.idle_s)
        e1, t1 = self._counter_j(), self._clock()
        return (e1 - e0) / (t1 - t0) if t1 > t0 else 0.0

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
