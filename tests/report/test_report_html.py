"""The HTML report, Markdown summary, exports and the report CLI, on the synthetic run folder."""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from profiler.cli import app
from profiler.report import export_run, markdown_summary, render_run, render_runs

GOLDEN = Path(__file__).parents[1] / "golden" / "report"
EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def evil_run(tmp_path_factory, synth_module) -> Path:
    return synth_module.make_run(tmp_path_factory.mktemp("evil") / "evil-run", name=f"scenario {EVIL}",
                                 extra_env={"hostname": EVIL})


@pytest.fixture(scope="module")
def evil_report(evil_run) -> str:
    return render_run(evil_run).read_text()


def test_user_strings_are_escaped(evil_report):
    assert "<script" not in evil_report.lower()
    assert "<img" not in evil_report.lower()
    assert "&lt;script&gt;alert(" in evil_report                      # shown, escaped
    assert "onerror=alert(1)&gt;" in evil_report


def test_report_is_self_contained(evil_report):
    html = evil_report
    assert not re.search(r"<link\b|@import|<script\b|\bsrc\s*=\s*[\"']?(https?:|//)", html, re.I)
    # the only URLs are XML namespace declarations inside the inline SVGs
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink",
                    "http://purl.org/dc/elements/1.1/", "http://creativecommons.org/ns#",
                    "http://www.w3.org/1999/02/22-rdf-syntax-ns#", "https://matplotlib.org/"}, urls
    assert html.count("<svg") >= 5


def test_report_sections_and_answers(evil_report):
    for section in ("summary", "figures", "tables", "crossovers", "frontier", "failures", "correctness",
                    "environment"):
        assert f'id="{section}"' in evil_report
    text = re.sub(r"<svg.*?</svg>", "", evil_report, flags=re.S)
    assert "softmax/sdpa/full" in text and "(baseline)" in text
    assert "faster from T*≈9,9" in text                    # retnet vs the baseline, T* = 10,000
    assert "never faster within the sweep" in text         # kda
    assert "oom" in text and "CPU allocation of 4.0 GiB failed" in text
    assert "no energy meter: no meter: RAPL" in text      # no empty energy plot
    assert "max rel err 3.1e-02" in text                  # wrong point with its reason
    assert "interpreted" in text.lower()


def test_report_rebuilds_from_folder_alone(evil_run, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(evil_run, copy, ignore=shutil.ignore_patterns("report.html", "figures"))
    out = render_run(copy)
    assert out == copy / "report.html" and out.exists()
    for name in ("latency", "memory", "throughput", "speedup", "roofline"):
        assert (copy / "figures" / f"{name}.svg").stat().st_size > 1000
        assert (copy / "figures" / f"{name}.png").stat().st_size > 1000


def test_overlay_of_two_runs(tmp_path, synth_module, synthetic_run):
    other = synth_module.make_run(tmp_path / "second", name="second-device", seed=7)
    out = render_runs([synthetic_run, other], out=tmp_path / "overlay" / "report.html")
    html = out.read_text()
    assert "synthetic vs second-device" in html
    assert html.count("<h3>Run ") == 2
    assert (tmp_path / "overlay" / "figures" / "latency.svg").exists()


def test_markdown_golden(synthetic_run):
    text = markdown_summary([synthetic_run])
    golden = GOLDEN / "summary.md"
    if os.environ.get("SERPROF_REGEN_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), "Markdown summary changed; SERPROF_REGEN_GOLDEN=1 regenerates goldens"


def test_markdown_escapes(evil_run):
    md = markdown_summary([evil_run])
    assert "<script" not in md and "&lt;script&gt;" in md


def test_export_csv_and_parquet(synthetic_run, tmp_path):
    path = export_run(synthetic_run, "csv", tmp_path / "points.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 39
    ok = [r for r in rows if r["kernel"] == "retnet" and r["backend"] == "torch" and r["T"] == "8192"]
    assert len(ok) == 1 and float(ok[0]["median_s"]) == pytest.approx(1e-5 * 8192, rel=0.05)
    assert ok[0]["energy_reason"].startswith("no meter")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(export_run(synthetic_run, "parquet", tmp_path / "points.parquet"))
    assert table.num_rows == 39 and "ci_high_s" in table.column_names


runner = CliRunner()


def _invoke(args):
    """Through ``python -m profiler`` so errors map to exit codes exactly as in the console."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "profiler", *args], capture_output=True, text=True, timeout=300)


def test_cli_report_markdown_and_out(synthetic_run, tmp_path):
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", str(synthetic_run), "--out", str(out), "--markdown", "-"])
    assert res.exit_code == 0, res.output
    assert out.exists() and "### serprof: synthetic" in res.stdout


def test_cli_bad_input_exits_2(tmp_path, synthetic_run):
    res = _invoke(["report", str(tmp_path)])
    assert res.returncode == 2 and "not a serprof run folder" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = _invoke(["report", str(synthetic_run), "--baseline", "mamba", "--out", str(tmp_path / "x.html")])
    assert res.returncode == 2 and "softmax/sdpa/full" in res.stderr and "Traceback" not in res.stderr
    res = _invoke(["export", str(synthetic_run), "--format", "xlsx"])
    assert res.returncode == 2 and "valid: csv, json, parquet" in res.stderr
    res = _invoke(["frontier", "--device-memory", "lots"])
    assert res.returncode == 2 and "80GiB" in res.stderr
