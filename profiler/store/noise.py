"""Noise profile files: read and write the JSON a ``serprof gate-calibrate`` run produces.

Where the gate looks when ``--noise-profile`` is not given, first hit wins:
``$SERPROF_NOISE_PROFILE``, ``.serprof/noise-profile.json`` in the working directory (commit it with
the CI configuration), ``~/.cache/serprof/noise-profile.json`` (the calibration command's default
output). Without one the gate falls back to a fixed 1% and says so.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from profiler.core.errors import UsageError
from profiler.core.noise import (
    NOISE_FORMAT,
    NOISE_SCHEMA_VERSION,
    NoiseClass,
    NoiseProfile,
)

ENV_VAR = "SERPROF_NOISE_PROFILE"
LOCAL_PATH = Path(".serprof") / "noise-profile.json"


def user_path() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "serprof" / "noise-profile.json"


def default_path() -> Path | None:
    """The profile the gate uses by default (see module doc), or None when there is none."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    for p in (LOCAL_PATH, user_path()):
        if p.is_file():
            return p
    return None


def save_noise_profile(profile: NoiseProfile, out: str | os.PathLike) -> Path:
    """Write ``profile`` to ``out`` atomically (parent folders created)."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(profile.to_dict(), indent=1, sort_keys=True) + "\n")
        os.replace(tmp, out)
    except OSError as exc:
        raise UsageError(f"--out: cannot write the noise profile {out} ({exc.strerror or exc})") from None
    return out


def _num(value, where: str, *, allow_inf: bool = False) -> float:
    if value is None and allow_inf:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UsageError(f"{where}: expected a finite number >= 0, got {value!r}")
    return float(value)


def load_noise_profile(path: str | os.PathLike, flag: str = "--noise-profile") -> NoiseProfile:
    """Read a noise profile; a missing, unreadable or malformed file is a ``UsageError`` naming it."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{flag}: {p} does not exist (make one with `serprof gate-calibrate`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{flag}: cannot read the noise profile {p} ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != NOISE_FORMAT:
        raise UsageError(f"{flag}: {p} is not a serprof noise profile (expected \"format\": \"{NOISE_FORMAT}\")")
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= NOISE_SCHEMA_VERSION:
        raise UsageError(f"{flag}: {p}: schema_version {version!r} is not one this serprof reads "
                         f"(1..{NOISE_SCHEMA_VERSION})")
    classes = []
    raw = data.get("classes")
    if not isinstance(raw, list) or not raw:
        raise UsageError(f"{flag}: {p}: 'classes' must be a non-empty list")
    for i, c in enumerate(raw):
        where = f"{p}: classes[{i}]"
        if not isinstance(c, dict):
            raise UsageError(f"{where}: expected an object")
        try:
            classes.append(NoiseClass(
                low_s=_num(c.get("low_s"), f"{where}.low_s"),
                high_s=_num(c.get("high_s"), f"{where}.high_s", allow_inf=True),
                process_sd=_num(c.get("process_sd"), f"{where}.process_sd"),
                process_df=_num(c.get("process_df"), f"{where}.process_df", allow_inf=True),
                run_sd=_num(c.get("run_sd"), f"{where}.run_sd"),
                run_df=_num(c.get("run_df"), f"{where}.run_df", allow_inf=True),
                points=int(_num(c.get("points", 0), f"{where}.points")),
                aa_ratio_sd=None if c.get("aa_ratio_sd") is None else _num(c.get("aa_ratio_sd"), f"{where}.aa_ratio_sd")))
        except TypeError as exc:
            raise UsageError(f"{where}: {exc}") from None
    machine = data.get("machine") if isinstance(data.get("machine"), dict) else {}
    return NoiseProfile(tuple(classes), machine=machine, created_at=str(data.get("created_at", "")),
                        runs=int(data.get("runs") or 0) if isinstance(data.get("runs"), int) else 0,
                        processes=int(data.get("processes") or 1) if isinstance(data.get("processes"), int) else 1,
                        source=str(data.get("source", "")), path=str(p))
