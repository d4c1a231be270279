"""The wall-time estimate of a planned sweep (``sweep --dry-run``; issue 22)."""

from __future__ import annotations

import json
from dataclasses import replace

from profiler.cli import main
from profiler.planning.estimate import (
    LONG_ON_CPU_S,
    estimate,
    long_cpu_run_warning,
    point_seconds,
)
from profiler.planning.points import make_plan
from profiler.planning.scenario import build_spec


def _plan(**values):
    return make_plan(build_spec(None, {"device": "cpu", "kernels": "retnet,softmax", "backends": "torch,sdpa",
                                       "lengths": "256,1k", **values}))


def test_estimate_follows_the_settings():
    base = estimate(_plan())
    assert base.points == len(_plan().runnable()) and base.total_s > base.points_s > 0
    longer = estimate(_plan(time_budget_s=8.0, max_reps=100000))
    assert longer.points_s > base.points_s + base.points * 4.0          # the budget dominates
    assert estimate(_plan(verify=False)).points_s < base.points_s
    assert estimate(_plan(processes=6)).startup_s > estimate(_plan(processes=1)).startup_s
    assert estimate(_plan(), report=False).report_s == 0
    cal = {"matmul_flops_per_s": 1e9, "bandwidth_bytes_per_s": 1e8}      # a much slower machine
    slow = estimate(_plan(lengths="4k", time_budget_s=30.0, max_reps=5), cal)
    assert slow.rates_from == "calibration" and slow.points_s > estimate(_plan(lengths="4k", time_budget_s=30.0,
                                                                                  max_reps=5)).points_s


def test_a_point_costs_at_least_its_budget_and_warmups():
    plan = _plan(processes=3)
    s = plan.sweep.settings
    p = plan.runnable()[0]
    s = replace(s, max_reps=100000)
    assert point_seconds(p, s, (1e11, 1e10), energy_meter=False) >= s.time_budget_s + 3 * s.warmup_s
    assert point_seconds(p, s, (1e11, 1e10), energy_meter=True) > point_seconds(p, s, (1e11, 1e10), energy_meter=False)


def test_gpu_scenario_on_cpu_warns_only_when_long():
    big = make_plan(build_spec(None, {"device": "auto", "kernels": "softmax", "backends": "naive",
                                      "lengths": "1k..16k", "time_budget_s": 60.0}))
    if any(p.device != "cpu" for p in big.runnable()):
        return    # a GPU machine: auto is not the CPU here
    est = estimate(big)
    assert est.total_s > LONG_ON_CPU_S and "device 'auto'" in long_cpu_run_warning(big, est)
    asked = replace(big, requested_device="cpu")
    assert long_cpu_run_warning(asked, est) is None
    assert long_cpu_run_warning(_plan(), estimate(_plan())) is None


def test_dry_run_prints_the_estimate(capsys):
    try:
        main(["sweep", "--dry-run", "--device", "cpu", "--kernels", "retnet", "--lengths", "256,512"])
    except SystemExit as e:
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert "estimated wall time:" in out
    try:
        main(["sweep", "--dry-run", "--json", "--device", "cpu", "--kernels", "retnet", "--lengths", "256,512"])
    except SystemExit as e:
        assert e.code in (0, None)
    data = json.loads(capsys.readouterr().out)
    assert data["estimate"]["total_s"] > 0
