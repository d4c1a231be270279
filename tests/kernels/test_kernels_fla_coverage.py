"""Issue 17 item 2 (listing only): every fla.ops family of the installed fla is covered or has a reason."""

from __future__ import annotations

import json
import sys

import pytest

from profiler.cli import main
from profiler.kernels import fla_coverage, registry


def test_every_family_is_listed_with_a_kernel_or_a_reason():
    rows = fla_coverage.coverage()
    if not rows:
        pytest.skip("fla is not installed")
    by = {r["family"]: r for r in rows}
    assert by["attn"]["covered"] and by["attn"]["kernel"] == "softmax"
    assert "chunk_retention" in by["retention"]["entry_points"] and by["retention"]["kernel"] == "retnet"
    for fam, kernel in fla_coverage.COVERED.items():       # the map names real families and real kernels
        assert by[fam]["covered"] and kernel in registry()
    assert "only fused_recurrent_rwkv4" in by["rwkv4"]["reason"]
    assert by["common"]["reason"].endswith("not a mechanism")
    assert all(r["covered"] or r["reason"] for r in rows)


def test_static_read_does_not_import_fla():
    import subprocess

    code = ("import sys; from profiler.kernels.fla_coverage import coverage; rows = coverage(); "
            "print(len(rows), 'fla' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"] and int(out[0]) >= 0


def test_cli_list_fla_json(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["list", "--fla", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert exc.value.code in (0, None) and rows == fla_coverage.coverage()
