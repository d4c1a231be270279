"""``serprof doctor``: check the whole measurement chain on this machine and say what works.

Checks, in order: the environment (torch, CUDA, NVML, RAPL), ``serprof verify`` (every available
backend against its reference, run as a subprocess exactly as a user would), a tiny sweep with
energy on (softmax sdpa and RetNet's default backend at two short lengths, through the real workers
and run folder), and on CUDA a short ``bench timer --device cuda`` (SDPA, and RetNet's fla kernel
when fla is installed): serprof's device time against triton's ``do_bench_cudagraph`` (ok within
``TIMER_TOLERANCE``) with the call latency and launch-bound flag; on CPU that check says it is skipped. Each check ends as ``ok``, ``unavailable`` (this machine lacks the hardware or
permission; not a failure) or ``failed``.

Exit code: 0 when no check failed, 1 when one did; an explicitly requested ``--device cuda`` that is
not there raises ``UnavailableError`` (exit 3) before anything runs.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from profiler.core.paths import check_output_dir
from profiler.core.records import MeasureSettings
from profiler.planning.points import resolve_device
from profiler.planning.scenario import SweepSpec
from profiler.runner import bench
from profiler.runner.env import fingerprint
from profiler.runner.sweep import run_sweep

VERIFY_TIMEOUT_S = 900
TIMER_CHECK = "timer (device time vs triton do_bench_cudagraph)"
#: serprof's graph device time may differ this much from do_bench_cudagraph's before doctor fails
TIMER_TOLERANCE = 0.25


def _check(name: str, state: str, detail: str) -> dict[str, str]:
    return {"name": name, "state": state, "detail": detail}


def run_doctor(device: str = "auto", out: Path | None = None) -> dict[str, Any]:
    dev = resolve_device(device)          # --device cuda without CUDA: exit 3 here
    if out is not None:
        check_output_dir(out, "--out")    # before any check runs
    env = fingerprint(device=dev)
    checks = environment_checks(dev, env)
    checks.append(_verify_check())
    checks.extend(_tiny_sweep_checks(dev, out))
    checks.append(timer_check(dev, fla=bool(env["packages"].get("fla-core"))))

    failed = [c for c in checks if c["state"] == "failed"]
    works = [c["name"] for c in checks if c["state"] == "ok"]
    missing = [f"{c['name']} ({c['detail']})" for c in checks if c["state"] == "unavailable"]
    summary = (f"{'FAILED: ' + ', '.join(c['name'] for c in failed) + '. ' if failed else ''}"
               f"Works here: {', '.join(works) or 'nothing'}. "
               f"Not available here: {'; '.join(missing) or 'nothing'}.")
    return {"device": dev, "checks": checks, "summary": summary, "exit_code": 1 if failed else 0,
            "environment": env}


def environment_checks(dev: str, env: dict[str, Any]) -> list[dict[str, str]]:
    """torch, CUDA device, NVML, RAPL and fla from the environment fingerprint (shared with ``selftest``)."""
    checks: list[dict[str, str]] = []
    pk = env["packages"]
    checks.append(_check("torch", "ok", f"torch {pk.get('torch')}, {env.get('torch_threads')} threads"))
    if env.get("cuda_available"):
        names = ", ".join(d["name"] for d in env.get("cuda_devices", []))
        checks.append(_check("CUDA device", "ok", f"CUDA {env.get('cuda_build')}: {names}"))
    else:
        checks.append(_check("CUDA device", "unavailable", env.get("cuda_reason") or "no CUDA device"))
    nv = env["nvml"]
    checks.append(_check("NVML (GPU power/energy)", "ok" if nv["available"] else "unavailable",
                         f"driver {nv.get('driver')}" if nv["available"] else nv["reason"]))
    ra = env["rapl"]
    checks.append(_check("RAPL (CPU energy)", "ok" if ra["available"] else "unavailable",
                         ", ".join(ra.get("zones", [])) if ra["available"] else ra["reason"]))
    if dev == "cuda":
        fla_state = ("ok", f"fla-core {pk.get('fla-core')} (exercised by verify below)") if pk.get("fla-core") \
            else ("unavailable", "fla-core is not installed")
    else:
        fla_state = ("unavailable", "fla's Triton kernels need a CUDA GPU; on CPU `serprof verify --interpret` "
                                    "checks their numerics under Triton's interpreter")
    checks.append(_check("fla Triton kernels", *fla_state))
    return checks


def _verify_check() -> dict[str, str]:
    cmd = [sys.executable, "-m", "profiler", "verify"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return _check("verify (backends vs references)", "failed", f"timed out after {VERIFY_TIMEOUT_S} s")
    out_lines = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]
    err_lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip()]
    last = (out_lines or err_lines or [""])[-1]
    if p.returncode == 0:
        return _check("verify (backends vs references)", "ok", last or "all available backends agree")
    if "No such command" in p.stderr:
        return _check("verify (backends vs references)", "unavailable", "this serprof has no verify command")
    return _check("verify (backends vs references)", "failed", f"exit {p.returncode}: {last}")


def _tiny_sweep_checks(dev: str, out: Path | None) -> list[dict[str, str]]:
    settings = MeasureSettings(warmup_s=0.05, min_reps=3, max_reps=20, time_budget_s=0.2, target_rel_ci=0.05,
                               measure_energy=True, energy_window_s=0.5 if dev == "cuda" else 0.2,
                               point_timeout_s=300)
    spec = SweepSpec(name="doctor", kernels=("softmax", "retnet"), backends=("sdpa", "torch"),
                     lengths=(256, 512), causal="causal", device=dev, settings=settings)
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="serprof-doctor-")
        out = Path(tmp.name) / "run"
    try:
        res = run_sweep(spec, out=out, calibrate=False)
        recs = res.records
    except Exception as exc:  # noqa: BLE001 - doctor reports, it does not crash
        return [_check("tiny sweep (workers, timing, memory)", "failed", f"{type(exc).__name__}: {exc}")]
    finally:
        if tmp is not None:
            tmp.cleanup()
    checks = []
    bad = [r for r in recs if r.status != "ok"]
    if not recs:
        checks.append(_check("tiny sweep (workers, timing, memory)", "failed", "no point ran"))
    elif bad:
        checks.append(_check("tiny sweep (workers, timing, memory)", "failed",
                             "; ".join(f"{r.id}: {r.status} ({r.reason})" for r in bad[:3])))
    else:
        peaks = [r.memory.peak_bytes for r in recs if r.memory and r.memory.peak_bytes is not None]
        checks.append(_check("tiny sweep (workers, timing, memory)", "ok",
                             f"{len(recs)} points ok in {res.wall_s:.1f} s; peak memory measured for {len(peaks)}"))
    energies = [r.energy for r in recs if r.energy is not None]
    with_j = [e for e in energies if e.energy_j is not None]
    if with_j:
        checks.append(_check("energy per call", "ok", f"meter {with_j[0].meter}: {with_j[0].energy_j:.3g} J per call"))
    else:
        reason = next((e.reason for e in energies if e.reason), "no energy meter")
        checks.append(_check("energy per call", "unavailable", reason))
    return checks


def timer_check(dev: str, *, fla: bool = False, compare: Any = None) -> dict[str, str]:
    """Short CUDA timer comparison (``profiler.runner.bench.cuda_timer_comparison``; ``compare`` is a seam)."""
    if dev != "cuda":
        return _check(TIMER_CHECK, "unavailable",
                      "skipped: it compares CUDA timers (graph replay, do_bench_cudagraph); this run is on CPU")

    if compare is None:
        compare = bench.cuda_timer_comparison
    ops = ["softmax:sdpa:4096"] + (["retnet:fla:4096"] if fla else [])
    settings = replace(bench.CUDA_TIMER_SETTINGS, warmup_s=0.1, time_budget_s=0.5)
    try:
        rows = compare(ops, settings=settings)
    except Exception as exc:  # noqa: BLE001 - doctor reports, it does not crash
        return _check(TIMER_CHECK, "failed", f"{type(exc).__name__}: {exc}")
    parts, bad = [], []
    for r in rows:
        ratio = r.ratio("do_bench_cudagraph")
        lb = {True: ", launch-bound", False: "", None: ""}[r.launch_bound]
        if ratio is None:
            bad.append(r.op)
            why = "; ".join(f"{k}: {v}" for k, v in r.errors.items()) or "no number"
            parts.append(f"{r.op}: {why}")
            continue
        if abs(ratio - 1.0) > TIMER_TOLERANCE:
            bad.append(r.op)
        lat = r.serprof_latency_s
        parts.append(f"{r.op}: device {r.serprof_device_s * 1e3:.4g} ms ({r.serprof_method}) = {ratio:.2f}x "
                     f"do_bench_cudagraph; call latency {lat * 1e3 if lat else float('nan'):.4g} ms{lb}")
    return _check(TIMER_CHECK, "failed" if bad or not rows else "ok", "; ".join(parts) or "no op ran")
