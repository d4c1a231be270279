"""serprof: latency, peak-memory and energy profiling of attention kernels.

The package reads as the data flow; each part imports only the parts before it:
core -> store -> kernels -> layers -> planning -> measure -> runner -> analysis -> report -> probes -> api -> cli
(``tests/layout/test_layout_imports.py``). ``analysis`` and ``report`` never import torch, so a report
can be rebuilt from a run folder alone. ``profiler.measure(...)``, ``profiler.sweep(...)``,
``profiler.load(...)``, ``profiler.analyze(...)``, ``profiler.report(...)``, ``profiler.gate(...)`` ...
are the public API (``profiler.api``), loaded on first use: ``import profiler`` does not import torch.

Two API functions share their names with subpackages: ``profiler.measure`` (the function; the
package ``profiler/measure/`` is the measurement engine) and ``profiler.report`` (the function; the
package ``profiler/report/`` renders). Python binds a subpackage as an attribute of its parent the
first time it is imported, which would replace the function. So both subpackages are imported here,
first, and that attribute is removed: the names then resolve to the API functions (``__getattr__``),
while the subpackages stay importable by their full names (``from profiler.report.html import
render_run``, ``from profiler.measure import point``). The forms that read ``profiler.report`` as an
attribute get the function: ``import profiler.report as r`` and ``import profiler.measure.point as p``
do not give the modules; write ``from profiler.measure import point``. Both subpackages are cheap
to import (no torch, no matplotlib). Renaming the subpackages (issue 16, item 6) would end this.
"""

import importlib
import warnings

from profiler.core.version import __version__

# fla warns on import when no GPU driver exists; serprof already reports that (`serprof list`, `env`).
warnings.filterwarnings("ignore", message="Triton is not supported on current platform")

#: the public Python API (``profiler.api``), loaded on first use so that ``import profiler`` stays cheap
_API = ("measure", "sweep", "load", "analyze", "report", "gate", "export", "plan", "verify", "gate_interleave",
        "gate_calibrate",
        "status", "markdown_summary", "save_baseline", "list_kernels", "env", "frontier", "trace", "doctor",
        "Run", "Analysis", "SweepOutcome")

#: subpackages whose name is also an API function (see the module docstring)
_SHADOWED = ("measure", "report")
for _name in _SHADOWED:
    importlib.import_module(f"{__name__}.{_name}")
    globals().pop(_name, None)
del _name


def __getattr__(name: str):
    if name in _API or name == "api":
        api = importlib.import_module(f"{__name__}.api")
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'profiler' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API, "api"])
