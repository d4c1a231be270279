"""`serprof list` and `serprof verify` through profiler.cli.main (its exit-code mapping)."""

import json
import os
import subprocess
import sys
import warnings

import pytest

from profiler.cli import main
from profiler.kernels import catalog, catalog_attn, catalog_delta, catalog_memory, softmax
from profiler.kernels.base import Backend

warnings.filterwarnings("ignore", message="Triton is not supported")
KERNELS = ("softmax", "retnet", "lightnet", "gsa", "fox", "kda") + catalog.NAMES
KERNELS += catalog_delta.NAMES + catalog_attn.NAMES + catalog_memory.NAMES
NO_TORCH = {f.name for f in catalog_attn.FAMILIES if f.torch_run is None}


def run(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_json_cpu(capsys):
    code, out, _ = run(["list", "--json", "--device", "cpu"], capsys)
    assert code == 0
    rows = [r for r in json.loads(out) if r["level"] == "kernel"]
    assert {r["kernel"] for r in rows} == set(KERNELS)
    by = {(r["kernel"], r["backend"]): r for r in rows}
    for k in KERNELS:
        assert by[(k, "fla")]["available"] is False
        assert by[(k, "fla")]["reason"] == "needs a cuda device (or --interpret on CPU for correctness only)"
        if k in NO_TORCH:                       # fla backends only (serprof list --fla says why)
            assert (k, "torch") not in by
        elif k != "softmax" and k not in catalog_delta.NAMES:
            assert by[(k, "torch")]["available"] is True
    assert by[("softmax", "sdpa")]["available"] and by[("softmax", "naive")]["available"]
    assert not by[("softmax", "sdpa-flash")]["available"]
    assert all(r["device"] == "cpu" for r in rows)


def test_list_all_devices_table(capsys):
    code, out, _ = run(["list"], capsys)
    assert code == 0
    for k in KERNELS:
        assert k in out
    assert "unavailable" in out and "available" in out


def test_list_bad_device(capsys):
    code, _, err = run(["list", "--device", "tpu"], capsys)
    assert code == 2 and "valid: all, cpu, cuda" in err
    code, _, err = run(["list", "--level", "layers"], capsys)
    assert code == 2 and "--level 'layers'" in err and "did you mean 'layer'?" in err


def test_list_shows_the_entries_of_every_level(capsys):
    """The names scenarios/paper.toml uses at layer level (``mha``, ...) are listed, per level."""
    import tomllib
    from pathlib import Path

    paper = tomllib.loads((Path(__file__).resolve().parents[2] / "scenarios" / "paper.toml").read_text())
    code, out, _ = run(["list", "--json", "--device", "cpu"], capsys)
    assert code == 0
    rows = json.loads(out)
    by_level = {lv: {r["kernel"] for r in rows if r["level"] == lv} for lv in ("kernel", "layer", "model")}
    assert set(paper["kernels"]) <= by_level[paper["level"]] and "mha" in by_level["layer"]
    assert "mha" not in by_level["kernel"] and by_level["model"] == by_level["layer"]
    mha = [r for r in rows if r["level"] == "layer" and r["kernel"] == "mha"]
    assert [(r["backend"], r["available"]) for r in mha] == [("torch", True)]
    code, out, _ = run(["list", "--level", "layer"], capsys)
    assert code == 0 and "layer level" in out and "kernel level" not in out
    assert any(line.startswith("│ mha ") for line in out.splitlines()), out
    # layer entries carry their mechanism's group and the phases the layer level really measures
    layer = {(r["kernel"], r["backend"]): r for r in rows if r["level"] == "layer"}
    kernel = {(r["kernel"], r["backend"]): r for r in rows if r["level"] == "kernel"}
    assert layer[("retnet", "torch")]["group"] == kernel[("retnet", "torch")]["group"] == "linear+decay"
    assert layer[("mha", "torch")]["group"] == "softmax"
    assert layer[("retnet", "torch")]["phases"] == ["prefill", "decode", "streaming"]
    assert [r["phases"] for r in rows if r["level"] == "model"] and \
        all(r["phases"] == ["prefill"] for r in rows if r["level"] == "model")


@pytest.mark.parametrize("argv", [["list", "--device", "gpu"], ["sweep", "--dry-run", "--device", "gpu"],
                                  ["verify", "--device", "gpu"], ["trace", "--kernel", "softmax", "--device", "gpu"],
                                  ["doctor", "--device", "gpu"], ["bench", "timer", "--device", "gpu"]])
def test_device_gpu_suggests_cuda(capsys, argv):
    code, _, err = run(argv, capsys)
    assert code == 2 and "'gpu'" in err and "did you mean 'cuda'?" in err, err


def test_list_never_imports_fla():
    code = ("import sys\nfrom profiler.cli import main\n"
            "try:\n    main(['list', '--json'])\n    status = 0\nexcept SystemExit as exc:\n"
            "    status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)\n"
            "print('EXIT', status, 'FLA', 'fla' in sys.modules, file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "EXIT 0 FLA False" in p.stderr, p.stderr[-2000:]
    rows = json.loads(p.stdout)
    assert {(r["kernel"], r["backend"], r["device"]) for r in rows} >= {("retnet", "fla", "cuda"),
                                                                      ("retnet", "torch", "cpu")}


def test_verify_small_json_passes(capsys):
    code, out, _ = run(["verify", "--kernels", "softmax,fox", "--lengths", "33", "--batch", "1",
                        "--heads", "1", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["passed"] is True
    combos = {(r["kernel"], r["backend"], r["mode"], r["causal"]) for r in data["results"]}
    assert ("softmax", "naive", "fwdbwd", False) in combos and ("fox", "torch-pruned", "fwd", True) in combos
    assert all(r["shape"]["T"] == 33 and r["dtype"] == "float32" for r in data["results"])


def test_verify_table(capsys):
    code, out, _ = run(["verify", "--kernels", "softmax", "--backend", "sdpa", "--lengths", "20",
                        "--batch", "1", "--mode", "fwd"], capsys)
    assert code == 0
    assert "sdpa" in out and "ok" in out and "2/2 checks within tolerance" in out


def test_verify_exit_1_when_a_backend_is_wrong(capsys, monkeypatch):
    bad = Backend("naive", lambda x, causal: softmax.run_sdpa(x, causal) * 1.001, causal=(True, False))
    monkeypatch.setitem(softmax.KERNEL.backends, "naive", bad)
    code, out, _ = run(["verify", "--kernels", "softmax", "--backend", "naive", "--lengths", "20",
                        "--batch", "1", "--mode", "fwd", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["passed"] is False


@pytest.mark.parametrize("argv, fragment", [
    (["verify", "--kernels", "softmaxx"], "did you mean 'softmax'"),
    (["verify", "--kernels", "softmax", "--backend", "sdpx"], "valid: "),
    (["verify", "--lengths", "1k..x"], "bad length"),
    (["verify", "--kernels", "fox", "--head-dim", "512"], "limit of 256"),
    (["verify", "--interpret", "--dtype", "bf16"], "bf16"),
    (["verify", "--mode", "backward"], "valid: fwd, fwdbwd"),
    (["verify", "--dtype", "fp8"], "fp32, fp16, bf16"),
    (["verify", "--device", "tpu"], "valid: "),
])
def test_verify_usage_errors_exit_2(capsys, argv, fragment):
    code, _, err = run(argv, capsys)
    assert code == 2
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["verify", "--kernels", "softmax", "--backend", "fla"],
    ["verify", "--kernels", "softmax", "--backend", "sdpa-flash"],
    ["verify", "--device", "cuda"],
])
def test_verify_unavailable_exit_3(capsys, argv):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: these backends are available")
    code, _, err = run(argv, capsys)
    assert code == 3 and ("unavailable" in err or "no CUDA" in err)


def test_verify_interpret_runs_fla_in_a_fresh_process():
    """--interpret enters interpret mode in its own process (a subprocess, so this one stays clean)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    p = subprocess.run([sys.executable, "-m", "profiler", "verify", "--interpret", "--kernels", "softmax,fox",
                        "--lengths", "32", "--heads", "1", "--mode", "fwd", "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads(p.stdout)
    rows = data["results"]
    assert {(r["kernel"], r["backend"], r["dtype"]) for r in rows} == {
        (k, "fla", d) for k in ("softmax", "fox") for d in ("float32", "float16")}
    assert all(r["interpret"] and r["passed"] for r in rows)
    assert {r["against"] for r in rows} == {None, "sdpa", "torch"}


def test_verify_cli_reports_unsupported_dtype_as_skipped_not_failed(capsys, monkeypatch):
    import dataclasses

    b = softmax.KERNEL.backends["naive"]
    monkeypatch.setitem(softmax.KERNEL.backends, "naive", dataclasses.replace(b, dtypes=("float32",)))
    argv = ["verify", "--kernels", "softmax", "--backend", "naive", "--lengths", "8", "--batch", "1",
            "--mode", "fwd", "--dtype", "fp32,bf16"]
    code, out, _ = run(argv, capsys)
    assert code == 0, out
    assert "skipped" in out and "does not support bfloat16" in out
    assert "2/2 checks within tolerance; 2 combinations skipped" in out and "FAIL" not in out
    code, out, _ = run(argv + ["--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["passed"] is True
    assert [r["dtype"] for r in data["results"] if r["skipped"]] == ["bfloat16", "bfloat16"]
    # unknown names still exit 2
    code, _, err = run(["verify", "--kernels", "softmax", "--backend", "naivee", "--lengths", "8"], capsys)
    assert code == 2
