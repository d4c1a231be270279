"""Calibration per dtype (issue 11 item 4): fp32 stays a number, rates by dtype, CPU stays short."""

from __future__ import annotations

import time


def test_cpu_calibration_measures_fp32_and_requested_bf16_quickly():
    import torch  # noqa: F401 - import time is not calibration time

    from profiler.measure.calibrate import calibrate

    calibrate("cpu", budget_s=0.01)   # first-use costs of the matmul and copy paths
    t0 = time.perf_counter()
    cal = calibrate("cpu", budget_s=0.3, dtypes=["float32", "bfloat16"])
    wall = time.perf_counter() - t0
    assert wall < 1.0 and cal["duration_s"] < 1.0, (wall, cal)
    by = cal["matmul_flops_per_s_by_dtype"]
    assert set(by) == {"float32", "bfloat16"}
    assert isinstance(cal["matmul_flops_per_s"], float) and cal["matmul_flops_per_s"] == by["float32"] > 0
    assert by["bfloat16"] > 0 and cal["sizes"]["matmul_n_by_dtype"]["bfloat16"] == 256
    assert cal["bandwidth_bytes_per_s"] > 0
    # without other dtypes asked for, CPU measures fp32 only
    assert set(calibrate("cpu", budget_s=0.1)["matmul_flops_per_s_by_dtype"]) == {"float32"}
