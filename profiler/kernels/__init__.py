"""Kernel registry: one module per mechanism, each exporting ``KERNEL: KernelSpec``.

Importing this package is cheap; ``registry()`` imports the mechanism modules (and torch) on first
use. fla itself is imported only when an fla backend or reference actually runs.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from profiler.core.errors import UnavailableError, UsageError, did_you_mean
from profiler.kernels.base import Backend, KernelSpec, Shape

#: Registration order is display order: the quadratic baseline first.
MECHANISMS = ("softmax", "retnet", "lightnet", "gsa", "fox", "kda")


@lru_cache(maxsize=1)
def registry() -> dict[str, KernelSpec]:
    """All kernels by name."""
    out: dict[str, KernelSpec] = {}
    for name in MECHANISMS:
        mod = importlib.import_module(f"profiler.kernels.{name}")
        spec: KernelSpec = mod.KERNEL
        out[spec.name] = spec
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


__all__ = ["Backend", "KernelSpec", "Shape", "MECHANISMS", "registry", "get_kernel", "get_backend", "require_available"]
