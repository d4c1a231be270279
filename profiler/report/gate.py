"""Render a gate verdict (``profiler.analysis.compare.GateResult``): table cells, Markdown, JSON.

The analysis decides; this module only turns its values into text for a terminal, a CI job summary
or a machine (``to_json``: schema ``serprof-gate-verdict`` v1).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from profiler.analysis.compare import NOISE_Z, Check, GateResult
from profiler.core import fmt


def fmt_seconds(s: float) -> str:
    return fmt.seconds(s, missing=fmt.HYPHEN)


def fmt_bytes(n: float) -> str:
    return fmt.bytes_iec(n, sig=4, missing=fmt.HYPHEN, largest="GiB", truncate=True)


def fmt_joules(j: float) -> str:
    return fmt.joules(j)


def fmt_value(check: Check, which: str) -> str:
    v = getattr(check, which)
    if check.metric in ("latency", "call_latency"):
        return fmt_seconds(v)
    if check.metric == "peak_memory":
        return fmt_bytes(v)
    if check.metric == "energy":
        return fmt_joules(v)
    if check.metric == "slope":
        return f"{v:.3f}"
    return "ok" if which == "baseline" else (check.message or "-")


def fmt_ratio(check: Check) -> str:
    if check.metric == "slope":
        return f"{check.ratio:+.3f}"
    if check.metric == "status" or not math.isfinite(check.ratio):
        return "-"
    return f"x{check.ratio:.3f}"


def fmt_ci(check: Check) -> str:
    if check.ci_low is None or check.ci_high is None:
        return "-"
    return f"[{check.ci_low:.3f}, {check.ci_high:.3f}]"


def summary_line(result: GateResult) -> str:
    n_reg = len(result.regressions)
    status = "PASS" if result.passed else "FAIL"
    by_metric: dict[str, int] = {}
    for c in result.checks:
        by_metric[c.metric] = by_metric.get(c.metric, 0) + 1
    counts = ", ".join(f"{m} {n}" for m, n in sorted(by_metric.items())) or "nothing"
    extra = ""
    if result.fail_on_missing and result.missing_in_candidate:
        extra = f", {len(result.missing_in_candidate)} missing in candidate"
    return f"{status}: {n_reg} regression{'s' if n_reg != 1 else ''}{extra} ({counts} checked)"


def method_text(result: GateResult) -> str:
    stat = {"median": "medians", "auto": "q10 quantiles on CPU, medians on CUDA"}.get(result.statistic,
                                                                                  f"{result.statistic} quantiles")
    return (f"Latency ({result.design}): ratio of per-process {stat} (geometric mean over worker processes) with a "
            f"{result.confidence:.0%} t interval from the between-process spread, moderated by and floored at the "
            f"machine's noise ({result.noise_source}); a point whose A/A noise exceeds the rule's threshold is "
            f"unclear; a regression needs Holm-adjusted one-sided "
            f"p < {result.alpha:g} against the rule's threshold, so the whole interval lies beyond it. "
            f"Memory exact with a byte tolerance; energy as a ratio; slope = log-log exponent (CI: sample bootstrap widened by the residual t-interval). "
            f"Normalization: {result.normalize}.")


def replication(check: Check) -> str | None:
    """``3x40 vs 3x38``: processes x samples per side (latency checks; None for others)."""
    if check.processes_baseline is None or check.n_baseline is None:
        return None

    def side(k, n):
        return f"{k}x{round(n / k) if k else n}"

    return f"{side(check.processes_baseline, check.n_baseline)} vs {side(check.processes_candidate, check.n_candidate)}"


def fmt_replication(check: Check) -> str:
    """``3x40 vs 3x38 (spread 1.2%/0.8%)``: processes x samples per side and the between-process spread."""
    text = replication(check)
    if text is None:
        return "-"
    spreads = [s for s in (check.spread_baseline, check.spread_candidate)]
    shown = "/".join("-" if s is None else f"{math.expm1(s):.1%}" for s in spreads)
    return f"{text} (spread {shown})"


def fmt_noise(check: Check) -> str:
    return "-" if check.noise_sd is None else f"±{math.expm1(NOISE_Z * check.noise_sd):.1%}"


def _md_table(checks: Sequence[Check]) -> list[str]:
    lines = ["| verdict | metric | point | baseline | candidate | ratio | CI | processes x samples | A/A noise | rule | why |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        why = (c.message or "").replace("|", "\\|")
        lines.append(f"| {c.verdict} | {c.metric} | `{c.subject}` | {fmt_value(c, 'baseline')} | "
                     f"{fmt_value(c, 'candidate')} | {fmt_ratio(c)} | {fmt_ci(c)} | {fmt_replication(c)} | "
                     f"{fmt_noise(c)} | `{c.rule}` | {why} |")
    return lines


def to_markdown(result: GateResult) -> str:
    """Markdown summary for a CI job summary or a PR comment."""
    icon = "✅" if result.passed else "❌"
    out = [f"## {icon} serprof gate: {summary_line(result)}", "",
           f"- Baseline: `{result.baseline_label}`", f"- Candidate: `{result.candidate_label}`",
           f"- Rules: {', '.join(f'`{r}`' for r in result.rules) or 'none'}",
           f"- Noise floor: {result.noise_source}", f"- {method_text(result)}", ""]
    checks = result.sorted_checks()
    flagged = [c for c in checks if c.verdict in ("regression", "unclear")]
    if flagged:
        out += ["### Regressions and unclear results", ""] + _md_table(flagged) + [""]
    if checks:
        out += [f"<details><summary>All {len(checks)} checks</summary>", ""] + _md_table(checks) + ["", "</details>", ""]
    if result.missing_in_candidate or result.missing_in_baseline or result.not_compared:
        out += ["### Not compared", ""]
        out += [f"- `{i}`: missing in candidate" for i in result.missing_in_candidate]
        out += [f"- `{i}`: missing in baseline (new point)" for i in result.missing_in_baseline]
        out += [f"- `{n.subject}`: {n.reason}" for n in result.not_compared]
        out.append("")
    if result.env_differences:
        out += ["### Environment differences (compared anyway)", ""]
        out += [f"- `{k}`: `{a}` vs `{b}`" for k, a, b in result.env_differences]
        out.append("")
    if result.warnings:
        out += ["### Warnings", ""] + [f"- {w}" for w in result.warnings] + [""]
    return "\n".join(out)


def to_json(result: GateResult) -> dict[str, Any]:
    """JSON verdict (schema ``serprof-gate-verdict`` v1)."""

    def num(x):
        return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x

    return {
        "format": "serprof-gate-verdict", "schema_version": 1,
        "passed": result.passed, "exit_code": result.exit_code, "summary": summary_line(result),
        "baseline": result.baseline_label, "candidate": result.candidate_label,
        "method": {"alpha": result.alpha, "confidence": result.confidence, "correction": "holm",
                   "interval": "bootstrap-normal-log", "n_boot": result.n_boot, "seed": result.seed,
                   "statistic": result.statistic, "noise_floor": result.noise_floor,
                   "noise_source": result.noise_source, "design": result.design,
                   "interval_model": "two-level random effects (processes within runs), moderated t",
                   "normalize": result.normalize},
        "rules": list(result.rules),
        "checks": [{**{k: num(v) for k, v in c.__dict__.items()},
                    "replication": replication(c)}
                   for c in result.sorted_checks()],
        "not_compared": [n.__dict__ for n in result.not_compared],
        "missing_in_candidate": result.missing_in_candidate,
        "missing_in_baseline": result.missing_in_baseline,
        "env_differences": [{"key": k, "baseline": a, "candidate": b} for k, a, b in result.env_differences],
        "warnings": result.warnings,
    }
