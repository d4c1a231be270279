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
