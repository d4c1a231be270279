"""Imports sit at the top of modules; slow and optional modules go through one lazy boundary.

``profiler.core.lazy.lazy_import`` is the boundary (its docstring says what goes through it). These
tests count the import statements left inside functions, check that the CLI's help and ``import
profiler`` stay free of torch, and that the proxy behaves like the module it stands for.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

from profiler.core.lazy import available, is_loaded, lazy_import

ROOT = Path(__file__).resolve().parents[2] / "profiler"

#: function-local import statements allowed in ``profiler/`` (the lazy boundary needs none)
ALLOWED_LOCAL_IMPORTS = 0


def local_imports(source: str) -> list[int]:
    """Line numbers of import statements inside function bodies."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out += [s.lineno for s in ast.walk(node) if isinstance(s, (ast.Import, ast.ImportFrom))]
    return sorted(set(out))


def test_imports_are_at_the_top_of_modules():
    found = {str(p.relative_to(ROOT.parent)): local_imports(p.read_text()) for p in sorted(ROOT.rglob("*.py"))}
    found = {k: v for k, v in found.items() if v}
    count = sum(len(v) for v in found.values())
    assert count <= ALLOWED_LOCAL_IMPORTS, (
        f"{count} function-local imports (allowed {ALLOWED_LOCAL_IMPORTS}); move them to the top of the module, "
        f"or bind a slow/optional module with profiler.core.lazy.lazy_import: {found}")


def test_the_counter_sees_nested_and_method_imports():
    src = "import os\nclass A:\n    def f(self):\n        def g():\n            import torch\n        from x import y\n"
    assert local_imports(src) == [5, 6]


@pytest.mark.parametrize("code", [
    "from profiler.cli import app",                         # what `serprof --help` imports
    "import profiler, profiler.report, profiler.measure; profiler.sweep; profiler.load",
])
def test_help_and_package_import_do_not_import_torch(code):
    probe = (f"import sys\n{code}\n"
             "heavy = [m for m in ('torch', 'fla', 'triton', 'matplotlib', 'pandas') if m in sys.modules]\n"
             "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"{code!r} imported {out.stdout.strip()}"


def test_serprof_help_does_not_import_torch():
    probe = ("import sys\nsys.argv = ['serprof', '--help']\nfrom profiler.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "Usage" in out.stdout and out.stderr.strip().endswith("NO-TORCH"), out.stderr[-500:]


def test_lazy_module_loads_on_first_use_and_forwards_attributes(monkeypatch):
    name = "serprof_lazy_probe_mod"
    mod = types.ModuleType(name)
    mod.value = 41
    monkeypatch.setitem(sys.modules, name, mod)
    proxy = lazy_import(name)
    assert not is_loaded(proxy) and "not loaded" in repr(proxy)
    assert proxy.value == 41 and is_loaded(proxy)
    proxy.value = 42                       # a patch through the proxy reaches the real module
    assert mod.value == 42
    monkeypatch.setattr(proxy, "value", 7)
    assert mod.value == 7


def test_missing_module_fails_where_it_is_used_not_where_it_is_bound():
    proxy = lazy_import("serprof_no_such_module_xyz")
    assert not available("serprof_no_such_module_xyz") and not available("serprof_no_such_pkg.sub")
    assert available("json")
    with pytest.raises(ModuleNotFoundError):
        proxy.anything
