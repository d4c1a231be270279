"""How a sweep runs: the scenario's ``[execution]`` table, the executor choice, and resume.

``serprof sweep``'s ``--executor``, ``--devices``, ``--workers`` and SLURM flags, the scenario file's
``[execution]`` table and (on ``--resume``) the run folder's manifest decide where the points run.
This module is that decision, so a sweep can be reproduced from Python (``profiler.api.sweep``)::

    [execution]
    executor = "slurm"          # local | slurm
    devices = [0, 1]            # or "0,1"; CUDA, one worker per device (local)
    workers = 2                 # CPU workers, each on its own cores (local)
    cores_per_worker = 1
    partition = "gpu"           # SLURM: partition, account, time_limit, gpus_per_task,
    time_limit = "2:00:00"      #        cpus_per_task, array_parallelism, sbatch_extra, shards

Flags win over the table key by key. A bad value names what the user wrote: the flag
(``--workers``), or the scenario file and key (``s.toml: key 'execution.workers'``), through
``profiler.planning.names``. Nothing heavy is imported at module level.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from profiler.core.errors import UsageError, did_you_mean
from profiler.planning import names
from profiler.planning.scenario import load_scenario
from profiler.runner.multi import local_executor
from profiler.runner.pinning import parse_devices
from profiler.runner.slurm import is_slurm_run, options_from_flags, parse_sbatch_extra
from profiler.store.runs import RunDir

EXECUTORS = ("local", "slurm")
SLURM_FLAGS = ("partition", "account", "time_limit", "gpus_per_task", "cpus_per_task", "array_parallelism",
               "sbatch_extra", "shards")
EXECUTION_KEYS = ("executor", "devices", "workers", "cores_per_worker") + SLURM_FLAGS
_INT_KEYS = ("workers", "cores_per_worker", "gpus_per_task", "cpus_per_task", "array_parallelism", "shards")


@dataclass
class ExecutorChoice:
    kind: str                   # "local" | "slurm"
    executor: Any = None        # local: an Executor, or None for the default single worker
    slurm: Any = None           # slurm: SlurmOptions


@contextmanager
def _named(where: Mapping[str, str], *keys: str) -> Iterator[None]:
    """Rewrite a lower layer's ``UsageError`` (which names the flag) to name the scenario key instead."""
    try:
        yield
    except UsageError as exc:
        msg = str(exc)
        for key in keys:
            w = where.get(key)
            if w is not None and w != names.flag(key) and msg.startswith(names.flag(key)):
                raise UsageError(names.retarget(msg, key, w)) from None
        raise


def choose_executor(executor: str | None, device: str, *, devices: str | None = None, workers: int | None = None,
                    cores_per_worker: int | None = None, slurm: dict[str, Any] | None = None,
                    slurm_backend: str = "slurm", where: Mapping[str, str] | None = None) -> ExecutorChoice:
    """Validate the executor values (``UsageError``: one line, exit 2) and build the executor.

    ``where`` maps an execution key to how the user wrote it (default: its flag).
    """
    where = dict(where or {})

    def name(key: str) -> str:
        return where.get(key) or names.flag(key)

    kind = (executor or "local").strip().lower()
    if kind not in EXECUTORS:
        sep = " " if name("executor") == "--executor" else ": "
        raise UsageError(f"{name('executor')}{sep}{executor!r} is not allowed; valid: {', '.join(EXECUTORS)}")
    given = {k: v for k, v in (slurm or {}).items() if v not in (None, "", ())}
    if kind == "local":
        if given:
            flags = ", ".join(name(k) for k in given)
            from_file = all(name(k) != names.flag(k) for k in given)
            hint = "executor = \"slurm\" to [execution] (or --executor slurm)" if from_file else "--executor slurm"
            raise UsageError(f"{flags} {'is a SLURM option' if len(given) == 1 else 'are SLURM options'}; add {hint}")

        with _named(where, "devices"):
            parsed = parse_devices(devices) if devices else ()
        with _named(where, "workers", "cores_per_worker"):
            ex = local_executor(device, parsed, workers, cores_per_worker)
        return ExecutorChoice("local", executor=ex)
    if devices or workers is not None or cores_per_worker is not None:
        raise UsageError(f"{'/'.join(name(k) for k in ('devices', 'workers', 'cores_per_worker'))} choose local "
                         "workers; with --executor slurm each shard uses the GPUs of its job: use --gpus-per-task")

    with _named(where, *SLURM_FLAGS):
        return ExecutorChoice("slurm", slurm=options_from_flags(**given, backend=slurm_backend))


def execution_table(scenario: str | Path | None) -> dict[str, Any]:
    """The scenario file's ``[execution]`` table (validated keys; values as the flags take them)."""
    if scenario is None:
        return {}

    table = load_scenario(scenario).get("execution") or {}
    if not isinstance(table, dict):
        raise UsageError(f"{scenario}: key 'execution' must be a table ([execution])")
    out: dict[str, Any] = {}
    for key, value in table.items():
        k = key.replace("-", "_")
        if k not in EXECUTION_KEYS:
            raise UsageError(f"{scenario}: unknown key 'execution.{key}'; {did_you_mean(k, EXECUTION_KEYS)}")
        if k == "devices" and isinstance(value, list):
            value = ",".join(str(v) for v in value)
        if k == "sbatch_extra" and isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if k in _INT_KEYS and (isinstance(value, bool) or not isinstance(value, int)):
            raise UsageError(f"{scenario}: key 'execution.{key}' must be an integer, got {value!r}")
        if k in ("executor", "partition", "account", "time_limit", "sbatch_extra", "devices") and not (
                isinstance(value, str) or (k == "time_limit" and isinstance(value, int) and not isinstance(value, bool))):
            raise UsageError(f"{scenario}: key 'execution.{key}' must be a string, got {value!r}")
        if k == "sbatch_extra":
            parse_sbatch_extra(value, key=f"{scenario}: key 'execution.{key}'")
        out[k] = value
    return out


def resume_device(resume: str | Path) -> str:
    """The device a run folder's stored scenario asked for (``auto`` if none)."""
    return str(RunDir.open(resume).read_manifest().scenario.get("device") or "auto")


def choose_for_sweep(flags: Mapping[str, Any], *, scenario: str | Path | None, spec: Any,
                     resume: str | Path | None) -> ExecutorChoice:
    """A sweep's executor: ``flags`` over the scenario's ``[execution]`` table; a resumed SLURM run stays SLURM.

    ``flags`` holds execution keys (``executor``, ``devices``, ``workers``, ...; ``None``: not given).
    """
    table = execution_table(scenario)
    where = {k: names.toml_where(scenario, f"execution.{k}") for k in table}
    given = {k: v for k, v in flags.items() if v is not None}
    where.update({k: names.flag(k) for k in given})
    values = {**table, **given}
    device = spec.device if spec is not None else "auto"
    if resume is not None:
        device = resume_device(resume)
        if is_slurm_run(resume) and values.get("executor") is None:
            values["executor"] = "slurm"
    return choose_executor(values.pop("executor", None), device, devices=values.pop("devices", None),
                           workers=values.pop("workers", None), cores_per_worker=values.pop("cores_per_worker", None),
                           slurm={k: values.get(k) for k in SLURM_FLAGS}, where=where)
