"""Gate test fixtures; helpers live in ``gate_helpers`` (this folder is put on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from gate_helpers import write_run  # noqa: E402


@pytest.fixture
def make_run(tmp_path):
    def _make(name, records, **kw):
        return write_run(tmp_path / name, records, **kw)
    return _make
