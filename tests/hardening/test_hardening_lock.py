"""Item 4 of issue 12: one writer per run folder (flock on writer.lock), stale locks taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from hardening_helpers import FAKE, assert_one_line_error, fake_run, raw_ids, serprof

from profiler.core.errors import UsageError
from profiler.store.lock import LOCK_FILE, RunLock, read_holder, stale_warning
from profiler.store.runs import RunDir

HOLD = """
import sys, time
from profiler.store.lock import RunLock
lock = RunLock(sys.argv[1], command="holder-test").acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _holder(path, seconds=60):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(UsageError) as exc:
            RunLock(tmp_path).acquire()
        msg = str(exc.value)
        assert f"pid {proc.pid}" in msg and "holder-test" in msg and "one writer" in msg
    finally:
        proc.kill()
        proc.wait()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    proc = _holder(tmp_path)
    proc.kill()                         # kill -9: no release, the record stays in the file
    proc.wait()
    assert read_holder(tmp_path)["pid"] == proc.pid and not read_holder(tmp_path).get("released")
    lock = RunLock(tmp_path).acquire()
    try:
        assert lock.stale and lock.stale["pid"] == proc.pid
        assert f"pid {proc.pid}" in stale_warning(lock)
        assert read_holder(tmp_path)["pid"] == os.getpid()
    finally:
        lock.release()
    assert read_holder(tmp_path)["released"] is True
    again = RunLock(tmp_path).acquire()        # a released lock is not stale
    assert again.stale is None
    again.release()


def test_readers_take_no_lock_and_do_not_block(tmp_path):
    run = fake_run(tmp_path)
    proc = _holder(run)
    try:
        t0 = time.monotonic()
        loaded = RunDir.open(run).load()
        assert len(loaded.records) == 3
        from profiler.report.export import export_run
        from profiler.runner.status import run_status

        assert run_status(run).done == 3
        export_run(run, "csv", tmp_path / "x.csv")
        assert time.monotonic() - t0 < 10
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.long
def test_two_concurrent_resumes_second_exits_2_first_runs_every_point_once(tmp_path):
    run = fake_run(tmp_path, lengths="64,128,256,512,1024,2048")
    (run / "points.jsonl").write_text("")                      # every point is missing again
    env = dict(os.environ, SERPROF_MEASURE_FN=FAKE, SERPROF_FAKE_POINT_S="0.4")
    first = subprocess.Popen([sys.executable, "-m", "profiler", "sweep", "--resume", str(run), "--json", "--no-report"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 120
        while time.monotonic() < end and read_holder(run).get("pid") != first.pid:
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        assert read_holder(run).get("pid") == first.pid
        second = serprof("sweep", "--resume", run, "--json", "--no-report", env={"SERPROF_FAKE_POINT_S": "0.4"})
        line = assert_one_line_error(second.returncode, second.stderr, 2, f"pid {first.pid}")
        assert "being written" in line
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert len(json.loads(out)["records"]) == 6
    ids = raw_ids(run)
    assert len(ids) == len(set(ids)) == 6                       # every point exactly once
    assert read_holder(run)["released"] is True


def test_sweep_into_a_locked_new_out_folder_is_refused(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    proc = _holder(out)
    try:
        p = serprof("sweep", "--kernels", "softmax", "--backend", "sdpa", "--lengths", "64", "--out", out,
                    "--device", "cpu", "--no-report")
        assert_one_line_error(p.returncode, p.stderr, 2, "being written")
        assert not (out / "manifest.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_slurm_resume_submission_takes_the_lock(tmp_path, monkeypatch):
    from profiler.planning.scenario import build_spec
    from profiler.runner import slurm

    spec = build_spec(None, {"kernels": "softmax", "backends": "sdpa", "lengths": "64", "device": "cpu"})
    opts = slurm.options_from_flags(backend="debug")
    out = tmp_path / "srun"
    # create the run folder without running any shard: an executor that accepts the array and starts
    # nothing (a failing one would now remove the folder it created)
    class NoJobs:
        def map_array(self, *args):
            return []

    monkeypatch.setattr(slurm, "_submitit_executor", lambda *a, **k: NoJobs())
    slurm.submit(spec, opts=opts, out=out)
    assert (out / "shards.json").is_file() and read_holder(out)["released"] is True
    proc = _holder(out)
    try:
        with pytest.raises(UsageError, match=f"pid {proc.pid}"):
            slurm.submit(opts=opts, resume=out)
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / "srun" / LOCK_FILE).exists()
