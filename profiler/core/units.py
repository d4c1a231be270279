"""Parsers for the human units serprof's flags and scenarios accept (no torch, no numpy).

Lengths (``parse_lengths``), comma-separated items, each one of::

    3000          a number; suffix k = 1024, m = 1024**2 (so 1k = 1024, 1.5k = 1536)
    1k..64k       powers of two from 1k up to 64k: each value doubles the previous one
    1k..64k:x2    any factor > 1: multiply by it (results rounded to whole tokens)
    1k..8k:+1k    a step: 1k, 2k, ..., 8k

The result is sorted and de-duplicated; ranges include their end when a step lands on it.
``parse_int_list`` accepts the same syntax (batch sizes, head counts), ``parse_dtypes`` dtype
aliases, ``parse_bytes`` sizes such as ``80GiB``, ``512MiB`` or ``8GB``. Bad syntax raises
``UsageError`` with one line saying what is accepted.
"""

from __future__ import annotations

import math
import re

from profiler.core.errors import UsageError

#: Most values one list may expand to (guards against '1..1000000:+1').
MAX_VALUES = 4096
#: Largest single value (a length, batch size, head count): see ``profiler.core.limits``.
MAX_INT = 2 ** 31 - 1
#: Largest size ``parse_bytes`` accepts (1 EiB).
MAX_BYTES = 2 ** 60

_SUFFIX = {"": 1, "k": 1024, "m": 1024 ** 2}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")

LENGTH_SYNTAX = "e.g. '1k..64k', '1k..64k:x2', '1k..8k:+1k', '512,1k,3000' (k = 1024)"

DTYPE_ALIASES = {
    "fp32": "float32", "float32": "float32", "f32": "float32", "float": "float32",
    "fp16": "float16", "float16": "float16", "f16": "float16", "half": "float16",
    "bf16": "bfloat16", "bfloat16": "bfloat16",
}

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4,
    "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4,
}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def _number(text: str, what: str, full: str) -> int:
    m = _NUMBER.match(text)
    if not m:
        raise UsageError(f"bad {what} {text.strip()!r} in {full!r}; {LENGTH_SYNTAX}")
    if len(m.group(1)) > 30:
        raise UsageError(f"{what} {text.strip()!r} in {full!r} is too large (at most {MAX_INT})")
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if value != int(value):
        raise UsageError(f"{what} {text.strip()!r} in {full!r} is not a whole number")
    if value < 1:
        raise UsageError(f"{what} {text.strip()!r} in {full!r} must be >= 1")
    if value > MAX_INT:
        raise UsageError(f"{what} {text.strip()!r} in {full!r} is too large (at most {MAX_INT})")
    return int(value)


def _range(item: str, full: str, what: str) -> list[int]:
    lo_text, _, rest = item.partition("..")
    hi_text, colon, step_text = rest.partition(":")
    lo, hi = _number(lo_text, what, full), _number(hi_text, what, full)
    if lo > hi:
        raise UsageError(f"range {item.strip()!r} in {full!r} goes down ({lo} > {hi}); write low..high")
    step_text = step_text.strip()
    if colon and not step_text:
        raise UsageError(f"range {item.strip()!r} in {full!r} has an empty step; use ':x2' or ':+1k'")
    out: list[int] = []
    if not colon or step_text.lower().startswith("x"):
        factor = 2.0
        if colon:
            try:
                factor = float(step_text[1:])
            except ValueError:
                raise UsageError(f"bad factor {step_text!r} in {full!r}; e.g. ':x2' or ':x1.5'") from None
            if not factor > 1 or not math.isfinite(factor):
                raise UsageError(f"factor {step_text!r} in {full!r} must be > 1")
        value = float(lo)
        while round(value) <= hi:
            out.append(int(round(value)))
            if len(out) > MAX_VALUES:
                break
            value *= factor
    elif step_text.startswith("+"):
        step = _number(step_text[1:], "step", full)
        out = list(range(lo, hi + 1, step)[: MAX_VALUES + 1])
    else:
        raise UsageError(f"bad step {step_text!r} in {full!r}; use ':xF' (factor) or ':+N' (step)")
    return out


def parse_int_list(text: str, what: str = "value") -> list[int]:
    """Positive integers from the length syntax (see the module docstring), sorted, unique."""
    if text is None or not str(text).strip():
        raise UsageError(f"empty {what} list; {LENGTH_SYNTAX}")
    values: set[int] = set()
    for item in str(text).split(","):
        if not item.strip():
            raise UsageError(f"empty item in {what} list {text!r}; {LENGTH_SYNTAX}")
        values.update(_range(item, text, what) if ".." in item else [_number(item, what, text)])
        if len(values) > MAX_VALUES:
            raise UsageError(f"{what} list {text!r} expands to more than {MAX_VALUES} values")
    return sorted(values)


def parse_lengths(text: str) -> list[int]:
    """Sequence lengths: '1k..64k', '1k..64k:x2', '1k..8k:+1k', '512,1k,3000' or mixes."""
    return parse_int_list(text, "length")


def parse_dtypes(text: str) -> list[str]:
    """Canonical dtype names (float32, float16, bfloat16) from aliases, in the order given, unique."""
    out: list[str] = []
    items = [t.strip().lower() for t in str(text or "").split(",")]
    if not any(items):
        raise UsageError("empty dtype list; valid: fp32, fp16, bf16 (or float32, float16, bfloat16)")
    for item in items:
        if item not in DTYPE_ALIASES:
            raise UsageError(f"unknown dtype {item!r}; valid: fp32, fp16, bf16 (or float32, float16, bfloat16, half, f32)")
        name = DTYPE_ALIASES[item]
        if name not in out:
            out.append(name)
    return out


def parse_bytes(text: str) -> int:
    """Bytes from '80GiB', '512MiB', '8GB', '1.5TiB' or a bare number (KB = 1000, KiB = 1024)."""
    m = _BYTES.match(str(text or ""))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _BYTE_UNITS:
        raise UsageError(f"bad size {text!r}; e.g. '80GiB', '512MiB', '8GB' (KB = 1000 bytes, KiB = 1024)")
    if len(m.group(1)) > 30:
        raise UsageError(f"size {text!r} is too large (at most 2**60 bytes = 1 EiB)")
    value = float(m.group(1)) * _BYTE_UNITS[unit]
    if value < 1:
        raise UsageError(f"size {text!r} must be at least one byte (e.g. 512MiB, 8GB, 80GiB)")
    if not value <= MAX_BYTES:
        raise UsageError(f"size {text!r} is too large (at most 2**60 bytes = 1 EiB)")
    return int(value)
