"""Issue 20: the report shows each run's conditions and marks throttled and re-measured points."""

from __future__ import annotations

import dataclasses

import numpy as np

from profiler.analysis.series import point_flags
from profiler.core.records import (
    Conditions,
    Manifest,
    Memory,
    PointRecord,
    PointSpec,
    Timing,
)
from profiler.report.html import _env, load_analysis, run_context
from profiler.store.runs import RunDir


def _rec(T: int, cond: Conditions | None) -> PointRecord:
    x = np.random.default_rng(T).lognormal(np.log(1e-3 * T / 256), 0.01, 20)
    return PointRecord(PointSpec("retnet", "torch", device="cuda", dtype="bfloat16", T=T), "ok",
                       timing=Timing(tuple(map(float, x)), "cuda_event"), memory=Memory(1000, "test"),
                       worker={"device_name": "NVIDIA Fake H200", "device_type": "cuda"}, conditions=cond)


def _cond(sm: int, temp: int, **kw) -> Conditions:
    s = {"sm_clock_mhz": sm, "mem_clock_mhz": 3201, "temp_c": temp, "power_w": 120.0,
         "throttle": list(kw.get("throttle_reasons", ()))}
    return Conditions("cuda", s, s, (), l2="cold", cooldown_s=0.5, clocks_locked=False, **kw)


def test_conditions_per_run_and_flagged_points(tmp_path):
    hot = _cond(1410, 88, throttled=True, throttle_reasons=("hw_thermal_slowdown",), remeasured=True,
                first_throttle_reasons=("hw_thermal_slowdown",))
    again = dataclasses.replace(_cond(1980, 60), remeasured=True, first_throttle_reasons=("sw_power_cap",))
    recs = [_rec(256, _cond(1980, 55)), _rec(512, again), _rec(1024, hot), _rec(2048, None)]   # last: an old record
    man = Manifest(run_id="cond", created_at="2026-12-04T00:00:00+00:00", scenario={}, environment={})
    run = RunDir.create(tmp_path / "cond", man)
    for r in recs:
        run.append(r)
    assert point_flags(recs[0]) == ()
    assert any("measured while throttled: hw_thermal_slowdown" in f for f in point_flags(recs[2]))
    assert any("re-measured after throttling (sw_power_cap)" in f for f in point_flags(recs[1]))

    a = load_analysis(tmp_path / "cond")
    c = a.conditions
    assert c.points == 3 and c.ranges["sm_clock_mhz"] == (1410, 1980) and c.ranges["temp_c"] == (55, 88)
    assert c.l2 == ("cold",) and c.cooldown_s == (0.5,)
    assert c.remeasured == (recs[1].id, recs[2].id) and c.throttled == ((recs[2].id, ("hw_thermal_slowdown",)),)
    html = _env().get_template("report.html.j2").render(title="t", version="0", runs=[run_context(a)], figures=[],
                                                        figure_notes={})   # the real template, figures skipped
    assert "Conditions of measurement" in html and "1410 – 1980 MHz" in html
    assert "THROTTLED (not gated on)" in html and "measured while throttled: hw_thermal_slowdown" in html
