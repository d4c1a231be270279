"""Device abstraction: CPU and CUDA devices hand out the right timer and meters (CUDA via fakes)."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pynvml
import pytest
import torch

from profiler.core.errors import UnavailableError, UsageError
from profiler.measure import device as devmod
from profiler.measure.energy import NullEnergyMeter, NvmlEnergyMeter
from profiler.measure.memory import CudaAllocatorMeter, ProfilerMemoryMeter
from profiler.measure.timer import CudaEventTimer, PerfCounterTimer


class FakeCudaModule:
    def __init__(self) -> None:
        self.synced: list[int] = []

    def synchronize(self, index=None) -> None:
        self.synced.append(index)

    def get_device_name(self, index) -> str:
        return "NVIDIA Fake 80GB"

    def get_device_properties(self, index):
        return SimpleNamespace(uuid="1234-abcd", L2_cache_size=50 << 20)


def test_cpu_device(tmp_path):
    d = devmod.CpuDevice(rapl_root=tmp_path)
    assert d.torch_device == "cpu"
    assert isinstance(d.sample_timer(), PerfCounterTimer)
    assert isinstance(d.memory_meter(), ProfilerMemoryMeter)
    meter = d.energy_meter()
    assert isinstance(meter, NullEnergyMeter) and d.energy_meter() is meter   # created once
    assert d.l2_flusher() is None
    info = d.info()
    assert info["device_type"] == "cpu" and info["threads"] == torch.get_num_threads()
    assert {"host", "pid", "device_name", "affinity"} <= set(info)


def test_cuda_device_wires_events_allocator_and_nvml_by_uuid():
    cuda = FakeCudaModule()
    nvml = mock.create_autospec(pynvml)
    nvml.nvmlDeviceGetHandleByUUID.return_value = "by-uuid"
    d = devmod.CudaDevice(1, cuda=cuda, event_factory=lambda: None, nvml=nvml)
    assert d.torch_device == "cuda:1" and d.name() == "NVIDIA Fake 80GB"
    d.synchronize()
    assert cuda.synced == [1]
    assert isinstance(d.sample_timer(), CudaEventTimer)
    assert isinstance(d.memory_meter(), CudaAllocatorMeter)
    meter = d.energy_meter()
    assert isinstance(meter, NvmlEnergyMeter)
    nvml.nvmlDeviceGetHandleByUUID.assert_called_once_with("GPU-1234-abcd")
    nvml.nvmlDeviceGetTotalEnergyConsumption.assert_called_with("by-uuid")


def test_get_device_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UnavailableError, match="no CUDA device"):
        devmod.get_device("cuda")
    with pytest.raises(UsageError, match="valid: cpu, cuda"):
        devmod.get_device("tpu")
    assert isinstance(devmod.get_device("cpu"), devmod.CpuDevice)


@pytest.mark.gpu
def test_real_cuda_point():
    """On a GPU machine: a real SDPA point with CUDA events, allocator peak and NVML energy."""
    from profiler.core.records import MeasureSettings, PointSpec
    from profiler.measure.point import measure_point

    s = MeasureSettings(warmup_s=0.05, min_reps=5, time_budget_s=0.5, energy_window_s=0.5, verify=True)
    rec = measure_point(PointSpec("softmax", "sdpa", device="cuda", dtype="float16", T=1024), s)
    assert rec.status == "ok" and rec.timing.timer == "cuda_event"
    assert rec.timing.quantity == "device_time" and rec.timing.method == "cuda_graph", rec.timing.method_reason
    assert rec.call_latency is not None and rec.call_latency.quantity == "call_latency"
    assert rec.first_call is not None and rec.first_call.wall_s > 0 and rec.launch_bound is not None
    assert rec.memory.method == "cuda_allocator" and rec.memory.peak_bytes >= 1 * 1024 * 4 * 64 * 2
    assert rec.energy.energy_j is not None or rec.energy.reason
