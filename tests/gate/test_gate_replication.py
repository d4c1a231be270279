"""The gate on replicated measurements: processes as the unit of replication, the machine's noise
profile, history of runs, busy-machine detection (issue 21).

Synthetic data follow the two-level model the gate assumes (run effect + process effect + sample
noise, log-normal), with the between-process effect much larger than the within-process noise, as
measured on a shared 2-core runner: a gate built on pooled samples alone flags such A/A pairs.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from gate_helpers import ENV, spec, write_run

from profiler.analysis.compare import compare_runs
from profiler.analysis.gates import RuleSet
from profiler.analysis.noise import estimate_profile
from profiler.cli import main
from profiler.core.errors import UsageError
from profiler.core.noise import NoiseClass, NoiseProfile, size_class
from profiler.core.records import Manifest, Memory, PointRecord, Timing
from profiler.core.stats import (
    VarianceComponent,
    history_ratio,
    moderated_variance,
    one_sided_p,
    replicated_ratio,
    welch_df,
)
from profiler.report.gate import to_json, to_markdown
from profiler.store.history import load_history
from profiler.store.noise import load_noise_profile, save_noise_profile
from profiler.store.runs import LoadedRun

LAT = RuleSet.parse(["latency:+5%"], defaults=False)


def _groups(rng, *, median=1e-3, k=3, n=20, process_sd=0.04, sample_sd=0.01, run_shift=0.0):
    return [tuple(rng.lognormal(math.log(median) + run_shift + rng.normal(0, process_sd), sample_sd, n))
            for _ in range(k)]


def _timing(groups, cpu_share=None):
    extra = {}
    if cpu_share is not None:
        extra = {"cpu_s": cpu_share * 2.0, "cpu_wall_s": 1.0, "threads": 2}
    return Timing(tuple(x for g in groups for x in g), "perf_counter_ns", process_counts=tuple(len(g) for g in groups),
                  **extra)


def _run(name, timings, created="2026-01-01T00:00:00+00:00"):
    recs = [PointRecord(spec(T=T), "ok", timing=t, memory=Memory(1000, "test")) for T, t in timings.items()]
    return LoadedRun(name, Manifest(run_id=name, created_at=created, scenario={}, environment=dict(ENV)), recs, [])


QUIET = NoiseProfile((NoiseClass(0.0, math.inf, process_sd=0.015, process_df=40, run_sd=0.005, run_df=20),))
PROFILE = NoiseProfile((NoiseClass(0.0, math.inf, process_sd=0.04, process_df=40, run_sd=0.01, run_df=20),),
                       runs=8, processes=3, path="test-profile.json")


# --------------------------------------------------------------------------- statistics

def test_between_process_spread_widens_the_interval_beyond_pooled_samples():
    rng = np.random.default_rng(1)
    b, c = _groups(rng), _groups(rng)
    est = replicated_ratio(b, c, process_sd=0.0, process_df=0.0)
    pooled_b, pooled_c = np.concatenate(b), np.concatenate(c)
    # the within-sample standard error of the log medians is far smaller than the process effect
    within = math.hypot(0.01 * 1.25 / math.sqrt(pooled_b.size), 0.01 * 1.25 / math.sqrt(pooled_c.size))
    assert est.log_se > 5 * within
    assert est.processes_baseline == est.processes_candidate == 3 and est.df < 10
    assert est.ci_low < est.ratio < est.ci_high


def test_moderated_variance_and_welch_df():
    m = moderated_variance(0.04, 2, 0.01, 8)
    assert m.var == pytest.approx((8 * 0.01 + 2 * 0.04) / 10) and m.df == 10
    assert moderated_variance(0.04, 0, 0.01, 8) == VarianceComponent(0.01, 8)
    # two equal variances with df 5 each: Welch gives 10
    assert welch_df([VarianceComponent(1.0, 5), VarianceComponent(1.0, 5)]) == pytest.approx(10)
    assert math.isinf(welch_df([VarianceComponent(1.0, math.inf)]))


def test_t_p_value_is_more_conservative_than_normal_with_few_df():
    base = replicated_ratio([[1.0] * 5, [1.1] * 5], [[1.2] * 5, [1.3] * 5], process_sd=0.05, process_df=2)
    p_t = one_sided_p(base, 1.05)
    p_norm = one_sided_p(type(base)(**{**base.__dict__, "df": math.inf}), 1.05)
    assert p_t > p_norm


def test_history_ratio_is_a_prediction_interval_from_the_runs_spread():
    centres = [math.log(1e-3) + d for d in (0.0, 0.02, -0.02, 0.01, -0.01)]
    cand = [[1e-3 * math.exp(0.02)] * 10] * 3
    est = history_ratio(centres, cand, prior_sd=0.0, prior_df=0.0)
    s = np.std(centres, ddof=1)
    assert est.log_se == pytest.approx(s * math.sqrt(1 + 1 / 5))
    assert est.df == 4 and est.processes_baseline == 5
    with pytest.raises(ValueError):
        history_ratio(centres[:1], cand, prior_sd=0.01, prior_df=5)


# --------------------------------------------------------------------------- the gate

def test_aa_pairs_with_process_effects_do_not_cry_wolf_but_old_pooling_would():
    rng = np.random.default_rng(7)
    new_alarms = old_alarms = 0
    for _ in range(60):
        a = _run("a", {T: _timing(_groups(rng, process_sd=0.06)) for T in (256, 1024, 4096)})
        b = _run("b", {T: _timing(_groups(rng, process_sd=0.06)) for T in (256, 1024, 4096)})
        new_alarms += not compare_runs(a, b, LAT, noise=PROFILE).passed
        flat = lambda run: LoadedRun(run.path, run.manifest, [PointRecord(r.spec, "ok", timing=Timing(r.timing.samples_s, "x"))
                                                               for r in run.records], [])
        old_alarms += not compare_runs(flat(a), flat(b), LAT, noise=NoiseProfile((NoiseClass(0, math.inf, 0.0, math.inf, 0.0, math.inf),))).passed
    assert new_alarms <= 1
    assert old_alarms >= 10          # samples of one process pooled: the interval is far too narrow


def test_a_15_percent_slowdown_is_detected_with_three_processes():
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(30):
        a = _run("a", {T: _timing(_groups(rng, process_sd=0.015)) for T in (256, 1024)})
        c = _run("c", {T: _timing(_groups(rng, process_sd=0.015, median=1.15e-3)) for T in (256, 1024)})
        res = compare_runs(a, c, LAT, noise=QUIET)
        hits += any(ch.verdict == "regression" for ch in res.checks)
    assert hits >= 27


def test_noise_above_the_threshold_is_unclear_never_regression():
    rng = np.random.default_rng(5)
    noisy = NoiseProfile((NoiseClass(0.0, math.inf, process_sd=0.05, process_df=40, run_sd=0.05, run_df=20),),
                         path="noisy.json")
    a = _run("a", {256: _timing(_groups(rng, process_sd=0.001))})
    c = _run("c", {256: _timing(_groups(rng, process_sd=0.001, median=2e-3))})   # x2: would be a regression
    res = compare_runs(a, c, LAT, noise=noisy)
    (check,) = res.checks
    assert check.verdict == "unclear" and "exceeds the rule's +5.0%" in check.message
    assert res.passed
    loose = compare_runs(a, c, RuleSet.parse(["latency:+50%"], defaults=False), noise=noisy)
    assert loose.checks[0].verdict == "regression"        # a threshold above the noise judges again


def test_a_busy_side_is_unclear_with_the_cpu_shares():
    rng = np.random.default_rng(9)
    a = _run("a", {256: _timing(_groups(rng), cpu_share=0.98)})
    c = _run("c", {256: _timing(_groups(rng, median=1.5e-3), cpu_share=0.55)})
    (check,) = compare_runs(a, c, LAT, noise=QUIET).checks
    assert check.verdict == "unclear" and "busy during the candidate run" in check.message and "55%" in check.message
    same = _run("c2", {256: _timing(_groups(rng, median=1.5e-3), cpu_share=0.97)})
    assert compare_runs(a, same, LAT, noise=QUIET).checks[0].verdict == "regression"


def test_verdict_outputs_carry_replication_noise_source_and_reasons():
    rng = np.random.default_rng(11)
    a = _run("a", {256: _timing(_groups(rng))})
    c = _run("c", {256: _timing(_groups(rng, median=1.3e-3))})
    res = compare_runs(a, c, LAT, noise=PROFILE)
    data = to_json(res)
    check = data["checks"][0]
    assert check["processes_baseline"] == 3 and check["replication"] == "3x20 vs 3x20"
    assert check["noise_sd"] == pytest.approx(PROFILE.classes[0].ratio_sd(3, 3))
    assert "test-profile.json" in data["method"]["noise_source"] and data["method"]["design"] == "two runs"
    md = to_markdown(res)
    assert "processes x samples" in md and "3x20 vs 3x20" in md and "Noise floor: noise profile test-profile.json" in md
    fallback = compare_runs(a, c, LAT)
    assert "fixed 1.0% fallback" in fallback.noise_source
    assert any("no noise profile" in w for w in fallback.warnings)


def test_history_spread_sets_the_interval(tmp_path):
    rng = np.random.default_rng(13)
    past = []
    for i in range(6):
        shift = rng.normal(0, 0.03)       # a large run effect: separate days
        recs = [PointRecord(spec(T=256), "ok", timing=_timing(_groups(rng, run_shift=shift, process_sd=0.005)),
                            memory=Memory(1000, "t"))]
        past.append(write_run(tmp_path / "hist" / f"r{i}", recs))
    # written out of order: history orders by manifest time, not by name
    runs = load_history(tmp_path / "hist", 10)
    assert len(runs) == 6
    cand = _run("c", {256: _timing(_groups(rng, run_shift=0.04, process_sd=0.005))})
    two = compare_runs(runs[-1], cand, LAT, noise=PROFILE)
    hist = compare_runs(runs[-1], cand, LAT, noise=PROFILE, history=runs, design="history of 6 runs")
    assert hist.checks[0].processes_baseline == 6 and hist.checks[0].df is not None
    assert hist.checks[0].ci_high - hist.checks[0].ci_low != pytest.approx(two.checks[0].ci_high - two.checks[0].ci_low)
    with pytest.raises(UsageError, match="--history"):
        load_history(tmp_path / "nope", 10)
    with pytest.raises(UsageError, match="--history-runs"):
        load_history(tmp_path / "hist", 1)


# --------------------------------------------------------------------------- noise profile

def test_profile_estimate_recovers_process_and_run_spread():
    rng = np.random.default_rng(17)
    runs = []
    for r in range(12):
        shift = rng.normal(0, 0.02)
        runs.append(_run(f"r{r}", {T: _timing(_groups(rng, median=1e-3 * T / 256, process_sd=0.04, run_shift=shift, k=4))
                                   for T in (256, 512, 1024)}))
    prof = estimate_profile(runs, source="synthetic")
    assert {(c.low_s, c.high_s) for c in prof.classes} == {size_class(1e-3), size_class(4e-3)}   # two decades
    assert sum(c.points for c in prof.classes) == 3
    pooled_p = np.sqrt(np.mean([c.process_sd ** 2 for c in prof.classes]))
    pooled_r = np.sqrt(np.mean([c.run_sd ** 2 for c in prof.classes]))
    assert 0.03 < pooled_p < 0.05
    assert 0.005 < pooled_r < 0.04
    assert prof.runs == 12 and prof.processes == 4


def test_profile_round_trips_and_bad_files_are_one_line_errors(tmp_path):
    path = save_noise_profile(PROFILE, tmp_path / "p" / "noise.json")
    back = load_noise_profile(path)
    assert back.classes == PROFILE.classes and back.path == str(path)
    bad = tmp_path / "bad.json"
    for text, needle in (("{", "cannot read"), ('{"format": "x"}', "not a serprof noise profile"),
                         ('{"format": "serprof-noise-profile", "schema_version": "1", "classes": []}', "schema_version"),
                         ('{"format": "serprof-noise-profile", "schema_version": 1, "classes": [{"low_s": -1}]}', "low_s")):
        bad.write_text(text)
        with pytest.raises(UsageError, match=needle):
            load_noise_profile(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_noise_profile(tmp_path / "missing.json")


def test_cli_calibrates_from_runs_and_the_gate_uses_the_profile(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SERPROF_NOISE_PROFILE", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(19)
    paths = []
    for i in range(4):
        recs = [PointRecord(spec(T=T), "ok", timing=_timing(_groups(rng)), memory=Memory(1000, "t")) for T in (256, 512)]
        paths.append(str(write_run(tmp_path / f"aa{i}", recs)))
    prof = tmp_path / "noise.json"
    with pytest.raises(SystemExit) as e:
        main(["gate-calibrate", *paths, "-o", str(prof)])
    assert e.value.code in (0, None)
    out = capsys.readouterr().out
    assert "noise profile written" in out and prof.is_file()
    with pytest.raises(SystemExit) as e:
        main(["gate", "-b", paths[0], "-c", paths[1], "--noise-profile", str(prof), "--json-out", str(tmp_path / "v.json")])
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert str(prof) in verdict["method"]["noise_source"]
    assert all(c["replication"] == "3x20 vs 3x20" for c in verdict["checks"] if c["metric"] == "latency")
    # the default location is found without the flag
    (tmp_path / ".serprof").mkdir()
    (tmp_path / ".serprof" / "noise-profile.json").write_text(prof.read_text())
    with pytest.raises(SystemExit):
        main(["gate", "-b", paths[0], "-c", paths[1], "--json-out", str(tmp_path / "v2.json")])
    assert "noise-profile.json" in json.loads((tmp_path / "v2.json").read_text())["method"]["noise_source"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["gate", "-b", paths[0], "-c", paths[1], "--noise-profile", str(tmp_path / "nope.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "--noise-profile" in err[0]


def test_baseline_file_keeps_the_process_groups_when_thinned(tmp_path):
    from profiler.store.baseline import load_baseline, save_baseline

    rng = np.random.default_rng(23)
    run = write_run(tmp_path / "run", [PointRecord(spec(T=256), "ok", timing=_timing(_groups(rng, n=40)),
                                                   memory=Memory(1000, "t"))])
    out = save_baseline(run, tmp_path / "b.json", max_samples=30)
    t = load_baseline(out).records[0].timing
    assert t.process_counts == (10, 10, 10) and len(t.samples_s) == 30
    full = load_baseline(save_baseline(run, tmp_path / "full.json")).records[0].timing
    assert full.process_counts == (40, 40, 40)


def test_slow_outlier_processes_are_set_aside_fast_ones_kept():
    from profiler.core.stats import slow_outliers_removed

    y = np.log([1.00, 1.01, 0.99, 1.02, 1.50, 1.00])
    assert np.allclose(np.exp(slow_outliers_removed(y)), [1.00, 1.01, 0.99, 1.02, 1.00])
    fast = np.log([1.00, 1.01, 0.99, 1.02, 0.60, 1.00])
    assert slow_outliers_removed(fast).size == 6                     # a fast process is never dropped
    assert slow_outliers_removed(np.log([1.0, 1.5, 1.0])).size == 3   # fewer than 4: all kept
    many = np.log([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0])       # at most a third is dropped
    assert slow_outliers_removed(many).size >= 6


def test_calibrate_refuses_an_unwritable_output_before_measuring(capsys):
    with pytest.raises(SystemExit) as e:
        main(["gate-calibrate", "-o", "/proc/no-such-dir/noise.json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("serprof: error: --out")
