"""Run ``serprof verify`` checks in one fresh Triton-interpreted process and judge the rows (kernel tests)."""

from __future__ import annotations

from typing import Mapping

from profiler.kernels.interpret import run_isolated


def run_interpreted(runs: list) -> list[dict]:
    """``verify_many`` keyword sets, one after the other in one interpreted child: the results as dicts."""
    return run_isolated("profiler.measure.verify:verify_many_json", {"runs": runs}, timeout_s=1200)


def check_rows(rows: list[dict], tol: float | Mapping[str, float]) -> None:
    """Every row ran interpreted and causal, without error, within ``tol`` (one number, or per dtype) for
    the output and, for fwd+bwd rows, the gradients."""
    assert rows
    for r in rows:
        assert r["error"] is None, (r["kernel"], r["backend"], r["error"])
        c = r["correctness"]
        limit = tol[r["dtype"]] if isinstance(tol, Mapping) else tol
        assert r["interpret"] and r["causal"]
        assert c["max_rel_err"] <= limit, (r["kernel"], r["backend"], r["against"], c)
        if r["mode"] == "fwdbwd":
            assert c["grad_max_rel_err"] is not None and c["grad_max_rel_err"] <= limit, (r["kernel"], r["backend"], c)
        assert r["passed"]
