"""Documented ranges of every number serprof takes from a flag, a scenario file or a stored manifest.

One table, one check: the same limits hold for ``--timeout`` and ``[settings] point_timeout_s``, and
a manifest whose settings fall outside them (a hand-edited ``NaN``) is refused on ``--resume`` with
exit 2. Every number must be finite. ``check_number`` raises ``UsageError`` naming where the value
came from, the value as written and the allowed range.

=====================  ==========================  ==================================
setting / value        range                       flag / key
=====================  ==========================  ==================================
warmup_s               0 .. 3600 s                 --warmup, settings.warmup_s
time_budget_s          > 0 .. 86400 s              --time-budget
target_rel_ci          > 0 .. 1                    --target-ci
point_timeout_s        > 0 .. 604800 s (7 days)    --timeout
energy_window_s        > 0 .. 3600 s               settings.energy_window_s
min_warmup_calls       0 .. 100000
min_reps, max_reps     1 .. 1000000
verify_max_T           1 .. 2**31 - 1
seed                   0 .. 2**32 - 1
memory_budget_bytes    1 B .. 2**60 B (1 EiB)      --memory-budget, settings.memory_budget
lengths, batch, heads,
head_dim (each value)  1 .. 2**31 - 1              --lengths, --batch, --heads, --head-dim
values per list        at most 4096 (core.units.MAX_VALUES)
audio durations        1 ms .. 86400 s (1 day)     --audio
frame_rate             > 0 .. 100000 /s            frame_rate
text_rate              0 .. 100000 /s              --text-rate
utterances             0 .. 1000000                --utterances
processes              1 .. 64                     --processes, settings.processes
=====================  ==========================  ==================================
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from profiler.core.errors import UsageError

MAX_INT = 2 ** 31 - 1
MAX_BYTES = 2 ** 60
MAX_AUDIO_S = 86400.0
MIN_AUDIO_S = 1e-3

#: name -> (low, high, low_inclusive, integer)
RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "warmup_s": (0.0, 3600.0, True, False),
    "time_budget_s": (0.0, 86400.0, False, False),
    "target_rel_ci": (0.0, 1.0, False, False),
    "point_timeout_s": (0.0, 7 * 86400.0, False, False),
    "energy_window_s": (0.0, 3600.0, False, False),
    "min_warmup_calls": (0, 100_000, True, True),
    "min_reps": (1, 1_000_000, True, True),
    "max_reps": (1, 1_000_000, True, True),
    "verify_max_T": (1, MAX_INT, True, True),
    "seed": (0, 2 ** 32 - 1, True, True),
    "memory_budget_bytes": (1, MAX_BYTES, True, True),
    "size": (1, MAX_INT, True, True),
    "audio_s": (MIN_AUDIO_S, MAX_AUDIO_S, True, False),
    "frame_rate": (0.0, 100_000.0, False, False),
    "text_rate": (0.0, 100_000.0, True, False),
    "utterances": (0, 1_000_000, True, True),
    "processes": (1, 64, True, True),
}


def describe(name: str) -> str:
    lo, hi, lo_incl, integer = RANGES[name]
    kind = "a whole number" if integer else "a finite number"
    return f"{kind} {'>=' if lo_incl else '>'} {lo:g} and <= {hi:g}"


def check_number(name: str, value: Any, where: str) -> Any:
    """``value`` if it is a finite number within ``RANGES[name]``; else ``UsageError`` naming ``where``."""
    lo, hi, lo_incl, integer = RANGES[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: expected {describe(name)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where}: {value!r} is not a finite number; must be {describe(name)}")
    if integer and isinstance(value, float) and not value.is_integer():
        raise UsageError(f"{where}: expected a whole number, got {value!r}")
    below = value < lo if lo_incl else value <= lo
    if below or value > hi:
        shown = repr(value) if abs(value) < 1e18 else f"{value:.3g}"
        raise UsageError(f"{where}: {shown} is out of range; must be {describe(name)}")
    return value


def check_settings(settings: Any, where: str) -> Any:
    """Every numeric ``MeasureSettings`` field within its range (a manifest's or a built one)."""
    for f in dataclasses.fields(settings):
        if f.name in RANGES:
            value = getattr(settings, f.name)
            if value is None and f.name == "memory_budget_bytes":
                continue
            check_number(f.name, value, f"{where}.{f.name}")
    if settings.max_reps < settings.min_reps:
        raise UsageError(f"{where}: max_reps ({settings.max_reps}) is below min_reps ({settings.min_reps})")
    return settings
