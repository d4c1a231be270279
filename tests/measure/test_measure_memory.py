"""Memory meters: the CPU profiler meter on known allocations, the CUDA meter on a fake allocator."""

from __future__ import annotations

import pytest
import torch

from profiler.measure.memory import (
    CudaAllocatorMeter,
    ProfilerMemoryMeter,
    peak_from_deltas,
)

MiB = 1 << 20


def test_peak_from_deltas():
    assert peak_from_deltas([64 * MiB, -64 * MiB, 32 * MiB]) == 64 * MiB
    assert peak_from_deltas([10, 20, -25, 30]) == 35
    assert peak_from_deltas([-100, 50]) == 0        # frees of pre-existing tensors never go below 0
    assert peak_from_deltas([]) == 0


def test_profiler_meter_alloc_free_alloc():
    keep = []

    def fn() -> None:
        a = torch.empty(64 * MiB, dtype=torch.uint8)
        del a
        keep.append(torch.empty(32 * MiB, dtype=torch.uint8))

    r = ProfilerMemoryMeter().measure(fn)
    assert r.peak_bytes == 64 * MiB
    assert r.reserved_bytes is None


def test_profiler_meter_coexisting_buffers_and_preexisting_memory():
    before = torch.ones(16 * MiB, dtype=torch.uint8)   # allocated before the call: not counted

    def fn() -> None:
        a = torch.empty(64 * MiB, dtype=torch.uint8)
        b = torch.empty(32 * MiB, dtype=torch.uint8)
        del a, b

    r = ProfilerMemoryMeter().measure(fn)
    assert r.peak_bytes == 96 * MiB
    del before


def test_profiler_meter_sees_a_matmul_output():
    x = torch.randn(256, 512)

    def fn() -> None:
        (x @ x.T).sum()

    r = ProfilerMemoryMeter().measure(fn)
    assert r.peak_bytes >= 256 * 256 * 4


class FakeCuda:
    """The parts of torch.cuda the allocator meter uses, with an allocator that tracks a peak."""

    def __init__(self, allocated: int) -> None:
        self.allocated = allocated
        self.peak = allocated
        self.reserved_peak = 0
        self.synced = 0

    def alloc(self, n: int) -> None:
        self.allocated += n
        self.peak = max(self.peak, self.allocated)
        self.reserved_peak = max(self.reserved_peak, self.allocated + 2 * MiB)

    def free(self, n: int) -> None:
        self.allocated -= n

    def synchronize(self, dev=None) -> None:
        self.synced += 1

    def reset_peak_memory_stats(self, dev=None) -> None:
        self.peak = self.allocated
        self.reserved_peak = 0

    def memory_allocated(self, dev=None) -> int:
        return self.allocated

    def max_memory_allocated(self, dev=None) -> int:
        return self.peak

    def max_memory_reserved(self, dev=None) -> int:
        return self.reserved_peak


def test_cuda_allocator_meter_subtracts_what_was_there():
    cuda = FakeCuda(allocated=1000 * MiB)
    cuda.peak = 5000 * MiB        # an earlier peak that reset_peak_memory_stats must clear

    def fn() -> None:
        cuda.alloc(64 * MiB)
        cuda.free(64 * MiB)
        cuda.alloc(32 * MiB)

    r = CudaAllocatorMeter(0, cuda).measure(fn)
    assert r.peak_bytes == 64 * MiB
    assert r.reserved_bytes == 1066 * MiB
    assert cuda.synced == 2


@pytest.mark.parametrize("n", [1, 3])
def test_profiler_meter_is_repeatable(n):
    def fn() -> None:
        for _ in range(n):
            torch.empty(8 * MiB, dtype=torch.uint8)

    assert ProfilerMemoryMeter().measure(fn).peak_bytes == 8 * MiB
