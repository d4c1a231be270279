"""The SLURM executor without a scheduler: submitit's own script generator, and real subprocess jobs
through ``submitit.LocalExecutor`` (a shard killed mid-run, then resumed; shard files merged)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import pytest

from profiler.planning.scenario import build_spec
from profiler.runner import slurm
from profiler.runner.status import run_status
from profiler.store.runs import RunDir

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "scaleout" / "job_script.sh"
REGEN = os.environ.get("SERPROF_REGEN_GOLDEN") == "1"


def _opts(**kw):
    base = dict(partition="gpu", account="ser-lab", time_limit="2:00:00", gpus_per_task=1, array_parallelism=4,
                sbatch_extra="--constraint=a100 --qos high --exclusive")
    base.update(kw)
    return slurm.options_from_flags(**base)


def _normalise(script: str, run_dir: Path) -> str:
    return (script.replace(shlex.quote(sys.executable), "<python>").replace(sys.executable, "<python>")
            .replace(str(run_dir.absolute()), "<run>"))


def test_job_script_matches_golden(tmp_path):
    text = _normalise(slurm.render_job_script(_opts(), tmp_path / "run", 3, "serprof-quick"), tmp_path / "run")
    if REGEN:
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
    assert "#SBATCH --array=0-2%3" in text                   # 3 shards, at most 4 at once
    assert "#SBATCH --gpus-per-task=1" in text and "#SBATCH --time=120" in text


def test_dry_run_script_is_what_submitit_would_submit(tmp_path, monkeypatch):
    from submitit.slurm.slurm import SlurmExecutor

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))   # pretend srun exists
    opts = _opts()
    ex = SlurmExecutor(folder=slurm.submitit_folder(tmp_path / "run"))
    ex.update_parameters(**slurm.sbatch_parameters(opts, "serprof-quick"))
    ex.parameters["map_count"] = 5                          # what submitit sets for a 5-job array
    real = ex._make_submission_file_text(ex._submitit_command_str, "uid")
    assert slurm.render_job_script(opts, tmp_path / "run", 5, "serprof-quick") == real


def _wait(pred, timeout_s=90.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def _count(path: Path) -> int:
    return sum(1 for ln in path.read_text().splitlines() if ln.strip()) if path.exists() else 0


@pytest.mark.slow
def test_killed_shard_is_resumed_and_shards_merge_into_one_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SERPROF_MEASURE_FN", "tests.fakes.workers:probe_measure")
    monkeypatch.setenv("SERPROF_FAKE_POINT_S", "0.02")
    sweep = build_spec(None, {"kernels": "retnet,softmax", "backends": "torch,sdpa", "lengths": "256,512,1k",
                              "causal": "causal", "device": "cpu", "name": "scaleout"})
    opts = slurm.options_from_flags(backend="local", shards=2, time_limit="10")
    _, shards = slurm.plan_shards(sweep, opts)
    assert len(shards) == 2 and all(len(s) >= 2 for s in shards)
    victim = shards[1][1]                                   # shard 1 hangs on its second point
    monkeypatch.setenv("SERPROF_TEST_FAULT", f"hang@{victim.id}")
    run_dir = tmp_path / "run"
    res = slurm.submit(sweep, opts=opts, out=run_dir, calibrate=False)
    assert [s["shard"] for s in res.shards] == [0, 1] and len(res.jobs) == 2
    assert res.jobs[0].result()["written"] == len(shards[0])
    state1 = slurm.shard_state_path(run_dir, 1)
    assert _wait(lambda: _count(run_dir / slurm.shard_file(1)) == 1 and state1.exists())
    os.kill(json.loads(state1.read_text())["pid"], signal.SIGKILL)            # the node dies mid-shard
    assert _wait(lambda: res.jobs[1].done())

    st = run_status(run_dir)
    assert [(r.done, r.total, r.state) for r in st.rows] == [(len(shards[0]), len(shards[0]), "finished"),
                                                             (1, len(shards[1]), "running")]
    assert not st.complete

    monkeypatch.delenv("SERPROF_TEST_FAULT")
    again = slurm.submit(opts=slurm.SlurmOptions(backend="local"), resume=run_dir, calibrate=False)
    missing = [p.id for p in shards[1][1:]]
    assert [s["shard"] for s in again.shards] == [1] and again.shards[0]["ids"] == missing   # only the missing
    assert any("shard 1 is marked running" in w for w in again.warnings)
    assert again.jobs[0].result()["written"] == len(missing)

    loaded = RunDir(run_dir).load()
    planned = [p.id for sh in shards for p in sh]
    assert sorted(r.id for r in loaded.records) == sorted(planned) and not loaded.warnings
    assert _count(run_dir / slurm.shard_file(0)) == len(shards[0])
    assert _count(run_dir / slurm.shard_file(1)) == len(shards[1])           # no point measured twice
    for r in loaded.records:
        assert r.worker["host"] and r.worker["device_name"] and r.worker["shard"] in (0, 1)
    st = run_status(run_dir)
    assert st.complete and [r.state for r in st.rows] == ["finished", "finished"]
    assert json.loads(state1.read_text())["attempts"] == 2
    assert list(st.devices) == [loaded.records[0].worker["device_name"]]

    from profiler.report import render_run

    html = Path(render_run(run_dir)).read_text()
    assert "retnet" in html and "softmax" in html
    assert (slurm.submit(opts=slurm.SlurmOptions(backend="local"), resume=run_dir).shards == [])
