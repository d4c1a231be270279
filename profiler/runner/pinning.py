"""Worker pinning: which CPU cores and which CUDA device each worker of a multi-worker run may use.

Methodology. Two workers timing at the same time must not disturb each other more than a quiet
machine would. serprof therefore never lets two timing workers share a device:

* CUDA (``--devices 0,1,2,3``): one worker per listed GPU; its process sees only that GPU
  (``CUDA_VISIBLE_DEVICES=<index>``, so inside the worker it is ``cuda:0``). The physical index is
  recorded in the worker info as ``cuda_visible_devices``.
* CPU (``--workers N``): the usable cores (``os.sched_getaffinity``) are split into N disjoint, equal
  sets of consecutive cores; each worker is pinned to its set with ``os.sched_setaffinity`` *before*
  torch is imported (so OpenMP's thread pool is born inside the set), and gets
  ``torch.set_num_threads(cores per worker)`` plus ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` /
  ``OPENBLAS_NUM_THREADS``. Cores left over by the integer split stay unused rather than shared.

What this does not control: hyper-threads of one physical core are separate "cores" to Linux, so two
workers may still share a physical core's execution units on an SMT machine; memory bandwidth and
the last-level cache are shared by all workers of a socket. The report's pinning note says so.

The parent passes a worker's pinning through environment variables (``SERPROF_PIN_CORES``,
``SERPROF_PIN_THREADS``); the worker applies them with ``apply_from_env`` first thing. Importing this
module is cheap (no torch).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from profiler.core.errors import UsageError

PIN_CORES_ENV = "SERPROF_PIN_CORES"
PIN_THREADS_ENV = "SERPROF_PIN_THREADS"
PIN_SLOT_ENV = "SERPROF_PIN_SLOT"
THREAD_ENVS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: a CUDA device, or a set of CPU cores with a thread count."""

    index: int                           # worker slot number, 0..N-1
    device: str                          # "cpu" | "cuda"
    cuda_device: int | None = None       # physical CUDA index (CUDA_VISIBLE_DEVICES)
    cores: tuple[int, ...] = ()          # CPU cores the worker may run on (empty: not pinned)
    threads: int | None = None           # torch intra-op threads (None: torch's default)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The worker's environment: ``base`` (default ``os.environ``) plus this slot's pinning."""
        env = dict(os.environ if base is None else base)
        env[PIN_SLOT_ENV] = str(self.index)
        if self.cuda_device is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.cuda_device)
        if self.cores:
            env[PIN_CORES_ENV] = ",".join(str(c) for c in self.cores)
        if self.threads is not None:
            env[PIN_THREADS_ENV] = str(self.threads)
            for name in THREAD_ENVS:
                env[name] = str(self.threads)
        return env

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"slot": self.index, "device": self.device}
        if self.cuda_device is not None:
            out["cuda_visible_devices"] = str(self.cuda_device)
        if self.cores:
            out["cores"] = list(self.cores)
        if self.threads is not None:
            out["threads"] = self.threads
        return out


# --------------------------------------------------------------------------- parsing and planning

def parse_devices(text: str | Sequence[int] | None) -> tuple[int, ...]:
    """``"0,1,2,3"`` -> ``(0, 1, 2, 3)``; bad syntax or duplicates are a ``UsageError``."""
    if text is None:
        return ()
    items = list(text) if not isinstance(text, str) else [x.strip() for x in text.split(",") if x.strip()]
    out: list[int] = []
    for item in items:
        try:
            idx = int(item)
        except (TypeError, ValueError):
            raise UsageError(f"--devices: {item!r} is not a CUDA device index; expected e.g. 0,1,2,3") from None
        if idx < 0:
            raise UsageError(f"--devices: device index {idx} is negative; expected e.g. 0,1,2,3")
        if idx in out:
            raise UsageError(f"--devices: device {idx} is listed twice; two workers would time on one device")
        out.append(idx)
    if not out:
        raise UsageError("--devices: expected at least one CUDA device index, e.g. 0,1")
    return tuple(out)


def usable_cores() -> tuple[int, ...]:
    """Cores this process may run on (``sched_getaffinity``), sorted."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def split_cores(workers: int, cores: Sequence[int] | None = None,
                cores_per_worker: int | None = None) -> list[tuple[int, ...]]:
    """Disjoint core sets for ``workers`` workers: consecutive runs of ``cores_per_worker`` cores.

    Default ``cores_per_worker`` is ``len(cores) // workers``. More workers (or cores) than the
    machine has is a ``UsageError`` naming what is available.
    """
    avail = tuple(sorted(cores if cores is not None else usable_cores()))
    if workers < 1:
        raise UsageError(f"--workers must be >= 1 (got {workers})")
    if workers > len(avail):
        raise UsageError(f"--workers {workers}: only {len(avail)} core(s) are usable here "
                         f"({_ranges(avail)}); workers never share cores, so use --workers <= {len(avail)}")
    per = cores_per_worker if cores_per_worker is not None else len(avail) // workers
    if per < 1:
        raise UsageError(f"--cores-per-worker must be >= 1 (got {per})")
    if per * workers > len(avail):
        raise UsageError(f"--workers {workers} x --cores-per-worker {per} needs {per * workers} cores; "
                         f"only {len(avail)} are usable here ({_ranges(avail)})")
    return [avail[i * per:(i + 1) * per] for i in range(workers)]


def cpu_slots(workers: int, cores_per_worker: int | None = None,
              cores: Sequence[int] | None = None) -> list[Slot]:
    """One pinned CPU slot per worker (threads = cores in its set)."""
    return [Slot(index=i, device="cpu", cores=c, threads=len(c))
            for i, c in enumerate(split_cores(workers, cores, cores_per_worker))]


def cuda_slots(devices: Sequence[int]) -> list[Slot]:
    """One slot per CUDA device (validated against ``visible_cuda_count`` by the caller)."""
    return [Slot(index=i, device="cuda", cuda_device=int(d)) for i, d in enumerate(devices)]


def check_cuda_devices(devices: Sequence[int], device: str, count: int) -> None:
    """``--devices`` against the device type and the ``count`` CUDA devices torch sees here."""
    shown = ",".join(str(d) for d in devices)
    if device == "cpu":
        raise UsageError(f"--devices {shown} selects CUDA devices but --device is cpu; "
                         "on CPU use --workers N (each worker pinned to its own cores)")
    if count == 0:
        raise UsageError(f"--devices {shown}: torch sees no CUDA device on this machine, so device "
                         f"{devices[0]} does not exist; on CPU use --workers N instead")
    missing = [d for d in devices if d >= count]
    if missing:
        raise UsageError(f"--devices: CUDA device {missing[0]} does not exist; torch sees {count} "
                         f"(valid: {', '.join(str(i) for i in range(count))})")


def _ranges(cores: Sequence[int]) -> str:
    return "cores " + ",".join(str(c) for c in cores) if cores else "no cores"


# --------------------------------------------------------------------------- inside the worker

def apply_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Apply the pinning the parent put in the environment; return what was applied.

    Call before torch is imported (affinity and thread pools are then born pinned). Returns ``{}``
    when the worker is not pinned (a plain single-worker run).
    """
    env = os.environ if environ is None else environ
    info: dict[str, Any] = {}
    if PIN_SLOT_ENV in env:
        info["worker_slot"] = int(env[PIN_SLOT_ENV])
    if env.get("CUDA_VISIBLE_DEVICES") and PIN_SLOT_ENV in env:
        info["cuda_visible_devices"] = env["CUDA_VISIBLE_DEVICES"]
    cores_text = env.get(PIN_CORES_ENV)
    if cores_text:
        cores = {int(c) for c in cores_text.split(",") if c.strip()}
        os.sched_setaffinity(0, cores)
        info["pinned_cores"] = sorted(cores)
    threads_text = env.get(PIN_THREADS_ENV)
    if threads_text:
        info["pinned_threads"] = int(threads_text)
        apply_threads(int(threads_text))
    return info


def apply_threads(threads: int) -> None:
    """``torch.set_num_threads`` if torch is loaded (the env vars cover a later import)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def current_threads() -> int | None:
    """torch's intra-op threads if torch is loaded, else the pinned thread count, else None."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    text = os.environ.get(PIN_THREADS_ENV)
    return int(text) if text else None


def thread_affinities(pid: int | str = "self") -> dict[int, tuple[int, ...]]:
    """Allowed cores of every thread of a process (``/proc/<pid>/task/*/status``), by thread id."""
    out: dict[int, tuple[int, ...]] = {}
    root = f"/proc/{pid}/task"
    try:
        tids = os.listdir(root)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{root}/{tid}/status") as fh:
                for line in fh:
                    if line.startswith("Cpus_allowed_list:"):
                        out[int(tid)] = tuple(_parse_cpu_list(line.split(":", 1)[1]))
        except OSError:
            continue
    return out


def _parse_cpu_list(text: str) -> list[int]:
    cores: list[int] = []
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cores += range(int(lo), int(hi) + 1)
        elif part:
            cores.append(int(part))
    return cores
