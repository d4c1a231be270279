"""Packed variable-length kernel batches end to end on CPU: the acceptance sweep
``serprof sweep --varlen lognormal --tokens 16k --kernels softmax,retnet,kda`` (real CLI, workers, kernels),
and the same pipeline in-process at a smaller budget (records, per-sequence checks, analysis, report)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from profiler.analysis.varlen import analyze_varlen
from profiler.core.records import MeasureSettings
from profiler.measure.point import measure_point
from profiler.planning.points import make_plan
from profiler.planning.scenario import build_spec
from profiler.store.runs import RunDir

FAST = dict(warmup_s=0.0, min_warmup_calls=1, min_reps=3, max_reps=5, time_budget_s=0.05, measure_energy=False,
            processes=1)


@pytest.mark.long
def test_packed_and_padded_points_measure_check_and_compare_in_process():
    spec = build_spec(None, {"kernels": "softmax,retnet,kda", "backends": "sdpa,torch", "device": "cpu",
                             "varlen": "lognormal:max=256", "tokens": "1k", "heads": 1, "head_dim": 16,
                             "memory_budget": "8GiB"})
    plan = make_plan(spec, cuda_available_flag=False)
    settings = MeasureSettings(**{**FAST, "varlen": spec.settings.varlen, "tokens": 1024})
    records = [measure_point(p, settings) for p in plan.runnable()]
    assert len(records) == 6 and all(r.status == "ok" for r in records), [(r.id, r.reason) for r in records]
    for r in records:
        v = r.extra["varlen"]
        assert r.correctness.passed and len(r.correctness.per_sequence_rel_err) == v["count"] >= 2
        assert v["real_tokens"] == 1024 and v["tokens_per_s"] == pytest.approx(1024 / r.timing.median_s)
        assert v["max"] <= 256 and sum(v["lengths"]) == 1024
    rows = analyze_varlen(records).rows
    assert {(r.kernel, r.backend) for r in rows} == {("softmax", "sdpa"), ("retnet", "torch"), ("kda", "torch")}
    for row in rows:
        assert row.packed_tokens_per_s and row.padded_tokens_per_s and row.speedup > 0
        assert row.path == "per_sequence" and 0 < row.padding_waste < 1


def test_one_packed_and_padded_pair_through_the_pipeline():
    """The fast slice of the above (make test): retnet/torch packed and padded at 512 tokens."""
    spec = build_spec(None, {"kernels": "retnet", "backends": "torch", "device": "cpu", "varlen": "fixed:300,100",
                             "tokens": "512", "heads": 1, "head_dim": 16, "memory_budget": "8GiB"})
    settings = MeasureSettings(**{**FAST, "varlen": "fixed:300,100", "tokens": 512, "measure_memory": False})
    records = [measure_point(p, settings) for p in make_plan(spec, cuda_available_flag=False).runnable()]
    assert [r.extra["varlen"]["layout"] for r in records] == ["packed", "padded"]
    assert all(r.status == "ok" and r.correctness.passed for r in records)
    assert records[0].extra["varlen"]["lengths"] == [300, 100, 112] and records[0].extra["varlen"]["cut_from"] == 300
    (row,) = analyze_varlen(records).rows
    assert row.padding_waste == pytest.approx(1 - 512 / 900) and row.speedup == pytest.approx(
        records[1].timing.median_s / records[0].timing.median_s)


@pytest.mark.slow
@pytest.mark.long
def test_acceptance_sweep_runs_on_cpu_and_reports_padded_vs_packed(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "profiler", "sweep", "--varlen", "lognormal", "--tokens", "16k",
                        "--kernels", "softmax,retnet,kda", "--backend", "sdpa,torch", "--heads", "1", "--head-dim",
                        "16", "--device", "cpu", "--processes", "1", "--time-budget", "0.1", "--warmup", "0",
                        "--no-energy", "--json", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["counts"] == {"ok": 6}
    records = RunDir.open(out).load().records
    assert all(r.correctness.passed and r.extra["varlen"]["real_tokens"] == 16384 for r in records)
    html = (out / "report.html").read_text()
    assert "Packed vs padded variable-length batches" in html and "per_sequence" in html
