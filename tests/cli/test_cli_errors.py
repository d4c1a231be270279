"""The console entry point: click/typer parse errors become one line and exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _serprof(*args):
    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, fragment", [
    (("sweep", "--utterances", "x"), "--utterances"),
    (("sweep", "--no-such-flag"), "No such option: --no-such-flag"),
    (("no-such-command",), "No such command"),
    (("sweep", "--lengths", "1k..x"), "bad length"),          # serprof's own UsageError, same shape
    (("sweep", "--kv-heads", "3", "--dry-run"), "--kv-heads: 3 key/value heads must divide the query heads"),
    (("sweep", "--window", "0", "--dry-run"), "--window"),
])
def test_parse_errors_are_one_line_exit_2(args, fragment):
    p = _serprof(*args)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("serprof: error: ") and fragment in lines[0]
    assert "Traceback" not in p.stderr


def test_help_and_bare_group_print_help_once():
    assert _serprof("--help").returncode == 0
    bare = _serprof("bench")
    assert bare.returncode == 2 and bare.stdout.count("Usage:") == 1


def test_command_exit_codes_pass_through():
    assert _serprof("version").returncode == 0
    p = _serprof("gate", "--baseline", "x")
    assert p.returncode == 2 and p.stderr.count("\n") == 1
