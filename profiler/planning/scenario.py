"""Sweep specifications: what to measure, from CLI flags and/or a TOML scenario file.

A ``SweepSpec`` is a frozen value holding every axis of a sweep (kernels, backends, lengths, batch
sizes, dtypes, modes, heads, head dims, causal modes), the device, the level and the
``MeasureSettings``. It is built by ``build_spec(scenario_path, overrides)``: the scenario file is
read with ``tomllib``, CLI flags (``overrides``) replace scenario values key by key, and every value
is validated. A bad value raises ``UsageError`` whose one-line message names where it came from (the
file and key, or the flag) and what is allowed.

Scenario file format (every key optional)::

    name = "quick"
    description = "..."
    kernels = ["softmax", "retnet"]        # or "all"
    backends = ["sdpa", "naive", "torch"]  # backend names; "all" (default) = every backend that can run
    lengths = "256..4k"                    # or a list: [256, "1k", 4096]
    batch = [1]                            # or "1,2"
    dtypes = ["float32"]                   # fp32, fp16, bf16 accepted
    modes = ["fwd"]                        # fwd | fwdbwd | bwd (backward alone, forward untimed)
    heads = 4
    head_dim = 64                          # per head, at every level; up to 256 for kernels (per-kernel /
                                           # per-backend limits drop the rest); layers: width = heads x head_dim
                                           # (default: 64 for kernels, 1024 / heads for layers)
    kv_heads = [1, 4]                      # key/value heads (GQA/MQA), each dividing every heads value
    value_dim = [64, 128]                  # value head dim Dv (kernels that take it)
    window = 256                           # causal sliding window of softmax attention (keys)
    causal = "both"                        # "both" (softmax both, others causal), true, false
    device = "auto"                        # auto | cpu | cuda
    interpret = false                      # fla backends on CPU under Triton's interpreter
    level = "kernel"                       # kernel | layer | model (profiler.layers)
    audio = "1min..20min"                  # instead of lengths: durations -> T (profiler.core.audio)
    frame_rate = 50.0                      # speech frames per second of audio
    text_rate = 3.0                        # text tokens per second of audio
    bidirectional = "off"                  # off | on (adds forward+reversed series) | only
    utterances = 0                         # > 0: utterance replay of N (layer/model levels)
    packing = "padded"                     # replay batches: padded | packed (fla layers, cu_seqlens) | both

    [settings]                             # the measurement settings (profiler.core.settings), e.g.
    target_rel_ci = 0.02
    memory_budget = "8GiB"                 # or memory_budget_bytes = 8589934592

    [execution]                            # how to run it, not what: see profiler.runner.execution
    executor = "local"                     # local | slurm; devices, workers, cores_per_worker,
                                           # partition, account, time_limit, gpus_per_task, ...
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from profiler.core import audio, limits, units
from profiler.core import settings as measure_settings
from profiler.core.errors import UsageError, did_you_mean
from profiler.core.paths import read_text
from profiler.core.records import (
    DTYPES,
    LEVELS,
    MODES,
    MeasureSettings,
    RecordError,
    from_dict,
    to_dict,
)
from profiler.kernels import use_kernel_modules
from profiler.planning import names

DEVICES = ("auto", "cpu", "cuda")
CAUSAL_CHOICES = ("both", "causal", "non-causal")

#: Defaults of a bare ``serprof sweep`` (a short CPU-friendly sweep).
DEFAULT_LENGTHS = (512, 1024, 2048, 4096)


@dataclass(frozen=True)
class SweepSpec:
    """Everything that defines a sweep. Empty ``kernels``/``backends`` mean "all"."""

    name: str = "sweep"
    description: str = ""
    kernels: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    batch: tuple[int, ...] = (1,)
    dtypes: tuple[str, ...] = ("float32",)
    modes: tuple[str, ...] = ("fwd",)
    heads: tuple[int, ...] = (4,)
    # per-head dims at every level (a layer's width is H * D); () = the level's default
    # (``profiler.planning.axes.layer_dims``: 64 for kernels, 1024 / H for layers)
    head_dims: tuple[int, ...] = ()
    causal: str = "both"               # "both" | "causal" | "non-causal"
    device: str = "auto"               # resolved to "cpu"/"cuda" by ``resolve_device``
    interpret: bool = False
    level: str = "kernel"
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    source: str | None = None          # scenario file it came from, if any
    audio: tuple[float, ...] = ()      # seconds; when set, lengths come from these (profiler.core.audio)
    frame_rate: float = 50.0
    text_rate: float = 3.0
    bidirectional: str = "off"         # "off" | "on" | "only"
    utterances: int = 0                # utterance replay of N (layer/model levels); 0: none
    packing: tuple[str, ...] = ("padded",)   # replay batches: "padded" and/or "packed" (profiler.layers.packed)
    # kernel-level shape axes (issue 18); () = the default (kv heads = H, Dv = D, no window)
    kv_heads: tuple[int, ...] = ()
    value_dims: tuple[int, ...] = ()
    windows: tuple[int, ...] = ()

    def causal_modes(self, supported: tuple[bool, ...]) -> tuple[bool, ...]:
        """Causal flags to measure for a backend supporting ``supported``."""
        wanted = {"both": (True, False), "causal": (True,), "non-causal": (False,)}[self.causal]
        return tuple(c for c in wanted if c in supported)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


# --------------------------------------------------------------------------- building

_KEYS = ("name", "description", "kernels", "backends", "lengths", "batch", "dtypes", "modes", "heads",
         "head_dim", "causal", "device", "interpret", "level", "settings", "audio", "frame_rate", "text_rate",
         "bidirectional", "utterances", "packing", "execution", "kv_heads", "value_dim", "window")
#: Keys that cannot be given together, and why: both flags, or both keys of one scenario file, are a
#: ``UsageError`` naming both; a flag replaces its partner from the scenario file.
EXCLUSIVE: tuple[tuple[str, str, str], ...] = (
    ("lengths", "audio", "audio durations set the lengths"),
)
_ALIASES = {"backend": "backends", "dtype": "dtypes", "mode": "modes", "head_dims": "head_dim",
            "kernel": "kernels", "value_dims": "value_dim", "windows": "window"}


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read a TOML scenario file; unreadable or invalid TOML is a ``UsageError``."""
    p = Path(path)
    text = read_text(p, "scenario file")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"scenario file {p} is not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in data.items():
        canon = _ALIASES.get(key, key)
        if canon not in _KEYS:
            raise UsageError(f"{p}: unknown key {key!r}; {did_you_mean(key, _KEYS)}")
        out[canon] = value
    return out


def build_spec(scenario: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> SweepSpec:
    """Scenario file (if any) with CLI ``overrides`` applied on top, validated into a ``SweepSpec``.

    ``overrides`` uses the scenario's key names, and the measurement settings' names
    (``profiler.core.settings``: ``target_rel_ci``, ``memory_budget``, ...) for its ``[settings]``
    table; ``None`` values are ignored. Keys declared ``EXCLUSIVE`` cannot both be given.
    """
    values: dict[str, tuple[Any, str]] = {}   # key -> (raw value, where it came from)
    settings_raw: dict[str, tuple[Any, str]] = {}
    flagged: set[str] = set()   # keys given as flags (overrides): they replace the file's exclusive partner
    source = None
    if scenario is not None:
        source = str(scenario)
        data = load_scenario(scenario)
        for key, value in data.items():
            if key == "execution":   # executor options: profiler.runner.execution.execution_table
                continue
            if key == "settings":
                if not isinstance(value, Mapping):
                    raise UsageError(f"{source}: key 'settings' must be a table ([settings])")
                for sk, sv in value.items():
                    settings_raw[sk] = (sv, measure_settings.toml_where(source, sk))
            else:
                values[key] = (value, f"{source}: key {key!r}")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        flag = names.flag(key, value)   # the spelling the user wrote (--target-ci, --no-verify)
        setting = measure_settings.lookup(key)
        if setting is not None:
            for spelling in setting.spellings:   # the flag replaces the file's value
                settings_raw.pop(spelling, None)
            settings_raw[key] = (value, flag)
        elif _ALIASES.get(key, key) in _PARSERS:
            key = _ALIASES.get(key, key)
            values[key] = (value, flag)
            flagged.add(key)
        else:
            known = list(_PARSERS) + [s.name for s in measure_settings.SETTINGS]
            raise UsageError(f"unknown sweep setting {key!r}; {did_you_mean(key, known)}")
    for first, second, why in EXCLUSIVE:
        if first in values and second in values and (first in flagged) != (second in flagged):
            del values[second if first in flagged else first]
        elif first in values and second in values:
            raise UsageError(f"{values[first][1]} and {values[second][1]} cannot be combined: {why}; "
                             "give one of them")
    kw: dict[str, Any] = {}
    for key, (raw, where) in values.items():
        kw[_spec_field(key)] = _PARSERS[key](raw, where)
    _check_shape_axes(kw, {k: w for k, (_, w) in values.items()})
    kw["settings"] = measure_settings.from_values(settings_raw)
    if kw["settings"].varlen is not None:   # a packed batch is sized by its token budget, never by these
        for key in ("lengths", "audio", "batch", "utterances"):
            if key in values:
                raise UsageError(f"{values[key][1]} cannot be combined with --varlen: --tokens sizes the packed "
                                 f"batch (one sequence of that many tokens)")
    if kw["settings"].kernel_modules:   # plugin kernels join the registry before the plan resolves names
        where = next(w for k, (_, w) in settings_raw.items() if measure_settings.lookup(k).name == "kernel_modules")
        _load_kernel_modules(kw["settings"].kernel_modules, where)
    if source is not None:
        kw["source"] = source
    if "name" not in kw and source is not None:
        kw["name"] = Path(source).stem
    return SweepSpec(**kw)


def spec_from_dict(data: Mapping[str, Any], where: str = "manifest") -> SweepSpec:
    """Rebuild a ``SweepSpec`` stored in a manifest (``to_dict`` output)."""
    try:
        spec = from_dict(SweepSpec, data, where)
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    return validate_spec(spec, where)


def validate_spec(spec: SweepSpec, where: str) -> SweepSpec:
    """The limits of ``profiler.core.limits`` on a stored spec (a manifest edited by hand, NaN ...)."""
    for name, values in (("lengths", spec.lengths), ("batch", spec.batch), ("heads", spec.heads),
                         ("head_dims", spec.head_dims), ("kv_heads", spec.kv_heads), ("value_dims", spec.value_dims),
                         ("windows", spec.windows)):
        if len(values) > units.MAX_VALUES:
            raise UsageError(f"{where}.{name}: more than {units.MAX_VALUES} values")
        for v in values:
            limits.check_number("size", v, f"{where}.{name}")
    for v in spec.audio:
        limits.check_number("audio_s", v, f"{where}.audio")
    limits.check_number("frame_rate", spec.frame_rate, f"{where}.frame_rate")
    limits.check_number("text_rate", spec.text_rate, f"{where}.text_rate")
    limits.check_number("utterances", spec.utterances, f"{where}.utterances")
    measure_settings.check_all(spec.settings, f"{where}.settings")
    if spec.settings.kernel_modules:
        _load_kernel_modules(spec.settings.kernel_modules, f"{where}.{measure_settings.lookup('kernel_modules').toml_key}")
    for key, allowed, value in (("device", DEVICES, spec.device), ("level", LEVELS, spec.level),
                                ("causal", CAUSAL_CHOICES, spec.causal)):
        if value not in allowed:
            raise UsageError(f"{where}.{key}: {value!r} is not allowed; valid: {', '.join(allowed)}")
    return spec


def _load_kernel_modules(modules: tuple[str, ...], where: str) -> None:
    """Import the ``kernel_modules`` (``profiler.kernels.use_kernel_modules``); a failure names ``where``."""
    use_kernel_modules(modules, where)


def _spec_field(key: str) -> str:
    return {"head_dim": "head_dims", "value_dim": "value_dims", "window": "windows"}.get(key, key)


def _check_shape_axes(kw: Mapping[str, Any], wheres: Mapping[str, str]) -> None:
    """The rules of the shape axes, one ``UsageError`` line naming the flag or key: every kv-heads value
    divides every heads value; a window fits at least one length (shorter lengths drop with the reason);
    the axes are kernel-level."""
    heads = kw.get("heads", SweepSpec.heads)
    for kv in kw.get("kv_heads", ()):
        bad = [h for h in heads if h % kv]
        if bad:
            raise UsageError(f"{wheres['kv_heads']}: {kv} key/value heads must divide the query heads "
                             f"(--heads {bad[0]}); valid: {', '.join(str(d) for d in range(1, bad[0] + 1) if bad[0] % d == 0)}")
    lengths = kw.get("lengths", DEFAULT_LENGTHS)
    for w in kw.get("windows", ()):
        if "audio" not in kw and w > max(lengths):
            raise UsageError(f"{wheres['window']}: window {w} is longer than every length (longest "
                             f"{max(lengths)}); a window must be 1 .. T")
    for key in ("kv_heads", "value_dim", "window"):
        if kw.get(_spec_field(key)) and kw.get("level", "kernel") != "kernel":
            raise UsageError(f"{wheres[key]}: {key} is a kernel-level axis (use --level kernel)")


# --------------------------------------------------------------------------- value parsers


def _as_text(raw: Any) -> str:
    if isinstance(raw, (list, tuple)):
        return ",".join(str(x) for x in raw)
    return str(raw)


def _parse_names(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, (list, tuple)):
        bad = [x for x in raw if not isinstance(x, str)]
        if bad:
            raise UsageError(f"{where}: expected names (strings), got {bad[0]!r}")
    elif not isinstance(raw, str):
        raise UsageError(f"{where}: expected a name, a comma list or a list of names, got {raw!r}")
    items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
    names = tuple(dict.fromkeys(str(x).strip() for x in items if str(x).strip()))
    if not names:
        raise UsageError(f"{where}: expected at least one name")
    if names == ("all",):
        return ()
    return names


def _wrap(where: str, fn, raw: Any):
    try:
        return fn(raw)
    except UsageError as exc:
        raise UsageError(f"{where}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{where}: {exc}") from None


def _parse_lengths(raw: Any, where: str) -> tuple[int, ...]:
    if isinstance(raw, (list, tuple)):
        if len(raw) > units.MAX_VALUES:
            raise UsageError(f"{where}: {len(raw)} lengths; at most {units.MAX_VALUES}")
        out: list[int] = []
        for item in raw:
            if isinstance(item, bool) or not isinstance(item, (int, str)):
                raise UsageError(f"{where}: expected lengths (numbers or strings like '4k'), got {item!r}")
            out += _wrap(where, units.parse_lengths, str(item))
            if len(set(out)) > units.MAX_VALUES:
                raise UsageError(f"{where}: expands to more than {units.MAX_VALUES} lengths")
    elif isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise UsageError(f"{where}: expected lengths like '1k..8k' or a list, got {raw!r}")
    else:
        out = _wrap(where, units.parse_lengths, str(raw))
    return _positive_unique(out, where)


def _parse_ints(raw: Any, where: str) -> tuple[int, ...]:
    if isinstance(raw, bool):
        raise UsageError(f"{where}: expected positive integers, got {raw!r}")
    if isinstance(raw, int):
        raw = [raw]
    if isinstance(raw, (list, tuple)):
        if len(raw) > units.MAX_VALUES:
            raise UsageError(f"{where}: {len(raw)} values; at most {units.MAX_VALUES}")
        bad = [x for x in raw if isinstance(x, bool) or not isinstance(x, (int, str))]
        if bad:
            raise UsageError(f"{where}: expected positive integers, got {bad[0]!r}")
    elif not isinstance(raw, str):
        raise UsageError(f"{where}: expected positive integers, got {raw!r}")
    return _positive_unique(_wrap(where, units.parse_int_list, _as_text(raw)), where)


def _parse_count(raw: Any, where: str) -> int:
    """One whole number >= 0 (0 turns the feature off)."""
    text = str(raw).strip()
    if isinstance(raw, bool) or not (isinstance(raw, (int, str))) or not text.isascii() or not text.isdigit():
        raise UsageError(f"{where}: expected a whole number >= 0 (0: none), got {raw!r}")
    if len(text) > 12:
        raise UsageError(f"{where}: {text[:20]}... is out of range; must be {limits.describe('utterances')}")
    return limits.check_number("utterances", int(text), where)


def _positive_unique(values, where: str) -> tuple[int, ...]:
    values = list(dict.fromkeys(int(v) for v in values))
    if not values:
        raise UsageError(f"{where}: expected at least one value")
    bad = [v for v in values if v < 1]
    if bad:
        raise UsageError(f"{where}: values must be >= 1 (got {bad[0]})")
    for v in values:
        limits.check_number("size", v, where)
    return tuple(values)


def _parse_dtypes(raw: Any, where: str) -> tuple[str, ...]:
    dtypes = tuple(dict.fromkeys(_wrap(where, units.parse_dtypes, _as_text(raw))))
    for d in dtypes:
        if d not in DTYPES:
            raise UsageError(f"{where}: unknown dtype {d!r}; {did_you_mean(d, DTYPES)}")
    return dtypes


def _choice(allowed: tuple[str, ...]):
    def parse(raw: Any, where: str) -> str:
        value = str(raw).strip().lower()
        if value not in allowed:
            raise UsageError(f"{where}: {raw!r} is not allowed; {did_you_mean(value, allowed)}")
        return value

    return parse


def _parse_modes(raw: Any, where: str) -> tuple[str, ...]:
    modes = _parse_names(raw, where) or MODES
    for m in modes:
        if m not in MODES:
            raise UsageError(f"{where}: unknown mode {m!r}; {did_you_mean(m, MODES)}")
    return modes


def _parse_causal(raw: Any, where: str) -> str:
    if isinstance(raw, bool):
        return "causal" if raw else "non-causal"
    value = str(raw).strip().lower()
    value = {"true": "causal", "false": "non-causal", "noncausal": "non-causal", "full": "non-causal"}.get(value, value)
    if value not in CAUSAL_CHOICES:
        raise UsageError(f"{where}: {raw!r} is not allowed; valid: both, true (causal), false (non-causal)")
    return value


def _parse_bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    value = str(raw).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{where}: expected true or false, got {raw!r}")


def _parse_str(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise UsageError(f"{where}: expected a string, got {raw!r}")
    return raw


_PARSERS = {
    "name": _parse_str,
    "description": _parse_str,
    "kernels": _parse_names,
    "backends": _parse_names,
    "lengths": _parse_lengths,
    "batch": _parse_ints,
    "dtypes": _parse_dtypes,
    "modes": _parse_modes,
    "heads": _parse_ints,
    "head_dim": _parse_ints,
    "causal": _parse_causal,
    "device": _choice(DEVICES),
    "interpret": _parse_bool,
    "level": _choice(LEVELS),
    "audio": lambda raw, where: _wrap(where, lambda r: tuple(audio.parse_audio(_as_text(_audio_raw(r, where)))), raw),
    "frame_rate": lambda raw, where: _rate(raw, where, "frame_rate"),
    "text_rate": lambda raw, where: _rate(raw, where, "text_rate"),
    "bidirectional": lambda raw, where: {True: "on", False: "off"}.get(raw, None) if isinstance(raw, bool)
    else _choice(("off", "on", "only"))(raw, where),
    "utterances": lambda raw, where: _parse_count(raw, where),
    "packing": lambda raw, where: _PACKINGS[_choice(tuple(_PACKINGS))(raw, where)],
    "kv_heads": _parse_ints,
    "value_dim": _parse_ints,
    "window": _parse_ints,
}

#: ``packing`` values -> the replay packings they plan (``profiler.layers.packed``)
_PACKINGS = {"padded": ("padded",), "packed": ("packed",), "both": ("padded", "packed")}




def _audio_raw(raw: Any, where: str) -> Any:
    items = raw if isinstance(raw, (list, tuple)) else [raw]
    if len(items) > units.MAX_VALUES:
        raise UsageError(f"at most {units.MAX_VALUES} durations")
    bad = [x for x in items if isinstance(x, bool) or not isinstance(x, (int, float, str))]
    if bad:
        raise UsageError(f"expected durations like '5.5s' or '1min..20min', got {bad[0]!r}")
    return raw


def _rate(raw: Any, where: str, name: str) -> float:
    if isinstance(raw, bool):
        raise UsageError(f"{where}: expected a rate (a number), got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        raise UsageError(f"{where}: expected a rate (a number), got {raw!r}") from None
    return float(limits.check_number(name, value, where))
