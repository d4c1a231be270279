"""Kernels from outside serprof: installed entry points and ``--kernel-module`` modules.

A plugin is a Python module that exports ``KERNEL`` (one ``KernelSpec``) or ``KERNELS`` (a sequence of
them); see ``profiler.kernels`` for the authoring API. Two ways in:

* **Entry points.** An installed distribution declares, in its ``pyproject.toml``::

      [project.entry-points."serprof.kernels"]
      toy = "serprof_toy_kernel"          # a module, or "pkg.mod:OBJ" naming a KernelSpec / sequence

  Every process that builds the registry loads them. A broken one (import error, no ``KERNEL``,
  a malformed spec, a name taken) is one warning line naming the entry point and what is wrong,
  printed once per process, and the other kernels are unaffected.
* **Kernel modules** named by the ``kernel_modules`` setting (``--kernel-module``, the scenario key
  ``settings.kernel_modules``, the API keyword ``kernel_modules=``). The names are stored with the run's
  settings, so every worker process (local, multi-worker, SLURM shard, ``--resume``) imports them
  before it measures a point. A module that fails is a ``UsageError`` (exit 2) naming the flag.

Static checks here (``validate``); the runtime contract (output shape and dtype, a reference that
runs) is checked before timing by ``profiler.kernels.verify``, whose errors name the kernel's origin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from typing import Any, Iterable

from profiler.kernels.base import KernelSpec

#: The entry-point group installed kernel packages declare.
ENTRY_POINT_GROUP = "serprof.kernels"


class PluginError(Exception):
    """A plugin that cannot be used; the message is one line naming the plugin and the problem."""


def validate(spec: Any, origin: str) -> KernelSpec:
    """``spec`` if it is a usable ``KernelSpec``; else ``PluginError`` naming ``origin`` and the problem."""
    if not isinstance(spec, KernelSpec):
        raise PluginError(f"{origin}: expected a profiler.kernels.KernelSpec, got {type(spec).__name__}")
    what = f"{origin}: kernel {spec.name!r}"
    if not isinstance(spec.name, str) or not spec.name or any(c in spec.name for c in " ,/:\t\n"):
        raise PluginError(f"{origin}: kernel name {spec.name!r} must be a non-empty word without spaces, ',', '/', ':'")
    if spec.reference is None or not callable(spec.reference):
        raise PluginError(f"{what} has no callable reference (the fp32 oracle every backend is checked against)")
    if not callable(spec.make_inputs):
        raise PluginError(f"{what}: make_inputs is not callable")
    for fn in ("flops", "bytes_moved", "memory_bytes"):
        if not callable(getattr(spec, fn)):
            raise PluginError(f"{what}: {fn} is not callable")
    if not spec.backends:
        raise PluginError(f"{what} has no backends")
    for bname, b in spec.backends.items():
        if b.run is None or not callable(b.run):
            raise PluginError(f"{what}: backend {bname!r} has no callable run")
        if b.name != bname:
            raise PluginError(f"{what}: backend registered as {bname!r} is named {b.name!r}")
    if spec.default_backend not in spec.backends:
        raise PluginError(f"{what}: default_backend {spec.default_backend!r} is not one of its backends "
                          f"({', '.join(spec.backends)})")
    return spec


def kernels_of(obj: Any, origin: str) -> list[KernelSpec]:
    """The kernels a module (``KERNEL`` / ``KERNELS``) or an object (a spec or a sequence) provides."""
    if isinstance(obj, KernelSpec):
        items: Iterable[Any] = [obj]
    elif hasattr(obj, "__spec__") and hasattr(obj, "__name__") and not isinstance(obj, (list, tuple)):
        if hasattr(obj, "KERNELS"):
            items = obj.KERNELS
        elif hasattr(obj, "KERNEL"):
            items = [obj.KERNEL]
        else:
            raise PluginError(f"{origin}: module {obj.__name__!r} exports neither KERNEL nor KERNELS")
    else:
        items = obj
    try:
        items = list(items)
    except TypeError:
        raise PluginError(f"{origin}: expected a KernelSpec or a sequence of them, got {type(obj).__name__}") from None
    if not items:
        raise PluginError(f"{origin}: exports no kernels")
    return [validate(s, origin) for s in items]


def _import(name: str, origin: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any failure of a plugin's import is that plugin's problem
        first = (str(exc).strip().splitlines() or [""])[0]
        raise PluginError(f"{origin}: cannot import {name!r}: {type(exc).__name__}: {first}") from None


def load_module(name: str, origin: str | None = None) -> list[KernelSpec]:
    """Import module ``name`` and return its validated kernels (``PluginError`` on any problem).

    The current directory is searched last (as ``python -m`` would), so ``--kernel-module my_kernels``
    finds ``./my_kernels.py``; worker processes start in the sweep's directory.
    """
    origin = origin or f"kernel module {name!r}"
    if not isinstance(name, str) or not name or not all(p.isidentifier() for p in name.split(".")):
        raise PluginError(f"{origin}: {name!r} is not a dotted module name such as 'mypkg.kernels'")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    return kernels_of(_import(name, origin), origin)


def entry_point_kernels() -> tuple[list[tuple[KernelSpec, str]], list[str]]:
    """Kernels of every installed ``serprof.kernels`` entry point: ``([(spec, origin)], [problem lines])``."""
    found: list[tuple[KernelSpec, str]] = []
    problems: list[str] = []
    try:
        eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # noqa: BLE001 - broken metadata of some distribution must not stop serprof
        return found, [f"entry points {ENTRY_POINT_GROUP!r} unreadable: {type(exc).__name__}: {exc}"]
    for ep in sorted(eps, key=lambda e: e.name):
        dist = getattr(getattr(ep, "dist", None), "name", None)
        origin = f"plugin {ep.name!r} (entry point {ENTRY_POINT_GROUP}" + (f" of {dist})" if dist else ")")
        try:
            module, _, attr = ep.value.partition(":")
            obj = _import(module.strip(), origin)
            for part in attr.strip().split(".") if attr.strip() else ():
                if not hasattr(obj, part):
                    raise PluginError(f"{origin}: {ep.value!r} has no attribute {part!r}")
                obj = getattr(obj, part)
            found += [(s, origin) for s in kernels_of(obj, origin)]
        except PluginError as exc:
            problems.append(str(exc))
    return found, problems


_warned: set[str] = set()


def warn_once(lines: Iterable[str]) -> None:
    """Print each problem line to stderr once per process (``serprof: warning: ...``)."""
    for line in lines:
        if line not in _warned:
            _warned.add(line)
            sys.stderr.write(f"serprof: warning: {line}; its kernels are skipped\n")
