"""``serprof sweep`` executor flags and ``serprof status`` through the real console entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

BASE = ["sweep", "--kernels", "retnet", "--backend", "torch", "--lengths", "256,512"]


def _serprof(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, needle", [
    (["--devices", "0", "--device", "cpu"], "--devices 0 selects CUDA devices but --device is cpu"),
    (["--devices", "7"], "device 7 does not exist"),
    (["--executor", "nope"], "--executor 'nope' is not allowed; valid: local, slurm"),
    (["--partition", "gpu"], "--partition is a SLURM option; add --executor slurm"),
    (["--executor", "slurm", "--sbatch-extra", "--array=0-9", "--dry-run"], "--array is set by serprof"),
])
def test_bad_executor_input_is_one_line_and_exit_2(args, needle):
    p = _serprof(*BASE, *args)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in p.stderr


def test_slurm_dry_run_prints_shards_and_job_script_and_creates_nothing(tmp_path):
    out = tmp_path / "run"
    p = _serprof(*BASE, "--kernels", "retnet,softmax", "--backend", "torch,sdpa", "--device", "cpu",
                 "--executor", "slurm", "--dry-run", "--partition", "gpu", "--account", "lab", "--time-limit", "1:30:00",
                 "--shards", "2", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "would submit 2 shard(s), 6 point(s) of 6 planned" in p.stdout
    assert "shard 0:" in p.stdout and "shard 1:" in p.stdout
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --time=90",
                 "-m submitit.core._submit " + str(out.absolute() / "slurm" / "%j")):
        assert line in p.stdout
    assert not out.exists()
    p = _serprof(*BASE, "--executor", "slurm", "--dry-run", "--device", "cpu", "--json", "--out", str(out))
    data = json.loads(p.stdout)
    assert data["dry_run"] and data["planned"] == 2 and data["script"].startswith("#!/bin/bash")


def test_status_of_a_folder_that_is_not_a_run_is_exit_2(tmp_path):
    p = _serprof("status", str(tmp_path))
    assert p.returncode == 2 and "not a serprof run folder" in p.stderr
