"""Multi-device honesty: a run measured on two GPU models is analysed per model, never averaged."""

from __future__ import annotations

import pytest

from profiler.analysis.devices import assign_models
from profiler.analysis.environment import device_memory_bytes
from profiler.analysis.summary import analyze
from profiler.core.records import PointRecord, PointSpec, Timing
from profiler.store.runs import RunDir


@pytest.fixture(scope="module")
def multi(tmp_path_factory, synth_module):
    path = synth_module.make_multi_device_run(tmp_path_factory.mktemp("multi") / "two-gpus")
    return analyze(RunDir.open(path).load())


def test_series_split_by_device_model(multi, synth_module):
    a100, h100 = synth_module.A100, synth_module.H100
    soft = {s.key.device_model: s for s in multi.series if s.key.kernel == "softmax"}
    assert set(soft) == {a100, h100}
    assert [p.T for p in soft[a100].points] == [512, 1024, 2048]
    assert [p.T for p in soft[h100].points] == [4096, 8192, 16384]
    # each model's own curve: 1e-9 T^2 on the A100, a quarter of it on the H100 (nothing averaged)
    assert soft[a100].at(2048).median_s == pytest.approx(1e-9 * 2048**2, rel=0.03)
    assert soft[h100].at(4096).median_s == pytest.approx(0.25 * 1e-9 * 4096**2, rel=0.03)
    # exponents per model are the true 2; one fit across both models would be dragged below it
    for s in soft.values():
        assert multi.fits[s.key].slope.slope == pytest.approx(2.0, abs=0.05)
    assert all(a100 in s.key.variant or h100 in s.key.variant for s in multi.series)
    assert a100 in soft[a100].key.facet_label


def test_comparisons_stay_within_a_model(multi, synth_module):
    by_model = {c.series.key.device_model: c for c in multi.comparisons}
    assert set(by_model) == {synth_module.A100, synth_module.H100}
    for model, c in by_model.items():
        assert c.baseline.key.device_model == model
    assert by_model[synth_module.A100].latency.kind == "never"
    h = by_model[synth_module.H100].latency
    assert h.kind == "at" and h.T_star == pytest.approx(10_000, rel=0.05)


def test_frontier_and_roofline_use_each_device_not_the_submit_host(multi, synth_module):
    mem = {f.key.device_model: f.device_memory_bytes for f in multi.frontiers}
    assert mem[synth_module.A100] == synth_module.MEMORY[synth_module.A100]
    assert mem[synth_module.H100] == synth_module.MEMORY[synth_module.H100]
    # the unattributed skipped point (its series ran on both models) never gets the login node's 1 TB
    assert mem[""] is None
    assert "submitting host" in multi.devices.info("").memory_source
    infos = {i.model: i for i in multi.devices.infos}
    assert infos[synth_module.H100].calibration["matmul_flops_per_s"] == 2e14
    # roofline fractions use each model's own calibration
    soft = {s.key.device_model: s for s in multi.series if s.key.kernel == "softmax"}
    for model, s in soft.items():
        p = s.points[-1]
        rp = next(r for r in multi.roofline if r.series_label == s.key.label and r.T == p.T)
        cal = infos[model].calibration["matmul_flops_per_s"]
        assert rp.frac_flops == pytest.approx(p.record.flops / p.median_s / cal)


def test_spec_sheet_peaks_per_record_device_name(multi, synth_module):
    from profiler.analysis.roofline import series_peaks

    for s in multi.series:
        if not s.key.device_model:
            continue
        sources = [p.source for p in series_peaks(s.key, None, multi.manifest.environment, multi.devices)]
        want = "A100 80GB" if s.key.device_model == synth_module.A100 else "H100 SXM"
        assert sources[-1] == f"spec sheet: {want}", sources


def test_single_model_runs_are_not_split(synthetic_run):
    a = analyze(RunDir.open(synthetic_run).load())
    assert not a.devices.multi and all(s.key.device_model == "" for s in a.series)


def test_unnamed_records_inherit_an_unambiguous_model():
    def rec(kernel, T, model=None, status="ok"):
        spec = PointSpec(kernel=kernel, backend="torch", T=T)
        if status != "ok":
            return PointRecord(spec, status, reason="budget")
        return PointRecord(spec, "ok", timing=Timing((0.1,), "perf_counter_ns"), worker={"device_name": model})

    recs = [rec("retnet", 512, "GPU A"), rec("retnet", 1024, status="skipped"), rec("gsa", 512, "GPU B")]
    models = assign_models(recs)
    assert models[recs[1].id] == "GPU A" and models[recs[2].id] == "GPU B"
    assert set(assign_models(recs[:2]).values()) == {""}          # one model: nothing is tagged


def test_cpu_frontier_uses_host_memory_bytes():
    env = {"host_memory_bytes": 24 * 2**30, "memory": {"memory_total_bytes": 1}, "cuda_devices": []}
    assert device_memory_bytes(env, "cpu") == 24 * 2**30
    assert device_memory_bytes({"host": {"memory_total_bytes": 8e9}}, "cpu") == 8e9   # older fingerprints
