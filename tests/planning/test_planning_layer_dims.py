"""Layer dims (issue 16): ``--heads`` / ``--head-dim`` mean H heads of D dims each at every level; a
layer is built with model width ``PointSpec.hidden`` = H * D; with no ``--head-dim`` a layer sweep keeps
the study's width 1024 (D = 1024 / H) and a kernel sweep D = 64."""

from __future__ import annotations

from pathlib import Path

from profiler.core.records import MeasureSettings, PointSpec
from profiler.planning.points import make_plan
from profiler.planning.scenario import SweepSpec, build_spec

ROOT = Path(__file__).resolve().parents[2]
BIG = MeasureSettings(memory_budget_bytes=1 << 50)


def _plan(**kw):
    return make_plan(SweepSpec(device="cpu", lengths=(64,), causal="causal", backends=("torch",), settings=BIG, **kw))


def test_layer_default_is_the_study_width_split_over_the_heads():
    specs = [p.spec for p in _plan(level="layer", kernels=("retnet", "mha"), heads=(2, 4)).points]
    assert {(s.H, s.D, s.hidden) for s in specs} == {(2, 512, 1024), (4, 256, 1024)}
    assert "layer/retnet/torch/cpu/float32/fwd/B1/T64/H4/D256/causal" in {s.id for s in specs}


def test_head_dim_is_per_head_at_the_layer_level_and_builds_that_width():
    sweep = build_spec(None, {"level": "model", "kernels": "gsa", "heads": "2", "head_dim": "32", "device": "cpu",
                              "lengths": "64", "backends": "torch"})
    (p,) = make_plan(sweep).points
    assert (p.spec.H, p.spec.D, p.spec.hidden) == (2, 32, 64)
    # the estimate follows the width: inputs [B, T, hidden] (4 heads of 32 = twice as wide, more bytes)
    (wide,) = make_plan(build_spec(None, {"level": "model", "kernels": "gsa", "heads": "4", "head_dim": "32",
                                          "device": "cpu", "lengths": "64", "backends": "torch"})).points
    assert wide.spec.hidden == 128 and wide.est_bytes > p.est_bytes


def test_kernel_level_default_and_ids_unchanged():
    (p,) = _plan(kernels=("retnet",)).points
    assert (p.spec.D, p.spec.id) == (64, "kernel/retnet/torch/cpu/float32/fwd/B1/T64/H4/D64/causal")
    assert PointSpec("retnet", "torch").id == "kernel/retnet/torch/cpu/float32/fwd/B1/T1024/H4/D64/causal"


def test_paper_scenario_builds_the_study_layers_at_width_1024():
    sweep = build_spec(ROOT / "scenarios" / "paper.toml", {"device": "cpu", "audio": "1min"})
    specs = [p.spec for p in make_plan(sweep).points]
    assert specs and {(s.H, s.D, s.hidden) for s in specs} == {(4, 256, 1024)}



def test_dry_run_says_the_width_each_layer_is_built_with(capsys):
    from profiler.cli import main

    try:
        main(["sweep", "--level", "layer", "--kernels", "retnet", "--heads", "2,4", "--head-dim", "32",
              "--lengths", "64", "--device", "cpu", "--dry-run"])
    except SystemExit as exc:
        assert not exc.code
    out = " ".join(capsys.readouterr().out.split())
    assert "layer dims: 2 heads x D 32 = hidden 64; 4 heads x D 32 = hidden 128" in out
    assert "layer/retnet/torch/cpu/float32/fwd/B1/T64/H2/D32/causal" in out
