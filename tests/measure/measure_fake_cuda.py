"""A simulated CUDA device for timing tests, modelled on the H200 measurements.

The host has a clock that only host work advances (``h`` seconds to enqueue one call); the device
has a timeline: work enqueued at host time ``t`` starts at ``max(t, device free)`` and runs ``d``
seconds. Events stamp the device timeline, ``synchronize`` moves the host clock to device idle,
graph capture records the device work without running it and a replay enqueues it all for a small
fixed host cost, an op that synchronises inside raises on capture as torch does, and the profiler
returns the device kernels of one call. ``FakeGpu`` implements ``profiler.measure.cuda_time.CudaApi``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable

from profiler.measure import point
from profiler.measure.device import CudaDevice
from profiler.planning import registry as planning_registry

CAPTURE_ERROR = "CUDA error: operation not permitted when stream is capturing"


class FakeEvent:
    def __init__(self, gpu: "FakeGpu") -> None:
        self.gpu = gpu
        self.t: float | None = None

    def record(self) -> None:
        g = self.gpu
        g.host += g.event_host_s
        self.t = max(g.host, g.free)      # the stream reaches the event after queued work
        g.free = self.t

    def synchronize(self) -> None:
        assert self.t is not None
        self.gpu.host = max(self.gpu.host, self.t)

    def elapsed_time(self, end: "FakeEvent") -> float:
        assert self.t is not None and end.t is not None
        return (end.t - self.t) * 1e3


class FakeGraph:
    def __init__(self, gpu: "FakeGpu", work: list[float]) -> None:
        self.gpu = gpu
        self.work = work
        self.replays = 0

    def replay(self) -> None:
        g = self.gpu
        if g.replay_fails:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (replay)")
        self.replays += 1
        g.host += g.replay_host_s
        for d in self.work:
            g.enqueue(d)


class FakeGpu:
    def __init__(self, *, replay_host_s: float = 5e-6, event_host_s: float = 1e-6,
                 profiler_host_s: float = 0.02, profiler_fails: bool = False, replay_fails: bool = False) -> None:
        self.host = 0.0
        self.free = 0.0
        self.replay_host_s = replay_host_s
        self.event_host_s = event_host_s
        self.profiler_host_s = profiler_host_s
        self.profiler_fails = profiler_fails
        self.replay_fails = replay_fails
        self.capturing: list[float] | None = None
        self.profiling: list[tuple[float, float]] | None = None
        self.captures: list[int] = []       # calls per captured graph
        self.spins: list[float] = []

    # -- the simulated machine
    def enqueue(self, d: float) -> None:
        start = max(self.host, self.free)
        self.free = start + d
        if self.profiling is not None:
            self.profiling.append((start, start + d))

    def op(self, h: float, d: float, *, host_sync: bool = False, kernels: int = 1,
           first_extra_s: float = 0.0) -> Callable[[], None]:
        """A call: ``h`` s of host work, ``kernels`` kernels totalling ``d`` s; the first call costs
        ``first_extra_s`` more host time (compile/autotune)."""
        state = {"calls": 0}

        def fn() -> None:
            if self.capturing is not None:
                if host_sync:
                    raise RuntimeError(CAPTURE_ERROR)
                self.capturing.extend([d / kernels] * kernels)
                return
            state["calls"] += 1
            self.host += first_extra_s if state["calls"] == 1 else 0.0
            for _ in range(kernels):
                self.host += h / kernels       # launches interleave with host work
                self.enqueue(d / kernels)
            if host_sync:
                self.synchronize()

        fn.state = state
        return fn

    # -- CudaApi
    def clock_ns(self) -> int:
        return int(round(self.host * 1e9))

    def event(self) -> FakeEvent:
        return FakeEvent(self)

    def synchronize(self) -> None:
        self.host = max(self.host, self.free)

    def capture(self, fn: Callable[[], None], calls: int) -> FakeGraph:
        self.capturing = []
        try:
            for _ in range(calls):
                fn()
            work = self.capturing
        finally:
            self.capturing = None
        self.captures.append(calls)
        return FakeGraph(self, work)

    def kernel_intervals(self, fn: Callable[[], None]) -> list[tuple[float, float]]:
        if self.profiler_fails:
            raise RuntimeError("CUPTI_ERROR_NOT_INITIALIZED: profiler unavailable")
        self.synchronize()
        self.profiling = []
        try:
            fn()
            self.synchronize()
            return list(self.profiling)
        finally:
            self.profiling = None
            self.host += self.profiler_host_s

    def spin(self, seconds: float) -> None:
        self.spins.append(seconds)
        self.host += 2e-6
        self.enqueue(seconds)


# ----------------------------------------------------------------------------- points on the simulated GPU

class CpuBackedFakeCuda(CudaDevice):
    """The simulated GPU's clocks and graphs behind serprof's CUDA device; tensors stay on the CPU."""

    @property
    def torch_device(self) -> str:
        return "cpu"

    def info(self):
        return {"device_name": "NVIDIA Fake H200"}


def fake_cuda_device(gpu: FakeGpu) -> CpuBackedFakeCuda:
    """A ``CudaDevice`` timed by ``gpu`` (events, graphs) whose tensors live on the CPU."""
    return CpuBackedFakeCuda(0, cuda=SimpleNamespace(), event_factory=gpu.event, api=gpu)


def simulate_device_work(monkeypatch, op_for: Callable, *, keep_host_call: bool = True) -> None:
    """Make every point built by ``profiler.measure.point`` also enqueue ``op_for(work)()`` on the
    simulated GPU (its device time), after the real CPU call (``keep_host_call``) or instead of it.
    Verification and the analytic models stay those of the real entry."""
    real_entry = planning_registry.get_entry

    def entry(level, kernel):
        e = real_entry(level, kernel)

        def build(p, device, seed):
            work = e.build(p, device, seed)
            real, op = work.call, op_for(work)
            work.call = (lambda: (real(), op())) if keep_host_call else (lambda: op())
            return work
        return SimpleNamespace(check_shape=e.check_shape, analytic=e.analytic, verify=e.verify, build=build)

    monkeypatch.setattr(point, "get_entry", entry)
