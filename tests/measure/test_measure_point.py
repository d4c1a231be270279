"""measure_point on CPU with a real small kernel point (softmax), verification through a seam."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
import torch

import profiler.kernels as kernels
from profiler.core.records import (
    Correctness,
    MeasureSettings,
    PointRecord,
    PointSpec,
    from_dict,
    to_dict,
)
from profiler.kernels import softmax
from profiler.kernels.base import Backend, Shape
from profiler.measure import point
from profiler.measure.device import CpuDevice

FAST = MeasureSettings(warmup_s=0.01, min_warmup_calls=1, min_reps=3, max_reps=20, time_budget_s=0.05,
                       target_rel_ci=0.05, energy_window_s=0.05)


def _boom(inputs, causal):
    raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")


def _one_percent_off(inputs, causal):
    return softmax.run_sdpa(inputs, causal) * 1.01


@pytest.fixture
def registry(monkeypatch):
    """Only softmax (plus a failing backend): these tests are about measurement, not the registry."""
    backends = dict(softmax.KERNEL.backends)
    backends["boom"] = Backend("boom", _boom, causal=(True, False))
    backends["off"] = Backend("off", _one_percent_off, causal=(True, False))
    kernel = dataclasses.replace(softmax.KERNEL, backends=backends)
    monkeypatch.setattr(kernels, "registry", lambda: {"softmax": kernel})
    return kernel


@pytest.fixture
def checks(monkeypatch):
    """Record verify calls; pass unless told otherwise."""
    calls = []
    result = {"passed": True}

    def fake_verify(spec, device, seed, max_T, oracles=(None,)):
        calls.append((spec, Shape(spec.B, spec.T, spec.H, spec.D), device))
        ok = result["passed"]
        return [Correctness(reference="exact fp32 attention", max_abs_err=1e-7 if ok else 0.5,
                            max_rel_err=2e-7 if ok else 0.3, tolerance=1e-5, passed=ok, checked_T=spec.T)]

    monkeypatch.setattr(point, "verify_point", fake_verify)
    return calls, result


def no_rapl(tmp_path):
    return CpuDevice(rapl_root=tmp_path / "no-powercap")


def test_cpu_point_is_a_valid_record_that_round_trips(registry, checks, tmp_path):
    spec = PointSpec("softmax", "sdpa", device="cpu", T=128, H=2, D=32, causal=True)
    rec = point.measure_point(spec, FAST, device=no_rapl(tmp_path))
    assert rec.status == "ok" and rec.reason is None
    t = rec.timing
    assert t.timer == "perf_counter_ns" and 3 <= len(t.samples_s) <= 20 and all(s > 0 for s in t.samples_s)
    assert t.stop_reason in ("ci_target", "time_budget", "max_reps") and t.warmup_calls >= 1
    act = 1 * 128 * 2 * 32 * 4
    m = rec.memory
    assert m.method == "torch_profiler" and m.peak_bytes >= act      # at least the output
    assert m.input_bytes == 3 * act
    assert m.analytic_bytes == softmax.memory_bytes(Shape(1, 128, 2, 32), 4, "sdpa", True, "fwd")
    assert rec.flops == softmax.flops(Shape(1, 128, 2, 32), True)
    assert rec.bytes_moved == softmax.bytes_moved(Shape(1, 128, 2, 32), 4, True)
    assert rec.energy.energy_j is None and "RAPL" in rec.energy.reason
    assert rec.correctness.passed and len(checks[0]) == 1
    assert rec.worker["pid"] == os.getpid() and rec.worker["device_type"] == "cpu"
    assert rec.worker["threads"] == torch.get_num_threads() and rec.wall_s > 0 and rec.started_at
    back = from_dict(PointRecord, json.loads(json.dumps(to_dict(rec))))
    assert back == rec


def test_wrong_output_is_not_timed(registry, checks, tmp_path, monkeypatch):
    checks[1]["passed"] = False
    built = []
    counting = dataclasses.replace(registry, make_inputs=lambda *a, **k: built.append(a))
    monkeypatch.setattr(kernels, "registry", lambda: {"softmax": counting})
    spec = PointSpec("softmax", "sdpa", T=64, H=2, D=32)
    rec = point.measure_point(spec, FAST, device=no_rapl(tmp_path))
    assert rec.status == "wrong" and "0.3" in rec.reason
    assert rec.timing is None and rec.memory is None and rec.correctness.max_rel_err == 0.3
    assert built == []


def test_fwdbwd_counts_the_gradients_and_resets_them(registry, checks, tmp_path):
    spec = PointSpec("softmax", "naive", T=128, H=2, D=32, mode="fwdbwd", causal=False)
    rec = point.measure_point(spec, dataclasses.replace(FAST, verify=False), device=no_rapl(tmp_path))
    assert rec.status == "ok" and rec.correctness is None and checks[0] == []
    assert rec.timing.calls_per_sample == 1
    tt = 2 * 128 * 128 * 4
    # the three input gradients plus the T x T buffers of the naive backward are allocated in the call
    assert rec.memory.peak_bytes >= rec.memory.input_bytes + 2 * tt
    # profiler.core.counting: softmax fwd+bwd = 3.5x the forward's matmuls; bytes 3x the forward's
    assert rec.flops == 3.5 * softmax.flops(Shape(1, 128, 2, 32), False)
    assert rec.bytes_moved == 3 * softmax.bytes_moved(Shape(1, 128, 2, 32), 4, False)


def test_fwdbwd_call_builder_resets_grads():
    spec = PointSpec("softmax", "naive", T=16, H=1, D=8, mode="fwdbwd")
    work = softmax.KERNEL.build(spec, "cpu", 0)
    inputs, call, reset = work.inputs, work.call, work.reset
    call()
    g1 = inputs["q"].grad.clone()
    call()
    assert torch.allclose(inputs["q"].grad, 2 * g1)   # accumulation without reset: same fixed output grad
    reset()
    assert all(inputs[n].grad is None for n in "qkv")
    call()
    assert torch.allclose(inputs["q"].grad, g1)


def test_exceptions_propagate_to_the_runner(registry, tmp_path):
    spec = PointSpec("softmax", "boom", T=64, H=2, D=32)
    with pytest.raises(RuntimeError, match="out of memory"):
        point.measure_point(spec, dataclasses.replace(FAST, verify=False), device=no_rapl(tmp_path))


def test_interpreted_point_gets_one_call(registry, tmp_path):
    spec = PointSpec("softmax", "sdpa", T=64, H=2, D=32, interpret=True)
    rec = point.measure_point(spec, dataclasses.replace(FAST, verify=False), device=no_rapl(tmp_path))
    assert rec.timing.timer == "interpreted" and len(rec.timing.samples_s) == 1
    assert rec.timing.stop_reason == "interpreted"
    assert rec.energy.energy_j is None and "interpreted" in rec.energy.reason
    assert rec.memory.peak_bytes >= 64 * 2 * 32 * 4


def test_settings_switch_meters_off(registry, tmp_path):
    s = dataclasses.replace(FAST, verify=False, measure_memory=False, measure_energy=False)
    rec = point.measure_point(PointSpec("softmax", "sdpa", T=64, H=2, D=32), s, device=no_rapl(tmp_path))
    assert rec.memory.peak_bytes is None and rec.memory.method == "none"
    assert rec.memory.analytic_bytes is not None
    assert rec.energy.energy_j is None and "off" in rec.energy.reason


def test_real_verification_passes_then_times(registry, tmp_path):
    spec = PointSpec("softmax", "sdpa", T=96, H=2, D=32, causal=False)
    rec = point.measure_point(spec, FAST, device=no_rapl(tmp_path))
    assert rec.status == "ok"
    assert rec.correctness.passed and rec.correctness.max_rel_err < 1e-5
    assert rec.correctness.reference == softmax.KERNEL.reference_name


def test_real_verification_catches_a_wrong_backend(registry, tmp_path):
    spec = PointSpec("softmax", "off", T=96, H=2, D=32, causal=True)
    rec = point.measure_point(spec, FAST, device=no_rapl(tmp_path))
    assert rec.status == "wrong" and rec.timing is None
    assert rec.correctness.max_rel_err == pytest.approx(0.01, rel=0.05)
    assert "tolerance" in rec.reason


def test_wrong_reason_names_what_failed():
    c = Correctness(reference="ref", max_abs_err=1.0, max_rel_err=1e-7, tolerance=1e-5, passed=False,
                    grad_max_rel_err=0.2)
    assert point.wrong_reason(c) == "differs from ref: gradient max rel err 0.2 (tolerance 1e-05)"
    c = Correctness(reference="ref", max_abs_err=None, max_rel_err=float("inf"), tolerance=1e-5, passed=False)
    assert "output max rel err inf" in point.wrong_reason(c)
