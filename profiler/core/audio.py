"""Audio-time axis: parse durations such as ``2.75s..11s`` or ``1min..20min`` and convert them to T.

The SER model behind serprof (see PAPER.md) feeds one attention layer with speech frames and text
tokens concatenated along time:

* speech: WavLM-style features at ``frame_rate_hz`` frames per second of audio (default 50, i.e. a
  20 ms hop); ``speech_frames(s) = round(s * frame_rate_hz)``;
* text: BERT-style token features at ``text_rate_hz`` tokens per second of audio (default 3.0, about
  2.3 words/s of conversational English at ~1.3 word pieces per word); ``text_tokens(s) =
  round(s * text_rate_hz)``;
* ``T = speech_frames + text_tokens``.

Duration syntax (one argument, no spaces needed):

* a single duration: ``5.5s``, ``90s``, ``2min``, ``1h``, ``750ms`` (a bare number means seconds);
* a comma-separated list: ``2.75s,5.5s,11s``;
* a range ``A..B``: A, 2A, 4A, ... (doubling) below B, then B itself, e.g. ``1min..20min`` ->
  1, 2, 4, 8, 16, 20 min;
* a range with a point count ``A..B:N``: N durations spaced evenly in log-time from A to B.

Everything here is pure Python (no torch); values are in seconds (SI).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from profiler.core.errors import UsageError
from profiler.core.limits import MAX_AUDIO_S, MIN_AUDIO_S
from profiler.core.units import MAX_VALUES

DEFAULT_FRAME_RATE_HZ = 50.0
DEFAULT_TEXT_RATE_HZ = 3.0

_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)\s*$")
_SYNTAX = "durations look like 5.5s, 750ms, 2min, 1h, lists 2.75s,11s or ranges 1min..20min[:N]"


def parse_duration(text: str) -> float:
    """One duration in seconds (> 0). Bad syntax, unknown units or values <= 0 raise UsageError."""
    raw = text.strip()
    if raw.startswith("-"):
        raise UsageError(f"audio duration {raw!r} is negative; durations must be > 0")
    m = _DURATION.match(raw.lower())
    if not m:
        raise UsageError(f"bad audio duration {raw!r}; {_SYNTAX}")
    value, unit = float(m.group(1)), m.group(2) or "s"
    if unit not in _UNITS:
        raise UsageError(f"unknown time unit {m.group(2)!r} in {raw!r}; valid units: {', '.join(_UNITS)}")
    seconds = value * _UNITS[unit]
    if not seconds > 0 or not math.isfinite(seconds):
        raise UsageError(f"audio duration {raw!r} must be a finite duration > 0")
    if not MIN_AUDIO_S <= seconds <= MAX_AUDIO_S:
        raise UsageError(f"audio duration {raw!r} is out of range; durations are 1ms .. 24h")
    return seconds


def parse_audio(text: str) -> list[float]:
    """Parse the ``--audio`` argument into sorted, de-duplicated durations in seconds."""
    if not text or not text.strip():
        raise UsageError(f"empty --audio value; {_SYNTAX}")
    out: list[float] = []
    for item in text.split(","):
        item = item.strip()
        if ".." in item:
            out += _parse_range(item)
        else:
            out.append(parse_duration(item))
        if len(out) > MAX_VALUES:
            raise UsageError(f"--audio value expands to more than {MAX_VALUES} durations")
    return sorted({round(s, 6) for s in out})


def _parse_range(item: str) -> list[float]:
    lo_txt, _, rest = item.partition("..")
    hi_txt, colon, n_txt = rest.partition(":")
    lo, hi = parse_duration(lo_txt), parse_duration(hi_txt)
    if hi < lo:
        raise UsageError(f"audio range {item!r} goes backwards; write it as low..high")
    if colon:
        try:
            if not n_txt.strip().isascii() or len(n_txt.strip()) > 12:
                raise ValueError
            n = int(n_txt)
        except ValueError:
            raise UsageError(f"bad point count {n_txt!r} in {item!r}; write A..B:N with an integer N >= 1") from None
        if n < 1:
            raise UsageError(f"bad point count {n} in {item!r}; N must be >= 1")
        if n > MAX_VALUES:
            raise UsageError(f"point count {n} in {item!r} is above {MAX_VALUES}")
        if n == 1 or hi == lo:
            return [lo]
        step = math.log(hi / lo) / (n - 1)
        return [lo * math.exp(i * step) for i in range(n)]
    vals, v = [], lo
    while v < hi * (1 - 1e-9):
        vals.append(v)
        v *= 2.0
    vals.append(hi)
    return vals


@dataclass(frozen=True)
class AudioRates:
    """Frame and token rates that map seconds of audio to sequence length."""

    frame_rate_hz: float = DEFAULT_FRAME_RATE_HZ
    text_rate_hz: float = DEFAULT_TEXT_RATE_HZ

    def __post_init__(self) -> None:
        if not self.frame_rate_hz > 0:
            raise UsageError(f"speech frame rate must be > 0 frames/s (got {self.frame_rate_hz})")
        if not self.text_rate_hz >= 0:
            raise UsageError(f"text token rate must be >= 0 tokens/s (got {self.text_rate_hz})")

    def speech_frames(self, seconds: float) -> int:
        return max(1, int(round(seconds * self.frame_rate_hz)))

    def text_tokens(self, seconds: float) -> int:
        return int(round(seconds * self.text_rate_hz))

    def split(self, seconds: float) -> tuple[int, int]:
        """``(speech_frames, text_tokens)`` for an utterance of ``seconds``."""
        return self.speech_frames(seconds), self.text_tokens(seconds)

    def to_T(self, seconds: float) -> int:
        """Sequence length the seq2seq layer sees: speech frames plus text tokens."""
        s, t = self.split(seconds)
        return s + t

    def options(self, seconds: float) -> tuple[tuple[str, str], ...]:
        """The PointSpec options recording this conversion (sorted string pairs)."""
        return tuple(sorted({
            "audio_s": format_seconds(seconds),
            "frame_rate": _num(self.frame_rate_hz),
            "text_rate": _num(self.text_rate_hz),
        }.items()))


def audio_to_T(seconds: float, frame_rate_hz: float = DEFAULT_FRAME_RATE_HZ,
               text_rate_hz: float = DEFAULT_TEXT_RATE_HZ) -> int:
    """T for ``seconds`` of audio at the given speech frame and text token rates."""
    return AudioRates(frame_rate_hz, text_rate_hz).to_T(seconds)


def rates_from_options(options) -> AudioRates:
    """AudioRates from a PointSpec's options (defaults where absent)."""
    d = dict(options)
    return AudioRates(float(d.get("frame_rate", DEFAULT_FRAME_RATE_HZ)), float(d.get("text_rate", DEFAULT_TEXT_RATE_HZ)))


def format_seconds(seconds: float) -> str:
    """Canonical short string for a duration in seconds (stable across runs: used in point ids)."""
    return _num(round(seconds, 3))


def human_duration(seconds: float) -> str:
    """For display: ``5.5 s``, ``2 min``, ``1.5 h``."""
    if seconds >= 3600:
        return f"{_num(round(seconds / 3600, 2))} h"
    if seconds >= 60:
        return f"{_num(round(seconds / 60, 2))} min"
    return f"{_num(round(seconds, 2))} s"


def _num(x: float) -> str:
    return (f"{x:.3f}").rstrip("0").rstrip(".")
