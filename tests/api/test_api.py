"""The public Python API: ``profiler.sweep(...)`` and friends, lazily exposed by ``import profiler``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import profiler
from profiler.core.errors import UsageError


def test_import_profiler_is_cheap_and_exposes_the_api_lazily():
    code = ("import sys, profiler; assert 'torch' not in sys.modules and 'profiler.api' not in sys.modules; "
            "f = profiler.sweep; assert 'profiler.api' in sys.modules and 'torch' not in sys.modules; "
            "print(f.__module__)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "profiler.api"
    for name in ("sweep", "plan", "report", "export", "verify", "gate", "gate_interleave", "status"):
        assert callable(getattr(profiler, name))
    with pytest.raises(AttributeError):
        profiler.no_such_function  # noqa: B018


def test_dry_run_sweep_from_python_with_execution_table(tmp_path):
    out = profiler.api.sweep_outcome(overrides={"kernels": "retnet", "backends": "torch", "lengths": "64,128",
                                                "device": "cpu"}, dry_run=True)
    assert out.plan is not None and out.result is None and out.exit_code == 0
    assert {p.spec.T for p in out.plan.points} == {64, 128}
    # the executor choice is library code: the same [execution] table a scenario file holds
    from profiler.api import resolve_sweep
    from profiler.runner.multi import MultiExecutor

    scen = tmp_path / "s.toml"
    scen.write_text('kernels = ["retnet"]\ndevice = "cpu"\n[execution]\nworkers = 2\ncores_per_worker = 1\n')
    spec, choice = resolve_sweep(scen)
    assert spec.kernels == ("retnet",) and isinstance(choice.executor, MultiExecutor)
    spec, choice = resolve_sweep(scen, execution={"workers": 1})
    assert len(choice.executor.slots) == 1


def test_api_errors_name_the_setting_where_it_came_from(tmp_path):
    with pytest.raises(UsageError, match=r"--target-ci: .* must be a finite number > 0"):
        profiler.api.sweep_outcome(overrides={"target_rel_ci": -1}, dry_run=True)
    with pytest.raises(UsageError, match="drop --warmup, --no-verify"):
        profiler.api.sweep_outcome(overrides={"warmup_s": 1, "verify": False}, resume=tmp_path)


def test_flag_and_toml_names_come_from_one_mapping():
    from profiler.planning import names

    assert names.flag("target_rel_ci") == "--target-ci"
    assert names.flag("point_timeout_s") == "--timeout"
    assert names.flag("verify", False) == "--no-verify"
    assert names.flag("causal", "non-causal") == "--non-causal" and names.flag("causal", "causal") == "--causal"
    assert names.flag("backends") == "--backend" and names.flag("workers") == "--workers"
    assert names.toml_where("s.toml", "execution.workers") == "s.toml: key 'execution.workers'"
    assert names.retarget("--workers must be >= 1 (got 0)", "workers", "s.toml: key 'execution.workers'") == \
        "s.toml: key 'execution.workers': must be >= 1 (got 0)"


def test_profiler_report_is_callable_before_and_after_the_report_package_loads():
    code = ("import profiler; f = profiler.report; import profiler.report.html; g = profiler.report; "
            "assert callable(f) and callable(g); print(type(g).__name__)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    with pytest.raises(UsageError, match="at least one run folder"):
        profiler.report([])
