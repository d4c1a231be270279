"""The settings model (``profiler.core.settings``): one declaration per setting, everything else derived."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from profiler.cli import main
from profiler.core import settings as ms
from profiler.core.errors import UsageError
from profiler.core.records import MeasureSettings, from_dict, to_dict
from profiler.planning import names
from profiler.planning.scenario import build_spec
from profiler.store.runs import RunDir

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def _run(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_no_setting_is_addressed_by_a_string_path_in_the_package():
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "profiler").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"[\"']settings\.", line)]
    assert hits == []


def test_one_declaration_per_stored_field_with_unique_spellings():
    assert [s.name for s in ms.SETTINGS] == [f.name for f in dataclasses.fields(MeasureSettings)]
    flags = [f for s in ms.SETTINGS for f in (s.flag, s.flag_false) if f]
    spellings = [sp for s in ms.SETTINGS for sp in s.spellings]
    assert len(flags) == len(set(flags)) and len(spellings) == len(set(spellings))
    for s in ms.SETTINGS:
        assert s.help and s.kind in ("bool", "int", "float", "bytes", "choice", "modules", "text")
        assert getattr(MeasureSettings(), s.name) == s.default
        if s.kind != "bool":   # the default itself is allowed
            assert ms.check(s, s.default, "default") == s.default


def test_processes_is_declared_once_and_reaches_flag_toml_keyword_and_manifest(tmp_path, capsys):
    s = ms.lookup("processes")
    assert (s.kind, s.default, s.low, s.high, s.flag, s.toml_key) == ("int", 3, 1, 64, "--processes", "settings.processes")
    assert build_spec(None, {"processes": "4"}).settings.processes == 4                     # the flag's text
    scen = tmp_path / "s.toml"
    scen.write_text("[settings]\nprocesses = 8\n")
    assert build_spec(scen).settings.processes == 8                                        # the TOML key
    assert build_spec(scen, {"processes": 2}).settings.processes == 2                      # flag over file
    assert ms.keywords(processes=3).processes == 3                                         # Python keyword
    assert from_dict(MeasureSettings, to_dict(MeasureSettings(processes=5))).processes == 5   # manifest
    with pytest.raises(UsageError, match=r"^processes=: 65 is out of range; must be a whole number >= 1 and <= 64$"):
        ms.keywords(processes=65)
    code, _, err = _run(["sweep", "--dry-run", "--device", "cpu", "--processes", "0"], capsys)
    assert code == 2 and err.strip() == ("serprof: error: --processes: 0 is out of range; "
                                         "must be a whole number >= 1 and <= 64")


def test_old_manifests_load_unchanged_with_the_new_setting_at_its_default():
    for run in ("run-a52bece-kernels", "run-a52bece-layers"):
        stored = json.loads((DATA / run / "manifest.json").read_text())["settings"]
        assert "processes" not in stored
        got = RunDir.open(DATA / run).read_manifest().settings
        assert got.processes == ms.lookup("processes").default   # the declared default (their records say 1 process)
        assert {k: getattr(got, k) for k in stored} == stored


def test_help_shows_every_setting_with_its_default_and_unit(capsys):
    code, out, _ = _run(["sweep", "--help"], capsys)
    text = " ".join(out.split())
    assert code == 0
    for s in ms.SETTINGS:
        assert s.flag in text and " ".join(s.help.split()) in text, s.name
    assert "--warmup <float>" in text and "Unit: s. Default: 0.25 s." in text
    assert "--verify / --no-verify" in text and "--processes <int>" in text


def test_values_parse_the_same_from_flag_text_toml_and_python():
    s = ms.lookup("memory_budget")
    assert ms.parse(s, "8GiB", "--memory-budget") == 8 << 30 == ms.parse(s, 8 << 30, "k")
    assert ms.parse(s, "auto", "--memory-budget") is None
    assert ms.parse(ms.lookup("min_reps"), "7", "f") == 7 == ms.parse(ms.lookup("min_reps"), 7.0, "f")
    assert ms.parse(ms.lookup("verify"), "off", "f") is False
    with pytest.raises(UsageError, match=r"^--min-reps: expected a whole number, got 2\.5$"):
        ms.parse(ms.lookup("min_reps"), "2.5", "--min-reps")
    with pytest.raises(UsageError, match=r"^k: unknown setting; valid: .*warmup_s \(did you mean 'warmup_s'\?\)$"):
        ms.from_values({"warmup": (1, "k")})
    with pytest.raises(UsageError, match=r"^--max-reps: max_reps \(2\) is below min_reps \(5\)$"):
        ms.from_values({"max_reps": (2, "--max-reps")})


def test_bool_flags_come_in_pairs_and_resume_names_the_spelling_used():
    assert names.flag("verify", False) == "--no-verify" and names.flag("verify", True) == "--verify"
    assert names.flag("l2") == "--l2" and names.flag("memory_budget_bytes") == "--memory-budget"
    assert build_spec(None, {"measure_energy": False, "l2_flush": True}).settings.l2 == "cold"
    assert build_spec(None, {"l2": "cold"}).settings.l2_flush is True


@pytest.mark.parametrize("argv, toml, fragments", [
    (["--lengths", "1k", "--audio", "5s"], "", ["--lengths and --audio cannot be combined"]),
    ([], 'lengths = "1k"\naudio = "5s"\n', ["key 'lengths' and ", "key 'audio' cannot be combined"]),
])
def test_audio_and_lengths_are_exclusive_and_both_are_named(argv, toml, fragments, capsys, tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text('device = "cpu"\nlevel = "layer"\n' + toml)
    code, _, err = _run(["sweep", "--dry-run", "--scenario", str(scen), *argv], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_a_flag_replaces_its_exclusive_partner_from_the_scenario(tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text('level = "layer"\naudio = "5s"\n')
    spec = build_spec(scen, {"lengths": "512"})
    assert spec.lengths == (512,) and spec.audio == ()
    assert build_spec(scen).audio == (5.0,)
