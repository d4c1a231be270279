"""The SLURM executor against a real one-node cluster (``.ci/slurm/start``; ``make test-slurm``).

Submit and finish, a time limit shorter than the work (USR2, checkpoint, requeue, until every point
is recorded once), scancel of a running shard and ``--resume``, the scheduler's states in ``status``,
the resources each shard asked for and got, and the scheduler's refusals as one line naming the flag.
Points are the fake measurement of ``tests/fakes/workers`` (a busy-wait of ``SERPROF_FAKE_POINT_S``):
what is tested is the scheduling, not kernels. Skipped with the reason where no cluster answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profiler.planning.scenario import build_spec
from profiler.runner import slurm
from profiler.runner.status import run_status
from profiler.store.runs import RunDir

pytestmark = pytest.mark.slurm


@pytest.fixture
def fake_points(monkeypatch):
    """Jobs inherit this environment (sbatch exports it): the fake measurement, ``s`` seconds a point."""
    def use(seconds: float) -> None:
        monkeypatch.setenv("SERPROF_MEASURE_FN", "tests.fakes.workers:probe_measure")
        monkeypatch.setenv("SERPROF_FAKE_POINT_S", str(seconds))
    return use


def _sweep(lengths: str, kernels="softmax", backends="naive"):
    """One measuring process per point (``processes = 1``): a point takes ``SERPROF_FAKE_POINT_S``."""
    return build_spec(None, {"kernels": kernels, "backends": backends, "lengths": lengths, "causal": "causal",
                             "device": "cpu", "name": "slurmci", "processes": 1})


def _squeue_gone(job_ids, timeout_s: float) -> bool:
    """Wait until none of ``job_ids`` is pending or running (squeue)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
        if not any(j in out or any(o.startswith(f"{j.split('_')[0]}_[") for o in out) for j in job_ids):
            return True
        time.sleep(1)
    return False


def _records(run_dir: Path) -> list:
    return RunDir(run_dir).load().records


def _serprof(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, COLUMNS="250"))


def test_submit_finish_status_report_and_resources(slurm_cluster, fake_points, tmp_path):
    fake_points(0.3)
    sweep = _sweep("64,128,256", kernels="retnet,softmax", backends="torch,naive")
    opts = slurm.options_from_flags(partition=slurm_cluster, time_limit="5", cpus_per_task=2)
    res = slurm.submit(sweep, opts=opts, out=tmp_path / "run", calibrate=False)
    assert len(res.job_ids) == 2
    st = run_status(res.run_dir)
    assert st.scheduler == "scontrol" and all(r.scheduler_state in ("PENDING", "RUNNING", "COMPLETED")
                                              for r in st.rows)
    assert _squeue_gone(res.job_ids, 120)
    st = run_status(res.run_dir)
    assert st.complete and [(r.state, r.scheduler_state) for r in st.rows] == [("finished", "COMPLETED")] * 2
    manifest = RunDir(res.run_dir).read_manifest()
    want = manifest.notes["execution"]["resources"]
    assert want["cpus_per_task"] == want["worker_threads"] == 2 and want["mem"].endswith("M")
    for sh in range(2):
        got = json.loads(slurm.shard_state_path(res.run_dir, sh).read_text())["allocation"]
        assert got["cpus_per_task"] == "2" and got["worker_threads"] == 2
        assert got["mem_per_node"] == want["mem"].rstrip("M")           # the scheduler gave what was asked
        assert {k: v for k, v in manifest.notes["execution"]["allocated"][str(sh)].items()
                if k not in ("host", "attempt")} == got                 # and the manifest records it
    out = subprocess.run(["scontrol", "show", "job", "-o", res.job_ids[0].split("_")[0]],
                         capture_output=True, text=True).stdout
    assert f"mem={want['mem']}" in out and "cpu=2" in out
    p = _serprof("report", str(res.run_dir))
    assert p.returncode == 0, p.stderr


def test_time_limit_shorter_than_the_work_completes_through_requeues(slurm_cluster, fake_points, tmp_path):
    """1 minute per job, 56 s of points + start-up: USR2 comes 20-50 s in (10 s lead; slurmctld checks
    limits every 30 s), the shard checkpoints and is requeued, and the requeued job measures the rest;
    every planned point is recorded exactly once."""
    fake_points(8.0)
    sweep = _sweep("64,128,192,256,320,384,448")
    opts = slurm.options_from_flags(partition=slurm_cluster, time_limit="1", shards=1)
    res = slurm.submit(sweep, opts=opts, out=tmp_path / "run", calibrate=False)
    states = set()
    end = time.monotonic() + 330
    while time.monotonic() < end:
        st = run_status(res.run_dir)
        states.add(st.rows[0].state)
        if st.complete and st.rows[0].state == "finished":
            break
        time.sleep(2)
    assert st.complete and st.rows[0].state == "finished", (states, st.rows[0])
    assert "requeued" in states
    recs = _records(res.run_dir)
    planned = [p.id for p in slurm.plan_shards(sweep, opts)[1][0]]
    assert sorted(r.id for r in recs) == sorted(planned) and all(r.status == "ok" for r in recs)
    lines = (res.run_dir / slurm.shard_file(0)).read_text().splitlines()
    assert len(lines) == len(planned)                                   # once each, no duplicate line
    state = json.loads(slurm.shard_state_path(res.run_dir, 0).read_text())
    assert state["attempts"] >= 2 and "SIGUSR2" in [h["signal"] for h in state["history"]]
    assert all(h["written"] >= 1 for h in state["history"])           # every attempt made progress


def test_scancel_stops_the_shard_and_resume_completes_it(slurm_cluster, fake_points, tmp_path):
    fake_points(2.0)
    sweep = _sweep("64,128,192,256,320,384,448,512")
    opts = slurm.options_from_flags(partition=slurm_cluster, time_limit="5", shards=1)
    res = slurm.submit(sweep, opts=opts, out=tmp_path / "run", calibrate=False)
    points = res.run_dir / slurm.shard_file(0)
    end = time.monotonic() + 120
    while time.monotonic() < end and len(_records(res.run_dir)) < 2:
        time.sleep(0.5)
    assert len(_records(res.run_dir)) >= 2
    t0 = time.monotonic()
    subprocess.run(["scancel", res.job_ids[0]], check=True)
    state_path = slurm.shard_state_path(res.run_dir, 0)
    while time.monotonic() - t0 < 20 and json.loads(state_path.read_text())["state"] == "running":
        time.sleep(0.2)
    stopped_s = time.monotonic() - t0
    state = json.loads(state_path.read_text())
    assert state["state"] == "interrupted" and state["signal"] == "SIGTERM" and stopped_s < 10
    assert _squeue_gone(res.job_ids, 60)
    before = _records(res.run_dir)
    assert 2 <= len(before) < 8 and all(r.status == "ok" for r in before)      # no crashed record
    st = run_status(res.run_dir)
    assert st.rows[0].state == "cancelled" and st.rows[0].scheduler_state.startswith("CANCELLED")
    p = _serprof("status", str(res.run_dir))
    assert p.returncode == 0 and "cancelled" in p.stdout and "CANCELLED" in p.stdout

    p = _serprof("sweep", "--executor", "slurm", "--resume", str(res.run_dir), "--json")
    assert p.returncode == 0, p.stderr
    again = json.loads(p.stdout)
    assert again["missing"] == 8 - len(before) and len(again["job_ids"]) == 1
    assert _squeue_gone(again["job_ids"], 120)
    recs = _records(res.run_dir)
    assert len(points.read_text().splitlines()) == len(recs) == 8 and all(r.status == "ok" for r in recs)
    st = run_status(res.run_dir)                        # two submissions: both jobs asked for
    assert st.complete and [(r.state, r.scheduler_state, r.attempts) for r in st.rows] == [("finished", "COMPLETED", 2)]


@pytest.mark.parametrize("flags, exit_code, line", [
    (["--partition", "nope"], 2, "serprof: error: --partition nope: the scheduler has no such partition"),
    (["--time-limit", "2h"], 2, "serprof: error: --time-limit 120 min: the scheduler refused the job: "),
    (["--cpus-per-task", "64"], 2, "serprof: error: --cpus-per-task 64: the scheduler refused the job: "
                                   "Batch job submission failed: More processors requested than permitted"),
])
def test_refused_submission_is_one_line_and_leaves_no_folder(slurm_cluster, tmp_path, flags, exit_code, line):
    out = tmp_path / "new" / "run"
    p = _serprof("sweep", "--kernels", "softmax", "--backend", "naive", "--lengths", "64", "--device", "cpu",
                 "--executor", "slurm", "--out", str(out), *flags)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == exit_code and len(lines) == 1 and lines[0].startswith(line), p.stderr
    assert not (tmp_path / "new").exists()


def test_munge_down_is_exit_3_and_leaves_no_folder(slurm_cluster, tmp_path):
    """A client whose munge socket is gone (munged down, as the client sees it) is refused before anything
    is written: the cluster's own config with ``AuthInfo=socket=`` pointing nowhere."""
    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")).read_text()
    dead = "\n".join(ln for ln in conf.splitlines() if not ln.startswith("AuthInfo="))
    (tmp_path / "slurm.conf").write_text(dead + "\nAuthInfo=socket=/nonexistent/munge.socket.2\n")
    env = dict(os.environ, SLURM_CONF=str(tmp_path / "slurm.conf"))
    out = tmp_path / "new" / "run"
    p = subprocess.run([sys.executable, "-m", "profiler", "sweep", "--kernels", "softmax", "--backend", "naive",
                        "--lengths", "64", "--device", "cpu", "--executor", "slurm", "--out", str(out)],
                       capture_output=True, text=True, timeout=120, env=env)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 3 and len(lines) == 1, p.stderr
    assert lines[0].startswith("serprof: error: --executor slurm: the scheduler is not reachable")
    assert "Munge encode failed" in lines[0]
    assert not (tmp_path / "new").exists()
