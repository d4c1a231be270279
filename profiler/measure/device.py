"""Device abstraction: everything device-specific the measurement needs, behind one small interface.

A ``Device`` gives ``synchronize``, ``time_call`` (the point's timings from one session: on CPU
perf_counter_ns call latency, on CUDA device time and call latency, see
``profiler.measure.cuda_time``), a ``SampleTimer`` (perf_counter_ns on CPU, CUDA events on CUDA,
for callers that time single calls), a memory meter, an energy meter (or a null one that says why), an optional L2 flush and a
description for the point's ``worker`` info. ``profiler.measure.point`` is written once against this
interface; the hardware seams (clock, event factory, ``torch.cuda`` module, the ``CudaApi`` of
``cuda_time``, NVML module, RAPL root) are constructor arguments so tests run without a GPU.
"""

from __future__ import annotations

import os
import platform
import socket
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

from profiler.core.errors import UnavailableError, UsageError
from profiler.core.lazy import lazy_import
from profiler.core.records import MeasureSettings
from profiler.measure.conditions import ConditionsProbe, CpuProbe, NvmlProbe
from profiler.measure.cuda_time import TorchCudaApi, time_cuda_call
from profiler.measure.energy import (
    RAPL_ROOT,
    EnergyMeter,
    NvmlEnergyMeter,
    RaplEnergyMeter,
)
from profiler.measure.memory import CudaAllocatorMeter, MemoryMeter, ProfilerMemoryMeter
from profiler.measure.timer import (
    CudaEventTimer,
    PerfCounterTimer,
    SampleTimer,
    TimedCall,
    cpu_control,
    time_host_call,
)

torch = lazy_import("torch")


class Device(ABC):
    """One device a point runs on."""

    type: str = ""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self._energy: EnergyMeter | None = None

    @property
    @abstractmethod
    def torch_device(self) -> str:
        """What to pass to torch (``"cpu"``, ``"cuda:0"``)."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait for all queued work on the device."""

    @abstractmethod
    def sample_timer(self) -> SampleTimer: ...

    @abstractmethod
    def time_call(self, fn: Callable[[], Any], settings: MeasureSettings, *, reset: Callable[[], None] | None = None,
                  flush: Callable[[], None] | None = None) -> TimedCall:
        """Time a point's call: first call, warm-up, samples (``TimedCall``: timing, call_latency, first_call, extra).

        ``reset`` runs before every call outside the timed region (fwd+bwd gradient reset),
        ``flush`` before every sample (L2 flush; CUDA only).
        """

    @abstractmethod
    def memory_meter(self) -> MemoryMeter: ...

    @abstractmethod
    def _make_energy_meter(self) -> EnergyMeter: ...

    def energy_meter(self) -> EnergyMeter:
        """Created once per device object (NVML init / RAPL discovery are not free)."""
        if self._energy is None:
            self._energy = self._make_energy_meter()
        return self._energy

    def l2_flusher(self) -> Callable[[], None] | None:
        """A callable that evicts the device's last-level cache, or None where not applicable."""
        return None

    @abstractmethod
    def _make_conditions_probe(self) -> ConditionsProbe: ...

    def conditions_probe(self) -> ConditionsProbe:
        """Reads clocks/temperature/throttling (CUDA) or frequency/load/pinning (CPU); created once."""
        if getattr(self, "_probe", None) is None:
            self._probe = self._make_conditions_probe()
        return self._probe

    @abstractmethod
    def name(self) -> str:
        """Human-readable device model."""

    def info(self) -> dict[str, Any]:
        """Worker info stored with each point: host, pid, device, threads, CPU affinity."""
        try:
            affinity = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            affinity = None
        return {
            "host": socket.gethostname(), "pid": os.getpid(), "device_type": self.type,
            "device_index": self.index, "device_name": self.name(),
            "threads": torch.get_num_threads(), "affinity": affinity,
        }


def cpu_model_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class CpuDevice(Device):
    type = "cpu"

    def __init__(self, index: int = 0, *, clock_ns: Callable[[], int] = time.perf_counter_ns,
                 rapl_root: Path | str = RAPL_ROOT) -> None:
        super().__init__(index)
        self._clock_ns = clock_ns
        self._rapl_root = rapl_root

    @property
    def torch_device(self) -> str:
        return "cpu"

    def synchronize(self) -> None:
        return None

    def sample_timer(self) -> SampleTimer:
        return PerfCounterTimer(self._clock_ns)

    def time_call(self, fn: Callable[[], Any], settings: MeasureSettings, *, reset: Callable[[], None] | None = None,
                  flush: Callable[[], None] | None = None) -> TimedCall:
        """perf_counter_ns samples, as always on CPU; they are the call latency (``call_latency`` is None).

        The process's CPU time over the samples is stored beside them (``Timing.cpu_share``): how much
        of its threads' time the process really ran, the sign of a busy machine.
        """
        return time_host_call(fn, settings, reset=reset, flush=flush, clock_ns=self._clock_ns,
                              threads=torch.get_num_threads(), control=cpu_control())

    def memory_meter(self) -> MemoryMeter:
        return ProfilerMemoryMeter()

    def _make_energy_meter(self) -> EnergyMeter:
        return RaplEnergyMeter.create(self._rapl_root)

    def _make_conditions_probe(self) -> ConditionsProbe:
        return CpuProbe()

    def name(self) -> str:
        return cpu_model_name()


class CudaDevice(Device):
    """``cuda`` is the ``torch.cuda`` module, ``event_factory`` makes timing events, ``nvml`` the pynvml
    module, ``api`` the ``profiler.measure.cuda_time.CudaApi`` (``TorchCudaApi`` by default)."""

    type = "cuda"

    def __init__(self, index: int = 0, *, cuda: Any = None, event_factory: Callable[[], Any] | None = None,
                 nvml: Any = None, api: Any = None) -> None:
        super().__init__(index)
        self._api = api
        if cuda is None:
            cuda = torch.cuda
        self._cuda = cuda
        self._nvml = nvml
        if event_factory is None:
            def event_factory() -> Any:
                return cuda.Event(enable_timing=True)
        self._event_factory = event_factory
        self._flush_buf = None

    @property
    def torch_device(self) -> str:
        return f"cuda:{self.index}"

    def synchronize(self) -> None:
        self._cuda.synchronize(self.index)

    def sample_timer(self) -> SampleTimer:
        return CudaEventTimer(self._event_factory)

    def cuda_api(self) -> Any:
        if self._api is None:
            self._api = TorchCudaApi(self.index)
        return self._api

    def time_call(self, fn: Callable[[], Any], settings: MeasureSettings, *, reset: Callable[[], None] | None = None,
                  flush: Callable[[], None] | None = None) -> TimedCall:
        """Device time (``timing``) and call latency from one session (``profiler.measure.cuda_time``)."""
        return time_cuda_call(fn, settings, self.cuda_api(), reset=reset, flush=flush)

    def memory_meter(self) -> MemoryMeter:
        return CudaAllocatorMeter(self.index, self._cuda)

    def uuid(self) -> str | None:
        """``GPU-...`` as NVML spells it (None when torch does not say)."""
        try:
            raw = getattr(self._cuda.get_device_properties(self.index), "uuid", None)
        except Exception:
            return None
        if raw is None:
            return None
        return str(raw) if str(raw).startswith("GPU-") else f"GPU-{raw}"

    def _make_energy_meter(self) -> EnergyMeter:
        return NvmlEnergyMeter.create(self.index, nvml=self._nvml, uuid=self.uuid())

    def _make_conditions_probe(self) -> ConditionsProbe:
        return NvmlProbe.create(self.index, nvml=self._nvml, uuid=self.uuid())

    def l2_flusher(self) -> Callable[[], None]:
        """Zero a buffer of twice the L2 size (at least 64 MiB); runs outside the timing events."""
        if self._flush_buf is None:
            l2 = int(getattr(self._cuda.get_device_properties(self.index), "L2_cache_size", 0) or 0)
            nbytes = max(2 * l2, 64 << 20)
            self._flush_buf = torch.empty(nbytes, dtype=torch.uint8, device=self.torch_device)
        buf = self._flush_buf
        return buf.zero_

    def name(self) -> str:
        return str(self._cuda.get_device_name(self.index))


def get_device(device_type: str, index: int = 0) -> Device:
    """The ``Device`` for a device type ('cpu' or 'cuda'); ``UnavailableError`` if it is not here."""
    if device_type == "cpu":
        return CpuDevice(index)
    if device_type == "cuda":
        if not torch.cuda.is_available():
            raise UnavailableError("device 'cuda' requested but no CUDA device is visible to torch")
        if index >= torch.cuda.device_count():
            raise UnavailableError(f"CUDA device index {index} requested; {torch.cuda.device_count()} visible")
        return CudaDevice(index)
    raise UsageError(f"unknown device type {device_type!r}; valid: cpu, cuda")
