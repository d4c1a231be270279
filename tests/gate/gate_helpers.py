"""Helpers for the gate tests: synthetic records and run folders written through the real store."""

from __future__ import annotations

import numpy as np

from profiler.core.records import (
    Energy,
    Manifest,
    Memory,
    PointRecord,
    PointSpec,
    Timing,
)
from profiler.store.runs import RunDir

ENV = {"device_name": "cpu", "cpu_model": "AMD EPYC test", "torch_version": "2.13.0", "fla_version": "0.6.0",
       "git_sha": "abc123", "hostname": "box1"}


def spec(kernel="retnet", T=1024, **kw) -> PointSpec:
    return PointSpec(kernel=kernel, backend=kw.pop("backend", "torch"), T=T, **kw)


def record(sp: PointSpec, samples=None, *, peak=1_000_000, energy=None, status="ok", reason=None) -> PointRecord:
    timing = Timing(tuple(float(s) for s in samples), "perf_counter_ns") if samples is not None else None
    en = Energy(energy, "nvml") if energy is not None else Energy(None, reason="no meter")
    return PointRecord(sp, status, reason, timing, Memory(peak, "test") if peak is not None else None, en)


def write_run(path, records, env=None, calibration=None, run_id=None):
    man = Manifest(run_id=run_id or path.name, created_at="2026-01-01T00:00:00+00:00", scenario={},
                   environment=dict(ENV if env is None else env), calibration=calibration)
    run = RunDir.create(path, man)
    for r in records:
        run.append(r)
    return path


def lognormal(seed, n=60, median=1e-3, sigma=0.03):
    return np.random.default_rng(seed).lognormal(np.log(median), sigma, n)
