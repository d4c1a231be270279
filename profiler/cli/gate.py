"""serprof CLI: ``gate`` (regression gate), ``gate-interleave`` (A/B of two git refs), ``baseline save``, ``gate-eval``.

Thin commands over ``profiler.analysis.compare`` / ``profiler.store.baseline`` / ``profiler.runner.interleaved_ab``
/ ``profiler.probes.gate_eval``: parse, call one library function, render, exit code (0 pass, 1
regression, 2 usage error). Nothing heavy is imported at module level.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table
from rich.text import Text

from profiler.core.console import console as _console
from profiler.core.console import esc
from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.core.paths import check_output_dir, check_output_file, write_file

api = lazy_import("profiler.api")
report_gate = lazy_import('profiler.report.gate')
analysis_compare = lazy_import('profiler.analysis.compare')
probes_gate_eval = lazy_import('profiler.probes.gate_eval')
runner_env = lazy_import('profiler.runner.env')

baseline_app = typer.Typer(help="Compact baseline files for `serprof gate --baseline`.", no_args_is_help=True,
                           rich_markup_mode=None)


def _render_table(result) -> None:
    console = _console()
    colours = {"regression": "bold red", "unclear": "yellow", "faster": "green", "pass": ""}
    table = Table(title="serprof gate", show_lines=False)
    for col in ("verdict", "metric", "point", "baseline", "candidate", "ratio", f"{result.confidence:.0%} CI",
                "processes x samples", "A/A noise"):
        table.add_column(col, overflow="fold")
    for c in result.sorted_checks():
        table.add_row(Text(c.verdict, style=colours[c.verdict]), *(Text(str(x)) for x in (
            c.metric, c.subject, report_gate.fmt_value(c, "baseline"), report_gate.fmt_value(c, "candidate"), report_gate.fmt_ratio(c), report_gate.fmt_ci(c),
            report_gate.fmt_replication(c), report_gate.fmt_noise(c))))
    console.print(table)
    console.print(f"noise floor: {result.noise_source}; design: {result.design}", markup=False)
    for c in result.sorted_checks():
        if c.verdict == "unclear" and c.message:
            console.print(f"unclear: {c.subject}: {c.message}", markup=False)
    for i in result.missing_in_candidate:
        console.print(f"[yellow]missing in candidate:[/] {esc(i)}")
    for i in result.missing_in_baseline:
        console.print(f"missing in baseline (new): {i}", markup=False)
    for n in result.not_compared:
        console.print(f"not compared: {n.subject}: {n.reason}", markup=False)
    for k, a, b in result.env_differences:
        console.print(f"[yellow]environment differs:[/] {esc(k)}: {esc(repr(a))} vs {esc(repr(b))}")
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {esc(w)}")
    for c in result.regressions:
        console.print(f"[bold red]REGRESSION[/] {esc(c.subject)}: {esc(c.message)}")
    console.print(report_gate.summary_line(result), style="bold green" if result.passed else "bold red", markup=False)


def _write_outputs(result, json_out: Optional[Path], markdown_out: Optional[Path]) -> None:
    if json_out is not None:
        write_file(json_out, json.dumps(report_gate.to_json(result), indent=2, sort_keys=True) + "\n", "--json-out")
    if markdown_out is not None:
        write_file(markdown_out, report_gate.to_markdown(result) + "\n", "--markdown-out")


_RULE_HELP = ("METRIC:LIMIT[@FILTERS], repeatable; later rules win. Metrics latency (on CUDA: device time), "
              "call_latency (sync to sync, host included; off unless named), peak_memory, energy, slope; "
              "e.g. 'latency:+3%@kernel=retnet,T>=4096', 'call_latency:+5%', 'peak_memory:+0%+1MiB', 'energy:off'.")
_DEFAULTS_HELP = "Start from no rules (defaults: latency:+5%, peak_memory:+0% (+4KiB), energy:+10%, slope:+0.1)."


#: options shared by ``gate`` and ``gate-interleave`` (one definition each)
_RULE = typer.Option(None, "--rule", "-r", help=_RULE_HELP)
_NO_DEFAULT_RULES = typer.Option(False, "--no-default-rules", help=_DEFAULTS_HELP)
_ALPHA = typer.Option(0.025, help="Family-wise error rate of the latency tests (one-sided, Holm).")
_STATISTIC = typer.Option("auto", help="Latency statistic compared per worker process: auto (q10 on CPU, where interference only adds time; median on CUDA), median, or a quantile such as q25.")
_NOISE_FLOOR = typer.Option(0.01, "--noise-floor", help="Fallback relative run-to-run noise (0.01 = 1%) when no noise profile is found.")
_ALLOW_ENV_MISMATCH = typer.Option(False, "--allow-env-mismatch", help="Compare runs whose environment fingerprints differ.")
_IGNORE_ENV = typer.Option(None, "--ignore-env", help="Environment key to leave out of the fingerprint (repeatable).")
_FAIL_ON_MISSING = typer.Option(False, "--fail-on-missing", help="Exit 1 when baseline points are missing in the candidate.")
_ALLOW_EMPTY = typer.Option(False, "--allow-empty", help="Pass when nothing was compared (default: exit 2).")
_JSON_OUT = typer.Option(None, "--json-out", help="Write the JSON verdict here.")
_MARKDOWN_OUT = typer.Option(None, "--markdown-out", help="Write the Markdown summary here.")
_N_BOOT = typer.Option(1000, "--n-boot", help="Bootstrap resamples per point.")
_NOISE_PROFILE = typer.Option(None, "--noise-profile", help="This machine's noise profile (serprof gate-calibrate); default: $SERPROF_NOISE_PROFILE, .serprof/noise-profile.json, ~/.cache/serprof/noise-profile.json, else the fixed --noise-floor with a warning.")
_SEED = typer.Option(0, help="Bootstrap seed.")

def gate(
    baseline: Optional[Path] = typer.Option(None, "--baseline", "-b", help="Baseline run folder or baseline .json."),
    candidate: Optional[Path] = typer.Option(None, "--candidate", "-c", help="Candidate run folder (or baseline .json)."),
    rule: Optional[List[str]] = _RULE,
    no_default_rules: bool = _NO_DEFAULT_RULES,
    alpha: float = _ALPHA,
    normalize: str = typer.Option("none", help="Drift normalization: none, calibration (= matmul), bandwidth."),
    statistic: str = _STATISTIC,
    noise_floor: float = _NOISE_FLOOR,
    allow_env_mismatch: bool = _ALLOW_ENV_MISMATCH,
    ignore_env: Optional[List[str]] = _IGNORE_ENV,
    fail_on_missing: bool = _FAIL_ON_MISSING,
    allow_empty: bool = _ALLOW_EMPTY,
    json_out: Optional[Path] = _JSON_OUT,
    markdown_out: Optional[Path] = _MARKDOWN_OUT,
    n_boot: int = _N_BOOT,
    seed: int = _SEED,
    noise_profile: Optional[Path] = _NOISE_PROFILE,
    history: Optional[Path] = typer.Option(None, "--history", help="Folder of earlier baseline runs of the main branch (run folders or baseline files): their spread is the between-run variance; --baseline defaults to the newest."),
    history_runs: int = typer.Option(10, "--history-runs", help="Use the newest N runs of --history."),
    interleave: bool = typer.Option(False, "--interleave", hidden=True),
    ref_a: Optional[str] = typer.Option(None, "--ref-a", hidden=True),
    ref_b: Optional[str] = typer.Option(None, "--ref-b", hidden=True),
    kernels: Optional[List[str]] = typer.Option(None, "--kernels", "-k", hidden=True),
    backend: Optional[str] = typer.Option(None, "--backend", hidden=True),
    lengths: Optional[List[str]] = typer.Option(None, "--lengths", "-T", hidden=True),
    batch: Optional[int] = typer.Option(None, "--batch", "-B", hidden=True),
    heads: Optional[int] = typer.Option(None, "--heads", "-H", hidden=True),
    head_dim: Optional[int] = typer.Option(None, "--head-dim", "-D", hidden=True),
    rounds: Optional[int] = typer.Option(None, "--rounds", hidden=True),
    reps: Optional[int] = typer.Option(None, "--reps", hidden=True),
    repo: Optional[Path] = typer.Option(None, "--repo", hidden=True),
) -> None:
    """Compare a candidate run with a baseline; exit 1 on a regression (see docs/ci-gate.md)."""
    only = {"ref_a": ref_a, "ref_b": ref_b, "kernels": kernels, "backend": backend, "lengths": lengths,
            "batch": batch, "heads": heads, "head_dim": head_dim, "rounds": rounds, "reps": reps, "repo": repo}
    if interleave:
        raise UsageError("--interleave: the interleaved A/B is its own command: serprof gate-interleave "
                         "(same flags, without --interleave)")
    given = [k for k, v in only.items() if v is not None]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise UsageError(f"{flags} only {'applies' if len(given) == 1 else 'apply'} to the interleaved A/B "
                         "measurement: use serprof gate-interleave")
    if (baseline is None and history is None) or candidate is None:
        raise UsageError("gate needs --baseline RUN|FILE (or --history DIR) and --candidate RUN "
                         "(or serprof gate-interleave --ref-a --ref-b)")
    _check_outputs(json_out, markdown_out)
    result = api.gate(baseline, candidate, rules=rule or [], default_rules=not no_default_rules, alpha=alpha,
                      normalize=normalize, statistic=statistic, noise_floor=noise_floor,
                      allow_env_mismatch=allow_env_mismatch, ignore_env=ignore_env or (),
                      fail_on_missing=fail_on_missing, n_boot=n_boot, seed=seed, noise_profile=noise_profile,
                      history=history, history_runs=history_runs)
    _finish(result, json_out, markdown_out, allow_empty)


def gate_interleave(
    ref_a: Optional[str] = typer.Option(None, "--ref-a", help="Baseline git ref (e.g. origin/main)."),
    ref_b: Optional[str] = typer.Option(None, "--ref-b", help="Candidate git ref (e.g. HEAD)."),
    kernels: Optional[List[str]] = typer.Option(None, "--kernels", "-k", help="Kernels (comma-separated or repeated)."),
    backend: str = typer.Option("", "--backend", help="Backend (default: each kernel's default backend)."),
    lengths: Optional[List[str]] = typer.Option(None, "--lengths", "-T", help="Sequence lengths, e.g. 1024,2048."),
    batch: int = typer.Option(1, "--batch", "-B", help="Batch size."),
    heads: int = typer.Option(4, "--heads", "-H", help="Heads."),
    head_dim: int = typer.Option(64, "--head-dim", "-D", help="Head dim."),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="Alternations (ABBA order); each is one fresh worker process per side (default 10)."),
    reps: Optional[int] = typer.Option(None, "--reps", help="Samples per point per process (default: 5 to 30, as many as 0.3 s of sampling allows)."),
    repo: Path = typer.Option(Path("."), "--repo", help="The git repository holding the refs."),
    rule: Optional[List[str]] = _RULE,
    no_default_rules: bool = _NO_DEFAULT_RULES,
    alpha: float = _ALPHA,
    statistic: str = _STATISTIC,
    noise_floor: float = _NOISE_FLOOR,
    allow_env_mismatch: bool = _ALLOW_ENV_MISMATCH,
    ignore_env: Optional[List[str]] = _IGNORE_ENV,
    fail_on_missing: bool = _FAIL_ON_MISSING,
    allow_empty: bool = _ALLOW_EMPTY,
    json_out: Optional[Path] = _JSON_OUT,
    markdown_out: Optional[Path] = _MARKDOWN_OUT,
    n_boot: int = _N_BOOT,
    seed: int = _SEED,
    noise_profile: Optional[Path] = _NOISE_PROFILE,
) -> None:
    """Measure two git refs alternately in this job (ABBA) and gate B against A; exit 1 on a regression."""
    _check_outputs(json_out, markdown_out)
    result = api.gate_interleave(ref_a, ref_b, repo=repo, kernels=kernels or (), backend=backend,
                                 lengths=lengths or (), batch=batch, heads=heads, head_dim=head_dim, rounds=rounds,
                                 reps=reps, rules=rule or [], default_rules=not no_default_rules, alpha=alpha,
                                 statistic=statistic, noise_floor=noise_floor, allow_env_mismatch=allow_env_mismatch,
                                 ignore_env=ignore_env or (), fail_on_missing=fail_on_missing, n_boot=n_boot,
                                 seed=seed, noise_profile=noise_profile)
    _finish(result, json_out, markdown_out, allow_empty)


def _check_outputs(json_out: Optional[Path], markdown_out: Optional[Path]) -> None:
    """Output paths are checked before any run is read or measured (one line, exit 2)."""
    for flag, path in (("--json-out", json_out), ("--markdown-out", markdown_out)):
        if path is not None:
            check_output_file(path, flag, create_parents=True)


def _finish(result, json_out: Optional[Path], markdown_out: Optional[Path], allow_empty: bool) -> None:
    """Write the outputs, render the table, then the exit code (2 when nothing was compared)."""
    _write_outputs(result, json_out, markdown_out)
    _render_table(result)
    analysis_compare.check_compared(result, allow_empty)
    raise typer.Exit(result.exit_code)


@baseline_app.command("save")
def baseline_save(
    run: Path = typer.Argument(..., help="Run folder to summarize."),
    out: Path = typer.Option(..., "--out", "-o", help="Baseline file to write, e.g. baselines/cpu-quick.json."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Thin each point to this many quantile samples."),
) -> None:
    """Write a compact baseline (spec ids, samples, memory, energy, environment, calibration)."""
    check_output_file(out, "--out", create_parents=True)
    path = api.save_baseline(run, out, max_samples=max_samples)
    typer.echo(f"baseline written: {path} ({path.stat().st_size} bytes)")


def gate_eval(
    design: str = typer.Option("dial", "--design", help="sweeps (A/A pairs of separate default sweeps + injected slowdown), interleave (gate-interleave of identical refs), dial (fast in-process check), or a comma list."),
    pairs: int = typer.Option(60, "--pairs", help="sweeps: A/A pairs of separate sweeps."),
    detect_runs: int = typer.Option(30, "--detect-runs", help="sweeps: sweeps with the slowdown injected."),
    interleave_runs: int = typer.Option(30, "--interleave-runs", help="interleave: A/A runs."),
    interleave_detect_runs: Optional[int] = typer.Option(None, "--interleave-detect-runs", help="interleave: runs with the slowdown in side B (default: as many as --interleave-runs)."),
    slowdown: float = typer.Option(15.0, "--slowdown", help="Injected slowdown of the detection runs, percent."),
    processes: Optional[int] = typer.Option(None, "--processes", help="sweeps: worker processes per point (default: the sweep default)."),
    rounds: Optional[int] = typer.Option(None, "--rounds", help="interleave: fresh processes per side (default: gate-interleave's)."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="interleave: the git repository whose HEAD is measured against itself (default: serprof's own checkout)."),
    noise_profile: Optional[Path] = _NOISE_PROFILE,
    keep: Optional[Path] = typer.Option(None, "--keep", help="Keep the evaluation's run folders here."),
    quick: bool = typer.Option(False, "--quick", help="dial: few repetitions (about a minute): indicative only."),
    comparisons: Optional[int] = typer.Option(None, "--comparisons", "-n", help="dial: comparisons per slowdown level."),
    samples: Optional[int] = typer.Option(None, "--samples", help="dial: timed samples per run and point."),
    slowdowns: str = typer.Option("0,5,10,20", help="dial: injected extra work in percent, comma-separated (0 = A/A)."),
    threshold: float = typer.Option(5.0, help="dial: latency rule threshold in percent (the gate's default is 5)."),
    threads: int = typer.Option(1, help="dial: torch threads for the dial kernel."),
    seed: int = typer.Option(0, help="dial: seed for the schedule and the gate's bootstrap."),
    json_out: Optional[Path] = typer.Option(None, "--json-out", help="Write the evaluation as JSON."),
) -> None:
    """Measure the gate itself: false alarms on A/A and detection of an injected slowdown (real runs)."""
    if json_out is not None:
        check_output_file(json_out, "--json-out", create_parents=True)
    if keep is not None:
        check_output_dir(keep, "--keep")
    designs = tuple(d.strip() for d in design.split(",") if d.strip())
    unknown = [d for d in designs if d not in ("sweeps", "interleave", "dial")]
    if not designs or unknown:
        raise UsageError(f"--design takes sweeps, interleave, dial or a comma list (got {design!r})")
    for flag, value, lo in (("--pairs", pairs, 0), ("--detect-runs", detect_runs, 0), ("--interleave-runs", interleave_runs, 0),
                            ("--interleave-detect-runs", 0 if interleave_detect_runs is None else interleave_detect_runs, 0),
                            ("--rounds", 2 if rounds is None else rounds, 2)):
        if not lo <= value <= 10_000:
            raise UsageError(f"{flag} must be a whole number from {lo} to 10000, got {value}")
    if not (slowdown == slowdown and 0 < slowdown <= 1000):
        raise UsageError(f"--slowdown must be a percentage > 0 and <= 1000, got {slowdown}")
    if processes is not None and not 1 <= processes <= 64:
        raise UsageError(f"--processes must be a whole number from 1 to 64, got {processes}")
    console = _console()
    out: dict = {}
    if "dial" in designs:
        try:
            levels = [float(x) for x in slowdowns.split(",") if x.strip()]
        except ValueError:
            raise UsageError(f"--slowdowns takes percentages like 0,5,10,20 (got {slowdowns!r})") from None
        settings = probes_gate_eval.EvalSettings.preset(quick, comparisons=comparisons, samples=samples, slowdowns_pct=tuple(levels),
                                       threshold_pct=threshold, threads=threads, seed=seed)
        console.print(f"gate-eval dial: {settings.describe()}", markup=False)
        report = probes_gate_eval.run_gate_eval(settings, progress=lambda msg: console.print(msg, style="dim", markup=False))
        table = Table(title=f"gate evaluation, dial (latency rule +{threshold:g}%, alpha {settings.alpha:g})")
        for col in ("statistic", "injected", "comparisons", "flagged", "rate", "95% CI (Clopper-Pearson)", "median ratio", "target", "met"):
            table.add_column(col)
        for row in report.rows:
            table.add_row(row.statistic, f"+{row.slowdown_pct:g}%", str(row.comparisons), str(row.flagged), f"{row.rate:.1%}",
                          f"{row.ci_low:.1%}-{row.ci_high:.1%}", f"{row.median_ratio:.3f}", row.target_text,
                          {True: "yes", False: "NO", None: "-"}[row.met])
        console.print(table)
        console.print(f"gate time per comparison: {report.gate_ms_per_comparison:.1f} ms; measuring: {report.measure_s:.0f} s. "
                      "Shared machine: numbers are indicative.", markup=False)
        out["dial"] = report.to_dict()
    real = tuple(d for d in designs if d != "dial")
    if real:
        noise = api.load_gate_noise(noise_profile)
        rs = probes_gate_eval.RealEvalSettings(designs=real, pairs=pairs, detect_runs=detect_runs, interleave_runs=interleave_runs,
                              interleave_detect_runs=interleave_runs if interleave_detect_runs is None else interleave_detect_runs,
                              slowdown=slowdown / 100.0, processes=processes,
                              rounds=rounds)
        console.print(f"gate-eval {', '.join(real)}: noise floor from "
                      f"{noise.path if noise is not None else 'the fixed 1% fallback (no noise profile)'}", markup=False)
        if repo is None and "interleave" in real:
            own = runner_env.git_info()
            if own is None:
                raise UsageError("--design interleave: serprof does not run from a git checkout here; pass --repo")
            repo = Path(own["root"])
        runs = probes_gate_eval.run_real_eval(rs, noise=noise, keep=keep, repo=repo or Path("."),
                             progress=lambda msg: console.print(msg, style="dim", markup=False))
        rows = probes_gate_eval.summarize_gate_runs(runs)
        table = Table(title="gate evaluation: false alarms (A/A) and detection, default gates")
        for col in ("design", "injected", "runs", "flagged", "rate", "95% CI (Clopper-Pearson)", "unclear checks",
                    "median ratio", "wall s / gated point", "target", "met"):
            table.add_column(col)
        for r in rows:
            table.add_row(r.design, "A/A" if r.injected == 0 else f"+{r.injected:.0%}", str(r.runs), str(r.flagged),
                          f"{r.rate:.1%}", f"{r.ci_low:.1%}-{r.ci_high:.1%}", f"{r.unclear_share:.1%}",
                          f"{r.median_ratio:.3f}", f"{r.wall_s_per_point:.1f}", r.target_text,
                          {True: "yes", False: "NO", None: "-"}[r.met])
        console.print(table)
        out["runs"] = [r.__dict__ for r in runs]
        out["rows"] = [{**r.__dict__, "rate": r.rate} for r in rows]
    if json_out is not None:
        write_file(json_out, json.dumps(out, indent=2, default=float) + "\n", "--json-out")


def gate_calibrate(
    runs: Optional[List[Path]] = typer.Argument(None, help="A/A run folders of identical code (default: run the sweeps now)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Profile file (default ~/.cache/serprof/noise-profile.json, which gate reads by default)."),
    repeats: int = typer.Option(4, "--repeats", help="Separate sweeps to run when no runs are given."),
    processes: int = typer.Option(3, "--processes", help="Worker processes per point in those sweeps."),
    keep: Optional[Path] = typer.Option(None, "--keep", help="Keep the calibration sweeps' run folders here."),
) -> None:
    """Measure this machine's run-to-run noise per size class and store it for `serprof gate`."""
    if out is not None:
        check_output_file(out, "--out", create_parents=True)
    if keep is not None:
        check_output_dir(keep, "--keep")
    if not 1 <= processes <= 64:
        raise UsageError(f"--processes must be a whole number from 1 to 64, got {processes}")
    console = _console()
    profile, path = api.gate_calibrate(runs or (), out=out, repeats=repeats, processes=processes, keep=keep,
                                       progress=lambda msg: console.print(msg, style="dim", markup=False))

    table = Table(title=f"noise profile: {profile.runs} runs, {profile.processes} processes per point")
    for col in ("median latency", "points", "between processes", "between runs", "A/A 95% (model)", "A/A SD (observed)"):
        table.add_column(col)
    for c in profile.classes:
        model = math.expm1(analysis_compare.NOISE_Z * c.ratio_sd(profile.processes, profile.processes))
        table.add_row(c.label, str(c.points), f"{math.expm1(c.process_sd):.2%} ({c.process_df:g} df)",
                      f"{math.expm1(c.run_sd):.2%} ({c.run_df:g} df)", f"±{model:.1%}",
                      "-" if c.aa_ratio_sd is None else f"{math.expm1(c.aa_ratio_sd):.2%}")
    console.print(table)
    console.print(f"noise profile written: {path}", markup=False)


def register(app: typer.Typer) -> None:
    """Add ``gate``, ``baseline save`` and ``gate-eval`` to the app."""
    app.command("gate")(gate)
    app.command("gate-interleave")(gate_interleave)
    app.command("gate-eval")(gate_eval)
    app.command("gate-calibrate")(gate_calibrate)
    app.add_typer(baseline_app, name="baseline")
