"""Peak memory of one call: bytes of tensors alive at the peak, above what was allocated on entry.

What is measured
    * CUDA (``CudaAllocatorMeter``, method ``cuda_allocator``)::

          sync(); reset_peak_memory_stats(dev); before = memory_allocated(dev)
          fn(); sync()
          peak_bytes = max_memory_allocated(dev) - before
          reserved_bytes = max_memory_reserved(dev)        # absolute peak of the caching allocator

    * CPU (``ProfilerMemoryMeter``, method ``torch_profiler``): the same meaning, from the
      allocator's own events. ``fn()`` runs once under
      ``torch.profiler.profile(activities=[CPU], profile_memory=True)``; every tensor allocation and
      free during the call is a ``[memory]`` event with a signed byte count. They are read straight
      from the profiler's kineto results (``prof.profiler.kineto_results.events()``; no trace
      export), ordered by time, and::

          peak_bytes = max(0, max(running_sum(+alloc, -free)))

      i.e. the largest amount of tensor memory the call held at once, counted from zero at entry.
      Tensors that outlive the call (the output, gradients) are included, as on CUDA.

What is not captured
    Memory that is not a torch tensor (allocator slack, caching-allocator rounding on CPU, oneDNN/BLAS
    scratch buffers, Python objects), memory freed before the call that the call reuses, and on CUDA
    workspace of libraries that allocate outside torch's allocator (cuBLAS/cuDNN handles) and
    Triton's autotuning buffers (outside the call by design). Process RSS is deliberately not used:
    it is dominated by the allocator's reuse of freed pages and by other libraries.
    The profiler costs ~1 s the first time it runs in a process (kineto start-up), well under a
    millisecond afterwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from profiler.core.lazy import lazy_import

torch = lazy_import("torch")
torch_profiler = lazy_import("torch.profiler")


Call = Callable[[], Any]


@dataclass(frozen=True)
class MemoryReading:
    """One call's peak (bytes above entry) and, on CUDA, the allocator's reserved peak (bytes)."""

    peak_bytes: int | None
    reserved_bytes: int | None = None


class MemoryMeter(ABC):
    """Measures the peak memory of one call of ``fn``."""

    method: str = ""

    @abstractmethod
    def measure(self, fn: Call) -> MemoryReading:
        """Run ``fn`` once and return its peak."""


def peak_from_deltas(deltas: Iterable[int]) -> int:
    """Peak of the running sum of signed allocation sizes (bytes), counted from 0; never negative."""
    running = peak = 0
    for d in deltas:
        running += int(d)
        if running > peak:
            peak = running
    return peak


def memory_deltas_from_kineto(events: Iterable[Any], device_type: str = "CPU") -> list[int]:
    """Signed byte counts of the ``[memory]`` events of one device type, in time order."""
    picked = []
    for i, e in enumerate(events):
        if e.name() != "[memory]":
            continue
        if str(e.device_type()).rsplit(".", 1)[-1].split(":")[0] != device_type:
            continue
        picked.append((e.start_ns(), i, int(e.nbytes())))
    picked.sort()  # time order; ties keep the recorded order
    return [d for _, _, d in picked]


class ProfilerMemoryMeter(MemoryMeter):
    """CPU: running sum of torch.profiler's allocation events during one call (see module doc)."""

    method = "torch_profiler"

    def measure(self, fn: Call) -> MemoryReading:
        with torch_profiler.profile(activities=[torch_profiler.ProfilerActivity.CPU], profile_memory=True, record_shapes=False) as prof:
            fn()
        events = prof.profiler.kineto_results.events()
        return MemoryReading(peak_bytes=peak_from_deltas(memory_deltas_from_kineto(events, "CPU")))


class CudaAllocatorMeter(MemoryMeter):
    """CUDA: torch caching allocator's peak during one call minus what was allocated before it.

    ``cuda`` is the ``torch.cuda`` module (a seam for tests).
    """

    method = "cuda_allocator"

    def __init__(self, index: int = 0, cuda: Any = None) -> None:
        if cuda is None:
            cuda = torch.cuda
        self._cuda = cuda
        self._index = index

    def measure(self, fn: Call) -> MemoryReading:
        c, dev = self._cuda, self._index
        c.synchronize(dev)
        c.reset_peak_memory_stats(dev)
        before = c.memory_allocated(dev)
        fn()
        c.synchronize(dev)
        peak = c.max_memory_allocated(dev) - before
        return MemoryReading(peak_bytes=max(0, int(peak)), reserved_bytes=int(c.max_memory_reserved(dev)))
