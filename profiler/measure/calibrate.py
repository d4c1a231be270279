"""Machine calibration: achievable matmul FLOP/s per dtype and memory bandwidth, in about a second.

Run once at the start of a sweep, inside a worker, on the sweep's device. Stored as
``manifest.calibration``; analysis uses it for roofline ceilings (one compute roof per dtype: a bf16
point is placed against the bf16 matmul rate, never the fp32 one), gates for drift normalisation.

Method:

* matmul: ``C = A @ B`` with square n x n operands; 2 n^3 FLOPs per call; one warm-up call, then
  repeated for its share of the budget; the *best* rate is kept (a ceiling). On CUDA (n = 4096) for
  each of ``float32`` with TF32 off (``torch.backends.cuda.matmul.allow_tf32 = False``), ``tf32``
  (fp32 operands, TF32 tensor cores on), ``bfloat16`` and ``float16``: fp32 gets half the matmul
  budget, the others share the rest (tensor-core matmuls are fast). On CPU (n = 1024 for fp32) fp32,
  plus a short bf16/fp16 probe (n = 256, 3 calls at least, <= 5% of the budget each) only for dtypes
  asked for in ``dtypes``; the whole CPU calibration stays under ``budget_s`` (default 1 s).
  ``matmul_flops_per_s`` stays the fp32 (TF32 off) rate, a number, as older manifests have it;
  ``matmul_flops_per_s_by_dtype`` maps each measured dtype (and ``tf32``) to its rate.
* bandwidth: ``dst.copy_(src)`` of a buffer well beyond the last-level cache (64 MiB on CPU, 1 GiB
  on CUDA); 2 x bytes moved per copy (read + write); best rate over the other half of the budget.
  One bandwidth serves every dtype (bytes are bytes).

CUDA calls are bracketed by ``torch.cuda.synchronize``. These are attainable rates for this
software stack, not vendor peaks; on a shared machine they vary run to run.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from profiler.core.lazy import lazy_import

torch = lazy_import("torch")


#: dtypes measured on CUDA ("tf32": fp32 operands with TF32 tensor cores allowed)
CUDA_MATMUL_DTYPES = ("float32", "tf32", "bfloat16", "float16")
#: CPU probe size for the reduced-precision dtypes (kept small: some CPUs emulate bf16 slowly)
CPU_PROBE_N = 256


def _best_rate(fn, work: float, budget_s: float, sync, min_reps: int = 3) -> tuple[float, int]:
    fn()
    sync()
    best, n = float("inf"), 0
    end = time.perf_counter() + budget_s
    while n < min_reps or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
        n += 1
        if n >= 1000:
            break
    return work / best, n


def _matmul_rate(torch, dev, n: int, dtype: str, budget_s: float, sync) -> tuple[float, int]:
    tdt = {"float32": torch.float32, "tf32": torch.float32, "bfloat16": torch.bfloat16,
           "float16": torch.float16}[dtype]
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=dev, dtype=tdt)
    b = torch.randn(n, n, generator=g).to(device=dev, dtype=tdt)
    out = torch.empty(n, n, device=dev, dtype=tdt)
    cuda = dev.type == "cuda"
    prev = torch.backends.cuda.matmul.allow_tf32 if cuda else None
    try:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        return _best_rate(lambda: torch.matmul(a, b, out=out), 2.0 * n**3, budget_s, sync)
    finally:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = prev
        del a, b, out


def calibrate(device: str = "cpu", *, budget_s: float = 1.0, device_index: int = 0,
              dtypes: Sequence[str] | None = None) -> dict[str, Any]:
    """``{"matmul_flops_per_s", "matmul_flops_per_s_by_dtype", "bandwidth_bytes_per_s", "method", ...}``.

    ``dtypes``: the run's dtypes. On CUDA every dtype of ``CUDA_MATMUL_DTYPES`` is measured anyway
    (milliseconds each); on CPU only fp32 unless others are named here.
    """
    t_start = time.perf_counter()
    if device == "cuda":
        dev = torch.device("cuda", device_index)
        n, copy_bytes = 4096, 1 << 30
        sync = lambda: torch.cuda.synchronize(dev)  # noqa: E731
        plan = [("float32", n, budget_s / 4)] + [(d, n, budget_s / 12) for d in CUDA_MATMUL_DTYPES[1:]]
    else:
        dev = torch.device("cpu")
        n, copy_bytes = 1024, 64 << 20
        sync = lambda: None  # noqa: E731
        extra = [d for d in dict.fromkeys(dtypes or ()) if d in ("bfloat16", "float16")]
        plan = [("float32", n, budget_s * (0.5 - 0.05 * len(extra)))] + [(d, CPU_PROBE_N, budget_s * 0.05) for d in extra]
    rates: dict[str, float] = {}
    reps: dict[str, int] = {}
    sizes: dict[str, int] = {}
    errors: dict[str, str] = {}
    for dt, size, share in plan:
        try:
            rates[dt], reps[dt] = _matmul_rate(torch, dev, size, dt, share, sync)
            sizes[dt] = size
        except Exception as exc:  # noqa: BLE001 - a dtype the device cannot multiply is noted, not fatal
            if dt == "float32":
                raise
            errors[dt] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    numel = copy_bytes // 4
    src = torch.ones(numel, device=dev)
    dst = torch.empty(numel, device=dev)
    bw, bw_reps = _best_rate(lambda: dst.copy_(src), 2.0 * copy_bytes, budget_s / 2, sync)
    del src, dst
    out = {
        "matmul_flops_per_s": rates["float32"],
        "matmul_flops_per_s_by_dtype": rates,
        "bandwidth_bytes_per_s": bw,
        "method": "best of repeated matmul per dtype (2n^3 FLOPs; float32 with TF32 off, tf32 with it on) and "
                  "tensor copy (2 x bytes), perf_counter" + (" + cuda synchronize" if device == "cuda" else ""),
        "sizes": {"matmul_n": n, "matmul_dtype": "float32", "matmul_n_by_dtype": sizes, "copy_bytes": copy_bytes},
        "reps": {"matmul": reps["float32"], "matmul_by_dtype": reps, "copy": bw_reps},
        "device": device,
        "threads": torch.get_num_threads(),
        "duration_s": time.perf_counter() - t_start,
    }
    if errors:
        out["matmul_errors"] = errors
    return out
