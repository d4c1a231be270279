"""Off a terminal (a pipe, CI logs) tables are printed at full width: no cell is cut to "354.12 ..." and
no row wraps over several lines (issue 22). Each command runs as a real subprocess with stdout a pipe."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("serprof_tests_synth_run_pipe",
                                               Path(__file__).parents[1] / "analysis" / "synth_run.py")
synth = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(synth)


def _piped(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    p = subprocess.run([sys.executable, "-m", "profiler", *map(str, args)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env, timeout=240)
    assert "…" not in p.stdout, p.stdout          # rich's ellipsis: a cell was cut
    return p


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    return synth.make_run(root / "a", seed=1), synth.make_run(root / "b", name="b", seed=2)


def test_gate_rows_keep_full_numbers_on_one_line(two_runs):
    a, b = two_runs
    p = _piped("gate", "--baseline", a, "--candidate", b)
    assert p.returncode == 0, p.stderr
    row = re.compile(r"^│ pass +│ latency +│ (kernel/\S+) +│ [\d.]+ [mµn]?s +│ [\d.]+ [mµn]?s +│ x\d\.\d{3} +"
                     r"│ \[\d\.\d{3}, \d\.\d{3}\] +│$")
    ids = [m.group(1) for m in map(row.match, p.stdout.splitlines()) if m]
    assert len(ids) == 35, p.stdout                     # every latency check, each on one line
    assert "kernel/gsa/torch/cpu/float32/fwd/B1/T16384/H4/D64/causal" in ids


def test_list_and_status_are_not_cut(two_runs):
    p = _piped("list")
    assert p.returncode == 0, p.stderr
    line = next(ln for ln in p.stdout.splitlines() if "sdpa " in ln and "│ cpu " in ln)
    assert "torch scaled_dot_product_attention (implementation chosen by torch)" in line, line
    a, _ = two_runs
    p = _piped("status", a)
    assert p.returncode == 0, p.stderr
    # one row, wider than 80 columns: the devices cell is not folded onto a second line
    assert re.search(r"^ run +│ 39/39 +│ ok 36, oom 1, skipped 1, wrong 1 │ finished │ synthetic │ unknown device *$",
                     p.stdout, re.M), p.stdout


def test_columns_still_wins_off_a_terminal(two_runs):
    """An explicit ``COLUMNS`` is the user's choice of width, pipe or not."""
    a, b = two_runs
    env = dict(os.environ, COLUMNS="80")
    p = subprocess.run([sys.executable, "-m", "profiler", "gate", "--baseline", a, "--candidate", b],
                       capture_output=True, text=True, env=env, timeout=240)
    assert p.returncode == 0 and max(len(ln) for ln in p.stdout.splitlines() if ln.startswith("│")) <= 80
