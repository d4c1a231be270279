"""SLURM executor pieces that need no scheduler: the signal lead time, the resources a shard asks for,
the scheduler's refusals as one line naming the flag, the scheduler's view in ``status``, and a shard's
stop on USR2 (checkpoint + requeue) and on TERM (cancel) through ``submitit.LocalExecutor``.

The ``scontrol`` / ``sbatch`` texts below were captured from SLURM 22.05 (Debian ``slurm-wlm``, the
one-node cluster of ``.ci/slurm``); tests/scaleout/test_scaleout_slurm_cluster.py runs the real thing.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import pytest

from profiler.core.errors import UnavailableError, UsageError
from profiler.planning.scenario import build_spec
from profiler.runner import slurm
from profiler.runner.status import run_status
from profiler.store.runs import RunDir


def _sweep(lengths="256,512,1k", kernels="retnet,softmax", backends="torch,sdpa", **kw):
    return build_spec(None, {"kernels": kernels, "backends": backends, "lengths": lengths, "causal": "causal",
                             "device": "cpu", "name": "slurmtest", **kw})


# --------------------------------------------------------------------------- signal lead, resources

@pytest.mark.parametrize("minutes, lead", [(1, 10), (2, 20), (3, 30), (9, 90), (120, 90), (None, 90)])
def test_signal_lead_is_a_fraction_of_the_time_limit(minutes, lead):
    assert slurm.signal_lead_s(minutes) == lead


def test_job_script_signal_fits_a_one_minute_limit(tmp_path):
    opts = slurm.options_from_flags(partition="debug", time_limit="1")
    plan, shards = slurm.plan_shards(_sweep(), opts)
    opts = slurm.plan_resources(plan, shards, opts)
    script = slurm.render_job_script(opts, tmp_path / "run", len(shards))
    assert "#SBATCH --signal=USR2@10" in script and "#SBATCH --time=1" in script
    assert "USR2@90" not in script          # submitit's default would come before the first point


def test_cpu_shards_request_the_worker_threads_and_the_plans_memory(tmp_path):
    opts = slurm.options_from_flags(partition="debug", cpus_per_task=2)
    plan, shards = slurm.plan_shards(_sweep(lengths="256,16k", kernels="softmax", backends="naive"), opts)
    got = slurm.plan_resources(plan, shards, opts)
    peak = max(p.est_bytes for p in plan.points if p.runnable)
    assert peak > 0
    want = math.ceil((slurm.SHARD_BASE_MB["cpu"] + slurm.MEM_HEADROOM * peak / 2**20) / 256) * 256
    assert (got.cpus_per_task, got.mem_mb, got.gpus_per_task) == (2, want, None)
    script = slurm.render_job_script(got, tmp_path / "run", len(shards))
    assert "#SBATCH --cpus-per-task=2" in script and f"#SBATCH --mem={want}M" in script
    res = slurm.requested_resources(got, "cpu")
    assert res["cpus_per_task"] == res["worker_threads"] == 2 and res["mem"] == f"{want}M"
    # default: one CPU, one thread; a longer plan asks for more memory
    small = slurm.plan_resources(*slurm.plan_shards(_sweep(lengths="256"), slurm.SlurmOptions()), slurm.SlurmOptions())
    assert small.cpus_per_task == 1 and small.mem_mb < want


def test_user_memory_flag_wins_and_gpu_shards_get_one_gpu(tmp_path):
    opts = slurm.options_from_flags(sbatch_extra="--mem=8G")
    plan, shards = slurm.plan_shards(_sweep(), opts)
    got = slurm.plan_resources(plan, shards, opts)
    script = slurm.render_job_script(got, tmp_path / "run", len(shards))
    assert "#SBATCH --mem=8G" in script and script.count("--mem=") == 1
    assert slurm.requested_resources(got, "cpu")["mem_source"] == "--sbatch-extra --mem"
    gpu = slurm.SlurmOptions()
    plan, shards = slurm.plan_shards(_sweep(device="cuda", kernels="softmax", backends="sdpa"), gpu)
    got = slurm.plan_resources(plan, shards, gpu)
    assert got.gpus_per_task == 1 and got.cpus_per_task is None
    assert got.mem_mb == slurm.SHARD_BASE_MB["cuda"] + slurm.CUDA_HOST_MB_PER_GPU


def test_time_limit_too_short_for_one_point_names_the_flag():
    # 64k-token float32 softmax with a long time budget: the first point cannot finish before the signal
    sweep = _sweep(lengths="64k", kernels="softmax", backends="naive", time_budget_s=60.0)
    opts = slurm.options_from_flags(time_limit="1")
    plan, shards = slurm.plan_shards(sweep, opts)
    with pytest.raises(UsageError, match=r"^--time-limit 1 min is too short to measure one point: .* give at least \d+ min") as exc:
        slurm.plan_resources(plan, shards, opts)
    least = int(str(exc.value).rsplit(" ", 2)[-2])
    slurm.plan_resources(plan, shards, slurm.options_from_flags(time_limit=str(least)))   # what it says is enough
    with pytest.raises(UsageError):
        slurm.plan_resources(plan, shards, slurm.options_from_flags(time_limit=str(least - 1)))


# --------------------------------------------------------------------------- the scheduler's refusals

@pytest.mark.parametrize("said, kind, line", [
    ("sbatch: error: invalid partition specified: nope\nsbatch: error: Batch job submission failed: "
     "Invalid partition name specified", UsageError,
     "--partition nope: the scheduler refused the job: invalid partition specified: nope; "
     "Batch job submission failed: Invalid partition name specified"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
     UsageError, "--account lab: the scheduler refused the job: Batch job submission failed: "
                 "Invalid account or account/partition combination specified"),
    ("sbatch: error: Batch job submission failed: Requested time limit is invalid (missing or exceeds some limit)",
     UsageError, "--time-limit 1 min"),
    ("sbatch: error: Invalid user for SlurmUser slurm, ignored\nsbatch: error: Munge encode failed: Failed to "
     "access \"/run/munge/munge.socket.2\": No such file or directory (retrying ...)\nsbatch: error: "
     "Batch job submission failed: Protocol authentication error", UnavailableError,
     "--executor slurm: the scheduler is not reachable (munge/slurmctld down?)"),
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)",
     UnavailableError, "--executor slurm: the scheduler is not reachable"),
])
def test_scheduler_refusals_are_one_line_naming_the_flag(said, kind, line):
    opts = slurm.SlurmOptions(partition="nope", account="lab", time_limit_min=1)
    err = slurm.submission_error(opts, said)
    assert type(err) is kind and str(err).startswith(line) and "\n" not in str(err)


# --------------------------------------------------------------------------- the scheduler's view

SCONTROL = (  # scontrol show job -o 3 (abridged to the fields read), array of two shards
    "JobId=3 ArrayJobId=3 ArrayTaskId=1 JobName=serprof-sweep JobState=PENDING Reason=Resources Requeue=1 "
    "Restarts=0 BatchFlag=1 ExitCode=0:0 StdErr=/r/slurm/3_1/3_1_0_log.err\n"
    "JobId=4 ArrayJobId=3 ArrayTaskId=0 JobName=serprof-sweep JobState=RUNNING Reason=None Requeue=1 "
    "Restarts=0 BatchFlag=1 ExitCode=0:0 StdErr=/r/slurm/3_0/3_0_0_log.err\n"
    "JobId=20 ArrayJobId=20 ArrayTaskId=0-1,3%2 JobName=serprof-sweep JobState=PENDING Reason=None Restarts=0 "
    "StdErr=/r/slurm/20_4294967294/20_4294967294_0_log.err\n"
    "JobId=6 JobName=serprof-sweep JobState=PENDING Reason=BeginTime Requeue=1 Restarts=1 BatchFlag=1 "
    "ExitCode=0:0 StdErr=/r/slurm/6/6_0_log.err\n"
    "JobId=8 JobName=serprof-sweep JobState=TIMEOUT Reason=TimeLimit Requeue=1 Restarts=0 BatchFlag=1 "
    "ExitCode=0:15 StdErr=/r/slurm/8/8_0_log.err\n")


def test_parse_scontrol_keys_array_tasks_as_submitit_does():
    views = slurm.parse_scontrol(SCONTROL)
    assert sorted(views) == ["20_0", "20_1", "20_3", "3_0", "3_1", "6", "8"]
    assert views["20_3"].serprof_state == "pending" and views["20_3"].reason is None
    assert (views["3_1"].state, views["3_1"].reason, views["3_1"].serprof_state) == ("PENDING", "Resources", "pending")
    assert views["3_0"].reason is None and views["3_0"].serprof_state == "running"
    assert views["6"].restarts == 1 and views["8"].serprof_state == "failed"
    assert views["8"].stderr == "/r/slurm/8/8_0_log.err"
    sacct = slurm.parse_sacct("12_0|COMPLETED|0:0\n12_1|CANCELLED by 0|0:15\n")
    assert sacct["12_1"].state == "CANCELLED" and sacct["12_1"].serprof_state == "cancelled"


def test_scheduler_view_asks_scontrol_per_array_then_sacct(tmp_path, monkeypatch):
    """Like the real clients: scontrol takes one id and forgets old jobs (``Invalid job id specified``,
    exit 1); sacct answers for those where accounting is on; a dead controller is a note, not an error."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    lines = {"3": SCONTROL.splitlines()[0] + "\n" + SCONTROL.splitlines()[1], "6": SCONTROL.splitlines()[3]}
    cases = "".join(f"  {k}) echo '{v}'; exit 0;;\n" for k, v in lines.items())
    (bin_dir / "scontrol").write_text("#!/bin/sh\n[ -n \"$DEAD\" ] && { echo 'slurm_load_jobs error: Unable to "
                                      "contact slurm controller (connect failure)' >&2; exit 1; }\n"
                                      f"case \"$4\" in\n{cases}  *) echo 'slurm_load_jobs error: Invalid job id "
                                      "specified' >&2; exit 1;;\nesac\n")
    (bin_dir / "sacct").write_text("#!/bin/sh\necho '12_0|COMPLETED|0:0'\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    views, note = slurm.scheduler_view(["3_0", "3_1", "6", "12_0"])
    assert note is None and {k: (v.state, v.source) for k, v in views.items()} == {
        "3_0": ("RUNNING", "scontrol"), "3_1": ("PENDING", "scontrol"), "6": ("PENDING", "scontrol"),
        "12_0": ("COMPLETED", "sacct")}
    monkeypatch.setenv("DEAD", "1")
    views, note = slurm.scheduler_view(["3_0"])
    assert views == {} and note == "scheduler not reachable (Unable to contact slurm controller (connect failure))"


def _fake_run(tmp_path, n_shards=4):
    """A SLURM run folder as ``submit`` writes it, without submitting (jobs 3_0.. in shards.json)."""
    sweep = _sweep(kernels="retnet,softmax", backends="torch,sdpa,naive", dtypes="float32,bfloat16")
    opts = slurm.options_from_flags(shards=n_shards)
    plan, shards = slurm.plan_shards(sweep, opts)
    res = slurm.submit(sweep, opts=slurm.options_from_flags(shards=n_shards, backend="debug"), out=tmp_path / "run",
                       dry_run=True)
    from profiler.store.lock import create_locked

    run, lock = create_locked(tmp_path / "run", lambda name: slurm._manifest_for(plan, name, opts, len(shards)))
    lock.release()
    table = {"schema_version": 1, "job_name": "x", "options": opts.to_dict(),
             "shards": [{"shard": i, "specs": [slurm.to_dict(s) for s in sh]} for i, sh in enumerate(shards)],
             "submissions": [{"shards": list(range(len(shards))), "job_ids": [f"3_{i}" for i in range(len(shards))]}]}
    slurm._write_json(run.path / slurm.SHARDS_FILE, table)
    assert res.dry_run
    return run.path, shards


def test_status_combines_records_with_the_schedulers_states(tmp_path, monkeypatch):
    run_dir, shards = _fake_run(tmp_path)
    assert len(shards) == 4
    from profiler.core.records import PointRecord

    rd = RunDir.open(run_dir, points_file=slurm.shard_file(3))
    for spec in shards[3]:
        rd.append(PointRecord(spec=spec, status="ok", worker={"host": "n1", "device_name": "cpu-x"}))
    slurm._write_json(slurm.shard_state_path(run_dir, 1), {"state": "requeued", "attempts": 1, "reason": "x",
                                                           "interrupted": [{"id": shards[1][0].id}]})
    slurm._write_json(slurm.shard_state_path(run_dir, 2), {"state": "running", "attempts": 1})
    views = {"3_0": slurm.JobView("3_0", "PENDING", "Priority"),
             "3_1": slurm.JobView("3_1", "PENDING", "BeginTime", restarts=1),
             "3_2": slurm.JobView("3_2", "TIMEOUT", "TimeLimit", stderr="/r/slurm/3_2/3_2_0_log.err"),
             "3_3": slurm.JobView("3_3", "COMPLETED")}
    monkeypatch.setattr(slurm, "scheduler_view", lambda ids: (views, None))
    st = run_status(run_dir)
    rows = {r.job_id: r for r in st.rows}
    assert st.scheduler == "scontrol"
    assert (rows["3_0"].state, rows["3_0"].reason) == ("pending", "Priority")
    assert (rows["3_1"].state, rows["3_1"].reason, rows["3_1"].interrupted) == ("requeued", "pending: BeginTime", 1)
    assert (rows["3_2"].state, rows["3_2"].reason, rows["3_2"].log) == ("failed: TIMEOUT", "TimeLimit",
                                                                         "/r/slurm/3_2/3_2_0_log.err")
    assert rows["3_3"].state == "finished" and rows["3_3"].scheduler_state == "COMPLETED"
    # the job of a shard that says running is gone from the scheduler: lost, not running
    monkeypatch.setattr(slurm, "scheduler_view", lambda ids: ({}, None))
    assert {r.job_id: r.state for r in run_status(run_dir).rows}["3_2"] == "lost"
    # no scheduler here: what the files say, and why
    monkeypatch.setattr(slurm, "scheduler_view", lambda ids: ({}, "no SLURM client here (scontrol not found)"))
    st = run_status(run_dir)
    assert st.scheduler.startswith("no SLURM client") and [r.state for r in st.rows] == [
        "pending", "requeued", "running", "pending"]
    assert [r.state for r in run_status(run_dir, scheduler=False).rows][1] == "requeued"


def test_status_cli_shows_scheduler_state_reason_and_log(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from profiler.cli import app

    run_dir, _ = _fake_run(tmp_path, n_shards=2)
    views = {"3_0": slurm.JobView("3_0", "RUNNING"),
             "3_1": slurm.JobView("3_1", "FAILED", "NonZeroExitCode", stderr="/r/slurm/3_1/3_1_0_log.err")}
    monkeypatch.setattr(slurm, "scheduler_view", lambda ids: (views, None))
    monkeypatch.setenv("COLUMNS", "250")
    out = CliRunner().invoke(app, ["status", str(run_dir)]).output
    assert "3_0 RUNNING" in out and "failed: FAILED (NonZeroExitCode)" in out
    assert "shard 1 (points-001.jsonl): log /r/slurm/3_1/3_1_0_log.err" in out


# --------------------------------------------------------------------------- the shard's signals

def _wait(pred, timeout_s=60.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _lines(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [pytest.param("SIGUSR2", marks=pytest.mark.slurm), "SIGTERM"])
@pytest.mark.long   # 10-25 s on 2 cores: `make test-long` (CI runs it after `make test`)
def test_signalled_shard_stops_promptly_and_nothing_is_lost(tmp_path, monkeypatch, sig):
    """USR2 (time limit / preemption): the shard writes its state, is checkpointed and requeued by submitit,
    and the requeued job measures the rest. TERM (scancel): it stops within seconds, the point in flight
    is ``interrupted`` (no ``crashed`` record), and ``--resume`` measures exactly what is missing."""
    monkeypatch.setenv("SERPROF_MEASURE_FN", "tests.fakes.workers:fake_measure")
    monkeypatch.setenv("SERPROF_FAKE_POINT_S", "0.4")
    sweep = _sweep(kernels="softmax", backends="naive", lengths="64,128,192,256,320,384")
    opts = slurm.options_from_flags(backend="local", shards=1, time_limit="10")
    res = slurm.submit(sweep, opts=opts, out=tmp_path / "run", calibrate=False)
    run_dir = res.run_dir
    points = run_dir / slurm.shard_file(0)
    state_path = slurm.shard_state_path(run_dir, 0)
    assert _wait(lambda: len(_lines(points)) >= 2)
    pid = json.loads(state_path.read_text())["pid"]
    t0 = time.monotonic()
    os.kill(pid, getattr(signal, sig))
    if sig == "SIGUSR2":
        out = res.jobs[0].result()             # the requeued job's result
        assert out["written"] >= 1
        st = json.loads(state_path.read_text())
        assert st["attempts"] == 2 and st["state"] == "finished"
        assert [h["signal"] for h in st["history"]] == ["SIGUSR2", None]
    else:
        assert _wait(lambda: res.jobs[0].done(), 15) and time.monotonic() - t0 < 8     # prompt
        st = json.loads(state_path.read_text())
        assert st["state"] == "interrupted" and st["signal"] == "SIGTERM"
        recs = _lines(points)
        assert len(recs) < 6 and all(r["status"] == "ok" for r in recs)
        again = slurm.submit(opts=slurm.SlurmOptions(backend="local"), resume=run_dir, calibrate=False)
        assert again.missing == 6 - len(recs)
        again.jobs[0].result()
    recs = _lines(points)
    ids = [r["spec"]["kernel"] + str(r["spec"]["T"]) for r in recs]
    assert len(ids) == len(set(ids)) == 6 and all(r["status"] == "ok" for r in recs)   # each once, none crashed
    st = json.loads(state_path.read_text())
    assert all(i["reason"].startswith(sig) for i in st["interrupted"])   # the point in flight, if one was
    assert run_status(run_dir, scheduler=False).complete
    given = RunDir(run_dir).read_manifest().notes["execution"]["allocated"]["0"]
    assert given["worker_threads"] == 1 and given["attempt"] == 2          # the shard's last job, as it ran
