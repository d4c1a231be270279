"""Fits, crossovers, baselines, frontier and roofline on synthetic data with known answers."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from profiler.analysis.crossover import (
    Baseline,
    Variant,
    choose_baseline,
    compare_all,
    crossover,
)
from profiler.analysis.environment import device_memory_bytes
from profiler.analysis.fits import fit_cost, fit_slope
from profiler.analysis.roofline import spec_peaks
from profiler.analysis.summary import analyze
from profiler.core.errors import UsageError
from profiler.report.text import crossover_text
from profiler.store.runs import RunDir


@pytest.fixture(scope="module")
def analysis(synthetic_run):
    return analyze(RunDir.open(synthetic_run).load())


def _fit(analysis, kernel, backend="torch", causal=True):
    return next(f for k, f in analysis.fits.items() if (k.kernel, k.backend, k.causal) == (kernel, backend, causal))


def _cmp(analysis, kernel):
    return next(c for c in analysis.comparisons if c.series.key.kernel == kernel)


@pytest.mark.parametrize("kernel,backend,causal,truth", [
    ("softmax", "sdpa", False, 2.0), ("softmax", "naive", False, 2.0), ("retnet", "torch", True, 1.0),
    ("kda", "torch", True, 1.0), ("gsa", "torch", True, 1.0)])
def test_slope_ci_covers_truth(analysis, kernel, backend, causal, truth):
    f = _fit(analysis, kernel, backend, causal).slope
    assert f.ci_low <= truth <= f.ci_high
    assert f.ci_high - f.ci_low < 0.1           # 2% noise, 15 samples: a tight interval
    assert f.T_max == (8192 if backend == "naive" else 16384)


def test_slope_ci_excludes_wrong_exponent():
    rng = np.random.default_rng(3)
    Ts = [1024, 2048, 4096, 8192]
    samples = [[1e-6 * T**1.5 * math.exp(rng.normal(0, 0.01)) for _ in range(20)] for T in Ts]
    f = fit_slope(Ts, samples)
    assert f.ci_low <= 1.5 <= f.ci_high and not (f.ci_low <= 1.0 <= f.ci_high)
    assert fit_slope([1024], [[1.0]]) is None


def test_cost_model_recovers_coefficients_and_solves():
    Ts = np.array([256, 512, 1024, 2048, 4096, 8192], float)
    y = 1e-3 + 2e-6 * Ts + 3e-10 * Ts**2
    m = fit_cost(Ts, y)
    assert m.a == pytest.approx(1e-3, rel=1e-3) and m.b == pytest.approx(2e-6, rel=1e-3)
    assert m.c == pytest.approx(3e-10, rel=1e-3) and m.max_rel_residual < 1e-6
    assert m.predict(m.solve(0.1)) == pytest.approx(0.1, rel=1e-9)
    assert m.dominant == "quadratic"
    lin = fit_cost(Ts, 5.0 * Ts)
    assert lin.c == pytest.approx(0, abs=1e-12) and lin.solve(5.0 * 1e6) == pytest.approx(1e6, rel=1e-6)


def test_crossover_of_known_curves(analysis):
    retnet = _cmp(analysis, "retnet").latency     # causal sdpa 1e-9 T^2 vs 1e-5 T: T* = 10,000
    assert retnet.kind == "at"
    assert retnet.T_low <= 10_000 <= retnet.T_high
    assert retnet.T_star == pytest.approx(10_000, rel=0.05)
    assert _cmp(analysis, "kda").latency.kind == "never"    # T* = 25,000 > 16,384
    assert _cmp(analysis, "gsa").latency.kind == "always"   # T* = 500 < 512
    assert "never" in crossover_text(_cmp(analysis, "kda").latency)


def test_crossover_exact_and_lost():
    T = [1000, 2000, 4000, 8000]
    c = crossover(T, [0.5 * t / 3000 for t in T])           # ratio crosses 1 at T = 6000
    assert c.kind == "at" and c.T_star == pytest.approx(6000, rel=1e-9)
    assert crossover(T, [2.0, 1.5, 0.9, 0.5]).kind == "lost"
    assert crossover([], []).kind == "n/a"


def test_speedup_and_memory_ratios(analysis):
    gsa = _cmp(analysis, "gsa")
    best, at = gsa.max_speedup
    assert at == 16384 and best == pytest.approx(1e-9 * 16384**2 / (5e-7 * 16384), rel=0.05)
    assert gsa.baseline.key.causal                 # like with like: causal gsa vs causal softmax
    naive = next(c for c in analysis.comparisons if c.series.key.backend == "naive")
    assert naive.max_memory_saving[0] == pytest.approx(4096 * 512 / (16 * 512**2))   # sdpa 4096 T vs 16 T^2


def test_baseline_choice(analysis):
    assert analysis.baseline == Baseline(Variant("softmax", "sdpa", True), Variant("softmax", "sdpa", False))
    naive = Variant("softmax", "naive", False)
    assert choose_baseline(analysis.series, "softmax/naive") == Baseline(naive, naive, requested=True)
    causal = Variant("softmax", "sdpa", True)
    assert choose_baseline(analysis.series, "softmax/sdpa/causal").for_causal(False) == causal
    # a requested baseline serves every series, across causality
    forced = compare_all(analysis.series, choose_baseline(analysis.series, "softmax/sdpa/full"))
    assert {c.baseline.key.causal for c in forced} == {False}
    # without causal softmax, causal series fall back to full softmax (cross-causal, said in the report)
    no_causal = [s for s in analysis.series if Variant.of(s.key) != causal]
    b = choose_baseline(no_causal)
    assert b.causal is None and b.for_causal(True) == Variant("softmax", "sdpa", False) and b.cross_causal(True)
    for bad in ("mamba", "softmax/flash", "softmax/sdpa/sideways", ""):
        with pytest.raises(UsageError, match="baseline"):
            choose_baseline(analysis.series, bad)


def test_frontier(analysis):
    naive = next(f for f in analysis.frontiers if f.key.backend == "naive")
    assert (naive.longest_ok_T, naive.first_failed_T, naive.failed_status) == (8192, 16384, "oom")
    # 16 T^2 + inputs 3 * 1024 T fits 24 GiB up to T ~ 40k
    assert 38_000 < naive.predicted_max_T < 41_000
    fox = next(f for f in analysis.frontiers if f.key.kernel == "fox")
    assert fox.first_failed_T == 65536 and fox.predicted_max_T is None


def test_device_memory_lookup():
    env = {"cuda_devices": [{"name": "NVIDIA H100 80GB HBM3", "total_memory_bytes": 85e9}],
           "host": {"memory_total_bytes": 1e12}}
    assert device_memory_bytes(env, "cuda") == 85e9
    assert device_memory_bytes(env, "cpu") == 1e12
    assert device_memory_bytes({}, "cuda") is None
    assert spec_peaks("NVIDIA H100 80GB HBM3")[0] == "H100 SXM"
    assert spec_peaks("NVIDIA A100-SXM4-40GB")[0] == "A100 40GB"
    assert spec_peaks("NVIDIA GeForce RTX 4090")[0] == "RTX 4090"
    assert spec_peaks("NVIDIA L4")[0] == "L4" and spec_peaks("Tesla T4") is None


def test_roofline_and_flags(analysis):
    pts = [p for p in analysis.roofline if p.variant == "softmax/sdpa/full" and p.T == 4096]
    assert len(pts) == 1
    p = pts[0]
    assert p.flops_per_s == pytest.approx(4.0 * 4 * 4096**2 * 64 / (2e-9 * 4096**2), rel=0.05)
    assert p.frac_flops == pytest.approx(p.flops_per_s / 1e11)
    assert all("interpret" not in pid for pid, _ in analysis.flagged)   # interpreted points are not series
    assert not any(s.key.backend == "fla" for s in analysis.series)
    assert len(analysis.interpreted) == 1 and len(analysis.wrong) == 1
    assert analysis.energy_note.startswith("no meter")


def test_noise_flags(tmp_path, synth_module):
    run = synth_module.make_run(tmp_path / "noisy", noise=0.3, n_samples=4)
    a = analyze(RunDir.open(run).load())
    flags = {f for _, fl in a.flagged for f in fl}
    assert any(f.startswith("few samples") for f in flags)
    assert any(f.startswith("wide CI") for f in flags)


def test_analysis_and_report_never_import_torch(synthetic_run, tmp_path, synth_module):
    """Rebuild the report from a copy of the run folder in a fresh interpreter; torch stays unloaded
    (also for a layer-level SER run and a run measured on two device models)."""
    import shutil

    copy = tmp_path / "copied-run"
    shutil.copytree(synthetic_run, copy, ignore=shutil.ignore_patterns("report.html", "figures"))
    layer = synth_module.make_layer_run(tmp_path / "layer-run")
    multi = synth_module.make_multi_device_run(tmp_path / "multi-run")
    code = (
        "import sys, pathlib\n"
        "import profiler.analysis.summary, profiler.analysis.fits, profiler.analysis.crossover\n"
        "import profiler.analysis.frontier, profiler.analysis.roofline, profiler.report\n"
        "from profiler.report import render_run, markdown_summary, export_run\n"
        f"p = render_run(pathlib.Path({str(copy)!r}))\n"
        f"markdown_summary([{str(copy)!r}]); export_run({str(copy)!r}, 'csv')\n"
        f"render_run(pathlib.Path({str(layer)!r})); render_run(pathlib.Path({str(multi)!r}))\n"
        f"markdown_summary([{str(layer)!r}, {str(multi)!r}])\n"
        "bad = [m for m in ('torch', 'triton', 'fla') if m in sys.modules]\n"
        "print('LOADED', bad, p.exists())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "LOADED [] True" in out.stdout
    assert (copy / "figures" / "latency.svg").exists() and (copy / "figures" / "latency.png").exists()


def test_slope_ci_includes_point_to_point_scatter_not_only_sampling_noise():
    """Tight samples around medians that wobble off a power law must not give a tight exponent CI."""
    import numpy as np

    from profiler.analysis.fits import fit_slope

    Ts = [512, 1024, 2048, 4096]
    wobble = [1.0, 1.6, 0.7, 1.5]                     # machine-state changes between points
    rng = np.random.default_rng(0)
    samples = [list(1e-6 * T * w * (1 + 0.001 * rng.standard_normal(50))) for T, w in zip(Ts, wobble)]
    fit = fit_slope(Ts, samples, use_tail=False)
    assert fit.ci_high - fit.ci_low > 0.3             # bootstrap alone gives ~0.003 here
    assert fit.ci_low <= 1.0 <= fit.ci_high
    exact = fit_slope(Ts, [[1e-6 * T] * 5 for T in Ts], use_tail=False)
    assert abs(exact.slope - 1.0) < 1e-9 and exact.ci_high - exact.ci_low < 1e-6
