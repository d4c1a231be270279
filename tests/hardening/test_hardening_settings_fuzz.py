"""Issue 16, items 1 and 7: bad values for every declared measurement setting, drawn from the settings model.

For each ``profiler.core.settings.SETTINGS`` declaration, hypothesis draws values that its declaration
rules out (below or above its range, NaN/inf, non-whole numbers for counts, wrong types, words that
are not booleans) and feeds them to ``serprof sweep --dry-run`` as the setting's flag and as its
``[settings]`` key in a scenario file. Each must exit 2 with one line naming the flag, or the file and
key. A new declaration is fuzzed here without new test code.
"""

from __future__ import annotations

import contextlib
import io
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiler.cli import main
from profiler.core.settings import SETTINGS, Setting

SWEEP = ["sweep", "--dry-run", "--device", "cpu", "--kernels", "softmax", "--lengths", "64"]
_WORDS = st.sampled_from(["x", "fast", "1..2", "1k..x", "--", "[]", "0x", "one", "1,2"])


def _bad_numbers(s: Setting) -> st.SearchStrategy:
    """Numbers the declaration rules out: outside ``[low, high]``, NaN/inf, non-whole for counts."""
    below = st.floats(max_value=s.low, min_value=-1e12).filter(lambda v: v < s.low or (s.low_open and v == s.low))
    above = st.floats(min_value=s.high, max_value=1e30).filter(lambda v: v > s.high)
    out = below | above | st.sampled_from([math.nan, math.inf, -math.inf])
    if s.kind != "float":   # counts and byte sizes: a fraction inside the range is still wrong
        out |= st.floats(min_value=max(s.low, -1e9), max_value=min(s.high, 1e9)).map(lambda v: math.floor(v) + 0.5)
        out |= st.integers(max_value=int(s.low) - 1, min_value=-10 ** 12) | st.integers(min_value=int(s.high) + 1,
                                                                                            max_value=2 ** 62)
    return out


_BAD_TEXT = st.sampled_from(["x", "fast", "--", "[]", "0x", "one", "lognormal:sigma=x", "fixed:",
                             "uniform:min=10,max=5", "exponential:rate=2", "lognormal:median=0", "zipf",
                             "fixed:1,-2", "speech:max=3"])
_BAD_MODULES = st.sampled_from(["1x", "a..b", "a b", ".x", "x.", "-m", "", "a,,b", "no_such_module_xyz",
                                 "json", "os.path"])


def bad_flag_values(s: Setting) -> st.SearchStrategy[str]:
    """Texts for ``--flag=TEXT`` that setting ``s`` must refuse (booleans take no value on the CLI)."""
    if s.kind == "modules":   # not a module name, not importable, or exporting no KERNEL / KERNELS
        return _BAD_MODULES
    if s.kind == "choice":  # any word but the declared ones
        return (_WORDS | st.sampled_from(["", "1", "true", "on", "hot", "COLD!"])).filter(lambda w: w not in s.choices)
    if s.kind == "text":   # the varlen distributions: unknown names, bad parameters, an empty fixed list
        return _BAD_TEXT
    numbers = _bad_numbers(s).map(lambda v: repr(v) if isinstance(v, float) else str(v))
    if s.kind == "bytes":   # a size in words must still be a size; a float count of bytes is fine as text
        return _WORDS | st.sampled_from(["-1GiB", "0", "0B", "1e999GiB", "lots", "9" * 40 + "GiB"])
    words = _WORDS.filter(lambda w: not s.none or w.strip().lower() != s.none.split()[0])
    return numbers | words | (st.nothing() if s.none else st.just(""))   # "" and the none word mean None


def bad_toml_values(s: Setting) -> st.SearchStrategy[str]:
    """TOML value texts for ``[settings] <key> = ...`` that setting ``s`` must refuse."""
    wrong_types = st.sampled_from(["[1]", "{ a = 1 }", "[]"])
    if s.kind == "bool":
        return wrong_types | st.sampled_from(['"maybe"', '"2"', "2", "0.5", '""', "nan"])
    if s.kind == "modules":
        return st.sampled_from(["[1]", "{ a = 1 }", "[]", "true", "3", '["ok_name", 2]']) | _BAD_MODULES.map(
            lambda w: f'"{w}"') | _BAD_MODULES.map(lambda w: f'["{w}"]')
    texts = _WORDS.map(lambda w: f'"{w}"')
    if s.kind == "text":
        return wrong_types | _BAD_TEXT.map(lambda w: f'"{w}"') | st.sampled_from(["3", "true", "1.5"])
    if s.kind == "choice":  # booleans are the older spelling of some word settings (l2_flush = true)
        return wrong_types | texts | st.sampled_from(["1", "0.5", "nan", '"hot"', '""'])
    if s.kind == "bytes":
        return wrong_types | texts | st.sampled_from(["true", "0", "-5", "1.5", "1e30", "nan", '"-1GiB"', '"0B"',
                                                      f"{2 ** 60 + 1}"])
    return wrong_types | texts | st.sampled_from(["true", "false"]) | _bad_numbers(s).map(_toml_number)


def _toml_number(v: float | int) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v) if isinstance(v, float) else str(v)


def _serprof(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, err.getvalue()


def _assert_one_line(code: int, err: str, *fragments: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("serprof: error: "), err
    assert "Traceback" not in err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


_FUZZ = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_VALUED = [s for s in SETTINGS if s.kind != "bool"]


@pytest.mark.parametrize("s", _VALUED, ids=[s.name for s in _VALUED])
@_FUZZ
@given(data=st.data())
def test_bad_flag_value_exits_2_naming_the_flag(s, data):
    text = data.draw(bad_flag_values(s), label=s.flag)
    code, err = _serprof([*SWEEP, f"{s.flag}={text}"])
    _assert_one_line(code, err, f"{s.flag}")


@pytest.mark.parametrize("s", SETTINGS, ids=[s.name for s in SETTINGS])
@_FUZZ
@given(data=st.data())
def test_bad_scenario_value_exits_2_naming_file_and_key(s, data, tmp_path_factory):
    text = data.draw(bad_toml_values(s), label=s.key)
    scen = tmp_path_factory.mktemp("scen") / "s.toml"
    scen.write_text(f'device = "cpu"\nkernels = "softmax"\nlengths = 64\n[settings]\n{s.key} = {text}\n')
    code, err = _serprof(["sweep", "--dry-run", "--scenario", str(scen)])
    _assert_one_line(code, err, f"{scen}: key 'settings.{s.key}'")


def test_every_setting_is_fuzzed_by_kind():
    """The strategies cover every kind the model declares (a new kind needs strategies here first)."""
    assert {s.kind for s in SETTINGS} <= {"bool", "int", "float", "bytes", "choice", "modules", "text"}
    assert len(_VALUED) + sum(s.kind == "bool" for s in SETTINGS) == len(SETTINGS)
