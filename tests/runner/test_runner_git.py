"""Manifests record the git commit they were measured at (issue 21: history needs to know what it compares)."""

from __future__ import annotations

import subprocess

from profiler.runner.env import fingerprint, git_fingerprint, git_info


def _repo(path):
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "a.txt").write_text("1")
    subprocess.run(["git", "-C", str(path), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_git_info_of_a_checkout_and_its_dirty_flag(tmp_path):
    sha = _repo(tmp_path)
    info = git_info(tmp_path)
    assert info["sha"] == sha and info["dirty"] is False and info["branch"] == "main"
    (tmp_path / "a.txt").write_text("2")
    assert git_info(tmp_path)["dirty"] is True
    assert git_info(tmp_path / "..") is None or git_info(tmp_path / "..")["root"] != str(tmp_path)


def test_manifest_environment_has_serprofs_commit_and_the_working_directorys(tmp_path, monkeypatch):
    own = git_info()
    sha = _repo(tmp_path)
    monkeypatch.chdir(tmp_path)
    got = git_fingerprint()
    if own is None:       # serprof installed from a wheel: the working directory's repository
        assert got["sha"] == sha and got["of"] == "working directory"
    else:                 # a checkout (CI's fresh clone): its commit, plus the user's repository
        assert got["sha"] == own["sha"] and len(got["sha"]) == 40
        assert got["working_directory"]["sha"] == sha
    assert fingerprint(with_torch=False)["git"] == got
