"""Messages between the sweep process and its workers: one JSON object per line.

Parent -> worker (the worker's stdin)::

    {"cmd": "point", "spec": {...PointSpec}, "settings": {...MeasureSettings}, "device_index": 0}
    {"cmd": "calibrate", "device": "cpu", "budget_s": 1.0}
    {"cmd": "exit"}

Worker -> parent (a dedicated pipe, so that anything a library prints to stdout cannot corrupt it)::

    {"type": "ready", "pid": 123, "import_s": 1.9, "worker": {...host, threads, device name...}}
    {"type": "record", "record": {...PointRecord}, "in_call_s": 1.2}
    {"type": "calibration", "calibration": {...}}

JSON only, never pickle: a worker message is data, not code.
"""

from __future__ import annotations

import json
from typing import Any


def encode(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":"), allow_nan=True) + "\n").encode()


def decode(line: bytes | str) -> dict[str, Any]:
    return json.loads(line)
