"""serprof: latency, peak-memory and energy profiling of attention kernels.

Layers point forward only: scenario -> plan -> runner -> measure -> store -> analysis -> report.
``analysis`` and ``report`` never import torch, so a report can be rebuilt from a run folder alone.
"""

import warnings

from profiler.core.version import __version__

# fla warns on import when no GPU driver exists; serprof already reports that (`serprof list`, `env`).
warnings.filterwarnings("ignore", message="Triton is not supported on current platform")
