"""``bench timer --device cuda`` and doctor's timer check, on the simulated CUDA device with fake tools."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest
from measure_fake_cuda import FakeGpu
from rich.console import Console

from profiler.cli.bench import _timer_cuda, render_cuda_timers
from profiler.measure.device import CudaDevice
from profiler.runner import bench, doctor

OPS = {"sdpa:4096": (0.05e-3, 0.06e-3), "retnet:fla:4096": (0.3e-3, 0.035e-3)}
FAST = bench.CUDA_TIMER_SETTINGS


def fakes():
    gpu = FakeGpu()
    cuda = SimpleNamespace(get_device_name=lambda i: "NVIDIA Fake H200")
    device = CudaDevice(0, cuda=cuda, event_factory=gpu.event, api=gpu)

    def make_call(token):
        if token not in OPS:
            raise ImportError("No module named 'fla'")
        return token, gpu.op(*OPS[token])

    def broken(fn):
        raise RuntimeError("Timer exploded\nsecond line")

    tools = {"do_bench": lambda fn: 0.31e-3, "do_bench_cudagraph": lambda fn: 0.035e-3, "torch_timer": broken}
    return device, tools, make_call


def test_comparison_rows():
    device, tools, make_call = fakes()
    rows = bench.cuda_timer_comparison(["retnet:fla:4096", "sdpa:4096", "gla:fla:4096"], device=device, tools=tools,
                                       make_call=make_call, settings=FAST)
    fla, sdpa, missing = rows
    assert fla.serprof_method == "cuda_graph" and fla.serprof_device_s == pytest.approx(0.035e-3, rel=0.01)
    assert fla.serprof_latency_s == pytest.approx(0.335e-3, rel=0.01)
    assert fla.ratio("do_bench_cudagraph") == pytest.approx(1.0, rel=0.01)
    assert fla.ratio("do_bench") == pytest.approx(0.035 / 0.31, rel=0.01)
    assert fla.ratio("do_bench", "latency") == pytest.approx(0.335 / 0.31, rel=0.01)
    assert fla.launch_bound is True and sdpa.launch_bound is False
    assert fla.tools_s["torch_timer"] is None and fla.errors == {"torch_timer": "RuntimeError: Timer exploded"}
    assert missing.serprof_device_s is None and missing.errors == {"op": "ImportError: No module named 'fla'"}
    assert missing.launch_bound is None and missing.ratio("do_bench") is None


def test_json_out_and_stdout_shape(tmp_path, capsys):
    device, tools, make_call = fakes()
    path = tmp_path / "timers.json"
    _timer_cuda("retnet:fla:4096", True, str(path), device=device, tools=tools, make_call=make_call)
    printed = json.loads(capsys.readouterr().out)
    stored = json.loads(path.read_text())
    assert printed == stored
    assert stored["device"] == "NVIDIA Fake H200" and set(stored["tools"]) == {"do_bench", "do_bench_cudagraph",
                                                                                "torch_timer", "sync_loop"}
    row, = stored["rows"]
    assert set(row) == {"op", "serprof_device_s", "serprof_method", "serprof_method_reason", "serprof_latency_s",
                        "launch_bound", "tools_s", "errors", "device_ratio", "latency_ratio"}
    assert row["launch_bound"] is True and row["device_ratio"]["torch_timer"] is None
    assert row["device_ratio"]["do_bench_cudagraph"] == pytest.approx(1.0, rel=0.01)


def test_table():
    device, tools, make_call = fakes()
    rows = bench.cuda_timer_comparison(["retnet:fla:4096", "gla:fla:4096"], device=device, tools=tools,
                                       make_call=make_call, settings=FAST)
    con = Console(record=True, width=250)
    render_cuda_timers(rows, "NVIDIA Fake H200", con)
    text = con.export_text()
    assert "NVIDIA Fake H200" in text
    line = next(ln for ln in text.splitlines() if "retnet:fla:4096" in ln and "cuda_graph" in ln)
    assert "yes" in line and "0.035" in line and "0.31" in line and "1.000" in line
    assert "gla:fla:4096: op failed: ImportError: No module named 'fla'" in text
    assert "retnet:fla:4096: torch_timer failed: RuntimeError: Timer exploded" in text


def test_bench_timer_cuda_without_cuda_is_one_line_exit_3():
    import subprocess

    code = ("import torch; torch.cuda.is_available = lambda: False; import sys; "
            "sys.argv = ['serprof', 'bench', 'timer', '--device', 'cuda']; from profiler.cli import main; main()")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 3
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no CUDA device" in lines[0], p.stderr


def test_doctor_timer_check_on_cpu_says_skipped():
    c = doctor.timer_check("cpu")
    assert c["state"] == "unavailable" and c["detail"].startswith("skipped:") and "CPU" in c["detail"]


def test_doctor_timer_check_reports_ratios_and_fails_on_disagreement():
    device, tools, make_call = fakes()

    def compare(ops, settings):
        return bench.cuda_timer_comparison(ops, device=device, tools=tools, make_call=make_call, settings=settings)

    OPS["softmax:sdpa:4096"] = (0.05e-3, 0.06e-3)
    try:
        ok = doctor.timer_check("cuda", fla=True, compare=compare)
    finally:
        del OPS["softmax:sdpa:4096"]
    assert ok["state"] == "failed"       # sdpa: 0.06 ms of device time vs the fake cudagraph's 0.035 ms
    assert "softmax:sdpa:4096: device 0.06 ms (cuda_graph) = 1.71x" in ok["detail"]

    OPS["softmax:sdpa:4096"] = (0.05e-3, 0.035e-3)
    try:
        good = doctor.timer_check("cuda", fla=True, compare=compare)
    finally:
        del OPS["softmax:sdpa:4096"]
    assert good["state"] == "ok", good
    assert "1.00x do_bench_cudagraph" in good["detail"] and "launch-bound" in good["detail"]
    assert "(cuda_graph)" in good["detail"]
