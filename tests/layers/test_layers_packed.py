"""Packed variable-length utterance replay (``packing=packed``): fla numerics under Triton's
interpreter, replay bookkeeping, and what the planner / CLI accept, drop and refuse.

The interpreted part runs in one fresh process (``profiler.kernels.interpret.run_isolated``: fla must be
imported after interpret mode is on), at hidden 64, 2 heads.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from profiler.core.errors import UsageError
from profiler.layers.utterances import replay, token_counts

TOL = 2e-5   # fp32; measured ~5e-7 (packed vs alone), see _interpreted_checks


# --------------------------------------------------------------------------- interpreted child

def _interpreted_checks() -> dict:
    """Runs in an interpreted child: per-utterance packed-vs-alone errors of the real fla layers, a
    negative control (packed without cu_seqlens), and one packed + one padded replay point end to end."""
    import torch

    from profiler.core.records import MeasureSettings, PointSpec
    from profiler.layers import build_fla
    from profiler.layers.packed import packed_vs_single
    from profiler.measure.point import measure_point

    def utterances(lengths, hidden=64):
        g = torch.Generator().manual_seed(1)
        return [torch.randn(t, hidden, generator=g) for t in lengths]

    out: dict = {"equiv": {}}
    cases = [("retnet", [7, 12, 20]), ("gsa", [7, 12, 20]), ("fox", [7, 12, 20]),
             # sum T = 98 > 64: the packed call takes the chunked kernels, each utterance alone the recurrent
             ("retnet", [20, 33, 45]), ("gsa", [20, 33, 45])]
    for name, lengths in cases:
        torch.manual_seed(0)
        m = build_fla(name, 64, 2).eval()
        out["equiv"][f"{name}@{'-'.join(map(str, lengths))}"] = packed_vs_single(m, utterances(lengths))

    # negative control: the same packed sequence without cu_seqlens leaks state across utterances
    torch.manual_seed(0)
    m = build_fla("retnet", 64, 2).eval()
    xs = utterances([7, 12, 20])
    with torch.no_grad():
        joined = m(torch.cat(xs).unsqueeze(0))[0][0]
        alone = m(xs[1].unsqueeze(0))[0][0]
    out["leak_rel_err"] = float((joined[7:19] - alone).abs().max() / alone.abs().max())

    settings = MeasureSettings(min_warmup_calls=1, measure_energy=False)
    opts = (("distribution", "msp-podcast-like"), ("frame_rate", "2"), ("replay", "5"), ("text_rate", "0"))
    out["points"] = {}
    for packing in ("packed", "padded"):
        o = opts + ((("packing", "packed"),) if packing == "packed" else ())
        spec = PointSpec(kernel="retnet", backend="fla", device="cpu", dtype="float32", mode="fwd", B=3, T=22,
                         H=2, D=32, causal=True, level="layer", interpret=True, options=tuple(sorted(o)))
        rec = measure_point(spec, settings)
        out["points"][packing] = {"status": rec.status, "reason": rec.reason,
                                  "reference": rec.correctness.reference, "rel_err": rec.correctness.max_rel_err,
                                  "replay": {k: v for k, v in rec.extra["replay"].items() if k != "summary"},
                                  "n_samples": len(rec.timing.samples_s)}
    return out


@pytest.fixture(scope="module")
def interpreted() -> dict:
    pytest.importorskip("fla")
    from profiler.kernels.interpret import run_isolated

    return run_isolated(f"{Path(__file__).resolve()}:_interpreted_checks", {}, timeout_s=300)


@pytest.mark.interpret
@pytest.mark.parametrize("key", ["retnet@7-12-20", "gsa@7-12-20", "fox@7-12-20", "retnet@20-33-45", "gsa@20-33-45"])
@pytest.mark.long   # 10-25 s on 2 cores: `make test-long` (CI runs it after `make test`)
def test_layers_packed_fla_matches_each_utterance_alone(interpreted, key):
    errs = interpreted["equiv"][key]
    assert len(errs) == 3
    assert max(errs) < TOL, f"{key}: per-utterance rel errs {errs}"


@pytest.mark.interpret
@pytest.mark.long   # shares the interpreted fixture (~18 s on 2 cores): `make test-long`
def test_layers_packed_check_detects_state_leaking_across_utterances(interpreted):
    # without cu_seqlens the second utterance sees the first one's state: the comparison must notice
    assert interpreted["leak_rel_err"] > 100 * TOL


@pytest.mark.interpret
def test_layers_packed_replay_point_records_packing_and_padding(interpreted):
    packed, padded = interpreted["points"]["packed"], interpreted["points"]["padded"]
    assert packed["status"] == "ok", packed["reason"]
    assert padded["status"] == "ok", padded["reason"]
    assert "each utterance alone" in packed["reference"] and packed["rel_err"] < 1e-3
    rp, rd = packed["replay"], padded["replay"]
    assert rp["packing"] == "packed" and rd["packing"] == "padded"
    assert rp["batch_size"] == rd["batch_size"] == 3
    assert rp["lengths"] == rd["lengths"] and packed["n_samples"] == 5
    real = sum(rp["lengths"])
    assert rp["real_tokens"] == rd["real_tokens"] == real
    assert rp["padded_tokens"] == real and rp["padding_overhead"] == 0
    L = rd["lengths"]
    assert rd["padded_tokens"] == 3 * max(L[:3]) + 2 * max(L[3:])
    assert rd["padding_overhead"] == pytest.approx(rd["padded_tokens"] / real - 1)


# --------------------------------------------------------------------------- bookkeeping (no fla)

def test_layers_packed_token_counts():
    assert token_counts([3, 5, 4, 10, 2], 2, "padded") == (2 * 5 + 2 * 10 + 2, 24)
    assert token_counts([3, 5, 4, 10, 2], 2, "packed") == (24, 24)
    assert token_counts([3, 5, 4], 1, "padded") == (12, 12)


def test_layers_packed_replay_warms_up_on_the_batch_with_most_tokens():
    prepared = []

    def prepare(lengths):
        prepared.append(list(lengths))
        return lambda: None

    # batches (by T): [10, 90] (max 90, 100 tokens), [60, 60] (max 60, 120 tokens)
    res = replay([1.0, 9.0, 6.0, 6.0], lambda s: int(s * 10), prepare, batch_size=2, packing="packed",
                 time_call=lambda call: 0.5)
    assert prepared[0] == [60, 60]
    assert res.to_extra()["packing"] == "packed"
    replay([1.0, 9.0, 6.0, 6.0], lambda s: int(s * 10), prepare, batch_size=2, time_call=lambda call: 0.5)
    assert prepared[3] == [10, 90]          # padded: the longest utterance's batch
    with pytest.raises(UsageError):
        replay([1.0], lambda s: 10, prepare, packing="ragged")


def test_layers_packed_inputs_cut_rows_and_offsets():
    import torch

    from profiler.layers.packed import packed_inputs, split_packed

    full = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    inp = packed_inputs([2, 5], full)
    assert inp["x"].shape == (1, 7, 3)
    assert inp["cu_seqlens"].tolist() == [0, 2, 7] and inp["cu_seqlens"].dtype == torch.long
    a, b = split_packed(inp["x"], [2, 5])
    assert torch.equal(a, full[0, :2]) and torch.equal(b, full[1])
    with pytest.raises(ValueError):
        packed_inputs([6], full)


# --------------------------------------------------------------------------- planner and CLI

def _plan(**overrides):
    from profiler.planning.points import make_plan
    from profiler.planning.scenario import build_spec

    base = dict(level="layer", device="cpu", utterances=4, batch="1,4", lengths="64", kernels="retnet,mha")
    return make_plan(build_spec(None, {**base, **overrides}))


def test_layers_packed_planned_for_fla_under_interpret_only_at_batch_above_1():
    plan = _plan(interpret=True, packing="both")
    packed = [p.spec for p in plan.points if p.spec.option("packing") == "packed"]
    assert [(s.kernel, s.backend, s.B) for s in packed] == [("retnet", "fla", 4)]
    assert packed[0].option("replay") == "4" and packed[0].interpret
    padded_replays = [p.spec for p in plan.points if p.spec.option("replay") and not p.spec.option("packing")]
    assert {s.B for s in padded_replays} == {1, 4}      # padded ids keep no packing option
    reasons = {d.what: d.reason for d in plan.dropped}
    assert "batch-1 replay" in reasons["retnet/fla packing=packed"]


def test_layers_packed_dropped_on_cpu_without_interpret_and_for_torch_ports():
    plan = _plan(packing="both")
    assert not [p for p in plan.points if p.spec.option("packing")]
    reasons = {d.what: d.reason for d in plan.dropped}
    assert "cuda" in reasons["retnet/fla on cpu"]
    assert "no varlen" in reasons["retnet/torch packing=packed"]
    assert "no varlen" in reasons["mha/torch packing=packed"]
    # the padded replays of the ports are still planned
    assert {(p.spec.kernel, p.spec.B) for p in plan.points if p.spec.option("replay")} == {
        ("retnet", 1), ("retnet", 4), ("mha", 1), ("mha", 4)}


@pytest.mark.parametrize("overrides, fragment", [
    (dict(utterances=0), "--utterances"),
    (dict(level="model"), "--level layer"),
    (dict(batch="1"), "batch size > 1"),
    (dict(backend="torch"), "--backend fla"),
    (dict(kernels="softmax,mha"), "needs an fla layer"),
    (dict(packing="ragged"), "packed"),
])
def test_layers_packed_bad_combinations_are_usage_errors(overrides, fragment):
    with pytest.raises(UsageError, match=fragment):
        _plan(**{"packing": "packed", **overrides})


def test_layers_packed_cli_refuses_with_one_line_and_exit_2():
    p = subprocess.run([sys.executable, "-m", "profiler", "sweep", "--level", "layer", "--device", "cpu",
                        "--utterances", "8", "--batch", "8", "--packing", "packed", "--backend", "torch",
                        "--dry-run"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--backend fla" in lines[0] and "Traceback" not in p.stderr
