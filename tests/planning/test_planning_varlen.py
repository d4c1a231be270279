"""``--varlen`` / ``--tokens`` in the plan: packed and padded points, drops with reasons, bad input exit 2,
memory estimates that account for packing, and unchanged ids of every other point."""

from __future__ import annotations

import contextlib
import io

import pytest

from profiler.cli import main
from profiler.core import settings
from profiler.core.errors import UsageError
from profiler.core.records import PointSpec
from profiler.planning import points as planning_points
from profiler.planning.points import make_plan
from profiler.planning.scenario import build_spec

ACCEPT = {"kernels": "softmax,retnet,kda", "device": "cpu", "varlen": "lognormal", "tokens": "16k",
          "memory_budget": "64GiB"}


def _serprof(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        main(["sweep", "--dry-run", "--device", "cpu", "--kernels", "softmax,retnet", *argv])
    return e.value.code, err.getvalue()


@pytest.mark.parametrize("argv, start, fragment", [
    (("--varlen", "zipf", "--tokens", "16k"), "--varlen", "unknown distribution 'zipf'"),
    (("--varlen", "lognormal", "--tokens", "4k"), "--tokens", "smaller than the longest sequence"),
    (("--varlen", "1000,3000,500", "--tokens", "2k"), "--tokens", "(3000)"),
    (("--varlen", "lognormal"), "--varlen", "needs a token budget"),
    (("--tokens", "16k"), "--tokens", "add --varlen"),
    (("--varlen", "uniform", "--tokens", "1.5k"), "--tokens", ""),
    (("--varlen", "uniform", "--tokens", "16k", "--lengths", "1k"), "--lengths", "cannot be combined with --varlen"),
    (("--varlen", "uniform", "--tokens", "16k", "--batch", "2"), "--batch", "cannot be combined with --varlen"),
    (("--varlen", "uniform", "--tokens", "16k", "--phase", "decode"), "--varlen", "phase prefill"),
    (("--varlen", "uniform", "--tokens", "16k", "--level", "layer"), "--varlen", "--level kernel"),
])
def test_bad_varlen_input_is_one_line_naming_the_flag_exit_2(argv, start, fragment):
    code, err = _serprof(*argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"serprof: error: {start}"), err
    assert fragment in lines[0] and "Traceback" not in err


def test_scenario_keys_name_the_file(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('kernels = ["retnet"]\n[settings]\nvarlen = "exponential"\ntokens = "4k"\n')
    with pytest.raises(UsageError, match=r"s\.toml: key 'settings\.tokens'.*token budget 4096"):
        build_spec(f)
    assert settings.keywords(varlen="Fixed:3,1,2").tokens == 6      # a fixed list defaults to its sum


def test_acceptance_plan_has_packed_and_padded_points_and_says_why_others_go():
    plan = make_plan(build_spec(None, ACCEPT), cuda_available_flag=False)
    got = {(p.spec.kernel, p.spec.backend, p.spec.option("layout", "packed")) for p in plan.points}
    for kb in [("softmax", "sdpa"), ("softmax", "naive"), ("softmax", "flex"), ("retnet", "torch"), ("kda", "torch")]:
        assert kb + ("packed",) in got and kb + ("padded",) in got
    for p in plan.points:
        assert (p.spec.B, p.spec.T, p.spec.causal) == (1, 16384, True)
        assert p.spec.option("varlen") == "lognormal" and p.spec.option("varlen_seed") == "0"
    reasons = {d.what: d.reason for d in plan.dropped}
    assert "need a key mask" in reasons["softmax/sdpa non-causal varlen=lognormal packed"]


def test_cuda_plan_keeps_the_cu_seqlens_backends(monkeypatch):
    monkeypatch.setattr(planning_points, "cuda_available", lambda: True)
    plan = make_plan(build_spec(None, {**ACCEPT, "device": "cuda"}), cuda_available_flag=True)
    packed = {(p.spec.kernel, p.spec.backend) for p in plan.points if p.spec.option("layout") is None}
    assert {("softmax", "fla"), ("retnet", "fla"), ("retnet", "fla-recurrent"), ("kda", "fla"),
            ("softmax", "sdpa-efficient")} <= packed


def test_a_backend_without_a_packed_path_is_dropped_with_its_reason(monkeypatch):
    import dataclasses

    from profiler.kernels import get_kernel

    spec = get_kernel("retnet")
    monkeypatch.setitem(spec.backends, "torch", dataclasses.replace(spec.backends["torch"], varlen=""))
    plan = make_plan(build_spec(None, {**ACCEPT, "kernels": "retnet"}), cuda_available_flag=False)
    assert [p.spec.option("layout") for p in plan.points] == ["padded"]
    assert any("no packed (cu_seqlens) path" in d.reason for d in plan.dropped)


def test_memory_estimate_accounts_for_packing():
    plan = make_plan(build_spec(None, {**ACCEPT, "kernels": "softmax", "backends": "naive"}),
                     cuda_available_flag=False)
    est = {p.spec.option("layout", "packed"): p.est_bytes for p in plan.points}
    # naive softmax: packed runs one sequence at a time (scores of the longest), padded all n x max^2 at once
    assert est["padded"] > 3 * est["packed"] > 0


def test_ids_of_points_without_varlen_are_unchanged():
    assert PointSpec("retnet", "torch").id == "kernel/retnet/torch/cpu/float32/fwd/B1/T1024/H4/D64/causal"
    plan = make_plan(build_spec(None, {"kernels": "retnet", "lengths": "64", "device": "cpu"}),
                     cuda_available_flag=False)
    assert [p.spec.id for p in plan.points] == ["kernel/retnet/torch/cpu/float32/fwd/B1/T64/H4/D64/causal"]
