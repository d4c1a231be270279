"""Benchmark plumbing: series parsing, per-series isolation and skipping, summaries, CLI rendering."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from typer.testing import CliRunner

import profiler.kernels as kernels
from profiler.cli import app
from profiler.core.errors import UsageError
from profiler.core.records import Memory, PointRecord, Timing
from profiler.kernels import softmax
from profiler.runner import bench


@pytest.fixture
def registry(monkeypatch):
    fake_linear = dataclasses.replace(softmax.KERNEL, name="lin", backends={"torch": softmax.KERNEL.backends["sdpa"]})
    fake = lambda: {"softmax": softmax.KERNEL, "lin": fake_linear}  # noqa: E731
    monkeypatch.setattr(kernels, "registry", fake)
    monkeypatch.setattr(bench, "registry", fake)


def ok_record(series: bench.Series, T: int, seconds: float, peak: int) -> PointRecord:
    return PointRecord(spec=series.spec(T), status="ok",
                       timing=Timing(samples_s=(seconds * 0.99, seconds, seconds * 1.01), timer="perf_counter_ns"),
                       memory=Memory(peak_bytes=peak, method="torch_profiler", analytic_bytes=peak))


def test_series_parsing(registry):
    default = bench.default_series()  # every CPU backend in the registry, driven by it (plugins too)
    assert default[:2] == [bench.SDPA_CAUSAL, bench.SDPA_FULL] and default[-1] == bench.Series("lin", "torch", True)
    assert bench.Series("softmax", "naive", True) in default
    assert not any(s.backend == "sdpa-cudnn" for s in default)  # CUDA only
    assert len(default) == len(set(default))
    got = bench.parse_series(["lin", "softmax:naive:full"])
    assert got == [bench.SDPA_CAUSAL, bench.SDPA_FULL, bench.Series("lin", "torch"), bench.Series("softmax", "naive", False)]
    with pytest.raises(UsageError, match="valid"):
        bench.parse_series(["nope"])
    with pytest.raises(UsageError, match="causal\\|full|valid"):
        bench.parse_series(["softmax:naive:sideways"])
    with pytest.raises(UsageError, match="cannot run on CPU"):
        bench.parse_series(["softmax:sdpa-cudnn"])


class FakeExecutor:
    instances: list["FakeExecutor"] = []

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.closed = False
        FakeExecutor.instances.append(self)

    def measure(self, spec, settings):
        self.seen.append(spec.T)
        s = bench.Series(spec.kernel, spec.backend, spec.causal)
        if spec.kernel == "lin" and spec.T >= 2048:
            return PointRecord(spec=spec, status="oom", reason="out of memory")
        return ok_record(s, spec.T, 1e-3 * spec.T, 1000 * spec.T)

    def close(self) -> None:
        self.closed = True


def test_one_executor_per_series_short_to_long_and_skip_after_failure():
    FakeExecutor.instances = []
    series = [bench.SDPA_FULL, bench.Series("lin", "torch")]
    recs = bench.bench_kernels(series, [4096, 1024, 2048], executor_factory=FakeExecutor)
    assert len(FakeExecutor.instances) == 2 and all(e.closed for e in FakeExecutor.instances)
    assert FakeExecutor.instances[0].seen == [1024, 2048, 4096]
    assert FakeExecutor.instances[1].seen == [1024, 2048]              # 4096 never sent after the OOM
    lin = [r for r in recs if r.spec.kernel == "lin"]
    assert [r.status for r in lin] == ["ok", "oom", "skipped"] and lin[2].reason == "oom at T=2048"


def test_summary_slopes_and_speedups():
    full, lin = bench.SDPA_FULL, bench.Series("lin", "torch")
    Ts = [512, 1024, 2048, 4096, 8192, 16384]
    recs = [ok_record(full, T, 1e-9 * T * T, 64 * T) for T in Ts]
    recs += [ok_record(lin, T, 1e-6 * T, 1000 * T + 5) for T in Ts]
    summ = {s.label: s for s in bench.summarize_kernels(recs)}
    assert summ[full.label].time_slope == pytest.approx(2.0, abs=1e-9)
    assert summ[full.label].memory_slope == pytest.approx(1.0, abs=1e-9)
    assert summ[lin.label].time_slope == pytest.approx(1.0, abs=1e-9)
    assert summ[lin.label].speedup_vs_sdpa_full[-1] == pytest.approx(16384 * 1e-3)
    assert summ[full.label].speedup_vs_sdpa_full[0] == pytest.approx(1.0)


def test_loglog_slope_uses_the_fit_range_only():
    assert bench.loglog_slope([512, 2048, 4096], [1.0, 2.0, 8.0], 2048, 16384) == pytest.approx(2.0)
    assert bench.loglog_slope([512, 2048], [1.0, 2.0], 2048, 16384) is None


def test_memory_check_row():
    row = bench.MemoryCheckRow("x", measured_bytes=512, analytic_bytes=530, status="ok")
    assert row.within() and math.isclose(row.ratio, 512 / 530)
    assert not bench.MemoryCheckRow("x", 400, 530, "ok").within()


def test_cli_bench_kernels_renders_and_json(registry, monkeypatch):
    Ts = [2048, 4096, 8192]

    def fake_bench(series, lengths, settings=bench.KERNEL_BENCH_SETTINGS, on_record=None, executor_factory=None):
        out = []
        for s in series:
            for T in lengths:
                r = ok_record(s, T, (1e-9 * T * T) if s.kernel == "softmax" else 1e-6 * T, 1000 * T)
                on_record and on_record(r)
                out.append(r)
        return out

    monkeypatch.setattr(bench, "bench_kernels", fake_bench)
    runner = CliRunner()
    res = runner.invoke(app, ["bench", "kernels", "--lengths", "2k..8k"])
    assert res.exit_code == 0, res.output
    assert "lin/torch/causal" in res.output and "log-log slopes" in res.output and "2.00" in res.output
    assert "per kernel group" in res.output and "acceptance (issue 17)" in res.output
    res = runner.invoke(app, ["bench", "kernels", "--lengths", "2k..8k", "--json"])
    data = json.loads(res.output)
    assert [r["spec"]["T"] for r in data["records"]][:3] == Ts
    assert {s["label"] for s in data["summary"]} == {s.label for s in bench.default_series()}
    fam = {r["label"]: r for r in data["families"]}
    assert fam["lin/torch/causal"]["ratio"] == pytest.approx(1.0) and fam["softmax/sdpa/causal"]["ratio"] == pytest.approx(8192 * 1e-3)
    assert data["limits"] == {"slope": 1.15, "ratio": 2.0}
    res = runner.invoke(app, ["bench", "kernels", "--quick", "--kernels", "lin", "--json"])
    assert sorted({r["spec"]["T"] for r in json.loads(res.output)["records"]}) == [4096, 8192, 16384]
    assert json.loads(res.output)["settings"]["max_reps"] == bench.QUICK_SETTINGS.max_reps


def test_cli_bad_lengths_is_a_usage_error():
    from profiler.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bench", "kernels", "--lengths", "abc"])
    assert exc.value.code == 2


def test_family_rows_slopes_ratios_and_flags(registry):
    """Groups come from the registry ("other" for unknown kernels); ratios compare the same causality."""
    Ts = [2048, 4096, 8192, 16384]
    causal, naive, full = bench.SDPA_CAUSAL, bench.Series("softmax", "naive", True), bench.SDPA_FULL
    lin, plug = bench.Series("lin", "torch"), bench.Series("plugin_x", "torch")
    recs = [ok_record(causal, T, 1e-9 * T * T, T) for T in Ts]
    recs += [ok_record(naive, T, 3e-9 * T * T, T) for T in Ts]          # 3x the fastest: shown, not flagged (quadratic)
    recs += [ok_record(full, T, 2e-9 * T * T, T) for T in Ts]           # alone among non-causal
    recs += [ok_record(lin, T, 1e-6 * T ** 1.5, T) for T in Ts]          # slope 1.5, slower
    recs += [ok_record(plug, T, 1e-6 * T, T) for T in Ts[:2]] + [PointRecord(spec=plug.spec(T), status="oom")
                                                                    for T in Ts[2:]]
    rows = {r.label: r for r in bench.family_rows(bench.summarize_kernels(recs))}
    assert rows[causal.label].group == "softmax" and rows[causal.label].ratio == pytest.approx(1.0)
    assert rows[naive.label].ratio == pytest.approx(3.0) and not rows[naive.label].ratio_flag
    assert rows[naive.label].fastest == causal.label and not rows[naive.label].slope_flag  # quadratic: no slope limit
    assert rows[full.label].fastest == full.label and not rows[full.label].flagged
    assert rows[naive.label].slope == pytest.approx(2.0) and [p[0] for p in rows[naive.label].slope_points] == [4096, 8192, 16384]
    lin_row = rows[lin.label]  # the fake "lin" copies softmax's entry: group softmax, family quadratic
    assert lin_row.slope == pytest.approx(1.5) and not lin_row.flagged and lin_row.ratio > 2
    p = rows[plug.label]
    assert p.group == "other" and p.median_s is None and p.ratio is None and p.slope is None and p.at_T == 16384
    assert [r.group for r in bench.family_rows(bench.summarize_kernels(recs))][-1] == "other"


def test_family_rows_flag_slope_of_linear_kernels(registry, monkeypatch):
    lin_spec = dataclasses.replace(kernels.registry()["lin"], family="linear", group="gated")
    monkeypatch.setattr(bench, "registry", lambda: {"softmax": softmax.KERNEL, "lin": lin_spec})
    lin = bench.Series("lin", "torch")
    Ts = [4096, 8192, 16384]
    rows = bench.family_rows(bench.summarize_kernels([ok_record(lin, T, 1e-9 * T ** 1.2, T) for T in Ts]))
    assert rows[0].group == "gated" and rows[0].slope == pytest.approx(1.2) and rows[0].slope_flag
    rows = bench.family_rows(bench.summarize_kernels([ok_record(lin, T, 1e-9 * T ** 1.1, T) for T in Ts]))
    assert not rows[0].flagged
    # the ratio limit holds for linear-family members: 2.5x the group's fastest is flagged
    monkeypatch.setattr(bench, "registry", lambda: {"softmax": softmax.KERNEL, "lin": lin_spec, "lin2": lin_spec})
    lin2 = bench.Series("lin2", "torch")
    recs = [ok_record(lin, T, 1e-9 * T, T) for T in Ts] + [ok_record(lin2, T, 2.5e-9 * T, T) for T in Ts]
    rows = {r.label: r for r in bench.family_rows(bench.summarize_kernels(recs))}
    assert rows[lin2.label].ratio == pytest.approx(2.5) and rows[lin2.label].ratio_flag and not rows[lin.label].flagged
