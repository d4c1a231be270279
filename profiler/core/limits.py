"""Documented ranges of the sweep's axes and rates, from a flag, a scenario file or a stored manifest.

One table, one check: the same limits hold for ``--lengths`` and ``lengths = ...``, and a manifest
whose values fall outside them (a hand-edited ``NaN``) is refused on ``--resume`` with exit 2. The
measurement settings (``--timeout``, ``[settings] point_timeout_s``, ...) declare their ranges with
their declarations in ``profiler.core.settings`` and are checked by ``check_range`` too. Every number
must be finite. ``check_number`` raises ``UsageError`` naming where the value came from, the value as
written and the allowed range.

=====================  ==========================  ==================================
setting / value        range                       flag / key
=====================  ==========================  ==================================
lengths, batch, heads,
head_dim (each value)  1 .. 2**31 - 1              --lengths, --batch, --heads, --head-dim
values per list        at most 4096 (core.units.MAX_VALUES)
audio durations        1 ms .. 86400 s (1 day)     --audio
frame_rate             > 0 .. 100000 /s            frame_rate
text_rate              0 .. 100000 /s              --text-rate
utterances             0 .. 1000000                --utterances
=====================  ==========================  ==================================
"""

from __future__ import annotations

import math
from typing import Any

from profiler.core.errors import UsageError

MAX_INT = 2 ** 31 - 1
MAX_BYTES = 2 ** 60
MAX_AUDIO_S = 86400.0
MIN_AUDIO_S = 1e-3

Range = tuple[float, float, bool, bool]   # (low, high, low_inclusive, integer)

#: name -> Range
RANGES: dict[str, Range] = {
    "size": (1, MAX_INT, True, True),
    "audio_s": (MIN_AUDIO_S, MAX_AUDIO_S, True, False),
    "frame_rate": (0.0, 100_000.0, False, False),
    "text_rate": (0.0, 100_000.0, True, False),
    "utterances": (0, 1_000_000, True, True),
}


def describe(name: str) -> str:
    return describe_range(RANGES[name])


def describe_range(rng: Range) -> str:
    """``a finite number > 0 and <= 1``: the range in words, as error messages and ``--help`` say it."""
    lo, hi, lo_incl, integer = rng
    kind = "a whole number" if integer else "a finite number"
    return f"{kind} {'>=' if lo_incl else '>'} {_number(lo)} and <= {_number(hi)}"


def _number(x: float) -> str:
    """Whole numbers in full up to 12 digits (2147483647, not 2.14748e+09); others as ``:g``."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e12 else f"{x:g}"


def check_number(name: str, value: Any, where: str) -> Any:
    """``value`` if it is a finite number within ``RANGES[name]``; else ``UsageError`` naming ``where``."""
    return check_range(RANGES[name], value, where)


def check_range(rng: Range, value: Any, where: str) -> Any:
    """``value`` if it is a finite number within ``rng``; else ``UsageError`` naming ``where``."""
    lo, hi, lo_incl, integer = rng
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: expected {describe_range(rng)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where}: {value!r} is not a finite number; must be {describe_range(rng)}")
    if integer and isinstance(value, float) and not value.is_integer():
        raise UsageError(f"{where}: expected a whole number, got {value!r}")
    below = value < lo if lo_incl else value <= lo
    if below or value > hi:
        shown = repr(value) if abs(value) < 1e18 else f"{value:.3g}"
        raise UsageError(f"{where}: {shown} is out of range; must be {describe_range(rng)}")
    return value
