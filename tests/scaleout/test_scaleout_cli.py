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


def _fake_slurm_bin(tmp_path, sbatch_body: str | None):
    """A PATH folder with ``srun`` and, unless ``sbatch_body`` is None, a fake ``sbatch`` script."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"srun": "exit 0\n", "sinfo": "echo debug; echo gpu; echo nope\n"}
    if sbatch_body is not None:
        scripts["sbatch"] = sbatch_body
    for name, body in scripts.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '')}")


REJECT = ('echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2\n'
          "exit 1\n")


@pytest.mark.parametrize("case", ["sbatch rejects", "no srun or sbatch"])
@pytest.mark.parametrize("out_exists", [False, True])
def test_failed_submission_leaves_no_run_folder(tmp_path, case, out_exists):
    """A submission that fails before a job exists removes what it created: the run folder (or, for an
    existing empty --out, the files it wrote there) and parent folders made for it."""
    (tmp_path / "empty").mkdir()
    env = _fake_slurm_bin(tmp_path, REJECT) if case == "sbatch rejects" else dict(
        __import__("os").environ, PATH=str(tmp_path / "empty"))
    out = tmp_path / "existing" if out_exists else tmp_path / "new" / "deeper" / "run"
    if out_exists:
        out.mkdir()
    p = subprocess.run([sys.executable, "-m", "profiler", *BASE, "--device", "cpu", "--executor", "slurm",
                        "--partition", "nope", "--out", str(out)], capture_output=True, text=True, timeout=120, env=env)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    if case == "sbatch rejects":        # the flag, and what the scheduler said
        assert p.returncode == 2, p.stderr
        assert lines[0] == ("serprof: error: --partition nope: the scheduler refused the job: "
                            "Batch job submission failed: Invalid partition name specified")
    else:
        assert p.returncode == 3, p.stderr
        assert lines[0].startswith("serprof: error: --executor slurm: sbatch not found on PATH")
    if out_exists:
        assert out.is_dir() and list(out.iterdir()) == []
    else:
        assert not (tmp_path / "new").exists()


def test_successful_submission_keeps_its_run_folder(tmp_path):
    """The clean-up is for failures only: a fake sbatch that accepts the array leaves the run folder."""
    env = _fake_slurm_bin(tmp_path, 'echo "Submitted batch job 4242"\n')
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "profiler", *BASE, "--device", "cpu", "--executor", "slurm",
                        "--partition", "gpu", "--out", str(out), "--json"], capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert (out / "manifest.json").is_file() and (out / "shards.json").is_file()
    shards = json.loads((out / "shards.json").read_text())
    assert shards["submissions"] and shards["submissions"][0]["job_ids"][0].startswith("4242")
