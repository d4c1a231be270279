"""The SLURM executor: a sweep as a job array of shards, submitted through ``submitit``.

Flow (``submit``):

1. plan the sweep for the *target* device on the submitting host (a login node usually has no GPU:
   the device is not probed here, and the memory budget is left to each node unless given);
2. create the run folder (``manifest.json`` with ``notes.execution.executor == "slurm"``) and cut the
   plan into shards: whole series per shard (so OOM skips still work inside a shard), balanced by the
   series' estimated cost (greedy, largest first); ``shards.json`` stores every shard's point specs;
3. submit one job per shard as a SLURM job array (``submitit.SlurmExecutor.map_array``; partition,
   account, time limit, GPUs per task, array parallelism and extra ``#SBATCH`` flags from
   ``SlurmOptions``).

Each job runs ``run_shard`` on its node: it re-plans from the stored scenario (the node's device and
memory budget), measures its points with the local executor (all GPUs the job got, one worker each),
and appends every record to its own ``points-<shard>.jsonl`` in the shared run folder
(``profiler.store.runs`` merges ``points*.jsonl`` on load). Every record's ``worker`` carries ``host``,
``device_name``, ``shard`` and the SLURM job id; ``shards/shard-<n>.json`` holds the shard's full
environment fingerprint, state and calibration. A run that landed on two GPU models is therefore
reported per device model (group records by ``worker.device_name``), never averaged.

Scheduler signals (``ShardJob``, ``run_shard``): the job script asks for USR2 ``signal_lead_s`` before
the time limit (a sixth of it, 10..90 s, so it never comes before the first point). On USR2 (time
limit or preemption) a shard abandons the point in flight (its worker is killed; the point is listed
as ``interrupted`` in its state file, never recorded ``crashed``), keeps every record, and submitit
requeues it through ``ShardJob.checkpoint`` (declined when the attempt recorded nothing). On TERM
(``scancel``) it stops the same way within a second and the job ends. Resources (``plan_resources``):
CPU shards ask ``--cpus-per-task`` = the worker's threads, GPU shards one GPU, ``--mem`` from the
plan's estimate; the manifest records the request (``execution.resources``) and what each job was
given (``execution.allocated``). ``scheduler_view`` reads ``scontrol`` / ``sacct`` for ``status``.
Refusals (``submission_error``, ``check_scheduler``) are one line naming the flag (exit 2) or why the
scheduler is unreachable (exit 3), before a run folder exists or with it removed.

``resume`` re-submits, per shard, only the points that have no record in any file.
``render_job_script`` is the exact ``sbatch`` script submitit would submit (its own generator,
``submitit.slurm.slurm._make_sbatch_string``), for ``--dry-run`` without a scheduler.

``backend="local"`` runs the same jobs through ``submitit.LocalExecutor`` (real subprocesses on this
machine): that is how the tests exercise this module without a scheduler.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import profiler.planning.points as plan_mod
from profiler.core.errors import UnavailableError, UsageError
from profiler.core.lazy import available, lazy_import
from profiler.core.records import (
    Manifest,
    PointRecord,
    PointSpec,
    RecordError,
    from_dict,
    to_dict,
    upgrade_spec_dict,
)
from profiler.core.version import __version__
from profiler.planning.estimate import (
    CALIBRATION_S,
    DEFAULT_RATES,
    WORKER_START_S,
    point_seconds,
)
from profiler.planning.points import make_plan
from profiler.planning.scenario import spec_from_dict
from profiler.runner import pinning
from profiler.runner.base import PointQueue, RunEvents
from profiler.runner.env import fingerprint
from profiler.runner.local import LocalExecutor
from profiler.runner.multi import MultiExecutor, _cuda_count, point_cost
from profiler.runner.sweep import check_plan_not_empty, default_out
from profiler.store.lock import RunLock, create_locked, stale_warning
from profiler.store.runs import RunDir, utc_now

submitit = lazy_import("submitit")
submitit_slurm = lazy_import("submitit.slurm.slurm")
submitit_helpers = lazy_import('submitit.helpers')

SHARDS_FILE = "shards.json"
#: 2: layer/model specs hold the per-head dim in ``D`` (schema-1 tables are converted on read).
SHARDS_SCHEMA_VERSION = 2
SHARD_STATE_DIR = "shards"
SUBMITIT_DIR = "slurm"
BACKENDS = ("slurm", "local", "debug")
DEFAULT_MAX_SHARDS = 64
#: Requeues after a time limit before a shard gives up (each must record at least one more point).
DEFAULT_MAX_REQUEUES = 20
#: The time-limit signal (USR2) comes ``lead`` s before the limit: ``limit / 6``, within 10 .. 90 s.
SIGNAL_LEAD_FRACTION, SIGNAL_LEAD_MIN_S, SIGNAL_LEAD_MAX_S = 1 / 6, 10, 90
#: slurmctld checks time limits about every 30 s, so the signal may come up to this much earlier.
SIGNAL_SLACK_S = 30
#: A job's own start on the node (Python, serprof, re-planning) before its worker starts.
NODE_START_S = 5.0
#: Host memory of a shard (its Python process plus one worker with torch imported), MiB; CUDA adds a
#: context per GPU. The plan's largest point (``est_bytes``, CPU runs) comes on top, with headroom.
SHARD_BASE_MB = {"cpu": 1024, "cuda": 4096}
CUDA_HOST_MB_PER_GPU = 2048
MEM_HEADROOM = 1.5


@dataclass(frozen=True)
class SlurmOptions:
    """Scheduler options (``--partition`` ... ``--sbatch-extra``) and how many shards to cut."""

    partition: str | None = None
    account: str | None = None
    time_limit_min: int | None = None        # whole job (one shard), minutes
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    array_parallelism: int | None = None     # at most this many shards run at once
    sbatch_extra: tuple[tuple[str, Any], ...] = ()   # extra #SBATCH flags: (name, value or True)
    shards: int | None = None                # default: one per series, at most DEFAULT_MAX_SHARDS
    job_name: str | None = None
    python: str | None = None                # command that starts Python on the nodes
    backend: str = "slurm"                   # slurm | local (submitit.LocalExecutor) | debug
    mem_mb: int | None = None                # --mem per shard job (MiB), from the plan's estimate
    signal_lead_s: int | None = None         # USR2 this many s before the time limit (checkpoint + requeue)
    max_requeues: int | None = None          # time-limit requeues per shard (default DEFAULT_MAX_REQUEUES)

    def to_dict(self) -> dict[str, Any]:
        d = to_dict(self)
        d["sbatch_extra"] = {k: v for k, v in self.sbatch_extra}
        return d


# --------------------------------------------------------------------------- option parsing

_TIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_time_limit(text: str | int | None) -> int | None:
    """SLURM time syntax (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) or ``90min`` / ``2h`` -> minutes."""
    if text is None:
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        minutes = text
    else:
        t = str(text).strip().lower()
        unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|min|m|h|d)", t)
        m = _TIME_RE.fullmatch(t)
        if unit:
            minutes = math.ceil(float(unit.group(1)) * {"s": 1 / 60, "min": 1, "m": 1, "h": 60, "d": 1440}[unit.group(2)])
        elif m:
            days, a, b, c = m.groups()
            nums = [int(x) for x in (a, b, c) if x is not None]
            if days is not None:           # D-HH[:MM[:SS]]
                nums += [0] * (3 - len(nums))
                minutes = int(days) * 1440 + nums[0] * 60 + nums[1] + math.ceil(nums[2] / 60)
            elif len(nums) == 1:           # MM
                minutes = nums[0]
            elif len(nums) == 2:           # MM:SS
                minutes = nums[0] + math.ceil(nums[1] / 60)
            else:                          # HH:MM:SS
                minutes = nums[0] * 60 + nums[1] + math.ceil(nums[2] / 60)
        else:
            raise UsageError(f"--time-limit: {text!r} is not a time; use minutes (90), HH:MM:SS (2:00:00), "
                             "D-HH:MM:SS (1-00:00:00) or 90min / 2h")
    if minutes < 1:
        raise UsageError(f"--time-limit must be at least 1 minute (got {text!r})")
    return int(minutes)


_SHELL_META = set(";&|<>()`$\\!*?{}~#")
_FLAG_NAME = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
#: characters a value reaching an ``#SBATCH`` line may hold (no quotes, no shell syntax, no whitespace)
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.,:=+@%/\-\[\]]*$")


def _refuse_unsafe(key: str, text: str) -> None:
    """Newlines / control characters anywhere, or shell metacharacters outside quotes -> ``UsageError``."""
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UsageError(f"{key}: control character {bad!r} (newline?) is not allowed in {text!r}; "
                         "sbatch options are data, never shell")
    quote = None
    for c in text:
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c in _SHELL_META:
            raise UsageError(f"{key}: shell metacharacter {c!r} outside quotes in {text!r}; "
                             "give plain --flag=value tokens")


def check_script_value(key: str, value: Any) -> Any:
    """A value that reaches the job script: plain characters only (``UsageError`` naming ``key``)."""
    if value is None or value is True:
        return value
    text = str(value)
    _refuse_unsafe(key, text)
    if not _SAFE_VALUE.fullmatch(text):
        bad = next(c for c in text if not _SAFE_VALUE.fullmatch(c))
        raise UsageError(f"{key}: character {bad!r} is not allowed in {text!r} "
                         "(letters, digits and _ . , : = + @ % / - [ ] only)")
    return value


def safe_job_name(name: str) -> str:
    """A SLURM job name made of safe characters (a scenario name may hold anything)."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in name)[:60] or "serprof"


def check_script_path(run_dir: str | Path) -> None:
    """The run folder's path is written into ``#SBATCH --output=...`` lines: no control characters."""
    text = str(Path(run_dir).absolute())
    bad = next((c for c in text if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise UsageError(f"--out: control character {bad!r} in {text!r} cannot go into a job script")


def parse_sbatch_extra(text: str | Sequence[str] | None, key: str = "--sbatch-extra") -> tuple[tuple[str, Any], ...]:
    """``"--constraint=a100 --qos high --exclusive"`` -> ``(("constraint", "a100"), ("qos", "high"), ("exclusive", True))``.

    The text is data: it is split with ``shlex`` and every token must be ``--flag[=value]`` (or a
    flag followed by its value); newlines, control characters, and shell metacharacters outside
    quotes are refused with a ``UsageError`` naming ``key`` (the flag or the scenario key).
    """
    if not text:
        return ()
    parts = [text] if isinstance(text, str) else [str(t) for t in text]
    tokens: list[str] = []
    for part in parts:
        _refuse_unsafe(key, part)
        try:
            tokens += shlex.split(part)
        except ValueError as exc:
            raise UsageError(f"{key}: cannot split {part!r} ({exc})") from None
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("-") or tok in ("-", "--"):
            raise UsageError(f"{key}: expected sbatch flags like --constraint=a100, got {tok!r}")
        name = tok.lstrip("-")
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
            value, i = tokens[i + 1], i + 2
        else:
            value, i = True, i + 1
        if len(tok) - len(tok.lstrip("-")) == 1 or len(name) < 2:
            raise UsageError(f"{key}: use sbatch's long flag names (--{name}=...), got {tok!r}")
        name = name.replace("_", "-")
        if not _FLAG_NAME.fullmatch(name):
            raise UsageError(f"{key}: {tok!r} is not an sbatch flag name (letters, digits and -)")
        if name in ("array", "output", "error", "wrap"):
            raise UsageError(f"{key}: --{name} is set by serprof/submitit itself")
        check_script_value(f"{key} (--{name})", value)
        out.append((name, value))
    return tuple(out)


def _positive(name: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UsageError(f"--{name} must be >= 1 (got {value})")
    return value


def options_from_flags(partition: str | None = None, account: str | None = None, time_limit: str | None = None,
                       gpus_per_task: int | None = None, array_parallelism: int | None = None,
                       sbatch_extra: str | Sequence[str] | None = None, shards: int | None = None,
                       cpus_per_task: int | None = None, backend: str = "slurm") -> SlurmOptions:
    """Validated ``SlurmOptions`` from CLI / scenario values (``UsageError`` on bad input)."""
    if backend not in BACKENDS:
        raise UsageError(f"slurm backend {backend!r} is not allowed; valid: {', '.join(BACKENDS)}")
    if gpus_per_task is not None and gpus_per_task < 0:
        raise UsageError(f"--gpus-per-task must be >= 0 (got {gpus_per_task})")
    check_script_value("--partition", partition or None)
    check_script_value("--account", account or None)
    return SlurmOptions(partition=partition or None, account=account or None,
                        time_limit_min=parse_time_limit(time_limit),
                        gpus_per_task=gpus_per_task or None,
                        cpus_per_task=_positive("cpus-per-task", cpus_per_task),
                        array_parallelism=_positive("array-parallelism", array_parallelism),
                        sbatch_extra=parse_sbatch_extra(sbatch_extra),
                        shards=_positive("shards", shards), backend=backend)


# --------------------------------------------------------------------------- planning and sharding

def target_device(device: str, opts: SlurmOptions) -> str:
    """The nodes' device: explicit, or ``auto`` -> cuda when GPUs are requested, else cpu."""
    if device in ("cpu", "cuda"):
        return device
    return "cuda" if opts.gpus_per_task else "cpu"


@contextlib.contextmanager
def _plan_for_target(device: str) -> Iterator[None]:
    """Plan on the submitting host for ``device`` without probing it (no GPU on a login node).

    The memory budget is left unset (``None``) unless the user gave one: each node applies its own
    budget when it re-plans. (A ``make_plan`` parameter would be cleaner than this scoped patch.)
    """
    saved = plan_mod.resolve_device, plan_mod.default_memory_budget
    plan_mod.resolve_device = lambda _d: device  # type: ignore[assignment]
    plan_mod.default_memory_budget = lambda _dev, _idx=0: (None, "decided on each node")  # type: ignore[assignment]
    try:
        yield
    finally:
        plan_mod.resolve_device, plan_mod.default_memory_budget = saved


def cluster_plan(sweep: Any, opts: SlurmOptions):
    """``make_plan`` for the nodes' device, made on this (submitting) host."""
    device = target_device(sweep.device, opts)
    sweep = replace(sweep, device=device)
    with _plan_for_target(device):
        return make_plan(sweep, cuda_available_flag=(device == "cuda"))


def make_shards(specs: Sequence[PointSpec], n: int | None = None) -> list[list[PointSpec]]:
    """Whole series per shard, balanced by estimated cost (greedy: largest series to the lightest shard).

    ``n`` defaults to one shard per series (at most ``DEFAULT_MAX_SHARDS``); shards never exceed the
    number of series. Inside a shard, series and points keep their plan order (short to long).
    """
    series: dict[tuple, list[PointSpec]] = {}
    for s in specs:
        series.setdefault(s.series_key, []).append(s)
    if not series:
        return []
    k = min(n or min(len(series), DEFAULT_MAX_SHARDS), len(series))
    order = {key: i for i, key in enumerate(series)}
    cost = {key: sum(point_cost(p) for p in pts) for key, pts in series.items()}
    loads = [0.0] * k
    members: list[list[tuple]] = [[] for _ in range(k)]
    for key in sorted(series, key=lambda key: (-cost[key], order[key])):
        i = min(range(k), key=lambda j: (loads[j], j))
        loads[i] += cost[key]
        members[i].append(key)
    return [[p for key in sorted(keys, key=order.__getitem__) for p in series[key]] for keys in members]


def shard_file(shard: int) -> str:
    return f"points-{shard:03d}.jsonl"


def signal_lead_s(time_limit_min: int | None) -> int:
    """Seconds before the time limit at which a shard gets USR2 (checkpoint, requeue).

    A sixth of the limit, within ``SIGNAL_LEAD_MIN_S .. SIGNAL_LEAD_MAX_S`` (submitit's fixed 90 s would
    come before the first point of a short job); no limit given: the maximum.
    """
    if not time_limit_min:
        return SIGNAL_LEAD_MAX_S
    return int(min(SIGNAL_LEAD_MAX_S, max(SIGNAL_LEAD_MIN_S, time_limit_min * 60 * SIGNAL_LEAD_FRACTION)))


def _user_mem(opts: SlurmOptions) -> str | None:
    """The memory flag the user gave in ``--sbatch-extra`` (it wins over the estimate), if any."""
    return next((k for k, _ in opts.sbatch_extra if k in ("mem", "mem-per-cpu", "mem-per-gpu")), None)


def first_point_s(plan: Any, shards: Sequence[Sequence[PointSpec]], calibrate: bool = True) -> float:
    """Estimated seconds from a shard job's start to its first record (the slowest shard's first point)."""
    rates = DEFAULT_RATES.get(plan.sweep.device, DEFAULT_RATES["cpu"])
    runnable = {p.spec.id for p in plan.points if p.runnable}
    firsts = [next((p for p in sh if p.id in runnable), None) for sh in shards]
    slowest = max((point_seconds(p, plan.sweep.settings, rates, energy_meter=False) for p in firsts if p),
                  default=0.0)
    return NODE_START_S + WORKER_START_S + (CALIBRATION_S if calibrate else 0.0) + slowest


def plan_resources(plan: Any, shards: Sequence[Sequence[PointSpec]], opts: SlurmOptions,
                   calibrate: bool = True) -> SlurmOptions:
    """``opts`` with what every shard job requests, from the plan (one job array: one request for all).

    * CPU shards: ``--cpus-per-task`` = the worker's torch threads (``--cpus-per-task``, default 1; the
      node pins the worker to them); GPU shards: ``--gpus-per-task`` (default 1), CPUs as given.
    * ``--mem``: ``SHARD_BASE_MB`` (+ ``CUDA_HOST_MB_PER_GPU`` per GPU) + ``MEM_HEADROOM`` x the largest
      runnable point's ``est_bytes`` on CPU, rounded up to 256 MiB; a memory flag in ``--sbatch-extra`` wins.
    * the USR2 lead (``signal_lead_s``); a time limit whose earliest signal comes before the first
      point can finish is a ``UsageError`` naming ``--time-limit``.
    """
    device = plan.sweep.device
    cpus, gpus = opts.cpus_per_task, opts.gpus_per_task
    if device == "cpu":
        cpus = cpus or 1
    else:
        gpus = gpus or 1
    peak = 0
    if device == "cpu":
        ids = {p.id for sh in shards for p in sh}
        peak = max((int(p.est_bytes or 0) for p in plan.points if p.runnable and p.spec.id in ids), default=0)
    base = SHARD_BASE_MB.get(device, SHARD_BASE_MB["cpu"]) + (CUDA_HOST_MB_PER_GPU * (gpus or 0))
    mem_mb = int(math.ceil((base + MEM_HEADROOM * peak / 2**20) / 256) * 256)
    lead = signal_lead_s(opts.time_limit_min)
    if opts.time_limit_min:
        window = opts.time_limit_min * 60 - lead - SIGNAL_SLACK_S
        need = first_point_s(plan, shards, calibrate)
        if window < need:
            least = next(m for m in range(opts.time_limit_min, 10**6)
                         if m * 60 - signal_lead_s(m) - SIGNAL_SLACK_S >= need)
            raise UsageError(f"--time-limit {opts.time_limit_min} min is too short to measure one point: the "
                             f"requeue signal may come {max(0, window):.0f} s after the start and the first point "
                             f"needs about {need:.0f} s (start, calibration, point); give at least {least} min")
    return replace(opts, cpus_per_task=cpus, gpus_per_task=gpus, mem_mb=opts.mem_mb or mem_mb,
                   signal_lead_s=opts.signal_lead_s or lead)


# --------------------------------------------------------------------------- job script

def sbatch_parameters(opts: SlurmOptions, job_name: str) -> dict[str, Any]:
    """Parameters for ``submitit.SlurmExecutor.update_parameters`` (and the dry-run script)."""
    params: dict[str, Any] = {"job_name": opts.job_name or job_name}
    for param, attr in (("partition", "partition"), ("account", "account"), ("time", "time_limit_min"),
                        ("gpus_per_task", "gpus_per_task"), ("cpus_per_task", "cpus_per_task"),
                        ("array_parallelism", "array_parallelism")):
        if getattr(opts, attr):
            params[param] = getattr(opts, attr)
    if opts.mem_mb and not _user_mem(opts):
        params["mem"] = f"{int(opts.mem_mb)}M"
    params["signal_delay_s"] = int(opts.signal_lead_s or signal_lead_s(opts.time_limit_min))
    if opts.sbatch_extra:
        params["additional_parameters"] = {k: v for k, v in opts.sbatch_extra}
    # every string that reaches the job script, wherever it came from (flags, scenario, shards.json)
    for k, v in params.items():
        if k == "additional_parameters":
            for name, value in v.items():
                if not _FLAG_NAME.fullmatch(str(name)):
                    raise UsageError(f"sbatch_extra: {name!r} is not an sbatch flag name")
                check_script_value(f"sbatch_extra (--{name})", value)
        elif isinstance(v, str):
            check_script_value(k, v)
    if opts.python is not None and any(ord(c) < 32 or ord(c) == 127 for c in opts.python):
        raise UsageError(f"python: control characters are not allowed in {opts.python!r}")
    return params


def submitit_folder(run_dir: Path) -> Path:
    return Path(run_dir).absolute() / SUBMITIT_DIR / "%j"


def render_job_script(opts: SlurmOptions, run_dir: str | Path, n_jobs: int, job_name: str = "serprof") -> str:
    """The ``sbatch`` script ``submit`` would hand to SLURM for ``n_jobs`` shards (submitit's generator)."""
    folder = submitit_folder(Path(run_dir))
    python = opts.python or shlex.quote(sys.executable)
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return submitit_slurm._make_sbatch_string(command=command, folder=folder, map_count=n_jobs if n_jobs > 1 else None,
                               **sbatch_parameters(opts, job_name))


# --------------------------------------------------------------------------- run folder state

def read_shards(run_dir: str | Path) -> dict[str, Any]:
    """The shard table; the specs of a version-1 table (layer ``D`` = hidden size) in today's meaning."""
    p = Path(run_dir) / SHARDS_FILE
    try:
        table = json.loads(p.read_text())
    except FileNotFoundError:
        raise UsageError(f"{Path(run_dir)} has no {SHARDS_FILE}: not a SLURM run") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{p}: cannot read the shard table ({exc})") from None
    version = table.get("schema_version", SHARDS_SCHEMA_VERSION) if isinstance(table, dict) else SHARDS_SCHEMA_VERSION
    if isinstance(version, int) and version < SHARDS_SCHEMA_VERSION and isinstance(table.get("shards"), list):
        try:
            for sh in table["shards"]:
                if isinstance(sh, dict) and isinstance(sh.get("specs"), list):
                    sh["specs"] = [upgrade_spec_dict(s, version, f"{p}: spec") for s in sh["specs"]]
        except RecordError as exc:
            raise UsageError(str(exc)) from None
        table["schema_version"] = SHARDS_SCHEMA_VERSION
    return table


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def shard_state_path(run_dir: str | Path, shard: int) -> Path:
    return Path(run_dir) / SHARD_STATE_DIR / f"shard-{shard:03d}.json"


def is_slurm_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / SHARDS_FILE).is_file()


# --------------------------------------------------------------------------- submitting

@dataclass
class SubmitResult:
    run_dir: Path
    shards: list[dict[str, Any]]                   # {"shard", "points", "ids"} of this submission
    job_ids: list[str] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)  # submitit Job objects (wait with job.result())
    script: str | None = None                      # the sbatch script (slurm backend / dry run)
    resumed: bool = False
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)
    planned: int = 0
    missing: int = 0                               # points without a record before this submission


def _manifest_for(plan: Any, run_id: str, opts: SlurmOptions, n_shards: int) -> Manifest:
    env = dict(fingerprint(device=None, with_torch=False))
    env["device"] = plan.sweep.device
    env["submit_host"] = True
    env["note"] = ("environment of the submitting host; each shard's node is in shards/shard-<n>.json and "
                   "in every record's worker info (host, device_name): group by worker.device_name")
    return Manifest(
        run_id=run_id, created_at=utc_now(), scenario=plan.sweep.to_dict(), environment=env,
        settings=plan.sweep.settings, serprof_version=__version__,
        notes={"dropped": [{"what": d.what, "reason": d.reason} for d in plan.dropped],
               "memory_budget_bytes": plan.memory_budget_bytes,
               "memory_budget_source": "per node" if plan.memory_budget_bytes is None else "--memory-budget",
               "planned_points": len(plan.points),
               "execution": {"executor": "slurm", "shards": n_shards, "options": opts.to_dict(),
                             "resources": requested_resources(opts, plan.sweep.device),
                             "sharding": "whole series per shard, balanced by estimated cost",
                             "records": "points-<shard>.jsonl per shard"},
               "sessions": []})


def requested_resources(opts: SlurmOptions, device: str) -> dict[str, Any]:
    """What every shard job of the array asks the scheduler for (the manifest's ``execution.resources``)."""
    user_mem = _user_mem(opts)
    return {"cpus_per_task": opts.cpus_per_task, "gpus_per_task": opts.gpus_per_task,
            "worker_threads": opts.cpus_per_task if device == "cpu" else None,
            "mem": dict(opts.sbatch_extra)[user_mem] if user_mem else f"{opts.mem_mb}M",
            "mem_source": f"--sbatch-extra --{user_mem}" if user_mem else
                          "estimate: shard base + 1.5 x the largest point's est_bytes",
            "time_limit_min": opts.time_limit_min, "signal_lead_s": opts.signal_lead_s,
            "max_requeues": opts.max_requeues or DEFAULT_MAX_REQUEUES,
            "given": "per shard under execution.allocated (written by each job as its node saw it)"}


def plan_shards(sweep: Any, opts: SlurmOptions) -> tuple[Any, list[list[PointSpec]]]:
    """``(plan, shards)`` for a new SLURM run (nothing is written)."""
    plan = cluster_plan(sweep, opts)
    return plan, make_shards([p.spec for p in plan.points], opts.shards)


def submit(sweep: Any = None, *, opts: SlurmOptions, out: str | Path | None = None,
           resume: str | Path | None = None, dry_run: bool = False, calibrate: bool = True) -> SubmitResult:
    """Create (or continue) a SLURM run folder and submit its shards; see the module docstring.

    The submission holds the run folder's writer lock (``profiler.store.lock``): two submissions of
    one folder at once are refused (exit 2) instead of sending its missing points twice.
    """
    if dry_run and resume is None:
        return _submit(sweep, opts=opts, out=out, resume=None, dry_run=True, calibrate=calibrate, lock=None)
    if resume is not None:
        RunDir.open(resume)
        with RunLock(resume) as lock:
            return _submit(sweep, opts=opts, out=out, resume=resume, dry_run=dry_run, calibrate=calibrate, lock=lock)
    return _submit(sweep, opts=opts, out=out, resume=None, dry_run=dry_run, calibrate=calibrate, lock=None)


def _submit(sweep: Any, *, opts: SlurmOptions, out: str | Path | None, resume: str | Path | None, dry_run: bool,
            calibrate: bool, lock: Any) -> SubmitResult:
    if resume is not None:
        run = RunDir.open(resume)
        table = read_shards(run.path)
        done = run.done_ids()
        todo: list[dict[str, Any]] = []
        for sh in table["shards"]:
            missing = [s for s in sh["specs"] if _spec(s).id not in done]
            if missing:
                todo.append({"shard": sh["shard"], "specs": missing})
        stored = table.get("options") or {}
        opts = _merge_options(stored, opts)
        if todo and not dry_run:
            check_scheduler(opts)
        warnings = _running_warnings(run.path, [t["shard"] for t in todo])
        planned = sum(len(sh["specs"]) for sh in table["shards"])
        job_name = safe_job_name(str(table.get("job_name") or "serprof"))
        run_dir = run.path
    else:
        if sweep is None:
            raise ValueError("submit needs a sweep or resume")
        plan, shards = plan_shards(sweep, opts)
        check_plan_not_empty(plan)
        opts = plan_resources(plan, shards, opts, calibrate)
        if not dry_run:
            check_scheduler(opts)
        run_dir = Path(out) if out is not None else default_out(plan.sweep)
        check_script_path(run_dir)
        job_name = safe_job_name(f"serprof-{plan.sweep.name}")
        todo = [{"shard": i, "specs": [to_dict(s) for s in specs]} for i, specs in enumerate(shards)]
        planned = len(plan.points)
        warnings = []
        if not dry_run:
            undo = _Undo(Path(run_dir))
            try:
                run, lock = create_locked(run_dir, lambda name: _manifest_for(plan, name, opts, len(shards)))
            except BaseException:
                undo()
                raise
            try:
                run_dir = run.path
                _write_json(run_dir / SHARDS_FILE, {"schema_version": SHARDS_SCHEMA_VERSION, "job_name": job_name,
                                                     "options": opts.to_dict(), "shards": todo, "submissions": []})
                return _submit_todo(opts, run_dir, todo, job_name, resume, dry_run, calibrate, planned, warnings)
            except BaseException:
                lock.release()
                undo()      # nothing was submitted: leave no run folder behind
                raise
            finally:
                lock.release()
    if lock is not None and stale_warning(lock):
        warnings = [stale_warning(lock)] + list(warnings)
    return _submit_todo(opts, Path(run_dir), todo, job_name, resume, dry_run, calibrate, planned, warnings)


class _Undo:
    """Removes what creating a new run folder at ``path`` adds (the folder or, if it existed, the entries
    it did not hold, and any parent folders made for it), when submitting fails before a job exists."""

    def __init__(self, path: Path):
        self.path = path
        self.before = {c.name for c in path.iterdir()} if path.is_dir() else None
        self.made_parents = []
        parent = path.parent
        while not parent.exists():
            self.made_parents.append(parent)
            parent = parent.parent

    def __call__(self) -> None:
        if self.before is None:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.path.is_dir():
            for child in self.path.iterdir():
                if child.name not in self.before:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        for parent in self.made_parents:        # deepest first; only if still empty
            try:
                parent.rmdir()
            except OSError:
                break


def _submit_todo(opts: SlurmOptions, run_dir: Path, todo: list[dict[str, Any]], job_name: str, resume: Any,
                 dry_run: bool, calibrate: bool, planned: int, warnings: list[str]) -> SubmitResult:
    check_script_path(run_dir)
    script = render_job_script(opts, run_dir, len(todo), job_name) if todo else None
    result = SubmitResult(run_dir=Path(run_dir), shards=[{"shard": t["shard"], "points": len(t["specs"]),
                                                          "ids": [_spec(s).id for s in t["specs"]]}
                                                         for t in todo],
                          script=script, resumed=resume is not None, dry_run=dry_run, warnings=warnings,
                          planned=planned, missing=sum(len(t["specs"]) for t in todo))
    if dry_run or not todo:
        return result
    ex = _submitit_executor(opts, Path(run_dir), job_name)
    echoed = io.StringIO()      # submitit prints sbatch's stderr before raising it: one line, ours
    try:
        with contextlib.redirect_stderr(echoed):
            jobs = ex.map_array(ShardJob(), [str(Path(run_dir).absolute())] * len(todo), [t["shard"] for t in todo],
                                [t["specs"] for t in todo], [calibrate] * len(todo))
    except (RuntimeError, OSError) as exc:       # submitit's FailedJobError / FailedSubmissionError, no sbatch
        why = "; ".join(ln.strip() for ln in (str(exc) or echoed.getvalue()).splitlines() if ln.strip())
        raise submission_error(opts, why[:500] or type(exc).__name__) from None
    result.jobs = list(jobs)
    result.job_ids = [str(j.job_id) for j in jobs]
    table = read_shards(run_dir)
    table.setdefault("submissions", []).append({"at": utc_now(), "backend": opts.backend,
                                                "shards": [t["shard"] for t in todo], "job_ids": result.job_ids,
                                                "points": result.missing, "resume": resume is not None})
    _write_json(Path(run_dir) / SHARDS_FILE, table)
    return result


def _spec(d: Mapping[str, Any]) -> PointSpec:
    return from_dict(PointSpec, d, "shards.json spec")


def _merge_options(stored: Mapping[str, Any], given: SlurmOptions) -> SlurmOptions:
    """Options of a resumed run: the stored ones, overridden by any given explicitly."""
    base = dict(stored)
    base["sbatch_extra"] = tuple((k, v) for k, v in (stored.get("sbatch_extra") or {}).items())
    known = set(SlurmOptions.__dataclass_fields__)
    merged = SlurmOptions(**{k: v for k, v in base.items() if k in known})
    default = SlurmOptions()
    changes = {k: getattr(given, k) for k in known if getattr(given, k) != getattr(default, k)}
    if "time_limit_min" in changes and "signal_lead_s" not in changes:
        changes["signal_lead_s"] = signal_lead_s(changes["time_limit_min"])
    return replace(merged, **changes)


def _running_warnings(run_dir: Path, shards: Sequence[int]) -> list[str]:
    out = []
    for sh in shards:
        p = shard_state_path(run_dir, sh)
        try:
            state = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if state.get("state") == "running":
            out.append(f"shard {sh} is marked running (host {state.get('host')}, started {state.get('started_at')}); "
                       "if its job is still alive, cancel it (scancel) first or its points may be measured twice "
                       "(the later record wins)")
    return out


#: sbatch's refusals -> the flag that caused them (``submission_error``)
_REFUSALS = (("invalid partition", "--partition", "partition"), ("invalid account", "--account", "account"),
             ("time limit", "--time-limit", "time_limit_min"), ("invalid qos", "--sbatch-extra", None),
             ("more processors requested", "--cpus-per-task", "cpus_per_task"),
             ("invalid generic resource", "--gpus-per-task", "gpus_per_task"),
             ("node configuration is not available", "--cpus-per-task/--gpus-per-task/--sbatch-extra --mem", None),
             ("memory", "--sbatch-extra --mem", None))
_AUTH = ("munge", "authentication", "zero bytes were transmitted", "unable to contact slurm controller",
         "connection refused", "socket timed out")


def _scheduler_said(text: str) -> str:
    """The scheduler's own words from sbatch/submitit output (``sbatch: error: ...`` lines), one line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    said = [ln.split("error:", 1)[1].strip() for ln in lines if "error:" in ln]
    return "; ".join(dict.fromkeys(said or lines))[:300]


def submission_error(opts: SlurmOptions, text: str) -> Exception:
    """One line naming the flag the scheduler refused (``UsageError``, exit 2) or why it is unreachable (exit 3)."""
    said = _scheduler_said(text)
    low = said.lower()
    if any(a in low for a in _AUTH):
        return UnavailableError(f"--executor slurm: the scheduler is not reachable (munge/slurmctld down?): {said}")
    for needle, flag, attr in _REFUSALS:
        if needle in low:
            value = getattr(opts, attr) if attr else None
            if value is not None and attr == "time_limit_min":
                value = f"{value} min"
            return UsageError(f"{flag}{' ' + str(value) if value is not None else ''}: "
                              f"the scheduler refused the job: {said}")
    return UnavailableError(f"--executor slurm: submission failed: {said}")


def _run_tool(cmd: Sequence[str], timeout: float = 20.0) -> tuple[int, str, str]:
    """Run a SLURM client command: ``(returncode, stdout, stderr)``; ``127`` when it is not installed."""
    try:
        p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return 127, "", f"{cmd[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"{cmd[0]}: no answer within {timeout:g} s"
    return p.returncode, p.stdout, p.stderr


def check_scheduler(opts: SlurmOptions) -> None:
    """Before a run folder exists: ``sbatch`` is installed, the controller answers, the partition exists."""
    if opts.backend != "slurm":
        return
    if shutil.which("sbatch") is None:
        raise UnavailableError("--executor slurm: sbatch not found on PATH (not a SLURM login node?); "
                               "use --dry-run to see the job script")
    rc, out, err = _run_tool(["sinfo", "-h", "-o", "%R"])
    if rc != 0:
        raise submission_error(opts, err or out or f"sinfo exited with {rc}")
    parts = sorted({ln.strip() for ln in out.splitlines() if ln.strip()})
    if opts.partition and parts and opts.partition not in parts:
        raise UsageError(f"--partition {opts.partition}: the scheduler has no such partition "
                         f"(sinfo lists: {', '.join(parts)})")


def _submitit_executor(opts: SlurmOptions, run_dir: Path, job_name: str):
    if not available("submitit"):
        raise UnavailableError("--executor slurm needs submitit: pip install 'serprof[slurm]'")
    folder = submitit_folder(run_dir)
    if opts.backend == "slurm":
        try:
            ex = submitit.SlurmExecutor(folder=folder, python=opts.python,
                                        max_num_timeout=opts.max_requeues or DEFAULT_MAX_REQUEUES)
        except RuntimeError as exc:
            raise UnavailableError(f"--executor slurm: {exc} (srun/sbatch not found); "
                                   "use --dry-run to see the job script") from None
        ex.update_parameters(**sbatch_parameters(opts, job_name))
        return ex
    if opts.backend == "local":
        ex = submitit.LocalExecutor(folder=folder, python=opts.python,
                                    max_num_timeout=opts.max_requeues or DEFAULT_MAX_REQUEUES)
        ex.update_parameters(timeout_min=opts.time_limit_min or 60,
                             signal_delay_s=int(opts.signal_lead_s or signal_lead_s(opts.time_limit_min)))
        return ex
    return submitit.DebugExecutor(folder=folder)


# --------------------------------------------------------------------------- the scheduler's view

#: SLURM job states -> serprof's shard states (``status``)
_STATE_MAP = {"PENDING": "pending", "CONFIGURING": "running", "RUNNING": "running", "COMPLETING": "running",
              "SUSPENDED": "suspended", "REQUEUED": "requeued", "REQUEUE_FED": "requeued", "REQUEUE_HOLD": "requeued",
              "RESIZING": "running", "SIGNALING": "running", "STAGE_OUT": "running", "COMPLETED": "finished",
              "CANCELLED": "cancelled", "FAILED": "failed", "TIMEOUT": "failed", "NODE_FAIL": "failed",
              "PREEMPTED": "requeued", "BOOT_FAIL": "failed", "DEADLINE": "failed", "OUT_OF_MEMORY": "failed"}


@dataclass
class JobView:
    """One shard job as the scheduler reports it."""

    job_id: str                        # "<array>_<task>" or the plain id
    state: str                         # SLURM's word: PENDING, RUNNING, COMPLETED, TIMEOUT, ...
    reason: str | None = None          # SLURM's reason (pending: Resources, Priority; ended: TimeLimit, ...)
    restarts: int = 0                  # requeues so far
    exit_code: str | None = None
    stderr: str | None = None          # the job's log (submitit's <job>_0_log.err)
    source: str = "scontrol"

    @property
    def serprof_state(self) -> str:
        return _STATE_MAP.get(self.state.split()[0].rstrip("+"), self.state.lower())


def parse_scontrol(text: str) -> dict[str, JobView]:
    """``scontrol show job -o`` output -> ``{"<array>_<task>" or id: JobView}``."""
    out: dict[str, JobView] = {}
    for line in text.splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if "JobId" not in fields:
            continue
        task = fields.get("ArrayTaskId")
        ids = ([f"{fields['ArrayJobId']}_{t}" for t in _array_tasks(task)] if fields.get("ArrayJobId") and task
               else [fields["JobId"]])
        reason = fields.get("Reason")
        for jid in ids or [fields["JobId"]]:
            # a pending array's tasks share one record (ArrayTaskId=0-3%2) until they start
            out[jid] = JobView(jid, fields.get("JobState", "UNKNOWN"),
                               None if reason in (None, "None", "(null)") else reason,
                               int(fields["Restarts"]) if (fields.get("Restarts") or "").isdigit() else 0,
                               fields.get("ExitCode"), fields.get("StdErr"), "scontrol")
    return out


def _array_tasks(text: str) -> list[int]:
    """``"3"``, ``"0-3%2"``, ``"1,4-5"``, ``"0-6:2"`` -> the task ids."""
    out: list[int] = []
    for part in text.split("%")[0].split(","):
        rng, _, step = part.partition(":")
        lo, _, hi = rng.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()) and (not step or step.isdigit()):
            out += range(int(lo), int(hi or lo) + 1, int(step or 1))
    return out


def parse_sacct(text: str) -> dict[str, JobView]:
    """``sacct -n -P -X -o JobID,State,ExitCode`` output -> ``{job id: JobView}`` (jobs scontrol forgot)."""
    out: dict[str, JobView] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) >= 3 and parts[0]:
            out[parts[0]] = JobView(parts[0], parts[1].split()[0] if parts[1] else "UNKNOWN", None, 0, parts[2],
                                    None, "sacct")
    return out


def scheduler_view(job_ids: Sequence[str]) -> tuple[dict[str, JobView], str | None]:
    """The scheduler's state of ``job_ids`` (``scontrol``, then ``sacct`` for older jobs) and a note.

    The note is ``None`` when the scheduler answered, else why there is no scheduler view (no SLURM
    client here, controller unreachable): ``status`` then shows what the run folder says.
    """
    arrays = sorted({str(j).split("_")[0] for j in job_ids if j})
    if not arrays:
        return {}, None
    if shutil.which("scontrol") is None:
        return {}, "no SLURM client here (scontrol not found): states are what the shards last wrote"
    views: dict[str, JobView] = {}
    for array in arrays[-50:]:              # scontrol takes one job (array) id per call
        rc, out, err = _run_tool(["scontrol", "show", "job", "-o", array], timeout=15)
        if rc == 0:
            views.update(parse_scontrol(out))
        elif "invalid job id" not in (err + out).lower():      # forgotten (MinJobAge): sacct below
            return {}, f"scheduler not reachable ({_scheduler_said(err or out) or f'scontrol exit {rc}'})"
    missing = [j for j in job_ids if j and j not in views]
    if missing and shutil.which("sacct"):
        rc, out, _ = _run_tool(["sacct", "-n", "-P", "-X", "-o", "JobID,State,ExitCode", "-j",
                                ",".join(sorted({m.split("_")[0] for m in missing}))], timeout=15)
        if rc == 0:
            views.update({k: v for k, v in parse_sacct(out).items() if k not in views})
    return views, None


def shard_jobs(table: Mapping[str, Any]) -> dict[int, str]:
    """Each shard's latest job id, from ``shards.json``'s submissions (array tasks in submission order)."""
    out: dict[int, str] = {}
    for sub in table.get("submissions") or []:
        for sh, jid in zip(sub.get("shards") or [], sub.get("job_ids") or []):
            out[int(sh)] = str(jid)
    return out


# --------------------------------------------------------------------------- on the node

def _job_id() -> str | None:
    e = os.environ
    if e.get("SLURM_ARRAY_JOB_ID"):
        return f"{e['SLURM_ARRAY_JOB_ID']}_{e.get('SLURM_ARRAY_TASK_ID', '0')}"
    return e.get("SLURM_JOB_ID") or e.get("SUBMITIT_LOCAL_JOB_ID")


def shard_executor(device: str):
    """All GPUs this job got (one pinned worker each), or the single-worker local executor."""
    if device == "cuda":
        n = _cuda_count()
        if n > 1:
            return MultiExecutor.for_cuda(range(n))
    return LocalExecutor()


#: Signals that stop a shard: USR2 = time limit or preemption (``--signal``: checkpoint and requeue);
#: TERM = scancel, the time limit itself, or a requeue; INT = submitit's local cancel / Ctrl-C.
REQUEUE_SIGNALS = ("SIGUSR2",)
STOP_SIGNALS = ("SIGUSR2", "SIGTERM", "SIGINT")
#: a worker that died of one of these was stopped from outside (the scheduler signals every process of
#: the job), not by its kernel: its point is ``interrupted``, never a ``crashed`` record
_EXTERNAL_DEATHS = tuple(f"worker killed by {name}" for name in ("SIGUSR2", "SIGTERM", "SIGINT", "SIGHUP"))


class ShardStopped(Exception):
    """A scheduler signal stopped the shard; what finished is recorded, the rest is for a requeue/resume."""


class _Stop(BaseException):
    """Raised out of a signal handler to unwind the measuring loop (never caught by ``except Exception``)."""


class _ShardSignals:
    """Turns the scheduler's signals into a prompt, clean stop of the shard.

    A handler only notes the signal and, unless a record or state file is being written, raises
    ``_Stop`` in the main thread: the point in flight is abandoned (its worker is killed), every record
    written before stays. Installed over submitit's handlers; ``previous`` keeps them so that a USR2 is
    handed on to submitit's checkpoint-and-requeue after the shard has written its state.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.critical = True            # until the measuring loop starts
        self.previous: dict[int, Any] = {}
        for name in STOP_SIGNALS:
            sig = getattr(signal, name)
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:          # not the main thread (a debug executor): no signal handling
                break

    @property
    def name(self) -> str | None:
        return None if self.signum is None else signal.Signals(self.signum).name

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:         # the first signal decides: USR2 requeues, TERM/INT stop
            self.signum = signum
        if not self.critical:
            raise _Stop(signum)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """No stop while a record or state file is written; a signal that came meanwhile stops right after."""
        if self.critical:               # nested in a critical section: that one decides
            yield
            return
        self.critical = True
        try:
            yield
        finally:
            self.critical = False
        if self.signum is not None:
            raise _Stop(self.signum)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _kill_workers(executor: Any) -> None:
    """SIGKILL every worker of ``executor`` now (the point in flight is abandoned; no record for it)."""
    for ex in list(getattr(executor, "_executors", None) or [executor]):
        discard = getattr(ex, "_discard_worker", None)
        if discard is not None:
            try:
                discard()
            except Exception:  # noqa: BLE001 - stopping must reach every worker
                pass


def allocation() -> dict[str, Any]:
    """What the scheduler gave this job, as the node sees it (CPUs, memory, GPUs, affinity, restarts)."""
    e = os.environ
    keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION", "SLURM_CPUS_PER_TASK",
            "SLURM_JOB_CPUS_PER_NODE", "SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_MEM_PER_GPU",
            "SLURM_GPUS_PER_TASK", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES", "SLURM_RESTART_COUNT",
            "SLURM_JOB_NODELIST")
    out: dict[str, Any] = {k.lower().removeprefix("slurm_"): e[k] for k in keys if e.get(k)}
    try:
        out["affinity_cores"] = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    return out


def _worker_threads(options: Mapping[str, Any], device: str) -> int | None:
    """A CPU shard's worker threads: the CPUs the job got (``SLURM_CPUS_PER_TASK``), else the request."""
    if device != "cpu":
        return None
    got = os.environ.get("SLURM_CPUS_PER_TASK")
    if got and got.isdigit() and int(got) > 0:
        return int(got)
    want = options.get("cpus_per_task")
    return int(want) if isinstance(want, int) and want > 0 else None


class ShardJob:
    """The job function of every shard: ``run_shard``, checkpointable for submitit.

    On USR2 (time limit or preemption) the shard stops, writes its state, and submitit's handler calls
    ``checkpoint``: the same shard is requeued and continues with the points that still have no record.
    A requeue is declined (the job fails, ``status`` says why) when the last attempt recorded nothing,
    so a shard whose first point cannot finish inside the time limit does not loop.
    """

    def __init__(self) -> None:
        self.written: int | None = None

    def __call__(self, run_dir: str, shard: int, specs: Sequence[Mapping[str, Any]], calibrate: bool = True) -> dict[str, Any]:
        return run_shard(run_dir, shard, specs, calibrate, job=self)

    def checkpoint(self, run_dir: str, shard: int, specs: Sequence[Mapping[str, Any]], calibrate: bool = True) -> Any:
        if self.written == 0:
            _update_state(run_dir, shard, {"state": "failed", "reason": "no point finished before the time-limit "
                                           "signal; not requeued (raise --time-limit)"})
            return None
        return submitit_helpers.DelayedSubmission(ShardJob(), run_dir, shard, specs, calibrate)


def record_allocation(run: Any, shard: int, given: Mapping[str, Any]) -> None:
    """Put what this shard's job was given into the manifest (``notes.execution.allocated["<shard>"]``).

    Shards start concurrently: the read-modify-write of ``manifest.json`` runs under an exclusive
    ``flock`` of ``shards/.manifest.lock`` (shared run folders on NFS/Lustre honour it).
    """
    lock_path = Path(run.path) / SHARD_STATE_DIR / ".manifest.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            manifest = run.read_manifest()
            notes = dict(manifest.notes or {})
            execution = dict(notes.get("execution") or {})
            allocated = dict(execution.get("allocated") or {})
            allocated[str(shard)] = dict(given)
            execution["allocated"] = allocated
            notes["execution"] = execution
            run.write_manifest(replace(manifest, notes=notes))
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _update_state(run_dir: str | Path, shard: int, changes: Mapping[str, Any]) -> None:
    p = shard_state_path(run_dir, shard)
    try:
        state = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        state = {"shard": shard}
    state.update(changes)
    _write_json(p, state)


def run_shard(run_dir: str, shard: int, specs: Sequence[Mapping[str, Any]], calibrate: bool = True,
              job: ShardJob | None = None) -> dict[str, Any]:
    """Measure one shard's points on this node, appending to ``points-<shard>.jsonl`` (the job's function).

    A scheduler signal (USR2: time limit / preemption; TERM: scancel) stops it promptly: the point in
    flight is abandoned and listed as ``interrupted`` in ``shards/shard-<n>.json`` (no record, so a
    requeue or ``--resume`` measures it again), every finished record stays. After USR2 submitit
    requeues the shard (``ShardJob.checkpoint``); after TERM the job ends with ``ShardStopped``.
    """
    signals = _ShardSignals()
    job = job or ShardJob()
    job.written = 0
    run = RunDir.open(run_dir, points_file=shard_file(shard))
    manifest = run.read_manifest()
    sweep = spec_from_dict(manifest.scenario, f"{run.path}/manifest.json: scenario")
    try:
        options = dict(read_shards(run.path).get("options") or {})
    except Exception:  # noqa: BLE001 - the options only size the worker's threads
        options = {}
    plan = make_plan(sweep)
    wanted = {_spec(s).id: _spec(s) for s in specs}
    done = run.done_ids()
    job_id = _job_id()
    state_path = shard_state_path(run.path, shard)
    try:
        previous = json.loads(state_path.read_text())
    except (OSError, json.JSONDecodeError):
        previous = {}
    threads = _worker_threads(options, plan.sweep.device)
    state: dict[str, Any] = {"shard": shard, "state": "running", "host": socket.gethostname(), "pid": os.getpid(),
                             "job_id": job_id, "started_at": utc_now(), "points": len(wanted),
                             "attempts": int(previous.get("attempts", 0)) + 1,
                             "interrupted": list(previous.get("interrupted") or []),
                             "allocation": {**allocation(), "worker_threads": threads},
                             "history": list(previous.get("history") or [])[-20:],
                             "environment": fingerprint(device=plan.sweep.device)}
    _write_json(state_path, state)
    try:
        record_allocation(run, shard, {**state["allocation"], "host": state["host"], "attempt": state["attempts"]})
    except (OSError, ValueError) as exc:      # bookkeeping only: the shard still measures
        state["allocation_note"] = f"not written to the manifest: {exc}"
    tag = {"shard": shard, "job_id": job_id}
    in_flight: list[str] = []
    externally: list[str] = []

    def sink(rec: PointRecord) -> None:
        if rec.id in in_flight:
            in_flight.remove(rec.id)
        if rec.id in done or rec.id not in wanted:
            return
        if rec.status == "crashed" and (signals.signum is not None
                                        or any(d in (rec.reason or "") for d in _EXTERNAL_DEATHS)):
            externally.append(rec.id)     # stopped from outside, not by its kernel: measure it again
            return
        with signals.writing():
            run.append(replace(rec, worker={**dict(rec.worker or {}),
                                            "host": (rec.worker or {}).get("host") or socket.gethostname(), **tag}))
            done.add(rec.id)
            job.written = (job.written or 0) + 1

    planned = {p.spec.id: p for p in plan.points}
    env = None
    if threads:
        env = dict(os.environ)
        env[pinning.PIN_THREADS_ENV] = str(threads)
        env.update({name: str(threads) for name in pinning.THREAD_ENVS})
    executor = shard_executor(plan.sweep.device) if plan.sweep.device == "cuda" else LocalExecutor(env=env)
    executor.log_dir = run.path / "workers" / f"shard-{shard:03d}"  # type: ignore[attr-defined]
    stopped: str | None = None
    try:
        try:
            signals.critical = False
            if signals.signum is not None:
                raise _Stop(signals.signum)
            for pid, spec in wanted.items():
                if pid in done:
                    continue
                if pid not in planned:
                    why = "; ".join(f"{d.what}: {d.reason}" for d in plan.dropped[:3]) or "not in the node's plan"
                    sink(PointRecord(spec=spec, status="unavailable", reason=f"cannot run on {socket.gethostname()}: {why}"))
                elif not planned[pid].runnable:
                    sink(PointRecord(spec=spec, status="skipped", reason=planned[pid].skip_reason,
                                     extra={"est_bytes": planned[pid].est_bytes}))
            todo = [planned[pid].spec for pid in wanted if pid in planned and pid not in done and planned[pid].runnable]
            again = previous.get("calibration") if previous.get("host") == state["host"] else None
            if todo and calibrate and isinstance(again, dict) and "error" not in again:
                state["calibration"] = again        # a requeue on the same node: its calibration stands
            elif todo and calibrate:
                state["calibration"] = executor.calibrate(plan.sweep.device, dtypes=tuple(plan.sweep.dtypes))
            state["execution"] = executor.describe()
            if todo:
                executor.run(PointQueue(todo), plan.sweep.settings,
                             RunEvents(on_record=sink, on_point_start=lambda sp: in_flight.append(sp.id)))
        except _Stop:
            stopped = signals.name
        finally:
            if stopped is not None or signals.signum is not None:
                _kill_workers(executor)
            executor.close()
    except _Stop:           # a second signal while closing
        stopped = signals.name
        _kill_workers(executor)
    stopped = stopped or signals.name
    signals.critical = True         # from here on, only bookkeeping: finish it
    now = utc_now()
    cut = list(dict.fromkeys(in_flight + externally))
    for pid in cut:
        state["interrupted"].append({"id": pid, "at": now, "attempt": state["attempts"], "job_id": job_id,
                                     "reason": f"{stopped or 'a signal to the worker'}: stopped by the scheduler, "
                                               "measured again on requeue/resume"})
    state["written"] = job.written
    state["history"].append({"attempt": state["attempts"], "job_id": job_id, "started_at": state["started_at"],
                             "ended_at": now, "written": job.written, "signal": stopped})
    if stopped is None:
        state.update({"state": "finished", "finished_at": now})
        _write_json(state_path, state)
        signals.restore()
        return {"shard": shard, "written": job.written, "host": state["host"], "interrupted": cut}
    requeue = stopped in REQUEUE_SIGNALS
    state.update({"state": "requeued" if requeue and job.written else ("failed" if requeue else "interrupted"),
                  "stopped_at": now, "signal": stopped,
                  "reason": ("time limit or preemption signal: checkpointed, requeued for the remaining points"
                             if requeue and job.written else
                             "no point finished before the time-limit signal; not requeued (raise --time-limit)"
                             if requeue else f"{stopped} (scancel or kill); --resume re-submits the missing points")})
    _write_json(state_path, state)
    signals.critical = False
    if requeue:
        handler = signals.previous.get(signals.signum)   # submitit's checkpoint-and-requeue (exits the process)
        signals.restore()
        if callable(handler):
            handler(signals.signum, None)
    signals.restore()
    raise ShardStopped(f"shard {shard}: stopped by {stopped} after {job.written} new record(s); "
                       f"{len(cut)} point(s) interrupted")
