"""The gate through the CLI: exit codes, JSON verdict, Markdown golden file, baseline save."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gate_helpers import lognormal, record, spec
from typer.testing import CliRunner

from profiler.analysis.compare import compare_runs
from profiler.analysis.gates import RuleSet
from profiler.cli import app, main
from profiler.report.gate import to_markdown
from profiler.store.baseline import load_side

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "gate" / "summary.md"
runner = CliRunner()


@pytest.fixture
def runs(make_run):
    Ts = (1024, 2048, 4096)
    base = [record(spec(T=T), lognormal(T, median=1e-3 * T / 1024), peak=2**20 * T // 1024, energy=0.5)
            for T in Ts] + [record(spec("softmax", backend="sdpa", T=1024), lognormal(9), peak=2**22)]
    same = [record(r.spec, lognormal(r.spec.T + 1, median=float(np.median(r.timing.samples_s))),
                   peak=r.memory.peak_bytes, energy=0.5) for r in base]
    slow = [record(spec(T=1024), lognormal(11, median=1.5e-3), peak=2**20, energy=0.5)] + same[1:3] + [
        record(spec("softmax", backend="sdpa", T=1024), None, status="oom", reason="out of memory")]
    return make_run("base", base), make_run("same", same), make_run("slow", slow)



def test_exit_codes_pass_regression_usage(runs, tmp_path):
    base, same, slow = runs
    r = runner.invoke(app, ["gate", "-b", str(base), "-c", str(same)])
    assert r.exit_code == 0, r.output
    assert "PASS" in r.output
    out = tmp_path / "v.json"
    r = runner.invoke(app, ["gate", "-b", str(base), "-c", str(slow), "--json-out", str(out), "--markdown-out",
                            str(tmp_path / "s.md")])
    assert r.exit_code == 1, r.output
    verdict = json.loads(out.read_text())
    assert verdict["passed"] is False and verdict["exit_code"] == 1
    regressed = {(c["metric"], c["subject"]) for c in verdict["checks"] if c["verdict"] == "regression"}
    assert regressed == {("latency", spec(T=1024).id), ("status", spec("softmax", backend="sdpa", T=1024).id)}
    assert "FAIL" in (tmp_path / "s.md").read_text()
    # a scoped rule that exempts the slow point turns the latency verdict off
    r = runner.invoke(app, ["gate", "-b", str(base), "-c", str(slow), "--rule", "latency:off@T<2048",
                            "--json-out", str(out)])
    assert {c["metric"] for c in json.loads(out.read_text())["checks"] if c["verdict"] == "regression"} == {"status"}


def _main_exit(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv_tail, fragment", [
    (["--rule", "latency:+5"], "relative increase"),
    (["--normalize", "weather"], "unknown --normalize"),
    (["--statistic", "mean"], "unknown --statistic"),
])
def test_usage_errors_exit_2_with_one_line(runs, capsys, argv_tail, fragment):
    base, same, _ = runs
    code, err = _main_exit(["gate", "-b", str(base), "-c", str(same)] + argv_tail, capsys)
    assert code == 2
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err


def test_missing_arguments_and_paths_exit_2(runs, capsys, tmp_path):
    base, _, _ = runs
    assert _main_exit(["gate", "-b", str(base)], capsys)[0] == 2
    code, err = _main_exit(["gate", "-b", str(base), "-c", str(tmp_path / "nope")], capsys)
    assert code == 2 and "does not exist" in err


def test_baseline_save_then_gate_against_file(runs, tmp_path):
    base, same, slow = runs
    bfile = tmp_path / "baselines" / "quick.json"
    r = runner.invoke(app, ["baseline", "save", str(base), "-o", str(bfile), "--max-samples", "40"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["gate", "-b", str(bfile), "-c", str(same)]).exit_code == 0
    assert runner.invoke(app, ["gate", "-b", str(bfile), "-c", str(slow)]).exit_code == 1


def test_markdown_matches_golden(runs):
    base, _, slow = runs
    res = compare_runs(load_side(base), load_side(slow), RuleSet.parse(),
                       baseline_label="runs/base", candidate_label="runs/slow")
    text = to_markdown(res) + "\n"
    if os.environ.get("SERPROF_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "Markdown changed; SERPROF_REGEN_GOLDEN=1 regenerates the golden file"


def test_console_entry_point_exit_code(runs):
    base, _, slow = runs
    p = subprocess.run([sys.executable, "-m", "profiler", "gate", "-b", str(base), "-c", str(slow)],
                       capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
    assert p.returncode == 1, p.stderr
    assert "REGRESSION" in p.stdout
