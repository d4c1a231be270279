"""Human units and the report's sentences and summary table (shared by HTML and Markdown).

Values stay SI in analysis; this module is where they become text ("12.3 ms", "1.5 GiB", "9,927").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from profiler.analysis.fits import SlopeFit
from profiler.analysis.ser import audio_rate_of_series
from profiler.analysis.summary import RunAnalysis
from profiler.core import fmt
from profiler.core.audio import human_duration
from profiler.report import groups

#: The study's claim checked on the user's run: "up to an order of magnitude".
ORDER_OF_MAGNITUDE = 10.0


def fmt_s(x: float | None) -> str:
    return fmt.seconds(x)


def fmt_bytes(x: float | None) -> str:
    return fmt.bytes_iec(x)


def fmt_T(T: float | None) -> str:
    return fmt.count(T)


def fmt_audio(seconds: float | None) -> str:
    """Seconds of audio for display (``5.5 s``, ``3.15 min``); ``–`` when T did not come from audio."""
    if seconds is None or not math.isfinite(seconds):
        return "–"

    return human_duration(seconds)


def fmt_ratio(x: float | None) -> str:
    return fmt.ratio(x)


def noisy_fit(series, fit: SlopeFit | None) -> bool:
    """True when a point inside the fitted range carries a noise flag (the exponent is then doubtful)."""
    if fit is None:
        return False
    return any(p.flags for p in series.points if fit.T_min <= p.T <= fit.T_max)


def fmt_slope(f: SlopeFit | None, ci: bool = True) -> str:
    if f is None:
        return "–"
    if not ci or f.ci_high - f.ci_low < 0.005:
        return f"{f.slope:.2f}"
    return f"{f.slope:.2f} [{f.ci_low:.2f}, {f.ci_high:.2f}]"


@dataclass(frozen=True)
class SummaryRow:
    variant: str
    facet: str
    is_baseline: bool
    slope: str
    slope_range: str
    memory_slope: str
    crossover: str
    memory_crossover: str
    max_speedup: str
    max_memory_saving: str
    longest_T: str
    group: str = "other"


def _call_short(a: RunAnalysis, key) -> str:
    """`` (call latency: T*≈12,000)`` beside the device-time crossover in runs with two timings."""
    cc = a.call_comparison_for(key) if a.two_timings else None
    return f" (call latency: {cc.latency.short})" if cc is not None else ""


def summary_rows(a: RunAnalysis) -> list[SummaryRow]:
    """One row per series, sorted by kernel group (``report.groups``), then in the analysis' order."""
    rows = []
    notes = a.manifest.notes
    for s in sorted(a.series, key=lambda s: groups.rank(groups.group_of(s.key.kernel, notes))):
        fit = a.fits[s.key]
        c = a.comparison_for(s.key)
        fr = a.frontier_for(s.key)
        is_base = (a.baseline is not None and (s.key.kernel, s.key.backend, s.key.causal) == (
            a.baseline.kernel, a.baseline.backend, a.baseline.causal)) or any(
            x.baseline.key == s.key for x in a.comparisons)
        ms = c.max_speedup if c else None
        mm = c.max_memory_saving if c else None

        rate = audio_rate_of_series(s)
        in_audio = (lambda T: f" ({fmt_audio(T / rate)})" if rate and T else "")  # noqa: E731
        longest = fmt_T(fr.longest_ok_T) + in_audio(fr.longest_ok_T) if fr else "–"
        if fr and fr.first_failed_T is not None and rate:
            longest += f"; {fr.failed_status} at {fmt_T(fr.first_failed_T)}{in_audio(fr.first_failed_T)}"
        elif fr and fr.first_failed_T is not None:
            longest += f" ({fr.failed_status} at {fmt_T(fr.first_failed_T)})"
        rows.append(SummaryRow(
            variant=s.key.variant, facet=s.key.facet_label, is_baseline=is_base,
            slope=fmt_slope(fit.slope) + (" (noisy)" if noisy_fit(s, fit.slope) else ""), slope_range=fit.slope.range_text if fit.slope else "–",
            memory_slope=fmt_slope(fit.memory_slope, ci=False),
            crossover="baseline" if is_base else ((c.latency.short + _call_short(a, s.key)) if c else "no baseline"),
            memory_crossover="baseline" if is_base else (c.memory.short if c else "–"),
            max_speedup=f"{fmt_ratio(ms[0])} @ {fmt_T(ms[1])}" if ms else "–",
            max_memory_saving=f"{fmt_ratio(mm[0])} @ {fmt_T(mm[1])}" if mm else "–",
            longest_T=longest, group=groups.group_of(s.key.kernel, notes),
        ))
    return rows


def device_sentence(a: RunAnalysis) -> str | None:
    """Which device models measured the run, when that is more than one (or not the manifest's host)."""
    d = a.devices
    if d is None:
        return None
    if d.multi:
        named = [i for i in d.infos if i.key]
        parts = [f"{i.model} ({i.points} points{', on ' + ', '.join(i.hosts) if i.hosts else ''})" for i in named]
        loose = sum(i.points for i in d.infos if not i.key)
        return (f"Measured on {len(named)} device models: " + "; ".join(parts)
                + (f" ({loose} point(s) without a device, e.g. skipped before running)" if loose else "")
                + ". Every series, fit and comparison is per device model; nothing is averaged across models.")
    if d.submit_host:
        return ("The manifest's environment describes the host that submitted the SLURM jobs; device names, "
                "memory and calibration come from each record's worker and each shard's fingerprint.")
    return None


def sentences(a: RunAnalysis) -> list[str]:
    """The report's answers, one sentence each."""
    out: list[str] = []
    dev = device_sentence(a)
    if dev:
        out.append(dev)
    multi_facet = len({s.key.facet for s in a.series}) > 1
    name = (lambda k: k.label) if multi_facet else (lambda k: k.variant)
    if not a.series:
        out.append("No point ran successfully, so there is nothing to fit; see the failures below.")
    else:
        fits = [f"{name(s.key)} {fmt_slope(a.fits[s.key].slope)}"
                + (" (noisy points in range)" if noisy_fit(s, a.fits[s.key].slope) else "")
                for s in a.series if a.fits[s.key].slope]
        if fits and a.two_timings:
            out.append("Device time grows as T^k with k (95% CI, fitted on the upper part of each sweep): "
                       + "; ".join(fits) + ".")
            cfits = [f"{name(s.key)} {fmt_slope(a.call_fits[s.key].slope)}" for s in a.call_series
                     if a.call_fits[s.key].slope]
            if cfits:
                out.append("Call latency (one isolated call, host included) grows as T^k with k: " + "; ".join(cfits) + ".")
        elif fits:
            out.append("Latency grows as T^k with k (95% CI covering sampling noise and point-to-point scatter, fitted on the upper part of each sweep): "
                       + "; ".join(fits) + ".")
    if a.baseline is None:
        if a.series:
            out.append("No softmax series was measured, so there is no baseline to compare with.")
    else:
        out.append(f"Baseline: {a.baseline} ({'causal' if a.baseline.causal else 'non-causal'} softmax"
                   f"{'' if a.baseline.kernel == 'softmax' else ' replaced by the user'}); ratios above 1 favour the variant.")
        # the headline is about the efficient variants; softmax variants only when nothing else ran
        cmps = [c for c in a.comparisons if c.series.key.kernel != "softmax"] or a.comparisons
        if cmps and a.two_timings:
            out.append("Faster than the baseline in device time: " + "; ".join(
                f"{name(c.series.key)} {c.latency.text('faster')}" for c in cmps) + ".")
            ccmps = [x for x in (a.call_comparison_for(c.series.key) for c in cmps) if x is not None]
            if ccmps:
                out.append("Faster than the baseline in call latency: " + "; ".join(
                    f"{name(c.series.key)} {c.latency.text('faster')}" for c in ccmps) + ".")
            bound = [x for x in a.launch if x.any]
            if bound:
                out.append("Launch-bound (device time under half the call latency): " + "; ".join(
                    f"{name(x.key)} {x.text()}" for x in bound) + ".")
        elif cmps:
            out.append("Faster than the baseline: " + "; ".join(
                f"{name(c.series.key)} {c.latency.text('faster')}" for c in cmps) + ".")
            out.append("Smaller in memory: " + "; ".join(
                f"{name(c.series.key)} {c.memory.text('smaller')}" for c in cmps) + ".")
            if any(c.energy.kind != "n/a" for c in cmps):
                out.append("Lower in energy: " + "; ".join(
                    f"{name(c.series.key)} {c.energy.text('lower')}" for c in cmps if c.energy.kind != "n/a") + ".")
        best = max(((c.max_speedup, c) for c in cmps if c.max_speedup), key=lambda x: x[0][0], default=None)
        if best:
            (r, T), c = best
            verdict = ("reaches the study's \"up to an order of magnitude\"" if r >= ORDER_OF_MAGNITUDE
                       else "stays below the study's \"up to an order of magnitude\" (10×)")
            out.append(f"Largest measured speedup: {fmt_ratio(r)} ({name(c.series.key)} at T={fmt_T(T)}); "
                       f"this run {verdict} within its lengths.")
        bestm = max(((c.max_memory_saving, c) for c in cmps if c.max_memory_saving),
                    key=lambda x: x[0][0], default=None)
        if bestm:
            (r, T), c = bestm
            if r > 1.0:
                out.append(f"Largest measured memory saving: {fmt_ratio(r)} ({name(c.series.key)} at T={fmt_T(T)}).")
            else:
                out.append(f"No mechanism used less peak memory than the baseline at any measured T "
                           f"(best ratio {fmt_ratio(r)}, {name(c.series.key)} at T={fmt_T(T)}).")
    stopped = [f for f in a.frontiers if f.first_failed_T is not None]
    if a.series:
        longest = max((f.longest_ok_T for f in a.frontiers if f.longest_ok_T), default=None)
        txt = f"Longest sequence measured: T={fmt_T(longest)}."
        if stopped:
            txt += " Stopped early: " + "; ".join(
                f"{name(f.key)} {f.failed_status} at T={fmt_T(f.first_failed_T)}" for f in stopped) + "."
        out.append(txt)
    trust = []
    if a.flagged:
        trust.append(f"{len(a.flagged)} point(s) carry noise flags (wide CI, few samples or throttling)")
    if a.wrong:
        trust.append(f"{len(a.wrong)} point(s) failed verification and are not shown as performance")
    if a.interpreted:
        trust.append(f"{len(a.interpreted)} interpreted point(s) are correctness evidence only")
    if a.run.warnings:
        trust.append(f"{len(a.run.warnings)} warning(s) while loading the run folder")
    if trust:
        out.append("Trust: " + "; ".join(trust) + ".")
    return out


def ser_sentences(a: RunAnalysis) -> list[str]:
    """The SER section's statements: the study comparison's, then interpolated payoff durations."""
    if a.ser is None:
        return []
    out = list(a.ser.study.sentences)
    for p in a.ser.payoffs:
        out.append(f"Interpolated: {p.layer} ({p.series}, {p.facet}) is faster than the study's softmax layer "
                   f"{p.text}.")
    return out


def decode_sentences(d) -> list[str]:
    """Plain-language answers of the decode / streaming section (``analysis.decode.DecodeAnalysis``)."""
    out = []
    for s in d.series:
        what = "per token" if s.phase == "decode" else f"per chunk of {s.tokens_per_call}"
        first, last = s.points[0], s.points[-1]
        mem = ""
        if first.carried_bytes is not None and last.carried_bytes is not None:
            grows = "constant" if s.memory_slope is not None and abs(s.memory_slope) < 0.1 else "growing"
            mem = (f"; carries {fmt_bytes(first.carried_bytes)} at T={fmt_T(first.T)} and "
                   f"{fmt_bytes(last.carried_bytes)} at T={fmt_T(last.T)} ({s.carried_kind}, {grows} in T)")
        cost = f"{fmt_s(first.per_token_s * s.tokens_per_call)} .. {fmt_s(last.per_token_s * s.tokens_per_call)} {what}"
        bw = (f"; {100 * last.bandwidth_fraction:.2g}% of the calibrated bandwidth at T={fmt_T(last.T)}"
              if last.bandwidth_fraction is not None else "")
        out.append(f"{s.variant} [{s.facet}]: per-token latency ~ T^{fmt_slope(s.slope)}; {cost}; "
                   f"{last.tokens_per_s:,.0f} tokens/s per stream at T={fmt_T(last.T)}{mem}{bw}.")
        if s.longest_T_fits is not None and d.device_memory_bytes:
            out.append(f"{s.variant}: its KV cache ({fmt_bytes(s.bytes_per_token)} per token) fits a context of "
                       f"T ~ {fmt_T(s.longest_T_fits)} ({fmt_audio(s.longest_T_fits / d.frame_rate)} of audio at "
                       f"{d.frame_rate:g} positions/s) in {fmt_bytes(d.device_memory_bytes)} of device memory; "
                       f"a carried state does not grow with T.")
        if s.phase == "streaming":
            live = [p for p in s.points if p.real_time_factor is not None and p.real_time_factor < 1]
            longest = max(live, key=lambda p: p.T) if live else None
            out.append(f"{s.variant}: real-time factor {last.real_time_factor:.3g} at {fmt_audio(last.audio_s)} of "
                       f"context ({d.frame_rate:g} positions/s of audio)"
                       + (f"; keeps up with live audio up to {fmt_audio(longest.audio_s)} measured." if longest
                          else "; does not keep up with live audio in the measured range."))
    for c in d.crossovers:
        if c.kind == "at":
            out.append(f"{c.variant} [{c.facet}] is faster per token than softmax from T* ~ {fmt_T(c.T_star)}.")
        elif c.kind == "always":
            out.append(f"{c.variant} [{c.facet}] is faster per token than softmax at every measured T.")
        else:
            out.append(f"{c.variant} [{c.facet}] is not faster per token than softmax at any measured T.")
    return out
