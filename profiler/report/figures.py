"""Figures of a report (matplotlib Agg + seaborn; one style for all).

Each figure is saved as SVG and PNG in ``<out>/figures/`` and returned with its SVG text for
inlining. Faceting: one panel per (device, dtype, mode, batch); when the series span more than one kernel group
besides softmax (``report.groups``), one panel per (facet, group), softmax drawn in each as the reference,
so 30+ curves stay readable. Softmax series are drawn dashed and
thicker (the quadratic baseline family), except in the latency figure of runs with two timings per
CUDA point: there device time is solid and call latency dashed (same colour), softmax marked by its
square markers; in overlays of several runs, each run gets its own marker and
the legend names it. Bands are the 95% CIs of the medians. Interpreted points never appear here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from profiler.analysis.crossover import Variant
from profiler.analysis.roofline import series_peaks
from profiler.analysis.summary import RunAnalysis
from profiler.core.lazy import lazy_import
from profiler.core.paths import make_dir, output_errors
from profiler.report import groups

matplotlib = lazy_import('matplotlib')
plt = lazy_import('matplotlib.pyplot')
sns = lazy_import('seaborn')
mticker = lazy_import('matplotlib.ticker')

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


@dataclass(frozen=True)
class Figure:
    name: str
    title: str
    caption: str
    svg: str                  # inline-ready SVG markup (our own output: no user markup inside)
    svg_path: Path
    png_path: Path


def _setup():
    matplotlib.use("Agg", force=True)

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
    plt.rcParams.update({"svg.fonttype": "path", "figure.dpi": 100, "savefig.bbox": "tight",
                         "axes.titlesize": 10, "legend.fontsize": 8})
    return plt, sns


def _clean_svg(text: str) -> str:
    """SVG file text -> markup fit for inlining in HTML (no prolog, no comments, fluid width)."""
    text = re.sub(r"<\?xml[^>]*\?>", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>", "", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"<svg([^>]*?)\swidth=\"[^\"]*\"\s+height=\"[^\"]*\"", r'<svg\1 class="fig"', text, count=1)
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return text.strip()


class _Styler:
    """Colours per mechanism, line style per family, marker per run (stable across figures)."""

    def __init__(self, analyses: Sequence[RunAnalysis], sns):
        variants = sorted({str(Variant.of(s.key)) for a in analyses for s in a.series},
                          key=lambda v: (not v.startswith("softmax"), v))
        pal = sns.color_palette("tab10", n_colors=max(10, len(variants)))
        self.color = {v: pal[i % len(pal)] for i, v in enumerate(variants)}
        self.multi = len(analyses) > 1

    def kw(self, run_idx: int, key) -> dict:
        v = str(Variant.of(key))
        soft = key.kernel == "softmax"
        return {"color": self.color[v], "linestyle": "--" if soft else "-", "linewidth": 2.0 if soft else 1.5,
                "marker": _MARKERS[run_idx % len(_MARKERS)] if self.multi else ("s" if soft else "o"),
                "markersize": 3.5}

    def label(self, a: RunAnalysis, key) -> str:
        v = key.variant
        return f"{a.label}: {v}" if self.multi else v


def _facets(analyses: Sequence[RunAnalysis]) -> list[tuple]:
    fs = sorted({s.key.facet for a in analyses for s in a.series}, key=lambda f: (f[0], f[1], f[2], f[3]))
    return fs


def _group_of(a: RunAnalysis, key) -> str:
    return groups.group_of(key.kernel, a.manifest.notes)


def _panels(analyses: Sequence[RunAnalysis]) -> list[tuple[tuple, str | None]]:
    """``(facet, group)`` panels: group None (every series) unless two or more non-softmax groups exist."""
    combos = {(s.key.facet, _group_of(a, s.key)) for a in analyses for s in a.series}
    others = groups.ordered(g for _, g in combos if g != groups.SOFTMAX)
    facets = _facets(analyses)
    if len(others) <= 1:
        return [(f, None) for f in facets]
    return [(f, g) for f in facets for g in others if (f, g) in combos]


def _in_panel(a: RunAnalysis, key, facet: tuple, group: str | None) -> bool:
    if key.facet != facet:
        return False
    return group is None or _group_of(a, key) in (group, groups.SOFTMAX)


def _grid(plt, n: int, panel_w: float = 5.2, panel_h: float = 3.6):
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_w * cols + 2.6, panel_h * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _facet_title(f: tuple) -> str:
    """``device · dtype · mode · B=..`` and, for grouped heads or a value dim, ``· H8:KV2 Dv128``."""
    dev, dtype, mode, B = f[:4]
    shape = f[4] if len(f) > 4 else ""
    return f"{dev} · {dtype} · {mode} · B={B}" + (f" · {shape}" if shape else "")


def _legend(fig, axes):
    handles, labels = {}, []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in handles:
                handles[l] = h
                labels.append(l)
    if labels:
        fig.legend([handles[l] for l in labels], labels, loc="center left", bbox_to_anchor=(1.0, 0.5),
                   frameon=False)


def _save(plt, fig, out_dir: Path, name: str, title: str, caption: str) -> Figure:
    make_dir(out_dir, "--out")
    svg_path, png_path = out_dir / f"{name}.svg", out_dir / f"{name}.png"
    fig.tight_layout()
    with output_errors(out_dir, "--out"):
        fig.savefig(svg_path, format="svg", bbox_inches="tight")
        fig.savefig(png_path, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Figure(name, title, caption, _clean_svg(svg_path.read_text()), svg_path, png_path)


def _series_plot(plt, st, analyses, out_dir, name, title, caption, ylabel, getter, band=None,
                 extra=None, twin=None) -> Figure | None:
    """``twin(analysis, series)``: a second series of the same key drawn dashed (call latency)."""
    panels = _panels(analyses)
    if not panels:
        return None
    fig, axes = _grid(plt, len(panels))
    drawn = False
    for ax, (f, g) in zip(axes, panels):
        for ri, a in enumerate(analyses):
            for s in a.series:
                if not _in_panel(a, s.key, f, g):
                    continue
                pts = [(p.T, getter(p)) for p in s.points]
                pts = [(t, y) for t, y in pts if y is not None and y > 0]
                if not pts:
                    continue
                kw = st.kw(ri, s.key)
                other = twin(a, s) if twin is not None else None
                if other is not None:
                    kw = {**kw, "linestyle": "-"}
                    lab = st.label(a, s.key)
                    ax.plot([t for t, _ in pts], [y for _, y in pts], label=f"{lab} (device time)", **kw)
                    ax.plot([p.T for p in other.points], [getter(p) for p in other.points],
                            label=f"{lab} (call latency)", **{**kw, "linestyle": "--", "alpha": 0.8})
                else:
                    ax.plot([t for t, _ in pts], [y for _, y in pts], label=st.label(a, s.key), **kw)
                drawn = True
                if band is not None:
                    lo = [band(p)[0] for p in s.points]
                    hi = [band(p)[1] for p in s.points]
                    ax.fill_between([p.T for p in s.points], lo, hi, color=kw["color"], alpha=0.18, linewidth=0)
                if extra is not None:
                    extra(ax, s, kw)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(_facet_title(f) + (f" · {g} (softmax: reference)" if g else ""))
        ax.set_xlabel("sequence length T (tokens)")
        ax.set_ylabel(ylabel)
    if not drawn:
        plt.close(fig)
        return None
    _legend(fig, axes)
    return _save(plt, fig, out_dir, name, title, caption)


def _speedup_plot(plt, st, analyses, out_dir) -> Figure | None:
    facets = sorted({c.series.key.facet for a in analyses for c in a.comparisons})
    if not facets:
        return None
    fig, axes = _grid(plt, len(facets))
    for ax, f in zip(axes, facets):
        for ri, a in enumerate(analyses):
            for c in a.comparisons:
                if c.series.key.facet != f or not c.rows:
                    continue
                kw = st.kw(ri, c.series.key)
                T = [r.T for r in c.rows]
                ax.plot(T, [r.speedup for r in c.rows], label=st.label(a, c.series.key), **kw)
                ax.fill_between(T, [r.speedup_lo for r in c.rows], [r.speedup_hi for r in c.rows],
                                color=kw["color"], alpha=0.18, linewidth=0)
        ax.axhline(1.0, color="black", linewidth=1.0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(_facet_title(f))
        ax.set_xlabel("sequence length T (tokens)")
        ax.set_ylabel("speedup vs baseline (×)")
    _legend(fig, axes)
    base = ", ".join(sorted({str(a.baseline) for a in analyses if a.baseline}))
    return _save(plt, fig, out_dir, "speedup", "Speedup vs the baseline",
                 f"Baseline latency / variant latency (above 1: the variant is faster). Baseline: {base}. "
                 "Bands from the 95% CIs of both medians.")


def _roofline_plot(plt, st, analyses, out_dir) -> Figure | None:
    pts = [(ri, a, s, p) for ri, a in enumerate(analyses) for s in a.series for p in s.points
           if p.record.flops and p.record.bytes_moved]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7.8, 4.6))
    seen = set()
    for ri, a, s, p in pts:
        kw = st.kw(ri, s.key)
        lab = st.label(a, s.key)
        ax.scatter(p.record.flops / p.record.bytes_moved, p.record.flops / p.median_s, color=kw["color"],
                   marker=kw["marker"], s=18 + 6 * math.log2(max(p.T, 2) / 256) if p.T > 256 else 14,
                   label=None if lab in seen else lab, edgecolor="none", alpha=0.85)
        seen.add(lab)
        cs = a.call_series_for(s.key) if a.two_timings else None
        cp = cs.at(p.T) if cs is not None else None
        if cp is not None and cp.median_s > 0:   # the same point on call latency: hollow marker
            ax.scatter(p.record.flops / p.record.bytes_moved, p.record.flops / cp.median_s, facecolors="none",
                       edgecolors=kw["color"], marker=kw["marker"], s=14, linewidths=0.8, alpha=0.8,
                       label=None if "call" in seen else "(hollow: on call latency)")
            seen.add("call")
    # one roof per (device model, dtype): each point sits under the roof of its own dtype
    roofs: list[tuple[float, float, str]] = []
    for a in analyses:
        env = a.manifest.environment or {}
        for s in a.series:
            pk = series_peaks(s.key, a.manifest.calibration, env, a.devices)
            if not pk or not pk[0].flops_per_s or not pk[0].bytes_per_s:
                continue
            f, b = pk[0].flops_per_s, pk[0].bytes_per_s
            who = ": ".join(x for x in ((a.label if len(analyses) > 1 else ""), s.key.device_model) if x)
            label = (f"roof {s.key.dtype} ({pk[0].label}{'; ' + who if who else ''})")
            if not any((f, b) == (r[0], r[1]) for r in roofs):
                roofs.append((f, b, label))
    ai = np.array([p.record.flops / p.record.bytes_moved for *_, p in pts])
    ridges = [f / b for f, b, _ in roofs]
    x_lo = min([ai.min()] + ridges) / 4
    x_hi = max([ai.max()] + ridges) * 4
    x = np.logspace(math.log10(x_lo), math.log10(x_hi), 80)
    styles = ("-", "--", "-.", ":")
    for i, (f, b, label) in enumerate(roofs):
        ax.plot(x, np.minimum(f, b * x), color="black", linewidth=1.0, linestyle=styles[i % len(styles)], label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte, analytic)")
    ax.set_ylabel("achieved FLOP/s (analytic FLOPs / median time)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return _save(plt, fig, out_dir, "roofline", "Roofline",
                 "Achieved throughput from the analytic FLOP and byte models against one roof per dtype: the "
                 "bandwidth slope (calibrated copy bandwidth x intensity) up to the ridge, then the compute "
                 "ceiling of that dtype's matmul (the run's calibration; for dtypes it did not calibrate, the "
                 "spec sheet or the fp32 rate, as the legend says). Larger markers: longer T; hollow markers: "
                 "the same point on call latency.")


def _per_minute_plot(plt, st, analyses, out_dir) -> Figure | None:
    """Latency (and energy) per minute of audio against audio duration, SER layers only."""
    lines = [(ri, a, s, pts) for ri, a in enumerate(analyses) if a.ser for s, pts in a.ser.per_minute]
    if not lines:
        return None
    has_energy = any(p.energy_per_min_j is not None for *_, pts in lines for p in pts)
    fig, axes = plt.subplots(1, 2 if has_energy else 1, figsize=(12.0 if has_energy else 7.4, 4.2), squeeze=False)
    axes = list(axes.flat)
    facets = {s.key.facet for *_, s, _ in lines}
    for ri, a, s, pts in lines:
        kw = st.kw(ri, s.key)
        lab = st.label(a, s.key) + (f" [{s.key.facet_label}]" if len(facets) > 1 else "")
        x = [p.audio_s / 60.0 for p in pts]
        axes[0].plot(x, [p.latency_per_min_s for p in pts], label=lab, **kw)
        if has_energy:
            e = [(p.audio_s / 60.0, p.energy_per_min_j) for p in pts if p.energy_per_min_j is not None]
            if e:
                axes[1].plot([t for t, _ in e], [v for _, v in e], label=lab, **kw)
    titles = ("Latency per minute of audio", "Energy per minute of audio")
    ylabels = ("seconds of compute per minute of audio", "joules per minute of audio")

    for ax, title, yl in zip(axes, titles, ylabels):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(mticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_title(title)
        ax.set_xlabel("audio duration (minutes)")
        ax.set_ylabel(yl)
    _legend(fig, axes)
    return _save(plt, fig, out_dir, "per_minute", "Cost per minute of audio",
                 "Median latency (and energy) of one call divided by the minutes of audio it covers, against the "
                 "audio duration (T = speech frames + text tokens at the stored rates). Flat: cost linear in the "
                 "duration; rising: super-linear (softmax's T² term). Softmax dashed.")


def _decode_plot(plt, st, analyses, out_dir) -> Figure | None:
    """Decode / streaming: per-token latency and carried bytes (state or KV cache) against the context T."""
    lines = [(ri, a, d) for ri, a in enumerate(analyses) if a.decode for d in a.decode.series]
    if not lines:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.2), squeeze=False)
    axes = list(axes.flat)
    for ri, a, d in lines:
        key = next((s.key for s in a.series if s.key.variant == d.variant and s.key.facet_label == d.facet), None)
        kw = st.kw(ri, key) if key is not None else {}
        lab = (st.label(a, key) if key is not None else d.variant) + f" [{d.facet}]"
        axes[0].plot([p.T for p in d.points], [p.per_token_s for p in d.points], label=lab, **kw)
        mem = [(p.T, p.carried_bytes / 2**20) for p in d.points if p.carried_bytes]
        if mem:
            axes[1].plot([t for t, _ in mem], [m for _, m in mem], label=lab, **kw)
    for ax, title, yl in zip(axes, ("Latency per token after a context of T", "Carried memory (state or KV cache)"),
                             ("seconds per token", "MiB carried between calls")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("context T (tokens)")
        ax.set_ylabel(yl)
    _legend(fig, axes)
    return _save(plt, fig, out_dir, "decode", "Decode and streaming vs context length",
                 "Left: median latency of a decode / streaming call divided by the tokens it processes, against "
                 "the context length T (flat for a carried state, rising for a KV cache). Right: bytes carried "
                 "between calls, measured from the allocated tensors (a constant state vs a cache linear in T).")


def _varlen_plot(plt, st, analyses, out_dir) -> Figure | None:
    """Packed vs padded tokens/s per distribution: one panel per (run, distribution, budget), bars per backend."""
    panels: dict[tuple, list] = {}
    for a in analyses:
        for r in (a.varlen.rows if a.varlen else ()):
            panels.setdefault((a.label if len(analyses) > 1 else "", r.distribution, r.tokens), []).append(r)
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 4.8 * len(panels)), 4.4), squeeze=False)
    for ax, ((run, dist, tokens), rows) in zip(axes.flat, panels.items()):
        names = [f"{r.kernel}/{r.backend}\n{r.dtype} {r.mode} H{r.H} D{r.D}" for r in rows]
        x = list(range(len(rows)))
        ax.bar([i - 0.2 for i in x], [r.packed_tokens_per_s or 0 for r in rows], width=0.4, label="packed")
        ax.bar([i + 0.2 for i in x], [r.padded_tokens_per_s or 0 for r in rows], width=0.4, label="padded")
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        waste = rows[0].padding_waste
        ax.set_title(f"{run + ': ' if run else ''}{dist}, {tokens} tokens"
                     + (f" (padding {100 * waste:.0f}%)" if waste is not None else ""), fontsize=9)
        ax.set_ylabel("real tokens / s")
        ax.legend(fontsize=8)
    return _save(plt, fig, out_dir, "varlen", "Packed vs padded variable-length batches",
                 "Real tokens per second of one batch whose sequence lengths come from the distribution: packed "
                 "(cu_seqlens, or one call per sequence) against the same sequences padded to the longest. A "
                 "missing bar: that layout was not planned (no packed path) or did not finish.")


def render_figures(analyses: Sequence[RunAnalysis], out_dir: Path) -> tuple[list[Figure], dict[str, str]]:
    """Draw every figure into ``out_dir``; return the figures and notes for figures that cannot exist."""
    plt, sns = _setup()
    st = _Styler(analyses, sns)
    figs: list[Figure] = []
    notes: dict[str, str] = {}

    def add(f: Figure | None, key: str, why: str) -> None:
        if f is not None:
            figs.append(f)
        else:
            notes[key] = why

    two = any(a.two_timings for a in analyses)
    add(_series_plot(plt, st, analyses, out_dir, "latency", "Latency vs sequence length",
                     ("Median per call (log-log); bands: 95% CI of the median. Device time solid (what the GPU "
                      "spends), call latency dashed (one isolated call, sync to sync, host included); where the "
                      "two differ by more than 2x the point is launch-bound." if two else
                      "Median latency per call (log-log); bands: 95% CI of the median. Softmax dashed."),
                     "time per call (s)" if two else "latency per call (s)", lambda p: p.median_s,
                     band=lambda p: (p.ci_low_s, p.ci_high_s),
                     twin=(lambda a, s: a.call_series_for(s.key)) if two else None),
        "latency", "no successful (ok, non-interpreted) points to plot")

    def analytic(ax, s, kw):
        pts = [(p.T, p.analytic_bytes / 2**20) for p in s.points if p.analytic_bytes]
        if pts:
            ax.plot([t for t, _ in pts], [m for _, m in pts], color=kw["color"], linestyle=":", linewidth=1.0)

    add(_series_plot(plt, st, analyses, out_dir, "memory", "Peak memory vs sequence length",
                     "Measured peak bytes allocated during one call above its inputs (solid/dashed); "
                     "the kernel's analytic model (dotted).",
                     "peak memory (MiB)", lambda p: (p.peak_bytes / 2**20) if p.peak_bytes else None, extra=analytic),
        "memory", "no point recorded peak memory")
    if any(a.has_energy for a in analyses):
        add(_series_plot(plt, st, analyses, out_dir, "energy", "Energy per call vs sequence length",
                         "Energy per call net of idle (J); points below the counter's resolution are left out.",
                         "energy per call (J)", lambda p: p.energy_j),
            "energy", "no energy")
    else:
        why = "; ".join(sorted({a.energy_note for a in analyses if a.energy_note})) or "none recorded"
        notes["energy"] = f"no energy meter: {why}"
    add(_series_plot(plt, st, analyses, out_dir, "throughput", "Throughput vs sequence length",
                     "Tokens per second (B · tokens per call / median latency; a prefill call processes T tokens, a "
                     "decode call its steps, a streaming call its chunk).", "tokens / s", lambda p: p.tokens_per_s),
        "throughput", "no successful points")
    add(_speedup_plot(plt, st, analyses, out_dir), "speedup", "no baseline series to compare with")
    add(_roofline_plot(plt, st, analyses, out_dir), "roofline", "no point carries analytic FLOP and byte counts")
    if any(a.decode for a in analyses):
        add(_decode_plot(plt, st, analyses, out_dir), "decode", "no decode or streaming points")
    if any(a.varlen for a in analyses):
        add(_varlen_plot(plt, st, analyses, out_dir), "varlen", "no packed or padded varlen points")
    if any(a.ser for a in analyses):
        add(_per_minute_plot(plt, st, analyses, out_dir), "per minute of audio",
            "no fixed-length layer points whose T came from an audio duration (--audio)")
    return figs, notes
