"""The README's "Python API" example runs as written (issue 16): measures one point and sweeps 10 on CPU.

The block is read from README.md and executed unchanged in a temporary working folder, so its
relative output paths land there; if the README example breaks, this test fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section holds one ```python block"
    return blocks[0]


@pytest.mark.long
def test_readme_python_api_example_runs_as_written(tmp_path, monkeypatch, capsys):
    import profiler
    from profiler.analysis.compare import GateResult

    code = readme_example()
    for call in ("profiler.measure(", "profiler.sweep(", "profiler.load(", ".to_pandas()", "profiler.analyze(",
                 "profiler.report(", "profiler.gate("):
        assert call in code
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, str(README) + ":Python API", "exec"), ns)   # noqa: S102 - our own README

    rec, run, df, res, verdict = ns["rec"], ns["run"], ns["df"], ns["res"], ns["verdict"]
    assert rec.status == "ok" and rec.spec.T == 1024 and rec.timing.median_s > 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == repr(rec) and printed[0].startswith("retnet/torch cpu float32 fwd B=1 T=1024 H=4 D=64: ")
    assert isinstance(run, profiler.Run) and run.path == Path(ns["path"])
    assert (tmp_path / ns["path"] / "manifest.json").is_file() and (tmp_path / ns["html_path"]).is_file()
    kernels = {(r.spec.kernel, r.spec.T) for r in run.records}
    assert kernels == {(k, T) for k in ("retnet", "softmax") for T in (256, 512)}
    assert all(r.status == "ok" for r in run.records)
    assert len(df) == len(run.records) and set(df["T"]) == {256, 512}
    assert len(res.fits) >= 2 and res.baseline is not None
    assert isinstance(verdict, GateResult) and verdict.passed and not verdict.regressions
