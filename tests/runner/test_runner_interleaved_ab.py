"""Interleaved A/B runs of two git refs: an A/A run of this repo's HEAD through real subprocesses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from profiler.analysis.compare import compare_runs
from profiler.analysis.gates import RuleSet
from profiler.core.errors import UsageError
from profiler.runner.interleaved_ab import InterleavePlan, run_interleaved

REPO = Path(__file__).resolve().parents[2]


def test_bad_ref_and_plan_are_usage_errors():
    with pytest.raises(UsageError, match="not a commit"):
        run_interleaved(REPO, "no-such-ref-xyz", "HEAD", InterleavePlan.from_cli(["dial"], "", ["64"], 1, 1, 8,
                                                                                 rounds=1, reps=1))
    with pytest.raises(UsageError, match="--lengths"):
        InterleavePlan.from_cli(["dial"], "", ["long"], 1, 1, 8, rounds=1, reps=1)


@pytest.mark.long
def test_head_vs_head_interleaved_pools_samples_and_passes():
    plan = InterleavePlan.from_cli(["dial"], "", ["64"], 1, 1, 8, rounds=2, reps=4)
    a, b = run_interleaved(REPO, "HEAD", "HEAD", plan)
    assert a.manifest.notes["sha"] == b.manifest.notes["sha"]
    assert len(a.records[0].timing.samples_s) == 8 == len(b.records[0].timing.samples_s)
    # one fresh process per round and side: the samples keep which process they came from
    assert a.records[0].timing.process_counts == (4, 4) == b.records[0].timing.process_counts
    assert a.records[0].timing.cpu_share is not None
    res = compare_runs(a, b, RuleSet.parse(["latency:+50%"]), statistic="q10", runs_apart=0)
    assert res.passed and [c.metric for c in res.checks] == ["latency"]


@pytest.mark.long
def test_injected_slowdown_in_side_b_is_seen_by_the_interleaved_gate():
    plan = InterleavePlan.from_cli(["dial"], "", ["64"], 1, 1, 8, rounds=4, reps=6)
    a, b = run_interleaved(REPO, "HEAD", "HEAD", plan, env_b={"SERPROF_INJECT_SLOWDOWN": "0.5"})
    ratio = float(np.median(b.records[0].timing.samples_s) / np.median(a.records[0].timing.samples_s))
    assert ratio > 1.2          # +50% injected; a loaded machine adds noise on both sides


def test_child_takes_fixed_or_adaptive_sample_counts():
    """``reps`` fixes the samples per point; without it: at least min_reps, then until sample_s or max_reps."""
    import importlib.util

    from profiler.runner.interleaved_ab import CHILD
    spec = importlib.util.spec_from_file_location("_interleave_child_test", CHILD.rpartition(":")[0])
    child = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(child)
    point = [{"id": "dial", "kernel": "dial", "backend": "", "B": 1, "T": 8, "H": 1, "D": 8, "causal": True}]
    tree = str(Path(child.profiler.__file__).parents[1])

    def counts(**kw):
        out = child.measure(tree, 1, 0.0, points=point, **kw)
        assert len(out["controls"]["dial"]) == len(out["samples"]["dial"])
        return len(out["samples"]["dial"])

    assert counts(reps=4) == 4
    assert counts(reps=None, min_reps=3, max_reps=7, sample_s=0.0) == 3      # the budget is spent at once
    assert counts(reps=None, min_reps=3, max_reps=7, sample_s=60.0) == 7     # the cap ends it
