"""Where a value came from, in the user's words: one mapping from setting key to flag and TOML key.

A sweep's values arrive as CLI flags (``serprof sweep --target-ci 0.02``), as keys of a scenario file
(``[settings] target_rel_ci = 0.02``) or as Python keywords (``profiler.sweep(...)``). Inside the
library every value has one *setting key* (the ``build_spec`` override key: ``lengths``,
``target_rel_ci``, ``execution.workers``). The measurement settings' spellings come from their
declarations (``profiler.core.settings``); this table holds the sweep's axes and executor keys.
Error messages must name what the user actually wrote, so every place that makes a message asks
this module: ``flag(key)`` is the flag spelling ``serprof sweep`` exposes,
``toml_where(source, key)`` names the scenario file and its key. There is no second mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiler.core import settings


@dataclass(frozen=True)
class Name:
    """One setting: its key inside the library, the CLI flag(s) and the TOML key."""

    key: str            # setting key (``build_spec`` override key; ``execution.*`` for the executor table)
    flag: str           # flag of ``serprof sweep`` (for a boolean pair: the spelling that sets the value)
    toml: str           # key in a scenario file (dotted for tables: ``settings.warmup_s``)
    flag_false: str | None = None   # boolean pairs: the spelling that sets False (``--no-verify``)


_NAMES = (
    Name("name", "--name", "name"),
    Name("description", "--description", "description"),
    Name("kernels", "--kernels", "kernels"),
    Name("backends", "--backend", "backends"),
    Name("lengths", "--lengths", "lengths"),
    Name("batch", "--batch", "batch"),
    Name("dtypes", "--dtype", "dtypes"),
    Name("modes", "--mode", "modes"),
    Name("heads", "--heads", "heads"),
    Name("head_dim", "--head-dim", "head_dim"),
    Name("causal", "--causal", "causal", flag_false="--non-causal"),
    Name("device", "--device", "device"),
    Name("interpret", "--interpret", "interpret"),
    Name("level", "--level", "level"),
    Name("audio", "--audio", "audio"),
    Name("frame_rate", "--frame-rate", "frame_rate"),
    Name("text_rate", "--text-rate", "text_rate"),
    Name("bidirectional", "--bidirectional", "bidirectional"),
    Name("utterances", "--utterances", "utterances"),
    Name("packing", "--packing", "packing"),
    Name("kv_heads", "--kv-heads", "kv_heads"),
    Name("value_dim", "--value-dim", "value_dim"),
    Name("window", "--window", "window"),
    # how to run it: the scenario's [execution] table (profiler.runner.execution)
    Name("execution.executor", "--executor", "execution.executor"),
    Name("execution.devices", "--devices", "execution.devices"),
    Name("execution.workers", "--workers", "execution.workers"),
    Name("execution.cores_per_worker", "--cores-per-worker", "execution.cores_per_worker"),
    Name("execution.partition", "--partition", "execution.partition"),
    Name("execution.account", "--account", "execution.account"),
    Name("execution.time_limit", "--time-limit", "execution.time_limit"),
    Name("execution.gpus_per_task", "--gpus-per-task", "execution.gpus_per_task"),
    Name("execution.array_parallelism", "--array-parallelism", "execution.array_parallelism"),
    Name("execution.sbatch_extra", "--sbatch-extra", "execution.sbatch_extra"),
    Name("execution.shards", "--shards", "execution.shards"),
)
NAMES: dict[str, Name] = {n.key: n for n in _NAMES}
#: the measurement settings, under every spelling they accept (declared in ``profiler.core.settings``)
_SETTINGS = {sp: Name(s.name, s.flag, s.toml_key, flag_false=s.flag_false or None)
             for s in settings.SETTINGS for sp in s.spellings}


def _lookup(key: str) -> Name | None:
    return NAMES.get(key) or _SETTINGS.get(key) or NAMES.get(f"execution.{key}")


def flag(key: str, value: Any = None) -> str:
    """The flag the user wrote for setting ``key`` (with ``value``, for boolean pairs such as ``--no-verify``)."""
    n = _lookup(key)
    if n is None:   # a setting without a flag of its own: the flag it would have
        return "--" + key.split(".")[-1].replace("_", "-")
    if n.flag_false is not None and value is not None and (value is False or value == "non-causal"):
        return n.flag_false
    return n.flag


def toml_key(key: str) -> str:
    """The scenario file's (dotted) key for setting ``key``."""
    n = _lookup(key)
    return n.toml if n is not None else key


def toml_where(source: Any, key: str) -> str:
    """``"<file>: key '<toml key>'"``: where a scenario-file value came from."""
    return f"{source}: key {toml_key(key)!r}"


def retarget(message: str, key: str, where: str) -> str:
    """A message from a lower layer that names ``flag(key)`` rewritten to name ``where`` instead.

    Lower layers (``runner.pinning``, ``runner.slurm``) validate values and name the flag; when the value
    came from a scenario file, the caller rewrites the message with this so it names the file and key.
    """
    f = flag(key)
    if message.startswith(f):
        rest = message[len(f):]
        return f"{where}{rest}" if rest.startswith(":") else f"{where}:{rest}"
    return f"{where}: {message}"
