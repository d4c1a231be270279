"""PointQueue: plan order and the skips that follow an OOM (pure, no processes)."""

from __future__ import annotations

from profiler.core.records import PointRecord, PointSpec
from profiler.runner.base import PointQueue


def _spec(T, B=1, kernel="retnet"):
    return PointSpec(kernel=kernel, backend="torch", T=T, B=B)


def test_order_is_kept_and_oom_caps_only_larger_tokens_of_the_same_series():
    pts = [_spec(1024, 1), _spec(512, 4), _spec(4096, 1), _spec(256, 8), _spec(8192, 1), _spec(8192, 1, "fox")]
    q = PointQueue(pts)
    first, skipped = q.next()
    assert first == pts[0] and skipped == []
    q.report(PointRecord(spec=first, status="oom", reason="x"))  # tokens = 1024
    nxt, skipped = q.next()
    # T=512,B=4 has 2048 tokens > 1024 -> skipped; T=4096 skipped too; T=256,B=8 (2048) skipped
    assert nxt == pts[5]
    assert [r.spec for r in skipped] == pts[1:5]
    assert all(r.status == "skipped" and r.reason.startswith("OOM at T=1024,B=1") for r in skipped)
    assert q.next() == (None, [])


def test_non_failures_do_not_skip_and_smaller_points_still_run():
    pts = [_spec(256), _spec(512), _spec(128)]
    q = PointQueue(pts)
    s, _ = q.next()
    q.report(PointRecord(spec=s, status="wrong", reason="mismatch"))
    s2, sk = q.next()
    assert s2 == pts[1] and sk == []
    q.report(PointRecord(spec=s2, status="timeout", reason="slow"))
    s3, sk = q.next()
    assert s3 == pts[2] and sk == []          # 128 tokens < 512: still worth running
    assert len(q) == 0
