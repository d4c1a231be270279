"""The frontier probe (``profiler.probes.frontier``): device-size parsing, and fla's host code run dry."""

from __future__ import annotations

import pytest

from profiler.core.errors import UsageError
from profiler.probes.frontier import parse_bytes, probe_frontier


def test_parse_bytes():
    assert parse_bytes("80GiB") == 80 * 2**30
    assert parse_bytes("24GB") == 24 * 10**9
    assert parse_bytes("16e9") == 16 * 10**9
    assert parse_bytes("512 MiB") == 512 * 2**20
    for bad in ("lots", "-1GiB", "80XB", ""):
        with pytest.raises(UsageError, match="device-memory"):
            parse_bytes(bad)


@pytest.mark.interpret
def test_frontier_probe_dry_fla_retnet():
    """fla's chunk_retention host code, run dry on CPU: allocations linear in T, answer fits the size."""
    mem = 2**30
    res = probe_frontier(mem, kernels=["retnet"], dtype="float32", Ts=(256, 512, 1024))
    dry = [r for r in res if r.method == "fla-dry"]
    assert len(dry) == 1, [(r.backend, r.method, r.note) for r in res]
    r = dry[0]
    (t0, b0), (t1, b1), (t2, b2) = r.measured
    assert b1 - b0 == pytest.approx((b2 - b1) / 2, rel=0.01)      # exactly linear in T
    assert b0 >= 3 * 256 * 4 * 64 * 4                               # at least q, k, v
    assert 0 < r.max_T and r.bytes_at_max_T <= mem
    assert r.bytes_at_max_T + (b1 - b0) / (t1 - t0) * 64 > mem      # the next chunk would not fit
