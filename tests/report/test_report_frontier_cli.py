"""``serprof frontier``: the dry fla probe end to end through the console entry, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _serprof(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.interpret
def test_cli_frontier_json_retnet():
    res = _serprof("frontier", "--device-memory", "80GiB", "--kernels", "retnet", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    mem = 80 * 2**30
    assert out["device_memory_bytes"] == mem and out["unseen_terms"]
    rows = {r["backend"]: r for r in out["results"]}
    assert {r["kernel"] for r in out["results"]} == {"retnet"}
    dry = rows["fla"]
    assert dry["method"] == "fla-dry"
    (t0, b0), (t1, b1), *_ , (tn, bn) = dry["measured"]
    per_T = (b1 - b0) / (t1 - t0)
    assert bn - b0 == pytest.approx(per_T * (tn - t0), rel=1e-6)         # fla's allocations: linear in T
    assert dry["bytes_at_max_T"] <= mem < dry["bytes_at_max_T"] + 2 * per_T   # the longest T that fits
    assert rows["torch"]["method"] == "analytic" and 0 < rows["torch"]["max_T"]


def test_cli_frontier_bad_size_exits_2():
    res = _serprof("frontier", "--device-memory", "12XB")
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "--device-memory '12XB'" in err[0] and "GiB" in err[0]
    assert "Traceback" not in res.stderr
