"""Human units and the report's sentences and summary table (shared by HTML and Markdown).

Values stay SI in analysis; this module is where they become text ("12.3 ms", "1.5 GiB", "9,927").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from profiler.analysis.crossover import Baseline, Variant
from profiler.analysis.fits import SlopeFit
from profiler.analysis.launch import LAUNCH_BOUND_FRACTION
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
    return f" (call latency: {crossover_short(cc.latency)})" if cc is not None else ""


def _across(c) -> str:
    """`` (vs full softmax)`` when a comparison crosses causality (the run lacked the like form)."""
    bc = c.baseline.key.causal
    return "" if bc == c.series.key.causal else f" (vs {'causal' if bc else 'full'} softmax)"


def baseline_text(b: Baseline, causalities: Iterable[bool] = (True, False)) -> str:
    """Which softmax each series is compared with, and why (like with like unless the user chose);
    ``causalities``: those of the run's series (a missing form is mentioned only when some need it)."""
    if b.requested:
        return f"{b.causal} for every series (chosen with --baseline)"
    if b.causal is not None and b.full is not None:
        return (f"{b.causal} for causal series, {b.full} for non-causal ones (like with like; "
                "choose one for all with --baseline)")
    only = b.causal or b.full
    if (not only.causal) not in set(causalities):
        return f"{only} ({'causal' if only.causal else 'non-causal'}, like the series it is compared with)"
    missing = "non-causal" if only.causal else "causal"
    return (f"{only} for every series (the run has no {missing} softmax, so {missing} series are "
            "compared across causality; add it or choose with --baseline)")


def summary_rows(a: RunAnalysis) -> list[SummaryRow]:
    """One row per series, sorted by kernel group (``report.groups``), then in the analysis' order."""
    rows = []
    notes = a.manifest.notes
    for s in sorted(a.series, key=lambda s: groups.rank(groups.group_of(s.key.kernel, notes))):
        fit = a.fits[s.key]
        c = a.comparison_for(s.key)
        fr = a.frontier_for(s.key)
        is_base = (a.baseline is not None and Variant.of(s.key) in a.baseline) or any(
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
            slope=fmt_slope(fit.slope) + (" (noisy)" if noisy_fit(s, fit.slope) else ""), slope_range=fit_range(fit.slope) if fit.slope else "–",
            memory_slope=fmt_slope(fit.memory_slope, ci=False),
            crossover="baseline" if is_base else ((crossover_short(c.latency) + _call_short(a, s.key) + _across(c)) if c else "no baseline"),
            memory_crossover="baseline" if is_base else (crossover_short(c.memory) if c else "–"),
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
        out.append(f"Baseline: {baseline_text(a.baseline, {s.key.causal for s in a.series})}; "
                   "ratios above 1 favour the variant.")
        # the headline is about the efficient variants; softmax variants only when nothing else ran
        cmps = [c for c in a.comparisons if c.series.key.kernel != "softmax"] or a.comparisons
        if cmps and a.two_timings:
            out.append("Faster than the baseline in device time: " + "; ".join(
                f"{name(c.series.key)} {crossover_text(c.latency, 'faster')}" for c in cmps) + ".")
            ccmps = [x for x in (a.call_comparison_for(c.series.key) for c in cmps) if x is not None]
            if ccmps:
                out.append("Faster than the baseline in call latency: " + "; ".join(
                    f"{name(c.series.key)} {crossover_text(c.latency, 'faster')}" for c in ccmps) + ".")
            bound = [x for x in a.launch if x.any]
            if bound:
                out.append("Launch-bound (device time under half the call latency): " + "; ".join(
                    f"{name(x.key)} {launch_text(x)}" for x in bound) + ".")
        elif cmps:
            out.append("Faster than the baseline: " + "; ".join(
                f"{name(c.series.key)} {crossover_text(c.latency, 'faster')}" for c in cmps) + ".")
            out.append("Smaller in memory: " + "; ".join(
                f"{name(c.series.key)} {crossover_text(c.memory, 'smaller')}" for c in cmps) + ".")
            if any(c.energy.kind != "n/a" for c in cmps):
                out.append("Lower in energy: " + "; ".join(
                    f"{name(c.series.key)} {crossover_text(c.energy, 'lower')}" for c in cmps if c.energy.kind != "n/a") + ".")
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
    out = study_sentences(a.ser.study)
    for p in a.ser.payoffs:
        out.append(f"Interpolated: {p.layer} ({p.series}, {p.facet}) is faster than the study's softmax layer "
                   f"{payoff_text(p)}.")
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


# ----------------------------------------------------------------------------- analysis values in words

def crossover_text(c, metric: str = "faster") -> str:
    """A ``Crossover`` as a clause: ``faster from T*≈9,927 (interval 9,736..10,179)``."""
    if c.kind == "always":
        return f"{metric} at every measured T ({fmt_T(c.T_min)}..{fmt_T(c.T_max)})"
    if c.kind == "never":
        return f"never {metric} within the sweep (T≤{fmt_T(c.T_max)})"
    if c.kind == "lost":
        return f"{metric} at short T only, not at T={fmt_T(c.T_max)}"
    if c.kind == "at":
        lo = fmt_T(c.T_low) if c.T_low is not None else "?"
        hi = fmt_T(c.T_high) if c.T_high is not None else f">{fmt_T(c.T_max)}"
        return f"{metric} from T*≈{fmt_T(c.T_star)} (interval {lo}..{hi})"
    return "not comparable (no common lengths)"


def crossover_short(c) -> str:
    """A ``Crossover`` in a table cell: ``T*≈9,927``, ``always``, ``never in sweep``."""
    if c.kind == "at":
        return f"T*≈{fmt_T(c.T_star)}"
    return {"always": "always", "never": "never in sweep", "lost": "short T only"}.get(c.kind, "n/a")


def fit_range(f: SlopeFit) -> str:
    """The lengths an exponent was fitted on: ``T=4096..16384 (3 points)``."""
    return f"T={f.T_min}..{f.T_max} ({f.n_points} points)"


def predicted_max_T(f) -> str:
    """A ``Frontier``'s predicted longest T (or why there is none)."""
    if f.predicted_max_T is None:
        return f.note
    if math.isinf(f.predicted_max_T):
        return "unbounded by the fitted memory model"
    return f"~{f.predicted_max_T:,.0f}"


def _ms_range(r: tuple[float, float]) -> str:
    lo, hi = r[0] * 1e3, r[1] * 1e3
    return f"{lo:.2g} ms" if f"{lo:.2g}" == f"{hi:.2g}" else f"{lo:.2g}-{hi:.2g} ms"


def _short_T(T: float) -> str:
    """16384 -> 16k, 40000 -> 40k, 700 -> 700."""
    if T >= 1000:
        return f"{T / 1000:.0f}k" if T < 1e6 else f"{T / 1e6:.1f}M"
    return f"{T:.0f}"


def launch_text(lb) -> str:
    """One sentence for a ``LaunchBound``: where the series is launch-bound and its host overhead."""
    rng = lb.overhead_range_s()
    oh = f"host overhead {_ms_range(rng)}" if rng else ""
    if not lb.points:
        return "no common lengths of device time and call latency"
    if not lb.any:
        return (f"not launch-bound at any measured T (device time ≥ {LAUNCH_BOUND_FRACTION:.0%} of call latency); "
                f"{oh}")
    if len(lb.bound) == len(lb.points):
        return f"launch-bound at every measured T ({lb.points[0].T:,.0f}..{lb.points[-1].T:,.0f}): {oh}"
    bt = lb.boundary_T
    if bt is not None:
        return f"launch-bound below T~{_short_T(bt)}: {oh}"
    return f"launch-bound at T={', '.join(f'{p.T:,.0f}' for p in lb.bound)}: {oh}"


def cache_state(warm: bool | None) -> str:
    """A compile cache's state at the first call: warm / cold / not recorded."""
    return {True: "warm", False: "cold", None: "not recorded"}[warm]


def payoff_text(p) -> str:
    """A SER ``Payoff`` in seconds of audio: ``from ≈3.2 min of audio (interval ...)``."""
    def hd(s):
        return human_duration(s) if s is not None else "?"

    if p.kind == "at":
        if not p.rate:
            return f"from T*≈{p.T_star:,.0f} (no audio rate stored)"
        hi = hd(p.audio_high_s) if p.audio_high_s else "beyond the sweep"
        return f"from ≈{hd(p.audio_s)} of audio (interval {hd(p.audio_low_s)}..{hi})"
    if p.kind == "always":
        return f"at every measured duration (from {hd(p.T_min / p.rate)})" if p.rate else "at every measured T"
    if p.kind == "never":
        return f"not within the sweep (up to {hd(p.T_max / p.rate)})" if p.rate else "not within the sweep"
    if p.kind == "lost":
        return "at short durations only"
    return "no common lengths with the baseline"


def audio_rates(rates) -> list[str]:
    """``(frames/s, tokens/s)`` pairs as ``50 frames/s + 3 tokens/s``."""
    return [f"{fr:g} frames/s + {tr:g} tokens/s" for fr, tr in rates]


def _study_ratio(x: float) -> str:
    """``12.3x``, ``1.5x``, ``0.031x``: two significant digits below 10 so small ratios never read 0.0x."""
    return f"{x:.1f}x" if x >= 10 else f"{x:.2g}x"


_CLAIM = {"agrees": "agrees with", "partly": "partly agrees with", "differs": "differs from"}


def study_sentences(section) -> list[str]:
    """The study comparison's statements (``analysis.study.StudySection``)."""
    if not section.has_layers:
        return ["No layer- or model-level points in this run: nothing to compare with the study."]
    out = ["The study reports softmax as the most accurate layer; serprof measures cost only, so this run "
           "neither confirms nor refutes the accuracy claim."]
    best = section.best_speedup
    if best is not None:
        out.append(f"At utterance lengths (replay), the largest latency reduction against the softmax baseline is "
                   f"{_study_ratio(best.speedup_vs_softmax)} ({best.layer}, {best.series}); this "
                   f"{_CLAIM[section.claim]} the study's 'up to an order of magnitude'.")
        if section.slower:
            out.append(f"Slower than the baseline per utterance in this run: {', '.join(section.slower)}.")
        bm = section.best_memory
        if bm is not None:
            out.append(f"Peak memory at utterance lengths: up to {_study_ratio(bm.memory_ratio_vs_softmax)} lower "
                       f"than the baseline ({bm.layer}).")
    for r in section.payoffs:
        out.append(f"{r.layer} ({r.series}) is cheaper than the softmax baseline from "
                   f"{human_duration(r.pays_off_from_audio_s)} of audio{' (' + r.note + ')' if r.note else ''}.")
    return out


def study_table(section) -> list[str]:
    """The study comparison's table as Markdown lines."""
    def ms(x):
        return "-" if x is None else f"{x * 1e3:.1f}"

    def ratio(x):
        return "-" if x is None else _study_ratio(x)

    def dur(x):
        return "-" if x is None else human_duration(x)

    lines = ["| layer | series | replay mean ms | p95 ms | utt/s | peak MiB | speed-up vs softmax | memory vs softmax "
             "| pays off from | longest audio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in section.rows:
        lines.append(
            f"| {r.layer} | {r.series} | {ms(r.replay_mean_s)} | {ms(r.replay_p95_s)} | "
            f"{'-' if r.utterances_per_s is None else f'{r.utterances_per_s:.1f}'} | "
            f"{'-' if r.replay_peak_bytes is None else f'{r.replay_peak_bytes / 2**20:.1f}'} | "
            f"{ratio(r.speedup_vs_softmax)} | {ratio(r.memory_ratio_vs_softmax)} | "
            f"{dur(r.pays_off_from_audio_s)} | {dur(r.longest_audio_s)} |")
    return lines


VARLEN_COLUMNS = ("distribution", "tokens", "kernel", "config", "sequences", "median / max length", "padding waste",
                  "packed path", "packed tokens/s", "padded tokens/s", "packed speedup", "worst sequence err")


def varlen_rows(v) -> list[dict[str, str]]:
    """The packed-vs-padded table (``analysis.varlen.VarlenAnalysis``), one dict of cells per row."""
    out = []
    for r in v.rows:
        def tps(x, status):
            return f"{x:,.0f}" if x is not None else (status or "not planned")
        out.append({
            "distribution": r.distribution, "tokens": fmt_T(r.tokens), "kernel": f"{r.kernel}/{r.backend}",
            "config": f"{r.device} {r.dtype} {r.mode} H{r.H} D{r.D}",
            "sequences": "–" if r.count is None else str(r.count),
            "median / max length": "–" if r.max_len is None else f"{r.median_len:g} / {r.max_len}",
            "padding waste": "–" if r.padding_waste is None else f"{100 * r.padding_waste:.0f}%",
            "packed path": r.path or "none",
            "packed tokens/s": tps(r.packed_tokens_per_s, r.packed_status),
            "padded tokens/s": tps(r.padded_tokens_per_s, r.padded_status),
            "packed speedup": "–" if r.speedup is None else f"{r.speedup:.2f}x",
            "worst sequence err": "–" if r.max_rel_err is None else f"{r.max_rel_err:.2g}",
        })
    return out
