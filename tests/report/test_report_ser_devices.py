"""The SER section (layer-level runs) and multi-device labelling in the HTML report and Markdown summary."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from profiler.analysis.ser import audio_seconds, per_minute
from profiler.analysis.summary import analyze
from profiler.report import markdown_summary, render_run
from profiler.store.runs import RunDir

GOLDEN = Path(__file__).parents[1] / "golden" / "report"


@pytest.fixture(scope="module")
def layer_html(layer_run) -> str:
    return re.sub(r"<svg.*?</svg>", "", render_run(layer_run).read_text(), flags=re.S)


def test_ser_analysis_audio_payoff_and_per_minute(layer_run, synth_module):
    a = analyze(RunDir.open(layer_run).load())
    assert a.ser is not None
    # replay points are summarised, never fitted as a fixed-T series
    assert a.series and all(dict(s.key.options).get("replay") is None for s in a.series)
    pay = {p.layer: p for p in a.ser.payoffs}
    assert pay["retnet"].audio_s == pytest.approx(10_000 / 53, rel=0.03)      # T* = 10,000 at 53 positions/s
    assert pay["gsa"].audio_s == pytest.approx(50_000 / 53, rel=0.03)
    assert pay["retnet"].audio_low_s < pay["retnet"].audio_s < pay["retnet"].audio_high_s
    retnet = next(s for s in a.series if s.key.kernel == "retnet")
    pm = per_minute(retnet)
    assert [round(p.audio_s / 60) for p in pm] == list(synth_module.AUDIO_MIN)
    # linear layer: 1e-4 s per position * 3,180 positions per minute, whatever the duration
    for p in pm:
        assert p.latency_per_min_s == pytest.approx(1e-4 * 3180, rel=0.03)
        assert p.energy_per_min_j == pytest.approx(synth_module.POWER_W * 1e-4 * 3180, rel=0.03)
    soft = per_minute(next(s for s in a.series if s.key.kernel == "softmax"))
    assert soft[-1].latency_per_min_s / soft[0].latency_per_min_s == pytest.approx(16, rel=0.05)
    rep = {r.layer: r for r in a.ser.replays}
    assert set(rep) == {"softmax", "retnet", "gsa"} and rep["retnet"].n == synth_module.REPLAY_N
    assert rep["retnet"].mean_ci[0] < rep["retnet"].mean_s < rep["retnet"].mean_ci[1]
    assert audio_seconds(retnet.points[0].record) == pytest.approx(60.0)


def test_ser_section_in_html(layer_html):
    html = layer_html
    assert 'id="ser"' in html and 'href="#ser"' in html
    assert "neither confirms nor refutes the accuracy claim" in html               # the study comparison
    assert "Slower than the baseline per utterance in this run: gsa, retnet" in html
    assert "faster than the study&#39;s softmax layer from ≈3.15 min of audio" in html   # crossover in audio
    assert "Utterance replay" in html and "p95 [95% CI]" in html and "msp-podcast-like" in html
    assert "50 frames/s + 3 tokens/s" in html
    assert re.search(r"<td>3,180</td><td>1 min</td>", html)                          # audio next to T
    assert 'id="fig-per_minute"' in html or "fig-per_minute" in html
    assert "in audio: from ≈3.15 min" in html                                       # crossover table
    assert "H=4 D=256 (hidden 1024)" in html                # D per head; the layer's width shown beside it


def test_per_minute_figure_files(layer_run, layer_html):
    for ext in ("svg", "png"):
        assert (layer_run / "figures" / f"per_minute.{ext}").stat().st_size > 1000
    assert "Cost per minute of audio" in render_run(layer_run).read_text()


def test_kernel_only_run_has_no_ser_section(synthetic_run):
    html = render_run(synthetic_run).read_text()
    assert 'id="ser"' not in html and "per_minute" not in html


def test_ser_markdown_golden(layer_run):
    text = markdown_summary([layer_run])
    assert "#### Speech emotion recognition" in text and "| softmax | non-causal |" in text
    assert "50,880 (16 min); skipped at 63,600 (20 min)" in text                    # audio next to T
    golden = GOLDEN / "summary_ser.md"
    if os.environ.get("SERPROF_REGEN_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), "SER Markdown changed; SERPROF_REGEN_GOLDEN=1 regenerates goldens"


def test_multi_device_report_labels_each_model(tmp_path, synth_module):
    run = synth_module.make_multi_device_run(tmp_path / "two-gpus")
    html = re.sub(r"<svg.*?</svg>", "", render_run(run).read_text(), flags=re.S)
    a100, h100 = synth_module.A100, synth_module.H100
    assert "Measured on 2 device models" in html and "never averaged" in html
    assert f"softmax/sdpa/causal @ {a100}" in html and f"retnet/torch/causal @ {h100}" in html
    assert "Devices that measured this run" in html and "shard 0 environment" in html
    md = markdown_summary([run])
    assert f"cuda · {a100} float32 fwd B=1" in md and f"cuda · {h100} float32 fwd B=1" in md
    svg = (run / "figures" / "latency.svg").read_text()
    assert svg.count("<g id=\"axes_") >= 2                # one panel per device model


def test_export_names_device_and_audio(tmp_path, layer_run, synth_module):
    import csv

    from profiler.report import export_run

    rows = list(csv.DictReader(export_run(layer_run, "csv", tmp_path / "p.csv").open()))
    one_min = [r for r in rows if r["T"] == "3180" and r["kernel"] == "retnet"]
    assert len(one_min) == 1 and float(one_min[0]["audio_s"]) == pytest.approx(60.0)
    assert one_min[0]["device_name"] == "Synthetic CPU @ 2 GHz"
    assert (one_min[0]["H"], one_min[0]["D"], one_min[0]["hidden"]) == ("4", "256", "1024")
