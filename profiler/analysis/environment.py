"""Facts about the measuring device read from a run's environment fingerprint (memory, model name).

Pure functions over the manifest's ``environment`` mapping (and SLURM shards' copies of it); no torch.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

# Keys the environment fingerprint may use for device / host memory (bytes), most specific first.
_CUDA_KEYS = ("device_memory_bytes", "gpu_memory_bytes", "total_memory_bytes", "memory_total_bytes",
              "total_memory", "memory_bytes")
_HOST_KEYS = ("host_memory_bytes", "memory_total_bytes", "mem_total_bytes", "ram_bytes", "total_memory_bytes",
              "memory_bytes")


def _find_number(obj: Any, keys: Sequence[str], *, within: tuple[str, ...] = (),
                 exclude: tuple[str, ...] = (), path: str = "") -> float | None:
    """Depth-first search for a positive number under one of ``keys``.

    ``within``: the path must contain one of these words; ``exclude``: it must contain none of them.
    """
    low = path.lower()
    if any(w in low for w in exclude):
        return None
    if isinstance(obj, Mapping):
        if not within or any(w in low for w in within):
            for k in keys:
                v = obj.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                    return float(v)
        for k, v in obj.items():
            found = _find_number(v, keys, within=within, exclude=exclude, path=f"{path}/{k}")
            if found is not None:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found = _find_number(v, keys, within=within, exclude=exclude, path=f"{path}/{i}")
            if found is not None:
                return found
    return None


def device_memory_bytes(environment: Mapping[str, Any], device: str) -> float | None:
    """Total memory of the device type a series ran on, as recorded in the manifest (bytes).

    CUDA: ``device_memory_bytes`` / ``gpu_memory_bytes`` at the top level, else a memory key inside
    a ``cuda`` / ``gpu`` / ``device`` entry. CPU: ``host_memory_bytes`` at the top level (the
    fingerprint's field), else host memory keys outside any CUDA/GPU entry.
    """
    if device == "cuda":
        for k in ("device_memory_bytes", "gpu_memory_bytes", "cuda_memory_bytes"):
            v = environment.get(k)
            if isinstance(v, (int, float)) and v > 0:
                return float(v)
        return _find_number(environment, _CUDA_KEYS, within=("cuda", "gpu", "device"))
    v = environment.get("host_memory_bytes")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return float(v)
    return _find_number(environment, _HOST_KEYS, exclude=("cuda", "gpu"))


def device_name(environment: Mapping[str, Any], device: str) -> str | None:
    """Device model name from the environment fingerprint (GPU name on CUDA, CPU model on CPU)."""
    keys = ("device_name", "gpu_name", "name") if device == "cuda" else ("cpu_model", "cpu_name", "processor")
    def walk(obj: Any, path: str) -> str | None:
        if isinstance(obj, Mapping):
            for k in keys:
                v = obj.get(k)
                if isinstance(v, str) and v and (device != "cuda" or k != "name" or re.search("cuda|gpu|device", path)):
                    return v
            for k, v in obj.items():
                r = walk(v, f"{path}/{k}".lower())
                if r:
                    return r
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                r = walk(v, path)
                if r:
                    return r
        return None
    return walk(environment, "")
