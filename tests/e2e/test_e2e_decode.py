"""The shipped streaming scenario through the real workers (short audio contexts so it stays fast):
streaming points are verified, timed, carry their state / cache bytes, and the report has the section."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.store.runs import RunDir

pytestmark = [pytest.mark.slow, pytest.mark.long]

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "streaming.toml"


def test_streaming_scenario_runs_and_reports_its_decode_section(tmp_path):
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "profiler", "sweep", "--scenario", str(SCENARIO), "--audio", "2s,8s", "--kernels", "softmax,retnet",
                        "--device", "cpu", "--time-budget", "0.05", "--warmup", "0.01", "--json", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["counts"] == {"ok": 4}
    recs = RunDir.open(out).load().records
    for r in recs:
        assert r.spec.phase == "streaming" and r.spec.option("chunk") == "2" and r.correctness.passed
        assert r.extra["carried_bytes"] == r.extra["carried_bytes_analytic"] > 0
    state = {r.spec.T: r.extra["carried_bytes"] for r in recs if r.spec.kernel == "retnet"}
    cache = {r.spec.T: r.extra["carried_bytes"] for r in recs if r.spec.kernel == "softmax"}
    assert state == {100: 65536, 400: 65536} and cache[400] > 3 * cache[100]
    html = (out / "report.html").read_text()
    assert 'id="decode"' in html and "real-time factor" in html


def test_layer_streaming_sweep_reports_real_time_factor(tmp_path):
    """Whole SER layers streamed by the CLI (--level layer --phase streaming): verified, carried bytes
    constant for KDA and growing for the softmax baseline, fla classes dropped only where they cannot
    stream, and the report's decode section with the real-time factor."""
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "profiler", "sweep", "--level", "layer", "--phase", "streaming",
                        "--chunk-size", "2", "--kernels", "softmax,kda,fox", "--audio", "2s,8s", "--text-rate", "0",
                        "--heads", "2", "--head-dim", "32", "--device", "cpu", "--time-budget", "0.05",
                        "--warmup", "0.01", "--json", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["counts"] == {"ok": 6}
    recs = RunDir.open(out).load().records
    assert all(r.spec.level == "layer" and r.correctness.passed for r in recs)
    carried = {(r.spec.kernel, r.spec.T): r.extra["carried_bytes"] for r in recs}
    assert carried[("kda", 100)] == carried[("kda", 400)] and carried[("softmax", 400)] > 3 * carried[("softmax", 100)]
    html = (out / "report.html").read_text()
    assert 'id="decode"' in html and "real-time factor" in html
