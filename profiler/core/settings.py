"""How each point is measured: every measurement setting, declared once.

``MeasureSettings`` is the stored form (a frozen dataclass in every run's manifest). Each of its
fields is declared with ``setting(...)``: type (the annotation), default, unit, allowed range or
choices, help, the levels it applies to, the ``serprof sweep`` flag and the scenario key. All the
rest is derived from these declarations (``SETTINGS``):

* the options of ``serprof sweep`` (``profiler.cli.sweep``: one option per setting, its help showing
  unit, default and range),
* the keys of a scenario file's ``[settings]`` table (``[settings] target_rel_ci = 0.02``),
* Python keyword arguments (``profiler.sweep(overrides={"target_rel_ci": 0.02})``, ``from_values``),
* validation (``parse``): a bad value raises ``UsageError`` with one line naming where it came
  from (the flag, or the scenario file and its ``[settings]`` key), the value and what is allowed,
* the check of a loaded manifest (``check``) and the fuzz tests (``tests/hardening``).

Adding a setting is one ``setting(...)`` field below plus the code that uses it.
Values are SI: seconds, bytes, counts.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from profiler.core import limits, units, varlen
from profiler.core.errors import UsageError, did_you_mean

#: The scenario file's table of measurement settings (``[settings]``).
TABLE = "settings"

_TRUE = ("1", "true", "yes", "on")
#: What one timed call of a point processes (``PointSpec.phase``; ``profiler.kernels.recurrent``).
PHASES = ("prefill", "decode", "streaming")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    """One measurement setting's declaration. ``name`` and ``kind`` come from the dataclass field."""

    default: Any
    help: str
    unit: str = ""                    # "s", "bytes" or "" (a count)
    low: float = 0                    # allowed range of a number: low .. high
    high: float = 0
    low_open: bool = False            # True: low itself is not allowed (> low)
    flag: str = ""                    # ``serprof sweep`` flag; default ``--<name with dashes>``
    flag_false: str = ""              # booleans: the flag that sets False; default ``--no-<flag>``
    key: str = ""                     # key in ``[settings]``; default the name
    aliases: tuple[str, ...] = ()     # other accepted keys / keywords
    levels: tuple[str, ...] = ()      # levels it applies to; () = every level
    choices: tuple[str, ...] = ()     # a word setting: the allowed words
    from_bool: tuple[str, ...] = ()   # a word setting's older boolean spelling: (word for false, word for true)
    at_least: str = ""                # another setting this one must not be below
    none: str = ""                    # optional settings: what None means (spelt as this word)
    parser: Any = None                # (text, where) -> value: a flag's / key's text when ``float()`` cannot read it
    syntax: str = ""                  # "text" settings: the allowed spellings in words
    name: str = ""                    # filled in from the field
    kind: str = ""                    # "bool" | "int" | "float" | "bytes" | "choice" | "modules"; from the annotation

    # ---- derived spellings
    @property
    def toml_key(self) -> str:
        """Dotted scenario key, as messages name it (``settings.target_rel_ci``)."""
        return f"{TABLE}.{self.key}"

    def flag_for(self, value: Any = None) -> str:
        """The flag that sets ``value`` (``--no-verify`` for ``verify=False``)."""
        return self.flag_false if self.kind == "bool" and value is False else self.flag

    @property
    def spellings(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.name, self.key, *self.aliases)))

    @property
    def range(self) -> limits.Range:
        """``(low, high, low_inclusive, integer)`` of a number setting (``profiler.core.limits``)."""
        return (self.low, self.high, not self.low_open, self.kind != "float")

    def describe(self) -> str:
        """The allowed values in words: ``a finite number > 0 and <= 1``."""
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        if self.kind == "modules":
            return "dotted Python module names such as 'mypkg.kernels' (repeat the flag, or a TOML list)"
        if self.kind == "text":
            return self.syntax
        return "true or false" if self.kind == "bool" else limits.describe_range(self.range)

    def help_text(self) -> str:
        """``--help`` line: the help, the unit, the default and the allowed values."""
        if self.kind == "bool":
            default = "on" if self.default else "off"
        elif self.kind == "modules":
            default = self.none
        elif self.default is None:
            default = self.none
        else:
            default = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
            default += f" {self.unit}" if self.unit and self.unit != "bytes" else ""
        unit = f" Unit: {self.unit}." if self.unit else ""
        levels = f" Levels: {', '.join(self.levels)}." if self.levels else ""
        allowed = "" if self.kind == "bool" else f" Allowed: {self.describe()}."
        if self.kind == "choice":
            default = str(self.default)
        return f"{self.help}{unit} Default: {default}.{allowed}{levels}"


def setting(default: Any, help: str, **kw: Any) -> Any:
    """A ``MeasureSettings`` field declared as a setting (see ``Setting``)."""
    return dataclasses.field(default=default, metadata={"setting": Setting(default, help, **kw)})


@dataclass(frozen=True)
class MeasureSettings:
    """How each point is measured. Stored in the manifest; defaults suit a quick CPU sweep."""

    @property
    def l2_flush(self) -> bool:
        """True when ``l2 == "cold"`` (the name the measurement code and old manifests use)."""
        return self.l2 == "cold"

    warmup_s: float = setting(0.25, "Warm-up time budget per point (first calls and autotuning are never timed).",
                              unit="s", low=0, high=3600, flag="--warmup")
    min_warmup_calls: int = setting(2, "Warm-up calls at least, whatever the warm-up budget.", low=0, high=100_000)
    min_reps: int = setting(5, "Timed repetitions at least.", low=1, high=1_000_000)
    max_reps: int = setting(200, "Timed repetitions at most.", low=1, high=1_000_000, at_least="min_reps")
    target_rel_ci: float = setting(0.02, "Stop timing when the 95% CI of the median is within this relative "
                                   "half-width (0.02 = +-2%).", low=0, high=1, low_open=True, flag="--target-ci")
    time_budget_s: float = setting(2.0, "Time budget of the timed repetitions per point.", unit="s", low=0,
                                   high=86400, low_open=True, flag="--time-budget")
    verify: bool = setting(True, "Compare each point with its fp32 reference before timing it.")
    verify_max_T: int = setting(2048, "Longest T the reference runs at (a prefix for causal kernels).",
                                low=1, high=2 ** 31 - 1, flag="--verify-max-t")
    measure_memory: bool = setting(True, "Measure the peak memory of a call.", flag="--memory")
    measure_energy: bool = setting(True, "Measure energy (NVML on CUDA, RAPL on CPU where readable).",
                                   flag="--energy")
    energy_window_s: float = setting(1.0, "Energy window per point; the meter widens it to at least 1 s and 20 "
                                     "counter periods.", unit="s", low=0, high=3600, low_open=True,
                                     flag="--energy-window")
    l2: str = setting("warm", "CUDA: L2 cache state of each timed call. warm (default): the previous repetition "
                      "left the inputs in L2, as in a loop of calls. cold: a buffer of at least 2x the L2 size is "
                      "written before every call, inside the captured graph (no host time; the flush alone is "
                      "timed and subtracted).", choices=("warm", "cold"), aliases=("l2_flush",),
                      from_bool=("warm", "cold"))
    cooldown_s: float = setting(0.0, "Idle time before each point (lets clocks and temperature settle); a "
                                "throttled point is measured again after max(this, 2 s).", unit="s", low=0,
                                high=3600, flag="--cooldown")
    lock_clocks: bool = setting(False, "CUDA: lock the GPU clocks at their base (TDP) frequency through NVML "
                                "for the run and restore them at exit, exception or Ctrl-C (needs root; "
                                "refused with one line when not permitted).")
    seed: int = setting(0, "Seed of the random inputs.", low=0, high=2 ** 32 - 1)
    point_timeout_s: float = setting(300.0, "A point taking longer is killed (status timeout).", unit="s",
                                     low=0, high=7 * 86400, low_open=True, flag="--timeout")
    memory_budget_bytes: int | None = setting(
        None, "Points whose analytic memory exceeds this are skipped, e.g. 8GiB.", unit="bytes", low=1,
        high=units.MAX_BYTES, key="memory_budget", aliases=("memory_budget_bytes",), flag="--memory-budget",
        none="auto (CUDA: total minus max(2 GiB, 5%); CPU: 0.7 x MemAvailable)")
    processes: int = setting(3, "Worker processes each point is measured in (replication across processes for "
                             "the CI gate; the time budget is split between them; verification, memory and "
                             "energy come from the first).", low=1, high=64)
    phase: str = setting("prefill", "What one call measures: prefill (T tokens in one call), decode (--decode-steps "
                         "more tokens after a context of T, from a carried state or a KV cache) or streaming (one "
                         "chunk of --chunk-size tokens after T, state or cache carried).", choices=PHASES)
    decode_steps: int = setting(1, "Decode: tokens generated per timed call (an N-step loop, state or cache updated "
                                "in place); times are reported per token.", low=1, high=65536)
    chunk_size: int | None = setting(None, "Streaming: tokens per chunk (e.g. 1-2 tokens per 20-40 ms frame at 50 "
                                     "frames/s); required with --phase streaming.", low=1, high=2 ** 31 - 1,
                                     none="none")
    varlen: str | None = setting(None, "Kernel points time one packed batch (cu_seqlens) of --tokens tokens: "
                                 "sequences whose lengths are drawn from this distribution, seeded "
                                 "(profiler.core.varlen).", none="none", levels=("kernel",),
                                 parser=lambda raw, where: varlen.canonical(raw, where), syntax=varlen.SYNTAX)
    tokens: int | None = setting(None, "Varlen: total tokens of the packed batch (e.g. 16k); every sequence "
                                 "must fit it. Default with a fixed list: its sum.", low=1, high=2 ** 31 - 1,
                                 none="none", levels=("kernel",),
                                 parser=lambda raw, where: _one_int(raw, where))
    varlen_padded: bool = setting(True, "Varlen: also time the same sequences padded to the longest (B = count), "
                                  "the padded vs packed comparison; tokens/s counts real tokens.",
                                  levels=("kernel",))
    kernel_modules: tuple[str, ...] = setting(
        (), "Python modules exporting KERNEL or KERNELS (profiler.kernels.KernelSpec) to add to the kernels; "
        "stored with the run, imported by every worker.", flag="--kernel-module", none="none",
        levels=("kernel",))


def _declared() -> tuple[Setting, ...]:
    hints = typing.get_type_hints(MeasureSettings)
    out = []
    for f in dataclasses.fields(MeasureSettings):
        s: Setting = f.metadata["setting"]
        hint = hints[f.name]
        kind = "bytes" if s.unit == "bytes" else "choice" if s.choices else "modules" if typing.get_origin(hint) is tuple else "text" if s.parser is not None and str in (hint, *typing.get_args(hint)) else next(
            k for k, t in (("bool", bool), ("int", int), ("float", float)) if t is hint or t in typing.get_args(hint))
        flag = s.flag or "--" + f.name.replace("_", "-")
        out.append(dataclasses.replace(s, name=f.name, kind=kind, flag=flag, key=s.key or f.name,
                                       flag_false=s.flag_false or ("--no-" + flag[2:] if kind == "bool" else "")))
    return tuple(out)


#: Every declared setting, in declaration order.
SETTINGS: tuple[Setting, ...] = _declared()
_BY_SPELLING = {sp: s for s in SETTINGS for sp in s.spellings}


def lookup(key: str) -> Setting | None:
    """The setting a name, scenario key or alias stands for (``None``: not a setting)."""
    return _BY_SPELLING.get(key)


def toml_where(source: Any, key: str) -> str:
    """``<file>: key '<TABLE>.<key>'``, naming the key as the file spelt it."""
    return f"{source}: key '{TABLE}.{key}'"


# --------------------------------------------------------------------------- validation

def parse(s: Setting, raw: Any, where: str) -> Any:
    """``raw`` (a flag's text, a TOML value or a Python value) as setting ``s``'s type, within its range.

    ``where`` names the source (the flag ``--target-ci``, or the file and key: ``toml_where``) and starts
    every ``UsageError`` message.
    """
    if s.kind == "bool":
        return _parse_bool(raw, where)
    if s.kind == "choice":
        if s.from_bool and isinstance(raw, bool):    # the older boolean key (TOML true/false, a Python bool)
            return s.from_bool[int(raw)]
        return check(s, raw.strip().lower() if isinstance(raw, str) else raw, where)
    if s.kind == "modules":
        return check(s, _parse_modules(raw, where), where)
    if s.none and (raw is None or (isinstance(raw, str) and raw.strip().lower() in (s.none.split()[0], ""))):
        return None
    if s.kind == "text":
        if not isinstance(raw, str):
            raise UsageError(f"{where}: expected {s.syntax}, got {raw!r}")
        return s.parser(raw, where)
    if s.parser is not None and isinstance(raw, str):
        return check(s, s.parser(raw, where), where)
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise UsageError(f"{where}: expected {_expected(s)}, got {raw!r}")
    if s.kind == "bytes":
        if isinstance(raw, float):
            raise UsageError(f"{where}: expected {_expected(s)}, got {raw!r}")
        value: Any = raw if isinstance(raw, int) else _wrap(where, units.parse_bytes, raw)
    else:
        value = _number(s, raw, where)
    return check(s, value, where)


def check(s: Setting, value: Any, where: str) -> Any:
    """``value`` if it is of ``s``'s type and within its range; else ``UsageError`` naming ``where``."""
    if s.kind == "bool":
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {value!r}")
        return value
    if s.kind == "choice":
        if value not in s.choices:
            raise UsageError(f"{where}: {value!r} is not allowed; {did_you_mean(str(value), s.choices)}")
        return value
    if s.kind == "modules":
        if not isinstance(value, tuple) or not all(isinstance(v, str) and _is_module_name(v) for v in value):
            raise UsageError(f"{where}: expected {s.describe()}, got {value!r}")
        return value
    if value is None and s.none:
        return value
    if s.kind == "text":
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected {s.syntax}, got {value!r}")
        return s.parser(value, where)
    return limits.check_range(s.range, value, where)


def from_values(values: Mapping[str, tuple[Any, str]]) -> MeasureSettings:
    """``MeasureSettings`` from ``{name, key or alias: (raw value, where it came from)}``, validated.

    Unknown names are a ``UsageError`` naming where they came from, with a suggestion.
    """
    kw: dict[str, Any] = {}
    wheres: dict[str, str] = {}
    for key, (raw, where) in values.items():
        s = lookup(key)
        if s is None:
            known = [sp for st in SETTINGS for sp in st.spellings]
            raise UsageError(f"{where}: unknown setting; {did_you_mean(key, known)}")
        kw[s.name] = parse(s, raw, where)
        wheres[s.name] = where
    settings = MeasureSettings(**kw)
    for s in SETTINGS:   # relations between settings: the later one is named (or the one given)
        if s.at_least and getattr(settings, s.name) < getattr(settings, s.at_least):
            where = wheres.get(s.name) or wheres.get(s.at_least) or TABLE
            raise UsageError(f"{where}: {s.name} ({getattr(settings, s.name)}) is below {s.at_least} "
                             f"({getattr(settings, s.at_least)})")
    _check_phase(settings, lambda n: wheres.get(n) or TABLE)
    settings = _check_varlen(settings, lambda n: wheres.get(n) or TABLE)
    return settings


def _one_int(raw: str, where: str) -> int:
    """One whole number, suffixes allowed (``16k`` = 16384)."""
    try:
        values = units.parse_int_list(raw, "value")
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    if len(values) != 1:
        raise UsageError(f"{where}: expected one whole number such as 16k, got {raw!r}")
    return values[0]


def _check_varlen(settings: MeasureSettings, where) -> MeasureSettings:
    """``--tokens`` belongs to ``--varlen``, fits its longest sequence (a fixed list defaults it to its sum);
    varlen points are prefill."""
    if settings.varlen is None:
        if settings.tokens is not None:
            raise UsageError(f"{where('tokens')}: a token budget is for packed batches; add --varlen DIST "
                             f"(e.g. --varlen lognormal)")
        return settings
    dist = varlen.parse(settings.varlen, where("varlen"))
    if settings.tokens is None:
        if dist.name != "fixed":
            raise UsageError(f"{where('varlen')}: --varlen {dist.text} needs a token budget (--tokens / "
                             f"{TABLE}.tokens), e.g. 16k")
        settings = dataclasses.replace(settings, tokens=sum(dist.fixed))
    varlen.check_budget(dist, settings.tokens, where("tokens") if where("tokens") != TABLE else where("varlen"))
    if settings.phase != "prefill":
        raise UsageError(f"{where('varlen')}: packed batches are measured in phase prefill (got phase "
                         f"{settings.phase!r})")
    return settings


def _check_phase(settings: MeasureSettings, where) -> None:
    """``--phase streaming`` needs ``--chunk-size``; a chunk size belongs to streaming only."""
    if settings.phase == "streaming" and settings.chunk_size is None:
        raise UsageError(f"{where('phase')}: phase 'streaming' needs a chunk size (--chunk-size / "
                         f"{TABLE}.chunk_size), e.g. 2")
    if settings.chunk_size is not None and settings.phase != "streaming":
        raise UsageError(f"{where('chunk_size')}: a chunk size is for phase 'streaming' (got phase "
                         f"{settings.phase!r}); add --phase streaming")


def keywords(**kw: Any) -> MeasureSettings:
    """``MeasureSettings`` from Python keyword arguments (``keywords(target_rel_ci=0.01)``), validated."""
    return from_values({k: (v, f"{k}=") for k, v in kw.items()})


def check_all(settings: MeasureSettings, where: str) -> MeasureSettings:
    """Every setting of a built or loaded ``MeasureSettings`` (a hand-edited manifest) within its range."""
    for s in SETTINGS:
        check(s, getattr(settings, s.name), f"{where}.{s.name}")
    for s in SETTINGS:
        if s.at_least and getattr(settings, s.name) < getattr(settings, s.at_least):
            raise UsageError(f"{where}: {s.name} ({getattr(settings, s.name)}) is below {s.at_least} "
                             f"({getattr(settings, s.at_least)})")
    _check_phase(settings, lambda n: f"{where}.{n}")
    _check_varlen(settings, lambda n: f"{where}.{n}")
    return settings


def _expected(s: Setting) -> str:
    if s.kind == "choice":
        return s.describe()
    if s.kind == "bytes":
        return f"a size such as '8GiB' or a number of bytes{' (or ' + s.none.split()[0] + ')' if s.none else ''}"
    return "a number" if s.kind == "float" else "a whole number"


def _number(s: Setting, raw: int | float | str, where: str) -> int | float:
    value: Any = raw
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            raise UsageError(f"{where}: expected {_expected(s)}, got {raw!r}") from None
    if s.kind == "float":
        return float(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        text = raw.strip() if isinstance(raw, str) else ""
        return int(text) if text.lstrip("+-").isdigit() else int(value)
    return value   # a non-whole float: ``check`` names it


def _is_module_name(name: str) -> bool:
    return bool(name) and all(p.isidentifier() for p in name.split("."))


def _parse_modules(raw: Any, where: str) -> tuple[str, ...]:
    """Module names from a flag's text (comma-separated; the flag may repeat), a TOML list or a string."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        raise UsageError(f"{where}: expected dotted Python module names such as 'mypkg.kernels', got {raw!r}")
    names = [n.strip() for x in items for n in x.split(",")]
    bad = [n for n in names if not _is_module_name(n)]
    if bad or not names:
        raise UsageError(f"{where}: {bad[0] if bad else ''!r} is not a dotted Python module name such as "
                         f"'mypkg.kernels'")
    return tuple(dict.fromkeys(names))


def _parse_bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    raise UsageError(f"{where}: expected true or false, got {raw!r}")


def _wrap(where: str, fn, raw: Any) -> Any:
    try:
        return fn(raw)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
