"""The one lazy-import boundary: torch and the slow or optional packages load on first use.

Every other import in ``profiler/`` sits at the top of its module (``tests/layout`` counts the
function-local ones: none). What goes through ``lazy_import`` instead, bound at module level:

- torch, in the modules that plan as well as measure (kernels, layers' entry, spec, runner, measure,
  tools): the CLI process plans and dispatches a sweep without importing torch; only workers do;
- in ``cli/`` and ``api.py``: the library parts that import torch at module level (the nn.Module
  layers, the runner, tools), so that ``serprof --help`` (~0.2 s) and ``import profiler`` stay light;
- fla and triton (seconds to import), matplotlib/seaborn, scipy.stats, and the optional packages
  (pynvml, submitit, pyarrow, pandas, jinja2): a missing one fails where it is used.

``lazy_import("pkg.mod")`` returns a module proxy; the first attribute access imports ``pkg.mod``
with ``importlib.import_module``; later reads and writes (monkeypatching included) go to the real
module. The proxy is never put in ``sys.modules``. ``available(name)`` asks whether an optional
package is installed without importing it.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
from typing import Any


class LazyModule(types.ModuleType):
    """A module proxy that imports its target on first attribute access."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = None

    def _load(self) -> types.ModuleType:
        target = self.__dict__["_lazy_target"]
        if target is None:
            target = importlib.import_module(self.__name__)
            self.__dict__["_lazy_target"] = target
        return target

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._load(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:   # patches reach the real module
        setattr(self._load(), attr, value)

    def __delattr__(self, attr: str) -> None:
        delattr(self._load(), attr)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        state = "loaded" if self.__dict__["_lazy_target"] is not None else "not loaded yet"
        return f"<lazy module {self.__name__!r} ({state})>"


def lazy_import(name: str) -> Any:
    """Return a proxy for module ``name`` that imports it when first used."""
    return LazyModule(name)


def available(name: str) -> bool:
    """Whether module ``name`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):   # a parent package is missing or broken
        return False


def is_loaded(module: Any) -> bool:
    """Whether a proxy's target has been imported (always True for a real module)."""
    return not isinstance(module, LazyModule) or module.__dict__["_lazy_target"] is not None
