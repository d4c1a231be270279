"""Audio-time parsing and conversion to T."""

from __future__ import annotations

import pytest

from profiler.core.audio import (
    AudioRates,
    audio_to_T,
    format_seconds,
    parse_audio,
    parse_duration,
    rates_from_options,
)
from profiler.core.errors import UsageError


@pytest.mark.parametrize("text,seconds", [("5.5s", 5.5), ("750ms", 0.75), ("2min", 120.0), ("1h", 3600.0),
                                          ("3", 3.0), ("1.5 min", 90.0), ("2.75sec", 2.75)])
def test_layers_parse_duration_units(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_layers_ranges_double_then_end_at_the_upper_bound():
    assert parse_audio("2.75s..11s") == [2.75, 5.5, 11.0]
    assert parse_audio("1min..20min") == [60.0, 120.0, 240.0, 480.0, 960.0, 1200.0]


def test_layers_range_with_count_is_log_spaced_and_lists_merge_sorted():
    vals = parse_audio("1s..100s:3")
    assert vals == pytest.approx([1.0, 10.0, 100.0])
    assert parse_audio("11s,2.75s,11s") == [2.75, 11.0]


@pytest.mark.parametrize("bad", ["5q", "-3s", "0s", "", "abc", "2s..1s", "1s..2s:x", "1s..2s:0", "--1s", "1s..-2s"])
def test_layers_bad_durations_are_one_line_usage_errors(bad):
    with pytest.raises(UsageError) as info:
        parse_audio(bad)
    msg = str(info.value)
    assert "\n" not in msg and msg


def test_layers_T_is_speech_frames_plus_text_tokens():
    assert audio_to_T(11.0) == 550 + 33
    assert audio_to_T(60.0, frame_rate_hz=50.0, text_rate_hz=0.0) == 3000
    assert AudioRates(50.0, 4.0).split(2.75) == (138, 11)
    assert audio_to_T(1200.0) == 60000 + 3600


def test_layers_rates_round_trip_through_point_options():
    rates = AudioRates(50.0, 2.5)
    opts = rates.options(5.5)
    assert dict(opts)["audio_s"] == "5.5"
    assert list(opts) == sorted(opts)
    back = rates_from_options(opts)
    assert back == rates
    assert format_seconds(1200.0) == "1200"


def test_layers_bad_rates_are_usage_errors():
    with pytest.raises(UsageError):
        AudioRates(0.0, 3.0)
    with pytest.raises(UsageError):
        AudioRates(50.0, -1.0)
