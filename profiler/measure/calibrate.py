"""Machine calibration: achievable matmul FLOP/s and memory bandwidth, measured in about a second.

Run once at the start of a sweep, inside a worker, on the sweep's device. Stored as
``manifest.calibration``; analysis uses it for roofline ceilings, gates for drift normalisation.

Method (fp32):

* matmul: ``C = A @ B`` with square n x n operands (n = 1024 on CPU, 4096 on CUDA); 2 n^3 FLOPs per
  call; repeated for half the budget after one warm-up call; the *best* rate is kept (a ceiling).
* bandwidth: ``dst.copy_(src)`` of a buffer well beyond the last-level cache (64 MiB on CPU, 1 GiB
  on CUDA); 2 x bytes moved per copy (read + write); best rate over the other half of the budget.

CUDA calls are bracketed by ``torch.cuda.synchronize``. These are attainable rates for this
software stack, not vendor peaks; on a shared machine they vary run to run.
"""

from __future__ import annotations

import time
from typing import Any


def _best_rate(fn, work: float, budget_s: float, sync) -> tuple[float, int]:
    fn()
    sync()
    best, n = float("inf"), 0
    end = time.perf_counter() + budget_s
    while n < 3 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
        n += 1
        if n >= 1000:
            break
    return work / best, n


def calibrate(device: str = "cpu", *, budget_s: float = 1.0, device_index: int = 0) -> dict[str, Any]:
    """``{"matmul_flops_per_s", "bandwidth_bytes_per_s", "method", "sizes", ...}``."""
    import torch

    t_start = time.perf_counter()
    if device == "cuda":
        dev = torch.device("cuda", device_index)
        n, copy_bytes = 4096, 1 << 30
        sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
    else:
        dev = torch.device("cpu")
        n, copy_bytes = 1024, 64 << 20
        sync = lambda: None  # noqa: E731
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev)
    b = torch.randn(n, n, generator=g).to(dev)
    out = torch.empty(n, n, device=dev)
    flops, mm_reps = _best_rate(lambda: torch.matmul(a, b, out=out), 2.0 * n**3, budget_s / 2, sync)
    del a, b, out
    numel = copy_bytes // 4
    src = torch.ones(numel, device=dev)
    dst = torch.empty(numel, device=dev)
    bw, bw_reps = _best_rate(lambda: dst.copy_(src), 2.0 * copy_bytes, budget_s / 2, sync)
    del src, dst
    return {
        "matmul_flops_per_s": flops,
        "bandwidth_bytes_per_s": bw,
        "method": "best of repeated fp32 matmul (2n^3 FLOPs) and tensor copy (2 x bytes), perf_counter"
                  + (" + cuda synchronize" if device == "cuda" else ""),
        "sizes": {"matmul_n": n, "matmul_dtype": "float32", "copy_bytes": copy_bytes},
        "reps": {"matmul": mm_reps, "copy": bw_reps},
        "device": device,
        "threads": torch.get_num_threads(),
        "duration_s": time.perf_counter() - t_start,
    }
