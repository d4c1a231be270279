"""``--phase`` / ``--decode-steps`` / ``--chunk-size``: bad values are one line naming the flag, exit 2;
a plan drops what cannot decode, with the reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

from profiler.core import settings
from profiler.core.errors import UsageError
from profiler.planning.points import make_plan
from profiler.planning.scenario import build_spec


def _serprof(*args):
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, flag", [
    (("--decode-steps", "0"), "--decode-steps"),
    (("--phase", "streaming", "--chunk-size", "0"), "--chunk-size"),
    (("--phase", "streaming"), "--phase"),
    (("--phase", "decoder"), "--phase"),
    (("--chunk-size", "4"), "--chunk-size"),
])
def test_bad_phase_flags_are_one_line_exit_2(args, flag):
    p = _serprof("sweep", "--dry-run", "--kernels", "retnet", "--lengths", "1k", "--device", "cpu", *args)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"serprof: error: {flag}"), p.stderr


def test_scenario_keys_and_keywords_take_the_same_values(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('kernels = ["retnet"]\n[settings]\nphase = "streaming"\nchunk_size = 0\n')
    with pytest.raises(UsageError, match=r"settings\.chunk_size"):
        build_spec(f)
    assert settings.keywords(phase="decode", decode_steps=4).decode_steps == 4
    with pytest.raises(UsageError, match="decode_steps="):
        settings.keywords(decode_steps=0)


def test_decode_plan_keeps_recurrent_backends_and_says_why_others_go():
    spec = build_spec(None, {"kernels": "softmax,retnet,kda", "lengths": "256,512", "device": "cpu",
                             "phase": "decode", "decode_steps": 4})
    plan = make_plan(spec, cuda_available_flag=False)
    got = {(p.spec.kernel, p.spec.backend) for p in plan.points}
    assert got == {("softmax", "sdpa"), ("retnet", "torch"), ("kda", "torch")}
    assert all(p.spec.phase == "decode" and p.spec.option("steps") == "4" and p.spec.causal for p in plan.points)
    reasons = {d.what: d.reason for d in plan.dropped}
    assert "runs through sdpa, flash-attn, fla (KV cache), not naive" in reasons["softmax/naive decode"]
    assert "recurrent step" in reasons["retnet/fla-parallel decode"]


def test_streaming_chunk_longer_than_T_is_dropped_with_reason():
    spec = build_spec(None, {"kernels": "retnet", "lengths": "2,64", "device": "cpu",
                             "phase": "streaming", "chunk_size": 4})
    plan = make_plan(spec, cuda_available_flag=False)
    assert [p.spec.T for p in plan.points] == [64]
    assert any("longer than the context T=2" in d.reason for d in plan.dropped)


def test_verify_phase_checks_the_decode_backends_only():
    from profiler import api

    res = api.verify("softmax,retnet", lengths="5", phase="decode", decode_steps=3, modes="fwd,fwdbwd")
    assert {(r.kernel, r.backend, r.mode) for r in res} == {("softmax", "sdpa", "fwd"), ("retnet", "torch", "fwd")}
    assert all(r.passed and r.correctness.checked_T == 5 for r in res)
    with pytest.raises(UsageError, match="--chunk-size"):
        api.verify("retnet", lengths="5", phase="streaming")


def test_list_says_which_backends_decode():
    from profiler import api

    rows = {(r["kernel"], r["backend"]): r["phases"] for r in api.list_kernels("cpu", level="kernel")}
    assert rows[("retnet", "torch")] == rows[("softmax", "sdpa")] == ["prefill", "decode", "streaming"]
    assert rows[("retnet", "fla-recurrent")] == ["prefill", "decode", "streaming"]
    assert rows[("softmax", "naive")] == rows[("retnet", "fla")] == ["prefill"]
