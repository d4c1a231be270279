"""The package layout reads as the data flow: no upward import, no import loop, no torch in analysis.

Walks every module's imports with ``ast`` (module-level and function-local alike; nothing is run)
and checks them against the order of the parts:

    core -> store -> kernels -> layers -> planning -> measure -> runner -> analysis -> report
         -> probes -> api -> cli

A module may import its own part and the parts before it, never a later one. Analysis and report work
from stored records only: they never import torch, kernels, layers, measure or runner, so a report can
be rebuilt on a laptop from a GPU run's folder.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "profiler"
ORDER = ("core", "store", "kernels", "layers", "planning", "measure", "runner", "analysis", "report", "probes",
         "api", "cli")
RANK = {p: i for i, p in enumerate(ORDER)}
#: the package root holds only the public entry points (``__init__`` re-exports the api lazily)
TOP = {"profiler", "profiler.__main__"}
STORED_ONLY = ("analysis", "report")
FORBIDDEN_IN_STORED_ONLY = ("torch", "triton", "fla", "profiler.kernels", "profiler.layers", "profiler.measure",
                            "profiler.runner")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_module(name: str, known: dict[str, Path]) -> bool:
    return name in known


def imports_of(source: str, me: str, is_package: bool, known) -> set[str]:
    """Every module ``me`` imports (``from pkg import submodule`` counts as the submodule only)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):   # type-only imports never run: drop ``if TYPE_CHECKING:`` bodies
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    pkg = me if is_package else me.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            if not subs or len(subs) < len(node.names):
                out.add(base)
            out.update(subs)
    return out


def part(name: str) -> str | None:
    if name in TOP:
        return None
    bits = name.split(".")
    if bits[0] != "profiler" or len(bits) < 2:
        return None
    return bits[1]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports_of(p.read_text(), m, p.name == "__init__.py", known) for m, p in known.items()}


def test_every_module_belongs_to_a_part():
    loose = [m for m in modules() if m not in TOP and part(m) not in RANK]
    assert not loose, f"modules outside the layout's parts: {loose}"


def test_no_upward_import():
    bad = []
    for mod, deps in graph().items():
        src = part(mod)
        if src is None:
            continue
        for dep in deps:
            if not dep.startswith("profiler"):
                continue
            dst = part(dep)
            if dst is None:
                bad.append(f"{mod} imports the package root ({dep})")
            elif RANK[dst] > RANK[src]:
                bad.append(f"{mod} ({src}) imports {dep} ({dst})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in g or w == v:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_loop():
    g = {m: {d for d in deps if d.startswith("profiler")} for m, deps in graph().items()}
    loops = _cycles(g)
    assert not loops, f"import loops: {loops}"


@pytest.mark.parametrize("stored_only", STORED_ONLY)
def test_analysis_and_report_use_stored_records_only(stored_only):
    bad = []
    for mod, deps in graph().items():
        if part(mod) != stored_only:
            continue
        for dep in deps:
            if any(dep == f or dep.startswith(f + ".") for f in FORBIDDEN_IN_STORED_ONLY):
                bad.append(f"{mod} imports {dep}")
    assert not bad, "\n".join(bad)


def test_the_checks_can_fail():
    """The walker sees function-local and relative imports, and finds loops (planted examples)."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    src = ("import math\nif TYPE_CHECKING:\n    import numpy\n"
           "def f():\n    from profiler.runner import sweep\n    from . import fits\n    import torch\n")
    known = {"profiler.runner.sweep", "profiler.analysis.fits"}
    deps = imports_of(src, "profiler.analysis.series", False, known)
    assert deps == {"math", "profiler.runner.sweep", "profiler.analysis.fits", "torch"}
    assert RANK[part("profiler.runner.sweep")] < RANK[part("profiler.analysis.series")]  # allowed by rank...
    assert any(d.startswith(f) for d in deps for f in FORBIDDEN_IN_STORED_ONLY)   # ...but forbidden to analysis
