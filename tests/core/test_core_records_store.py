"""Records round-trip, run-folder storage, torn lines and resume bookkeeping."""

from __future__ import annotations

import json

import pytest

from profiler.core.errors import UsageError
from profiler.core.records import (
    Correctness,
    Energy,
    Manifest,
    Memory,
    PointRecord,
    PointSpec,
    RecordError,
    Timing,
    from_dict,
    to_dict,
)
from profiler.store.runs import RunDir, new_run_id, read_records


def _record(T=1024, status="ok", **kw) -> PointRecord:
    spec = PointSpec(kernel="retnet", backend="torch", T=T)
    return PointRecord(
        spec=spec, status=status,
        timing=Timing(samples_s=(0.01, 0.011, 0.0105), timer="perf_counter_ns", warmup_calls=3),
        memory=Memory(peak_bytes=123, method="torch_profiler", analytic_bytes=100),
        energy=Energy(energy_j=None, reason="no RAPL"),
        correctness=Correctness(reference="ref", max_abs_err=1e-7, max_rel_err=2e-7, tolerance=1e-5, passed=True),
        **kw,
    )


def _manifest() -> Manifest:
    return Manifest(run_id="r1", created_at="2026-01-01T00:00:00+00:00", scenario={"name": "t"}, environment={})


def test_point_id_is_stable_and_readable():
    a = PointSpec(kernel="fox", backend="torch", T=2048, causal=False, options=(("bidirectional", "1"),))
    assert a.id == "kernel/fox/torch/cpu/float32/fwd/B1/T2048/H4/D64/full/bidirectional=1"
    assert a.id == PointSpec(**to_dict(a) | {"options": (("bidirectional", "1"),)}).id
    assert a.series_key == PointSpec(kernel="fox", backend="torch", T=8, B=3, causal=False,
                                     options=(("bidirectional", "1"),)).series_key
    assert PointSpec(kernel="fox", backend="torch", interpret=True).id.endswith("/interpret")


def test_record_round_trip_through_json():
    rec = _record()
    back = from_dict(PointRecord, json.loads(json.dumps(to_dict(rec))))
    assert back == rec
    assert isinstance(back.timing.samples_s, tuple) and isinstance(back.spec.options, tuple)


def test_from_dict_names_missing_key_and_bad_status():
    d = to_dict(_record())
    del d["spec"]["kernel"]
    with pytest.raises(RecordError, match="kernel"):
        from_dict(PointRecord, d, "points.jsonl:3")
    d = to_dict(_record())
    d["status"] = "fast"
    with pytest.raises(RecordError, match="fast"):
        from_dict(PointRecord, d)


def test_newer_schema_is_refused():
    d = to_dict(_record())
    d["schema_version"] = 999
    with pytest.raises(RecordError, match="newer"):
        from_dict(PointRecord, d)


def test_store_append_load_and_torn_last_line(tmp_path):
    run = RunDir.create(tmp_path / "run", _manifest())
    run.append(_record(T=256))
    run.append(_record(T=512))
    with open(run.path / "points.jsonl", "a") as fh:
        fh.write('{"spec": {"kernel": "ret')          # a kill mid-write
    loaded = run.load()
    assert sorted(r.spec.T for r in loaded.records) == [256, 512]
    assert any("half-written" in w for w in loaded.warnings)
    # The next append starts a fresh line, so nothing finished is lost.
    run.append(_record(T=1024))
    assert sorted(r.spec.T for r in RunDir.open(run.path).load().records) == [256, 512, 1024]
    assert run.done_ids() == {_record(T=t).id for t in (256, 512, 1024)}


def test_store_merges_shard_files_and_dedups(tmp_path):
    run = RunDir.create(tmp_path / "run", _manifest())
    run.append(_record(T=256, status="crashed", reason="first try"))
    RunDir(run.path, "points-shard1.jsonl").append(_record(T=256))
    RunDir(run.path, "points-shard1.jsonl").append(_record(T=2048))
    loaded = run.load()
    assert {r.spec.T: r.status for r in loaded.records} == {256: "ok", 2048: "ok"}
    assert any("duplicate" in w for w in loaded.warnings)


def test_open_rejects_non_run_folders(tmp_path):
    with pytest.raises(UsageError, match="not a folder"):
        RunDir.open(tmp_path / "missing")
    with pytest.raises(UsageError, match="not a serprof run folder"):
        RunDir.open(tmp_path)
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(UsageError, match="cannot read"):
        RunDir.open(tmp_path)


def test_create_refuses_to_overwrite(tmp_path):
    RunDir.create(tmp_path / "run", _manifest())
    with pytest.raises(UsageError, match="--resume"):
        RunDir.create(tmp_path / "run", _manifest())


def test_manifest_round_trip(tmp_path):
    run = RunDir.create(tmp_path / "run", _manifest())
    m = run.read_manifest()
    assert m == _manifest()
    assert not list(run.path.glob("*.tmp"))


def test_read_records_reports_invalid_middle_line(tmp_path):
    p = tmp_path / "points.jsonl"
    good = json.dumps(to_dict(_record()))
    p.write_text(f"{good}\nnot json\n{json.dumps(to_dict(_record(T=8)))}\n")
    recs, warns = read_records([p])
    assert len(recs) == 2
    assert warns == [f"{p}:2: unreadable line ignored"]


def test_run_ids_are_unique_and_safe():
    a, b = new_run_id("my scenario/<x>"), new_run_id("my scenario/<x>")
    assert a != b and "/" not in a and "<" not in a
