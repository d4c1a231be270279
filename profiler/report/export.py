"""Flatten a run's records to a table (CSV, or Parquet via pyarrow) for pandas users.

One row per point (every status, interpreted points included and marked), with the median latency
and its 95% CI (seconds), sample count, memory (bytes), energy (J), correctness and analytic counts.
``median_s`` is the primary timing (``quantity``: device time on CUDA records with two timings, empty
in old records); ``call_median_s`` the call latency CUDA records store beside it, ``host_overhead_s``
their difference and ``launch_bound`` whether device time is under half the call latency;
``first_call_s`` and ``cache_warm`` the first call's wall time and compile-cache state.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from profiler.core.errors import UsageError
from profiler.core.paths import check_output_file, output_errors
from profiler.analysis.ser import audio_seconds
from profiler.core.records import PointRecord, energy_per_call
from profiler.store.runs import RunDir

FORMATS = ("csv", "parquet")

COLUMNS = ("id", "level", "kernel", "backend", "device", "dtype", "mode", "B", "T", "H", "D", "causal", "interpret",
           "options", "status", "reason", "n_samples", "median_s", "ci_low_s", "ci_high_s", "mean_s", "min_s",
           "max_s", "rel_ci", "timer", "peak_bytes", "reserved_bytes", "analytic_bytes", "input_bytes", "memory_method",
           "energy_j", "gross_energy_j", "energy_meter", "energy_reason", "mean_power_w", "throttled", "correct", "max_abs_err",
           "max_rel_err", "tolerance", "flops", "bytes_moved", "flops_per_s", "tokens_per_s", "started_at", "wall_s",
           "device_name", "host", "audio_s", "quantity", "timing_method", "call_median_s", "call_ci_low_s",
           "call_ci_high_s", "host_overhead_s", "launch_bound", "first_call_s", "cache_warm")


def flatten(rec: PointRecord) -> dict[str, Any]:
    s = rec.spec
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(id=rec.id, level=s.level, kernel=s.kernel, backend=s.backend, device=s.device, dtype=s.dtype,
               mode=s.mode, B=s.B, T=s.T, H=s.H, D=s.D, causal=s.causal, interpret=s.interpret,
               options=json.dumps(dict(s.options)) if s.options else "", status=rec.status, reason=rec.reason,
               flops=rec.flops, bytes_moved=rec.bytes_moved, started_at=rec.started_at, wall_s=rec.wall_s,
               device_name=(rec.worker or {}).get("device_name"), host=(rec.worker or {}).get("host"),
               audio_s=audio_seconds(rec))
    if rec.timing is not None and rec.timing.samples_s:
        st = rec.timing.summary
        row.update(n_samples=st.n, median_s=st.median, ci_low_s=st.ci_low, ci_high_s=st.ci_high, mean_s=st.mean,
                   min_s=st.min, max_s=st.max, rel_ci=st.rel_ci, timer=rec.timing.timer)
        if rec.flops and st.median > 0:
            row["flops_per_s"] = rec.flops / st.median
        if st.median > 0:
            row["tokens_per_s"] = s.B * s.T / st.median
        row.update(quantity=rec.timing.quantity, timing_method=rec.timing.method)
        if rec.call_latency is not None and rec.call_latency.samples_s:
            ct = rec.call_latency.summary
            row.update(call_median_s=ct.median, call_ci_low_s=ct.ci_low, call_ci_high_s=ct.ci_high,
                       host_overhead_s=rec.host_overhead_s, launch_bound=rec.launch_bound)
    if rec.first_call is not None:
        row.update(first_call_s=rec.first_call.wall_s, cache_warm=rec.first_call.cache_warm)
    if rec.memory is not None:
        row.update(peak_bytes=rec.memory.peak_bytes, reserved_bytes=rec.memory.reserved_bytes,
                   analytic_bytes=rec.memory.analytic_bytes, input_bytes=rec.memory.input_bytes,
                   memory_method=rec.memory.method)
    if rec.energy is not None:
        row.update(energy_j=energy_per_call(rec.energy)[0], gross_energy_j=rec.energy.gross_energy_j,
                   energy_meter=rec.energy.meter, energy_reason=rec.energy.reason,
                   mean_power_w=rec.energy.mean_power_w, throttled=rec.energy.throttled)
    if rec.correctness is not None:
        c = rec.correctness
        row.update(correct=c.passed, max_abs_err=c.max_abs_err, max_rel_err=c.max_rel_err, tolerance=c.tolerance)
    return row


def rows(records: Iterable[PointRecord]) -> list[dict[str, Any]]:
    """``flatten`` of each record, in series order (level, kernel, backend, device, dtype, mode, B, causal, T)."""
    ordered = sorted(records, key=lambda r: (r.spec.level, r.spec.kernel, r.spec.backend, r.spec.device,
                                              r.spec.dtype, r.spec.mode, r.spec.B, r.spec.causal, r.spec.T))
    return [flatten(r) for r in ordered]


def export_run(run_dir: Path | str, fmt: str = "csv", out: Path | str | None = None) -> Path:
    """Write ``points.<fmt>`` (or ``out``) from a run folder; return the path."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: valid: {', '.join(FORMATS)}")
    path = check_output_file(Path(out) if out else Path(run_dir) / f"points.{fmt}", "-o/--output")
    table_rows = rows(RunDir.open(run_dir).load().records)
    if fmt == "csv":
        with output_errors(path, "-o/--output"), open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
            w.writeheader()
            w.writerows(table_rows)
        return path
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("parquet export needs pyarrow: pip install 'serprof[parquet]' (or use --format csv)") from None
    table = pa.Table.from_pylist(table_rows, schema=_schema(pa))
    with output_errors(path, "-o/--output"):
        pq.write_table(table, path)
    return path


def _schema(pa):
    ints = {"B", "T", "H", "D", "n_samples", "peak_bytes", "reserved_bytes", "analytic_bytes", "input_bytes"}
    bools = {"causal", "interpret", "throttled", "correct"}
    floats = {"median_s", "ci_low_s", "ci_high_s", "mean_s", "min_s", "max_s", "rel_ci", "energy_j", "gross_energy_j", "mean_power_w",
              "max_abs_err", "max_rel_err", "tolerance", "flops", "bytes_moved", "flops_per_s", "tokens_per_s", "wall_s"}
    return pa.schema([(c, pa.int64() if c in ints else pa.bool_() if c in bools else pa.float64() if c in floats
                       else pa.string()) for c in COLUMNS])
