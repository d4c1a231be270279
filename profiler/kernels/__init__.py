"""Kernel registry and the public API for writing a kernel (built-in or plugin).

**Writing a kernel** (stable API: the names in ``__all__``). A kernel is one ``KernelSpec``: a
name, ``make_inputs(shape, dtype, device, seed) -> dict`` of tensors in layout ``(B, T, H, D)``,
``backends`` (name -> ``Backend(name, run)`` with ``run(inputs, causal) -> (B, T, H, Dv)`` output in the
inputs' dtype), an fp32 ``reference`` with the same signature (every backend is checked against it
before it is timed), and analytic ``flops`` / ``bytes_moved`` / ``memory_bytes`` models. ``Shape`` is
the point's ``(B, T, H, D)``; ``make_qkv`` draws deterministic q, k, v. Export it from a module as
``KERNEL`` (or ``KERNELS``) and either declare the module under the entry-point group
``serprof.kernels`` in your package's ``pyproject.toml`` or pass ``--kernel-module your.module``.
``examples/serprof-toy-kernel`` is a complete plugin package.

**The registry**: the built-in catalogue, installed plugins and ``--kernel-module`` modules.

Built-ins: one module per hand-written mechanism (``MODULES``), each exporting ``KERNEL: KernelSpec``,
and one row per fla op family in ``profiler.kernels.catalog.FAMILIES`` (declarative, run on CPU by the
shared chunkwise engine ``profiler.kernels.chunkwise``). Plugins:
installed distributions declaring the entry-point group ``serprof.kernels``, and modules named by
the ``kernel_modules`` setting (``use_kernel_modules``); see ``profiler.kernels.plugins`` and the
authoring API ``profiler.plugin``. Built-ins come first, then entry points, then kernel modules; a
name already taken is refused (a warning for an entry point, a ``UsageError`` for a module).

Importing this package is cheap; ``registry()`` imports the mechanism modules (and torch) on first
use. fla itself is imported only when an fla backend or reference actually runs.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Iterable

from profiler.core.errors import UnavailableError, UsageError, did_you_mean
from profiler.kernels import catalog as _catalog
from profiler.kernels import catalog_attn as _catalog_attn
from profiler.kernels import catalog_delta as _catalog_delta
from profiler.kernels import catalog_memory as _catalog_memory
from profiler.kernels import plugins
from profiler.kernels.base import (
    ALL_DTYPES,
    GROUPS,
    Analytic,
    Backend,
    KernelSpec,
    Shape,
    Workload,
    forward_backward_flops,
    require_causal,
)
from profiler.kernels.origins import ORIGINS as _origins
from profiler.kernels.origins import label
from profiler.kernels.plugins import ENTRY_POINT_GROUP
from profiler.kernels.softmax import make_qkv, randn, scale_of

#: Hand-written mechanism modules (each exports ``KERNEL``), then the declarative fla catalogue.
MODULES = ("softmax", "retnet", "lightnet", "gsa", "fox", "kda")
#: Registration order is display order: the quadratic baseline first, then the hand-written
#: mechanisms, then fla's catalogue (``profiler.kernels.catalog.FAMILIES``: one row per family).
MECHANISMS = MODULES + _catalog.NAMES
#: then the generalized delta-rule families (``profiler.kernels.catalog_delta.MECHANISMS``)
MECHANISMS += _catalog_delta.NAMES
MECHANISMS += _catalog_attn.NAMES   # feature-map and sparse / quadratic fla families
MECHANISMS += _catalog_memory.NAMES   # log-linear attention, TTT-Linear, CyFA (structured memories)

BUILTIN = "built-in"

_modules: dict[str, list[KernelSpec]] = {}     # kernel modules loaded in this process, in order


@lru_cache(maxsize=1)
def builtins() -> dict[str, KernelSpec]:
    """The built-in catalogue by name."""
    out: dict[str, KernelSpec] = {}
    for name in MODULES:
        spec: KernelSpec = importlib.import_module(f"profiler.kernels.{name}").KERNEL
        out[spec.name] = spec
    for spec in _catalog.KERNELS:
        out[spec.name] = spec
    for spec in (*_catalog_delta.KERNELS, *_catalog_attn.KERNELS, *_catalog_memory.KERNELS):
        out[spec.name] = spec
    return out


@lru_cache(maxsize=1)
def _entry_points() -> tuple[tuple[KernelSpec, str], ...]:
    found, problems = plugins.entry_point_kernels()
    taken = set(builtins())
    keep = []
    for spec, origin in found:
        if spec.name in taken:
            problems.append(f"{origin}: kernel name {spec.name!r} is already taken")
            continue
        taken.add(spec.name)
        keep.append((spec, origin))
    plugins.warn_once(problems)
    return tuple(keep)


def registry() -> dict[str, KernelSpec]:
    """All kernels by name: built-ins, then installed plugins, then loaded kernel modules."""
    out = dict(builtins())
    for spec, origin in _entry_points():
        out[spec.name] = spec
        _origins.setdefault(spec.name, origin)
    for specs in _modules.values():
        for spec in specs:
            out[spec.name] = spec
    return out


def origin(name: str) -> str:
    """Where kernel ``name`` comes from: ``built-in``, or the plugin (entry point or kernel module)."""
    registry()
    return _origins.get(name, BUILTIN)


def kernel_modules_in_use() -> list[str]:
    """The kernel modules imported into this process's registry (for child processes to import too)."""
    return list(_modules)


def use_kernel_modules(names: Iterable[str], where: str = "--kernel-module") -> list[str]:
    """Import each kernel module (``KERNEL`` / ``KERNELS``) and add its kernels to the registry.

    Idempotent per module. Any problem (import error, nothing exported, a malformed spec, a name
    already taken) is a ``UsageError`` (exit 2) naming ``where`` and the module. Returns the kernel
    names the modules provide.
    """
    names = list(names)
    out: list[str] = []
    for mod in names:
        if mod not in _modules:
            try:
                specs = plugins.load_module(mod, f"{where} {mod}")
            except plugins.PluginError as exc:
                raise UsageError(str(exc)) from None
            taken = registry()
            for s in specs:
                if s.name in taken:
                    raise UsageError(f"{where} {mod}: kernel name {s.name!r} is already taken by "
                                     f"{_origins.get(s.name, BUILTIN + ' ' + repr(s.name))}")
            _modules[mod] = specs
            for s in specs:
                _origins[s.name] = f"kernel module {mod!r}"
        out += [s.name for s in _modules[mod]]
    return out


def get_kernel(name: str) -> KernelSpec:
    reg = registry()
    if name not in reg:
        raise UsageError(f"unknown kernel {name!r}; {did_you_mean(name, reg)}")
    return reg[name]


def get_backend(kernel: str, backend: str) -> Backend:
    spec = get_kernel(kernel)
    if backend not in spec.backends:
        raise UsageError(f"kernel {kernel!r} has no backend {backend!r}; {did_you_mean(backend, spec.backends)}")
    return spec.backends[backend]


def require_available(kernel: str, backend: str, device: str, *, interpret: bool = False) -> Backend:
    """Return the backend or raise ``UnavailableError`` (exit 3) saying why it cannot run here."""
    b = get_backend(kernel, backend)
    ok, why = b.availability(device, interpret=interpret)
    if not ok:
        raise UnavailableError(f"{kernel}/{backend} is unavailable on {device}: {why}")
    return b


__all__ = ["Backend", "KernelSpec", "Shape", "Analytic", "Workload", "ALL_DTYPES", "GROUPS", "ENTRY_POINT_GROUP",
           "make_qkv", "randn", "scale_of", "require_causal", "forward_backward_flops", "MECHANISMS", "registry", "builtins", "origin", "label",
           "use_kernel_modules", "get_kernel", "get_backend", "require_available"]
