"""Decode analysis values: per-token latency, its slope in T, carried-bytes slope, crossover T*, RTF."""

from __future__ import annotations

import pytest

from profiler.analysis.decode import analyze_decode
from profiler.analysis.series import build_series
from profiler.core.records import PointRecord, PointSpec, Timing


def _rec(kernel, backend, T, per_call_s, carried, phase="decode", opt=("steps", "2")):
    spec = PointSpec(kernel=kernel, backend=backend, T=T, phase=phase, options=(opt,))
    samples = tuple(per_call_s * (1 + 0.001 * i) for i in range(-3, 4))
    return PointRecord(spec=spec, status="ok", timing=Timing(samples, "perf_counter_ns", quantity="call_latency"),
                       extra={"carried_bytes": carried, "carried_bytes_analytic": carried,
                              "carried_kind": "cache" if kernel == "softmax" else "state"})


def _run(phase="decode", opt=("steps", "2")):
    recs = []
    for T in (1024, 2048, 4096, 8192, 16384):
        recs.append(_rec("softmax", "sdpa", T, 2e-6 * T, 2 * 4 * T * 64 * 4, phase, opt))   # linear in T
        recs.append(_rec("retnet", "torch", T, 4e-3, 65536, phase, opt))                   # flat
    return analyze_decode(build_series(recs), 50.0)


def test_slopes_memory_and_crossover():
    d = _run()
    by = {s.kernel: s for s in d.series}
    assert by["softmax"].slope.slope == pytest.approx(1.0, abs=0.02) and by["retnet"].slope.slope == pytest.approx(0, abs=0.02)
    assert by["softmax"].memory_slope == pytest.approx(1.0) and by["retnet"].memory_slope == pytest.approx(0.0)
    p = by["retnet"].points[0]
    assert p.per_token_s == pytest.approx(2e-3) and p.tokens_per_s == pytest.approx(500)
    (c,) = d.crossovers
    # softmax per call 2e-6 T equals 4e-3 at T = 2000: between the 1k and 2k grid points
    assert c.kind == "at" and 1024 < c.T_star <= 2048


def test_streaming_real_time_factor():
    d = _run("streaming", ("chunk", "2"))
    retnet = next(s for s in d.series if s.kernel == "retnet")
    # 4 ms per 2-token chunk = 40 ms of audio at 50 frames/s: RTF 0.1
    assert retnet.points[0].real_time_factor == pytest.approx(0.1)
    assert retnet.points[-1].audio_s == pytest.approx(16384 / 50)


def test_prefill_runs_have_no_decode_view():
    spec = PointSpec(kernel="retnet", backend="torch")
    rec = PointRecord(spec=spec, status="ok", timing=Timing((1e-3,) * 5, "perf_counter_ns"))
    assert analyze_decode(build_series([rec])) is None


def test_bandwidth_fraction_and_longest_context_that_fits():
    recs = []
    for T in (1024, 2048, 4096):
        r = _rec("softmax", "sdpa", T, 1e-3, 2048 * T + 4096)
        recs.append(r.__class__(**{**r.__dict__, "bytes_moved": 1e6}))
    d = analyze_decode(build_series(recs), 50.0, bandwidth_bytes_per_s=1e10, device_memory_bytes=2048 * 1000 + 4096)
    (s,) = d.series
    assert s.points[0].bandwidth_fraction == pytest.approx(1e6 / 1e-3 / 1e10)
    assert s.bytes_per_token == pytest.approx(2048) and s.longest_T_fits == 1000


def test_decode_memory_in_the_general_view_is_the_carried_state_or_cache_plus_the_step():
    """A decode step's peak above its inputs leaves out the state / cache it carries: the general
    summary (memory ratios, 'smaller in memory') counts carried + step; prefill points are unchanged."""
    from profiler.analysis.series import point_stats
    from profiler.core.records import Memory

    dec = _rec("softmax", "sdpa", 4096, 1e-3, 2_000_000)
    dec = PointRecord(spec=dec.spec, status="ok", timing=dec.timing, extra=dec.extra,
                      memory=Memory(peak_bytes=5_632, method="torch_profiler", analytic_bytes=4_096))
    st = point_stats(dec)
    assert st.peak_bytes == 2_000_000 + 5_632 and st.analytic_bytes == 2_000_000 + 4_096
    pre = PointRecord(spec=PointSpec(kernel="softmax", backend="sdpa", T=4096), status="ok", timing=dec.timing,
                      extra={"carried_bytes": 2_000_000}, memory=Memory(peak_bytes=5_632, method="torch_profiler"))
    assert point_stats(pre).peak_bytes == 5_632
    unknown = PointRecord(spec=dec.spec, status="ok", timing=dec.timing, memory=dec.memory)
    assert point_stats(unknown).peak_bytes == 5_632
