"""Verification: one function that checks a point against its reference, for the sweep and ``serprof verify``.

``verify_point(point, device, seed, max_T)`` looks up the point's entry (a kernel, a layer or the
SER head; ``profiler.planning.registry``) and runs its ``verify``: kernels compare the backend with the
kernel's fp32 reference on the same inputs (``profiler.kernels.verify``: method, prefixes for long
sequences, tolerances per dtype); layers compare the module with its fp32 oracle
(``profiler.layers.verify``). ``measure_point`` calls it before timing every point; ``verify_many``
(``serprof verify``) calls it for every (kernel, backend, dtype, mode, causal, B, T) combination.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Iterable, Sequence

from profiler.core.errors import UnavailableError, UsageError, did_you_mean
from profiler.core.failures import device_fault, library_refusal
from profiler.core.isolated import ChildFailure, ChildRaised, call_isolated
from profiler.core.records import DTYPES, Correctness, PointSpec, from_dict, to_dict
from profiler.kernels import (
    get_kernel,
    kernel_modules_in_use,
    registry,
    use_kernel_modules,
)
from profiler.kernels import verify as kernel_verify
from profiler.kernels.base import Shape
from profiler.kernels.recurrent import unsupported
from profiler.kernels.verify import (  # noqa: F401
    GRAD_SCALE_FLOOR,
    TF32_TOLERANCE,
    TOLERANCES,
    tolerance_for,
)
from profiler.planning.registry import get_entry


def _validate(kernel: str, backend: str, *args, **kwargs):
    """``kernels.verify._validate`` by kernel name: UsageError / UnavailableError for what cannot run."""
    return kernel_verify._validate(get_kernel(kernel), backend, *args, **kwargs)


def verify_point_against_reference(kernel: str, backend: str, *args, **kwargs) -> Correctness:
    """``kernels.verify.verify_point_against_reference`` by kernel name (see there: method, prefixes, tolerances)."""
    return kernel_verify.verify_point_against_reference(get_kernel(kernel), backend, *args, **kwargs)


def verify_against_backend(kernel: str, backend: str, *args, **kwargs) -> list[Correctness]:
    """``kernels.verify.verify_against_backend`` by kernel name."""
    return kernel_verify.verify_against_backend(get_kernel(kernel), backend, *args, **kwargs)


def verify_point(point: PointSpec, device: str, seed: int = 0, max_T: int | None = None,
                 oracles: Sequence[str | None] = (None,)) -> list[Correctness]:
    """The point's backend against its entry's reference (None) and any other backends named in
    ``oracles``; one ``Correctness`` per oracle, the backend under test run once. ``device`` may carry
    an index (``cuda:1``); ``point.interpret`` runs fla kernels under Triton's interpreter."""
    return get_entry(point.level, point.kernel).verify(point, device, seed, max_T, oracles)


# ----------------------------------------------------------------------------- many points

@dataclass(frozen=True)
class VerifyResult:
    """One verified combination: what was checked and the outcome (or the error it raised)."""

    kernel: str
    backend: str
    device: str
    dtype: str
    mode: str
    causal: bool
    shape: Shape
    interpret: bool = False
    against: str | None = None
    correctness: Correctness | None = None
    error: str | None = None
    skipped: str | None = None        # why this combination was not run (e.g. the backend lacks the dtype)

    @property
    def passed(self) -> bool:
        return self.error is None and self.correctness is not None and self.correctness.passed

    @property
    def failed(self) -> bool:
        """Ran and failed (an error or an error beyond tolerance); a skipped combination never fails."""
        return self.skipped is None and not self.passed

    def to_dict(self) -> dict:
        d = to_dict(self)
        d["passed"] = self.passed
        return d


def resolve_backends(kernels: Sequence[str], backends: Sequence[str] | None, device: str,
                     interpret: bool) -> list[tuple[str, str]]:
    """(kernel, backend) pairs to check. Explicit names must exist (UsageError) and be available
    here (UnavailableError); without ``backends`` every available one is taken (under ``interpret``:
    the interpretable ones)."""
    dev = device.split(":")[0]
    out: list[tuple[str, str]] = []
    for k in kernels:
        spec = get_kernel(k)
        if backends:
            names = [n for n in backends if n in spec.backends]
            if not names:
                continue
            for n in names:
                ok, why = spec.backends[n].availability(dev, interpret=interpret)
                if not ok:
                    raise UnavailableError(f"{k}/{n} is unavailable on {dev}: {why}")
                out.append((k, n))
        else:
            for n, b in spec.backends.items():
                if interpret and not b.interpretable:
                    continue
                if b.availability(dev, interpret=interpret)[0]:
                    out.append((k, n))
    if backends:
        known = {n for k in kernels for n in get_kernel(k).backends}
        unknown = [n for n in backends if n not in known]
        if unknown:
            raise UsageError(f"unknown backend {unknown[0]!r} for kernels {', '.join(kernels)}; "
                             f"{did_you_mean(unknown[0], known)}")
    return out


def verify_many(kernels: Sequence[str] | None = None, backends: Sequence[str] | None = None, *,
                lengths: Sequence[int] = (63, 256), batches: Sequence[int] = (2,), heads: int = 2,
                head_dim: int = 32, dtypes: Sequence[str] = ("float32",), modes: Sequence[str] = ("fwd", "fwdbwd"),
                device: str = "cpu", interpret: bool = False, causal: Iterable[bool] | None = None,
                seed: int = 0, max_T: int | None = None, against_torch: bool | None = None,
                progress=None, phase: str = "prefill", tokens: int = 1, jobs: int | None = None) -> list[VerifyResult]:
    """Check every (kernel, backend, dtype, mode, causal, B, T) combination; one result each.

    Input errors (unknown names, head dim over a limit, bf16 under the interpreter) raise before
    anything runs. A (backend, dtype) combination the backend does not support (``softmax/sdpa-flash``
    in float32) is not an input error when several dtypes were asked for: it yields one result with
    ``skipped`` set to the reason, as the sweep skips it. ``causal`` None: every mode the backend supports. ``against_torch`` (default: on
    under ``interpret``) adds a comparison with the kernel's ``torch`` backend (``sdpa`` for
    softmax). ``progress(result)`` is called after each check.

    ``phase`` ``decode`` / ``streaming`` checks ``tokens`` decode steps (or one chunk of ``tokens``)
    after each T against the full-sequence reference (``profiler.kernels.recurrent``): the decode
    backends of every mechanism with a recurrent form, causal, forward; other backends are left out.

    On CUDA, or with ``jobs`` > 1, each (kernel, backend)'s checks run in their own child process,
    ``jobs`` at a time (default ``default_jobs``), and ``progress`` sees a backend's results when its
    process ends; otherwise they run in this process.
    """
    if max_T is not None and (isinstance(max_T, bool) or not isinstance(max_T, int) or max_T < 1):
        raise UsageError(f"--max-t must be a whole number >= 1 (the longest T compared in full), got {max_T!r}")
    kernels = list(kernels or registry())
    # one kernel asked for alone: a shape it refuses is the user's input error; among several (all
    # kernels, selftest's list) it is skipped with the reason, as the sweep drops such points
    strict_shape = len(kernels) == 1
    pairs = resolve_backends(kernels, backends, device, interpret)
    if phase != "prefill":
        pairs = [(k, n) for k, n in pairs if unsupported(get_kernel(k), n, phase) is None]
        modes = [m for m in modes if m == "fwd"]
        causal = (True,)
        against_torch = False
    if against_torch is None:
        against_torch = interpret
    causal_modes = None if causal is None else tuple(causal)
    plan = []
    shape_skips: list[str] = []
    for k, n in pairs:
        spec = get_kernel(k)
        b = spec.backends[n]
        for dt in dtypes:
            for mode in modes:
                if mode == "fwdbwd" and not b.has_backward(device):
                    continue
                for c in (causal_modes or b.causal):
                    if c not in b.causal:
                        continue
                    for B in batches:
                        for T in lengths:
                            shape = Shape(B, T, heads, head_dim)
                            if dt in DTYPES and dt not in b.dtypes:
                                why = f"{k}/{n} does not support {dt}; valid: {', '.join(b.dtypes)}"
                                plan.append((k, n, shape, dt, mode, c, why))
                                continue
                            # a backend's own head-dim limit (fused_chunk_based: 16) skips it when it
                            # was not named, as the sweep does; a named backend still raises
                            why = None if backends else spec.backend_limit(n, shape)
                            if not strict_shape and not why:
                                why = spec.check_shape(shape)
                                if why:
                                    shape_skips.append(why)
                            if why:
                                plan.append((k, n, shape, dt, mode, c, why))
                                continue
                            _validate(k, n, shape, dt, device, c, mode, interpret)
                            oracles = [None]
                            other = "torch" if "torch" in spec.backends else spec.default_backend
                            # (a kernel without a torch backend: its default backend, where it runs here uninterpreted)
                            if (against_torch and other != n and c in spec.backends[other].causal
                                    and spec.backends[other].availability(device.split(":")[0])[0]):
                                oracles.append(other)
                            plan.append((k, n, shape, dt, mode, c, tuple(oracles)))
    if shape_skips and all(isinstance(p[-1], str) for p in plan):
        raise UsageError(shape_skips[0])   # nothing at all can run this shape: still the user's input error
    jobs = default_jobs(device, interpret) if jobs is None else jobs
    if jobs < 1:
        raise UsageError(f"--jobs must be a whole number >= 1, got {jobs!r}")
    run = dict(device=device, seed=seed, max_T=max_T, phase=phase, tokens=tokens, interpret=interpret)
    if jobs > 1 or (device.split(":")[0] == "cuda" and not interpret):
        return _run_isolated_groups(plan, run, jobs, progress)
    return _run_plan(plan, progress=progress, **run)


def default_jobs(device: str, interpret: bool) -> int:
    """Check processes at a time: on CUDA one per CPU core up to 8 (first calls of fla's Triton kernels
    compile and autotune for 20-90 s each, or minutes with many at once, and compiling is CPU-bound);
    elsewhere 1 (the checks run in this process)."""
    if device.split(":")[0] != "cuda" or interpret:
        return 1
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _run_plan(plan: list, *, device: str, seed: int, max_T: int | None, phase: str, tokens: int,
              interpret: bool, progress=None) -> list[VerifyResult]:
    """Run the planned checks in this process, in order.

    A backend error is its result; a run-time ``UnavailableError`` (a combination the backend cannot
    do, found when called) and a library declining this machine (``core.failures.library_refusal``)
    are skipped with the reason. After a device fault (a sticky CUDA error), nothing else can run in
    this process: the remaining checks are errors that say so and name the fault."""
    results = []
    lost: str | None = None
    for k, n, shape, dt, mode, c, oracles in plan:
        if isinstance(oracles, str):
            batch = [VerifyResult(k, n, device, dt, mode, c, shape, interpret, skipped=oracles)]
        elif lost is not None:
            batch = [VerifyResult(k, n, device, dt, mode, c, shape, interpret, o, None,
                                  f"not run: this check process lost its CUDA context to an earlier fault ({lost})")
                     for o in oracles]
        else:
            try:
                opts = (() if phase == "prefill" else
                        ((("steps" if phase == "decode" else "chunk"), str(tokens)),))
                point = PointSpec(k, n, device.split(":")[0], dt, mode, shape.B, shape.T, shape.H, shape.D, c,
                                  interpret=interpret, options=opts, phase=phase)
                corrs = verify_point(point, device, seed, max_T, oracles)
                batch = [VerifyResult(k, n, device, dt, mode, c, shape, interpret, o, corr)
                         for o, corr in zip(oracles, corrs)]
            except UsageError:
                raise
            except UnavailableError as exc:
                batch = [VerifyResult(k, n, device, dt, mode, c, shape, interpret, o, skipped=str(exc))
                         for o in oracles]
            except Exception as exc:  # noqa: BLE001 - a failing backend is a result, not a crash
                msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                refusal = library_refusal(exc)
                if refusal is not None:
                    batch = [VerifyResult(k, n, device, dt, mode, c, shape, interpret, o,
                                          skipped=f"the backend declines this machine: {refusal}") for o in oracles]
                else:
                    batch = [VerifyResult(k, n, device, dt, mode, c, shape, interpret, o, None, msg) for o in oracles]
                    if device_fault(exc):
                        lost = f"{k}/{n}: {msg}"
        for res in batch:
            results.append(res)
            if progress is not None:
                progress(res)
    return results


def _plan_item_to_json(item) -> list:
    k, n, shape, dt, mode, c, oracles = item
    return [k, n, to_dict(shape), dt, mode, c, oracles if isinstance(oracles, str) else list(oracles)]


def _plan_item_from_json(item) -> tuple:
    k, n, shape, dt, mode, c, oracles = item
    return (k, n, Shape(**shape), dt, mode, c, oracles if isinstance(oracles, str) else tuple(oracles))


def verify_plan_json(items: list, run: dict, kernel_modules: list[str]) -> list[dict]:
    """Child side of ``_run_isolated_groups``: run planned checks (JSON in and out) in this process."""
    if kernel_modules:
        use_kernel_modules(kernel_modules)
    return [r.to_dict() for r in _run_plan([_plan_item_from_json(i) for i in items], **run)]


def result_from_dict(d: dict) -> VerifyResult:
    """A ``VerifyResult`` back from ``VerifyResult.to_dict``."""
    return from_dict(VerifyResult, {k: v for k, v in d.items() if k != "passed"}, "verify result")


def _run_isolated_groups(plan: list, run: dict, jobs: int, progress=None) -> list[VerifyResult]:
    """Each (kernel, backend)'s checks in a fresh child process, ``jobs`` at a time; results in plan order.

    Isolation keeps a device fault (a poisoned CUDA context) inside the backend that caused it, and
    running processes side by side overlaps Triton's CPU-bound compilation. A child that crashes or
    raises turns each of its checks into an error naming what happened."""
    groups: dict[tuple[str, str], list] = {}
    for item in plan:
        groups.setdefault((item[0], item[1]), []).append(item)
    modules = kernel_modules_in_use()

    def one(items: list) -> list[VerifyResult]:
        try:
            out = call_isolated("profiler.measure.verify:verify_plan_json",
                                {"items": [_plan_item_to_json(i) for i in items], "run": run,
                                 "kernel_modules": modules}, name=f"verify {items[0][0]}/{items[0][1]}",
                                env=dict(os.environ))
            return [result_from_dict(d) for d in out]
        except ChildRaised as exc:
            if exc.exc_type == "UsageError":
                raise UsageError(exc.message) from None
            why = f"the check process raised {exc.exc_type}: {exc.message}"
        except ChildFailure as exc:
            why = f"the check process failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        return [VerifyResult(k, n, run["device"], dt, mode, c, shape, run["interpret"],
                             skipped=oracles if isinstance(oracles, str) else None,
                             error=None if isinstance(oracles, str) else why[:300])
                for k, n, shape, dt, mode, c, oracles in items]

    results: dict[tuple[str, str], list[VerifyResult]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(groups)))) as pool:
        futures = {pool.submit(one, items): key for key, items in groups.items()}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if progress is not None:
                for res in results[futures[fut]]:
                    progress(res)
    return [r for key in groups for r in results[key]]


def verify_many_json(runs: Sequence[dict] | None = None, **kwargs) -> list[dict]:
    """``verify_many`` with JSON in and out (for ``profiler.kernels.interpret.run_isolated``); ``runs``:
    several keyword sets run one after the other in the same process (results concatenated)."""
    out: list[dict] = []
    for kw in (runs or [kwargs]):
        out += [r.to_dict() for r in verify_many(**kw)]
    return out
