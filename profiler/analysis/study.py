"""The report section that sets a run beside the SER study's claims (pure: records in, text out; no torch).

``study_section(records) -> StudySection`` with ``rows`` (one per layer: utterance-replay latency and
memory, ratio to the study's softmax baseline, where it pays off) and ``sentences`` (agree / differ
statements). Used by the report (HTML / Markdown) when a run has layer- or model-level points.

The study's efficiency claims (PAPER.md): softmax is the most accurate (serprof measures cost, not
accuracy, so that claim is neither confirmed nor refuted here) and the efficient variants cut latency
and memory "by up to an order of magnitude". Compared here:

* at utterance lengths: mean per-utterance latency and peak memory of the replay points
  (``extra['replay']``), as ratios ``softmax / variant`` (> 1: the variant is cheaper);
* over audio duration: the shortest measured duration from which each variant is faster than the
  softmax baseline at the same T (fixed-T points; duration = T / (frame_rate + text_rate)), and, when
  the baseline could not run (out of memory / skipped), from which length only the variant ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from profiler.core.audio import human_duration

BASELINE = "softmax"
ORDER_OF_MAGNITUDE = 10.0


@dataclass(frozen=True)
class StudyRow:
    layer: str
    series: str                      # "causal" | "non-causal" | "bidirectional"
    replay_mean_s: float | None
    replay_p95_s: float | None
    utterances_per_s: float | None
    replay_peak_bytes: int | None
    speedup_vs_softmax: float | None     # softmax mean / this mean (replay)
    memory_ratio_vs_softmax: float | None
    pays_off_from_audio_s: float | None  # shortest duration where it beats the baseline at equal T
    longest_audio_s: float | None        # longest duration it ran at
    note: str = ""


@dataclass(frozen=True)
class StudySection:
    rows: tuple[StudyRow, ...]
    sentences: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)



def _ratio(x: float) -> str:
    """``12.3x``, ``1.5x``, ``0.031x``: two significant digits below 10 so small ratios never read 0.0x."""
    return f"{x:.1f}x" if x >= 10 else f"{x:.2g}x"

def _series(spec) -> str:
    if dict(spec.options).get("bidirectional") == "1":
        return "bidirectional"
    return "causal" if spec.causal else "non-causal"


def _rate(spec) -> float:
    o = dict(spec.options)
    return float(o.get("frame_rate", 50.0)) + float(o.get("text_rate", 3.0))


def _median(rec) -> float | None:
    return rec.timing.median_s if rec.timing is not None else None


def study_section(records: Iterable) -> StudySection:
    """Rows and sentences comparing layer/model-level records with the study's claims."""
    recs = [r for r in records if r.spec.level in ("layer", "model")]
    if not recs:
        return StudySection((), ("No layer- or model-level points in this run: nothing to compare with the study.",))
    replay: dict[tuple, object] = {}
    fixed: dict[tuple, dict[int, object]] = {}
    for r in recs:
        key = (r.spec.kernel, _series(r.spec), r.spec.level, r.spec.backend, r.spec.dtype, r.spec.B)
        if dict(r.spec.options).get("replay"):
            if r.status == "ok" and "replay" in (r.extra or {}):
                replay[key] = r
        else:
            fixed.setdefault(key, {})[r.spec.T] = r

    def base_key(key):  # the study's baseline, non-causal as the study ran it
        return (BASELINE, "non-causal") + key[2:]

    rows: list[StudyRow] = []
    for key in sorted(set(replay) | set(fixed)):
        name, series = key[0], key[1]
        rep = replay.get(key)
        summ = rep.extra["replay"]["summary"] if rep is not None else None
        brep = replay.get(base_key(key))
        bsum = brep.extra["replay"]["summary"] if brep is not None else None
        speed = mem = None
        if summ and bsum and summ["mean_s"] > 0:
            speed = bsum["mean_s"] / summ["mean_s"]
            if summ.get("peak_bytes") and bsum.get("peak_bytes"):
                mem = bsum["peak_bytes"] / summ["peak_bytes"]
        pays, longest, note = None, None, ""
        pts, bpts = fixed.get(key, {}), fixed.get(base_key(key), {})
        ok_T = sorted(T for T, r in pts.items() if r.status == "ok")
        if ok_T:
            longest = ok_T[-1] / _rate(pts[ok_T[-1]].spec)
        if name != BASELINE:
            for T in ok_T:
                b = bpts.get(T)
                mine = _median(pts[T])
                if b is not None and b.status == "ok" and mine is not None and _median(b) is not None:
                    if mine < _median(b):
                        pays = T / _rate(pts[T].spec)
                        break
                elif b is not None and b.status in ("oom", "skipped", "timeout"):
                    pays = T / _rate(pts[T].spec)
                    note = f"baseline {b.status} at T={T}"
                    break
        rows.append(StudyRow(name, series, summ["mean_s"] if summ else None, summ["p95_s"] if summ else None,
                             summ["utterances_per_s"] if summ else None, summ.get("peak_bytes") if summ else None,
                             speed, mem, pays, longest, note))

    sentences = ["The study reports softmax as the most accurate layer; serprof measures cost only, so this run "
                 "neither confirms nor refutes the accuracy claim."]
    eff = [r for r in rows if r.layer not in (BASELINE, "mha") and r.speedup_vs_softmax is not None]
    if eff:
        best = max(eff, key=lambda r: r.speedup_vs_softmax)
        verdict = "agrees with" if best.speedup_vs_softmax >= ORDER_OF_MAGNITUDE else (
            "partly agrees with" if best.speedup_vs_softmax > 1 else "differs from")
        sentences.append(
            f"At utterance lengths (replay), the largest latency reduction against the softmax baseline is "
            f"{_ratio(best.speedup_vs_softmax)} ({best.layer}, {best.series}); this {verdict} the study's "
            f"'up to an order of magnitude'.")
        slower = [r.layer for r in eff if r.speedup_vs_softmax < 1]
        if slower:
            sentences.append(f"Slower than the baseline per utterance in this run: {', '.join(sorted(set(slower)))}.")
        mems = [r for r in eff if r.memory_ratio_vs_softmax is not None]
        if mems:
            bm = max(mems, key=lambda r: r.memory_ratio_vs_softmax)
            sentences.append(f"Peak memory at utterance lengths: up to {_ratio(bm.memory_ratio_vs_softmax)} lower "
                             f"than the baseline ({bm.layer}).")
    pay = [r for r in rows if r.pays_off_from_audio_s is not None and r.layer != BASELINE]
    for r in pay:
        sentences.append(f"{r.layer} ({r.series}) is cheaper than the softmax baseline from "
                         f"{_human(r.pays_off_from_audio_s)} of audio{' (' + r.note + ')' if r.note else ''}.")
    return StudySection(tuple(rows), tuple(sentences))


def _human(seconds: float) -> str:
    return human_duration(seconds)


def to_markdown(section: StudySection) -> str:
    """The section as Markdown (table + sentences)."""
    def ms(x):
        return "-" if x is None else f"{x * 1e3:.1f}"

    def ratio(x):
        return "-" if x is None else _ratio(x)

    lines = ["| layer | series | replay mean ms | p95 ms | utt/s | peak MiB | speed-up vs softmax | memory vs softmax "
             "| pays off from | longest audio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in section.rows:
        lines.append(
            f"| {r.layer} | {r.series} | {ms(r.replay_mean_s)} | {ms(r.replay_p95_s)} | "
            f"{'-' if r.utterances_per_s is None else f'{r.utterances_per_s:.1f}'} | "
            f"{'-' if r.replay_peak_bytes is None else f'{r.replay_peak_bytes / 2**20:.1f}'} | "
            f"{ratio(r.speedup_vs_softmax)} | {ratio(r.memory_ratio_vs_softmax)} | "
            f"{'-' if r.pays_off_from_audio_s is None else _human(r.pays_off_from_audio_s)} | "
            f"{'-' if r.longest_audio_s is None else _human(r.longest_audio_s)} |")
    return "\n".join(lines + [""] + [f"- {s}" for s in section.sentences]) + "\n"
