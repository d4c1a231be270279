"""A test-only knob that makes chosen points slower by a known fraction (the gate's detection check).

``SERPROF_INJECT_SLOWDOWN="FRACTION"`` slows every point, ``"PATTERN=FRACTION[;PATTERN=FRACTION]"``
the points whose id contains PATTERN (e.g. ``retnet/torch=0.15``). Each call is followed by a busy
wait of ``FRACTION`` times that call's own duration, so a point becomes exactly ``1 + FRACTION``
times slower whatever its size, noise included. Host time only: on CUDA the wait does not lengthen
device time. Records measured with it carry ``extra.injected_slowdown``; ``serprof gate-eval`` sets
it in the candidate's workers, never a user.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from typing import Any, Callable

ENV_VAR = "SERPROF_INJECT_SLOWDOWN"


def parse(text: str) -> list[tuple[str, float]]:
    """``[(pattern, fraction)]`` from the knob's text (a bare fraction matches every point)."""
    out = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        pattern, _, value = part.rpartition("=")
        try:
            fraction = float(value)
        except ValueError:
            raise ValueError(f"{ENV_VAR}: {part!r} is not PATTERN=FRACTION or FRACTION") from None
        if not math.isfinite(fraction) or fraction < 0:
            raise ValueError(f"{ENV_VAR}: the fraction in {part!r} must be finite and >= 0")
        out.append((pattern, fraction))
    return out


def fraction_for(point_id: str, environ: Any = os.environ) -> float:
    """The slowdown the knob asks for this point (0 when unset or not matching)."""
    text = environ.get(ENV_VAR, "")
    for pattern, fraction in parse(text) if text else []:
        if pattern in point_id:
            return fraction
    return 0.0


def slowed(call: Callable[[], Any], fraction: float, clock_ns: Callable[[], int] = time.perf_counter_ns) -> Callable[[], Any]:
    """``call`` followed by a busy wait of ``fraction`` times its own duration."""
    def slow_call() -> Any:
        t0 = clock_ns()
        out = call()
        end = t0 + (clock_ns() - t0) * (1.0 + fraction)
        while clock_ns() < end:
            pass
        return out

    return slow_call


def apply(work, point_id: str, environ: Any = os.environ):
    """The workload with its call slowed when the knob names this point (else unchanged)."""
    fraction = fraction_for(point_id, environ)
    if fraction <= 0:
        return work
    return replace(work, call=slowed(work.call, fraction), extra={**work.extra, "injected_slowdown": fraction})
