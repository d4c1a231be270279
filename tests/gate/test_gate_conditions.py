"""Issue 20: the gate never calls a regression on a point measured while its GPU throttled."""

from __future__ import annotations

import dataclasses

from gate_helpers import lognormal, record, spec

from profiler.analysis.compare import compare_runs
from profiler.core.records import Conditions
from profiler.store.baseline import load_side

HOT = Conditions("cuda", {"sm_clock_mhz": 1410, "throttle": ["hw_thermal_slowdown"]}, {}, (), True,
                 ("hw_thermal_slowdown",), True, ("hw_thermal_slowdown",), 2.0)
COOL = Conditions("cuda", {"sm_clock_mhz": 1980, "throttle": []}, {}, (), False)


def test_throttled_candidate_is_unclear_with_the_reason_not_a_regression(make_run):
    b = make_run("b", [dataclasses.replace(record(spec(), lognormal(1, n=80)), conditions=COOL)])
    slow = lognormal(2, n=80, median=1.5e-3)               # +50%: a regression if it were trusted
    c = make_run("c", [dataclasses.replace(record(spec(), slow), conditions=HOT)])
    res = compare_runs(load_side(b), load_side(c), statistic="median")
    check = next(x for x in res.checks if x.metric == "latency")
    assert check.verdict == "unclear" and res.exit_code == 0
    assert "candidate point was measured while throttled: hw_thermal_slowdown" in check.message
    assert "also after a cool-down" in check.message

    c2 = make_run("c2", [dataclasses.replace(record(spec(), slow), conditions=COOL)])
    res = compare_runs(load_side(b), load_side(c2), statistic="median")
    assert [x.verdict for x in res.checks if x.metric == "latency"] == ["regression"]   # the same data, cool


def test_throttled_baseline_is_refused_too(make_run):
    b = make_run("b", [dataclasses.replace(record(spec(), lognormal(1, n=80)), conditions=HOT)])
    c = make_run("c", [record(spec(), lognormal(2, n=80, median=1.5e-3))])     # old record: no conditions
    res = compare_runs(load_side(b), load_side(c), statistic="median")
    check = next(x for x in res.checks if x.metric == "latency")
    assert check.verdict == "unclear" and "baseline point was measured while throttled" in check.message
