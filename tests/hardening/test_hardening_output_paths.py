"""Issue 16: outputs that cannot be created, a baseline with a string schema_version and --audio with
--lengths each exit 2 with one line naming what the user wrote (they escaped as tracebacks before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hardening_helpers import assert_one_line_error

RUN = Path(__file__).resolve().parents[1] / "data" / "run-a52bece-kernels"


def _bad_places(tmp_path: Path) -> dict[str, Path]:
    """Two folders that cannot be created: under /proc (the kernel refuses; os.access says root may
    write there, so only the write itself finds out) and under a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return {"proc": Path("/proc/serprof-no/such"), "file": blocker / "sub"}


@pytest.mark.parametrize("where", ["proc", "file"])
@pytest.mark.parametrize("argv, flag, leaf", [
    (["sweep", "--kernels", "retnet", "--backend", "torch", "--lengths", "64", "--device", "cpu", "--out"], "--out", ""),
    (["trace", "--kernel", "retnet", "--length", "64", "--device", "cpu", "--out"], "--out", ""),
    (["report", str(RUN), "-o"], "--out", "r.html"),
    (["export", str(RUN), "-o"], "-o/--output", "points.csv"),
    (["baseline", "save", str(RUN), "-o"], "--out", "b.json"),
    (["gate", "--baseline", str(RUN), "--candidate", str(RUN), "--json-out"], "--json-out", "g.json"),
])
def test_an_output_that_cannot_be_created_is_one_line_exit_2(cli, tmp_path, where, argv, flag, leaf):
    target = _bad_places(tmp_path)[where]
    target = target / leaf if leaf else target
    code, _, err = cli(*argv, target)
    line = assert_one_line_error(code, err, needle=flag)
    assert {"proc": "/proc/serprof-no", "file": str(tmp_path / "a-file")}[where] in line   # names the place


def test_markdown_output_under_a_file_is_one_line(cli, tmp_path):
    bad = _bad_places(tmp_path)["file"] / "s.md"
    code, _, err = cli("report", RUN, "-o", tmp_path / "ok.html", "--markdown", bad)
    assert_one_line_error(code, err, needle="--markdown")


@pytest.mark.parametrize("version", ['"1"', "1.5", "true", "-1", "null"])
def test_baseline_file_schema_version_must_be_a_whole_number(cli, tmp_path, version):
    f = tmp_path / "b.json"
    f.write_text('{"format": "serprof-baseline", "schema_version": %s, "points": []}' % version)
    code, _, err = cli("gate", "--baseline", f, "--candidate", RUN)
    line = assert_one_line_error(code, err, needle=str(f))
    assert "schema_version" in line


@pytest.mark.parametrize("content, needle", [
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b'{"format": "serprof-baseline", "points": {"a": 1}}', "key 'points' must be a list"),
])
def test_unreadable_baseline_files_are_one_line(cli, tmp_path, content, needle):
    f = tmp_path / "b.json"
    f.write_bytes(content)
    code, _, err = cli("gate", "--baseline", f, "--candidate", RUN)
    assert_one_line_error(code, err, needle=needle)


def test_audio_and_lengths_flags_are_exclusive(cli):
    code, _, err = cli("sweep", "--audio", "2.75s..11s", "--lengths", "256", "--dry-run")
    line = assert_one_line_error(code, err)
    assert "--audio" in line and "--lengths" in line


def test_audio_and_lengths_in_one_scenario_file_name_the_file_and_keys(cli, tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text('audio = "2.75s..11s"\nlengths = [256]\n')
    code, _, err = cli("sweep", "--scenario", scen, "--dry-run")
    line = assert_one_line_error(code, err, needle=str(scen))
    assert "'audio'" in line and "'lengths'" in line


def test_a_flag_replaces_the_other_key_of_the_scenario_file(cli, tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text('kernels = ["retnet"]\nbackends = ["torch"]\ndevice = "cpu"\nlengths = [256]\n')
    code, out, err = cli("sweep", "--scenario", scen, "--lengths", "512", "--dry-run", "--json")
    assert code == 0, err
    assert [p["spec"]["T"] for p in json.loads(out)["points"]] == [512]
