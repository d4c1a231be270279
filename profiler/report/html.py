"""The HTML report: one self-contained file (inline SVG figures, inline CSS, no scripts or fonts).

``render_run(run_dir)`` rebuilds the report of one run folder from its stored records alone;
``render_runs(run_dirs, out=...)`` overlays several runs (two devices, two commits) with a legend per
run. Jinja2 autoescaping is on: every string from a run folder (scenario name, labels, paths, error
messages) is escaped; only the SVG figures serprof itself drew are inserted as markup.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from profiler.analysis.roofline import series_peaks
from profiler.analysis.ser import audio_seconds
from profiler.analysis.summary import RunAnalysis, analyze
from profiler.core import fmt
from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.core.paths import make_dir, write_file
from profiler.core.records import Energy, energy_per_call
from profiler.core.version import __version__
from profiler.report.figures import render_figures
from profiler.report.text import (
    VARLEN_COLUMNS,
    audio_rates,
    baseline_text,
    cache_state,
    crossover_text,
    decode_sentences,
    fit_range,
    fmt_audio,
    fmt_bytes,
    fmt_ratio,
    fmt_s,
    fmt_slope,
    fmt_T,
    launch_text,
    payoff_text,
    predicted_max_T,
    sentences,
    ser_sentences,
    summary_rows,
    varlen_rows,
)
from profiler.store.runs import RunDir

jinja2 = lazy_import('jinja2')
markupsafe = lazy_import('markupsafe')

REPORT_NAME = "report.html"


def load_analysis(run_dir: Path | str, baseline: str | None = None) -> RunAnalysis:
    """Open a run folder (UsageError if it is not one) and analyse it."""
    return analyze(RunDir.open(run_dir).load(), baseline=baseline)


def _flatten(prefix: str, obj: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            _flatten(f"{prefix}.{k}" if prefix else str(k), obj[k], out)
    elif isinstance(obj, (list, tuple)) and obj and all(isinstance(x, Mapping) for x in obj):
        for i, x in enumerate(obj):
            _flatten(f"{prefix}[{i}]", x, out)
    else:
        out.append((prefix, obj if isinstance(obj, str) else json.dumps(obj, default=str)))


def _energy_cell(e: Energy | None) -> str:
    """Net J per call, gross in brackets; "below resolution" rather than a negative or noise number."""
    value, state = energy_per_call(e)
    gross = f" (gross {e.gross_energy_j:.3g} J)" if e is not None and e.gross_energy_j is not None else ""
    if state == "ok":
        return f"{value:.3g} J{gross}"
    return f"below resolution{gross}" if state == "below_resolution" else "–"


def _series_tables(a: RunAnalysis) -> list[dict]:
    env = a.manifest.environment or {}
    tables = []
    for s in a.series:
        fit = a.fits[s.key]
        c = a.comparison_for(s.key)
        rows_by_T = {r.T: r for r in c.rows} if c else {}
        peaks = series_peaks(s.key, a.manifest.calibration, env, a.devices)
        cs = a.call_series_for(s.key)
        cfit = a.call_fits.get(s.key)
        lb = a.launch_for(s.key)
        fc = a.first_calls_for(s.key)
        lat = "latency" if cs is None else s.quantity
        fit_text = [f"{lat} exponent {fmt_slope(fit.slope)} on {fit_range(fit.slope)}" if fit.slope else
                    f"{lat} exponent: fewer than two lengths"]
        if cs is not None:
            fit_text.append(f"call-latency exponent {fmt_slope(cfit.slope)} on {fit_range(cfit.slope)}"
                            if cfit and cfit.slope else "call-latency exponent: fewer than two lengths")
        if lb is not None:
            fit_text.append(launch_text(lb))
        if fc is not None:
            fit_text.append(f"first call up to {fmt_s(fc.max_s)} (T={fmt_T(fc.max_T)}; compile cache {cache_state(fc.cache_warm)})")
        if fit.cost:
            m = fit.cost
            fit_text.append(f"cost model {m.a:.3g} s + {m.b:.3g} s·T + {m.c:.3g} s·T² on T={m.T_min}..{m.T_max} "
                            f"(max residual {m.max_rel_residual * 100:.0f}%)")
        if fit.memory_slope:
            fit_text.append(f"memory exponent {fmt_slope(fit.memory_slope, ci=False)}")
        if peaks:
            fit_text.append(f"peak used for 'of peak': {peaks[0].label} {fmt.rate(peaks[0].flops_per_s, 'FLOP/s')}"
                            + (f" ({peaks[0].dtype})" if peaks[0].dtype and peaks[0].dtype != "float32" else "")
                            + (f", {fmt.rate(peaks[0].bytes_per_s, 'B/s')}" if peaks[0].bytes_per_s else ""))
        extra0 = (s.points[0].record.extra or {}) if s.points else {}
        formulas = (("FLOP/s = FLOPs / median, FLOPs = " + str(extra0["flops_formula"]),
                     "bytes/s = bytes / median, bytes = " + str(extra0["bytes_formula"]))
                    if extra0.get("flops_formula") and extra0.get("bytes_formula") else ())
        impls = [f"{k.removesuffix('_impl').replace('_', ' ')}: {v}" for k, v in extra0.items() if k.endswith("_impl")]
        calls = {p.T: p for p in cs.points} if cs is not None else {}
        launch = {p.T: p for p in lb.points} if lb is not None else {}
        first = dict(fc.by_T) if fc is not None else {}
        rows = []
        for p in s.points:
            r = rows_by_T.get(p.T)
            cp, lp = calls.get(p.T), launch.get(p.T)
            fl = p.record.flops / p.median_s if p.record.flops else None
            frac = fl / peaks[0].flops_per_s if fl and peaks and peaks[0].flops_per_s else None
            bw = p.record.bytes_moved / p.median_s if p.record.bytes_moved else None
            frac_bw = bw / peaks[0].bytes_per_s if bw and peaks and peaks[0].bytes_per_s else None
            audio = audio_seconds(p.record)
            rows.append({
                "T": fmt_T(p.T), "audio": fmt_audio(audio), "median": fmt_s(p.median_s),
                "ci": f"{fmt_s(p.ci_low_s)} – {fmt_s(p.ci_high_s)} (±{p.rel_ci * 100:.1f}%)" if math.isfinite(p.rel_ci) else "–",
                "n": p.samples_s.size, "peak": fmt_bytes(p.peak_bytes), "analytic": fmt_bytes(p.analytic_bytes),
                "energy": _energy_cell(p.record.energy),
                "tps": f"{p.tokens_per_s:,.0f}", "speedup": f"{fmt_ratio(r.speedup)}" if r else "–",
                "mem_saving": fmt_ratio(r.memory_saving) if r else "–",
                "flops": fmt.rate(fl, "FLOP/s"), "frac": f"{frac * 100:.1f}%" if frac else "–",
                "bw": fmt.rate(bw, "B/s"), "frac_bw": f"{frac_bw * 100:.1f}%" if frac_bw else "–",
                "flags": "; ".join(p.flags),
                "call": fmt_s(cp.median_s) if cp else "–",
                "overhead": fmt_s(lp.host_overhead_s) if lp else "–",
                "launch_bound": ("yes" if lp.launch_bound else "no") if lp else "–",
                "first": fmt_s(first[p.T]) if p.T in first else "–",
            })
        shape = "".join(f" {t}={v}" for t, v in (("KV", s.key.kv_heads), ("Dv", s.key.value_dim),
                                                    ("window", s.key.window)) if v)
        tables.append({"title": f"{s.key.variant} · {s.key.facet_label} · H={s.key.H} D={s.key.D}"
                                f"{f' (hidden {s.key.hidden})' if s.key.is_layer else ''}{shape}",
                       "fit_text": "; ".join(fit_text) + ".", "rows": rows, "formulas": formulas,
                       "impls": "; ".join(impls),
                       "has_audio": any(r["audio"] != "–" for r in rows),
                       "has_call": cs is not None, "has_first": fc is not None,
                       "median_label": "device time" if cs is not None else "median"})
    return tables


_COND_LABELS = {"sm_clock_mhz": ("SM clock", "MHz"), "mem_clock_mhz": ("memory clock", "MHz"),
                "temp_c": ("GPU temperature", "C"), "power_w": ("GPU power", "W"),
                "freq_mhz": ("CPU frequency", "MHz"), "load_1m": ("load average (1 min)", "")}


def conditions_rows(c) -> list[tuple[str, str]]:
    """The run's measurement conditions as (label, text) rows (``profiler.analysis.conditions.RunConditions``)."""
    if c is None:
        return []
    rows = [("points with conditions", str(c.points))]
    for k, (lo, hi) in c.ranges.items():
        label, unit = _COND_LABELS.get(k, (k, ""))
        text = f"{lo:.4g}" if lo == hi else f"{lo:.4g} – {hi:.4g}"
        rows.append((label, f"{text} {unit}".strip()))
    rows.append(("L2", ", ".join(c.l2)))
    rows.append(("cool-down before each point", ", ".join(f"{x:g} s" for x in c.cooldown_s)))
    if c.clocks_locked:
        rows.append(("GPU clocks locked", ", ".join("yes" if x else "no" for x in c.clocks_locked)))
    if c.affinity:
        rows.append(("CPUs pinned", ",".join(map(str, c.affinity))))
    rows.append(("re-measured after throttling", ", ".join(c.remeasured) or "none"))
    rows.append(("THROTTLED (not gated on)", "; ".join(f"{pid} ({', '.join(r)})" for pid, r in c.throttled) or "none"))
    return rows


def run_context(a: RunAnalysis) -> dict:
    """Template context of one run (all strings; the template escapes them)."""
    m = a.manifest
    env: list[tuple[str, str]] = []
    _flatten("environment", m.environment, env)
    _flatten("scenario", m.scenario, env)
    _flatten("calibration", m.calibration or {}, env)
    _flatten("settings", asdict(m.settings), env)
    env += [("serprof_version", m.serprof_version), ("created_at", m.created_at), ("finished_at", str(m.finished_at))]
    payoffs = {p.variant + p.facet: payoff_text(p) for p in (a.ser.payoffs if a.ser else [])}
    crossovers = []
    for c in a.comparisons:
        ms, mm, me = c.max_speedup, c.max_memory_saving, c.max_energy_saving
        cc = a.call_comparison_for(c.series.key)
        both = (f"device time: {crossover_text(c.latency, 'faster')}; call latency: {crossover_text(cc.latency, 'faster')}"
                + (f" (max call-latency speedup {fmt_ratio(cc.max_speedup[0])} at T={fmt_T(cc.max_speedup[1])})"
                   if cc.max_speedup else "")) if cc is not None else None
        crossovers.append({
            "variant": c.series.key.variant, "facet": c.series.key.facet_label,
            "latency": (both or crossover_text(c.latency, "faster")) + (f"; in audio: {payoffs[c.series.key.variant + c.series.key.facet_label]}"
                                                    if c.series.key.variant + c.series.key.facet_label in payoffs else ""),
            "memory": crossover_text(c.memory, "smaller"),
            "energy": crossover_text(c.energy, "lower") if c.energy.kind != "n/a" else "no energy",
            "max_speedup": f"{fmt_ratio(ms[0])} at T={fmt_T(ms[1])}" if ms else "–",
            "max_mem": f"{fmt_ratio(mm[0])} at T={fmt_T(mm[1])}" if mm else "–",
            "max_energy": f"{fmt_ratio(me[0])} at T={fmt_T(me[1])}" if me else "–",
        })
    frontiers = [{
        "variant": f.key.variant, "facet": f.key.facet_label, "longest": fmt_T(f.longest_ok_T),
        "failed": fmt_T(f.first_failed_T), "reason": f"{f.failed_status}: {f.failed_reason or ''}" if f.failed_status else "–",
        "device_mem": fmt_bytes(f.device_memory_bytes), "predicted": predicted_max_T(f) if f.predicted_max_T is not None else "–",
        "note": f.note,
    } for f in a.frontiers]
    correctness = [{
        "id": r.id, "reference": r.correctness.reference, "checked_T": fmt_T(r.correctness.checked_T),
        "abs": _e(r.correctness.max_abs_err), "rel": _e(r.correctness.max_rel_err),
        "grad": _e(r.correctness.grad_max_rel_err), "tol": _e(r.correctness.tolerance), "passed": r.correctness.passed,
    } for r in a.correctness]
    return {
        "run_id": m.run_id, "scenario_name": str((m.scenario or {}).get("name", "–")), "created_at": m.created_at,
        "path": str(a.run.path), "sentences": sentences(a), "summary_rows": summary_rows(a),
        "load_warnings": a.run.warnings, "series_tables": _series_tables(a), "crossovers": crossovers,
        "baseline": baseline_text(a.baseline, {s.key.causal for s in a.series}) if a.baseline else "–",
        "no_crossover_reason": "no softmax baseline series in this run" if a.baseline is None
        else "no other series shares the baseline's device, dtype, mode and batch",
        "two_timings": a.two_timings,
        "launch": [{"variant": x.key.variant, "facet": x.key.facet_label, "text": launch_text(x)} for x in a.launch],
        "first_calls": [{"variant": f.key.variant, "facet": f.key.facet_label, "max": fmt_s(f.max_s),
                         "at": fmt_T(f.max_T), "per_T": ", ".join(f"{fmt_T(T)}: {fmt_s(v)}" for T, v in f.by_T),
                         "cache": cache_state(f.cache_warm) + (f" ({f.cache_dir})" if f.cache_dir else ""),
                         "notes": "; ".join(f.notes)} for f in a.first_calls],
        "frontiers": frontiers, "status_counts": dict(sorted(a.status_counts.items())),
        "failures": [{"id": r.id, "status": r.status, "reason": r.reason or ""} for r in a.failures + a.wrong],
        "flagged": [(pid, "; ".join(fl)) for pid, fl in a.flagged], "correctness": correctness,
        "interpreted": [{"id": r.id, "status": r.status,
                         "rel": _e(r.correctness.max_rel_err) if r.correctness else "–"} for r in a.interpreted],
        "environment": env,
        "conditions": conditions_rows(a.conditions),
        "ser": ser_context(a),
        "decode": decode_context(a),
        "varlen": {"columns": VARLEN_COLUMNS, "rows": varlen_rows(a.varlen)} if a.varlen is not None else None,
        "devices": [{
            "model": i.model, "device": i.device, "points": i.points, "hosts": ", ".join(i.hosts) or "–",
            "memory": fmt_bytes(i.memory_bytes), "memory_source": i.memory_source,
            "calibration": i.calibration_source,
        } for i in (a.devices.infos if a.devices else [])],
        "devices_note": ("several device models: series are split by model, never averaged" if a.devices and a.devices.multi
                         else ("the environment above describes the submitting host, not the measuring nodes"
                               if a.devices and a.devices.submit_host else "")),
    }


def _with_ci(x: float | None, ci: tuple[float, float] | None) -> str:
    if x is None:
        return "–"
    return fmt_s(x) + (f" [{fmt_s(ci[0])}, {fmt_s(ci[1])}]" if ci else "")


def ser_context(a: RunAnalysis) -> dict | None:
    """The SER section: study comparison, payoff durations, utterance replays (None without layer points)."""
    ser = a.ser
    if ser is None:
        return None
    payoff = {(p.layer, p.series): p for p in ser.payoffs}
    study = []
    for r in ser.study.rows:
        p = payoff.get((r.layer, r.series))
        study.append({
            "layer": r.layer, "series": r.series, "mean": fmt_s(r.replay_mean_s), "p95": fmt_s(r.replay_p95_s),
            "ups": f"{r.utterances_per_s:,.1f}" if r.utterances_per_s is not None else "–",
            "peak": fmt_bytes(r.replay_peak_bytes), "speedup": fmt_ratio(r.speedup_vs_softmax),
            "memory": fmt_ratio(r.memory_ratio_vs_softmax),
            "first": (fmt_audio(r.pays_off_from_audio_s) + (f" ({r.note})" if r.note else ""))
            if r.pays_off_from_audio_s is not None else "–",
            "interpolated": payoff_text(p) if p else ("baseline" if r.layer == "softmax" else "–"),
            "longest": fmt_audio(r.longest_audio_s),
        })
    replays = [{
        "layer": r.layer, "series": r.series, "config": f"{r.backend} · {r.device} {r.dtype} · batch {r.batch}",
        "n": r.n, "mean": _with_ci(r.mean_s, r.mean_ci), "p50": _with_ci(r.p50_s, r.p50_ci),
        "p95": _with_ci(r.p95_s, r.p95_ci), "max": fmt_s(r.max_s), "total": fmt_s(r.total_s),
        "ups": f"{r.utterances_per_s:,.1f}" if r.utterances_per_s is not None else "–",
        "peak": fmt_bytes(r.peak_bytes), "audio": fmt_audio(r.audio_s),
        "rtf": f"{r.real_time_factor:.3g}" if r.real_time_factor is not None else "–",
        "distribution": r.distribution,
    } for r in ser.replays]
    return {"sentences": ser_sentences(a), "study": study, "replays": replays,
            "rates": "; ".join(audio_rates(ser.rates)) or "no audio rates stored (T given directly)"}


def decode_context(a: RunAnalysis) -> dict | None:
    """The decode / streaming section (None without such points): per-token cost, slope, carried memory."""
    d = a.decode
    if d is None:
        return None
    rows = []
    for s in d.series:
        for p in s.points:
            rows.append({
                "variant": s.variant, "facet": s.facet, "T": fmt_T(p.T), "audio": fmt_audio(p.audio_s),
                "per_call": fmt_s(p.per_call_s), "per_token": fmt_s(p.per_token_s), "tps": f"{p.tokens_per_s:,.0f}",
                "batch_tps": f"{p.batch_tokens_per_s:,.0f}", "carried": fmt_bytes(p.carried_bytes),
                "analytic": fmt_bytes(p.carried_analytic_bytes), "kind": s.carried_kind,
                "rtf": f"{p.real_time_factor:.3g}" if p.real_time_factor is not None else "–",
                "bw": f"{100 * p.bandwidth_fraction:.2g}%" if p.bandwidth_fraction is not None else "–",
            })
    return {"sentences": decode_sentences(d), "rows": rows, "frame_rate": f"{d.frame_rate:g}",
            "streaming": any(s.phase == "streaming" for s in d.series)}


def _e(x: float | None) -> str:
    return "–" if x is None else f"{x:.2g}"


def _env():
    return jinja2.Environment(loader=jinja2.PackageLoader("profiler.report", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)


def render_html(analyses: Sequence[RunAnalysis], out: Path) -> Path:
    """Draw figures into ``out.parent / 'figures'`` and write the HTML report to ``out``."""
    out = Path(out)
    make_dir(out.parent, "--out")
    figs, notes = render_figures(analyses, out.parent / "figures")
    title = " vs ".join(str((a.manifest.scenario or {}).get("name") or a.manifest.run_id) for a in analyses)
    html = _env().get_template("report.html.j2").render(
        title=title, version=__version__, runs=[run_context(a) for a in analyses],
        figures=[{"name": f.name, "title": f.title, "caption": f.caption, "svg": markupsafe.Markup(f.svg)} for f in figs],
        figure_notes=notes,
    )
    return write_file(out, html, "--out")


def render_run(run_dir: Path | str, *, baseline: str | None = None, out: Path | str | None = None) -> Path:
    """Write ``report.html`` and ``figures/`` into the run folder (or ``out``); return the HTML path."""
    run_dir = Path(run_dir)
    a = load_analysis(run_dir, baseline)
    return render_html([a], Path(out) if out else run_dir / REPORT_NAME)


def render_runs(run_dirs: Sequence[Path | str], *, out: Path | str, baseline: str | None = None) -> Path:
    """Overlay several runs in one report at ``out`` (figures in ``out``'s folder); return its path."""
    if not run_dirs:
        raise UsageError("give at least one run folder")
    analyses = [load_analysis(d, baseline) for d in run_dirs]
    labels = [a.label for a in analyses]
    if len(set(labels)) != len(labels):
        raise UsageError(f"the same run appears twice: {', '.join(labels)}")
    return render_html(analyses, Path(out))
