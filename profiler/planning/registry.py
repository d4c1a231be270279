"""What can be measured at each level: the measurable entries by name (``profiler.kernels.base.Entry``).

``kernel``: the attention kernels (``profiler.kernels``); ``layer`` and ``model``: the study's seq2seq
layers alone or inside the SER head (``profiler.layers.entry``). The planner and the measurement
pipeline both look entries up here, so neither branches on the level.
"""

from __future__ import annotations

from profiler.core.errors import UsageError, did_you_mean
from profiler.core.records import LEVELS
from profiler.kernels import get_kernel
from profiler.kernels import registry as kernels
from profiler.kernels.base import Entry
from profiler.layers.entry import entry
from profiler.layers.entry import registry as layers


def registry(level: str) -> dict[str, Entry]:
    """Entries of ``level`` by name, in display order."""
    if level == "kernel":
        return dict(kernels())
    if level in ("layer", "model"):
        return dict(layers(level))
    raise UsageError(f"unknown level {level!r}; {did_you_mean(level, LEVELS)}")


def get_entry(level: str, name: str) -> Entry:
    """The entry of one point (``PointSpec.level``, ``PointSpec.kernel``)."""
    if level == "kernel":
        return get_kernel(name)
    if level in ("layer", "model"):
        return entry(name, level)
    raise UsageError(f"unknown level {level!r}; {did_you_mean(level, LEVELS)}")
