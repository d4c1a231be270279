"""Which ``fla.ops`` op families serprof measures, and why each other one is left out (issue 17 item 2).

Found by reading the installed fla's ``fla/ops/<family>/__init__.py`` sources (``ast``; fla, Triton and
torch are not imported): a family's *entry points* are the names it exports that start with
``chunk_``, ``parallel_``, ``fused_chunk_`` or ``fused_recurrent_``. A family is

* ``covered``: a serprof kernel runs its fla functions as backends (``COVERED``);
* ``left out`` with a reason: shared building blocks (``NOT_MECHANISMS``), no chunk / parallel /
  fused-chunk entry point (the catalogue's rule), or not yet described as a kernel.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from profiler.kernels import catalog, catalog_attn, catalog_delta, catalog_memory

#: fla.ops family -> the serprof kernel whose backends call it.
COVERED = {"attn": "softmax", "retention": "retnet", "lightnet": "lightnet", "gsa": "gsa",
           "forgetting_attn": "fox", "kda": "kda", **catalog.COVERED}
COVERED.update(catalog_delta.COVERED)
COVERED.update(catalog_attn.COVERED)
COVERED.update(catalog_memory.COVERED)
#: fla.ops family -> why its (declarative) kernel has no timed CPU backend.
NO_CPU: dict[str, str] = {**catalog_attn.NO_CPU, **catalog_memory.NO_CPU}
#: fla.ops family -> what its row adds after "measured as kernel ..." (other kernels, no CPU backend).
COVERAGE_NOTES: dict[str, str] = dict(catalog_delta.COVERAGE_NOTES)
#: Packages of fla.ops that are not an attention mechanism.
NOT_MECHANISMS = {"common": "shared chunk building blocks (chunk_h, chunk_o, ...), not a mechanism",
                  "utils": "cumulative-sum and packing utilities, not a mechanism",
                  "cp": "context-parallel helpers, not a mechanism",
                  "atk": "the ATK preconditioner's sub-kernels (chunk_atk_fwd/bwd), shared by precond_gated_delta_rule "
                         "and precond_kda and measured inside those kernels; not a mechanism of its own"}
#: Families with chunk / parallel entry points that are not (yet) kernels, and why: what keeps each one
#: from being a row of ``profiler.kernels.catalog.FAMILIES`` (a configuration of the chunkwise engine).
NOT_YET_REASONS = {
    "titans": "chunk_titans_linear is plain PyTorch (fla/ops/titans/naive.py, no Triton kernel): nothing of "
              "fla's own to time or to verify under Triton's interpreter",
    "path_attn": "PaTH attention: parallel_path_attn (fp32, under Triton's interpreter) is 4e-5 relative off "
                 "naive_path_attn and an exact fp64 token loop as soon as T spans two 64-token blocks (exact "
                 "within one block), above serprof's fp32 tolerance 1e-5; left out until that is understood",
    "moba": "parallel_moba composes flash-attn's flash_attn_varlen_func in Python (no fla Triton kernel): needs "
            "the flash-attn package and cannot run under Triton's interpreter; not yet described",
}
NOT_YET_REASONS.update(catalog_delta.LEFT_OUT)
ENTRY_PREFIXES = ("chunk_", "parallel_", "fused_chunk_", "fused_recurrent_")
TIMED_PREFIXES = ("chunk_", "parallel_", "fused_chunk_")
NOT_YET = "not yet described as a serprof kernel (inputs, reference, models): issue 17 item 2"


def _exports(init: Path) -> list[str]:
    """Names in ``__all__`` of a package ``__init__.py`` (else the names it imports), statically."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            try:
                return [str(x) for x in ast.literal_eval(node.value)]
            except ValueError:
                break
    return [a.asname or a.name for node in tree.body if isinstance(node, ast.ImportFrom) for a in node.names]


def fla_ops_dir() -> Path | None:
    """The installed ``fla/ops`` folder, or None when fla is not installed."""
    spec = importlib.util.find_spec("fla")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "ops"
    return path if path.is_dir() else None


def coverage() -> list[dict[str, Any]]:
    """One row per ``fla.ops`` family: ``family``, ``entry_points``, ``covered``, ``kernel``, ``reason``."""
    ops = fla_ops_dir()
    if ops is None:
        return []
    rows = []
    for d in sorted(p for p in ops.iterdir() if (p / "__init__.py").is_file()):
        fam = d.name
        entries = sorted(n for n in _exports(d / "__init__.py") if n.startswith(ENTRY_PREFIXES))
        kernel = COVERED.get(fam)
        if kernel is not None:
            reason = f"measured as kernel {kernel!r}" + COVERAGE_NOTES.get(fam, "")
            if fam in NO_CPU:
                reason += f" (fla backends only; no timed CPU backend: {NO_CPU[fam]})"
        elif fam in NOT_MECHANISMS:
            reason = NOT_MECHANISMS[fam]
        elif not any(n.startswith(TIMED_PREFIXES) for n in entries):
            reason = ("no chunk, parallel or fused-chunk entry point"
                      + (f" (only {', '.join(entries)})" if entries else ""))
        else:
            reason = NOT_YET_REASONS.get(fam, NOT_YET)
        rows.append({"family": fam, "entry_points": entries, "covered": kernel is not None, "kernel": kernel,
                     "reason": reason})
    return rows
