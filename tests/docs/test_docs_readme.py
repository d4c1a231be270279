"""The README is executable: every `serprof` command in its shell blocks parses against the real CLI,
and the cheap ones run (issue 22).

* **Parse** (all commands): each line is split like a shell would, its placeholders filled
  (``reports/<run-id>`` -> a small run folder made here), and handed to the Click command behind the
  Typer app with ``make_context``: an unknown or renamed flag, a missing argument or a bad choice
  fails the test naming the README line.
* **Run** (everything but the slow or device-bound ones): sweeps with ``--dry-run`` appended (GPU and
  SLURM lines too: the plan is what can be checked here) or, for ``--resume``, through the fake
  measurement seam; ``list``, ``env``, ``frontier``, ``report``, ``export``, ``status``, ``baseline
  save`` and ``gate`` for real, each with its exit code checked.

The Python block is run by ``tests/api/test_api_readme.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DATA = ROOT / "tests" / "data"

#: commands only parsed: slow on a CPU (whole verifications, the interpreter, traces) or a GPU's
SLOW = ("serprof verify", "serprof trace", "serprof doctor", "serprof selftest", "serprof bench timer", "serprof gate-interleave",
        "serprof gate-calibrate", "serprof gate-eval")


def readme_commands(text: str) -> list[str]:
    """Every ``serprof ...`` line of the README's bash blocks, comments and continuations removed."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("serprof "):
                out.append(line)
    return out


def _fill(line: str, places: dict[str, str]) -> list[str]:
    for key, value in places.items():
        line = line.replace(key, value)
    return [a for a in shlex.split(line)[1:] if a != "..."]


def _click_app() -> click.Command:
    from profiler.cli import app

    return typer.main.get_command(app)


def parse_problem(argv: list[str]) -> str | None:
    """None when ``argv`` parses against the CLI, else Click's message."""
    cmd = _click_app()
    args = list(argv)
    ctx = None
    try:
        while hasattr(cmd, "list_commands"):     # a group (typer may ship its own copy of click)
            ctx = cmd.make_context(cmd.name or "serprof", args, parent=ctx, resilient_parsing=False)
            rest = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
            if not rest:
                return None
            sub = cmd.get_command(ctx, rest[0])
            if sub is None:
                return f"no such command {rest[0]!r}"
            cmd, args = sub, rest[1:]
        cmd.make_context(cmd.name or "", args, parent=ctx, resilient_parsing=False)
    except Exception as exc:   # Click's exceptions (typer may ship its own copy of click)
        if type(exc).__name__ == "Exit":
            return None
        if hasattr(exc, "format_message"):
            return exc.format_message()
        raise
    return None


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    run = root / "run"
    shutil.copytree(DATA / "run-a52bece-kernels", run)
    other = root / "other"
    shutil.copytree(DATA / "run-a52bece-kernels", other)
    other_manifest = other / "manifest.json"
    other_manifest.write_text(other_manifest.read_text().replace('"run_id": "', '"run_id": "other-', 1))
    return {"reports/<run-id>": str(run), "reports/<run-a>": str(run), "reports/<run-b>": str(other),
            "baselines/main.json": str(root / "main.json"), "baselines/NAME.json": str(root / "name.json"),
            "__root__": str(root)}


def test_the_readme_has_commands():
    cmds = readme_commands(README.read_text())
    assert len(cmds) >= 20 and any(c.startswith("serprof gate ") for c in cmds)


def test_every_readme_command_parses(places):
    problems = []
    for line in readme_commands(README.read_text()):
        why = parse_problem(_fill(line, places))
        if why:
            problems.append(f"{line!r}: {why}")
    assert not problems, "\n".join(problems)


def test_a_renamed_flag_in_the_readme_would_fail(places):
    text = README.read_text().replace("serprof sweep --dry-run", "serprof sweep --dryrun", 1)
    bad = [ln for ln in readme_commands(text) if parse_problem(_fill(ln, places))]
    assert bad and "--dryrun" in bad[0]


def _run(argv: list[str], cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SERPROF_MEASURE_FN="tests.fakes.workers:fake_measure",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "profiler", *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.long
def test_readme_commands_run(places):
    ran = 0
    for line in readme_commands(README.read_text()):
        if line.startswith(SLOW):
            continue
        argv = _fill(line, places)
        if argv[0] == "sweep" and "--resume" not in argv:
            argv.append("--dry-run")
        expected = (0,)
        if "cuda" in line:
            expected = (0, 3)          # GPU lines: planned on a GPU, "unavailable here" (exit 3) on a CPU
        if "--devices" in line:
            expected = (0, 2, 3)       # device indices that do not exist here: one line naming --devices
        if argv[0] == "sweep" and "--resume" in argv:
            expected = (0, 2)          # the copied run is complete or was written by older code: both say so in one line
        p = _run(argv, str(ROOT))
        assert p.returncode in expected, f"{line!r} -> exit {p.returncode}\n{p.stdout[-800:]}\n{p.stderr[-800:]}"
        assert "Traceback" not in p.stderr, line
        ran += 1
    assert ran >= 10
