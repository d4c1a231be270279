"""The run beside the SER study's claims (pure: records in, values out; no torch, no text).

``study_section(records) -> StudySection`` with ``rows`` (one per layer: utterance-replay latency and
memory, ratio to the study's softmax baseline, where it pays off) and the findings the report states
(``best_speedup`` and how it compares with the claim, ``slower``, ``best_memory``, ``payoffs``).
``profiler.report`` words them (HTML / Markdown) when a run has layer- or model-level points.

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

from dataclasses import dataclass
from typing import Iterable

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
    """The study comparison: per-layer rows and the findings (None / empty: nothing to state)."""

    rows: tuple[StudyRow, ...]
    has_layers: bool = True                  # False: the run has no layer- or model-level points
    best_speedup: StudyRow | None = None     # the efficient layer with the largest replay speed-up
    claim: str | None = None                 # vs "up to an order of magnitude": agrees | partly | differs
    slower: tuple[str, ...] = ()             # efficient layers slower than softmax per utterance
    best_memory: StudyRow | None = None      # the largest replay peak-memory reduction
    payoffs: tuple[StudyRow, ...] = ()       # rows with a duration from which they beat softmax


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
        return StudySection((), has_layers=False)
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

    eff = [r for r in rows if r.layer not in (BASELINE, "mha") and r.speedup_vs_softmax is not None]
    best = max(eff, key=lambda r: r.speedup_vs_softmax) if eff else None
    claim = None
    if best is not None:
        claim = "agrees" if best.speedup_vs_softmax >= ORDER_OF_MAGNITUDE else (
            "partly" if best.speedup_vs_softmax > 1 else "differs")
    mems = [r for r in eff if r.memory_ratio_vs_softmax is not None]
    return StudySection(
        tuple(rows), best_speedup=best, claim=claim,
        slower=tuple(sorted({r.layer for r in eff if r.speedup_vs_softmax < 1})),
        best_memory=max(mems, key=lambda r: r.memory_ratio_vs_softmax) if mems else None,
        payoffs=tuple(r for r in rows if r.pays_off_from_audio_s is not None and r.layer != BASELINE))
