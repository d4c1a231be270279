"""Which group (``KernelSpec.group``: softmax / linear+decay / gated / delta-rule / sparse / other) a
mechanism belongs to, for grouped figures and tables.

Report works from stored records and never imports ``profiler.kernels``. The group comes, in order,
from the run's ``manifest.notes["groups"]`` (``{kernel: group}``, written by the sweep), from a
lookup the API layer installs with ``use_lookup`` (the live kernel registry, plugins included), else
"other" (an unknown or uninstalled plugin kernel). Values only; nothing here renders.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

OTHER = "other"
SOFTMAX = "softmax"
#: Display order when no lookup supplied one (the registry's ``GROUPS`` replaces it).
DEFAULT_ORDER: tuple[str, ...] = ("softmax", "linear+decay", "gated", "delta-rule", "sparse", "other")

_lookup: Callable[[str], str | None] | None = None
_order: tuple[str, ...] = DEFAULT_ORDER


def use_lookup(lookup: Callable[[str], str | None] | None, order: Sequence[str] | None = None) -> None:
    """Install ``lookup(kernel) -> group or None`` and the groups' display order (None: remove)."""
    global _lookup, _order
    _lookup = lookup
    _order = tuple(order) if order else DEFAULT_ORDER


def group_of(kernel: str, manifest_notes: Mapping[str, Any] | None = None) -> str:
    """The group of ``kernel`` (see the module docstring); "softmax" for the softmax kernel always."""
    stored = (manifest_notes or {}).get("groups") if isinstance(manifest_notes, Mapping) else None
    if isinstance(stored, Mapping) and isinstance(stored.get(kernel), str):
        return stored[kernel]
    if _lookup is not None:
        try:
            g = _lookup(kernel)
        except Exception:  # noqa: BLE001 - a broken plugin must not break a report
            g = None
        if g:
            return str(g)
    return SOFTMAX if kernel == SOFTMAX else OTHER


def rank(group: str) -> int:
    """Sort key of a group: its display position; unknown groups after the known ones, before "other"."""
    if group in _order and group != OTHER:
        return _order.index(group)
    return len(_order) + (1 if group == OTHER else 0)


def ordered(groups: Iterable[str]) -> list[str]:
    return sorted(set(groups), key=lambda g: (rank(g), g))
