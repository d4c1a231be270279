"""Compare a candidate run with a baseline run and decide, per rule, whether anything regressed.

Methodology
-----------
* **Matching.** Points are matched by spec id. Points present on one side only are listed as
  missing; interpreted points (fla under Triton's CPU interpreter) are listed and never gated.
  A baseline point that ran ``ok`` but whose candidate ended ``wrong``/``oom``/``timeout``/
  ``crashed`` is a *status* regression.
* **Environment.** The two manifests' environment fingerprints (device, CPU model, torch / triton /
  fla / CUDA versions, ...; see ``fingerprint``) must agree; otherwise the comparison is refused with
  a ``UsageError`` naming the differences, unless ``allow_env_mismatch`` (then the differences are
  carried in the result and shown in every output).
* **Latency.** Per point, the ratio of medians ``median(candidate) / median(baseline)`` of the raw
  samples (seconds per call) with a seeded bootstrap interval (``profiler.core.stats.ratio_of_quantiles``:
  normal interval on the log scale from the bootstrap standard error, widened in quadrature by a
  ``noise_floor`` of 1% for the run-to-run variation that samples within one run cannot show).
  ``statistic="q10"`` compares the 10% quantiles instead: on a shared CPU whose samples are
  bimodal (fast, or preempted), the median sits between the modes and its interval is too wide to
  detect anything, while interference only ever adds time, so a low quantile tracks the kernel
  (``serprof gate-eval`` measures both). The one-sided p-value of
  H0 "ratio <= 1 + threshold" is computed per point and the family of all latency tests of the
  comparison is corrected with **Holm's step-down procedure**. A point regresses only when its
  Holm-adjusted p-value is below ``alpha`` (default 0.025, family-wise) *and* the whole displayed
  two-sided ``1 - 2*alpha`` interval (95% by default) lies above the threshold; the second
  condition follows from the first and is checked for clarity. A ratio above the threshold that is
  not significant is ``unclear`` (passes); an interval wholly below ``1 / (1 + threshold)`` is
  ``faster``.
* **Drift normalization** (``normalize``): ``calibration``/``matmul`` multiplies each run's samples
  by ``matmul_flops_per_s(run) / matmul_flops_per_s(baseline)`` from the manifests' calibration
  (``bandwidth``: ``bandwidth_bytes_per_s``), i.e. latencies are expressed in baseline-machine
  seconds; a machine 10% slower in the calibration matmul then does not look 10% slower.
* **Two timings (CUDA).** ``latency`` gates the primary timing, on new CUDA records the device
  time; ``call_latency`` (only when a rule names it) gates the stored sync-to-sync call latency, on
  CPU the same samples as ``latency``. Both join the one Holm family. A point whose two sides
  measured different quantities (an old single-timing CUDA baseline against a device-time
  candidate) is listed as not compared, never gated across quantities.
* **Peak memory** is compared exactly: regression when ``cand > base * (1 + rel) + abs_bytes``.
* **Energy** (per call, J; only where both sides have a meter reading) is compared as a ratio
  against the threshold; the stored value is a long-window average, no per-sample interval exists.
* **Slope**: per series (all spec fields but T) over the T values both sides have (>= 3), the
  exponent of ``profiler.analysis.fits.fit_slope`` (least squares of log median latency on log T,
  upper part of the sweep, seeded bootstrap 95% CI). The difference candidate - baseline gets the
  interval ``diff +- hypot(half-width_b, half-width_c)``; regression when that whole interval lies
  above the rule's delta (not Holm-corrected: a sweep has few series).

Pure numpy/scipy; nothing prints or formats: ``profiler.report.gate`` renders a ``GateResult``
(table cells, Markdown, JSON).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np

from profiler.analysis.fits import fit_slope
from profiler.analysis.gates import RuleSet
from profiler.analysis.series import quantity_label
from profiler.core.errors import UsageError, did_you_mean
from profiler.core.noise import NoiseClass, NoiseProfile, fallback_class
from profiler.core.records import PointRecord, PointSpec, energy_per_call
from profiler.core.stats import (
    auto_quantile,
    group_log_quantiles,
    history_ratio,
    holm_adjust,
    one_sided_p,
    replicated_ratio,
)
from profiler.store.runs import LoadedRun

NORMALIZATIONS = {"none": None, "calibration": "matmul_flops_per_s", "matmul": "matmul_flops_per_s",
                  "bandwidth": "bandwidth_bytes_per_s"}
FAILED_STATUSES = ("wrong", "oom", "timeout", "crashed")
VERDICT_ORDER = ("regression", "unclear", "faster", "pass")
MIN_SAMPLES = 5
DEFAULT_NOISE_FLOOR = 0.01


def parse_statistic(text: str) -> float | None:
    """``median`` -> 0.5, ``q10`` -> 0.10, ``auto`` -> None (per point: ``auto_quantile``)."""
    t = text.strip().lower()
    if t == "auto":
        return None
    if t == "median":
        return 0.5
    m = re.fullmatch(r"q(\d{1,2})", t)
    if m and 1 <= int(m.group(1)) <= 99:
        return int(m.group(1)) / 100.0
    raise UsageError(f"unknown --statistic {text!r}; valid: auto, median, or a quantile q1..q99 such as q10")


def statistic_name(q: float) -> str:
    return "median" if q == 0.5 else f"q{round(q * 100)}"


MIN_SLOPE_POINTS = 3

#: Environment keys (last dotted component, lower case) that identify the machine and software stack.
FINGERPRINT_RE = re.compile(
    r"(device|gpu|cpu|processor|machine|platform|arch|model|torch|triton|fla|cuda|cudnn|driver|python|"
    r"compute_capability|threads)", re.I)
#: ...except those that legitimately differ between two runs of the same setup.
VOLATILE_RE = re.compile(
    r"(git|sha|commit|dirty|serprof|host|time|date|pid|uptime|load|free|avail|temp|clock|path|user|"
    r"created|started|finished|index|uuid|serial|bus|pci|memory_used|mem_used|power|util)", re.I)


# --------------------------------------------------------------------------- environment

def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = obj
    return out


def fingerprint(environment: Mapping[str, Any], ignore: Sequence[str] = ()) -> dict[str, str]:
    """The environment keys two comparable runs must share (flattened to dotted keys)."""
    out = {}
    for key, value in _flatten(environment).items():
        leaf = key.rsplit(".", 1)[-1]
        if key in ignore or leaf in ignore:
            continue
        if FINGERPRINT_RE.search(leaf) and not VOLATILE_RE.search(key):
            out[key] = str(value)
    return out


def env_differences(baseline: Mapping[str, Any], candidate: Mapping[str, Any],
                    ignore: Sequence[str] = ()) -> list[tuple[str, str | None, str | None]]:
    """``(key, baseline value, candidate value)`` for every fingerprint key that differs."""
    a, b = fingerprint(baseline, ignore), fingerprint(candidate, ignore)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            diffs.append((key, a.get(key), b.get(key)))
    return diffs


# --------------------------------------------------------------------------- result values

@dataclass(frozen=True)
class Check:
    """One metric compared on one point (or, for ``slope``, one series).

    ``baseline``/``candidate`` are in SI units (s median, bytes, J) or the exponent for slope;
    ``ratio`` is candidate/baseline (slope: the difference); ``ci_*`` bound the latency ratio.
    """

    metric: str
    subject: str
    verdict: str                    # regression | unclear | faster | pass
    rule: str
    baseline: float
    candidate: float
    ratio: float
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    n_baseline: int | None = None
    n_candidate: int | None = None
    message: str | None = None
    processes_baseline: int | None = None    # worker processes (history: runs) behind each side
    processes_candidate: int | None = None
    spread_baseline: float | None = None     # observed between-process (history: between-run) SD, log scale
    spread_candidate: float | None = None
    df: float | None = None                  # degrees of freedom of the interval (None: normal)
    noise_sd: float | None = None            # expected SD of an A/A log ratio on this machine (the floor used)
    statistic: str | None = None             # the quantile compared per process (median, q10, ...)
    drift_control: bool = False              # ratio of control-normalized samples (machine speed divided out)



@dataclass(frozen=True)
class NotCompared:
    """A point that was listed but not gated, and why."""

    subject: str
    reason: str


@dataclass
class GateResult:
    """Everything a gate decided; ``exit_code`` is 1 when any check regressed."""

    baseline_label: str
    candidate_label: str
    checks: list[Check] = field(default_factory=list)
    not_compared: list[NotCompared] = field(default_factory=list)
    missing_in_candidate: list[str] = field(default_factory=list)
    missing_in_baseline: list[str] = field(default_factory=list)
    env_differences: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    alpha: float = 0.025
    confidence: float = 0.95
    normalize: str = "none"
    statistic: str = "auto"
    noise_floor: float = DEFAULT_NOISE_FLOOR
    n_boot: int = 1000
    seed: int = 0
    rules: tuple[str, ...] = ()
    fail_on_missing: bool = False
    noise_source: str = ""           # where the noise floor came from (a profile file, or the fixed fallback)
    design: str = "two runs"         # two runs | interleaved | history of N runs

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.verdict == "regression"]

    @property
    def passed(self) -> bool:
        return not self.regressions and not (self.fail_on_missing and self.missing_in_candidate)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    @property
    def nothing_compared(self) -> bool:
        """No check ran: an empty candidate or baseline, or no point in common."""
        return not self.checks

    def sorted_checks(self) -> list[Check]:
        return sorted(self.checks, key=lambda c: (VERDICT_ORDER.index(c.verdict), c.metric, c.subject))

    def __repr__(self) -> str:
        """``<GateResult PASS: candidate vs baseline, 12 checks (0 regression, 1 unclear, ...), 1 missing>``."""
        counts = ", ".join(f"{sum(c.verdict == v for c in self.checks)} {v}" for v in VERDICT_ORDER)
        missing = len(self.missing_in_candidate)
        return (f"<GateResult {'PASS' if self.passed else 'FAIL'}: {self.candidate_label} vs {self.baseline_label}, "
                f"{len(self.checks)} checks ({counts})"
                + (f", {missing} missing in candidate" if missing else "")
                + (f", {len(self.not_compared)} not compared" if self.not_compared else "") + ">")


# --------------------------------------------------------------------------- comparison

def _speed(run: LoadedRun, key: str, side: str) -> float:
    cal = run.manifest.calibration or {}
    v = cal.get(key)
    if not isinstance(v, (int, float)) or v <= 0:
        raise UsageError(f"--normalize needs calibration {key!r} in the {side} run ({run.path}); "
                         f"it has {sorted(cal) or 'no calibration'}; use --normalize none")
    return float(v)


def _timing(rec: PointRecord, metric: str):
    """The Timing a latency metric gates: ``latency`` the primary timing (device time on new CUDA
    records), ``call_latency`` the stored call latency, or the primary timing where that *is* the
    call latency (CPU)."""
    if metric == "latency":
        return rec.timing
    if rec.call_latency is not None:
        return rec.call_latency
    if rec.timing is not None and quantity_label(rec) == "call latency":
        return rec.timing
    return None


def _groups(timing) -> list[np.ndarray]:
    """The timing's positive, finite samples split by worker process (empty groups dropped)."""
    if timing is None or not timing.samples_s:
        return []
    out = []
    for g in timing.process_groups():
        x = np.asarray(g, dtype=float)
        x = x[np.isfinite(x) & (x > 0)]
        if x.size:
            out.append(x)
    return out


def _controlled(tb, tc) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
    """Both sides' control-normalized samples by process, or ``(None, None)`` unless both have them."""
    cb = tb.controlled_groups() if tb is not None else None
    cc = tc.controlled_groups() if tc is not None else None
    if cb is None or cc is None:
        return None, None
    return ([np.asarray(g, dtype=float) for g in cb if len(g)], [np.asarray(g, dtype=float) for g in cc if len(g)])


def _history_centres(history: Sequence[LoadedRun], pid: str, metric: str, q: float, scale: float,
                     controlled: bool = False) -> list[float]:
    """Each history run's estimate of the point: the mean over its processes of ``log quantile_q``
    (of the control-normalized samples when ``controlled``; runs without controls are then left out)."""
    out = []
    for run in history:
        rec = run.by_id().get(pid)
        if rec is None or rec.status != "ok":
            continue
        t = _timing(rec, metric)
        if controlled:
            cg = t.controlled_groups() if t is not None else None
            if cg is None:
                continue
            groups = [np.asarray(g, dtype=float) for g in cg if len(g)]   # dimensionless: no scale
        else:
            groups = [g * scale for g in _groups(t)]
        if groups:
            out.append(float(group_log_quantiles(groups, q).mean()))
    return out


#: Two sides whose CPU shares (``Timing.cpu_share``) differ by more than this factor were not measured
#: under the same conditions: another process competed for the cores on one side.
BUSY_SHARE_RATIO = 0.9


def busy_reason(baseline, candidate) -> str | None:
    """Why the two timings cannot be compared because the machine was busier on one side, else None."""
    sb = baseline.cpu_share if baseline is not None else None
    sc = candidate.cpu_share if candidate is not None else None
    if sb is None or sc is None or sb <= 0 or sc <= 0:
        return None
    if min(sb, sc) / max(sb, sc) >= BUSY_SHARE_RATIO:
        return None
    side = "candidate" if sc < sb else "baseline"
    return (f"the machine was busy during the {side} run: its worker got {min(sb, sc):.0%} of its threads' time "
            f"vs {max(sb, sc):.0%} on the other side (another process competed for the cores); measure again")


def throttled_reason(baseline, candidate) -> str | None:
    """Why two records cannot be compared because one was timed while its device throttled, else None."""
    for side, rec in (("baseline", baseline), ("candidate", candidate)):
        flag = getattr(rec, "flagged", None)
        if flag:
            return (f"the {side} point was {flag}; a throttled point is never gated on "
                    "(let the GPU cool, use --cooldown or --lock-clocks, and measure again)")
    return None


#: z of the two-sided 95% A/A band that decides "too noisy to judge"
NOISE_Z = 1.96


def _too_noisy(rule, expected_sd: float) -> bool:
    """The machine's 95% A/A band for this point is wider than the rule's threshold."""
    return math.expm1(NOISE_Z * expected_sd) > rule.rel


def noise_class(noise: NoiseProfile | None, noise_floor: float, median_s: float) -> NoiseClass:
    """The noise class for a point of ``median_s`` seconds: from the profile, else the fixed fallback."""
    cls = noise.for_latency(median_s) if noise is not None else None
    return cls if cls is not None else fallback_class(noise_floor)


def noise_source(noise: NoiseProfile | None, noise_floor: float) -> str:
    """Where the noise floor came from, in words (stored in the verdict)."""
    if noise is None:
        return f"fixed {noise_floor:.1%} fallback (no noise profile)"
    when = f", measured {noise.created_at}" if noise.created_at else ""
    return f"noise profile {noise.path or '(in memory)'} ({noise.runs} runs x {noise.processes} processes{when})"


def _series_key(spec: PointSpec) -> PointSpec:
    return replace(spec, T=0)


def _series_label(spec: PointSpec) -> str:
    return spec.id.replace("/T0/", "/T*/")


def check_options(*, alpha: float = 0.025, normalize: str = "none", statistic: str = "auto",
                  noise_floor: float = DEFAULT_NOISE_FLOOR, n_boot: int = 1000, seed: int = 0) -> float:
    """Validate the gate's options before any run is read (``UsageError`` naming the flag); the quantile compared."""
    if normalize not in NORMALIZATIONS:
        raise UsageError(f"unknown --normalize {normalize!r}; {did_you_mean(normalize, NORMALIZATIONS)}")
    q = parse_statistic(statistic)
    if not 0.0 <= noise_floor < 1.0:
        raise UsageError(f"--noise-floor must be in [0, 1) (a relative run-to-run variation), got {noise_floor}")
    if not 0.0 < alpha < 0.5:
        raise UsageError(f"--alpha must be in (0, 0.5), got {alpha}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or not 100 <= n_boot <= 1_000_000:
        raise UsageError(f"--n-boot must be a whole number from 100 to 1000000 (bootstrap resamples), got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 32:
        raise UsageError(f"--seed must be a whole number from 0 to 2**32 - 1, got {seed!r}")
    return q


def compare_runs(baseline: LoadedRun, candidate: LoadedRun, rules: RuleSet | None = None, *,
                 alpha: float = 0.025, normalize: str = "none", allow_env_mismatch: bool = False,
                 ignore_env: Sequence[str] = (), n_boot: int = 1000, seed: int = 0,
                 statistic: str = "auto", noise_floor: float = DEFAULT_NOISE_FLOOR,
                 min_samples: int = MIN_SAMPLES, fail_on_missing: bool = False,
                 baseline_label: str | None = None, candidate_label: str | None = None,
                 noise: NoiseProfile | None = None, runs_apart: int = 2, design: str = "two runs",
                 history: Sequence[LoadedRun] | None = None, drift_control: bool = True) -> GateResult:
    """Gate ``candidate`` against ``baseline`` (methodology in the module docstring).

    ``noise``: the machine's noise profile (None: the fixed ``noise_floor`` fallback, with a warning);
    ``runs_apart``: how many of the two sides are separate runs, each adding the between-run variance
    (2 for two sweeps, 0 for one interleaved job whose processes alternate); ``history``: earlier runs
    of the baseline code (``baseline`` is usually the newest of them): latency is then judged against
    their spread (``profiler.core.stats.history_ratio``) wherever at least two of them measured a point;
    ``drift_control``: where both sides timed a control after every sample (CPU), compare the samples
    divided by their controls, so a machine that is momentarily slower for everything cancels out.
    """
    rules = rules if rules is not None else RuleSet.parse()
    q = check_options(alpha=alpha, normalize=normalize, statistic=statistic, noise_floor=noise_floor, n_boot=n_boot,
                      seed=seed)
    diffs = env_differences(baseline.manifest.environment, candidate.manifest.environment, ignore_env)
    if diffs and not allow_env_mismatch:
        shown = "; ".join(f"{k}: {a!r} vs {b!r}" for k, a, b in diffs[:4])
        more = f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else ""
        raise UsageError(f"environments differ ({shown}{more}); compare runs from the same setup, or pass "
                         f"--allow-env-mismatch (consider --normalize calibration)")
    result = GateResult(
        baseline_label=baseline_label or _label(baseline), candidate_label=candidate_label or _label(candidate),
        env_differences=diffs, alpha=alpha, confidence=1.0 - 2.0 * alpha, normalize=normalize,
        statistic=statistic, noise_floor=noise_floor, n_boot=n_boot, seed=seed, rules=tuple(str(r) for r in rules), fail_on_missing=fail_on_missing,
        warnings=[f"baseline: {w}" for w in baseline.warnings] + [f"candidate: {w}" for w in candidate.warnings],
        noise_source=(noise_source(noise, noise_floor) if runs_apart > 0 else
                      f"the interleaved processes' own spread (weak {noise_floor:.1%} prior)"), design=design,
    )
    if noise is None and runs_apart > 0:
        result.warnings.append(f"no noise profile: using a fixed {noise_floor:.1%} run-to-run noise floor; "
                               "measure this machine's with `serprof gate-calibrate`")
    scale_b = scale_c = 1.0
    key = NORMALIZATIONS[normalize]
    if key is not None:
        sb, sc = _speed(baseline, key, "baseline"), _speed(candidate, key, "candidate")
        scale_c = sc / sb

    base, cand = baseline.by_id(), candidate.by_id()
    result.missing_in_candidate = sorted(i for i in base if i not in cand and not base[i].spec.interpret)
    result.missing_in_baseline = sorted(i for i in cand if i not in base and not cand[i].spec.interpret)

    latency_pending: list[tuple[str, PointSpec, Any, Any, Any]] = []  # (metric, spec, rule, estimate, medians)
    slope_points: dict[tuple, dict[int, tuple[float, float]]] = {}
    slope_rules: dict[tuple, Any] = {}
    for pid in sorted(set(base) & set(cand)):
        b, c = base[pid], cand[pid]
        spec = b.spec
        if spec.interpret:
            result.not_compared.append(NotCompared(pid, "interpreted (correctness only, never gated)"))
            continue
        if b.status != "ok":
            why = f"baseline status {b.status}" + (f"; candidate now {c.status}" if c.status != b.status else "")
            result.not_compared.append(NotCompared(pid, why))
            continue
        if c.status != "ok":
            if c.status in FAILED_STATUSES:
                result.checks.append(Check("status", pid, "regression", "status must stay ok", 0.0, 0.0, math.nan,
                                           message=f"status ok -> {c.status}" + (f": {c.reason}" if c.reason else "")))
            else:
                result.not_compared.append(NotCompared(pid, f"candidate status {c.status}" + (f": {c.reason}" if c.reason else "")))
            continue

        # latency and call latency (statistics now, decisions after the family-wise correction)
        for metric in ("latency", "call_latency"):
            rule = rules.for_point(metric, spec)
            if metric == "call_latency" and rule is None:
                continue
            tb, tc = _timing(b, metric), _timing(c, metric)
            qb, qc = quantity_label(b, metric), quantity_label(c, metric)
            if tb is not None and tc is not None and qb != qc:
                result.not_compared.append(NotCompared(pid, f"{metric}: baseline measured {qb}, candidate {qc}"))
                continue
            gb, gc = _groups(tb), _groups(tc)
            nb, nc = sum(g.size for g in gb), sum(g.size for g in gc)
            if nb < min_samples or nc < min_samples:
                what = "latency" if metric == "latency" else "call latency"
                result.not_compared.append(NotCompared(pid, f"{what}: too few samples ({nb} vs {nc}; need {min_samples})"))
                continue
            gb, gc = [g * scale_b for g in gb], [g * scale_c for g in gc]
            xb, xc = np.concatenate(gb), np.concatenate(gc)
            if rule is not None:
                qp = q if q is not None else auto_quantile(spec.device)
                qb, qc = float(np.quantile(xb, qp)), float(np.quantile(xc, qp))
                # one interleaved job: its own processes are the noise (a weak prior only); separate runs:
                # the machine's profile
                cls = noise_class(noise if runs_apart > 0 else None, noise_floor, qb)
                eb, ec = _controlled(tb, tc) if drift_control else (None, None)
                controlled = eb is not None
                if not controlled:
                    eb, ec = gb, gc
                centres = _history_centres(history, pid, metric, qp, scale_b, controlled) if history else []
                if len(centres) >= 2:
                    prior_sd = math.sqrt(cls.run_sd ** 2 + cls.process_sd ** 2 / max(1, len(ec)))
                    est = history_ratio(centres, ec, q=qp, confidence=1.0 - 2.0 * alpha, prior_sd=prior_sd,
                                        prior_df=min(cls.process_df, cls.run_df), n_baseline=nb)
                else:
                    est = replicated_ratio(eb, ec, q=qp, confidence=1.0 - 2.0 * alpha, process_sd=cls.process_sd,
                                           process_df=cls.process_df, run_sd=cls.run_sd, run_df=cls.run_df,
                                           runs=runs_apart, n_boot=n_boot, seed=seed)
                if controlled:
                    est = replace(est, n_baseline=nb, n_candidate=nc)
                expected = cls.ratio_sd(len(gb), len(gc), True) if runs_apart > 0 else est.log_se
                latency_pending.append((metric, spec, rule, est, (qb, qc), expected,
                                        busy_reason(tb, tc) or throttled_reason(b, c), qp, controlled))
            srule = rules.for_point("slope", spec) if metric == "latency" else None
            if srule is not None:
                k = (_series_key(spec), str(srule))
                slope_rules[k] = srule
                slope_points.setdefault(k, {})[spec.T] = (xb, xc)

        # peak memory: exact with a byte tolerance
        rule = rules.for_point("peak_memory", spec)
        mb = b.memory.peak_bytes if b.memory else None
        mc = c.memory.peak_bytes if c.memory else None
        if rule is not None and mb is not None and mc is not None:
            msg = rule.fails(mc, mb)
            verdict = "regression" if msg else ("faster" if mc < mb - rule.abs_bytes else "pass")
            result.checks.append(Check("peak_memory", pid, verdict, str(rule), float(mb), float(mc),
                                       mc / mb if mb else math.inf if mc else 1.0, message=msg))

        # energy: where both sides have a meter reading
        rule = rules.for_point("energy", spec)
        eb = energy_per_call(b.energy)[0]
        ec = energy_per_call(c.energy)[0]
        if rule is not None and eb and ec and eb > 0 and ec > 0:
            msg = rule.fails(ec, eb)
            verdict = "regression" if msg else ("faster" if ec / eb < 1.0 / rule.threshold_ratio else "pass")
            result.checks.append(Check("energy", pid, verdict, str(rule), float(eb), float(ec), ec / eb, message=msg))

    # Points whose calibrated A/A noise exceeds the rule's threshold cannot be judged: "unclear", out
    # of the family. Holm over the family of the others.
    judged = [item for item in latency_pending if not _too_noisy(item[2], item[5]) and item[6] is None]
    pvals = [one_sided_p(est, rule.threshold_ratio) for _, _, rule, est, _, _, _, _, _ in judged]
    adjusted = dict(zip((id(item) for item in judged), holm_adjust(pvals)))
    raw = dict(zip((id(item) for item in judged), pvals))
    for item in latency_pending:
        metric, spec, rule, est, (mb_s, mc_s), expected, busy, qp, controlled = item
        common = dict(statistic=statistic_name(qp), drift_control=controlled, processes_baseline=est.processes_baseline, processes_candidate=est.processes_candidate,
                      spread_baseline=est.spread_baseline, spread_candidate=est.spread_candidate,
                      df=est.df if math.isfinite(est.df) else None, noise_sd=expected)
        if busy is not None:
            result.checks.append(Check(metric, spec.id, "unclear", str(rule), mb_s, mc_s, est.ratio, est.ci_low,
                                       est.ci_high, None, None, est.n_baseline, est.n_candidate, busy, **common))
            continue
        if id(item) not in adjusted:
            msg = (f"noise on this machine (A/A ±{math.expm1(NOISE_Z * expected):.1%} at 95% for "
                   f"{est.processes_baseline} vs {est.processes_candidate} processes) exceeds the rule's "
                   f"+{rule.rel:.1%}: cannot tell a regression from noise (raise the threshold or --processes)")
            result.checks.append(Check(metric, spec.id, "unclear", str(rule), mb_s, mc_s, est.ratio, est.ci_low,
                                       est.ci_high, None, None, est.n_baseline, est.n_candidate, msg, **common))
            continue
        p, padj = raw[id(item)], float(adjusted[id(item)])
        significant = bool(padj < alpha)
        msg = rule.fails(est.ratio * mb_s, mb_s, interval=(est.ci_low, est.ci_high), significant=significant)
        if msg:
            verdict = "regression"
        elif est.ratio > rule.threshold_ratio:
            verdict = "unclear"
            msg = (f"x{est.ratio:.3f} is beyond +{rule.rel:.1%} but not significant (Holm p {padj:.2g}; "
                   f"interval {est.ci_low:.3f}-{est.ci_high:.3f})")
        elif est.ci_high < 1.0 / rule.threshold_ratio:
            verdict = "faster"
        else:
            verdict = "pass"
        result.checks.append(Check(metric, spec.id, verdict, str(rule), mb_s, mc_s, est.ratio, est.ci_low,
                                   est.ci_high, p, padj, est.n_baseline, est.n_candidate, msg, **common))

    # slope per series
    for k, pts in sorted(slope_points.items(), key=lambda kv: kv[0][0].id + kv[0][1]):
        series, srule = k[0], slope_rules[k]
        label = _series_label(series)
        if len(pts) < 2:   # a single length is not a series
            continue
        if len(pts) < MIN_SLOPE_POINTS:
            result.not_compared.append(NotCompared(label, f"slope: only {len(pts)} common T (need {MIN_SLOPE_POINTS})"))
            continue
        Ts = sorted(pts)
        fb = fit_slope(Ts, [pts[t][0] for t in Ts], seed=seed)
        fc = fit_slope(Ts, [pts[t][1] for t in Ts], seed=seed)
        if fb is None or fc is None:
            result.not_compared.append(NotCompared(label, "slope: no fit (non-positive samples)"))
            continue
        diff = fc.slope - fb.slope
        half = math.hypot((fb.ci_high - fb.ci_low) / 2.0, (fc.ci_high - fc.ci_low) / 2.0)
        lo, hi = diff - half, diff + half
        msg = srule.fails(fc.slope, fb.slope, interval=(lo, hi))
        verdict = ("regression" if msg else "unclear" if diff > srule.delta else
                   "faster" if hi < -srule.delta else "pass")
        result.checks.append(Check("slope", f"{label} (T={fc.T_min}..{fc.T_max})", verdict, str(srule), fb.slope, fc.slope,
                                   diff, lo, hi, message=msg))
    return result


def _label(run: LoadedRun) -> str:
    return f"{run.path} ({run.manifest.run_id})"


def check_compared(result: GateResult, allow_empty: bool = False) -> None:
    """A gate that compared nothing must not pass silently: ``UsageError`` (exit 2) unless ``allow_empty``."""
    if allow_empty or not result.nothing_compared:
        return
    counts = ((len(result.missing_in_candidate), "baseline point(s) missing in the candidate"),
              (len(result.missing_in_baseline), "candidate point(s) not in the baseline"),
              (len(result.not_compared), "not comparable"))
    why = [f"{n} {what}" for n, what in counts if n]
    if not (result.missing_in_candidate or result.missing_in_baseline):
        why.insert(0, "both sides have no comparable point")
    raise UsageError(f"nothing was compared ({'; '.join(why)}): {result.baseline_label} vs "
                     f"{result.candidate_label}; pass --allow-empty to accept an empty gate")
