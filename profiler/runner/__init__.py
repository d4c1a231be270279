"""Running points: worker processes, scheduling, failure classification, executors.

``run_sweep`` (``profiler.runner.sweep``) is the entry point; ``Executor`` (``profiler.runner.base``)
is the interface executors implement (``LocalExecutor`` today); ``profiler.runner.worker`` holds the
functions a worker process runs, through the isolated-call seam (``profiler.core.isolated``). Also
here: interleaved A/B of two git refs (``interleaved_ab``), the engine's benchmarks (``bench``,
``scaleout_bench``) and ``doctor``. Importing this package is cheap (no torch).
"""

from profiler.runner.base import Executor, PointQueue, RunEvents
from profiler.runner.local import LocalExecutor
from profiler.runner.sweep import SweepObserver, SweepResult, run_sweep

__all__ = ["Executor", "PointQueue", "RunEvents", "LocalExecutor", "SweepObserver", "SweepResult", "run_sweep"]
