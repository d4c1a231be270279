"""The multi-worker local executor with real pinned worker processes (2 CPU workers on this machine).

Workers use ``pinning.probe_measure`` (no torch import; it reports, at measurement time, the cores
every thread of the worker may run on), so the test is fast and checks pinning from inside.
"""

from __future__ import annotations

import os

import pytest

from profiler.core.records import MeasureSettings, PointSpec
from profiler.runner.base import PointQueue, RunEvents
from profiler.runner.multi import MultiExecutor
from profiler.runner.pinning import usable_cores
from profiler.store.runs import RunDir

PROBE = "tests.fakes.workers:probe_measure"

needs_two_cores = pytest.mark.skipif(len(usable_cores()) < 2, reason="needs 2 usable cores to pin 2 workers apart")


def _points():
    return [PointSpec(kernel=k, backend="torch", T=t) for k in ("retnet", "fox", "gsa") for t in (256, 512, 1024)]


def _run(points, fault="", tmp_path=None):
    env = dict(os.environ, SERPROF_MEASURE_FN=PROBE, SERPROF_FAKE_POINT_S="0.05", SERPROF_TEST_FAULT=fault)
    ex = MultiExecutor.for_cpu(2, env=env, log_dir=tmp_path)
    got = []
    try:
        ex.run(PointQueue(points), MeasureSettings(point_timeout_s=30, processes=1), RunEvents(on_record=got.append))
    finally:
        ex.close()
    return got, ex


@needs_two_cores
def test_two_pinned_workers_do_every_point_once_and_never_share_a_core(tmp_path):
    pts = _points()
    recs, ex = _run(pts, tmp_path=tmp_path / "logs")
    assert sorted(r.id for r in recs) == sorted(p.id for p in pts)          # every point exactly once
    assert all(r.status == "ok" for r in recs)
    by_slot: dict[int, set[int]] = {}
    for r in recs:
        w = r.worker
        assert w["affinity"] == w["pinned_cores"]                            # what the worker reports at start
        assert set(r.extra["thread_cores"]) <= set(w["pinned_cores"])      # every thread, while measuring
        assert w["pinned_threads"] == len(w["pinned_cores"])
        by_slot.setdefault(w["worker_slot"], set()).update(w["pinned_cores"])
    assert sorted(by_slot) == [0, 1]                                          # both workers measured
    assert not (by_slot[0] & by_slot[1])                                      # no core shared
    assert len({r.extra["pid"] for r in recs}) == 2
    desc = ex.describe()
    assert desc["workers"] == 2 and [s["cores"] for s in desc["slots"]] == [sorted(by_slot[0]), sorted(by_slot[1])]
    assert "disjoint cores" in desc["pinning"] and ex.stats.worker_starts == 2

    run = RunDir.create(tmp_path / "run", _manifest())                       # records merge into one run
    for r in recs:
        run.append(r)
    loaded = run.load()
    assert sorted(r.id for r in loaded.records) == sorted(p.id for p in pts) and not loaded.warnings


@needs_two_cores
def test_a_crashing_worker_is_replaced_and_the_other_slot_goes_on():
    pts = _points()
    recs, ex = _run(pts, fault="segv@kernel/fox/torch/cpu/float32/fwd/B1/T512/")
    by_id = {r.id: r for r in recs}
    assert len(recs) == len(pts) == len(by_id)
    crashed = by_id[pts[4].id]
    assert crashed.status == "crashed" and "SIGSEGV" in crashed.reason
    assert all(r.status == "ok" for r in recs if r.spec.kernel != "fox" or r.spec.T == 256)
    # a replacement starts when the crashed worker's slot gets another point (under load the other
    # slot may take every remaining point first); then it runs in a fresh process
    slot = crashed.worker["worker_slot"]
    later = [r for r in recs[recs.index(crashed) + 1:] if r.worker and r.worker.get("worker_slot") == slot]
    assert ex.stats.worker_starts == 2 + (1 if later else 0), (ex.stats, [r.id for r in later])
    assert all(r.extra["pid"] != crashed.worker.get("pid") for r in later)


def _manifest():
    from profiler.core.records import Manifest

    return Manifest(run_id="t", created_at="2024-01-01T00:00:00+00:00", scenario={}, environment={})
