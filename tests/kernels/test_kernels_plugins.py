"""Issue 17 item 1: kernels from outside serprof (entry points, ``--kernel-module``) get everything a
built-in gets, and a broken plugin is one line naming it without stopping the other kernels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import profiler.kernels as K
from profiler import api
from profiler.cli import main
from profiler.core.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "serprof-toy-kernel"


@pytest.fixture
def clean_registry(monkeypatch):
    """Forget entry points and kernel modules loaded by a test (the registry is per process)."""
    monkeypatch.setattr(K, "_modules", {})
    from profiler.kernels import origins

    saved = dict(origins.ORIGINS)
    origins.ORIGINS.clear()
    monkeypatch.setattr(K, "_modules", {})
    K._entry_points.cache_clear()
    yield
    K._entry_points.cache_clear()
    origins.ORIGINS.clear()
    origins.ORIGINS.update(saved)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip install`` of the example package into a target folder (no deps, no network, no isolation)."""
    import shutil

    target = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("src") / EXAMPLE.name   # a copy: the build leaves egg-info next to the sources
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True, capture_output=True)
    assert list(target.glob("serprof_toy_kernel-*.dist-info/entry_points.txt"))
    return target


def _cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


@pytest.mark.slow   # pip install + a sweep with a worker process (~10-30 s on 2 cores)
def test_installed_plugin_in_list_verify_sweep_report_gate(installed, clean_registry, monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(installed))
    monkeypatch.setenv("PYTHONPATH", str(installed))        # the sweep's worker processes
    rows = [r for r in api.list_kernels("cpu", level="kernel") if r["kernel"] == "toy_linear"]
    assert {r["backend"] for r in rows} == {"cumsum", "masked"} and all(r["available"] for r in rows)
    assert "entry point serprof.kernels of serprof-toy-kernel" in rows[0]["origin"]
    results = api.verify("toy_linear", lengths="17", modes="fwd,fwdbwd")
    assert len(results) == 4 and all(r.passed for r in results)
    run = api.sweep("toy_linear,softmax", "32", backend="cumsum,sdpa", device="cpu", mode="fwd", causal="causal",
                    out=tmp_path / "run", processes=1, time_budget_s=0.02, warmup_s=0.0, min_reps=3,
                    measure_energy=False)
    recs = {(r.spec.kernel, r.spec.backend): r for r in run.records}
    assert recs[("toy_linear", "cumsum")].status == "ok", recs
    assert recs[("toy_linear", "cumsum")].correctness.passed
    assert recs[("softmax", "sdpa")].status == "ok"
    assert "toy_linear" in api.markdown_summary(run)
    html = api.report(run, out=tmp_path / "report" / "r.html")
    assert "toy_linear" in html.read_text(encoding="utf-8")
    gate = api.gate(run, run)
    assert any("toy_linear" in str(c) for c in gate.checks) and gate.passed


def test_kernel_module_flag_and_errors(clean_registry, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    code, out, err = _cli(["list", "--json", "--level", "kernel", "--device", "cpu",
                           "--kernel-module", "serprof_toy_kernel"], capsys)
    assert code in (0, None), err
    assert "\"toy_linear\"" in out and "kernel module 'serprof_toy_kernel'" in out
    for bad, words in (("no_such_mod_xyz", "cannot import 'no_such_mod_xyz'"), ("json", "exports neither KERNEL"),
                       ("1x", "not a dotted Python module name")):
        code, out, err = _cli(["verify", "--kernel-module", bad], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "--kernel-module" in lines[0] and words in lines[0], err


def test_unknown_kernel_has_close_match():
    with pytest.raises(UsageError, match="did you mean 'softmax'"):
        K.get_kernel("sofmax")


def _spec(**kw):
    from dataclasses import replace

    from serprof_toy_kernel import KERNEL

    return replace(KERNEL, **kw)


def test_broken_entry_point_warns_once_and_others_survive(clean_registry, monkeypatch, capsys, tmp_path):
    (tmp_path / "broken_plug.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    class EP:
        name, value, dist = "broken", "broken_plug", None

    import importlib.metadata as md

    monkeypatch.setattr(md, "entry_points", lambda group=None: [EP()] if group == K.ENTRY_POINT_GROUP else [])
    reg = K.registry()
    K.registry()
    assert "softmax" in reg and "broken" not in reg
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plugin 'broken'" in err[0] and "RuntimeError: boom at import" in err[0]


def test_static_checks_name_the_plugin(monkeypatch):
    from profiler.kernels import plugins

    monkeypatch.syspath_prepend(str(EXAMPLE))
    with pytest.raises(plugins.PluginError, match="X: kernel 'toy_linear' has no callable reference"):
        plugins.validate(_spec(reference=None), "X")
    with pytest.raises(plugins.PluginError, match="default_backend 'nope'"):
        plugins.validate(_spec(default_backend="nope"), "X")


def test_runtime_contract_is_one_line_naming_the_plugin(clean_registry, monkeypatch):
    """Wrong output shape or dtype and a reference that raises: the backend's check fails with one line
    naming the kernel's origin; the other kernels still verify."""
    import torch

    from profiler.kernels.base import Backend, Shape
    from profiler.kernels.verify import verify_point_against_reference

    monkeypatch.syspath_prepend(str(EXAMPLE))
    from serprof_toy_kernel import run_cumsum

    def bad_shape(x, c):
        return run_cumsum(x, c)[:, :1]

    def bad_dtype(x, c):
        return run_cumsum(x, c).double()

    def ref_raises(x, c):
        raise ValueError("reference exploded")

    shape = Shape(1, 8, 1, 4)
    cases = [(_spec(backends={"cumsum": Backend("cumsum", bad_shape)}), "output shape"),
             (_spec(backends={"cumsum": Backend("cumsum", bad_dtype)}), "output dtype torch.float64"),
             (_spec(reference=ref_raises), "reference raised ValueError: reference exploded")]
    for spec, words in cases:
        with pytest.raises(Exception) as exc:
            verify_point_against_reference(spec, "cumsum", shape, "float32", "cpu", True, "fwd")
        msg = str(exc.value)
        assert words in msg and "toy_linear" in msg and "\n" not in msg, msg
    assert verify_point_against_reference(K.get_kernel("softmax"), "sdpa", shape, "float32", "cpu", True, "fwd").passed
    assert torch.is_grad_enabled()


def test_readme_plugin_example_verifies(clean_registry, tmp_path, monkeypatch):
    """The README's "Profile your own kernel" block, saved as my_kernels.py, is a working plugin."""
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Profile your own kernel\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    (tmp_path / "my_kernels.py").write_text(block)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert K.use_kernel_modules(["my_kernels"]) == ["my_linear"]
    results = api.verify("my_linear", lengths="1,40", modes="fwd,fwdbwd")
    assert len(results) == 4 and all(r.passed for r in results), [r.to_dict() for r in results]
    assert K.origin("my_linear") == "kernel module 'my_kernels'"


def test_scenario_key_and_api_keyword_plan_the_plugin(clean_registry, tmp_path, monkeypatch):
    """``[settings] kernel_modules`` and ``kernel_modules=`` put the plugin's points in the plan and the
    module names in the stored settings (what workers, --resume and SLURM shards import)."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    scen = tmp_path / "s.toml"
    scen.write_text('device = "cpu"\nkernels = "toy_linear,softmax"\nbackends = "cumsum,sdpa"\nlengths = 64\n'
                    'modes = "fwd"\n[settings]\nkernel_modules = ["serprof_toy_kernel"]\n')
    p = api.plan(scen)
    kernels = {s.spec.kernel for s in p.points}
    assert kernels == {"toy_linear", "softmax"}
    assert p.sweep.settings.kernel_modules == ("serprof_toy_kernel",)
    p2 = api.plan(None, {"kernels": "toy_linear", "lengths": "32", "device": "cpu",
                         "kernel_modules": "serprof_toy_kernel"})
    assert {s.spec.backend for s in p2.points} == {"cumsum", "masked"}
    scen.write_text('device = "cpu"\nkernels = "softmax"\nlengths = 64\n[settings]\nkernel_modules = ["nope_mod"]\n')
    with pytest.raises(UsageError, match=r"s\.toml: key 'settings\.kernel_modules' nope_mod: cannot import"):
        api.plan(scen)
