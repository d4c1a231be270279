"""Decision logic on synthetic runs with known answers; matching, environments, baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gate_helpers import ENV, lognormal, record, spec

from profiler.analysis.compare import compare_runs
from profiler.analysis.gates import RuleSet
from profiler.core.errors import UsageError
from profiler.core.stats import holm_adjust
from profiler.store.baseline import load_side, save_baseline


def _verdict(res, metric="latency"):
    return [c.verdict for c in res.checks if c.metric == metric]


@pytest.mark.parametrize("shift, expected", [(1.00, "pass"), (1.03, "pass"), (1.10, "regression"), (1.50, "regression")])
def test_known_shifts(make_run, shift, expected):
    b = make_run("b", [record(spec(), lognormal(1, n=80))])
    c = make_run("c", [record(spec(), lognormal(2, n=80, median=1e-3 * shift))])
    res = compare_runs(load_side(b), load_side(c), statistic="median")   # symmetric synthetic noise
    assert _verdict(res) == [expected]
    assert res.exit_code == (1 if expected == "regression" else 0)
    check = res.checks[[x.metric for x in res.checks].index("latency")]
    if expected == "regression":
        assert check.ci_low > 1.05          # whole interval beyond the threshold
    assert check.ci_low < shift * 1.02 and check.ci_high > shift / 1.02


def _heavy(seed, n=100, median=1e-3):
    rng = np.random.default_rng(seed)
    x = rng.lognormal(np.log(median), 0.03, n)
    outliers = rng.random(n) < 0.15
    x[outliers] *= 1 + rng.pareto(1.5, outliers.sum()) * 2   # preemption spikes, infinite variance
    return x


def test_heavy_tailed_noise_no_false_alarm_but_detects_large_shift(make_run):
    base = [record(spec(T=T), _heavy(T)) for T in (256, 512)]
    same = [record(spec(T=T), _heavy(T + 7)) for T in (256, 512)]
    slow = [record(spec(T=T), _heavy(T + 9, median=1.5e-3)) for T in (256, 512)]
    b, c1, c2 = make_run("b", base), make_run("c1", same), make_run("c2", slow)
    assert _verdict(compare_runs(load_side(b), load_side(c1))) == ["pass", "pass"]
    assert _verdict(compare_runs(load_side(b), load_side(c2))) == ["regression", "regression"]


def test_holm_correction_applied_across_family(make_run):
    Ts = [2**k for k in range(8, 16)]
    base = [record(spec(T=T), lognormal(T, n=30, sigma=0.05)) for T in Ts]
    cand = [record(spec(T=T), lognormal(T + 1, n=30, sigma=0.05, median=1.12e-3)) for T in Ts]
    res = compare_runs(load_side(make_run("b", base)), load_side(make_run("c", cand)),
                       RuleSet.parse(["latency:+5%"], defaults=False))
    lat = [c for c in res.checks if c.metric == "latency"]
    np.testing.assert_allclose([c.p_adjusted for c in lat], holm_adjust([c.p_value for c in lat]))
    for c in lat:
        assert (c.verdict == "regression") == (c.p_adjusted < res.alpha)
    # at least one point is significant alone but not after the correction
    assert any(c.p_value < res.alpha <= c.p_adjusted for c in lat)


def test_missing_points_and_statuses_are_reported(make_run):
    base = [record(spec(T=1024), lognormal(1)), record(spec(T=2048), lognormal(2)),
            record(spec(T=4096), lognormal(3)), record(spec(T=8192), lognormal(4)),
            record(spec(T=512, interpret=True), [0.5])]
    cand = [record(spec(T=1024), lognormal(5)), record(spec(T=2048), None, status="oom", reason="OOM"),
            record(spec(T=4096), None, status="skipped", reason="budget"), record(spec(T=16384), lognormal(6)),
            record(spec(T=512, interpret=True), [0.9])]
    res = compare_runs(load_side(make_run("b", base)), load_side(make_run("c", cand)))
    assert res.missing_in_candidate == [spec(T=8192).id]
    assert res.missing_in_baseline == [spec(T=16384).id]
    reasons = {n.subject: n.reason for n in res.not_compared}
    assert "interpreted" in reasons[spec(T=512, interpret=True).id]
    assert "skipped" in reasons[spec(T=4096).id]
    status = [c for c in res.checks if c.metric == "status"]
    assert [(c.subject, c.verdict) for c in status] == [(spec(T=2048).id, "regression")]
    assert res.exit_code == 1
    ok_only = compare_runs(load_side(make_run("b2", base[:1] + base[3:4])), load_side(make_run("c2", cand[:1])),
                           fail_on_missing=True)
    assert ok_only.regressions == [] and ok_only.exit_code == 1


def test_environment_mismatch_refused_unless_allowed(make_run):
    b = make_run("b", [record(spec(), lognormal(1))])
    other = dict(ENV, cpu_model="Intel Xeon", git_sha="def456", hostname="box2")
    c = make_run("c", [record(spec(), lognormal(2))], env=other)
    with pytest.raises(UsageError, match="cpu_model"):
        compare_runs(load_side(b), load_side(c))
    res = compare_runs(load_side(b), load_side(c), allow_env_mismatch=True)
    assert [k for k, _, _ in res.env_differences] == ["cpu_model"]    # git sha / host are not fingerprint
    same_cpu = make_run("d", [record(spec(), lognormal(3))], env=dict(ENV, git_sha="zzz", hostname="other"))
    assert compare_runs(load_side(b), load_side(same_cpu)).env_differences == []


def test_memory_energy_and_slope(make_run):
    Ts = (1024, 2048, 4096, 8192)
    base = [record(spec(T=T), lognormal(T, median=1e-3 * T / 1024), peak=10_000_000, energy=2.0) for T in Ts]
    cand = [record(spec(T=T), lognormal(T + 1, median=1e-3 * (T / 1024) ** 1.5), peak=10_000_000 + (5000 if T == 8192 else 1000),
                   energy=2.5 if T == 1024 else 2.1) for T in Ts]
    res = compare_runs(load_side(make_run("b", base)), load_side(make_run("c", cand)),
                       RuleSet.parse(["latency:off"]))
    mem = {c.subject: c.verdict for c in res.checks if c.metric == "peak_memory"}
    assert mem[spec(T=8192).id] == "regression" and mem[spec(T=1024).id] == "pass"   # 4 KiB tolerance
    energy = {c.subject: c.verdict for c in res.checks if c.metric == "energy"}
    assert energy[spec(T=1024).id] == "regression" and energy[spec(T=2048).id] == "pass"
    slope = [c for c in res.checks if c.metric == "slope"]
    assert len(slope) == 1 and slope[0].verdict == "regression" and slope[0].ratio == pytest.approx(0.5, abs=0.05)
    assert _verdict(res) == []


def test_calibration_normalization_cancels_machine_drift(make_run):
    b = make_run("b", [record(spec(), lognormal(1))], calibration={"matmul_flops_per_s": 1e11, "bandwidth_bytes_per_s": 1e10})
    c = make_run("c", [record(spec(), lognormal(2, median=1.2e-3))],
                 calibration={"matmul_flops_per_s": 1e11 / 1.2, "bandwidth_bytes_per_s": 1e10})
    assert _verdict(compare_runs(load_side(b), load_side(c))) == ["regression"]
    assert _verdict(compare_runs(load_side(b), load_side(c), normalize="calibration")) == ["pass"]
    assert _verdict(compare_runs(load_side(b), load_side(c), normalize="bandwidth")) == ["regression"]
    d = make_run("d", [record(spec(), lognormal(2))])
    with pytest.raises(UsageError, match="calibration"):
        compare_runs(load_side(b), load_side(d), normalize="calibration")


def test_baseline_file_round_trip_and_thinning(make_run, tmp_path):
    recs = [record(spec(T=T), lognormal(T, n=200), energy=1.5) for T in (1024, 2048)]
    run = make_run("b", recs, calibration={"matmul_flops_per_s": 5e10})
    out = save_baseline(run, tmp_path / "baselines" / "cpu.json", max_samples=50)
    data = json.loads(out.read_text())
    assert data["format"] == "serprof-baseline" and len(data["points"][0]["samples_s"]) == 50
    loaded = load_side(out)
    assert {r.id for r in loaded.records} == {r.id for r in recs}
    assert loaded.manifest.calibration == {"matmul_flops_per_s": 5e10}
    r0 = loaded.by_id()[recs[0].id]
    assert abs(np.median(r0.timing.samples_s) / np.median(recs[0].timing.samples_s) - 1) < 0.01
    res = compare_runs(loaded, load_side(run))
    assert res.passed and res.env_differences == []
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(UsageError, match="not a serprof baseline"):
        load_side(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_side(tmp_path / "nope")
