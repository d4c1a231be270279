"""Helpers for the hardening tests (issue 12): CLI calls in-process and as real processes (this folder is put on sys.path by conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FAKE = "tests.fakes.workers:fake_measure"
TINY = ["--time-budget", "0.05", "--warmup", "0.01", "--device", "cpu", "--no-report", "--no-verify"]


def serprof(*args, env=None, timeout=240, **kw) -> subprocess.CompletedProcess:
    full = dict(os.environ, SERPROF_MEASURE_FN=FAKE)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "profiler", *map(str, args)], capture_output=True, text=True,
                          env=full, timeout=timeout, **kw)


@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (exit code, stdout, stderr)`` through ``profiler.cli.main`` in this process."""
    from profiler.cli import main

    def run(*argv):
        capsys.readouterr()
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def assert_one_line_error(code: int, err: str, expected_code: int = 2, needle: str | None = None) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == expected_code, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("serprof: error: "), err
    if needle is not None:
        assert needle in lines[0], lines[0]
    return lines[0]


_PRISTINE: dict[tuple, Path] = {}


def fake_run(tmp_path: Path, name: str = "run", lengths: str = "64,128,256", extra=()) -> Path:
    """A finished fake-measure run folder (3 points by default) made by the real CLI.

    Each distinct run is swept once per test process; every caller gets its own copy of it."""
    import shutil
    import tempfile

    key = (name, lengths, tuple(map(str, extra)))
    if key not in _PRISTINE:
        src = Path(tempfile.mkdtemp(prefix="serprof-fake-run-")) / name
        p = serprof("sweep", "--kernels", "softmax", "--backend", "sdpa", "--lengths", lengths, "--causal",
                    "--out", src, "--json", *TINY, *extra)
        assert p.returncode == 0, p.stderr
        _PRISTINE[key] = src
    out = tmp_path / name
    shutil.copytree(_PRISTINE[key], out)
    return out


def raw_ids(run: Path) -> list[str]:
    from profiler.core.records import PointSpec, from_dict

    ids = []
    for f in sorted(run.glob("points*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                ids.append(from_dict(PointSpec, json.loads(line)["spec"]).id)
    return ids
