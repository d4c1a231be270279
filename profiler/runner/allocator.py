"""The CPU allocator regime of worker processes: steady-state memory reuse, like CUDA's caching allocator.

Why. PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves blocks above its mmap
threshold with fresh ``mmap`` pages and returns them to the OS on free, so every call of a kernel
whose intermediates are large first-touches them again: measured here at T=4096 (LightNet, B=1,
H=4, D=64, fp32) 10.5k minor page faults per call and 18 ms per call, against 7 ms once memory is
reused. Worse, glibc raises that threshold dynamically (up to 32 MiB) after the first free of an
mmapped block, so whether a point runs in the slow or the fast regime depends on what the process
did before: bimodal samples and bent scaling slopes.

What serprof does. CPU workers start with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
at 1 GiB, so freed memory stays in the heap and steady-state calls reuse it, as on CUDA, where the
caching allocator makes steady-state calls allocation-free. Measured latency is then compute and
memory traffic, not first-touch page faults. Values the user already exported win (``setdefault``);
``SERPROF_CPU_MALLOC=system`` keeps glibc's defaults (to measure a default process's behaviour).
Each record's worker info states the regime in force. Other allocators (jemalloc, tcmalloc via
LD_PRELOAD) ignore these variables; the record says "not glibc-tuned" only in the sense that the
variables were set, not that they took effect.
"""

from __future__ import annotations

import os
from typing import Mapping

ENV_SWITCH = "SERPROF_CPU_MALLOC"
GLIBC_STEADY = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def worker_environment(device: str, env: Mapping[str, str]) -> dict[str, str]:
    """The environment for a new worker on ``device`` (adds the steady-state malloc settings on CPU)."""
    out = dict(env)
    if device == "cpu" and out.get(ENV_SWITCH, "steady") != "system":
        for key, value in GLIBC_STEADY.items():
            out.setdefault(key, value)
    return out


def describe(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The regime in force in this process, for the record's worker info."""
    env = os.environ if environ is None else environ
    tuned = {k: env.get(k) for k in GLIBC_STEADY}
    regime = "steady (heap reuse)" if all(tuned.values()) else "system default"
    return {"regime": regime, **tuned}
