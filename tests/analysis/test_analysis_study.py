"""The study-comparison section over synthetic records (no torch)."""

from __future__ import annotations

from profiler.analysis.study import study_section
from profiler.core.records import Memory, PointRecord, PointSpec, Timing
from profiler.report.text import study_sentences, study_table

RATES = (("frame_rate", "50"), ("text_rate", "3"))


def _replay(kernel, causal, mean_s, peak):
    spec = PointSpec(kernel=kernel, backend="torch", level="layer", T=583, D=256, causal=causal,
                     options=tuple(sorted(RATES + (("replay", "3"), ("distribution", "msp-podcast-like")))))
    summ = {"mean_s": mean_s, "p95_s": mean_s * 2, "utterances_per_s": 1 / mean_s, "peak_bytes": peak}
    return PointRecord(spec=spec, status="ok", timing=Timing((mean_s,) * 3, "perf_counter_ns"),
                       extra={"replay": {"summary": summ}})


def _fixed(kernel, causal, T, t_s, status="ok"):
    spec = PointSpec(kernel=kernel, backend="torch", level="layer", T=T, D=256, causal=causal, options=RATES)
    if status != "ok":
        return PointRecord(spec=spec, status=status, reason="predicted to exceed the memory budget")
    return PointRecord(spec=spec, status="ok", timing=Timing((t_s,) * 3, "perf_counter_ns"),
                       memory=Memory(peak_bytes=1, method="x"))


def test_study_section_ratios_and_payoff():
    recs = [_replay("softmax", False, 0.100, 4000), _replay("retnet", True, 0.008, 400),
            _replay("gsa", True, 0.200, 800),
            _fixed("softmax", False, 3180, 1.0), _fixed("softmax", False, 6360, 4.0),
            _fixed("softmax", False, 63600, None, status="skipped"),
            _fixed("retnet", True, 3180, 2.0), _fixed("retnet", True, 6360, 3.0), _fixed("retnet", True, 63600, 30.0),
            _fixed("gsa", True, 3180, 5.0), _fixed("gsa", True, 6360, 9.0), _fixed("gsa", True, 63600, 90.0)]
    sec = study_section(recs)
    rows = {r.layer: r for r in sec.rows}
    assert abs(rows["retnet"].speedup_vs_softmax - 12.5) < 1e-9
    assert abs(rows["retnet"].memory_ratio_vs_softmax - 10.0) < 1e-9
    assert rows["retnet"].pays_off_from_audio_s == 6360 / 53          # 2 min: first T where it is faster
    assert rows["gsa"].pays_off_from_audio_s == 63600 / 53            # only ran where the baseline could not
    assert "skipped" in rows["gsa"].note
    assert sec.best_speedup.layer == "retnet" and sec.claim == "agrees" and sec.slower == ("gsa",)
    assert [r.layer for r in sec.payoffs] == ["gsa", "retnet"]
    text = " ".join(study_sentences(sec))
    assert "12.5x (retnet" in text and "agrees with" in text
    assert "Slower than the baseline per utterance in this run: gsa" in text
    table = study_table(sec)
    assert len(table) == 2 + len(sec.rows)         # header, rule, one line per row


def test_study_section_without_layer_points():
    sec = study_section([])
    assert sec.rows == () and not sec.has_layers and "nothing to compare" in study_sentences(sec)[0]
