"""Packed vs padded varlen analysis (values) and its report table (markdown), from hand-made records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from profiler.analysis.varlen import analyze_varlen
from profiler.core.records import Correctness, PointRecord, PointSpec, Timing
from profiler.report.markdown import varlen_markdown


def _rec(backend, layout, median_s, status="ok", path="per_sequence", err=1e-7):
    opts = [("varlen", "lognormal"), ("varlen_seed", "0")] + ([("layout", "padded")] if layout == "padded" else [])
    spec = PointSpec("softmax", backend, T=16384, options=tuple(sorted(opts)))
    extra = {"varlen": {"layout": layout, "path": "padded" if layout == "padded" else path, "count": 12,
                        "median": 1100, "max": 6000, "padding_waste": 0.77, "real_tokens": 16384}}
    return PointRecord(spec=spec, status=status, timing=Timing((median_s,) * 3, "perf_counter_ns") if status == "ok"
                       else None, extra=extra, reason=None if status == "ok" else "boom",
                       correctness=Correctness("ref", err, err, 1e-5, True))


def test_rows_join_layouts_and_count_real_tokens():
    recs = [_rec("sdpa", "packed", 0.1), _rec("sdpa", "padded", 0.4, err=3e-7),
            _rec("flex", "padded", 0.2), _rec("naive", "packed", 0.5, status="oom")]
    v = analyze_varlen(recs + [PointRecord(spec=PointSpec("retnet", "torch"), status="ok")])
    rows = {r.backend: r for r in v.rows}
    assert set(rows) == {"sdpa", "flex", "naive"} and v.distributions == ("lognormal",)
    sdpa = rows["sdpa"]
    assert sdpa.packed_tokens_per_s == pytest.approx(163840) and sdpa.padded_tokens_per_s == pytest.approx(40960)
    assert sdpa.speedup == pytest.approx(4.0) and sdpa.max_rel_err == 3e-7 and sdpa.path == "per_sequence"
    assert rows["flex"].packed_s is None and rows["flex"].packed_status is None and rows["flex"].speedup is None
    assert rows["naive"].packed_status == "oom" and rows["naive"].packed_tokens_per_s is None
    md = "\n".join(varlen_markdown(SimpleNamespace(varlen=v)))
    assert "| lognormal | 16,384 | softmax/sdpa | cpu float32 fwd H4 D64 | 12 | 1100 / 6000 | 77% |" in md
    assert "163,840" in md and "4.00x" in md and "77%" in md and "oom" in md and "not planned" in md


def test_no_varlen_points_no_section():
    assert analyze_varlen([PointRecord(spec=PointSpec("retnet", "torch"), status="ok")]) is None
    assert varlen_markdown(SimpleNamespace(varlen=None)) == []
