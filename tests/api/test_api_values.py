"""The typed Python API returns values that show themselves: Run, Analysis, PointRecord, Timing, GateResult.

Fast: synthetic run folders written through the real store; nothing is measured here
(``test_api_readme.py`` runs the README example, which measures).
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import numpy as np
import pytest

import profiler
from profiler.core.errors import UsageError
from profiler.core.records import Manifest, Memory, PointRecord, PointSpec, Timing
from profiler.store.runs import RunDir


def _samples(median: float, n: int = 40, seed: int = 0) -> tuple[float, ...]:
    return tuple(float(x) for x in np.random.default_rng(seed).lognormal(math.log(median), 0.01, n))


def _write_run(path, scale: float = 1.0):
    """softmax/sdpa and retnet/torch at T = 256, 512, 1024 (latency ~ T^2 and ~ T); ``scale`` slows every point."""
    man = Manifest(run_id=path.name, created_at="2026-01-01T00:00:00+00:00", scenario={"name": path.name},
                   environment={"device_name": "cpu", "torch_version": "2.13.0"})
    run = RunDir.create(path, man)
    for i, T in enumerate((256, 512, 1024)):
        for kernel, backend, med in (("softmax", "sdpa", 1e-3 * (T / 256) ** 2), ("retnet", "torch", 2e-3 * T / 256)):
            timing = Timing(_samples(med * scale, seed=i), "perf_counter_ns", quantity="call_latency",
                            method="perf_counter_ns")
            run.append(PointRecord(PointSpec(kernel, backend, T=T), "ok", timing=timing,
                                   memory=Memory(T * 4096, "torch_profiler")))
    return path


def test_point_record_and_timing_repr_one_line_like_measurement():
    t = Timing(tuple(1.2e-3 + i * 1e-6 for i in range(40)), "perf_counter_ns", quantity="call_latency",
               method="perf_counter_ns")
    rec = PointRecord(PointSpec("retnet", "torch"), "ok", timing=t, memory=Memory(int(3.1 * 2**20), "torch_profiler"))
    lo, hi = (x * 1e3 for x in t.ci_s)
    assert repr(rec) == (f"retnet/torch cpu float32 fwd B=1 T=1024 H=4 D=64: {t.median_s * 1e3:.3g} ms "
                         f"[{lo:.3g}, {hi:.3g}] (n=40), peak 3.1 MiB, ok")
    assert repr(t) == f"<Timing call_latency by perf_counter_ns: {t.median_s * 1e3:.3g} ms [{lo:.3g}, {hi:.3g}] (n=40)>"
    crashed = PointRecord(PointSpec("kda", "torch", T=4096, causal=False), "crashed", reason="worker killed by SIGKILL")
    assert repr(crashed) == "kda/torch cpu float32 fwd B=1 T=4096 H=4 D=64 non-causal: crashed (worker killed by SIGKILL)"
    assert "\n" not in repr(rec) and str(rec) == repr(rec)


def test_load_to_pandas_has_the_export_columns_and_values(tmp_path):
    from profiler.report.export import COLUMNS

    run = profiler.load(_write_run(tmp_path / "a"))
    assert isinstance(run, profiler.Run) and len(run.records) == 6 and run.outcome is None
    assert repr(run) == (f"<Run a at {tmp_path / 'a'}: 6 points (ok 6); retnet/torch, softmax/sdpa; T=256..1024>")
    df = run.to_pandas()
    assert list(df.columns) == list(COLUMNS) and len(df) == 6
    exported = profiler.export(run, "csv", tmp_path / "a.csv")
    with open(exported, newline="") as fh:
        by_id = {row["id"]: row for row in csv.DictReader(fh)}
    assert list(by_id) == list(df["id"])   # same rows, same order
    for _, row in df.iterrows():
        assert float(by_id[row["id"]]["median_s"]) == pytest.approx(row["median_s"], rel=1e-12)


def test_analyze_returns_values_with_a_readable_repr(tmp_path):
    from profiler.analysis.summary import SeriesFit

    res = profiler.analyze(profiler.load(_write_run(tmp_path / "a")))
    assert all(isinstance(f, SeriesFit) for f in res.fits) and len(res.fits) == 2
    slopes = {f.key.kernel: f.slope.slope for f in res.fits}
    assert slopes["softmax"] == pytest.approx(2.0, abs=0.1) and slopes["retnet"] == pytest.approx(1.0, abs=0.1)
    retnet = next(c for c in res.crossovers if c.series.key.kernel == "retnet")
    assert retnet.latency.kind in ("always", "at") and all(isinstance(r.T, int) for r in retnet.rows)
    assert res.status_counts == {"ok": 6}
    text = repr(res)
    assert text.startswith("<Analysis of a: 2 series, baseline softmax/sdpa") and "retnet/torch/causal T^1.0" in text
    from_path = profiler.analyze(tmp_path / "a")   # a run folder works as well as a Run
    assert [f.slope.slope for f in from_path.fits] == [f.slope.slope for f in res.fits]


def test_gate_takes_runs_and_its_verdict_shows_itself(tmp_path):
    base, same, slow = (profiler.load(_write_run(tmp_path / n, s)) for n, s in (("b", 1.0), ("c", 1.0), ("s", 1.3)))
    ok = profiler.gate(baseline=base, candidate=same)
    assert ok.passed and not ok.regressions
    assert repr(ok).startswith("<GateResult PASS: ") and "0 regression" in repr(ok)
    bad = profiler.gate(baseline=base, candidate=tmp_path / "s")   # a Run on one side, a folder on the other
    assert not bad.passed and len(bad.regressions) == 6
    assert repr(bad).startswith("<GateResult FAIL: ") and "6 regression" in repr(bad)
    assert slow.path == tmp_path / "s"


def test_report_is_a_plain_function_taking_a_run(tmp_path):
    run = profiler.load(_write_run(tmp_path / "a"))
    out = profiler.report(run, out=tmp_path / "html" / "r.html")
    assert out == tmp_path / "html" / "r.html" and "<html" in out.read_text()[:500].lower()
    with pytest.raises(UsageError, match="at least one run folder"):
        profiler.report([])


def test_api_names_stay_functions_after_their_subpackages_are_imported():
    code = ("import sys, profiler; assert 'torch' not in sys.modules; "
            "import profiler.report.html, profiler.measure.timer; from profiler.measure import point; "
            "from profiler.report import export; import importlib; rp = importlib.import_module('profiler.report'); "
            "assert profiler.report.__module__ == 'profiler.api' and profiler.measure.__module__ == 'profiler.api'; "
            "assert rp.__name__ == 'profiler.report' and point.__name__ == 'profiler.measure.point'; "
            "print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr


def test_keywords_are_typed_values_and_bad_ones_name_themselves():
    from profiler.api import _overrides

    torch = pytest.importorskip("torch")
    ov = _overrides({"kernels": ["retnet"], "lengths": [256, 512], "dtypes": [torch.float16, "fp32"],
                     "causal": False}, {"time_budget_s": 0.5})
    assert ov == {"kernels": ["retnet"], "lengths": [256, 512], "dtypes": ["float16", "fp32"], "causal": False,
                  "time_budget_s": 0.5}
    plan = profiler.plan(None, _overrides({"kernels": ["retnet"], "backends": ["torch"], "lengths": [256, 512],
                                           "dtypes": [torch.float32], "device": "cpu"}, {}))
    assert sorted(p.spec.T for p in plan.points) == [256, 512] and {p.spec.dtype for p in plan.points} == {"float32"}
    with pytest.raises(UsageError, match="unknown keyword argument 'time_budget'.*time_budget_s"):
        profiler.sweep(kernels=["retnet"], time_budget=1)
    with pytest.raises(UsageError, match="T must be a whole number"):
        profiler.measure("retnet", T="1k", device="cpu")
    with pytest.raises(UsageError, match="unknown kernel"):
        profiler.measure("no-such-kernel", device="cpu")
