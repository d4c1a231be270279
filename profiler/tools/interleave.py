"""Interleaved A/B measurement of two git refs in one job (``serprof gate --interleave``).

When a stored baseline cannot be trusted (another machine state, another day), measure both code
versions now, alternately, so slow drift of the machine hits both alike.

Method
------
1. Each ref is exported with ``git archive <sha>`` into its own temporary folder (a read-only
   snapshot of the committed tree, like a detached worktree, but leaving no trace in the repo).
2. One long-lived worker subprocess per side runs ``python WORKER`` with ``PYTHONPATH=<snapshot>``
   (the worker checks that ``profiler`` really imports from the snapshot), so each side uses its
   own kernels and its own serprof timer (``profiler.measure.timer``; a perf_counter_ns loop if
   that ref has none). Inputs are built once, every point is warmed up before anything is timed.
3. ``rounds`` rounds in ABBA order (A B, B A, A B, ...): in each, a side times ``reps`` samples of
   every point while the other side waits. Samples are pooled per side and point and handed to the
   ordinary gate as two in-memory runs.

The worker also knows the control kernel ``dial`` (``dial`` = 40 ``torch.mm`` of 128x128; with
``--backend dialNN`` NN% more), which needs nothing from the ref: an A/A check of the machinery.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from profiler.core.errors import UsageError
from profiler.core.records import Manifest, PointRecord, PointSpec, Timing
from profiler.store.runs import LoadedRun

WORKER = r'''
import json, sys, time
req = json.loads(sys.stdin.readline())
tree = req["tree"]
import profiler
if not profiler.__file__.startswith(tree):
    print(json.dumps({"error": f"profiler imported from {profiler.__file__}, not from {tree}"}), flush=True); sys.exit(1)
import torch
torch.set_num_threads(req["threads"])
try:
    from profiler.measure.timer import PerfCounterTimer, warm_up, calls_per_sample
    try:
        from profiler.core.records import MeasureSettings
    except ImportError:  # a ref from before the core/ layout
        from profiler.records import MeasureSettings
    timer = PerfCounterTimer(); timer_name = "profiler.measure.timer"
except Exception:
    timer = None; timer_name = "perf_counter_ns loop"
calls, ks = {}, {}
try:
    for p in req["points"]:
        if p["kernel"] == "dial":
            n_units = 40 + round(40 * float(p["backend"][4:] or 0) / 100) if p["backend"].startswith("dial") else 40
            a = torch.randn(128, 128); b = torch.randn(128, 128); o = torch.empty(128, 128)
            def fn(a=a, b=b, o=o, n=n_units):
                for _ in range(n): torch.mm(a, b, out=o)
        else:
            from profiler.kernels import get_kernel, Shape
            spec = get_kernel(p["kernel"])
            be = spec.backends[p["backend"] or spec.default_backend]
            inputs = spec.make_inputs(Shape(p["B"], p["T"], p["H"], p["D"]), "float32", "cpu", 0)
            def fn(be=be, inputs=inputs, causal=p["causal"]):
                with torch.no_grad():
                    be.run(inputs, causal)
        calls[p["id"]] = fn
    for pid, fn in calls.items():
        if timer is not None:
            _, _, est = warm_up(fn, MeasureSettings(warmup_s=req["warmup_s"]))
            ks[pid] = calls_per_sample(est, timer)
        else:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < req["warmup_s"]: fn()
            ks[pid] = 1
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True); sys.exit(1)
print(json.dumps({"ok": True, "timer": timer_name, "torch": torch.__version__, "profiler": profiler.__file__}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd.get("cmd") != "measure":
        break
    out = {}
    for pid, fn in calls.items():
        if timer is not None:
            out[pid] = [timer.sample(fn, ks[pid]) for _ in range(cmd["reps"])]
        else:
            s = []
            for _ in range(cmd["reps"]):
                t0 = time.perf_counter_ns(); fn(); s.append((time.perf_counter_ns() - t0) / 1e9)
            out[pid] = s
    print(json.dumps({"samples": out}), flush=True)
'''


@dataclass(frozen=True)
class InterleavePlan:
    specs: tuple[PointSpec, ...]
    rounds: int = 10
    reps: int = 5
    threads: int = 1
    warmup_s: float = 0.25

    @classmethod
    def from_cli(cls, kernels: list[str], backend: str, lengths: list[str], B: int, H: int, D: int, *,
                 rounds: int, reps: int) -> "InterleavePlan":
        if not kernels:
            raise UsageError("--kernels: gate-interleave needs kernels, e.g. --kernels retnet,softmax "
                             "(or 'dial' as a control)")
        if not lengths:
            raise UsageError("--lengths: gate-interleave needs lengths, e.g. --lengths 1024,2048")
        try:
            Ts = [int(x) for x in lengths]
        except ValueError:
            raise UsageError(f"--lengths takes integers like 1024,2048 (got {','.join(lengths)})") from None
        for flag, value in (("--lengths", min(Ts)), ("--batch", B), ("--heads", H), ("--head-dim", D),
                            ("--rounds", rounds), ("--reps", reps)):
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


class _Side:
    """One worker subprocess measuring one snapshot."""

    def __init__(self, name: str, tree: Path, script: Path, plan: InterleavePlan):
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=str(script.parent))
        points = [{"id": s.id, "kernel": s.kernel, "backend": "" if s.backend == "default" else s.backend,
                   "B": s.B, "T": s.T, "H": s.H, "D": s.D, "causal": s.causal} for s in plan.specs]
        self.info = self._ask({"tree": str(tree), "threads": plan.threads, "warmup_s": plan.warmup_s, "points": points})

    def _ask(self, msg: dict) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read().strip().splitlines() if self.proc.stderr else []
            raise UsageError(f"interleave worker {self.name} died: {err[-1] if err else 'no output'}")
        out = json.loads(line)
        if "error" in out:
            raise UsageError(f"interleave worker {self.name}: {out['error']}")
        return out

    def measure(self, reps: int) -> dict[str, list[float]]:
        return self._ask({"cmd": "measure", "reps": reps})["samples"]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def run_interleaved(repo: Path, ref_a: str, ref_b: str, plan: InterleavePlan) -> tuple[LoadedRun, LoadedRun]:
    """Measure ``ref_a`` (baseline) and ``ref_b`` (candidate) alternately; two in-memory runs."""
    repo = Path(repo)
    with tempfile.TemporaryDirectory(prefix="serprof-interleave-") as tmp:
        tmpd = Path(tmp)
        sha_a = export_ref(repo, ref_a, tmpd / "a")
        sha_b = export_ref(repo, ref_b, tmpd / "b")
        script = tmpd / "worker.py"
        script.write_text(WORKER)
        sides: list[_Side] = []
        try:
            sides = [_Side("A", tmpd / "a", script, plan), _Side("B", tmpd / "b", script, plan)]
            pooled: list[dict[str, list[float]]] = [{}, {}]
            for r in range(plan.rounds):
                order = (0, 1) if r % 2 == 0 else (1, 0)   # ABBA: cancels linear drift
                for i in order:
                    for pid, s in sides[i].measure(plan.reps).items():
                        pooled[i].setdefault(pid, []).extend(s)
        finally:
            for s in sides:
                s.close()
        runs = []
        for i, (ref, sha) in enumerate(((ref_a, sha_a), (ref_b, sha_b))):
            env = {"torch_version": sides[i].info.get("torch"), "timer": sides[i].info.get("timer")}
            recs = [PointRecord(s, "ok", timing=Timing(tuple(pooled[i].get(s.id, ())), "perf_counter_ns"))
                    for s in plan.specs]
            man = Manifest(run_id=f"{ref}@{sha[:10]}", created_at="", scenario={}, environment=env,
                           notes={"interleaved": True, "ref": ref, "sha": sha})
            runs.append(LoadedRun(Path(f"{ref}@{sha[:10]}"), man, recs, []))
        return runs[0], runs[1]
