"""A synthetic run folder with known answers (used by the analysis and report tests).

Latency curves (seconds per call, B=1, H=4, D=64), each sample multiplied by lognormal noise:

* softmax/sdpa/full     2e-9 T^2           (the default baseline of non-causal series)
* softmax/sdpa/causal   1e-9 T^2           (the default baseline of causal series: like with like)
* softmax/naive/full    4e-9 T^2, memory 16 T^2 bytes, OOM at T=16384
* retnet/torch/causal   1e-5 T   -> crossover with causal sdpa at exactly T* = 10,000
* kda/torch/causal      2.5e-5 T -> crossover at 25,000: never within the sweep (T <= 16384)
* gsa/torch/causal      5e-7 T   -> crossover at 500: always faster (T >= 512)

Plus one wrong point, one skipped point, interpreted fla points and a manifest with calibration and
host memory. No energy meter (reason stored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from profiler.core.records import (
    Correctness,
    Energy,
    FirstCall,
    Manifest,
    Memory,
    PointRecord,
    PointSpec,
    Timing,
)
from profiler.store.runs import RunDir

TS = [512, 1024, 2048, 4096, 8192, 16384]
H, D = 4, 64
CURVES = {
    ("softmax", "sdpa", False): (lambda T: 2e-9 * T**2, lambda T: 4096 * T),
    ("softmax", "sdpa", True): (lambda T: 1e-9 * T**2, lambda T: 4096 * T),
    ("softmax", "naive", False): (lambda T: 4e-9 * T**2, lambda T: 16 * T**2),
    ("retnet", "torch", True): (lambda T: 1e-5 * T, lambda T: 8192 * T),
    ("kda", "torch", True): (lambda T: 2.5e-5 * T, lambda T: 9216 * T),
    ("gsa", "torch", True): (lambda T: 5e-7 * T, lambda T: 8192 * T + 65536),
}
NO_ENERGY = "no meter: RAPL energy counter not readable (permission denied)"


def flops(kernel: str, T: int) -> float:
    return 4.0 * H * T * T * D if kernel == "softmax" else 4.0 * H * T * D * D


def make_run(path: Path, *, name: str = "synthetic", noise: float = 0.02, n_samples: int = 15,
             seed: int = 1, extra_env: dict | None = None) -> Path:
    """Write the synthetic run folder at ``path`` and return it."""
    rng = np.random.default_rng(seed)
    env = {"device": "cpu", "cpu_model": "Synthetic CPU @ 2 GHz", "threads": 2,
           "host": {"memory_total_bytes": 24 * 2**30}, "torch": "2.13.0+cpu", "python": "3.11"}
    env.update(extra_env or {})
    manifest = Manifest(run_id=name, created_at="2026-01-01T00:00:00+00:00",
                        scenario={"name": name, "lengths": "512..16k"}, environment=env,
                        calibration={"matmul_flops_per_s": 1.0e11, "bandwidth_bytes_per_s": 2.0e10},
                        finished_at="2026-01-01T00:03:00+00:00", serprof_version="0.1.0")
    run = RunDir.create(path, manifest)
    for (kernel, backend, causal), (lat, mem) in CURVES.items():
        for T in TS:
            spec = PointSpec(kernel=kernel, backend=backend, T=T, H=H, D=D, causal=causal)
            if kernel == "softmax" and backend == "naive" and T == 16384:
                run.append(PointRecord(spec, "oom", reason="CPU allocation of 4.0 GiB failed (out of memory)"))
                continue
            samples = tuple(float(lat(T) * np.exp(rng.normal(0.0, noise))) for _ in range(n_samples))
            run.append(PointRecord(
                spec, "ok",
                timing=Timing(samples, "perf_counter_ns", warmup_s=0.25, warmup_calls=3, stop_reason="ci_target"),
                memory=Memory(int(mem(T)), "torch_profiler", analytic_bytes=int(mem(T)), input_bytes=3 * T * H * D * 4),
                energy=Energy(None, reason=NO_ENERGY),
                correctness=Correctness("fp32 reference", 1e-7, 2e-7, 1e-4, True, checked_T=min(T, 2048)),
                flops=flops(kernel, T), bytes_moved=4.0 * T * H * D * 4,
                worker={"host": "synthetic", "pid": 1},
            ))
    # failures and non-performance points
    run.append(PointRecord(PointSpec(kernel="fox", backend="torch", T=1024, H=H, D=D), "wrong",
                           reason="max rel err 3.1e-02 > tolerance 1e-04",
                           timing=Timing((0.01,) * 5, "perf_counter_ns"),
                           correctness=Correctness("fla naive_forgetting_attn", 0.5, 3.1e-2, 1e-4, False, 1024)))
    run.append(PointRecord(PointSpec(kernel="fox", backend="torch", T=65536, H=H, D=D), "skipped",
                           reason="predicted to exceed the memory budget (analytic 34.0 GiB > budget 16.0 GiB)"))
    run.append(PointRecord(PointSpec(kernel="retnet", backend="fla", T=128, H=2, D=32, interpret=True), "ok",
                           timing=Timing((0.3, 0.31, 0.29), "interpreted"),
                           correctness=Correctness("fla naive_retention", 1e-7, 3.7e-7, 1e-4, True, 128)))
    return path


# --------------------------------------------------------------------------- a run on two device models

A100, H100 = "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"
#: which model measured each T (a shared queue split the series), and how fast it is relative to the curve
DEVICE_OF_T = {512: A100, 1024: A100, 2048: A100, 4096: H100, 8192: H100, 16384: H100}
SPEED = {A100: 1.0, H100: 0.25}
MEMORY = {A100: 80 * 10**9, H100: 85 * 10**9}


def make_multi_device_run(path: Path, *, name: str = "two-gpus", seed: int = 3) -> Path:
    """A SLURM-like run whose records came from two GPU models (see ``DEVICE_OF_T``).

    The manifest's environment is the submitting login node (``submit_host``, no GPU, 1 TB host
    memory that must never be used as device memory); each shard's fingerprint names its GPU, its
    memory and its calibration. Latency on the H100 is a quarter of the A100's at every T.
    """
    import json

    rng = np.random.default_rng(seed)
    env = {"device": "cuda", "cpu_model": "Login node CPU", "hostname": "login1", "submit_host": True,
           "host_memory_bytes": 10**12, "device_name": "Login node CPU"}
    manifest = Manifest(run_id=name, created_at="2026-01-01T00:00:00+00:00",
                        scenario={"name": name, "device": "cuda"}, environment=env,
                        finished_at="2026-01-01T01:00:00+00:00", serprof_version="0.1.0")
    run = RunDir.create(path, manifest)
    for shard, (model, host) in enumerate(((A100, "node-a"), (H100, "node-h"))):
        state = {"shard": shard, "state": "finished", "host": host,
                 "environment": {"hostname": host, "device_name": model, "cpu_model": "Node CPU",
                                 "cuda_devices": [{"index": 0, "name": model, "total_memory_bytes": MEMORY[model]}]},
                 "calibration": {"matmul_flops_per_s": 5e13 * (1 if model == A100 else 4),
                                 "bandwidth_bytes_per_s": 1.5e12 * (1 if model == A100 else 2)}}
        (path / "shards").mkdir(exist_ok=True)
        (path / "shards" / f"shard-{shard:03d}.json").write_text(json.dumps(state))
    for (kernel, backend, causal) in (("softmax", "sdpa", True), ("retnet", "torch", True)):
        lat, mem = CURVES[(kernel, backend, causal)]
        for T in TS:
            model = DEVICE_OF_T[T]
            spec = PointSpec(kernel=kernel, backend=backend, device="cuda", T=T, H=H, D=D, causal=causal)
            samples = tuple(float(SPEED[model] * lat(T) * np.exp(rng.normal(0.0, 0.01))) for _ in range(9))
            run.append(PointRecord(
                spec, "ok", timing=Timing(samples, "cuda_event", stop_reason="ci_target"),
                memory=Memory(int(mem(T)), "cuda_allocator", input_bytes=3 * T * H * D * 4),
                energy=Energy(None, reason="nvml: no energy counter"),
                flops=flops(kernel, T), bytes_moved=4.0 * T * H * D * 4,
                worker={"host": "node-a" if model == A100 else "node-h", "device_name": model, "device_index": 0}))
    # a point the node's planner skipped (no worker device name): inherits the series' model? no: the
    # series ran on two models, so it stays unattributed
    run.append(PointRecord(PointSpec(kernel="retnet", backend="torch", device="cuda", T=65536, H=H, D=D),
                           "skipped", reason="predicted to exceed the memory budget"))
    return path


# --------------------------------------------------------------------------- a layer-level (SER) run

#: minutes of audio of the fixed-length points; T = 50 frames/s + 3 tokens/s = 3,180 per minute
AUDIO_MIN = (1, 2, 4, 8, 16, 20)
LAYER_RATES = (("frame_rate", "50"), ("text_rate", "3"))
#: per-call latency (s) of each study layer at T: softmax quadratic, the linear layers linear in T.
#: Crossovers with softmax: retnet at T* = 10,000 (188.7 s of audio), gsa at 50,000 (943.4 s).
LAYER_CURVES = {
    ("softmax", False): lambda T: 1e-8 * T**2,
    ("retnet", True): lambda T: 1e-4 * T,
    ("gsa", True): lambda T: 5e-4 * T,
}
POWER_W = 30.0
REPLAY_N = 50


def make_layer_run(path: Path, *, name: str = "paper-like", seed: int = 5) -> Path:
    """Layer-level points as ``--level layer --audio 1min..20min --utterances 50`` would store them.

    Softmax's 20-minute point is skipped (memory budget). Replay summaries are built with the real
    ``profiler.layers.utterances.replay`` over a fake clock (latency = the layer's curve at each utterance's T).
    """
    from profiler.core.audio import AudioRates
    from profiler.layers.utterances import MSP_PODCAST_LIKE, replay

    rng = np.random.default_rng(seed)
    rates = AudioRates(50.0, 3.0)
    env = {"device": "cpu", "cpu_model": "Synthetic CPU @ 2 GHz", "host_memory_bytes": 24 * 2**30}
    manifest = Manifest(run_id=name, created_at="2026-01-01T00:00:00+00:00",
                        scenario={"name": name, "level": "layer", "audio": "1min..20min", "utterances": REPLAY_N},
                        environment=env, finished_at="2026-01-01T00:09:00+00:00", serprof_version="0.1.0")
    run = RunDir.create(path, manifest)
    worker = {"host": "synthetic", "device_name": "Synthetic CPU @ 2 GHz"}
    for (layer, causal), curve in LAYER_CURVES.items():
        for minutes in AUDIO_MIN:
            T = rates.to_T(60.0 * minutes)
            spec = PointSpec(kernel=layer, backend="torch", level="layer", T=T, H=4, D=256, causal=causal,
                             options=LAYER_RATES)
            if layer == "softmax" and minutes == 20:
                run.append(PointRecord(spec, "skipped", reason="predicted to exceed the memory budget"))
                continue
            samples = tuple(float(curve(T) * np.exp(rng.normal(0.0, 0.01))) for _ in range(7))
            peak = int(4 * 4 * T * T) if layer == "softmax" else int(40 * 1024 * T)
            run.append(PointRecord(
                spec, "ok", timing=Timing(samples, "perf_counter_ns", stop_reason="ci_target"),
                memory=Memory(peak, "torch_profiler", analytic_bytes=peak, input_bytes=T * 1024 * 4),
                energy=Energy(POWER_W * float(np.median(samples)), meter="rapl", window_s=1.0, calls=3),
                worker=worker, extra={"audio_s": T / 53.0, "params": 4_000_000}))
        durations = MSP_PODCAST_LIKE.sample(REPLAY_N, 0)
        res = replay(durations, rates.to_T, lambda lengths: (lambda: max(lengths)), batch_size=1,
                     time_call=lambda call: curve(call()),
                     peak_bytes=lambda call: int(16 * call() ** 2 if layer == "softmax" else 40 * 1024 * call()),
                     distribution=MSP_PODCAST_LIKE.to_dict(), seed=0)
        opts = tuple(sorted(LAYER_RATES + (("distribution", MSP_PODCAST_LIKE.name), ("replay", str(REPLAY_N)))))
        spec = PointSpec(kernel=layer, backend="torch", level="layer", T=rates.to_T(MSP_PODCAST_LIKE.max_s), H=4,
                         D=256, causal=causal, options=opts)
        run.append(PointRecord(spec, "ok", timing=Timing(res.latency_s, "perf_counter_ns", stop_reason="replay"),
                               memory=Memory(res.peak_bytes, "torch_profiler"),
                               energy=Energy(None, reason="utterance replay: energy is measured at fixed-T points"),
                               worker=worker, extra={"replay": res.to_extra(), "params": 4_000_000}))
    return path


# --------------------------------------------------------------------------- a CUDA run with two timings

#: T of the H200-like run (bf16, B=1, H=4, D=64)
CUDA_TS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]
H200 = "NVIDIA H200"
MS = 1e-3
#: device time (graph replay) and host overhead per call (s), modelled on the H200 table of issue 11:
#: sdpa non-causal 0.013 ms at 1k .. 9.53 ms at 64k (host +0.045 ms); retnet fla 0.019 ms at 1k ..
#: 0.389 ms at 64k with 0.6 ms of host overhead at 1k falling to 0.22 ms at 64k (launch-bound to ~41k).
CUDA_DEVICE = {
    ("softmax", "sdpa", False): lambda T: (0.013 + 9.52 * (T / 65536) ** 2) * MS,
    ("retnet", "fla", True): lambda T: (0.015 + 0.0057 * T / 1024) * MS,
}
RETNET_HOST = {1024: 0.60, 2048: 0.45, 4096: 0.30, 8192: 0.28, 16384: 0.26, 32768: 0.24, 65536: 0.22}
CUDA_HOST = {
    ("softmax", "sdpa", False): lambda T: 0.045 * MS,
    ("retnet", "fla", True): lambda T: RETNET_HOST[T] * MS,
}
#: first call of each point (s): Triton compile and autotune at the first retnet point, cache cold
RETNET_FIRST_CALL_S = 32.0
H200_CALIBRATION = {"matmul_flops_per_s": 5.08e13, "bandwidth_bytes_per_s": 4.15e12,
                    "matmul_flops_per_s_by_dtype": {"float32": 5.08e13, "tf32": 3.4e14, "bfloat16": 7.1e14,
                                                    "float16": 7.2e14}}


def make_cuda_run(path: Path, *, name: str = "h200-two-timings", seed: int = 11, device_scale: float = 1.0,
                  call_extra_s: float = 0.0, noise: float = 0.01, n_samples: int = 25,
                  calibration: dict | None = H200_CALIBRATION) -> Path:
    """New-schema CUDA records: ``timing`` is device time (cuda_graph), ``call_latency`` sync to sync.

    ``device_scale`` multiplies every device time (and so every call latency); ``call_extra_s`` adds
    host overhead to the call latency only (a slower Python wrapper): gate tests vary one at a time.
    """
    rng = np.random.default_rng(seed)
    env = {"device": "cuda", "device_name": H200, "cpu_model": "Host CPU", "torch": "2.11.0+cu130",
           "cuda_devices": [{"index": 0, "name": H200, "total_memory_bytes": 150_000_000_000}]}
    manifest = Manifest(run_id=name, created_at="2026-12-01T00:00:00+00:00", scenario={"name": name},
                        environment=env, calibration=calibration, finished_at="2026-12-01T00:10:00+00:00",
                        serprof_version="0.1.0")
    run = RunDir.create(path, manifest)
    cache = "/home/u/.cache/serprof/triton"
    for (kernel, backend, causal), dev in CUDA_DEVICE.items():
        host = CUDA_HOST[(kernel, backend, causal)]
        for i, T in enumerate(CUDA_TS):
            spec = PointSpec(kernel=kernel, backend=backend, device="cuda", dtype="bfloat16", T=T, H=H, D=D,
                             causal=causal)
            d = dev(T) * device_scale
            c = d + host(T) + call_extra_s
            dev_s = tuple(float(d * np.exp(rng.normal(0.0, noise))) for _ in range(n_samples))
            call_s = tuple(float(c * np.exp(rng.normal(0.0, noise))) for _ in range(n_samples))
            fla = backend == "fla"
            first = FirstCall(RETNET_FIRST_CALL_S if (fla and i == 0) else (0.8 if fla else 0.002),
                              cache_dir=cache if fla else None, cache_warm=False if fla else None)
            fl = (4.0 * H * T * T * D) if kernel == "softmax" else 4.0 * H * T * D * D
            run.append(PointRecord(
                spec, "ok",
                timing=Timing(dev_s, "cuda_event", warmup_s=0.2, warmup_calls=20, stop_reason="ci_target",
                              quantity="device_time", method="cuda_graph", unroll=8 if T <= 4096 else 1),
                call_latency=Timing(call_s, "sync_wall", warmup_s=0.2, stop_reason="ci_target",
                                    quantity="call_latency", method="sync_wall"),
                first_call=first,
                memory=Memory(int(4096 * T), "cuda_allocator", input_bytes=4 * T * H * D * 2),
                energy=Energy(None, meter="nvml", reason="below the counter's resolution", below_resolution=True),
                flops=fl, bytes_moved=4.0 * T * H * D * 2,
                worker={"host": "gpu-node", "device_name": H200, "device_index": 0}))
    return path
