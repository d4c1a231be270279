"""Gate rules: small objects parsed from text that decide whether a metric regressed.

Grammar (one rule per ``--rule``; pytest-benchmark's ``--benchmark-compare-fail`` is the model)::

    RULE   := METRIC ":" LIMIT [ "@" FILTER { "," FILTER } ]
    METRIC := latency | call_latency | peak_memory | energy | slope
    LIMIT  := off
            | +P%             latency, call_latency, energy, peak_memory: allowed relative increase
            | +SIZE | +P%+SIZE  peak_memory: allowed absolute (and relative) increase,
                                SIZE = N(B|KB|MB|GB|KiB|MiB|GiB)
            | +X              slope: allowed increase of the fitted log-log exponent
    FILTER := KEY OP VALUE
    KEY    := kernel backend device dtype mode level causal   (OP: = or !=, VALUE may list a|b|c)
            | B T H D hidden                                  (OP: = != >= <= > <, VALUE an integer;
                                                              D per head, hidden = H * D: a layer's width)

Examples: ``latency:+5%``, ``latency:+3%@kernel=retnet,T>=4096``, ``peak_memory:+0%+1MiB``,
``energy:off@kernel=softmax``, ``slope:+0.1@backend=torch``.

``latency`` gates each point's primary timing: on CUDA records with two timings that is the
*device time* (what the kernel costs the GPU; the default gate on CUDA), on CPU the call latency,
on old CUDA records their single timing. ``call_latency`` gates the sync-to-sync latency of one
isolated call (host overhead included) that CUDA records store beside it; it is off unless a rule
names it (``call_latency:+5%``); on CPU records it reads the same samples as ``latency``. Both are
tested the same way and belong to one Holm family.

Precedence: rules are checked in order, defaults first, then each ``--rule``; for every point (or
series) and metric the *last* matching rule applies, so a later scoped rule refines an earlier
broad one and ``off`` exempts a scope. ``peak_memory:+P%`` without a SIZE keeps the default byte
tolerance (``DEFAULT_MEMORY_TOLERANCE_BYTES``); write ``+0%+0B`` for exact equality.

The statistics behind each metric live in ``profiler.analysis.compare``; a rule only holds the
threshold and judges evidence: ``fails(...)`` returns a message when the threshold is exceeded,
else None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from profiler.core.errors import UsageError, did_you_mean
from profiler.core.fmt import bytes_exact
from profiler.core.records import PointSpec

METRICS = ("latency", "call_latency", "peak_memory", "energy", "slope")
STRING_KEYS = ("kernel", "backend", "device", "dtype", "mode", "level", "causal")
INT_KEYS = ("B", "T", "H", "D", "hidden")
OPS = ("!=", ">=", "<=", "=", ">", "<")
DEFAULT_MEMORY_TOLERANCE_BYTES = 4096
DEFAULT_RULES = ("latency:+5%", "peak_memory:+0%", "energy:+10%", "slope:+0.1")

_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_PCT_RE = re.compile(rf"^\+?{_NUM}%$")
_SIZE_RE = re.compile(rf"^\+?{_NUM}\s*([kKmMgG]i?[bB]|[bB])$")
_MEM_BOTH_RE = re.compile(rf"^\+?{_NUM}%\s*\+\s*{_NUM}\s*([kKmMgG]i?[bB]|[bB])$")
_SLOPE_RE = re.compile(rf"^\+?{_NUM}$")
_FILTER_RE = re.compile(r"^\s*([A-Za-z_]+)\s*(!=|>=|<=|=|>|<)\s*(.+?)\s*$")


@dataclass(frozen=True)
class Filter:
    """One ``KEY OP VALUE`` condition on a point spec."""

    key: str
    op: str
    values: tuple[str, ...]

    def matches(self, spec: PointSpec) -> bool:
        actual = getattr(spec, self.key)
        if self.key in INT_KEYS:
            v = int(self.values[0])
            return {"=": actual == v, "!=": actual != v, ">=": actual >= v, "<=": actual <= v,
                    ">": actual > v, "<": actual < v}[self.op]
        if self.key == "causal":
            actual = "true" if actual else "false"
        hit = str(actual) in self.values
        return hit if self.op == "=" else not hit

    def __str__(self) -> str:
        return f"{self.key}{self.op}{'|'.join(self.values)}"


@dataclass(frozen=True)
class Rule:
    """A threshold on one metric, optionally scoped by filters.

    ``rel``: allowed relative increase (0.05 = +5%). ``abs_bytes``: allowed absolute increase for
    peak_memory. ``delta``: allowed increase of the slope exponent. ``off``: scope exempt.
    """

    metric: str
    rel: float = 0.0
    abs_bytes: int = 0
    delta: float = 0.0
    off: bool = False
    filters: tuple[Filter, ...] = ()
    text: str = ""

    # ------------------------------------------------------------------ scope
    def matches(self, spec: PointSpec) -> bool:
        return all(f.matches(spec) for f in self.filters)

    @property
    def threshold_ratio(self) -> float:
        """Ratio above which latency/energy count as regressed (1 + rel)."""
        return 1.0 + self.rel

    # ------------------------------------------------------------------ judgements
    def memory_limit(self, baseline_bytes: int) -> float:
        return baseline_bytes * (1.0 + self.rel) + self.abs_bytes

    def fails(self, current: float, baseline: float, *, interval: tuple[float, float] | None = None,
              significant: bool | None = None) -> str | None:
        """A message when ``current`` exceeds ``baseline`` beyond this rule's limit, else None.

        For latency pass the ratio's confidence ``interval`` and whether the family-wise corrected
        test is ``significant``: latency fails only when both hold (the whole interval lies beyond
        the threshold). For slope ``interval`` bounds the exponent difference. Memory and energy
        are compared as exact values.
        """
        if self.off:
            return None
        if self.metric in ("latency", "call_latency"):
            ratio = current / baseline
            lo = interval[0] if interval is not None else ratio
            sig = significant if significant is not None else lo > self.threshold_ratio
            name = "call latency" if self.metric == "call_latency" else "latency"
            if sig and lo > self.threshold_ratio:
                return (f"{name} x{ratio:.3f} (CI {interval[0]:.3f}-{interval[1]:.3f}) exceeds +{self.rel:.1%}"
                        if interval else f"{name} x{ratio:.3f} exceeds +{self.rel:.1%}")
            return None
        if self.metric == "peak_memory":
            limit = self.memory_limit(int(baseline))
            if current > limit:
                return f"peak memory {int(current)} B > {int(baseline)} B {self.limit_text}"
            return None
        if self.metric == "energy":
            ratio = current / baseline
            if ratio > self.threshold_ratio:
                return f"energy x{ratio:.3f} exceeds +{self.rel:.1%}"
            return None
        if self.metric == "slope":
            lo = interval[0] if interval is not None else current - baseline
            if current - baseline > self.delta and lo > self.delta:
                return f"slope {baseline:.3f} -> {current:.3f} (+{current - baseline:.3f} > +{self.delta:g})"
            return None
        raise ValueError(f"unknown metric {self.metric}")

    @property
    def limit_text(self) -> str:
        if self.off:
            return "off"
        if self.metric == "slope":
            return f"+{self.delta:g}"
        if self.metric == "peak_memory":
            return f"+{self.rel * 100:g}%+{_fmt_bytes(self.abs_bytes)}"
        return f"+{self.rel * 100:g}%"

    def __str__(self) -> str:
        scope = ",".join(str(f) for f in self.filters)
        return f"{self.metric}:{self.limit_text}" + (f"@{scope}" if scope else "")


def _fmt_bytes(n: int) -> str:
    return bytes_exact(n)


def _size(num: str, unit: str) -> int:
    return int(round(float(num) * _UNITS[unit.lower()]))


# --------------------------------------------------------------------------- parsing

def parse_filter(text: str, rule_text: str) -> Filter:
    m = _FILTER_RE.match(text)
    if not m:
        raise UsageError(f"rule {rule_text!r}: filter {text.strip()!r} is not KEY OP VALUE "
                         f"(e.g. kernel=retnet, T>=4096; operators {' '.join(OPS)})")
    key, op, value = m.groups()
    if key not in STRING_KEYS + INT_KEYS:
        raise UsageError(f"rule {rule_text!r}: unknown filter key {key!r}; {did_you_mean(key, STRING_KEYS + INT_KEYS)}")
    values = tuple(v.strip() for v in value.split("|"))
    if any(not v for v in values):
        raise UsageError(f"rule {rule_text!r}: empty value in filter {text.strip()!r}")
    if key in INT_KEYS:
        if len(values) != 1 or not re.fullmatch(r"\d+", values[0]):
            raise UsageError(f"rule {rule_text!r}: {key} needs one integer value (got {value!r})")
    else:
        if op not in ("=", "!="):
            raise UsageError(f"rule {rule_text!r}: {key} takes only = or != (got {op!r})")
        if key == "causal":
            norm = tuple({"1": "true", "0": "false"}.get(v.lower(), v.lower()) for v in values)
            if any(v not in ("true", "false") for v in norm):
                raise UsageError(f"rule {rule_text!r}: causal takes true or false (got {value!r})")
            values = norm
    return Filter(key, op, values)


def parse_rule(text: str) -> Rule:
    """Parse one rule string (grammar in the module docstring); a UsageError names what is wrong."""
    raw = text
    text = text.strip()
    if ":" not in text:
        raise UsageError(f"rule {raw!r} is not METRIC:LIMIT[@FILTERS] (e.g. latency:+5%); metrics: {', '.join(METRICS)}")
    metric, rest = (s.strip() for s in text.split(":", 1))
    if metric not in METRICS:
        raise UsageError(f"rule {raw!r}: unknown metric {metric!r}; {did_you_mean(metric, METRICS)}")
    limit, _, scope = rest.partition("@")
    limit = limit.strip().replace(" ", "")
    filters: tuple[Filter, ...] = ()
    if _:
        parts = [p for p in scope.split(",")]
        if not scope.strip() or any(not p.strip() for p in parts):
            raise UsageError(f"rule {raw!r}: empty filter after '@' (e.g. @kernel=retnet,T>=4096)")
        filters = tuple(parse_filter(p, raw) for p in parts)
    if limit.lower() == "off":
        return Rule(metric, off=True, filters=filters, text=raw)
    if limit.startswith("-"):
        raise UsageError(f"rule {raw!r}: the limit must be an allowed increase >= 0 (e.g. +5%)")
    if metric == "slope":
        m = _SLOPE_RE.match(limit)
        if not m:
            raise UsageError(f"rule {raw!r}: slope takes an exponent increase like +0.1 (or off)")
        return Rule(metric, delta=float(m.group(1)), filters=filters, text=raw)
    m = _PCT_RE.match(limit)
    if m:
        rel = float(m.group(1)) / 100.0
        abs_bytes = DEFAULT_MEMORY_TOLERANCE_BYTES if metric == "peak_memory" else 0
        return Rule(metric, rel=rel, abs_bytes=abs_bytes, filters=filters, text=raw)
    if metric == "peak_memory":
        m = _SIZE_RE.match(limit)
        if m:
            return Rule(metric, rel=0.0, abs_bytes=_size(*m.groups()), filters=filters, text=raw)
        m = _MEM_BOTH_RE.match(limit)
        if m:
            pct, num, unit = m.groups()
            return Rule(metric, rel=float(pct) / 100.0, abs_bytes=_size(num, unit), filters=filters, text=raw)
        raise UsageError(f"rule {raw!r}: peak_memory takes +P%, +SIZE or +P%+SIZE (SIZE like 4KiB, 1MB) or off")
    raise UsageError(f"rule {raw!r}: {metric} takes a relative increase like +5% (or off)")


@dataclass(frozen=True)
class RuleSet:
    """Ordered rules; for a spec and metric the last matching rule applies (None: not gated)."""

    rules: tuple[Rule, ...]

    @classmethod
    def parse(cls, texts: Sequence[str] = (), *, defaults: bool = True) -> "RuleSet":
        base = [parse_rule(t) for t in DEFAULT_RULES] if defaults else []
        return cls(tuple(base + [parse_rule(t) for t in texts]))

    def for_point(self, metric: str, spec: PointSpec) -> Rule | None:
        chosen = None
        for r in self.rules:
            if r.metric == metric and r.matches(spec):
                chosen = r
        if chosen is None or chosen.off:
            return None
        return chosen

    def __iter__(self):
        return iter(self.rules)
