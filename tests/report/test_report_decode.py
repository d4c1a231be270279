"""The decode section of the Markdown summary and the HTML context: per call (a decode loop or one
streaming chunk), per token and the real-time factor, from analysis values."""

from __future__ import annotations

from types import SimpleNamespace

from profiler.analysis.decode import analyze_decode
from profiler.analysis.series import build_series
from profiler.core.records import PointRecord, PointSpec, Timing
from profiler.report.html import decode_context
from profiler.report.markdown import decode_markdown


def _analysis():
    recs = []
    for T in (3000, 30000):
        spec = PointSpec(kernel="kda", backend="torch", level="layer", T=T, H=4, D=256, phase="streaming",
                         options=(("chunk", "2"),))
        recs.append(PointRecord(spec=spec, status="ok",
                                timing=Timing(tuple(8e-3 * (1 + 0.001 * i) for i in range(-3, 4)), "perf_counter_ns",
                                              quantity="call_latency"),
                                extra={"carried_bytes": 65536, "carried_bytes_analytic": 65536, "carried_kind": "state"}))
    return SimpleNamespace(decode=analyze_decode(build_series(recs), 50.0))


def test_markdown_decode_table_has_per_call_per_token_and_rtf():
    lines = decode_markdown(_analysis())
    header = next(ln for ln in lines if ln.startswith("| series"))
    assert "per call | per token" in header and "real-time factor" in header
    row = next(ln for ln in lines if ln.startswith("| streaming:layer:kda") and "3,000" in ln)
    # 8 ms per 2-position chunk = 40 ms of audio at 50 positions/s: RTF 0.2; 4 ms per token
    assert "| 8 ms | 4 ms |" in row and row.rstrip(" |").endswith("0.2")


def test_html_decode_rows_carry_per_call():
    ctx = decode_context(_analysis())
    assert ctx["streaming"] and ctx["rows"][0]["per_call"] == "8 ms" and ctx["rows"][0]["rtf"] == "0.2"


def test_study_comparison_reads_prefill_points_only():
    """Streaming layer points stay out of the study's (whole-utterance) comparison."""
    from profiler.analysis.ser import ser_analysis

    recs = []
    for phase, opts in (("prefill", ()), ("streaming", (("chunk", "2"),))):
        spec = PointSpec(kernel="kda", backend="torch", level="layer", T=500, H=4, D=256, phase=phase, options=opts)
        recs.append(PointRecord(spec=spec, status="ok", timing=Timing((1e-3, 1.1e-3, 1.2e-3), "perf_counter_ns",
                                                                      quantity="call_latency")))
    only_stream = ser_analysis(recs[1:], [], [])
    both = ser_analysis(recs, [], [])
    assert only_stream.study.rows == () and len(both.study.rows) == 1
