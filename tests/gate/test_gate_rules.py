"""Rule parsing (valid and invalid text), scoping and precedence."""

from __future__ import annotations

import pytest

from profiler.analysis.gates import DEFAULT_MEMORY_TOLERANCE_BYTES, RuleSet, parse_rule
from profiler.core.errors import UsageError
from profiler.core.records import PointSpec


@pytest.mark.parametrize("text, metric, rel, abs_bytes, delta", [
    ("latency:+5%", "latency", 0.05, 0, 0.0),
    ("latency: 3.5%", "latency", 0.035, 0, 0.0),
    ("energy:+10%", "energy", 0.10, 0, 0.0),
    ("peak_memory:+0%", "peak_memory", 0.0, DEFAULT_MEMORY_TOLERANCE_BYTES, 0.0),
    ("peak_memory:+1MiB", "peak_memory", 0.0, 2**20, 0.0),
    ("peak_memory:+2%+4KB", "peak_memory", 0.02, 4000, 0.0),
    ("peak_memory:+0%+0B", "peak_memory", 0.0, 0, 0.0),
    ("slope:+0.1", "slope", 0.0, 0, 0.1),
])
def test_valid_limits(text, metric, rel, abs_bytes, delta):
    r = parse_rule(text)
    assert (r.metric, r.abs_bytes, r.off) == (metric, abs_bytes, False)
    assert r.rel == pytest.approx(rel) and r.delta == pytest.approx(delta)


def test_filters_scope_points():
    r = parse_rule("latency:+3%@kernel=retnet|gsa, T>=4096,causal=true")
    assert r.matches(PointSpec("retnet", "torch", T=4096))
    assert r.matches(PointSpec("gsa", "torch", T=8192))
    assert not r.matches(PointSpec("retnet", "torch", T=2048))
    assert not r.matches(PointSpec("softmax", "sdpa", T=8192))
    assert not r.matches(PointSpec("retnet", "torch", T=8192, causal=False))
    assert parse_rule("latency:+1%@backend!=naive").matches(PointSpec("softmax", "sdpa"))
    assert not parse_rule("latency:+1%@backend!=naive").matches(PointSpec("softmax", "naive"))


@pytest.mark.parametrize("text, fragment", [
    ("latency", "METRIC:LIMIT"),
    ("latncy:+5%", "did you mean 'latency'"),
    ("latency:5", "relative increase"),
    ("latency:-5%", ">= 0"),
    ("latency:+5%@", "empty filter"),
    ("latency:+5%@kernal=retnet", "unknown filter key"),
    ("latency:+5%@T>=long", "integer"),
    ("latency:+5%@kernel>=retnet", "only = or !="),
    ("latency:+5%@kernel", "KEY OP VALUE"),
    ("peak_memory:+5parsecs", "peak_memory takes"),
    ("slope:+5%", "exponent"),
    ("latency:+5%@causal=maybe", "true or false"),
])
def test_invalid_rules_raise_one_line_usage_error(text, fragment):
    with pytest.raises(UsageError) as exc:
        parse_rule(text)
    msg = str(exc.value)
    assert fragment in msg and "\n" not in msg


def test_last_matching_rule_wins_and_off_exempts():
    rs = RuleSet.parse(["latency:+10%", "latency:+3%@kernel=retnet", "latency:off@kernel=softmax"])
    assert rs.for_point("latency", PointSpec("retnet", "torch")).rel == pytest.approx(0.03)
    assert rs.for_point("latency", PointSpec("gsa", "torch")).rel == pytest.approx(0.10)
    assert rs.for_point("latency", PointSpec("softmax", "sdpa")) is None


def test_defaults_and_no_defaults():
    rs = RuleSet.parse()
    sp = PointSpec("retnet", "torch")
    assert rs.for_point("latency", sp).rel == pytest.approx(0.05)
    assert rs.for_point("energy", sp).rel == pytest.approx(0.10)
    assert rs.for_point("slope", sp).delta == pytest.approx(0.1)
    assert rs.for_point("peak_memory", sp).abs_bytes == DEFAULT_MEMORY_TOLERANCE_BYTES
    assert RuleSet.parse(["energy:+1%"], defaults=False).for_point("latency", sp) is None


def test_fails_messages():
    mem = parse_rule("peak_memory:+0%+1KiB")
    assert mem.fails(1024 + 1024, 1024) is None
    assert "peak memory" in mem.fails(1024 + 1025, 1024)
    lat = parse_rule("latency:+5%")
    assert lat.fails(1.2, 1.0, interval=(1.04, 1.3), significant=False) is None
    assert lat.fails(1.2, 1.0, interval=(1.10, 1.3), significant=True) is not None
    assert parse_rule("energy:+10%").fails(1.05, 1.0) is None
    assert parse_rule("slope:+0.1").fails(2.0, 1.0, interval=(0.9, 1.1)) is not None
