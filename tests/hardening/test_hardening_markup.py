"""Item 1 of issue 12: help texts are plain text, and user/stored text with rich markup is printed as is."""

from __future__ import annotations

import json

import pytest
import typer
from hardening_helpers import TINY, serprof

from profiler.cli import app


def _commands():
    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        out.append(path)
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])

    walk(root, [])
    return out


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "serprof")
def test_every_help_renders(cli, path):
    code, out, err = cli(*path, "--help")
    assert code == 0, err
    assert "Traceback" not in out + err and "Usage" in out


def test_report_help_shows_the_brackets_literally(cli):
    code, out, _ = cli("report", "--help")
    assert code == 0 and "causal|full" in out


@pytest.mark.long   # 10-25 s on 2 cores: `make test-long` (CI runs it after `make test`)
def test_markup_in_name_folder_and_reason_is_printed_and_resumable(tmp_path):
    scen = tmp_path / "s.toml"
    scen.write_text('name = "[/]"\nkernels = ["softmax"]\nbackends = ["sdpa"]\nlengths = [64, 128]\ncausal = true\n')
    out = tmp_path / "[run1]"
    env = {"SERPROF_TEST_FAULT": "raise@/T128/"}   # a crashed point: its reason is stored text
    p = serprof("sweep", "--scenario", scen, "--out", out, *TINY, env=env)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert "'[/]'" in p.stdout and f"run folder: {out}" in p.stdout
    st = serprof("status", out)
    assert st.returncode == 0 and str(out) in st.stdout, st.stderr
    (out / "points.jsonl").write_text((out / "points.jsonl").read_text().splitlines()[0] + "\n")
    again = serprof("sweep", "--resume", out, "--json", "--no-report")
    assert again.returncode == 0, again.stderr
    assert len(json.loads(again.stdout)["records"]) == 1


def test_gate_prints_stored_markup_and_still_writes_outputs(tmp_path, cli):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gate"))
    from gate_helpers import ENV, lognormal, record, spec, write_run

    env = dict(ENV, torch_version="[/]", hostname="[bold]x[link=http://e]")
    base = write_run(tmp_path / "b", [record(spec(T=64), lognormal(1)), record(spec(T=128), None, status="oom",
                                                                              reason="[enforce fail at alloc_cpu.cpp:127]")], env=env)
    cand = write_run(tmp_path / "c", [record(spec(T=64), lognormal(2))], env=dict(env, torch_version="[/x]"))
    code, out, err = cli("gate", "-b", base, "-c", cand, "--allow-env-mismatch", "--json-out", tmp_path / "v.json",
                         "--markdown-out", tmp_path / "v.md")
    assert code == 0, err
    assert "[/]" in out and "[/x]" in out
    assert (tmp_path / "v.json").exists() and (tmp_path / "v.md").exists()


def test_env_prints_system_text_with_brackets_verbatim(cli, monkeypatch):
    """A CPU model, a reason or a package version holding rich markup is printed as written."""
    from profiler.runner import env as envmod

    real = envmod.fingerprint

    def fake(device=None, **kw):
        info = real(device=device, **kw)
        info["cpu_model"] = "Weird CPU [/] [bold]x"
        info["cuda_reason"] = "driver said [enforce fail at alloc_cpu.cpp:127]"
        info["cuda_available"] = False
        return info

    monkeypatch.setattr(envmod, "fingerprint", fake)
    monkeypatch.setenv("COLUMNS", "300")   # one table row per line
    code, out, err = cli("env")
    assert code == 0, err
    assert "Weird CPU [/] [bold]x" in out and "[enforce fail at alloc_cpu.cpp:127]" in out
