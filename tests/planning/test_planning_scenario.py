"""Sweep specs from TOML scenarios and CLI overrides, and their error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from profiler.core.errors import UsageError
from profiler.planning.scenario import SweepSpec, build_spec, spec_from_dict

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_scenario_values_are_parsed_and_flags_override_them(tmp_path):
    p = _write(tmp_path, """
name = "mine"
kernels = ["softmax", "retnet"]
lengths = "1k..4k"
batch = "1,2"
dtypes = ["fp32", "bf16"]
modes = "fwdbwd"
heads = 8
head_dim = 32
causal = false
[settings]
time_budget_s = 0.5
memory_budget = "1GiB"
verify = false
""")
    s = build_spec(p)
    assert s.name == "mine" and s.kernels == ("softmax", "retnet")
    assert s.lengths == (1024, 2048, 4096) and s.batch == (1, 2)
    assert s.dtypes == ("float32", "bfloat16") and s.modes == ("fwdbwd",)
    assert s.heads == (8,) and s.head_dims == (32,) and s.causal == "non-causal"
    assert s.settings.time_budget_s == 0.5 and s.settings.memory_budget_bytes == 1 << 30
    assert s.settings.verify is False
    o = build_spec(p, {"lengths": "512,3000", "causal": "causal", "time_budget_s": 0.1,
                       "memory_budget": "8GiB", "dtypes": None})
    assert o.lengths == (512, 3000) and o.causal == "causal"
    assert o.settings.time_budget_s == 0.1 and o.settings.memory_budget_bytes == 8 << 30
    assert o.dtypes == ("float32", "bfloat16")          # None: not given, scenario value kept
    assert o.settings.verify is False                   # untouched setting kept


def test_defaults_and_round_trip_through_the_manifest_form():
    s = build_spec(None, {"kernels": "all", "lengths": "1k..8k:+1k"})
    assert s.kernels == () and s.lengths == tuple(range(1024, 8193, 1024))
    assert s.causal == "both" and s.level == "kernel"
    assert spec_from_dict(s.to_dict()) == s


@pytest.mark.parametrize("text, needle", [
    ('lengths = "1k..zz"', "key 'lengths'"),
    ('batch = [0]', "key 'batch'"),
    ('dtypes = ["float64"]', "key 'dtypes'"),
    ('modes = ["train"]', "fwdbwd"),
    ('device = "tpu"', "valid: auto, cpu, cuda"),
    ('causal = "sometimes"', "key 'causal'"),
    ('lenghts = "1k"', "did you mean 'lengths'"),
    ('[settings]\nwarmup = 1', "key 'settings.warmup'"),
    ('[settings]\ntime_budget_s = "fast"', "expected a number"),
    ('[settings]\nmemory_budget = "lots"', "key 'settings.memory_budget'"),
    ('level = "cluster"', "key 'level'"),
])
def test_invalid_values_name_file_key_and_choices(tmp_path, text, needle):
    p = _write(tmp_path, text)
    with pytest.raises(UsageError) as ei:
        build_spec(p)
    msg = str(ei.value)
    assert str(p) in msg and needle in msg
    assert "\n" not in msg


def test_bad_flag_values_name_the_flag():
    with pytest.raises(UsageError, match="^--lengths: "):
        build_spec(None, {"lengths": "1k..64q"})
    with pytest.raises(UsageError, match="^--device: "):
        build_spec(None, {"device": "gpu"})


def test_unreadable_and_invalid_scenarios(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        build_spec(tmp_path / "missing.toml")
    bad = _write(tmp_path, "name = [unclosed")
    with pytest.raises(UsageError, match="is not valid TOML"):
        build_spec(bad)
    with pytest.raises(UsageError, match="cannot be read"):
        build_spec(tmp_path)   # a folder


@pytest.mark.parametrize("name", ["quick", "long-form", "training"])
def test_shipped_scenarios_load(name):
    s = build_spec(SCENARIOS / f"{name}.toml")
    assert isinstance(s, SweepSpec) and s.name == name
    assert len(s.lengths) >= 4


def test_quick_scenario_shape():
    s = build_spec(SCENARIOS / "quick.toml")
    assert s.device == "cpu" and s.dtypes == ("float32",) and s.batch == (1,)
    assert min(s.lengths) == 256 and max(s.lengths) == 4096
    assert build_spec(SCENARIOS / "training.toml").modes == ("fwdbwd",)
    assert max(build_spec(SCENARIOS / "long-form.toml").lengths) == 65536


def test_utterances_zero_turns_the_replay_off_and_negative_is_refused():
    paper = Path(__file__).resolve().parents[2] / "scenarios" / "paper.toml"
    assert build_spec(paper).utterances == 1000
    assert build_spec(paper, {"utterances": "0"}).utterances == 0
    for bad in ("-3", "x", "1.5"):
        with pytest.raises(UsageError, match="whole number >= 0"):
            build_spec(paper, {"utterances": bad})
