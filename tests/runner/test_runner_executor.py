"""The local executor's failure isolation, through real worker processes.

Workers use the test-only fake measurement (``SERPROF_MEASURE_FN``: no torch import, so they start in
a fraction of a second) and the fault seam (``SERPROF_TEST_FAULT``) to crash, hang or fail allocation
at chosen points.
"""

from __future__ import annotations

import os

import pytest

from profiler.core.records import MeasureSettings, PointSpec
from profiler.runner.base import PointQueue, RunEvents
from profiler.runner.local import LocalExecutor

FAKE = "tests.fakes.workers:fake_measure"


def _points(lengths=(256, 512, 1024, 2048), kernel="retnet"):
    return [PointSpec(kernel=kernel, backend="torch", T=t) for t in lengths]


def _run(points, fault: str = "", timeout_s: float = 30.0, extra_env=None, processes: int = 1):
    env = dict(os.environ, SERPROF_MEASURE_FN=FAKE, SERPROF_TEST_FAULT=fault)
    env.update(extra_env or {})
    ex = LocalExecutor(env=env)
    got = []
    starts = []
    try:
        ex.run(PointQueue(points), MeasureSettings(point_timeout_s=timeout_s, processes=processes),
               RunEvents(on_record=got.append, on_point_start=starts.append))
    finally:
        ex.close()
    return got, starts, ex


def _by_T(records):
    return {r.spec.T: r for r in records}


@pytest.mark.parametrize("kind, signame", [("segv", "SIGSEGV"), ("abort", "SIGABRT"), ("sigkill", "SIGKILL")])
def test_worker_crash_becomes_crashed_record_and_fresh_worker_continues(kind, signame):
    pts = _points((256, 512, 1024), kernel="softmax") + _points((256, 512), kernel="retnet")
    recs, _, ex = _run(pts, fault=f"{kind}@softmax/torch/cpu/float32/fwd/B1/T512/")
    assert [r.id for r in recs if r.spec.kernel == "retnet"] == [p.id for p in pts[3:]]
    crashed = _by_T([r for r in recs if r.spec.kernel == "softmax"])[512]
    assert crashed.status == "crashed"
    assert signame in crashed.reason
    assert len(recs) == len(pts) and len({r.id for r in recs}) == len(pts)
    assert ex.stats.worker_starts == 2          # the crashed worker was replaced once
    after = _by_T([r for r in recs if r.spec.kernel == "softmax"])[1024]
    if kind == "sigkill":                       # likely the OOM killer: longer points are not tried
        assert after.status == "skipped" and "T=512" in after.reason
    else:
        assert after.status == "ok"
    if kind == "segv":                          # the fault handler's headline reaches the reason
        assert "Segmentation fault" in crashed.reason


def test_hanging_point_times_out_and_the_sweep_goes_on():
    pts = _points((256, 512), kernel="softmax") + _points((256,), kernel="retnet")
    recs, _, _ = _run(pts, fault="hang@softmax/torch/cpu/float32/fwd/B1/T256/", timeout_s=1.5)
    by_id = {r.id: r for r in recs}
    hung = by_id[pts[0].id]
    assert hung.status == "timeout" and "1.5 s" in hung.reason
    assert by_id[pts[1].id].status == "skipped" and "timeout at T=256" in by_id[pts[1].id].reason
    assert by_id[pts[2].id].status == "ok"


def test_allocation_failure_is_oom_and_skips_longer_points_of_the_series_only():
    pts = _points((256, 512, 1024, 2048))
    other = [PointSpec(kernel="retnet", backend="torch", T=4096, H=8)]   # another series
    recs, starts, ex = _run(pts + other, fault="alloc@/T512/H4/")
    by_T = _by_T([r for r in recs if r.spec.H == 4])
    assert by_T[256].status == "ok"
    assert by_T[512].status == "oom"
    assert "allocate" in by_T[512].reason
    for t in (1024, 2048):
        assert by_T[t].status == "skipped"
        assert by_T[t].reason.startswith("OOM at T=512,B=1")
    assert [r.status for r in recs if r.spec.H == 8] == ["ok"]
    assert [s.T for s in starts] == [256, 512, 4096]     # skipped points never reached a worker
    assert ex.stats.worker_starts == 1                   # the worker survived the OOM


def test_exception_in_point_is_crashed_with_text_and_worker_survives():
    recs, _, ex = _run(_points((256, 512)), fault="raise@/T256/")
    assert recs[0].status == "crashed"
    assert "RuntimeError: injected failure inside the point" in recs[0].reason
    assert recs[1].status == "ok"
    assert ex.stats.worker_starts == 1


def test_sticky_cuda_fault_replaces_the_worker_so_later_points_of_other_kernels_still_run():
    """A poisoned CUDA context fails every later call of its process: the worker must not be reused."""
    pts = _points((256, 512), kernel="gla") + _points((256, 512), kernel="retnet")
    recs, _, ex = _run(pts, fault="cudafault@gla/torch/cpu/float32/fwd/B1/T256/")
    by_id = {r.id: r for r in recs}
    bad = by_id[pts[0].id]
    assert bad.status == "crashed" and "misaligned address" in bad.reason and "worker was replaced" in bad.reason
    assert [by_id[p.id].status for p in pts[1:]] == ["ok", "ok", "ok"], [by_id[p.id].reason for p in pts[1:]]
    assert ex.stats.worker_faults == 1 and ex.stats.worker_starts == 2


def test_a_library_declining_this_machine_is_unavailable_with_its_words_and_the_worker_survives():
    recs, _, ex = _run(_points((256, 512)), fault="refuse@/T256/")
    assert recs[0].status == "unavailable"
    assert "declines this machine" in recs[0].reason and "Please upgrade Triton to >= 3.7.1" in recs[0].reason
    assert recs[1].status == "ok" and ex.stats.worker_starts == 1


def test_records_carry_worker_info_and_wall_time():
    recs, _, _ = _run(_points((256,)))
    (r,) = recs
    assert r.status == "ok"
    assert r.worker["pid"] != os.getpid()           # measured in a worker, never in this process
    assert r.worker["host"] and r.wall_s is not None and r.wall_s > 0
    assert r.started_at


def test_replicated_point_is_measured_once_in_each_of_n_distinct_processes():
    recs, _, ex = _run(_points((256, 512, 1024)), processes=3)
    assert [r.status for r in recs] == ["ok"] * 3
    assert ex.stats.worker_starts == 3                       # three long-lived workers, started once
    firsts = []
    for r in recs:
        assert r.timing.process_counts == (3, 3, 3) and r.timing.processes == 3
        assert len(r.timing.samples_s) == 9 and [len(g) for g in r.timing.process_groups()] == [3, 3, 3]
        pids = r.worker["process_pids"]
        assert len(set(pids)) == 3
        firsts.append(pids[0])
        seen = r.extra["settings_seen"]                      # the first replica's settings
        assert seen["verify"] and seen["measure_memory"] and seen["processes"] == 1
        assert seen["time_budget_s"] == pytest.approx(MeasureSettings().time_budget_s / 3)
    assert len(set(firsts)) == 3                             # no process is always first


def test_replicated_point_crash_is_a_record_and_the_replica_is_replaced():
    recs, _, ex = _run(_points((256, 512)), processes=2, fault="raise@T256/")
    by = _by_T(recs)
    assert by[256].status == "crashed" and by[512].status == "ok"
    assert by[512].timing.process_counts == (3, 3)
