"""Kernel tests: shared checks live in ``interpreted_checks`` (interpreted fla) and ``backend_checks`` (torch
backend vs reference); this folder is put on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
