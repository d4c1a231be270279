"""Interleaved A/B measurement of two git refs in one job (``serprof gate --interleave``).

When a stored baseline cannot be trusted (another machine state, another day), measure both code
versions now, alternately, so slow drift of the machine hits both alike.

Method
------
1. Each ref is exported with ``git archive <sha>`` into its own temporary folder (a read-only
   snapshot of the committed tree, like a detached worktree, but leaving no trace in the repo).
2. ``rounds`` rounds in ABBA order over *fresh processes* (A B, B A, A B, ...): in each, one new
   worker process per side (an isolated call, ``profiler.core.isolated``, of
   ``interleaved_ab_child.measure`` with ``PYTHONPATH=<snapshot>`` and the sweep workers' CPU
   allocator environment; the child checks that ``profiler`` really imports from the snapshot) builds its inputs, warms every point up and
   times samples of each with that ref's serprof timer (``profiler.measure.timer``; a
   perf_counter_ns loop if the ref has none), then exits. Samples per point: ``reps`` when given,
   else adaptive: at least ``MIN_REPS``, then more until ``SAMPLE_S`` of sampling or ``MAX_REPS``.
   Few samples make a process's 10% quantile little better than its minimum: on a 2-core runner the
   spread of retnet T=256 between processes was 9.9% with 5 samples and 2.8% with 30. The process is the unit of replication:
   memory layout, allocator state and core placement differ from process to process, and two
   long-lived processes alone would hide that (ratios of 0.55 and 1.48 were seen between them).
3. After every sample the worker times a fixed control (the second of two 128x128 matmuls, as
   ``profiler.measure.timer.cpu_control``), so the gate can divide each process's momentary machine
   speed out. Samples are kept per process (``Timing.process_counts``) with the process's CPU share and handed
   to the ordinary gate as two in-memory runs of ``rounds`` processes each; both sides belong to one
   job, so no between-run variance is added (``compare_runs(runs_apart=0)``).

The worker also knows the control kernel ``dial`` (``dial`` = 40 ``torch.mm`` of 128x128; with
``--backend dialNN`` NN% more), which needs nothing from the ref: an A/A check of the machinery.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from profiler.core.errors import UsageError
from profiler.core.isolated import ChildFailure, ChildRaised, call_isolated
from profiler.core.records import Manifest, PointRecord, PointSpec, Timing
from profiler.core.units import parse_lengths
from profiler.runner import allocator
from profiler.store.runs import LoadedRun

#: the function each fresh process runs (loaded by file path: it must import the snapshot's ``profiler``)
CHILD = f"{Path(__file__).with_name('interleaved_ab_child.py')}:measure"


#: default fresh processes per side
ROUNDS = 10
#: adaptive samples per point and process: at least MIN_REPS, then until SAMPLE_S seconds or MAX_REPS
MIN_REPS, MAX_REPS, SAMPLE_S = 5, 30, 0.3


@dataclass(frozen=True)
class InterleavePlan:
    """What one interleaved A/B measures: points, fresh processes per side (``rounds``), samples
    per point and process (``reps``; None: adaptive, see the module doc)."""

    specs: tuple[PointSpec, ...]
    rounds: int = ROUNDS
    reps: int | None = None
    threads: int = 1
    warmup_s: float = 0.25

    @property
    def samples_text(self) -> str:
        return (f"{self.reps} samples" if self.reps is not None else
                f"{MIN_REPS}-{MAX_REPS} samples ({SAMPLE_S:g} s)")

    @classmethod
    def from_cli(cls, kernels: list[str], backend: str, lengths: list[str], B: int, H: int, D: int, *,
                 rounds: int | None = None, reps: int | None = None) -> "InterleavePlan":
        rounds = ROUNDS if rounds is None else rounds
        if not kernels:
            raise UsageError("--kernels: gate-interleave needs kernels, e.g. --kernels retnet,softmax "
                             "(or 'dial' as a control)")
        if not lengths:
            raise UsageError("--lengths: gate-interleave needs lengths, e.g. --lengths 1024,2048")
        try:
            Ts = parse_lengths(",".join(lengths))
        except UsageError as exc:
            raise UsageError(f"--lengths: {exc}") from None
        for flag, value in (("--lengths", min(Ts)), ("--batch", B), ("--heads", H), ("--head-dim", D),
                            ("--rounds", rounds), ("--reps", 1 if reps is None else reps)):
            if value < 1:
                raise UsageError(f"{flag} must be >= 1 (got {value})")
        specs = tuple(PointSpec(kernel=k, backend=backend or "default", B=B, T=T, H=H, D=D)
                      for k in kernels for T in Ts)
        return cls(specs, rounds=rounds, reps=reps)


def export_ref(repo: Path, ref: str, dest: Path) -> str:
    """Extract the committed tree of ``ref`` into ``dest``; returns the commit sha."""
    rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
                         capture_output=True, text=True)
    if rev.returncode != 0:
        raise UsageError(f"{ref!r} is not a commit in the git repository {repo}")
    sha = rev.stdout.strip()
    arch = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", sha], capture_output=True)
    if arch.returncode != 0:
        raise UsageError(f"git archive {ref} failed: {arch.stderr.decode(errors='replace').strip()}")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(arch.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return sha


def measure_once(name: str, tree: Path, plan: InterleavePlan, env: dict[str, str] | None = None) -> dict:
    """One fresh process measures every point of ``plan`` from the snapshot ``tree`` and exits."""
    # the sweep workers' CPU allocator regime (profiler.runner.allocator): without it, large
    # intermediates are first-touched again on every call and a process lands in a fast or a slow
    # regime by chance (retnet at T=1024: 2.4 ms or 6 ms per call in alternate processes)
    child_env = dict(allocator.worker_environment("cpu", os.environ if env is None else env), PYTHONPATH=str(tree))
    points = [{"id": s.id, "kernel": s.kernel, "backend": "" if s.backend == "default" else s.backend,
               "B": s.B, "T": s.T, "H": s.H, "D": s.D, "causal": s.causal} for s in plan.specs]
    req = {"tree": str(tree), "threads": plan.threads, "warmup_s": plan.warmup_s, "reps": plan.reps, "points": points,
           "min_reps": MIN_REPS, "max_reps": MAX_REPS, "sample_s": SAMPLE_S}
    try:   # cwd outside both snapshots, so only PYTHONPATH decides which profiler is imported
        return call_isolated(CHILD, req, env=child_env, cwd=tree.parent, name=f"interleave worker {name}")
    except ChildRaised as exc:
        raise UsageError(f"interleave worker {name}: {exc}") from None
    except ChildFailure as exc:
        raise UsageError(f"interleave worker {name} died: {exc}") from None


def run_interleaved(repo: Path, ref_a: str, ref_b: str, plan: InterleavePlan, *,
                    env_b: dict[str, str] | None = None, progress=None) -> tuple[LoadedRun, LoadedRun]:
    """Measure ``ref_a`` (baseline) and ``ref_b`` (candidate) in alternating fresh processes; two in-memory runs.

    ``env_b``: extra environment of side B's processes (``serprof gate-eval`` injects a slowdown there).
    """
    repo = Path(repo)
    with tempfile.TemporaryDirectory(prefix="serprof-interleave-") as tmp:
        tmpd = Path(tmp)
        sha_a = export_ref(repo, ref_a, tmpd / "a")
        sha_b = export_ref(repo, ref_b, tmpd / "b")
        trees = (tmpd / "a", tmpd / "b")
        envs = (None, dict(os.environ, **env_b) if env_b else None)
        groups: list[dict[str, list[list[float]]]] = [{}, {}]
        cpu: list[dict[str, list[float]]] = [{}, {}]
        controls: list[dict[str, list[float]]] = [{}, {}]
        info: list[dict] = [{}, {}]
        for r in range(plan.rounds):
            order = (0, 1) if r % 2 == 0 else (1, 0)   # ABBA over fresh processes: cancels linear drift
            for i in order:
                out = measure_once("AB"[i], trees[i], plan, envs[i])
                info[i] = out
                for pid, s in out["samples"].items():
                    groups[i].setdefault(pid, []).append(s)
                    controls[i].setdefault(pid, []).extend(out.get("controls", {}).get(pid) or [])
                    c = out.get("cpu", {}).get(pid)
                    if c:
                        acc = cpu[i].setdefault(pid, [0.0, 0.0])
                        acc[0] += c[0]
                        acc[1] += c[1]
            if progress is not None:
                progress(f"  round {r + 1}/{plan.rounds} done")
        runs = []
        for i, (ref, sha) in enumerate(((ref_a, sha_a), (ref_b, sha_b))):
            env = {"torch_version": info[i].get("torch"), "timer": info[i].get("timer")}
            recs = []
            for s in plan.specs:
                gs = groups[i].get(s.id, [])
                c = cpu[i].get(s.id)
                recs.append(PointRecord(s, "ok", timing=Timing(
                    tuple(x for g in gs for x in g), "perf_counter_ns", process_counts=tuple(len(g) for g in gs),
                    cpu_s=c[0] if c else None, cpu_wall_s=c[1] if c else None,
                    threads=info[i].get("threads") if c else None,
                    control_samples_s=tuple(controls[i].get(s.id, ())))))
            man = Manifest(run_id=f"{ref}@{sha[:10]}", created_at="", scenario={}, environment=env,
                           notes={"interleaved": True, "ref": ref, "sha": sha, "processes": plan.rounds})
            runs.append(LoadedRun(Path(f"{ref}@{sha[:10]}"), man, recs, []))
        return runs[0], runs[1]
