"""Conditions of a measurement: clocks, temperature, power, throttling (CUDA); frequency, load, pinning (CPU).

A ``ConditionsProbe`` reads one sample (``read() -> dict``) and can sample in the background while a
timed window runs (``during``, a ``PowerSampler`` at ``DURING_HZ``: cheap, one NVML query set per
sample). ``measure_under_conditions`` wraps a point's timing:

1. ``cooldown_s`` of idle first (``MeasureSettings.cooldown_s``; 0 by default),
2. a sample *before*, the timed work with samples *during*, a sample *after*,
3. when any sample shows throttling (NVML reasons: power cap, thermal, HW slowdown, power brake,
   sync boost; ``THROTTLE_BITS``), the result is discarded, the device idles ``max(cooldown_s,
   RECOOL_S)`` and the work runs once more; the record says it was re-measured and whether it was
   still throttled (``Conditions.throttled``). A throttled record is never gated on
   (``profiler.analysis.compare``).

Samples (SI-ish units in the keys): CUDA ``sm_clock_mhz``, ``mem_clock_mhz``, ``temp_c``, ``power_w``,
``throttle`` (names); CPU ``freq_mhz`` (mean over the CPUs the process may run on, from
``/sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq``, else ``/proc/cpuinfo``; None where not
readable, e.g. in many VMs), ``load_1m`` (``os.getloadavg``), ``affinity`` and ``threads``.

``clock_lock`` locks the GPU clocks with ``nvmlDeviceSetGpuLockedClocks`` (at the TDP/base clock,
as nvbench does) and always resets them (``nvmlDeviceResetGpuLockedClocks``) on exit, exception,
Ctrl-C or SIGTERM. NVML cannot read back an earlier lock, so "restore" means the driver default
(unlocked); ``NVMLError_NoPermission`` becomes one clear ``UnavailableError`` line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar

from profiler.core.errors import UnavailableError
from profiler.core.lazy import available, lazy_import
from profiler.core.records import Conditions

torch = lazy_import("torch")

pynvml = lazy_import("pynvml")

T = TypeVar("T")

#: NVML clock-event reason bits that mean the clocks were held down (not idle / app settings / boost).
THROTTLE_BITS: Mapping[str, int] = {
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
}
#: idle before re-measuring a throttled point, at least (s)
RECOOL_S = 2.0
#: background samples per second during the timed window
DURING_HZ = 10.0
#: default rate of the energy window's power sampler
DEFAULT_SAMPLER_HZ = 25.0
#: samples kept during a window (evenly thinned beyond this)
MAX_DURING = 20


class PowerSampler:
    """Background thread reading ``read() -> dict`` at ``hz``; one synchronous read at start and stop.

    The two synchronous reads make every window have at least two samples, whatever the scheduler
    does. Each sample gets ``t_s`` (seconds since ``start``).
    """

    def __init__(self, read: Callable[[], dict], hz: float = DEFAULT_SAMPLER_HZ,
                 clock: Callable[[], float] = time.perf_counter) -> None:
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


def throttle_names(mask: int) -> tuple[str, ...]:
    """Names of the throttling bits set in an NVML clock-event reason mask."""
    return tuple(name for name, bit in THROTTLE_BITS.items() if mask & bit)


def nvml_reasons_fn(nvml: Any) -> Callable[[Any], int] | None:
    """``nvmlDeviceGetCurrentClocksEventReasons`` (NVML >= 12.5) or the older ``...ThrottleReasons``."""
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(nvml, name, None)
        if fn is not None:
            return fn
    return None


class ConditionsProbe(ABC):
    """Reads the conditions of one device; ``read`` never raises (a failed read is a sample with ``error``)."""

    device_type: str = ""

    @abstractmethod
    def _read(self) -> dict[str, Any]: ...

    def read(self) -> dict[str, Any]:
        try:
            return self._read()
        except Exception as exc:  # noqa: BLE001 - conditions must never break a measurement
            return {"error": f"{type(exc).__name__}: {exc}"}

    def during(self) -> Any:
        """A started-on-demand background sampler (``start``/``stop() -> samples``), or None."""
        return None


class NullProbe(ConditionsProbe):
    """Nothing readable here; ``reason`` says why."""

    def __init__(self, device_type: str, reason: str) -> None:
        self.device_type = device_type
        self.reason = reason

    def _read(self) -> dict[str, Any]:
        return {"unavailable": self.reason}


class CpuProbe(ConditionsProbe):
    """CPU frequency (where readable), load average, affinity and torch threads; ``sys_root`` is a seam."""

    device_type = "cpu"

    def __init__(self, sys_root: Path | str = "/sys/devices/system/cpu", cpuinfo: Path | str = "/proc/cpuinfo",
                 loadavg: Callable[[], tuple[float, float, float]] = os.getloadavg) -> None:
        self.sys_root = Path(sys_root)
        self.cpuinfo = Path(cpuinfo)
        self._loadavg = loadavg

    def _cpus(self) -> list[int]:
        try:
            return sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return list(range(os.cpu_count() or 1))

    def freq_mhz(self, cpus: list[int]) -> tuple[float | None, str]:
        khz = []
        for c in cpus:
            try:
                khz.append(int((self.sys_root / f"cpu{c}" / "cpufreq" / "scaling_cur_freq").read_text()))
            except (OSError, ValueError):
                pass
        if khz:
            return sum(khz) / len(khz) / 1e3, "cpufreq"
        try:
            mhz = [float(ln.split(":", 1)[1]) for ln in self.cpuinfo.read_text().splitlines()
                   if ln.lower().startswith("cpu mhz")]
        except (OSError, ValueError):
            mhz = []
        picked = [mhz[c] for c in cpus if c < len(mhz)] or mhz
        return (sum(picked) / len(picked), "cpuinfo") if picked else (None, "not readable")

    def _read(self) -> dict[str, Any]:
        cpus = self._cpus()
        freq, source = self.freq_mhz(cpus)
        try:
            load = self._loadavg()[0]
        except OSError:
            load = None
        return {"freq_mhz": freq, "freq_source": source, "load_1m": load, "affinity": cpus,
                "threads": torch.get_num_threads()}


class NvmlProbe(ConditionsProbe):
    """GPU clocks, temperature, power and throttle reasons from NVML (``nvml`` is the pynvml module)."""

    device_type = "cuda"

    def __init__(self, nvml: Any, handle: Any, clock: Callable[[], float] = time.perf_counter) -> None:
        self.nvml = nvml
        self.handle = handle
        self._reasons = nvml_reasons_fn(nvml)
        self._clock = clock

    def _read(self) -> dict[str, Any]:
        n, h = self.nvml, self.handle
        mask = int(self._reasons(h)) if self._reasons is not None else 0
        return {"sm_clock_mhz": n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
                "mem_clock_mhz": n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM),
                "temp_c": n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
                "power_w": n.nvmlDeviceGetPowerUsage(h) / 1e3,
                "throttle_mask": mask, "throttle": list(throttle_names(mask))}

    def during(self) -> Any:
        return PowerSampler(self.read, hz=DURING_HZ, clock=self._clock)

    @classmethod
    def create(cls, index: int = 0, *, nvml: Any = None, uuid: str | None = None) -> ConditionsProbe:
        """A probe for GPU ``index`` (or ``uuid``), or a ``NullProbe`` saying why not."""
        handle, why = nvml_handle(index, nvml=nvml, uuid=uuid)
        if handle is None:
            return NullProbe("cuda", why)
        return cls(why_nvml(nvml), handle)


def why_nvml(nvml: Any) -> Any:
    """``nvml`` itself, or the pynvml module when None (ImportError when it is not installed)."""
    if nvml is None:
        if not available("pynvml"):
            raise ImportError("pynvml (nvidia-ml-py) is not installed")
        nvml = pynvml
    return nvml


def nvml_handle(index: int = 0, *, nvml: Any = None, uuid: str | None = None) -> tuple[Any, str]:
    """``(handle, "")`` for GPU ``index`` (``uuid`` first), or ``(None, reason)``."""
    try:
        nvml = why_nvml(nvml)
    except ImportError:
        return None, "pynvml (nvidia-ml-py) is not installed"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        return None, f"NVML unavailable: {exc}"
    if uuid:
        try:
            return nvml.nvmlDeviceGetHandleByUUID(uuid), ""
        except Exception:  # noqa: BLE001 - fall back to the index
            pass
    try:
        return nvml.nvmlDeviceGetHandleByIndex(index), ""
    except Exception as exc:  # noqa: BLE001
        return None, f"NVML has no GPU {index}: {exc}"


def _throttled(samples: list[Mapping[str, Any]]) -> tuple[str, ...]:
    return tuple(sorted({r for s in samples for r in (s.get("throttle") or ())}))


def _thin(samples: tuple[dict, ...]) -> tuple[dict, ...]:
    if len(samples) <= MAX_DURING:
        return samples
    step = len(samples) / MAX_DURING
    return tuple(samples[int(i * step)] for i in range(MAX_DURING))


def _window(probe: ConditionsProbe, work: Callable[[], T]) -> tuple[T, dict, tuple[dict, ...], dict]:
    before = probe.read()
    sampler = probe.during()
    if sampler is not None:
        sampler.start()
    try:
        result = work()
    finally:
        during = sampler.stop() if sampler is not None else ()
    return result, before, _thin(tuple(during)), probe.read()


def measure_under_conditions(work: Callable[[], T], probe: ConditionsProbe, *, cooldown_s: float = 0.0,
                             l2: str = "warm", clocks_locked: bool | None = None,
                             sleep: Callable[[float], None] | None = None) -> tuple[T, Conditions]:
    """Run ``work`` (a point's timing) with conditions sampled around it; re-run once if throttled (module doc)."""
    sleep = sleep or time.sleep
    if cooldown_s > 0:
        sleep(cooldown_s)
    result, before, during, after = _window(probe, work)
    reasons = _throttled([before, *during, after])
    first: tuple[str, ...] = ()
    waited = cooldown_s
    if reasons:
        first = reasons
        waited = max(cooldown_s, RECOOL_S)
        sleep(waited)
        result, before, during, after = _window(probe, work)
        reasons = _throttled([before, *during, after])
    return result, Conditions(
        device_type=probe.device_type, before=before, after=after, during=during, throttled=bool(reasons),
        throttle_reasons=reasons, remeasured=bool(first), first_throttle_reasons=first, cooldown_s=waited,
        l2=l2, clocks_locked=clocks_locked)


# --------------------------------------------------------------------------- locked clocks

def _lock_target_mhz(nvml: Any, handle: Any) -> tuple[int, int]:
    """(min, max) MHz to lock at: NVML's TDP (base) clock limit id where defined, else the default app clock."""
    tdp = getattr(nvml, "NVML_CLOCK_LIMIT_ID_TDP", None)
    if tdp is not None:
        return tdp, tdp
    mhz = int(nvml.nvmlDeviceGetDefaultApplicationsClock(handle, nvml.NVML_CLOCK_SM))
    return mhz, mhz


@contextlib.contextmanager
def clock_lock(nvml: Any, handle: Any, *, gpu: str = "GPU 0") -> Iterator[dict[str, Any]]:
    """Lock the GPU clocks for the ``with`` body; always reset them after (module doc).

    Yields ``{"locked": True, "min_mhz", "max_mhz", "sm_clock_mhz"}``. ``NVMLError_NoPermission`` (not root)
    or an unsupported GPU raise ``UnavailableError`` with one line before anything runs.
    """
    lo, hi = _lock_target_mhz(nvml, handle)
    try:
        nvml.nvmlDeviceSetGpuLockedClocks(handle, lo, hi)
    except Exception as exc:  # noqa: BLE001 - turned into one line
        no_perm = getattr(nvml, "NVMLError_NoPermission", None)
        not_sup = getattr(nvml, "NVMLError_NotSupported", None)
        if no_perm is not None and isinstance(exc, no_perm):
            raise UnavailableError(f"--lock-clocks: not permitted on {gpu} (NVML: {exc}); run as root "
                                   "(or `nvidia-smi -lgc` beforehand) or drop --lock-clocks") from None
        if not_sup is not None and isinstance(exc, not_sup):
            raise UnavailableError(f"--lock-clocks: {gpu} does not support locked clocks (NVML: {exc})") from None
        raise UnavailableError(f"--lock-clocks: NVML refused to lock the clocks of {gpu}: {exc}") from None
    previous = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        def on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt("SIGTERM")
        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        try:
            sm = nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)
        except Exception:  # noqa: BLE001
            sm = None
        yield {"locked": True, "min_mhz": lo, "max_mhz": hi, "sm_clock_mhz": sm}
    finally:
        try:
            nvml.nvmlDeviceResetGpuLockedClocks(handle)
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def maybe_lock_clocks(enabled: bool, device: str, index: int = 0, *, nvml: Any = None) -> Iterator[dict[str, Any] | None]:
    """``clock_lock`` on CUDA GPU ``index`` when ``enabled`` (``UnavailableError`` on CPU or without NVML)."""
    if not enabled:
        yield None
        return
    if device != "cuda":
        raise UnavailableError("--lock-clocks locks GPU clocks through NVML; this run is on the CPU")
    handle, why = nvml_handle(index, nvml=nvml)
    if handle is None:
        raise UnavailableError(f"--lock-clocks: {why}")
    with clock_lock(why_nvml(nvml), handle, gpu=f"GPU {index}") as state:
        yield state
