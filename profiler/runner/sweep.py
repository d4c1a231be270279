"""Run a sweep end to end: plan -> run folder -> calibration -> executor -> records -> manifest.

``run_sweep`` is the library entry point behind ``serprof sweep`` (the CLI only parses flags and
renders). Guarantees:

* every finished point is appended to ``points.jsonl`` (fsync'ed) the moment it ends;
* points predicted to exceed the memory budget are recorded as ``skipped`` before anything runs;
* ``resume=RUN_DIR`` re-plans from the run's stored scenario and runs exactly the points with no
  record; nothing is duplicated;
* ``KeyboardInterrupt`` stops the worker, keeps what finished, and returns ``interrupted=True``.

Overhead accounting (stored in ``manifest.notes.sessions``): wall time of the session, time inside
timed and warm-up calls (sum over points of ``timing.warmup_s + sum(samples_s) * calls_per_sample``),
worker start-up (imports) and calibration time, so the share of wall time spent measuring is known.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from profiler.core.console import shell_quote
from profiler.core.errors import UnavailableError, UsageError
from profiler.core.paths import check_appendable
from profiler.core.records import Manifest, PointRecord, PointSpec, to_dict
from profiler.core.version import __version__
from profiler.planning.estimate import estimate
from profiler.planning.points import Plan, make_plan, registry_for
from profiler.planning.scenario import SweepSpec, spec_from_dict
from profiler.runner.base import Executor, PointQueue, RunEvents
from profiler.runner.env import fingerprint, torch_info
from profiler.runner.local import LocalExecutor
from profiler.store.lock import RunLock, create_locked, stale_warning
from profiler.store.runs import POINTS, RunDir, new_run_id, read_records, utc_now


class SweepObserver:
    """Progress callbacks for a presentation layer (the CLI). Every method is optional."""

    def on_plan(self, plan: Plan, todo: list[PointSpec], run_dir: Path, resumed: bool) -> None: ...
    def on_calibration(self, calibration: Mapping[str, Any] | None) -> None: ...
    def on_worker_ready(self, info: Mapping[str, Any]) -> None: ...
    def on_point_start(self, spec: PointSpec) -> None: ...
    def on_record(self, record: PointRecord) -> None: ...


@dataclass
class SweepResult:
    run_dir: Path
    plan: Plan
    records: list[PointRecord] = field(default_factory=list)   # written by this session
    counts: dict[str, int] = field(default_factory=dict)        # all records of the run, by status
    wall_s: float = 0.0
    in_call_s: float = 0.0
    interrupted: bool = False
    resumed: bool = False
    warnings: list[str] = field(default_factory=list)
    session: dict[str, Any] = field(default_factory=dict)

    @property
    def in_call_share(self) -> float | None:
        return self.in_call_s / self.wall_s if self.wall_s > 0 else None


def in_call_seconds(rec: PointRecord) -> float:
    """Seconds this point spent inside warm-up and timed calls."""
    t = rec.timing
    if t is None:
        return 0.0
    return float(t.warmup_s or 0.0) + float(sum(t.samples_s)) * max(1, int(t.calls_per_sample or 1))


def default_out(sweep: SweepSpec) -> Path:
    return Path("reports") / new_run_id(sweep.name)


def _manifest(plan: Plan, run_id: str, executor: Executor) -> Manifest:
    return Manifest(
        run_id=run_id,
        created_at=utc_now(),
        scenario=plan.sweep.to_dict(),
        environment=fingerprint(device=plan.sweep.device, with_torch=False),  # torch details: see _merge_torch_env
        settings=plan.sweep.settings,
        serprof_version=__version__,
        notes={
            "dropped": [{"what": d.what, "reason": d.reason} for d in plan.dropped],
            "memory_budget_bytes": plan.memory_budget_bytes,
            "memory_budget_source": plan.budget_source,
            "planned_points": len(plan.points),
            "planned_ids": [p.spec.id for p in plan.points],   # what `serprof status` counts against
            "execution": executor.describe(),
            "sessions": [],
            "groups": _groups(plan),
        },
    )


def _groups(plan: Plan) -> dict[str, str]:
    """``{kernel: KernelSpec.group}`` of the planned kernels: the report groups by it from the run alone."""
    entries = registry_for("kernel")
    names = dict.fromkeys(p.spec.kernel for p in plan.points if p.spec.level == "kernel")
    return {k: str(entries[k].group) for k in names if k in entries and getattr(entries[k], "group", None)}


def open_for_resume(path: str | Path) -> tuple[RunDir, SweepSpec, list[str]]:
    """Open a run folder to continue it: ``(run, its stored scenario, load warnings)``."""
    run = RunDir.open(path)
    loaded = run.load()
    scen = loaded.manifest.scenario
    if not scen:
        raise UsageError(f"{run.path}: the manifest has no scenario to resume")
    sweep = spec_from_dict(scen, f"{run.path}/manifest.json: scenario")
    return run, sweep, loaded.warnings


class StoreFailed(Exception):
    """Appending a finished point to the run folder failed: the sweep stops (nothing more is measured)."""


def resume_hint(run_dir: Path) -> str:
    return f"finished points are kept in {run_dir}; resume with: serprof sweep --resume {shell_quote(str(run_dir))}"


def check_plan_not_empty(plan: Plan) -> None:
    """An empty plan says why every combination was dropped: exit 3 (``UnavailableError``) when every
    one was dropped because its backend is unavailable on this device (``--backend fla`` on CPU), else a
    usage error (exit 2: combinations that cannot exist anywhere, an empty selection)."""
    if plan.points:
        return
    why = "; ".join(f"{d.what}: {d.reason}" for d in plan.dropped[:5])
    more = f" (+{len(plan.dropped) - 5} more)" if len(plan.dropped) > 5 else ""
    if not why:
        why = _selection_reason(plan.sweep)
    if plan.dropped and all(d.unavailable for d in plan.dropped):
        raise UnavailableError("the sweep plans no point here: " + why + more)
    raise UsageError("the sweep plans no point: " + why + more)


def _selection_reason(sweep: SweepSpec) -> str:
    """Why a selection without dropped combinations is empty (kernels and backends that do not meet)."""
    try:
        reg = registry_for(sweep.level)
        names = sweep.kernels or tuple(reg)
        parts = [f"{n} has backends {', '.join(reg[n].backends)}" for n in names if n in reg]
    except Exception:  # noqa: BLE001 - only a message
        parts = []
    if sweep.backends and parts:
        return f"no selected kernel has backend {', '.join(sweep.backends)} ({'; '.join(parts)})"
    return "nothing matches the selection"


def run_sweep(sweep: SweepSpec | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
              observer: SweepObserver | None = None, executor: Executor | None = None,
              calibrate: bool = True, calibration_budget_s: float = 1.0,
              rerun: tuple[str, ...] = ()) -> SweepResult:
    """Plan and run a sweep (or continue one with ``resume``); see the module docstring.

    The run folder's writer lock (``profiler.store.lock``) is held from before the done points are
    read until the manifest's last write: a second writer fails with ``UsageError`` (exit 2).
    ``rerun`` (with ``resume``): point ids containing any of these substrings are measured again even
    though they have a record; their new records carry ``extra.rerun = true`` and then replace the
    old ones on load (``profiler.store.runs.read_records``).
    """
    if resume is not None:
        RunDir.open(resume)   # the usual "not a run folder" errors before any lock file is made
        lock = RunLock(resume)
        with lock:
            return _run_sweep_locked(sweep, out=out, resume=resume, observer=observer, executor=executor,
                                     calibrate=calibrate, calibration_budget_s=calibration_budget_s,
                                     rerun=rerun, lock=lock)
    if rerun:
        raise UsageError("--rerun re-measures points of an existing run: use it with --resume")
    return _run_sweep_locked(sweep, out=out, resume=None, observer=observer, executor=executor,
                             calibrate=calibrate, calibration_budget_s=calibration_budget_s, rerun=(), lock=None)


def _run_sweep_locked(sweep, *, out, resume, observer, executor, calibrate, calibration_budget_s, rerun,
                      lock: RunLock | None) -> SweepResult:
    obs = observer or SweepObserver()
    t_start = time.perf_counter()
    warnings: list[str] = []
    if resume is not None:
        run, sweep, warnings = open_for_resume(resume)
    elif sweep is None:
        raise ValueError("run_sweep needs a sweep or resume")
    plan = make_plan(sweep)
    check_plan_not_empty(plan)

    if executor is None:
        executor = LocalExecutor()
    if resume is None:
        path = Path(out) if out is not None else default_out(plan.sweep)
        run, lock = create_locked(path, lambda name: _manifest(plan, name, executor))
    assert lock is not None
    try:
        return _run_locked_body(plan, run, obs, executor, calibrate, calibration_budget_s, rerun, resume,
                                warnings, t_start, lock)
    finally:
        if resume is None:
            lock.release()


def _run_locked_body(plan, run, obs, executor, calibrate, calibration_budget_s, rerun, resume, warnings,
                     t_start, lock) -> SweepResult:
    stale = stale_warning(lock)
    if stale:
        warnings = [stale] + list(warnings)
    check_appendable(run.path / POINTS, resume_hint(run.path))
    if getattr(executor, "log_dir", "n/a") is None:
        executor.log_dir = run.path / "workers"  # type: ignore[attr-defined]

    done = run.done_ids()
    if rerun:
        again = {p.spec.id for p in plan.points if any(pat in p.spec.id for pat in rerun)}
        if not again:
            raise UsageError(f"--rerun {', '.join(rerun)}: no planned point id contains it")
        done -= again
    else:
        again = set()
    pre_skipped = [r for r in plan.skipped_records() if r.id not in done]
    todo = [s for s in plan.runnable() if s.id not in done]
    obs.on_plan(plan, todo, run.path, resume is not None)

    session: dict[str, Any] = {"started_at": utc_now(), "resumed": resume is not None}
    written: list[PointRecord] = []

    def sink(rec: PointRecord) -> None:
        if rec.id in done:   # never duplicate a point (defensive: the plan already excludes them)
            return
        if rec.id in again:
            rec = replace(rec, extra={**dict(rec.extra or {}), "rerun": True})
        try:
            run.append(rec)
        except OSError as exc:
            raise StoreFailed(f"cannot append to {run.path / run.points_file} ({exc.strerror or exc}); "
                              f"the sweep stopped; {resume_hint(run.path)}") from None
        done.add(rec.id)
        written.append(rec)
        obs.on_record(rec)

    interrupted = False
    store_failed: str | None = None
    manifest = run.read_manifest()
    cal_s = 0.0
    try:
        for rec in pre_skipped:
            sink(rec)
        needs_cal = any(not s.interpret for s in todo)   # interpreted timings are never performance
        if needs_cal and calibrate and (manifest.calibration is None or "error" in manifest.calibration):
            t0 = time.perf_counter()
            cal = executor.calibrate(plan.sweep.device, budget_s=calibration_budget_s, dtypes=tuple(plan.sweep.dtypes))
            cal_s = time.perf_counter() - t0
            obs.on_calibration(cal)
            if cal is not None:
                manifest = replace(manifest, calibration=dict(cal))
                run.write_manifest(manifest)
        events = RunEvents(on_record=sink, on_point_start=obs.on_point_start,
                           on_worker_ready=lambda info: _on_ready(info, obs, session))
        if todo:
            executor.run(PointQueue(todo), plan.sweep.settings, events)
    except KeyboardInterrupt:
        interrupted = True
    except StoreFailed as exc:
        store_failed = str(exc)
    finally:
        executor.close()
    if store_failed is not None:
        raise UsageError(store_failed)

    wall = time.perf_counter() - t_start
    in_call = sum(in_call_seconds(r) for r in written)
    stats = getattr(executor, "stats", None)
    session.update({
        "finished_at": utc_now(),
        "interrupted": interrupted,
        "points_written": len(written),
        "wall_s": wall,
        "in_call_s": in_call,
        "in_call_share": in_call / wall if wall > 0 else None,
        "point_wall_s": sum(r.wall_s or 0.0 for r in written),
        "calibration_s": cal_s,
        "worker_starts": getattr(stats, "worker_starts", None),
        "worker_start_s": getattr(stats, "worker_start_s", None),
        "worker_import_s": list(getattr(stats, "import_s", []) or []),
    })
    manifest = _merge_torch_env(run.read_manifest(), executor)
    notes = dict(manifest.notes)
    notes["sessions"] = list(notes.get("sessions", [])) + [session]
    all_records, load_warnings = _load_records(run)
    planned_ids = {p.spec.id for p in plan.points}
    complete = planned_ids <= {r.id for r in all_records}
    manifest = replace(manifest, notes=notes,
                       finished_at=utc_now() if complete and not interrupted else manifest.finished_at)
    run.write_manifest(manifest)
    counts = dict(Counter(r.status for r in all_records))
    return SweepResult(run_dir=run.path, plan=plan, records=written, counts=counts, wall_s=wall,
                       in_call_s=in_call, interrupted=interrupted, resumed=resume is not None,
                       warnings=warnings + [w for w in load_warnings if w not in warnings], session=session)


def _merge_torch_env(manifest: Manifest, executor: Executor) -> Manifest:
    """Add torch's device details to the environment: from a worker when one reported them, else here."""
    env = dict(manifest.environment)
    if "torch_threads" in env:
        return manifest
    info = getattr(executor, "worker_env", None)
    if not info:
        info = torch_info()
    env.update(info)
    device = env.get("device")
    if device == "cuda" and env.get("cuda_devices"):
        env["device_name"] = env["cuda_devices"][0]["name"]
    elif device in (None, "cpu"):
        env["device_name"] = env.get("cpu_model")
    return replace(manifest, environment=env)


def _on_ready(info: Mapping[str, Any], obs: SweepObserver, session: dict[str, Any]) -> None:
    session.setdefault("workers", []).append(dict(info))
    obs.on_worker_ready(info)


def _load_records(run: RunDir) -> tuple[list[PointRecord], list[str]]:
    return read_records(run.record_files())


def dry_run(sweep: SweepSpec) -> Plan:
    """The plan only: nothing is created, nothing runs (an empty plan is a ``UsageError``)."""
    plan = make_plan(sweep)
    check_plan_not_empty(plan)
    return plan


def plan_as_dict(plan: Plan) -> dict[str, Any]:
    """JSON-ready plan for ``--dry-run --json`` (with the wall-time estimate of ``profiler.planning.estimate``)."""
    est = estimate(plan)
    return {
        "estimate": {"total_s": est.total_s, "points_s": est.points_s, "startup_s": est.startup_s,
                     "calibration_s": est.calibration_s, "report_s": est.report_s, "rates_from": est.rates_from},
        "sweep": plan.sweep.to_dict(),
        "memory_budget_bytes": plan.memory_budget_bytes,
        "memory_budget_source": plan.budget_source,
        "points": [{"id": p.spec.id, "spec": to_dict(p.spec), "est_bytes": p.est_bytes,
                    "status": "planned" if p.runnable else "skipped", "reason": p.skip_reason}
                   for p in plan.points],
        "dropped": [{"what": d.what, "reason": d.reason} for d in plan.dropped],
    }

