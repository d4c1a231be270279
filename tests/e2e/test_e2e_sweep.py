"""`serprof sweep` end to end on CPU: real CLI process, real workers, real kernels and measurement.

Budgets are tiny; these tests check behaviour (records, manifest, resume, exit codes), never speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profiler.store.runs import RunDir

pytestmark = pytest.mark.slow

FAULTY = "tests.fakes.workers:faulty_measure"   # the real measurement after an injected fault
TINY = ["--time-budget", "0.05", "--warmup", "0.01", "--device", "cpu", "--no-report"]


def serprof(*args, env=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "profiler", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, **kw)


@pytest.mark.long
def test_small_sweep_writes_records_and_manifest(tmp_path):
    out = tmp_path / "run"
    p = serprof("sweep", "--kernels", "softmax,retnet", "--backend", "sdpa,torch", "--lengths", "128,256",
                "--causal", "--json", "--out", out, *TINY)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert res["counts"] == {"ok": 4}
    assert Path(res["run_dir"]) == out
    loaded = RunDir.open(out).load()
    assert loaded.warnings == []
    ids = [r.id for r in loaded.records]
    assert len(ids) == len(set(ids)) == 4
    assert {r.spec.kernel for r in loaded.records} == {"softmax", "retnet"}
    for r in loaded.records:
        assert r.status == "ok" and r.timing is not None and len(r.timing.samples_s) >= 1
        assert isinstance(r.worker["pid"], int) and r.worker["pid"] != os.getpid()
        assert r.wall_s > 0 and r.memory is not None and r.memory.peak_bytes is not None
        assert r.energy is not None and r.energy.energy_j is None and r.energy.reason   # no meter here
    m = loaded.manifest
    assert m.schema_version >= 1 and m.finished_at is not None
    assert m.scenario["lengths"] == [128, 256] and m.scenario["device"] == "cpu"
    assert m.environment["packages"]["torch"] and m.environment["nvml"]["available"] is False
    assert m.environment["nvml"]["reason"]
    cal = m.calibration
    assert cal["matmul_flops_per_s"] > 0 and cal["bandwidth_bytes_per_s"] > 0 and cal["method"]
    (session,) = m.notes["sessions"]
    assert session["points_written"] == 4 and 0 < session["in_call_s"] < session["wall_s"]
    assert res["in_call_share"] == pytest.approx(session["in_call_share"])


def test_dry_run_lists_plan_estimates_and_drops_without_running(tmp_path):
    p = serprof("sweep", "--kernels", "softmax,retnet", "--backend", "naive,fla,torch", "--lengths", "1k..4k",
                "--memory-budget", "64MiB", "--dry-run", "--json", "--device", "cpu", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    plan = json.loads(p.stdout)
    assert not (tmp_path / "reports").exists()
    pts = {x["id"]: x for x in plan["points"]}
    naive4k = pts["kernel/softmax/naive/cpu/float32/fwd/B1/T4096/H4/D64/causal"]
    assert naive4k["status"] == "skipped" and "memory budget" in naive4k["reason"]
    assert naive4k["est_bytes"] > 64 << 20
    assert pts["kernel/retnet/torch/cpu/float32/fwd/B1/T1024/H4/D64/causal"]["status"] == "planned"
    assert any(d["what"] == "retnet/fla on cpu" for d in plan["dropped"])
    human = serprof("sweep", "--kernels", "retnet", "--lengths", "1k,2k", "--dry-run", "--device", "cpu", cwd=tmp_path)
    assert human.returncode == 0 and "T2048" in human.stdout and "dropped" in human.stdout


@pytest.mark.long   # 10-25 s on 2 cores: `make test-long` (CI runs it after `make test`)
def test_budget_skips_are_recorded_before_running(tmp_path):
    out = tmp_path / "run"
    p = serprof("sweep", "--kernels", "softmax", "--backend", "naive", "--lengths", "128,2048", "--causal",
                "--memory-budget", "8MiB", "--json", "--out", out, *TINY)
    assert p.returncode == 0, p.stderr
    recs = {r.spec.T: r for r in RunDir.open(out).load().records}
    assert recs[128].status == "ok"
    assert recs[2048].status == "skipped" and "memory budget" in recs[2048].reason
    assert recs[2048].timing is None and recs[2048].worker == {}


@pytest.mark.parametrize("args, code, needle", [
    (["--lengths", "1k..zz"], 2, "--lengths"),
    (["--kernels", "nope"], 2, "unknown kernel 'nope'"),
    (["--scenario", "/nonexistent/x.toml"], 2, "does not exist"),
    (["--scenario", "BAD"], 2, "not valid TOML"),
    (["--scenario", "BADKEY"], 2, "key 'batch'"),
    (["--resume", "NOTRUN"], 2, "not a serprof run folder"),
    (["--resume", "NOTRUN", "--lengths", "1k"], 2, "--resume"),
    (["--device", "cuda"], 3, "CUDA"),
])
def test_bad_input_is_one_line_without_traceback(tmp_path, args, code, needle):
    (tmp_path / "bad.toml").write_text("lengths = [1k\n")
    (tmp_path / "badkey.toml").write_text("batch = [0]\n")
    (tmp_path / "notrun").mkdir()
    subst = {"BAD": tmp_path / "bad.toml", "BADKEY": tmp_path / "badkey.toml", "NOTRUN": tmp_path / "notrun"}
    argv = [subst.get(a, a) for a in args]
    p = serprof("sweep", *argv, "--dry-run" if "--resume" not in args else "--no-report", cwd=tmp_path)
    assert p.returncode == code, (p.stdout, p.stderr)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("serprof: error: "), p.stderr
    assert needle in lines[0]
    assert "Traceback" not in p.stderr + p.stdout


def _wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended early with exit code {proc.returncode}")
        if path.exists() and len([x for x in path.read_text().splitlines() if x.strip()]) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never reached {n} lines")


def _pid_gone(pid: int, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.long
def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "run"
    # softmax only: its reference needs no fla import, which keeps this test short
    args = ["sweep", "--kernels", "softmax", "--backend", "naive,sdpa", "--lengths", "128,256,512",
            "--causal", "--out", str(out), *TINY]
    env = dict(os.environ, SERPROF_MEASURE_FN=FAULTY, SERPROF_TEST_FAULT="sleep=30@softmax/naive/cpu/float32/fwd/B1/T256/")
    proc = subprocess.Popen([sys.executable, "-m", "profiler", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_lines(out / "points.jsonl", 4, proc)
        time.sleep(0.5)           # the worker is now sleeping inside T=512
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = RunDir.open(out).load().records
    assert len(before) == 4
    worker_pid = before[0].worker["pid"]
    assert _pid_gone(worker_pid), "the worker outlived the killed sweep"
    with open(out / "points.jsonl", "a") as fh:   # what a kill during a write leaves behind
        fh.write('{"spec": {"kernel": "soft')
    p = serprof("sweep", "--resume", out, "--json", "--no-report")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    assert any("half-written last line" in w for w in res["warnings"])
    assert {r["id"] for r in res["records"]}.isdisjoint({r.id for r in before})
    loaded = RunDir.open(out).load()
    ids = [r.id for r in loaded.records]
    assert len(ids) == len(set(ids)) == 6 and all(r.status == "ok" for r in loaded.records)
    raw_ids = []
    for line in (out / "points.jsonl").read_text().splitlines():
        try:
            raw_ids.append(json.loads(line)["spec"]["T"], )
        except (json.JSONDecodeError, KeyError):
            pass
    assert len(raw_ids) == 6                      # each point written exactly once
    assert loaded.manifest.finished_at is not None
    assert [s["resumed"] for s in loaded.manifest.notes["sessions"]] == [True]  # the killed session never closed
    again = serprof("sweep", "--resume", out, "--json", "--no-report")
    assert again.returncode == 0 and json.loads(again.stdout)["records"] == []


@pytest.mark.long
def test_ctrl_c_stops_cleanly_keeps_points_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, SERPROF_MEASURE_FN=FAULTY, SERPROF_TEST_FAULT="sleep=30@/T256/")
    # As from a terminal: SIGINT at its default disposition. A suite started as a background job of a
    # non-interactive shell inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    proc = subprocess.Popen([sys.executable, "-m", "profiler", "sweep", "--kernels", "softmax", "--backend", "sdpa",
                             "--lengths", "128,256,512", "--out", str(out), *TINY], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_lines(out / "points.jsonl", 1, proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert f"--resume {out}" in err and "Traceback" not in err
    recs = RunDir.open(out).load().records
    assert [r.spec.T for r in recs] == [128]
    m = RunDir.open(out).read_manifest()
    assert m.finished_at is None and m.notes["sessions"][-1]["interrupted"] is True


@pytest.mark.interpret
def test_interpret_runs_the_real_fla_kernel_on_cpu_through_the_workers(tmp_path):
    out = tmp_path / "run"
    p = serprof("sweep", "--interpret", "--kernels", "retnet", "--backend", "fla", "--lengths", "64",
                "--heads", "2", "--head-dim", "32", "--json", "--out", out, *TINY)
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    (rec,) = RunDir.open(out).load().records
    assert rec.status == "ok" and rec.spec.interpret and rec.id.endswith("/interpret")
    assert rec.timing.timer == "interpreted"
    assert rec.correctness is not None and rec.correctness.passed
    (summary,) = res["records"]
    assert summary["median_s"] is None and summary["interpreted_s"] > 0   # never shown as performance
    assert RunDir.open(out).read_manifest().calibration is None            # nothing to calibrate for
