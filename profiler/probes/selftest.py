"""``serprof selftest``: can the numbers be trusted on this machine? Every check, in one process.

Checks (each a ``profiler.analysis.selftest.SelfCheck``; tolerances live there):

* **environment**: ``doctor``'s checks (torch, CUDA, NVML, RAPL, fla) plus the versions of driver,
  CUDA, torch, triton and fla; on CUDA persistence mode, the clocks now, and whether NVML lets this
  user lock the clocks (a lock immediately reset; ``unavailable`` when not permitted);
* **conditions**: one sample of the conditions every point records (``profiler.measure.conditions``);
  CUDA: failed when the GPU is throttling right now;
* **timer**: CPU: serprof's median vs ``torch.utils.benchmark.Timer`` (``bench timer``'s
  ``timer_fidelity``). CUDA, in addition: device time vs ``triton.testing.do_bench_cudagraph`` and
  call latency vs a sync-to-sync loop (``bench timer --device cuda``'s ``cuda_timer_comparison``);
* **memory**: CPU: the meter's peak for a known allocation (exact semantics: bytes alive above
  entry), and the naive softmax's peak vs its analytic model in a worker (``bench memory``'s
  ``memory_check``); CUDA: the allocator meter's peak vs ``torch.cuda.max_memory_allocated`` above entry;
* **energy**: meter present (required on CUDA), counter period and resolution, idle power, a long
  op's energy positive and near sampled power x time, a tiny op flagged below resolution;
* **correctness**: ``serprof verify`` (``verify_many``) over every available backend in every dtype
  it supports, at two lengths;
* **launch** (CUDA): the launch-bound diagnosis on a known host-bound point (RetNet, T=64) and a
  known device-bound one (SDPA, B=8, H=16, T=8192).

``--quick`` shrinks every check (one op, fp32 only, short budgets) for tests; the full CPU run takes
about 2 minutes, the full CUDA run about 8 (first-call compile and autotune included).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any, Callable

from profiler.analysis import selftest as judge
from profiler.analysis.selftest import SelfCheck, SelftestResult
from profiler.core.errors import UnavailableError
from profiler.core.lazy import lazy_import
from profiler.core.records import MeasureSettings, PointSpec
from profiler.kernels import MECHANISMS
from profiler.measure.conditions import NvmlProbe, clock_lock
from profiler.measure.device import get_device
from profiler.measure.memory import ProfilerMemoryMeter
from profiler.measure.point import measure_point
from profiler.measure.verify import verify_many
from profiler.planning.points import resolve_device
from profiler.runner import allocator, bench
from profiler.runner.bench import FidelityRow, _op_call, memory_check, timer_fidelity
from profiler.runner.doctor import environment_checks
from profiler.runner.env import fingerprint

torch = lazy_import("torch")

QUICK_SETTINGS = MeasureSettings(warmup_s=0.02, min_warmup_calls=1, min_reps=5, max_reps=50, target_rel_ci=0.05,
                                 time_budget_s=0.2, verify=False, measure_memory=False, measure_energy=False)
FULL_SETTINGS = MeasureSettings(warmup_s=0.1, min_warmup_calls=2, min_reps=10, max_reps=300, target_rel_ci=0.02,
                                time_budget_s=1.0, verify=False, measure_memory=False, measure_energy=False)
HOST_BOUND = dict(kernel="retnet", T=64, B=1, H=4, D=64)
DEVICE_BOUND = dict(kernel="softmax", backend="sdpa", T=8192, B=8, H=16, D=64)


def _c(group: str, name: str, state: str, detail: str, **values: Any) -> SelfCheck:
    return SelfCheck(group, name, state, detail, values)


def _guard(group: str, name: str, fn: Callable[[], list[SelfCheck]]) -> list[SelfCheck]:
    """A check that raises is a failed check with the error, never a traceback."""
    try:
        return fn()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - selftest reports
        return [_c(group, name, "failed", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")]


# --------------------------------------------------------------------------- environment, conditions

def environment(dev: str, env: dict[str, Any], device: Any) -> list[SelfCheck]:
    pk = env["packages"]
    out = [_c("environment", c["name"], c["state"] if not (dev == "cuda" and c["name"].startswith("NVML")
                                                             and c["state"] != "ok") else "failed", c["detail"])
           for c in environment_checks(dev, env)]
    versions = {"driver": env.get("driver") or env.get("nvml", {}).get("driver"), "cuda": env.get("cuda_build"),
                "torch": pk.get("torch"), "triton": pk.get("triton"), "fla": pk.get("fla-core"),
                "python": env.get("python")}
    out.append(_c("environment", "versions", "ok", ", ".join(f"{k} {v}" for k, v in versions.items() if v), **versions))
    if dev == "cuda":
        out.extend(_nvml_environment(device))
    return out


def _nvml_environment(device: Any) -> list[SelfCheck]:
    probe = device.conditions_probe()
    if not isinstance(probe, NvmlProbe):
        return [_c("environment", "NVML clocks and permissions", "failed", probe.read().get("unavailable", "no NVML"))]
    nvml, h = probe.nvml, probe.handle
    out = []
    try:
        pm = int(nvml.nvmlDeviceGetPersistenceMode(h))
        out.append(_c("environment", "persistence mode", "ok", "on" if pm else
                      "off (the driver may unload between runs: first calls pay its start-up; `nvidia-smi -pm 1`)",
                      persistence=bool(pm)))
    except Exception as exc:  # noqa: BLE001
        out.append(_c("environment", "persistence mode", "unavailable", f"not readable: {exc}"))
    try:
        with clock_lock(nvml, h, gpu=f"GPU {device.index}") as st:
            locked_sm = st.get("sm_clock_mhz")
        out.append(_c("environment", "clock locking (--lock-clocks)", "ok",
                      f"permitted (locked at {locked_sm} MHz, then reset)", permitted=True))
    except UnavailableError as exc:
        out.append(_c("environment", "clock locking (--lock-clocks)", "unavailable", str(exc), permitted=False))
    return out


def conditions_now(dev: str, device: Any) -> list[SelfCheck]:
    s = device.conditions_probe().read()
    if "unavailable" in s or "error" in s:
        state = "failed" if dev == "cuda" else "unavailable"
        return [_c("conditions", "conditions sampled per point", state, s.get("unavailable") or s.get("error"))]
    if dev == "cuda":
        thr = s.get("throttle") or []
        detail = (f"SM {s['sm_clock_mhz']} MHz, memory {s['mem_clock_mhz']} MHz, {s['temp_c']} C, "
                  f"{s['power_w']:.0f} W, " + (f"THROTTLED ({', '.join(thr)})" if thr else "not throttled"))
        return [_c("conditions", "conditions sampled per point", "failed" if thr else "ok", detail, **s)]
    f = s.get("freq_mhz")
    detail = (f"CPU {f:.0f} MHz ({s['freq_source']})" if f else "CPU frequency not readable here") + \
        f", load {s['load_1m']:.2f}, {len(s['affinity'])} CPUs in affinity, {s['threads']} torch threads"
    return [_c("conditions", "conditions sampled per point", "ok", detail, **s)]


# --------------------------------------------------------------------------- timer

def cpu_timer_rows(quick: bool) -> list[Any]:
    """``bench timer``'s ``timer_fidelity`` rows, in this process (see ``cpu_timer``)."""
    ops = ["softmax:sdpa:128"] if quick else ["softmax:sdpa:1024", "retnet:torch:2048"]
    return timer_fidelity(ops, rounds=1 if quick else 2, settings=QUICK_SETTINGS if quick else None,
                          timer_max_s=0.5 if quick else 5.0)


def cpu_timer(quick: bool) -> list[SelfCheck]:
    """CPU time vs torch Timer, in a process with the workers' allocator regime (as ``bench timer`` does:
    glibc reads MALLOC_* at start-up only; otherwise process history, not the timers, decides which
    one meets page faults)."""
    load0 = _load_per_cpu()
    env = allocator.worker_environment("cpu", os.environ)
    if env == dict(os.environ):
        rows = cpu_timer_rows(quick)
    else:
        p = subprocess.run([sys.executable, "-m", "profiler.probes.selftest", "cpu-timer", "quick" if quick else "full"],
                           env=env, capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            last = ([ln for ln in p.stderr.splitlines() if ln.strip()] or ["no output"])[-1]
            raise RuntimeError(f"CPU timer process exited {p.returncode}: {last}")
        rows = [FidelityRow(**d) for d in json.loads(p.stdout.strip().splitlines()[-1])]
    loads = [x for x in (load0, _load_per_cpu()) if x is not None]
    load = max(loads) if loads else None
    out = []
    for r in rows:
        state = judge.cpu_timer_state(r.ratio, load)
        text = (f"serprof {r.serprof_median_s * 1e3:.4g} ms vs Timer {r.timer_median_s * 1e3:.4g} ms = "
                f"{r.ratio:.3f}x (ok within 1 +- {judge.CPU_TIMER_TOLERANCE})")
        if state == "unavailable":
            text += (f"; cannot judge: the machine is busy (load {load:.2f} per CPU of this process), and "
                     "other processes move the two timers differently (serprof's per-call median, the Timer's "
                     "block means); run again on a quiet machine")
        out.append(_c("timer", f"CPU time vs torch Timer: {r.op}", state, text,
                      ratio=r.ratio, serprof_s=r.serprof_median_s, timer_s=r.timer_median_s,
                      serprof_wall_s=r.serprof_wall_s, timer_wall_s=r.timer_wall_s, load_per_cpu=load))
    return out


def _load_per_cpu() -> float | None:
    """1-minute load average over the CPUs this process may use (None where not readable)."""
    try:
        return os.getloadavg()[0] / max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return None


def cuda_timer(quick: bool, device: Any, fla: bool) -> list[SelfCheck]:
    tools = bench.default_cuda_tools()
    tools = {k: tools[k] for k in ("do_bench_cudagraph", "sync_loop")}
    ops = ["softmax:sdpa:4096"] + (["retnet:fla:4096"] if fla else ["retnet:torch:1024"])
    settings = replace(bench.CUDA_TIMER_SETTINGS, warmup_s=0.1, time_budget_s=0.5 if quick else 2.0)
    out = []
    for r in bench.cuda_timer_comparison(ops, device=device, tools=tools, settings=settings):
        dr, lr = r.ratio("do_bench_cudagraph"), r.ratio("sync_loop", "latency")
        errs = "; ".join(f"{k}: {v}" for k, v in r.errors.items())
        out.append(_c("timer", f"device time vs do_bench_cudagraph: {r.op}",
                      judge.ratio_state(dr, judge.DEVICE_TIMER_TOLERANCE),
                      (f"{r.serprof_device_s * 1e3:.4g} ms ({r.serprof_method}) vs "
                       f"{r.tools_s['do_bench_cudagraph'] * 1e3:.4g} ms = {dr:.3f}x" if dr else errs or "no number"),
                      ratio=dr, serprof_s=r.serprof_device_s, reference_s=r.tools_s.get("do_bench_cudagraph"),
                      method=r.serprof_method))
        out.append(_c("timer", f"call latency vs sync-to-sync loop: {r.op}", judge.ratio_state(lr, judge.LATENCY_TOLERANCE),
                      (f"{r.serprof_latency_s * 1e3:.4g} ms vs {r.tools_s['sync_loop'] * 1e3:.4g} ms = {lr:.3f}x"
                       if lr else errs or "no number"),
                      ratio=lr, serprof_s=r.serprof_latency_s, reference_s=r.tools_s.get("sync_loop")))
    return out


# --------------------------------------------------------------------------- memory

def cpu_memory(quick: bool) -> list[SelfCheck]:
    n = 4 << 20
    keep: list[Any] = []

    def alloc() -> None:
        keep.append(torch.ones(n // 4, dtype=torch.float32))   # n bytes alive at the peak, above entry

    reading = ProfilerMemoryMeter().measure(alloc)
    peak = reading.peak_bytes
    ok = peak is not None and n <= peak <= n + judge.ALLOCATOR_SLACK_BYTES
    out = [_c("memory", "CPU meter: a known 4 MiB allocation", "ok" if ok else "failed",
              f"peak above entry {peak} B for {n} B allocated", peak_bytes=peak, expected_bytes=n)]
    if not quick:
        for r in memory_check(T=2048):
            out.append(_c("memory", f"peak vs analytic model: {r.label}",
                          "ok" if r.within(judge.MEMORY_TOLERANCE) else "failed",
                          f"measured {r.measured_bytes} B vs model {r.analytic_bytes} B = "
                          f"{r.ratio:.3f}x (ok within 1 +- {judge.MEMORY_TOLERANCE})" if r.ratio else f"{r.status}: {r.reason}",
                          ratio=r.ratio, measured_bytes=r.measured_bytes, analytic_bytes=r.analytic_bytes))
    return out


def cuda_memory(device: Any) -> list[SelfCheck]:
    _, call = _op_call("softmax:sdpa:4096", device.torch_device, "bfloat16")
    meter = device.memory_meter()
    torch.cuda.synchronize()
    reading = meter.measure(call)
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    call()
    torch.cuda.synchronize()
    ref = torch.cuda.max_memory_allocated() - base
    ok = reading.peak_bytes is not None and abs(reading.peak_bytes - ref) <= judge.ALLOCATOR_SLACK_BYTES
    return [_c("memory", "allocator peak vs torch.cuda.max_memory_allocated", "ok" if ok else "failed",
               f"serprof {reading.peak_bytes} B vs torch {ref} B above entry", peak_bytes=reading.peak_bytes,
               reference_bytes=ref)]


# --------------------------------------------------------------------------- energy

def energy(dev: str, device: Any, quick: bool) -> list[SelfCheck]:
    meter = device.energy_meter()
    if not meter.available:
        reason = meter.measure(lambda: None, window_s=0.0).reason
        return [_c("energy", "energy meter", "failed" if dev == "cuda" else "unavailable", reason or "no meter")]
    period = meter.probe()
    if period is None:
        return [_c("energy", "energy meter", "failed", "the energy counter does not update")]
    out = [_c("energy", "energy meter", "ok", f"{meter.name}: counter period {period * 1e3:.3g} ms, step "
              f"{meter.counter_step_j:.3g} J", period_s=period, step_j=meter.counter_step_j)]
    long_call, small_call = _energy_ops(dev, device)
    e = meter.measure(long_call, window_s=1.0 if quick else 2.0, sync=device.synchronize)
    sampled = [s["power_w"] for s in e.samples if "power_w" in s]
    sampled_gross = (statistics.mean(sampled) * e.window_s / e.calls) if sampled and e.window_s and e.calls else None
    why = judge.energy_state(e.energy_j, e.gross_energy_j, sampled_gross, e.idle_power_w)
    out.append(_c("energy", "long op energy", "failed" if why else "ok",
                  why or f"{e.energy_j:.4g} J/call net ({e.gross_energy_j:.4g} gross), idle {e.idle_power_w:.1f} W, "
                  f"{e.calls} calls in {e.window_s:.2f} s", energy_j=e.energy_j, gross_j=e.gross_energy_j,
                  sampled_gross_j=sampled_gross, idle_power_w=e.idle_power_w, calls=e.calls))
    s = meter.measure(small_call, window_s=0.5, sync=device.synchronize)
    bad = s.energy_j is not None and s.energy_j <= 0
    out.append(_c("energy", "small op below resolution", "failed" if bad else "ok",
                  "flagged below resolution" if s.below_resolution else
                  f"{s.energy_j:.3g} J/call, interval {s.energy_ci_j}", below_resolution=s.below_resolution,
                  energy_j=s.energy_j))
    return out


def _energy_ops(dev: str, device: Any) -> tuple[Callable[[], None], Callable[[], None]]:
    dtype = "bfloat16" if dev == "cuda" else "float32"
    _, long_call = _op_call("softmax:sdpa:8192" if dev == "cuda" else "softmax:sdpa:2048", device.torch_device, dtype)
    _, small_call = _op_call("softmax:sdpa:16", device.torch_device, dtype)
    return long_call, small_call


# --------------------------------------------------------------------------- correctness, launch

def correctness(dev: str, quick: bool) -> list[SelfCheck]:
    """Every backend against its reference. CPU quick: fp32 at head dim 16 (seconds). CUDA: head dim 64,
    the shape GPU kernels are built and tuned for (fla 0.6.0's chunk_gla faulted with "misaligned
    address" in fp32 at head dim 16 on an H200), quick in bf16 only; each backend in its own process,
    several at once (``verify_many`` on CUDA), so one backend's device fault stays its own."""
    cuda = dev.startswith("cuda")
    dtypes = (("bfloat16",) if cuda else ("float32",)) if quick else ("float32", "float16", "bfloat16")
    lengths = (17, 64) if quick else (63, 256)
    results = verify_many(list(MECHANISMS), None, lengths=lengths, batches=(1,) if quick else (2,),
                          heads=2, head_dim=64 if cuda else (16 if quick else 32), dtypes=dtypes,
                          modes=("fwd",) if quick else ("fwd", "fwdbwd"), device=dev)
    out = []
    by_backend: dict[tuple[str, str], list] = {}
    for r in results:
        by_backend.setdefault((r.kernel, r.backend), []).append(r)
    for (k, b), rs in by_backend.items():
        ran = [r for r in rs if not r.skipped]
        failed = [r for r in ran if r.failed]
        dts = sorted({r.dtype for r in ran})
        worst = max((r.correctness.max_rel_err for r in ran if r.correctness and r.correctness.max_rel_err is not None),
                    default=None)
        detail = (f"{len(ran)} combinations ({', '.join(dts)}; T {', '.join(map(str, lengths))}) "
                  + ("all within tolerance" if not failed else
                     "FAILED: " + "; ".join(f"{r.dtype} {r.mode} T={r.shape.T}: {r.error or r.correctness.max_rel_err}"
                                             for r in failed[:3])))
        if not ran:   # every combination skipped (a dtype the backend lacks, a library declining this machine)
            out.append(_c("correctness", f"{k}/{b}", "unavailable", f"not run: {rs[0].skipped}",
                          combinations=0, failed=0, dtypes=[], worst_rel_err=None))
            continue
        out.append(_c("correctness", f"{k}/{b}", "failed" if failed else "ok", detail,
                      combinations=len(ran), failed=len(failed), dtypes=dts, worst_rel_err=worst))
    return out


def launch(device: Any, quick: bool, fla: bool) -> list[SelfCheck]:
    settings = replace(QUICK_SETTINGS if quick else FULL_SETTINGS, verify=False)
    out = []
    hb = dict(HOST_BOUND, backend="fla" if fla else "torch")
    for label, shape, expect in (("host-bound", hb, True), ("device-bound", DEVICE_BOUND, False)):
        spec = PointSpec(device="cuda", dtype="bfloat16", mode="fwd", causal=True, **shape)
        rec = measure_point(spec, settings, device=device)
        lb = rec.launch_bound
        dev_s = rec.timing.median_s if rec.timing else None
        lat_s = rec.call_latency.median_s if rec.call_latency else None
        out.append(_c("launch", f"{label}: {spec.kernel}/{spec.backend} B={spec.B} H={spec.H} T={spec.T}",
                      "ok" if lb is expect else "failed",
                      f"device {dev_s * 1e3:.4g} ms, call latency {lat_s * 1e3:.4g} ms: "
                      f"{'launch-bound' if lb else 'not launch-bound'} (expected {'' if expect else 'not '}launch-bound)"
                      if dev_s and lat_s else f"{rec.status}: {rec.reason}",
                      launch_bound=lb, device_s=dev_s, call_latency_s=lat_s))
    return out


# --------------------------------------------------------------------------- all

def run_selftest(device: str = "cpu", *, quick: bool = False, progress: Callable[[str], None] | None = None) -> SelftestResult:
    """Every check for ``device`` ('cpu' or 'cuda'; 'cuda' without CUDA raises ``UnavailableError``)."""
    t0 = time.perf_counter()
    dev = resolve_device(device)                    # --device cuda without CUDA: exit 3 here, before any check
    d = get_device(dev)
    env = fingerprint(device=dev)
    fla = dev == "cuda" and bool(env["packages"].get("fla-core"))
    steps: list[tuple[str, str, Callable[[], list[SelfCheck]]]] = [
        ("environment", "environment", lambda: environment(dev, env, d)),
        ("conditions", "conditions", lambda: conditions_now(dev, d)),
        ("timer", "CPU timer", lambda: cpu_timer(quick)),
    ]
    if dev == "cuda":
        steps.append(("timer", "CUDA timers", lambda: cuda_timer(quick, d, fla)))
        steps.append(("memory", "allocator", lambda: cuda_memory(d)))
    else:
        steps.append(("memory", "CPU memory", lambda: cpu_memory(quick)))
    steps.append(("energy", "energy", lambda: energy(dev, d, quick)))
    steps.append(("correctness", "verify", lambda: correctness(dev, quick)))
    if dev == "cuda":
        steps.append(("launch", "launch-bound diagnosis", lambda: launch(d, quick, fla)))
    else:
        steps.append(("launch", "launch-bound diagnosis",
                      lambda: [_c("launch", "launch-bound diagnosis", "unavailable",
                                  "CUDA only: on CPU the timed call is the host's work (no device time to compare)")]))
    checks: list[SelfCheck] = []
    for group, name, fn in steps:
        if progress is not None:
            progress(name)
        checks.extend(_guard(group, name, fn))
    return SelftestResult(device=dev, quick=quick, checks=tuple(checks), wall_s=time.perf_counter() - t0,
                          environment=env)


if __name__ == "__main__":     # ``cpu_timer``'s child process: the rows as one JSON line
    import json
    import sys

    if sys.argv[1:2] == ["cpu-timer"]:
        print(json.dumps([r.__dict__ for r in cpu_timer_rows(sys.argv[2:3] == ["quick"])]))
