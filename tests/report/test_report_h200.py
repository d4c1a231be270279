"""The real H200 records (tests/data/h200-2026-11-30, old single-timing CUDA schema; README there):
they load and report as before, negative energies read as below resolution, and the bf16 points sit
under a bf16 roof (the fp32 calibration of those runs is no roof for them)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from profiler.analysis.roofline import series_peaks
from profiler.analysis.series import quantity_label
from profiler.analysis.summary import analyze
from profiler.core.records import energy_per_call
from profiler.store.runs import RunDir

DATA = Path(__file__).resolve().parents[1] / "data" / "h200-2026-11-30"


@pytest.fixture(scope="module")
def kernels():
    return analyze(RunDir.open(DATA / "run-kernels").load())


@pytest.fixture(scope="module")
def layers():
    return analyze(RunDir.open(DATA / "run-layers").load())


def test_the_data_is_in_the_project_not_in_shared():
    for name in ("run-kernels/manifest.json", "run-kernels/points.jsonl", "run-layers/points.jsonl",
                 "timers.jsonl", "anchor.jsonl", "env.json", "README.md"):
        assert (DATA / name).is_file(), name
    assert "shared" not in str(DATA.relative_to(Path(__file__).resolve().parents[2]))


def test_records_load_as_old_single_timing(kernels, layers):
    recs = kernels.run.records
    assert len(recs) == 37 and all(r.status == "ok" for r in recs) and not kernels.run.warnings
    assert all(r.timing.quantity == "" and r.call_latency is None and r.first_call is None for r in recs)
    assert {quantity_label(r) for r in recs} == {"latency (old single timing)"}
    assert not kernels.two_timings and kernels.launch == [] and kernels.call_comparisons == []
    assert len(kernels.series) == 7 and {s.key.dtype for s in kernels.series} == {"bfloat16"}
    assert layers.status_counts == {"ok": 9, "skipped": 2}


def test_negative_energy_reads_as_below_resolution(kernels):
    neg = [r for r in kernels.run.records if r.energy and r.energy.energy_j is not None and r.energy.energy_j < 0]
    assert len(neg) >= 5                                   # e.g. naive softmax at T=512: -0.033 J
    for r in neg:
        assert energy_per_call(r.energy) == (None, "below_resolution")
    naive = next(p for s in kernels.series if s.key.backend == "naive" and s.key.causal for p in s.points if p.T == 512)
    assert naive.record.energy.energy_j == pytest.approx(-0.0331, abs=1e-3) and naive.energy_j is None
    assert all(p.energy_j is None or p.energy_j > 0 for s in kernels.series for p in s.points)


def test_bf16_points_sit_under_the_bf16_roof(kernels):
    cal_fp32 = kernels.manifest.calibration["matmul_flops_per_s"]
    above_fp32 = 0
    for s in kernels.series:
        peaks = series_peaks(s.key, kernels.manifest.calibration, kernels.manifest.environment, kernels.devices)
        pk = peaks[0]
        assert pk.dtype == "bfloat16" and pk.source == "spec sheet: H200 SXM" and "no bfloat16 calibration" in pk.note
        assert pk.bytes_per_s == pytest.approx(4.147e12, rel=1e-3)        # the run's own copy bandwidth
        for p in s.points:
            achieved = p.record.flops / p.median_s
            roof = min(pk.flops_per_s, pk.bytes_per_s * p.record.flops / p.record.bytes_moved)
            assert achieved < roof, (s.key.variant, p.T, achieved, roof)
            above_fp32 += achieved > cal_fp32
    assert above_fp32 >= 1          # sdpa at 64k beats the fp32 matmul rate: an fp32 roof is no roof here
    # the analysis' roofline points use the same roof
    assert all(rp.frac_flops is None or rp.frac_flops < 1 for rp in kernels.roofline)


def test_fp32_layers_keep_the_fp32_calibration(layers):
    s = layers.series[0]
    pk = series_peaks(s.key, layers.manifest.calibration, layers.manifest.environment, layers.devices)[0]
    assert s.key.dtype == "float32" and pk.source == "calibration" and pk.note == ""
    assert pk.flops_per_s == pytest.approx(5.082e13, rel=1e-3)


def test_reports_render(tmp_path, kernels):
    from profiler.report.html import render_run

    for name in ("run-kernels", "run-layers"):
        run = tmp_path / name
        shutil.copytree(DATA / name, run)
        html = render_run(run).read_text()
        assert "serprof report" in html and "Device time vs call latency" not in html
        assert (run / "figures" / "latency.svg").is_file()
    html = (tmp_path / "run-kernels" / "report.html").read_text()
    assert "below resolution" in html
    assert "spec sheet: H200 SXM (no bfloat16 calibration in this run" in html
    roof = (tmp_path / "run-kernels" / "figures" / "roofline.svg").read_text()
    assert "bfloat16" in roof
    # the manifests were not modified by rendering
    assert json.loads((tmp_path / "run-kernels" / "manifest.json").read_text()) == \
        json.loads((DATA / "run-kernels" / "manifest.json").read_text())
