"""Which device model measured each record, and what is known about each model (multi-device runs).

A run may land on several device models: ``--devices 0,1`` on a node with two GPU kinds, or SLURM
shards on different nodes. Numbers from different models are never averaged or fitted together:

* every record's model is ``profiler.core.records.device_key(record.worker)`` (the worker's
  ``device_name``, recorded by the process that measured it);
* when a run's records name more than one model, each record is tagged with its model and analysis
  groups series by it (``SeriesKey.device_model``). Records without a worker device name (points the
  planner skipped before any worker saw them) inherit the model that measured the rest of their series
  when that is unambiguous, else stay untagged; with one model (the usual case) nothing is tagged;
* device memory and calibration per model come from the environment fingerprints that describe that
  model: the manifest's environment (unless ``environment.submit_host`` is true: a SLURM manifest
  describes the login node that submitted the jobs, not the nodes that measured) and the per-shard
  fingerprints in ``shards/shard-<n>.json``. CUDA memory is the ``total_memory_bytes`` of the
  ``cuda_devices`` entry with that name; CPU memory is the host memory of the fingerprint whose
  ``cpu_model`` is that model.

Files only; no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from profiler.analysis.environment import device_memory_bytes
from profiler.core.records import PointRecord, device_key


def record_model(rec: PointRecord) -> str | None:
    """The device model a record names (None when its worker info has no ``device_name``)."""
    w = rec.worker or {}
    if not w.get("device_name"):
        return None

    return device_key(w)


def assign_models(records: Sequence[PointRecord]) -> dict[str, str]:
    """Point id -> device model to group by; all ``""`` when the records name at most one model."""
    named = {r.id: record_model(r) for r in records}
    models = {m for m in named.values() if m}
    if len(models) <= 1:
        return {r.id: "" for r in records}
    per_series: dict[tuple, set[str]] = {}
    for r in records:
        if named[r.id]:
            per_series.setdefault(r.spec.series_key, set()).add(named[r.id])   # type: ignore[arg-type]
    out = {}
    for r in records:
        m = named[r.id]
        if not m:
            seen = per_series.get(r.spec.series_key, set())
            m = next(iter(seen)) if len(seen) == 1 else ""
        out[r.id] = m
    return out


@dataclass(frozen=True)
class DeviceInfo:
    """What a run knows about one device model (``key``: the ``SeriesKey.device_model`` it belongs to)."""

    key: str
    model: str
    device: str                          # cpu | cuda
    points: int
    hosts: tuple[str, ...]
    memory_bytes: float | None
    memory_source: str                   # where memory_bytes came from, or why it is unknown
    calibration: Mapping[str, Any] | None
    calibration_source: str


@dataclass
class RunDevices:
    """Device models of a run (``multi``: more than one, so series are split by model)."""

    multi: bool
    models: dict[str, str]                       # point id -> model ("" when not split)
    infos: list[DeviceInfo] = field(default_factory=list)
    submit_host: bool = False

    def info(self, key: str) -> DeviceInfo | None:
        """Info of the series whose ``device_model`` is ``key`` ("" in single-device runs)."""
        return next((d for d in self.infos if d.key == key), None)


def shard_environments(run_path: Path | str | None) -> list[dict[str, Any]]:
    """``{"environment", "calibration", "shard"}`` of every readable ``shards/shard-*.json`` (SLURM runs)."""
    if run_path is None:
        return []
    out = []
    for p in sorted((Path(run_path) / "shards").glob("shard-*.json")):
        try:
            st = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(st, Mapping) and isinstance(st.get("environment"), Mapping):
            out.append({"environment": st["environment"], "calibration": st.get("calibration"),
                        "shard": st.get("shard")})
    return out


def _positive(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def _cuda_memory(env: Mapping[str, Any], model: str) -> float | None:
    for d in env.get("cuda_devices") or ():
        if isinstance(d, Mapping) and d.get("name") == model:
            m = _positive(d.get("total_memory_bytes"))
            if m:
                return m
    return None


def _describes(env: Mapping[str, Any], model: str, device: str) -> bool:
    """Whether a fingerprint describes a machine with this device model."""
    if device == "cuda":
        return any(isinstance(d, Mapping) and d.get("name") == model for d in env.get("cuda_devices") or ())
    return env.get("cpu_model") == model or env.get("device_name") == model


def _usable_calibration(cal: Any) -> Mapping[str, Any] | None:
    return cal if isinstance(cal, Mapping) and cal and "error" not in cal else None


def run_devices(records: Sequence[PointRecord], environment: Mapping[str, Any],
                calibration: Mapping[str, Any] | None, run_path: Path | str | None = None) -> RunDevices:
    """Models, per-record assignment, memory and calibration of each model (see the module doc)."""
    models = assign_models(records)
    submit_host = bool(environment.get("submit_host"))
    envs: list[tuple[Mapping[str, Any], Mapping[str, Any] | None, str]] = []
    if not submit_host:
        envs.append((environment, _usable_calibration(calibration), "manifest"))
    for sh in shard_environments(run_path):
        envs.append((sh["environment"], _usable_calibration(sh["calibration"]), f"shard {sh['shard']}"))
    named = models_in(records)
    multi = len(named) > 1
    groups: dict[str, list[PointRecord]] = {}
    for r in records:
        groups.setdefault(models[r.id] if multi else "", []).append(r)
    infos = []
    for key, recs in sorted(groups.items()):
        model = key if multi else (named[0] if named else "")
        device = recs[0].spec.device
        mem, msrc, cal, csrc = None, "", None, ""
        for env, ecal, src in envs:
            if multi and (not key or not _describes(env, model, device)):
                continue          # with several models, only a fingerprint naming this one counts
            if device == "cuda" and model:
                m = _cuda_memory(env, model) or (None if multi else device_memory_bytes(env, device))
            else:
                m = device_memory_bytes(env, device)
            if m and mem is None:
                mem, msrc = m, f"{src} environment"
            # a calibration ran on one device: with several models, only the fingerprint's own device_name
            if ecal and cal is None and (not multi or env.get("device_name") == model):
                cal, csrc = ecal, f"{src} calibration"
        if mem is None:
            msrc = ("not recorded: the manifest describes the submitting host and no shard fingerprint names "
                    "this device" if submit_host else "not recorded in the run's environment")
        infos.append(DeviceInfo(
            key=key, model=model or "(not recorded)", device=device, points=len(recs),
            hosts=tuple(sorted({str(r.worker.get("host")) for r in recs if (r.worker or {}).get("host")})),
            memory_bytes=mem, memory_source=msrc, calibration=cal,
            calibration_source=csrc or "none for this device"))
    return RunDevices(multi=multi, models=models, infos=infos, submit_host=submit_host)


def models_in(records: Iterable[PointRecord]) -> list[str]:
    """Distinct device models named by records' worker info (sorted)."""
    return sorted({m for m in (record_model(r) for r in records) if m})
