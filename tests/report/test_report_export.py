"""The export's one typed column table: CSV, JSON and Parquet of a run hold the same rows and values.

Issue 22: ``serprof export RUN -f parquet`` crashed on every run whose records carried a float in a
column the Parquet schema typed as a string (first-call time, audio seconds, call latency)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.core.records import (
    Correctness,
    Energy,
    FirstCall,
    Manifest,
    Memory,
    PointRecord,
    PointSpec,
    Timing,
)
from profiler.report.export import (
    COLUMNS,
    SCHEMA,
    TYPES,
    export_run,
    flatten,
    read_export,
)
from profiler.store.runs import RunDir

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

DATA = Path(__file__).resolve().parents[1] / "data"


def _full_record() -> PointRecord:
    """A CUDA record with every optional part filled, so every export column has a value."""
    spec = PointSpec(kernel="retnet", backend="fla", device="cuda", T=4096, H=4, D=64, causal=True,
                     options=(("chunk", "64"),))
    return PointRecord(
        spec, "ok", reason="re-measured after a driver update",
        timing=Timing((1e-4, 1.1e-4, 1.05e-4, 1.2e-4), "cuda_event", quantity="device_time", method="cuda_graph",
                      process_counts=(2, 2), cpu_s=0.5, cpu_wall_s=1.0, threads=1),
        call_latency=Timing((3e-4, 3.2e-4, 3.1e-4), "perf_counter_ns", quantity="call_latency",
                            method="sync_wall"),
        first_call=FirstCall(2.5, cache_dir="/tmp/triton", cache_warm=False),
        memory=Memory(123456789, "cuda_allocator", reserved_bytes=2**28, analytic_bytes=120000000,
                      input_bytes=3 * 4096 * 4 * 64 * 4),
        energy=Energy(0.0125, meter="nvml", reason="counted", mean_power_w=310.5, throttled=False,
                      gross_energy_j=0.02),
        correctness=Correctness("fla naive_retention", 1e-6, 2.5e-6, 1e-3, True, checked_T=2048),
        flops=4.0 * 4 * 4096 * 64 * 64, bytes_moved=1.5e7,
        worker={"host": "node-1", "device_name": "NVIDIA H200"},
        started_at="2026-02-01T00:00:00+00:00", wall_s=4.25, extra={"audio_s": 81.92})


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b and type(a) is type(b)


def _assert_same_rows(left: list[dict], right: list[dict], what: str) -> None:
    assert len(left) == len(right) and left, what
    for i, (x, y) in enumerate(zip(left, right)):
        assert list(x) == list(COLUMNS) and list(y) == list(COLUMNS), what
        diff = {c: (x[c], y[c]) for c in COLUMNS if not _same(x[c], y[c])}
        assert not diff, f"{what}, row {i}: {diff}"


def _full_run(tmp_path: Path) -> Path:
    run = RunDir.create(tmp_path / "full", Manifest(run_id="full", created_at="2026-02-01T00:00:00+00:00",
                                                      scenario={"name": "full"}, environment={"device": "cuda"}))
    run.append(_full_record())
    run.append(PointRecord(PointSpec(kernel="softmax", backend="naive", T=65536), "oom", reason="out of memory"))
    return run.path


def test_every_column_has_a_value_of_its_declared_type():
    row = flatten(_full_record())
    assert list(row) == list(COLUMNS) == [c for c, _, _ in SCHEMA]
    missing = [c for c in COLUMNS if row[c] is None]
    assert not missing, f"the full record leaves {missing} empty: extend _full_record"
    py = {"str": str, "int": int, "float": float, "bool": bool}
    wrong = {c: type(row[c]).__name__ for c in COLUMNS if type(row[c]) is not py[TYPES[c]]}
    assert not wrong, wrong


def test_arrow_schema_follows_the_column_table(tmp_path):
    table = pq.read_table(export_run(_full_run(tmp_path), "parquet", tmp_path / "p.parquet"))
    arrow = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    assert table.schema.names == list(COLUMNS)
    assert [table.schema.field(c).type for c in COLUMNS] == [arrow[TYPES[c]] for c in COLUMNS]


@pytest.mark.parametrize("which", ["full", "synthetic", "layers", "h200-kernels", "old-a52bece"])
def test_parquet_json_and_csv_round_trip_to_the_same_rows(which, tmp_path, request):
    run = {"full": lambda: _full_run(tmp_path),
           "synthetic": lambda: request.getfixturevalue("synthetic_run"),
           "layers": lambda: request.getfixturevalue("layer_run"),
           "h200-kernels": lambda: DATA / "h200-2026-11-30" / "run-kernels",
           "old-a52bece": lambda: DATA / "run-a52bece-kernels"}[which]()
    from_csv = read_export(export_run(run, "csv", tmp_path / "p.csv"))
    from_parquet = pq.read_table(export_run(run, "parquet", tmp_path / "p.parquet")).to_pylist()
    _assert_same_rows(from_parquet, from_csv, f"{which}: parquet vs csv")
    from_json = read_export(export_run(run, "json", tmp_path / "p.json"))
    finite = [{c: (None if isinstance(v, float) and not math.isfinite(v) else v) for c, v in r.items()}
              for r in from_csv]
    _assert_same_rows(from_json, finite, f"{which}: json vs csv")
    assert isinstance(json.loads((tmp_path / "p.json").read_text()), list)
    assert read_export(tmp_path / "p.parquet") == from_parquet


def test_full_record_values_survive_parquet(tmp_path):
    rows = pq.read_table(export_run(_full_run(tmp_path), "parquet", tmp_path / "p.parquet")).to_pylist()
    row = next(r for r in rows if r["kernel"] == "retnet")
    assert row["first_call_s"] == 2.5 and row["cache_warm"] is False and row["audio_s"] == 81.92
    assert row["call_median_s"] == pytest.approx(3.1e-4) and row["launch_bound"] is True
    assert row["peak_bytes"] == 123456789 and row["options"] == '{"chunk": "64"}'
    oom = next(r for r in rows if r["kernel"] == "softmax")
    assert oom["status"] == "oom" and oom["median_s"] is None and oom["correct"] is None


def test_cli_export_parquet_exits_0(tmp_path):
    run = _full_run(tmp_path)
    p = subprocess.run([sys.executable, "-m", "profiler", "export", str(run), "-f", "parquet"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.strip() == str(run / "points.parquet")
    assert pq.read_table(run / "points.parquet").num_rows == 2
