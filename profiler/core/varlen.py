"""Packed variable-length batches at the kernel level: length distributions and the packing they yield.

A varlen point (``--varlen DIST --tokens N``) measures one *packed* batch: sequences whose lengths
are drawn from ``DIST`` are concatenated along time into one ``(1, N, H, D)`` tensor with
``cu_seqlens`` offsets (FlashAttention / fla convention), so every token is a real one; the
comparison point times the same sequences *padded* to the longest, ``(n, max T, H, D)``.

Methodology (``pack``)
    Lengths are drawn in order from ``random.Random(seed)`` (stdlib Mersenne Twister: the same seed
    gives the same lengths on every machine, no numpy needed) until their sum reaches the token
    budget; the last sequence is cut to the remainder so the batch holds exactly ``N`` tokens (fla's
    own varlen tests cut a fixed total T at random boundaries the same way). The cut is recorded
    (``Packing.cut_from``), never hidden. Truncated distributions sample by rejection.

Distributions (``NAME[:key=value,...]``; lengths accept suffixes, ``2k`` = 2048)
    ``uniform``      min=64, max=4096: whole numbers uniform in [min, max].
    ``lognormal``    median=1024, sigma=1.0, min=16, max=8192: log-normal, truncated to [min, max].
    ``exponential``  mean=1024, min=16, max=8192: the long tail, truncated to [min, max].
    ``speech``       the SER scenarios' utterance lengths: MSP-Podcast-like durations (log-normal,
                     median 5.0 s, log-sd 0.45, truncated to [2.75, 11] s, as
                     ``profiler.layers.utterances.MSP_PODCAST_LIKE``) times 50 speech frames + 3 text
                     tokens per second (``profiler.core.audio``): 146 to 583 tokens.
    ``fixed:A,B,C``  (or a bare ``A,B,C``) the given lengths, repeated in order to fill the budget.

A token budget below the longest length a distribution can draw is refused (``UsageError``).
"""

from __future__ import annotations

import hashlib
import math
import random
import statistics
from dataclasses import dataclass
from typing import Any

from profiler.core import units
from profiler.core.audio import AudioRates
from profiler.core.errors import UsageError, did_you_mean

#: MSP-Podcast-like utterance durations (seconds): the SER replay's distribution (kept equal to
#: ``profiler.layers.utterances.MSP_PODCAST_LIKE``; tests/core/test_varlen.py checks it).
SPEECH_MEDIAN_S, SPEECH_LOG_SD, SPEECH_MIN_S, SPEECH_MAX_S = 5.0, 0.45, 2.75, 11.0

#: Each distribution's parameters and their defaults (lengths in tokens; sigma dimensionless).
DEFAULTS: dict[str, dict[str, float]] = {
    "uniform": {"min": 64, "max": 4096},
    "lognormal": {"median": 1024, "sigma": 1.0, "min": 16, "max": 8192},
    "exponential": {"mean": 1024, "min": 16, "max": 8192},
    "speech": {},
    "fixed": {},
}
NAMES = tuple(DEFAULTS)
_FLOAT_PARAMS = ("sigma",)
SYNTAX = ("a distribution: uniform, lognormal, exponential, speech (optionally NAME:key=value,...), "
          "or fixed lengths 'fixed:1000,3000,500'")


@dataclass(frozen=True)
class Distribution:
    """A length distribution: its name, its parameters (defaults filled in) and, for ``fixed``, the lengths."""

    name: str
    params: tuple[tuple[str, float], ...] = ()
    fixed: tuple[int, ...] = ()

    def param(self, key: str) -> float:
        return dict(self.params)[key]

    @property
    def text(self) -> str:
        """Canonical spelling (what the settings store; ``parse(text) == self``): non-default params only."""
        if self.name == "fixed":
            return "fixed:" + ",".join(map(str, self.fixed))
        extra = [f"{k}={_num(v)}" for k, v in self.params if v != DEFAULTS[self.name][k]]
        return self.name + (":" + ",".join(extra) if extra else "")

    @property
    def label(self) -> str:
        """Short, id-safe name (no '/' or '='), used in point ids: ``lognormal``, ``lognormal(sigma:0.5)``,
        ``fixed(1000+3000+500)``; a fixed list over 8 lengths is named by count and digest."""
        if self.name == "fixed":
            if len(self.fixed) <= 8:
                return "fixed(" + "+".join(map(str, self.fixed)) + ")"
            return f"fixed(n{len(self.fixed)}-{digest(self.fixed)[:8]})"
        extra = [f"{k}:{_num(v)}" for k, v in self.params if v != DEFAULTS[self.name][k]]
        return self.name + ("(" + ",".join(extra) + ")" if extra else "")

    @property
    def min_len(self) -> int:
        if self.name == "fixed":
            return min(self.fixed)
        if self.name == "speech":
            return AudioRates().to_T(SPEECH_MIN_S)
        return int(self.param("min"))

    @property
    def max_len(self) -> int:
        """The longest length this distribution can draw (tokens)."""
        if self.name == "fixed":
            return max(self.fixed)
        if self.name == "speech":
            return AudioRates().to_T(SPEECH_MAX_S)
        return int(self.param("max"))

    def draw(self, rng: random.Random) -> int:
        """One length (tokens)."""
        if self.name == "uniform":
            return rng.randint(self.min_len, self.max_len)
        if self.name == "speech":
            while True:
                d = rng.lognormvariate(math.log(SPEECH_MEDIAN_S), SPEECH_LOG_SD)
                if SPEECH_MIN_S <= d <= SPEECH_MAX_S:
                    return AudioRates().to_T(d)
        while True:   # truncated by rejection
            if self.name == "lognormal":
                x = rng.lognormvariate(math.log(self.param("median")), self.param("sigma"))
            else:
                x = rng.expovariate(1.0 / self.param("mean"))
            n = int(round(x))
            if self.min_len <= n <= self.max_len:
                return n

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "spec": self.text, **{k: v for k, v in self.params}}
        if self.name == "speech":
            out.update(median_s=SPEECH_MEDIAN_S, log_sd=SPEECH_LOG_SD, min_s=SPEECH_MIN_S, max_s=SPEECH_MAX_S,
                       tokens_per_s=AudioRates().frame_rate_hz + AudioRates().text_rate_hz)
        return out


@dataclass(frozen=True)
class Packing:
    """The sequences of one packed batch: their lengths (tokens), in order, summing to the budget."""

    lengths: tuple[int, ...]
    cut_from: int | None = None        # the last sequence was drawn this long and cut to fill the budget

    @property
    def tokens(self) -> int:
        return sum(self.lengths)

    @property
    def padded_tokens(self) -> int:
        """Tokens a padded batch computes: count x longest."""
        return len(self.lengths) * max(self.lengths)

    @property
    def padding_waste(self) -> float:
        """Fraction of a padded batch's tokens that are padding: 1 - real / padded."""
        return 1.0 - self.tokens / self.padded_tokens

    @property
    def cu_seqlens(self) -> tuple[int, ...]:
        """Offsets ``[0, L0, L0+L1, ..., N]``."""
        out = [0]
        for n in self.lengths:
            out.append(out[-1] + n)
        return tuple(out)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: count, min / median / mean / max length, tokens, padded tokens, waste, digest."""
        return {"count": len(self.lengths), "min": min(self.lengths), "median": statistics.median(self.lengths),
                "mean": self.tokens / len(self.lengths), "max": max(self.lengths), "tokens": self.tokens,
                "padded_tokens": self.padded_tokens, "padding_waste": self.padding_waste,
                "digest": digest(self.lengths), "cut_from": self.cut_from}


def digest(lengths) -> str:
    """sha256 (hex, 16 digits) of the comma-joined lengths: identifies a packing without storing it."""
    return hashlib.sha256(",".join(map(str, lengths)).encode()).hexdigest()[:16]


def parse(text: str, where: str = "--varlen") -> Distribution:
    """A ``Distribution`` from its spelling (see module doc); ``UsageError`` naming ``where`` otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{where}: expected {SYNTAX}, got {text!r}")
    raw = text.strip().lower()
    name, _, rest = raw.partition(":")
    name = name.strip()
    if name and name[0].isdigit():   # a bare list of lengths
        name, rest = "fixed", raw
    if name not in DEFAULTS:
        raise UsageError(f"{where}: unknown distribution {name!r}; {did_you_mean(name, NAMES)} "
                         f"(or fixed lengths 'fixed:1000,3000,500')")
    if name == "fixed":
        try:
            lengths = tuple(_one(x, "length") for x in rest.split(",")) if rest.strip() else ()
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if not lengths:
            raise UsageError(f"{where}: 'fixed' needs lengths, e.g. fixed:1000,3000,500")
        if len(lengths) > 100_000:
            raise UsageError(f"{where}: at most 100000 fixed lengths (got {len(lengths)})")
        return Distribution("fixed", (), lengths)
    params = dict(DEFAULTS[name])
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in params:
            allowed = ", ".join(params) or "none"
            raise UsageError(f"{where}: {name} has no parameter {key!r} (parameters: {allowed}); "
                             f"write {name}:key=value,...")
        params[key] = _param(key, value.strip(), where, name)
    dist = Distribution(name, tuple(params.items()))
    if name != "speech" and not dist.min_len <= dist.max_len:
        raise UsageError(f"{where}: {name} min ({dist.min_len}) is above max ({dist.max_len})")
    return dist


def canonical(text: str, where: str = "--varlen") -> str:
    """The canonical spelling of a distribution (the stored settings value)."""
    return parse(text, where).text


def check_budget(dist: Distribution, tokens: int, where: str) -> None:
    """Refuse a token budget smaller than the longest sequence ``dist`` can draw (one line naming ``where``)."""
    if tokens < dist.max_len:
        hint = (f"; lower the longest with {dist.name}:max=..." if dist.name in ("uniform", "lognormal", "exponential")
                else "")
        raise UsageError(f"{where}: token budget {tokens} is smaller than the longest sequence {dist.text!r} "
                         f"can have ({dist.max_len}){hint}")


def pack(dist: Distribution, tokens: int, seed: int) -> Packing:
    """The lengths of one packed batch of exactly ``tokens`` tokens (see module doc)."""
    check_budget(dist, tokens, "token budget")
    rng = random.Random(int(seed))
    out: list[int] = []
    total, i = 0, 0
    cut = None
    while total < tokens:
        n = dist.fixed[i % len(dist.fixed)] if dist.name == "fixed" else dist.draw(rng)
        i += 1
        if total + n > tokens:
            cut, n = n, tokens - total
        out.append(n)
        total += n
    return Packing(tuple(out), cut)


def _param(key: str, value: str, where: str, name: str) -> float:
    if key in _FLOAT_PARAMS:
        try:
            x = float(value)
        except ValueError:
            raise UsageError(f"{where}: {name} {key} must be a number, got {value!r}") from None
        if not (math.isfinite(x) and 0 < x <= 10):
            raise UsageError(f"{where}: {name} {key} must be > 0 and <= 10, got {value!r}")
        return x
    try:
        n = _one(value, key)
    except UsageError as exc:
        raise UsageError(f"{where}: {name} {key}: {exc}") from None
    return int(n)


def _one(text: str, what: str) -> int:
    """One whole number >= 1, suffixes allowed (``2k``); order and repeats of a list are kept by the caller."""
    values = units.parse_int_list(text.strip(), what)
    if len(values) != 1:
        raise UsageError(f"expected one {what} per item, got {text.strip()!r}")
    return values[0]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"
