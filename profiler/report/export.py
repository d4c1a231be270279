"""Flatten a run's records to a table (CSV, JSON, or Parquet via pyarrow) for pandas users.

One row per point (every status, interpreted points included and marked), with the median latency
and its 95% CI (seconds), sample count, memory (bytes), energy (J), correctness and analytic counts.
``median_s`` is the primary timing (``quantity``: device time on CUDA records with two timings, empty
in old records); ``call_median_s`` the call latency CUDA records store beside it, ``host_overhead_s``
their difference and ``launch_bound`` whether device time is under half the call latency;
``first_call_s`` and ``cache_warm`` the first call's wall time and compile-cache state.

``SCHEMA`` is the one column table (name, type, meaning) all three formats follow: every value is
coerced to its column's type in ``flatten``, an empty value is ``None`` (an empty CSV field, JSON
``null``, a Parquet null), so the three files hold the same rows and values; ``read_export`` reads any
of them back into typed rows. JSON is an array of row objects (``pandas.read_json(path)``); non-finite
floats are written as ``null`` there, since JSON has no NaN.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any, Iterable

from profiler.analysis.ser import audio_seconds
from profiler.core.errors import UsageError
from profiler.core.lazy import available, lazy_import
from profiler.core.paths import check_output_file, output_errors
from profiler.core.records import PointRecord, energy_per_call
from profiler.store.runs import RunDir

pyarrow = lazy_import("pyarrow")
pyarrow_parquet = lazy_import("pyarrow.parquet")

FORMATS = ("csv", "json", "parquet")

#: The export's columns: (name, type, meaning); type is one of ``str``, ``int``, ``float``, ``bool``.
SCHEMA: tuple[tuple[str, str, str], ...] = (
    ("id", "str", "stable point id"),
    ("level", "str", "kernel | layer | model"),
    ("kernel", "str", "the kernel (level kernel) or the layer (levels layer and model: a profiler.layers name)"),
    ("backend", "str", "implementation"),
    ("device", "str", "cpu | cuda"),
    ("dtype", "str", "input dtype"),
    ("mode", "str", "fwd | fwdbwd"),
    ("B", "int", "batch"),
    ("T", "int", "sequence length (tokens)"),
    ("H", "int", "heads"),
    ("D", "int", "head dim (per head, at every level)"),
    ("hidden", "int", "H * D: the layer's model width (levels layer and model); kernels: all query heads' width"),
    ("causal", "bool", "causal masking"),
    ("interpret", "bool", "run under Triton's interpreter (not a performance number)"),
    ("options", "str", "entry options as JSON"),
    ("phase", "str", "prefill | decode | streaming (what one call processes)"),
    ("status", "str", "ok | wrong | oom | timeout | crashed | skipped"),
    ("reason", "str", "why the status is not ok"),
    ("n_samples", "int", "timing samples"),
    ("median_s", "float", "median of the primary timing (s)"),
    ("ci_low_s", "float", "95% CI of the median, low (s)"),
    ("ci_high_s", "float", "95% CI of the median, high (s)"),
    ("mean_s", "float", "mean sample (s)"),
    ("min_s", "float", "fastest sample (s)"),
    ("max_s", "float", "slowest sample (s)"),
    ("rel_ci", "float", "CI half-width relative to the median"),
    ("timer", "str", "clock used"),
    ("peak_bytes", "int", "measured peak memory of one call (bytes)"),
    ("reserved_bytes", "int", "CUDA allocator reserved (bytes)"),
    ("analytic_bytes", "int", "the kernel's memory model (bytes)"),
    ("input_bytes", "int", "inputs (bytes)"),
    ("memory_method", "str", "how peak_bytes was measured"),
    ("energy_j", "float", "net energy per call (J)"),
    ("gross_energy_j", "float", "energy per call, idle included (J)"),
    ("energy_meter", "str", "nvml | rapl"),
    ("energy_reason", "str", "why there is no energy number"),
    ("mean_power_w", "float", "mean power over the energy window (W)"),
    ("throttled", "bool", "clock throttling seen in the energy window"),
    ("correct", "bool", "passed the check against the fp32 reference"),
    ("max_abs_err", "float", "largest absolute error vs the reference"),
    ("max_rel_err", "float", "largest relative error vs the reference"),
    ("tolerance", "float", "tolerance of the check"),
    ("flops", "float", "analytic FLOPs per call"),
    ("bytes_moved", "float", "analytic memory traffic per call (bytes)"),
    ("flops_per_s", "float", "flops / median_s"),
    ("tokens_per_s", "float", "B * tokens per call / median_s (prefill: T; decode: steps; streaming: chunk)"),
    ("started_at", "str", "ISO 8601 UTC start of the point"),
    ("wall_s", "float", "whole point, set-up and check included (s)"),
    ("device_name", "str", "device model"),
    ("host", "str", "host name"),
    ("audio_s", "float", "seconds of audio T stands for"),
    ("quantity", "str", "device_time | call_latency"),
    ("timing_method", "str", "how the primary timing was taken"),
    ("call_median_s", "float", "CUDA call latency, median (s)"),
    ("call_ci_low_s", "float", "call latency 95% CI, low (s)"),
    ("call_ci_high_s", "float", "call latency 95% CI, high (s)"),
    ("host_overhead_s", "float", "call latency - device time (s)"),
    ("launch_bound", "bool", "device time under half the call latency"),
    ("first_call_s", "float", "first call's wall time (s)"),
    ("cache_warm", "bool", "compile cache warm at the first call"),
    ("processes", "int", "worker processes the samples come from (replication)"),
    ("process_spread", "float", "between-process SD of the log medians (relative; blank with one process)"),
    ("cpu_share", "float", "CPU: the worker's CPU time / (wall x threads) while sampling (well below 1: busy machine)"),
)

COLUMNS: tuple[str, ...] = tuple(name for name, _, _ in SCHEMA)
TYPES: dict[str, str] = {name: typ for name, typ, _ in SCHEMA}
_PY = {"str": str, "int": int, "float": float, "bool": bool}


def _coerce(value: Any, typ: str) -> Any:
    """``value`` as its column's type; ``None`` and ``""`` are ``None``."""
    if value is None or (isinstance(value, str) and value == ""):
        return None
    return _PY[typ](value)


def process_spread(timing) -> float | None:
    """SD of the log median of each worker process (None with fewer than two processes)."""
    groups = [g for g in timing.process_groups() if g]
    if len(groups) < 2:
        return None
    logs = [math.log(statistics.median(g)) for g in groups if statistics.median(g) > 0]
    return statistics.stdev(logs) if len(logs) >= 2 else None


def flatten(rec: PointRecord) -> dict[str, Any]:
    """One typed row (``SCHEMA``) of a record."""
    s = rec.spec
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(id=rec.id, level=s.level, kernel=s.kernel, backend=s.backend, device=s.device, dtype=s.dtype,
               mode=s.mode, B=s.B, T=s.T, H=s.H, D=s.D, hidden=s.hidden, causal=s.causal, interpret=s.interpret,
               options=json.dumps(dict(s.options)) if s.options else "", phase=s.phase, status=rec.status, reason=rec.reason,
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
            row["tokens_per_s"] = s.B * s.tokens_per_call / st.median
        row.update(quantity=rec.timing.quantity, timing_method=rec.timing.method, processes=rec.timing.processes,
                   cpu_share=rec.timing.cpu_share, process_spread=process_spread(rec.timing))
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
    return {c: _coerce(row[c], TYPES[c]) for c in COLUMNS}


def rows(records: Iterable[PointRecord]) -> list[dict[str, Any]]:
    """``flatten`` of each record, in series order (level, kernel, backend, device, dtype, mode, B, causal, T)."""
    ordered = sorted(records, key=lambda r: (r.spec.level, r.spec.kernel, r.spec.backend, r.spec.device,
                                              r.spec.dtype, r.spec.mode, r.spec.B, r.spec.causal, r.spec.T))
    return [flatten(r) for r in ordered]


def export_run(run_dir: Path | str, fmt: str = "csv", out: Path | str | None = None) -> Path:
    """Write ``points.<fmt>`` (or ``out``) from a run folder; return the path."""
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: valid: {', '.join(FORMATS)}")
    if fmt == "parquet":
        _pyarrow()   # before anything is written
    path = check_output_file(Path(out) if out else Path(run_dir) / f"points.{fmt}", "-o/--output")
    table_rows = rows(RunDir.open(run_dir).load().records)
    with output_errors(path, "-o/--output"):
        if fmt == "csv":
            with open(path, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(COLUMNS))
                w.writeheader()
                w.writerows(table_rows)
        elif fmt == "json":
            finite = [{c: (None if isinstance(v, float) and not math.isfinite(v) else v) for c, v in r.items()}
                      for r in table_rows]
            path.write_text(json.dumps(finite, indent=1, allow_nan=False) + "\n")
        else:
            pa, pq = _pyarrow()
            pq.write_table(pa.Table.from_pylist(table_rows, schema=arrow_schema(pa)), path)
    return path


def read_export(path: Path | str) -> list[dict[str, Any]]:
    """Read an exported file (by suffix: .csv, .json, .parquet) back into typed rows (``SCHEMA``)."""
    path = Path(path)
    if path.suffix == ".parquet":
        _, pq = _pyarrow()
        return pq.read_table(path).to_pylist()
    if path.suffix == ".json":
        return [{c: _coerce(r.get(c), TYPES[c]) for c in COLUMNS} for r in json.loads(path.read_text())]
    with open(path, newline="") as fh:
        return [{c: _from_csv(r.get(c), TYPES[c]) for c in COLUMNS} for r in csv.DictReader(fh)]


def _from_csv(text: str | None, typ: str) -> Any:
    if text is None or text == "":
        return None
    if typ == "bool":
        return {"True": True, "False": False}[text]
    return _PY[typ](text)


def arrow_schema(pa):
    """``SCHEMA`` as a pyarrow schema (``pa`` is the imported pyarrow module)."""
    arrow = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    return pa.schema([pa.field(name, arrow[typ], metadata={"description": doc}) for name, typ, doc in SCHEMA])


def _pyarrow():
    if not available("pyarrow"):
        raise UsageError("--format parquet needs pyarrow: pip install 'serprof[parquet]' (or use --format csv)")
    return pyarrow, pyarrow_parquet
