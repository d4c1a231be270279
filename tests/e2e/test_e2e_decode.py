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
