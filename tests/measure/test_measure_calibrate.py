"""Calibration per dtype (issue 11 item 4): fp32 stays a number, rates by dtype, CPU stays short.

"Short" is checked by construction, not by a clock: the budget shares calibrate hands to its timing
loops add up to at most its budget, and the extra dtypes use the small CPU probe. How long it really
takes is printed, not asserted: every sweep prints ``calibration: ... (N s)`` (a wall-clock limit in a
unit test fails CI on a busy machine for no defect).
"""

from __future__ import annotations


def test_cpu_calibration_measures_fp32_and_requested_bf16():
    from profiler.measure.calibrate import calibrate

    cal = calibrate("cpu", budget_s=0.3, dtypes=["float32", "bfloat16"])
    by = cal["matmul_flops_per_s_by_dtype"]
    assert set(by) == {"float32", "bfloat16"}
    assert isinstance(cal["matmul_flops_per_s"], float) and cal["matmul_flops_per_s"] == by["float32"] > 0
    assert by["bfloat16"] > 0 and cal["sizes"]["matmul_n_by_dtype"]["bfloat16"] == 256
    assert cal["bandwidth_bytes_per_s"] > 0 and cal["duration_s"] > 0
    # without other dtypes asked for, CPU measures fp32 only
    assert set(calibrate("cpu", budget_s=0.1)["matmul_flops_per_s_by_dtype"]) == {"float32"}


def test_cpu_calibration_stays_within_its_budget_by_construction(monkeypatch):
    from profiler.measure import calibrate as cal_mod

    shares: list[tuple[str, float, int]] = []

    def fake_best_rate(fn, work, budget_s, sync, min_reps=3):
        shares.append(("call", budget_s, 0))
        return 1.0e9, min_reps

    def fake_matmul_rate(torch, dev, n, dtype, budget_s, sync):
        shares.append((dtype, budget_s, n))
        return 1.0e10, 3

    monkeypatch.setattr(cal_mod, "_best_rate", fake_best_rate)
    monkeypatch.setattr(cal_mod, "_matmul_rate", fake_matmul_rate)
    budget = 0.4
    cal = cal_mod.calibrate("cpu", budget_s=budget, dtypes=["float32", "bfloat16", "float16"])
    assert [d for d, _, _ in shares] == ["float32", "bfloat16", "float16", "call"]   # matmuls, then the copy
    assert sum(b for _, b, _ in shares) <= budget + 1e-12
    assert all(n == cal_mod.CPU_PROBE_N for d, _, n in shares if d in ("bfloat16", "float16"))
    assert cal["matmul_flops_per_s_by_dtype"] == {"float32": 1.0e10, "bfloat16": 1.0e10, "float16": 1.0e10}
