"""Each CPU port computes what the real fla layer computes, with the same weights.

The fla layers run under Triton's interpreter in a fresh process (``python -m
profiler.layers.fla_verify``: TRITON_INTERPRET must be set before triton is imported). fla layers use
their recurrent kernels at T <= 64 and the chunked ones above, so both paths are checked where the
interpreter is fast enough (LightNet and KDA chunked kernels take 5-20 s each interpreted).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.interpret

TOL = 2e-5   # fp32; measured errors are ~1e-6 (max |port - fla| / max |fla|)


def _run(layers: str, T: str) -> dict:
    pytest.importorskip("fla")
    proc = subprocess.run([sys.executable, "-m", "profiler.layers.fla_verify", "--layers", layers, "--hidden", "128",
                           "--heads", "2", "--T", T], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results() -> dict:
    return _run("retnet,lightnet,gsa,fox,kda,retnet@80,gsa@80,fox@80", "48")


@pytest.mark.parametrize("key", ["retnet@T48", "lightnet@T48", "gsa@T48", "fox@T48", "kda@T48",
                                 "retnet@T80", "gsa@T80", "fox@T80"])
@pytest.mark.long   # 10-25 s on 2 cores: `make test-long` (CI runs it after `make test`)
def test_layers_port_matches_fla_layer_under_interpreter(results, key):
    r = results[key]
    assert r["finite"]
    assert r["rel_err"] < TOL, f"{key}: rel err {r['rel_err']:.3g}"
