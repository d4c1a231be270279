"""Hardening test fixtures; helpers live in ``hardening_helpers`` (this folder is put on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hardening_helpers import cli  # noqa: E402,F401  (fixture)
