"""Run folders written by an earlier serprof (commit a52bece, before the data-flow layout) still load,
report, export and show status: the refactor changed code, not what a run folder means."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from pathlib import Path

import pytest

from profiler.report import markdown_summary, render_run
from profiler.report.export import export_run
from profiler.runner.status import run_status
from profiler.store.runs import RunDir

DATA = Path(__file__).resolve().parents[1] / "data"
RUNS = {"run-a52bece-kernels": 10, "run-a52bece-layers": 6}


@pytest.fixture(params=sorted(RUNS))
def old_run(request, tmp_path):
    dst = tmp_path / request.param
    shutil.copytree(DATA / request.param, dst)
    return dst, RUNS[request.param]


def test_old_run_loads_every_record_with_its_samples(old_run):
    run, n = old_run
    loaded = RunDir(run).load()
    assert len(loaded.records) == n and all(r.status == "ok" for r in loaded.records)
    raw = [json.loads(line) for line in (run / "points.jsonl").read_text().splitlines() if line.strip()]
    assert len(raw) == n and len({r.id for r in loaded.records}) == n
    for d in raw:   # every stored sample and reading comes back as written
        rec = next(r for r in loaded.records if r.timing.samples_s == tuple(d["timing"]["samples_s"]))
        assert rec.timing.timer == d["timing"]["timer"]
        assert rec.memory.peak_bytes == d["memory"]["peak_bytes"]


def test_old_run_reports_exports_and_shows_status(old_run, tmp_path):
    run, n = old_run
    html = render_run(run, out=tmp_path / "report.html").read_text()
    loaded = RunDir(run).load()
    for rec in loaded.records:
        assert rec.spec.kernel in html
    md = markdown_summary([run])
    assert md.strip() and "retnet" in md
    rows = list(csv.DictReader(export_run(run, "csv", tmp_path / "points.csv").open()))
    assert len(rows) == n
    for row in rows:
        rec = next(r for r in loaded.records if r.id == row["id"])
        assert float(row["median_s"]) == pytest.approx(statistics.median(rec.timing.samples_s), rel=1e-9)
    st = run_status(run)
    assert st.complete and st.to_dict()["complete"]


# --------------------------------------------------------------------------- record schema 2: layer dims
# Schema 1 stored a layer's hidden size in ``PointSpec.D``; from schema 2 D is per head at every level
# (``PointSpec.hidden`` = H * D) and older layer records, manifests, baselines and shard tables convert.

def _raw_lines(run: str) -> list[dict]:
    return [json.loads(ln) for ln in (DATA / run / "points.jsonl").read_text().splitlines() if ln.strip()]


def test_schema1_layer_record_loads_with_per_head_D_and_the_new_id():
    from profiler.core.records import SCHEMA_VERSION, PointRecord, from_dict, to_dict

    raw = _raw_lines("run-a52bece-layers")[0]
    assert raw["schema_version"] == 1 and raw["spec"]["level"] == "layer"
    assert (raw["spec"]["H"], raw["spec"]["D"]) == (4, 1024)           # the old meaning: D = hidden size
    rec = from_dict(PointRecord, raw, "points.jsonl:1")
    assert (rec.spec.H, rec.spec.D, rec.spec.hidden) == (4, 256, 1024)
    assert rec.id == "layer/retnet/torch/cpu/float32/fwd/B1/T32/H4/D256/causal"
    assert rec.schema_version == SCHEMA_VERSION >= 2
    assert "layer retnet/torch cpu float32 fwd B=1 T=32 H=4 D=256 hidden=1024:" in repr(rec)
    again = from_dict(PointRecord, json.loads(json.dumps(to_dict(rec))))   # written back: converted once only
    assert again.spec == rec.spec and again.id == rec.id


def test_kernel_level_ids_are_unchanged_by_the_schema_bump():
    from profiler.core.records import PointRecord, from_dict

    for raw in _raw_lines("run-a52bece-kernels"):
        s = raw["spec"]
        rec = from_dict(PointRecord, raw)
        assert (rec.spec.H, rec.spec.D) == (s["H"], s["D"])
        assert f"/B{s['B']}/T{s['T']}/H{s['H']}/D{s['D']}/" in rec.id and rec.id.startswith("kernel/")


def test_schema1_layer_hidden_that_H_does_not_divide_is_refused_naming_it():
    from profiler.core.records import PointRecord, RecordError, from_dict

    raw = _raw_lines("run-a52bece-layers")[0]
    raw["spec"]["D"] = 1000
    raw["spec"]["H"] = 3
    with pytest.raises(RecordError, match=r"points.jsonl:7.spec: .*hidden size D=1000.*H=3"):
        from_dict(PointRecord, raw, "points.jsonl:7")


@pytest.mark.parametrize("run", ["run-a52bece-layers", "h200-2026-11-30/run-layers"])
def test_old_layer_runs_load_export_and_resume_plan_in_the_new_meaning(run, tmp_path, monkeypatch):
    """Every layer record of an old run (the H200 evidence too) converts: D = hidden / H, hidden in the
    export, and the run's manifest plans the same ids again (resume and status match them)."""
    from profiler.planning import points as points_mod
    from profiler.planning.points import make_plan
    from profiler.planning.scenario import spec_from_dict

    dst = tmp_path / "run"
    shutil.copytree(DATA / run, dst)
    raw = {(r["spec"]["kernel"], r["spec"]["T"], r["spec"]["causal"], r["spec"]["backend"]): r["spec"]
           for r in _raw_lines(run)}
    loaded = RunDir(dst).load()
    assert loaded.records and all(r.spec.level == "layer" for r in loaded.records)
    for rec in loaded.records:
        old = raw[(rec.spec.kernel, rec.spec.T, rec.spec.causal, rec.spec.backend)]
        assert rec.spec.hidden == old["D"] == 1024 and rec.spec.D == old["D"] // old["H"] == 256
        assert f"/H4/D256/" in rec.id
    rows = list(csv.DictReader(export_run(dst, "csv", tmp_path / "points.csv").open()))
    assert {(r["H"], r["D"], r["hidden"]) for r in rows} == {("4", "256", "1024")}
    sweep = spec_from_dict(loaded.manifest.scenario, "manifest")
    assert sweep.head_dims == () and loaded.manifest.schema_version >= 2   # the old default: the study's width
    monkeypatch.setattr(points_mod, "resolve_device", lambda device: "cuda" if device == "cuda" else "cpu")
    planned = {p.spec.id for p in make_plan(sweep, cuda_available_flag=True).points}
    assert {r.id for r in loaded.records} <= planned


def test_schema1_manifest_with_explicit_hidden_converts_per_heads_value():
    from profiler.core.records import upgrade_sweep_dict

    assert upgrade_sweep_dict({"level": "layer", "heads": [2], "head_dims": [64]}, 1)["head_dims"] == []
    assert upgrade_sweep_dict({"level": "model", "heads": [2], "head_dims": [128, 512]}, 1)["head_dims"] == [64, 256]
    assert upgrade_sweep_dict({"level": "layer", "heads": [2, 4], "head_dims": [1024]}, 1)["head_dims"] == [512, 256]
    kernel = {"level": "kernel", "heads": [4], "head_dims": [128]}
    assert upgrade_sweep_dict(kernel, 1) == kernel and upgrade_sweep_dict({**kernel, "level": "layer"}, 2) == \
        {**kernel, "level": "layer"}


def _old_baseline(tmp_path: Path) -> Path:
    """A schema-1 baseline file of the old layer run, as `serprof baseline save` wrote it then."""
    points = [{"id": None, "spec": r["spec"], "status": r["status"], "samples_s": r["timing"]["samples_s"],
               "timer": r["timing"]["timer"], "peak_bytes": r["memory"]["peak_bytes"]}
              for r in _raw_lines("run-a52bece-layers")]
    f = tmp_path / "old-baseline.json"
    f.write_text(json.dumps({"format": "serprof-baseline", "schema_version": 1, "run_id": "old",
                             "environment": {}, "points": points}))
    return f


def test_gate_against_a_schema1_layer_baseline_matches_every_point(tmp_path):
    from profiler import api
    from profiler.store.baseline import load_baseline, save_baseline

    old = load_baseline(_old_baseline(tmp_path))
    assert {(r.spec.D, r.spec.hidden) for r in old.records} == {(256, 1024)}
    run = tmp_path / "run"
    shutil.copytree(DATA / "run-a52bece-layers", run)
    verdict = api.gate(baseline=_old_baseline(tmp_path), candidate=run, allow_env_mismatch=True, n_boot=100)
    assert not verdict.missing_in_candidate and not verdict.missing_in_baseline
    compared = {c.subject for c in verdict.checks if c.metric == "latency"}
    assert compared and compared <= {r.id for r in old.records}   # (replay points: not compared per point)
    new = json.loads(save_baseline(run, tmp_path / "new.json").read_text())   # written at schema 2, per head
    assert new["schema_version"] == 2 and {p["spec"]["D"] for p in new["points"]} == {256}
    assert {r.id for r in load_baseline(tmp_path / "new.json").records} == {r.id for r in old.records}


def test_schema1_shard_table_specs_convert(tmp_path):
    from profiler.runner import slurm

    spec = _raw_lines("run-a52bece-layers")[0]["spec"]
    (tmp_path / slurm.SHARDS_FILE).write_text(json.dumps({"schema_version": 1, "shards": [{"shard": 0, "specs": [spec]}]}))
    table = slurm.read_shards(tmp_path)
    assert table["schema_version"] == slurm.SHARDS_SCHEMA_VERSION and table["shards"][0]["specs"][0]["D"] == 256
