"""One place that turns numbers into text: seconds, bytes, joules, rates, ratios, counts, percentages.

Used by the console (``cli``), the Markdown and HTML reports (``report``) and the gate (``analysis``).
Every function takes ``None``/non-finite values and returns ``missing`` for them: the reports use an
en dash (``DASH``), the console and the gate a hyphen (``HYPHEN``). Pure Python, no imports beyond ``math``.

Styles (each existing output is kept byte for byte):

* ``seconds(x, sig=3)``: scaled to s / ms / µs / ns with ``sig`` significant digits (``1.23 ms``);
* ``seconds_fixed(x)``: the live sweep table's fixed decimals (``12.3 µs``, ``1.23 ms``, ``1.23 s``);
* ``bytes_iec(x, sig=3)``: binary units up to ``largest`` (``1.5 GiB``); ``bytes_fixed``: one decimal;
* ``bytes_exact(n)``: an exact binary multiple without a space, as rules are written (``4KiB``);
* ``joules(j, sig=4)`` (``12.3 mJ``), ``rate(x, unit)`` with SI prefixes (``1.2 TFLOP/s``),
  ``ratio(x)`` (``1.23×``), ``count(n)`` (``4,096``), ``percent(x)`` (``12%``), ``ms(s)``, ``mib(b)``.
"""

from __future__ import annotations

import math

DASH = "–"      # reports (HTML, Markdown)
HYPHEN = "-"    # console tables, the gate


def _missing(x) -> bool:
    return x is None or not math.isfinite(x)


def seconds(x: float | None, *, sig: int = 3, missing: str = DASH) -> str:
    if _missing(x):
        return missing
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(x) >= scale:
            return f"{x / scale:.{sig}g} {unit}"
    return f"{x / 1e-9:.{sig}g} ns"


def seconds_fixed(x: float | None, *, missing: str = HYPHEN) -> str:
    if x is None:
        return missing
    if x < 1e-3:
        return f"{x * 1e6:.1f} µs"
    if x < 1:
        return f"{x * 1e3:.2f} ms"
    return f"{x:.2f} s"


_IEC = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def bytes_iec(x: float | None, *, sig: int = 3, missing: str = DASH, largest: str = "TiB",
              truncate: bool = False) -> str:
    """Binary units up to ``largest`` with ``sig`` significant digits; below 1 KiB whole bytes
    (rounded, or ``truncate``d as the gate prints them)."""
    if _missing(x):
        return missing
    units = _IEC[[u for u, _ in _IEC].index(largest):]
    for unit, scale in units:
        if abs(x) >= scale:
            return f"{x / scale:.{sig}g} {unit}"
    return f"{int(x)} B" if truncate else f"{x:.0f} B"


def bytes_fixed(n: float | None, *, missing: str = HYPHEN) -> str:
    """One decimal in the largest unit below 1024 (``512 B``, ``1.5 KiB``, ``8.0 GiB``)."""
    if n is None:
        return missing
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"


def bytes_exact(n: int) -> str:
    """The largest binary unit that divides ``n`` exactly, no space (``4KiB``, ``3MiB``, ``1000B``)."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


def mib(b: float | None, *, missing: str = HYPHEN) -> str:
    return missing if b is None else f"{b / 2**20:.1f}"


def ms(s: float | None, *, missing: str = HYPHEN) -> str:
    return missing if s is None else (f"{s * 1e3:.3g}" if s < 1 else f"{s * 1e3:.0f}")


def joules(j: float | None, *, sig: int = 4, missing: str = HYPHEN) -> str:
    if _missing(j):
        return missing
    return f"{j:.{sig}g} J" if j >= 1 else f"{j * 1e3:.{sig}g} mJ"


def rate(x: float | None, unit: str, *, sig: int = 3, missing: str = DASH) -> str:
    """A per-second rate with SI prefixes (``rate(2.5e12, "FLOP/s")`` -> ``2.5 TFLOP/s``)."""
    if _missing(x):
        return missing
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.{sig}g} {prefix}{unit}"
    return f"{x:.{sig}g} {unit}"


def ratio(x: float | None, *, sig: int = 3, missing: str = DASH) -> str:
    return missing if _missing(x) else f"{x:.{sig}g}×"


def count(n: float | None, *, missing: str = DASH, infinite: str | None = "∞") -> str:
    """A whole count with thousands separators (``4,096``); infinity as ``infinite`` (or ``missing``)."""
    if n is None:
        return missing
    if math.isinf(n):
        return infinite if infinite is not None else missing
    if math.isnan(n) and infinite is None:   # "finite only" mode
        return missing
    return f"{n:,.0f}"


def percent(x: float | None, *, decimals: int = 0, missing: str = DASH) -> str:
    return missing if _missing(x) else f"{x:.{decimals}%}"


def sci(x: float | None, *, missing: str = HYPHEN) -> str:
    """Scientific notation with two decimals (``1.23e-05``), for error magnitudes."""
    return missing if x is None else f"{x:.2e}"
