"""serprof: latency, peak-memory and energy profiling of attention kernels.

The package reads as the data flow; each part imports only the parts before it:
core -> store -> kernels -> layers -> spec -> measure -> runner -> analysis -> report -> tools -> api -> cli
(``tests/layout/test_layout_imports.py``). ``analysis`` and ``report`` never import torch, so a report
can be rebuilt from a run folder alone. ``profiler.sweep(...)``, ``profiler.report(...)`` ... are the
public API (``profiler.api``).
"""

import warnings

from profiler.core.version import __version__

# fla warns on import when no GPU driver exists; serprof already reports that (`serprof list`, `env`).
warnings.filterwarnings("ignore", message="Triton is not supported on current platform")

#: the public Python API (``profiler.api``), loaded on first use so that ``import profiler`` stays cheap
_API = ("sweep", "plan", "report", "export", "verify", "gate", "gate_interleave", "status", "SweepOutcome")


def __getattr__(name: str):
    if name in _API or name == "api":
        import profiler.api as api

        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'profiler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, "api"])
