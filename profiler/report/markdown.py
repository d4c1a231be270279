"""A short Markdown summary of one or more runs, for a CI job summary or a PR comment.

Deterministic for a given run folder (the bootstrap is seeded), so it is tested against golden files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from profiler.analysis.summary import RunAnalysis
from profiler.report.html import load_analysis
from profiler.report.text import (
    VARLEN_COLUMNS,
    audio_rates,
    decode_sentences,
    fmt_bytes,
    fmt_s,
    fmt_T,
    sentences,
    ser_sentences,
    study_table,
    summary_rows,
    varlen_rows,
)


def _cell(s: str) -> str:
    """Escape a table/text cell: pipes, newlines and HTML (CI summaries render inline HTML)."""
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("*", "\\*").replace("|", "\\|").replace("\n", " "))


def run_markdown(a: RunAnalysis) -> str:
    m = a.manifest
    name = (m.scenario or {}).get("name", m.run_id)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(a.status_counts.items()))
    lines = [f"### serprof: {_cell(name)} (`{_cell(m.run_id)}`)", "", f"Points: {counts or 'none'}.", ""]
    lines += [f"- {_cell(s)}" for s in sentences(a)]
    rows = summary_rows(a)
    if rows:
        lines += ["", "| group | mechanism | config | exponent k [95% CI] | faster than baseline | max speedup | "
                      "max memory saving | longest T |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            mech = f"**{_cell(r.variant)}** (baseline)" if r.is_baseline else _cell(r.variant)
            lines.append("| " + " | ".join([_cell(r.group), mech] + [_cell(x) for x in (r.facet, r.slope, r.crossover, r.max_speedup,
                                                                r.max_memory_saving, r.longest_T)]) + " |")
    lines += decode_markdown(a)
    lines += varlen_markdown(a)
    lines += ser_markdown(a)
    failed = a.failures + a.wrong
    if failed:
        lines += ["", f"<details><summary>{len(failed)} failed or wrong point(s)</summary>", ""]
        lines += [f"- `{_cell(r.id)}`: {_cell(r.status)}, {_cell(r.reason or '')}" for r in failed]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _ci(x, ci) -> str:
    return fmt_s(x) + (f" [{fmt_s(ci[0])}, {fmt_s(ci[1])}]" if ci else "")


def varlen_markdown(a: RunAnalysis) -> list[str]:
    """Packed vs padded variable-length batches: tokens/s (real tokens) per distribution."""
    if a.varlen is None:
        return []
    lines = ["", "#### Packed vs padded variable-length batches", "",
             "tokens/s = real tokens / median call; padded batches compute count x longest tokens.", "",
             "| " + " | ".join(VARLEN_COLUMNS) + " |", "|" + "---|" * len(VARLEN_COLUMNS)]
    for row in varlen_rows(a.varlen):
        lines.append("| " + " | ".join(_cell(row[c]) for c in VARLEN_COLUMNS) + " |")
    return lines


def decode_markdown(a: RunAnalysis) -> list[str]:
    """The decode / streaming part: sentences, then per-token latency and carried memory per T."""
    d = a.decode
    if d is None:
        return []
    lines = ["", "#### Decode and streaming", ""] + [f"- {_cell(s)}" for s in decode_sentences(d)]
    lines += ["", "| series | T | per call | per token | tokens/s | carried (measured) | carried (analytic) | "
                  "real-time factor |",
              "|---|---|---|---|---|---|---|---|"]
    for s in d.series:
        for p in s.points:
            rtf = f"{p.real_time_factor:.3g}" if p.real_time_factor is not None else "–"
            lines.append("| " + " | ".join(_cell(x) for x in (
                s.variant, fmt_T(p.T), fmt_s(p.per_call_s), fmt_s(p.per_token_s), f"{p.tokens_per_s:,.0f}", fmt_bytes(p.carried_bytes),
                fmt_bytes(p.carried_analytic_bytes), rtf)) + " |")
    return lines


def ser_markdown(a: RunAnalysis) -> list[str]:
    """The SER part: the study comparison (table and statements), payoffs, utterance replays."""
    if a.ser is None:
        return []

    lines = ["", "#### Speech emotion recognition: the study's layers", ""]
    if a.ser.rates:
        lines.append(f"Audio duration to T: {_cell('; '.join(audio_rates(a.ser.rates)))}.")
        lines.append("")
    lines += study_table(a.ser.study) + [""]
    lines += [f"- {_cell(s)}" for s in ser_sentences(a)]
    if a.ser.replays:
        lines += ["", "| layer | series | config | utterances | mean [95% CI] | p50 [95% CI] | p95 [95% CI] | max | "
                      "total | utterances/s | peak memory |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in a.ser.replays:
            lines.append("| " + " | ".join(_cell(x) for x in (
                r.layer, r.series, f"{r.backend} {r.device} {r.dtype} B={r.batch}", str(r.n), _ci(r.mean_s, r.mean_ci),
                _ci(r.p50_s, r.p50_ci), _ci(r.p95_s, r.p95_ci), fmt_s(r.max_s), fmt_s(r.total_s),
                f"{r.utterances_per_s:,.1f}" if r.utterances_per_s is not None else "–", fmt_bytes(r.peak_bytes))) + " |")
    return lines


def markdown_summary(run_dirs: Sequence[Path | str], *, baseline: str | None = None) -> str:
    """Markdown for each run folder, separated by blank lines."""
    return "\n".join(run_markdown(load_analysis(d, baseline)) for d in run_dirs)
