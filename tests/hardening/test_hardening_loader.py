"""Item 5 of issue 12: damaged points.jsonl lines are skipped with a warning naming file and line;
typed record validation; duplicate records resolve deterministically; bad manifests exit 2."""

from __future__ import annotations

import json

import pytest
from hardening_helpers import assert_one_line_error, fake_run, raw_ids

from profiler.core.errors import UsageError
from profiler.core.records import (
    PointRecord,
    PointSpec,
    RecordError,
    Timing,
    from_dict,
    to_dict,
)
from profiler.store.runs import RunDir, pick_record, read_records


def _rec(T=64, status="ok", started="2026-01-01T00:00:00+00:00", rerun=False):
    extra = {"rerun": True} if rerun else {}
    return PointRecord(PointSpec("softmax", "sdpa", T=T), status, None if status == "ok" else "boom",
                       Timing((1e-3, 1.1e-3), "perf_counter_ns"), started_at=started, extra=extra)


def _line(rec, **patch):
    d = to_dict(rec)
    for path, value in patch.items():
        node = d
        keys = path.split("__")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return json.dumps(d)


BAD_LINES = {
    "not utf-8": b'{"spec": {"kernel": "softmax\xff\xfe"}}',
    "T abc": _line(_rec(), spec__T="abc").encode(),
    "peak_bytes lots": _line(_rec(), memory={"peak_bytes": "lots", "method": "x"}).encode(),
    "schema_version x": _line(_rec(), schema_version="x").encode(),
    "schema_version 99": _line(_rec(), schema_version=99).encode(),
    "schema_version 0": _line(_rec(), schema_version=0).encode(),
    "samples strings": _line(_rec(), timing__samples_s=["a", "b"]).encode(),
    "causal string": _line(_rec(), spec__causal="yes").encode(),
    "status number": _line(_rec(), status=5).encode(),
    "worker list": _line(_rec(), worker=[1, 2]).encode(),
    "options not pairs": _line(_rec(), spec__options=[["a"]]).encode(),
    "array": b"[1, 2, 3]",
    "number": b"42",
    "deep nesting": b"[" * 100000 + b"]" * 100000,
}


@pytest.mark.parametrize("what", sorted(BAD_LINES))
def test_bad_line_is_skipped_with_file_and_line(tmp_path, what):
    f = tmp_path / "points.jsonl"
    good = [_line(_rec(64)).encode(), _line(_rec(128)).encode()]
    f.write_bytes(b"\n".join([good[0], BAD_LINES[what], good[1]]) + b"\n")
    records, warnings = read_records([f])
    assert sorted(r.spec.T for r in records) == [64, 128]
    assert len(warnings) == 1 and warnings[0].startswith(f"{f}:2") and "ignored" in warnings[0], warnings


def test_typed_validation_names_the_field():
    d = to_dict(_rec())
    d["spec"]["T"] = "abc"
    with pytest.raises(RecordError, match=r"here\.spec\.T: expected an integer, got 'abc'"):
        from_dict(PointRecord, d, "here")
    d = to_dict(_rec())
    d["timing"]["samples_s"] = [1.0, True]
    with pytest.raises(RecordError, match=r"samples_s\[1\]: expected a number"):
        from_dict(PointRecord, d, "here")
    d = to_dict(_rec())
    d["spec"]["T"] = 128                          # ints stay ints, floats accept ints
    d["flops"] = 10
    rec = from_dict(PointRecord, d)
    assert rec.spec.T == 128 and rec.flops == 10.0 and isinstance(rec.flops, float)


def test_ok_wins_over_a_later_failure_unless_a_newer_rerun():
    ok = _rec(started="2026-01-01T00:00:00+00:00")
    crashed_later = _rec(status="crashed", started="2026-01-02T00:00:00+00:00")
    assert pick_record(ok, crashed_later) is ok and pick_record(crashed_later, ok) is ok
    rerun = _rec(status="crashed", started="2026-01-02T00:00:00+00:00", rerun=True)
    assert pick_record(ok, rerun) is rerun and pick_record(rerun, ok) is rerun
    old_rerun = _rec(status="crashed", started="2025-12-31T00:00:00+00:00", rerun=True)
    assert pick_record(ok, old_rerun) is ok                      # re-run flag but older: the ok stays
    a, b = _rec(started="2026-01-01T00:00:00+00:00"), _rec(started="2026-01-03T00:00:00+00:00")
    assert pick_record(a, b) is b and pick_record(b, a) is b     # both ok: newer wins, either order
    no_time = _rec(started=None)
    assert pick_record(no_time, _rec(started=None, status="oom")).status == "ok"


def test_duplicate_in_files_is_deterministic(tmp_path):
    f = tmp_path / "points.jsonl"
    f.write_text(_line(_rec()) + "\n" + _line(_rec(status="crashed", started="2026-02-01T00:00:00+00:00")) + "\n")
    records, warnings = read_records([f])
    assert [r.status for r in records] == ["ok"]
    assert any("duplicate" in w and "earlier" in w for w in warnings)


@pytest.mark.parametrize("first, second, silent", [
    ("ok", "ok rerun newer", True),              # a deliberate re-run replaces the record: no warning
    ("ok", "crashed rerun newer", True),
    ("ok rerun newer", "ok", True),              # order of reading does not matter (shards)
    ("ok", "ok", False),                         # an unexplained duplicate is still reported
    ("ok", "crashed rerun older", False),        # a re-run flag on an older record explains nothing
])
def test_newest_deliberate_rerun_wins_silently(tmp_path, first, second, silent):
    def rec(text):
        status, *flags = text.split()
        started = "2026-01-02T00:00:00+00:00" if "newer" in flags else (
            "2025-12-31T00:00:00+00:00" if "older" in flags else "2026-01-01T00:00:00+00:00")
        return _rec(status=status, started=started, rerun="rerun" in flags)

    f = tmp_path / "points.jsonl"
    f.write_text(_line(rec(first)) + "\n" + _line(rec(second)) + "\n")
    records, warnings = read_records([f])
    assert len(records) == 1 and records[0] == pick_record(rec(first), rec(second))
    assert (warnings == []) if silent else (len(warnings) == 1 and "duplicate record" in warnings[0]), warnings


def _manifest_run(tmp_path, text: bytes):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_bytes(text)
    (run / "points.jsonl").write_text("")
    return run


@pytest.mark.parametrize("text, needle", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{not json", "cannot read run manifest"),
    (b"[]", "must be an object"),
    (json.dumps({"run_id": 5, "created_at": "x", "scenario": {}, "environment": {}}).encode(), "run_id: expected a string"),
    (json.dumps({"run_id": "r", "created_at": "x", "scenario": {}, "environment": {}, "schema_version": "x"}).encode(),
     "schema_version"),
    (json.dumps({"run_id": "r", "created_at": "x", "scenario": [], "environment": {}}).encode(), "expected an object"),
    (b'{"run_id": "r", "created_at": "x", "scenario": {}, "environment": {}, "settings": {"point_timeout_s": NaN}}',
     "point_timeout_s"),
    (b'{"run_id": "r", "created_at": "x", "scenario": {}, "environment": {}, "settings": {"warmup_s": Infinity}}',
     "warmup_s"),
])
def test_bad_manifest_is_exit_2_saying_what_is_wrong(tmp_path, cli, text, needle):
    run = _manifest_run(tmp_path, text)
    with pytest.raises(UsageError, match=needle):
        RunDir.open(run)
    for argv in (["status", run], ["export", run], ["sweep", "--resume", run, "--no-report"], ["report", run]):
        code, _, err = cli(*argv)
        assert_one_line_error(code, err, 2, needle)


def test_resume_of_a_manifest_with_nan_timeout_is_exit_2(tmp_path, cli):
    run = fake_run(tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    m["scenario"]["settings"]["point_timeout_s"] = float("nan")
    m["settings"]["point_timeout_s"] = float("nan")
    (run / "manifest.json").write_text(json.dumps(m))
    code, _, err = cli("sweep", "--resume", run, "--no-report")
    assert_one_line_error(code, err, 2, "point_timeout_s")
    m["settings"]["point_timeout_s"] = 300.0                  # the stored scenario is checked too
    (run / "manifest.json").write_text(json.dumps(m))
    code, _, err = cli("sweep", "--resume", run, "--no-report")
    assert_one_line_error(code, err, 2, "scenario.settings.point_timeout_s")


def test_commands_print_load_warnings_and_never_a_traceback(tmp_path, cli):
    run = fake_run(tmp_path)
    with open(run / "points.jsonl", "ab") as fh:
        fh.write(b'{"spec": "\xff"}\n' + _line(_rec(T=4096), spec__T="abc").encode() + b"\n"
                 + _line(_rec(T=4096), schema_version="x").encode() + b"\n")
    lines = {4, 5, 6}
    for argv in (["status", run], ["export", run, "-o", tmp_path / "x.csv"], ["report", run, "-o", tmp_path / "r.html"]):
        code, out, err = cli(*argv)
        assert code == 0, err
        assert "Traceback" not in out + err
        for n in lines:
            assert f"points.jsonl:{n}" in out + err, (argv, out, err)
    import csv

    rows = list(csv.DictReader(open(tmp_path / "x.csv")))
    assert len(rows) == 3


def test_status_never_counts_records_outside_the_plan(tmp_path):
    """A record for a point the run never planned (e.g. copied in from another run) is not progress:
    no "11/10"; it is reported as a warning instead."""
    import json

    from profiler.runner.status import run_status

    run = fake_run(tmp_path, lengths="64,128")
    lines = (run / "points.jsonl").read_text().splitlines()
    foreign = json.loads(lines[0])
    foreign["spec"]["T"] = 999
    (run / "points.jsonl").write_text("\n".join(lines + [json.dumps(foreign)]) + "\n")
    st = run_status(run)
    assert (st.done, st.total) == (2, 2) and st.complete
    assert any("outside the run's plan" in w for w in st.warnings)
    # a manifest from before the planned ids were stored: the count is capped, never above the plan
    man = json.loads((run / "manifest.json").read_text())
    del man["notes"]["planned_ids"]
    (run / "manifest.json").write_text(json.dumps(man))
    st = run_status(run)
    assert st.done <= st.total == 2 and any("outside the run's plan" in w for w in st.warnings)


@pytest.mark.long   # 10-25 s on 2 cores: `make test-long` (CI runs it after `make test`)
def test_rerun_flag_replaces_a_point_and_marks_it(tmp_path):
    """`serprof sweep --resume RUN --rerun T64` measures that point again; the new record carries
    ``extra.rerun`` and is the one the run folder resolves to (the others are untouched)."""
    from hardening_helpers import serprof

    run = fake_run(tmp_path, lengths="64,128")
    before = {r.id: r for r in RunDir(run).load().records}
    p = serprof("sweep", "--resume", run, "--rerun", "/T64/", "--no-report")
    assert p.returncode == 0, p.stderr
    after = {r.id: r for r in RunDir(run).load().records}
    assert set(after) == set(before) and len(raw_ids(run)) == 3
    again = [i for i in after if "/T64/" in i]
    assert len(again) == 1 and after[again[0]].extra.get("rerun") is True
    assert after[again[0]].started_at >= before[again[0]].started_at
    other = next(i for i in after if "/T128/" in i)
    assert after[other] == before[other]
    # every later command reads the re-run record as the point's record, without a warning
    for cmd in (("status", run), ("report", run, "--out", tmp_path / "r.html"), ("export", run, "-f", "csv")):
        p = serprof(*cmd)
        assert p.returncode == 0, (cmd, p.stderr)
        assert "warning" not in (p.stdout + p.stderr).lower() and "duplicate" not in p.stdout + p.stderr, (cmd, p.stderr)
    bad = serprof("sweep", "--rerun", "/T64/", "--kernels", "softmax", "--lengths", "64", "--device", "cpu", "--dry-run")
    assert bad.returncode == 2 and "--rerun" in bad.stderr and "Traceback" not in bad.stderr
