"""Device time and call latency (issue 11 item 2): series, launch-bound statements, both crossovers,
first-call cost and the gate's default metric, on synthetic new-schema CUDA records modelled on the
H200 table (``synth_run.make_cuda_run``) and on old single-timing records."""

from __future__ import annotations

import re

import pytest

from profiler.analysis.compare import compare_runs
from profiler.analysis.gates import RuleSet, parse_rule
from profiler.analysis.launch import LaunchBound, LaunchPoint
from profiler.analysis.series import quantity_label
from profiler.analysis.summary import analyze
from profiler.core.records import PointRecord, PointSpec, Timing
from profiler.report.text import launch_text
from profiler.store.runs import RunDir


@pytest.fixture(scope="module")
def cuda_run(synth_module, tmp_path_factory):
    return synth_module.make_cuda_run(tmp_path_factory.mktemp("cuda") / "two")


@pytest.fixture(scope="module")
def cuda_analysis(cuda_run):
    return analyze(RunDir.open(cuda_run).load())


def _series(a, kernel, calls=False):
    return next(s for s in (a.call_series if calls else a.series) if s.key.kernel == kernel)


def test_two_parallel_series_with_their_quantities(cuda_analysis):
    a = cuda_analysis
    assert a.two_timings and len(a.series) == len(a.call_series) == 2
    ret, ret_call = _series(a, "retnet"), _series(a, "retnet", True)
    assert ret.quantity == "device time" and ret_call.quantity == "call latency"
    assert ret.metric == "latency" and ret_call.metric == "call_latency"
    # device time ~ the model, call latency ~ device + host
    assert ret.at(1024).median_s == pytest.approx(0.0207e-3, rel=0.03)
    assert ret_call.at(1024).median_s == pytest.approx(0.6207e-3, rel=0.03)
    # device time of retnet is near-linear, call latency is flat-ish (host-bound): different exponents
    assert a.fits[ret.key].slope.slope > 0.7 and a.call_fits[ret.key].slope.slope < 0.5


def test_launch_bound_detection_and_statement(cuda_analysis):
    a = cuda_analysis
    ret = a.launch_for(_series(a, "retnet").key)
    bound = [p.T for p in ret.points if p.launch_bound]
    assert bound == [1024, 2048, 4096, 8192, 16384, 32768]          # 64k: 0.38 ms of 0.60 ms -> device-bound
    assert 32768 < ret.boundary_T < 65536
    text = launch_text(ret)
    m = re.fullmatch(r"launch-bound below T~(\d+)k: host overhead ([\d.]+)-([\d.]+) ms", text)
    assert m, text
    assert 33 <= int(m.group(1)) <= 64
    assert float(m.group(2)) == pytest.approx(0.24, abs=0.02) and float(m.group(3)) == pytest.approx(0.6, abs=0.02)
    sdpa = a.launch_for(_series(a, "softmax").key)
    assert [p.T for p in sdpa.points if p.launch_bound] == [1024, 2048]
    assert launch_text(sdpa).startswith("launch-bound below T~")


def test_launch_bound_statement_forms():
    k = object()
    every = LaunchBound(k, (LaunchPoint(1024, 1e-5, 5e-4), LaunchPoint(2048, 2e-5, 5e-4)))
    assert launch_text(every) == "launch-bound at every measured T (1,024..2,048): host overhead 0.48-0.49 ms"
    none = LaunchBound(k, (LaunchPoint(1024, 4e-4, 5e-4),))
    assert launch_text(none).startswith("not launch-bound at any measured T") and not none.any
    gaps = LaunchBound(k, (LaunchPoint(1024, 4e-4, 5e-4), LaunchPoint(2048, 1e-5, 5e-4)))
    assert launch_text(gaps).startswith("launch-bound at T=2,048:") and gaps.boundary_T is None


def test_both_crossovers(cuda_analysis):
    a = cuda_analysis
    key = _series(a, "retnet").key
    dev, call = a.comparison_for(key), a.call_comparison_for(key)
    assert dev.latency.kind == "at" and 2048 < dev.latency.T_star < 4096          # RetNet beats SDPA from T~4k
    assert call.latency.kind == "at" and 8192 < call.latency.T_star < 16384       # late on call latency
    assert call.latency.T_star > 2 * dev.latency.T_star
    assert dev.max_speedup[1] == 65536 and dev.max_speedup[0] == pytest.approx(25, rel=0.1)   # ~24x at 64k


def test_first_call_cost_per_series(cuda_analysis):
    a = cuda_analysis
    fc = a.first_calls_for(_series(a, "retnet").key)
    assert fc.max_s == 32.0 and fc.max_T == 1024 and fc.cache_warm is False
    assert a.first_calls_for(_series(a, "softmax").key).cache_warm is None


def test_report_shows_both_timings(cuda_run, tmp_path):
    from profiler.report.html import render_run

    out = render_run(cuda_run, out=tmp_path / "r.html")
    html = out.read_text()
    assert "device time: faster from T*≈" in html and "call latency: faster from T*≈" in html
    assert re.search(r"launch-bound below T~\d+k: host overhead", html)
    assert "<th>call latency</th><th>host overhead</th><th>launch-bound</th>" in html
    assert "First-call cost" in html and "compile cache" in html and "cold" in html
    assert "Faster than the baseline in call latency" in html
    svg = (tmp_path / "figures" / "latency.svg").read_text()
    assert svg.count("stroke-dasharray") >= 2          # call latency drawn dashed beside solid device time
    roof = (tmp_path / "figures" / "roofline.svg").read_text()
    assert "bfloat16" in roof


def test_old_single_timing_records_are_labelled_and_have_no_call_series(synthetic_run):
    a = analyze(RunDir.open(synthetic_run).load())
    assert not a.two_timings and a.call_series == [] and a.launch == [] and a.first_calls == []
    old = PointRecord(PointSpec("softmax", "sdpa", device="cuda"), "ok", timing=Timing((1e-4,) * 5, "cuda_event"))
    assert quantity_label(old) == "latency (old single timing)"
    assert quantity_label(PointRecord(PointSpec("softmax", "sdpa"), "ok", timing=Timing((1e-4,), "perf_counter_ns"))) \
        == "call latency"


def test_gate_defaults_to_device_time_on_cuda(synth_module, tmp_path):
    base = RunDir.open(synth_module.make_cuda_run(tmp_path / "base", seed=1)).load()
    slower_host = RunDir.open(synth_module.make_cuda_run(tmp_path / "host", seed=2, call_extra_s=0.3e-3)).load()
    slower_gpu = RunDir.open(synth_module.make_cuda_run(tmp_path / "gpu", seed=3, device_scale=1.3)).load()
    # device time regressed 30%: the default rules catch it on `latency`
    res = compare_runs(base, slower_gpu, RuleSet.parse(), n_boot=300)
    assert {c.metric for c in res.regressions} == {"latency"} and len(res.regressions) == 14
    assert not any(c.metric == "call_latency" for c in res.checks)       # off unless a rule names it
    # only the host got slower: device time unchanged, the default gate passes
    res = compare_runs(base, slower_host, RuleSet.parse(), n_boot=300)
    assert res.passed and not res.regressions
    # ... and a call-latency rule catches it
    res = compare_runs(base, slower_host, RuleSet.parse(["call_latency:+5%"]), n_boot=300)
    assert res.regressions and {c.metric for c in res.regressions} == {"call_latency"}
    assert all("call latency x" in c.message for c in res.regressions)


def test_call_latency_rule_parses_and_scopes():
    r = parse_rule("call_latency:+5%@kernel=retnet")
    assert r.metric == "call_latency" and r.rel == pytest.approx(0.05) and str(r) == "call_latency:+5%@kernel=retnet"


def test_gate_does_not_compare_across_quantities(synth_module, tmp_path):
    """An old single-timing CUDA baseline against a device-time candidate is listed, never gated."""
    import dataclasses

    from profiler.store.runs import LoadedRun

    new = RunDir.open(synth_module.make_cuda_run(tmp_path / "new")).load()
    old_recs = [dataclasses.replace(r, timing=dataclasses.replace(r.timing, quantity="", method=""),
                                    call_latency=None) for r in new.records]
    old = LoadedRun(new.path, new.manifest, old_recs, [])
    res = compare_runs(old, new, RuleSet.parse(), n_boot=200)
    assert not any(c.metric == "latency" for c in res.checks)
    assert any("baseline measured latency (old single timing), candidate device time" in n.reason
               for n in res.not_compared)


def test_export_carries_both_timings(cuda_run, tmp_path):
    import csv

    from profiler.report.export import export_run

    rows = list(csv.DictReader(open(export_run(cuda_run, out=tmp_path / "p.csv"))))
    r = next(x for x in rows if x["kernel"] == "retnet" and x["T"] == "1024")
    assert r["quantity"] == "device_time" and r["timing_method"] == "cuda_graph"
    assert float(r["call_median_s"]) == pytest.approx(0.6207e-3, rel=0.03)
    assert float(r["host_overhead_s"]) == pytest.approx(0.6e-3, rel=0.05) and r["launch_bound"] == "True"
    assert float(r["first_call_s"]) == 32.0 and r["cache_warm"] == "False"
