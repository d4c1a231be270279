"""Environment fingerprint: what machine and software measured a run.

Stored as ``manifest.environment`` and shown by ``serprof env``. Package versions come from
``importlib.metadata`` (fla is never imported for this: importing it costs seconds). torch is
imported only when ``device`` details are asked for. NVML and RAPL are probed for availability and,
when unavailable, the reason is recorded.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from profiler.core.lazy import available, lazy_import

torch = lazy_import("torch")

pynvml = lazy_import("pynvml")

PACKAGES = ("torch", "triton", "fla-core", "flash-linear-attention", "nvidia-ml-py", "numpy", "scipy",
            "transformers", "serprof")
RAPL_ROOT = Path("/sys/class/powercap")


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_info(path: str | Path | None = None) -> dict[str, Any] | None:
    """The git commit of the checkout holding ``path`` (default: this serprof's source tree).

    ``{"sha", "dirty" (tracked files modified), "branch" (None when detached), "root"}``, or None when
    ``path`` is not inside a git work tree or git is not installed. History and comparisons use it to
    say what code a run measured.
    """
    where = Path(path) if path is not None else Path(__file__).resolve().parents[2]
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    root = git("rev-parse", "--show-toplevel")
    sha = git("rev-parse", "HEAD") if root else None
    if not sha:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    branch = git("symbolic-ref", "--quiet", "--short", "HEAD")
    return {"sha": sha, "dirty": bool(status) if status is not None else None, "branch": branch or None, "root": root}


def git_sha() -> dict[str, Any] | None:
    """Commit of the serprof checkout this code runs from (None when not a git checkout)."""
    return git_info()


def git_fingerprint() -> dict[str, Any] | None:
    """What a manifest stores under ``git``: serprof's checkout, plus the working directory's repository
    when that is another one (a user's own kernels measured from their repository)."""
    own = git_info()
    cwd = git_info(Path.cwd())
    if cwd is not None and (own is None or cwd["root"] != own["root"]):
        if own is None:
            return {**cwd, "of": "working directory"}
        return {**own, "working_directory": cwd}
    return own


def nvml_status() -> dict[str, Any]:
    """``{"available": bool, "reason": str, "driver": ..., "devices": [...]}`` from pynvml."""
    if not available("pynvml"):
        return {"available": False, "reason": "nvidia-ml-py (pynvml) is not installed"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return {"available": False, "reason": f"NVML cannot initialise: {exc or type(exc).__name__} "
                                              "(no NVIDIA driver / GPU on this machine)"}
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        n = pynvml.nvmlDeviceGetCount()
        devices = []
        for i in range(n):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            entry: dict[str, Any] = {"index": i, "name": _s(pynvml.nvmlDeviceGetName(h))}
            try:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
                entry["energy_counter"] = True
            except Exception as exc:  # noqa: BLE001
                entry["energy_counter"] = False
                entry["energy_reason"] = f"total-energy counter not supported: {exc}"
            devices.append(entry)
        return {"available": n > 0, "reason": "ok" if n else "NVML sees no devices",
                "driver": _s(driver), "devices": devices}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def rapl_status(root: Path = RAPL_ROOT) -> dict[str, Any]:
    """Whether a RAPL package-energy counter is readable, and why not."""
    if not root.exists():
        return {"available": False, "reason": f"{root} does not exist (no powercap/RAPL driver, or a VM/container)"}
    zones = sorted(p for p in root.glob("*rapl*:*") if (p / "energy_uj").exists())
    if not zones:
        return {"available": False, "reason": f"no RAPL zone with energy_uj under {root}"}
    readable, reasons = [], []
    for z in zones:
        try:
            (z / "energy_uj").read_text()
            readable.append(z.name)
        except PermissionError:
            reasons.append(f"{z / 'energy_uj'}: permission denied (root only since CVE-2020-8694)")
        except OSError as exc:
            reasons.append(f"{z / 'energy_uj'}: {exc}")
    if readable:
        return {"available": True, "reason": "ok", "zones": readable}
    return {"available": False, "reason": "; ".join(reasons[:2])}


def torch_info(device_index: int = 0) -> dict[str, Any]:
    """Devices as torch sees them (imports torch)."""
    info: dict[str, Any] = {
        "torch_threads": torch.get_num_threads(),
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            {"index": i, "name": torch.cuda.get_device_name(i),
             "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
             "total_memory_bytes": torch.cuda.get_device_properties(i).total_memory}
            for i in range(torch.cuda.device_count())
        ]
    else:
        info["cuda_reason"] = ("torch was built without CUDA" if torch.version.cuda is None
                               else "torch sees no CUDA device")
    return info


def host_memory_bytes() -> int | None:
    """Physical memory of this host, bytes (the CPU "device memory" for OOM frontiers)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def fingerprint(device: str | None = None, *, with_torch: bool = True) -> dict[str, Any]:
    """The environment fingerprint stored in every manifest."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    env: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity_count": affinity,
        "host_memory_bytes": host_memory_bytes(),
        "packages": package_versions(),
        "git": git_fingerprint(),
        "nvml": nvml_status(),
        "rapl": rapl_status(),
        "device": device,
    }
    if with_torch:
        env.update(torch_info())
        if device == "cuda" and env.get("cuda_devices"):
            env["device_name"] = env["cuda_devices"][0]["name"]
        elif device in (None, "cpu"):
            env["device_name"] = env["cpu_model"]
    env["driver"] = env["nvml"].get("driver")
    return env
