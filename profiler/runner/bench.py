"""Benchmarks of the measurement engine itself and of the CPU kernels (not tests: they print numbers).

* ``bench_kernels``: every backend in the kernel registry that runs on CPU (built-ins and plugins
  alike; causal where the backend has it) at B=1, H=4, D=64, fp32, forward, over a range of T,
  against SDPA causal and non-causal measured in the same run. **Isolation:** each series
  (kernel/backend/causal) runs in its own fresh worker process (``profiler.runner.local``'s
  ``LocalExecutor``, the sweep's executor: crash, OOM and timeout become records), points from
  short to long; after a failure the longer points of that series are skipped. Series run one after
  another, never in parallel. Summaries: median time, peak memory, speedup against SDPA non-causal at
  the same T, and log-log slopes of time and memory over ``fit_range`` (4k..16k).
* ``family_rows``: issue 17's acceptance view. Per series: the least-squares log-log slope of the
  median time over ``fit_range`` with the (T, median) points it used, and, per ``KernelSpec.group``
  (kernels the registry does not know: "other") and causality, the ratio of its median at the
  longest fitted T to the fastest member of that group there. Flags, both for linear-family kernels
  only (issue 17's limits are for the chunkwise engine's members; a quadratic kernel's ratio to SDPA
  is shown, not flagged): slope > ``SLOPE_LIMIT``, ratio > ``RATIO_LIMIT``.
* ``timer_fidelity``: for the same op in the same process, serprof's median
  (``profiler.measure.timer.measure_timing``) against ``torch.utils.benchmark.Timer.adaptive_autorange``,
  with both wall times. serprof runs twice: with its default settings, and with a total budget equal
  to the wall time the Timer just spent ("matched"). Rounds alternate the order (Timer first, then
  serprof first) to spread drift of a shared machine over both.
* ``cuda_timer_comparison`` (``bench timer --device cuda``): on CUDA, per op (bf16), serprof's device
  time and call latency (``Device.time_call``) beside triton's ``do_bench`` and
  ``do_bench_cudagraph`` and ``torch.utils.benchmark.Timer``, with ratios. Expect device time ~
  ``do_bench_cudagraph``; for host-bound ops ``do_bench`` and the Timer sit near the call latency.
* ``memory_check``: the naive softmax at T=4096 (B=1, H=4, fp32, forward) measured by the CPU memory
  meter against the kernel's analytic memory model (target within +-15%).

Everything returns values; rendering is the CLI's job.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from profiler.core.errors import UsageError, did_you_mean
from profiler.core.lazy import lazy_import
from profiler.core.records import (
    LAUNCH_BOUND_FRACTION,
    MeasureSettings,
    PointRecord,
    PointSpec,
)
from profiler.kernels import get_backend, get_kernel, registry
from profiler.kernels.base import GROUPS, Shape
from profiler.measure.device import get_device
from profiler.measure.timer import PerfCounterTimer, measure_timing
from profiler.runner.local import LocalExecutor

torch = lazy_import("torch")
tb = lazy_import("torch.utils.benchmark")

triton_testing = lazy_import('triton.testing')

#: Settings of ``bench kernels``: enough repetitions for a median, bounded wall time per point.
KERNEL_BENCH_SETTINGS = MeasureSettings(warmup_s=0.2, min_warmup_calls=1, min_reps=3, max_reps=50,
                                        target_rel_ci=0.03, time_budget_s=1.5, verify=False,
                                        measure_memory=True, measure_energy=False, point_timeout_s=600.0)
DEFAULT_LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)
FIT_RANGE = (4096, 16384)
#: ``bench kernels --quick``: the fit range's lengths only, fewer repetitions (indicative numbers).
QUICK_LENGTHS = (4096, 8192, 16384)
QUICK_SETTINGS = replace(KERNEL_BENCH_SETTINGS, warmup_s=0.05, min_reps=2, max_reps=5, time_budget_s=0.5)
#: Acceptance limits of issue 17: time slope of a linear kernel over FIT_RANGE, ratio to its group's fastest.
SLOPE_LIMIT = 1.15
RATIO_LIMIT = 2.0
SHAPE = {"B": 1, "H": 4, "D": 64}


@dataclass(frozen=True)
class Series:
    """One line of the kernel benchmark: a kernel, a backend, causal or not."""

    kernel: str
    backend: str
    causal: bool = True

    @property
    def label(self) -> str:
        return f"{self.kernel}/{self.backend}/{'causal' if self.causal else 'full'}"

    def spec(self, T: int) -> PointSpec:
        return PointSpec(self.kernel, self.backend, device="cpu", dtype="float32", mode="fwd", T=T,
                         causal=self.causal, **SHAPE)


SDPA_FULL = Series("softmax", "sdpa", False)
SDPA_CAUSAL = Series("softmax", "sdpa", True)


def default_series(kernels: Sequence[str] | None = None) -> list[Series]:
    """SDPA causal and non-causal, then every backend of every mechanism that runs on CPU (registry
    order, plugins included; causal where the backend has it, else non-causal)."""
    out = [SDPA_CAUSAL, SDPA_FULL]
    for name, spec in registry().items():
        if kernels and name not in kernels:
            continue
        for bname, b in spec.backends.items():
            if b.run is None or not b.causal or not b.availability("cpu")[0]:
                continue
            s = Series(name, bname, True in b.causal)
            if s not in out:
                out.append(s)
    return out


def parse_series(tokens: Iterable[str]) -> list[Series]:
    """``kernel[:backend[:causal|full]]`` tokens; SDPA causal and non-causal are always included.

    A bare kernel name means its torch backend (softmax: sdpa), causal.
    """
    chosen: list[Series] = [SDPA_CAUSAL, SDPA_FULL]
    for tok in tokens:
        parts = [p.strip() for p in tok.split(":") if p.strip()]
        if not parts or len(parts) > 3:
            raise UsageError(f"bad series {tok!r}; expected kernel[:backend[:causal|full]]")
        kernel = get_kernel(parts[0])
        if len(parts) == 1:
            if kernel.name == "softmax":
                continue
            backend = "torch" if "torch" in kernel.backends else kernel.default_backend
        else:
            backend = parts[1]
        b = get_backend(kernel.name, backend)
        causal = True
        if len(parts) == 3:
            if parts[2] not in ("causal", "full"):
                raise UsageError(f"bad causality {parts[2]!r} in {tok!r}; {did_you_mean(parts[2], ('causal', 'full'))}")
            causal = parts[2] == "causal"
        if causal not in b.causal:
            raise UsageError(f"{kernel.name}/{backend} has no {'causal' if causal else 'non-causal'} mode")
        ok, why = b.availability("cpu")
        if not ok:
            raise UsageError(f"{kernel.name}/{backend} cannot run on CPU: {why}")
        s = Series(kernel.name, backend, causal)
        if s not in chosen:
            chosen.append(s)
    return chosen


def bench_kernels(series: Sequence[Series], lengths: Sequence[int],
                  settings: MeasureSettings = KERNEL_BENCH_SETTINGS,
                  on_record: Callable[[PointRecord], None] | None = None,
                  executor_factory: Callable[[], Any] | None = None) -> list[PointRecord]:
    """Measure every series at every length, one fresh worker process per series (see module doc)."""
    if executor_factory is None:
        executor_factory = LocalExecutor
    records: list[PointRecord] = []
    for s in series:
        ex = executor_factory()
        failed: str | None = None
        try:
            for T in sorted(lengths):
                spec = s.spec(T)
                if failed is not None:
                    rec = PointRecord(spec=spec, status="skipped", reason=failed)
                else:
                    rec = ex.measure(spec, settings)
                    if rec.status != "ok":
                        failed = f"{rec.status} at T={T}"
                records.append(rec)
                if on_record is not None:
                    on_record(rec)
        finally:
            ex.close()
    return records


def median_s(rec: PointRecord) -> float | None:
    if rec.status != "ok" or rec.timing is None or not rec.timing.samples_s:
        return None
    return float(rec.timing.median_s)


def loglog_slope(Ts: Sequence[float], ys: Sequence[float | None], lo: int, hi: int) -> float | None:
    """Least-squares slope of log(y) on log(T) over lo <= T <= hi (None with < 2 usable points)."""
    pts = [(T, y) for T, y in zip(Ts, ys) if lo <= T <= hi and y is not None and y > 0]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


@dataclass(frozen=True)
class SeriesSummary:
    label: str
    lengths: tuple[int, ...]
    median_s: tuple[float | None, ...]
    peak_bytes: tuple[int | None, ...]
    analytic_bytes: tuple[int | None, ...]
    speedup_vs_sdpa_full: tuple[float | None, ...]
    time_slope: float | None
    memory_slope: float | None
    statuses: tuple[str, ...]
    reasons: tuple[str | None, ...] = field(default_factory=tuple)


def summarize_kernels(records: Sequence[PointRecord], fit_range: tuple[int, int] = FIT_RANGE) -> list[SeriesSummary]:
    """Per series: medians, peaks, speedup against SDPA non-causal at the same T, log-log slopes."""
    by_series: dict[str, list[PointRecord]] = {}
    for r in records:
        label = Series(r.spec.kernel, r.spec.backend, r.spec.causal).label
        by_series.setdefault(label, []).append(r)
    ref = {r.spec.T: median_s(r) for r in by_series.get(SDPA_FULL.label, [])}
    out = []
    for label, recs in by_series.items():
        recs = sorted(recs, key=lambda r: r.spec.T)
        Ts = tuple(r.spec.T for r in recs)
        meds = tuple(median_s(r) for r in recs)
        peaks = tuple(r.memory.peak_bytes if r.memory is not None else None for r in recs)
        analytic = tuple(r.memory.analytic_bytes if r.memory is not None else None for r in recs)
        speed = tuple((ref.get(T) / m) if (m and ref.get(T)) else None for T, m in zip(Ts, meds))
        out.append(SeriesSummary(
            label=label, lengths=Ts, median_s=meds, peak_bytes=peaks, analytic_bytes=analytic,
            speedup_vs_sdpa_full=speed,
            time_slope=loglog_slope(Ts, meds, *fit_range),
            memory_slope=loglog_slope(Ts, [float(p) if p else None for p in peaks], *fit_range),
            statuses=tuple(r.status for r in recs), reasons=tuple(r.reason for r in recs),
        ))
    return out


def kernel_group(kernel: str) -> tuple[str, str]:
    """``(KernelSpec.group, KernelSpec.family)`` from the registry; ("other", "") when unknown."""
    spec = registry().get(kernel)
    if spec is None:
        return "other", ""
    return getattr(spec, "group", "other") or "other", spec.family


@dataclass(frozen=True)
class FamilyRow:
    """One series in issue 17's acceptance view (see the module docstring). Times in s."""

    label: str
    kernel: str
    backend: str
    causal: bool
    group: str
    family: str
    slope: float | None
    slope_points: tuple[tuple[int, float], ...]
    at_T: int
    median_s: float | None
    fastest: str | None
    ratio: float | None
    slope_flag: bool
    ratio_flag: bool

    @property
    def flagged(self) -> bool:
        return self.slope_flag or self.ratio_flag


def family_rows(summary: Sequence[SeriesSummary], fit_range: tuple[int, int] = FIT_RANGE,
                slope_limit: float = SLOPE_LIMIT, ratio_limit: float = RATIO_LIMIT) -> list[FamilyRow]:
    """Slopes over ``fit_range`` and ratios to the fastest member of each (group, causality) at the
    longest fitted length any series reached; rows sorted by group (``GROUPS`` order), causality, ratio."""
    lo, hi = fit_range
    fitted = [T for s in summary for T, m in zip(s.lengths, s.median_s) if lo <= T <= hi and m]
    at_T = max(fitted) if fitted else hi
    base = []
    for s in summary:
        kernel, backend, causal = s.label.rsplit("/", 2)
        group, family = kernel_group(kernel)
        pts = tuple((T, m) for T, m in zip(s.lengths, s.median_s) if lo <= T <= hi and m)
        med = dict(zip(s.lengths, s.median_s)).get(at_T)
        base.append((s, kernel, backend, causal == "causal", group, family, pts, med))
    best: dict[tuple[str, bool], tuple[float, str]] = {}
    for s, _k, _b, causal, group, _f, _p, med in base:
        key = (group, causal)
        if med and (key not in best or med < best[key][0]):
            best[key] = (med, s.label)
    rows = []
    for s, kernel, backend, causal, group, family, pts, med in base:
        slope = loglog_slope([p[0] for p in pts], [p[1] for p in pts], lo, hi)
        fast = best.get((group, causal))
        ratio = med / fast[0] if (med and fast) else None
        rows.append(FamilyRow(
            label=s.label, kernel=kernel, backend=backend, causal=causal, group=group, family=family,
            slope=slope, slope_points=pts, at_T=at_T, median_s=med, fastest=fast[1] if fast else None,
            ratio=ratio, slope_flag=family == "linear" and slope is not None and slope > slope_limit,
            ratio_flag=family == "linear" and ratio is not None and ratio > ratio_limit))
    order = {g: i for i, g in enumerate(GROUPS)}
    rows.sort(key=lambda r: (order.get(r.group, len(order)), not r.causal, r.ratio if r.ratio is not None else math.inf))
    return rows


# --------------------------------------------------------------------------- timer fidelity

@dataclass(frozen=True)
class FidelityRow:
    """One op: serprof's and torch Timer's medians (s) and wall times (s), averaged over rounds."""

    op: str
    timer_median_s: float
    timer_wall_s: float
    serprof_median_s: float
    serprof_wall_s: float
    matched_median_s: float
    matched_wall_s: float
    rounds: int
    serprof_reps: int
    matched_reps: int

    @property
    def ratio(self) -> float:
        return self.serprof_median_s / self.timer_median_s

    @property
    def matched_ratio(self) -> float:
        return self.matched_median_s / self.timer_median_s


DEFAULT_FIDELITY_OPS = ("softmax:sdpa:1024", "softmax:sdpa:4096", "retnet:torch:4096")


def parse_op(token: str) -> tuple[str, str, int]:
    """``kernel:backend:T`` -> its parts (``UsageError`` naming ``--ops`` for anything else)."""
    parts = token.split(":")
    if len(parts) != 3 or not parts[2].isascii() or not parts[2].isdigit() or not 1 <= int(parts[2]) <= 2 ** 20:
        raise UsageError(f"--ops: bad op {token!r}; expected kernel:backend:T with 1 <= T <= 1048576, "
                         "e.g. softmax:sdpa:1024")
    kernel = get_kernel(parts[0])
    get_backend(kernel.name, parts[1])
    return kernel.name, parts[1], int(parts[2])


def _op_call(token: str, device: str = "cpu", dtype: str = "float32") -> tuple[str, Callable[[], None]]:
    """``kernel:backend:T`` -> a forward call (B=1, H=4, D=64, causal; CPU fp32 unless told)."""
    name, bname, T = parse_op(token)
    kernel = get_kernel(name)
    backend = get_backend(name, bname)
    inputs = kernel.make_inputs(Shape(T=T, **SHAPE), getattr(torch, dtype), device, 0)

    def call() -> None:
        with torch.no_grad():
            backend.run(inputs, True)

    return token, call


def _geo_mean(xs: Sequence[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def timer_fidelity(ops: Sequence[str] = DEFAULT_FIDELITY_OPS, rounds: int = 2,
                   settings: MeasureSettings | None = None, timer_max_s: float = 10.0) -> list[FidelityRow]:
    """serprof vs ``torch.utils.benchmark.Timer.adaptive_autorange`` on the same calls (see module doc).

    ``timer_max_s`` bounds each ``adaptive_autorange`` (its ``max_run_time``; torch's default is 10 s).
    """
    base = settings or MeasureSettings()
    rows = []
    for token in ops:
        name, call = _op_call(token)
        res: dict[str, list[float]] = {k: [] for k in ("tm", "tw", "sm", "sw", "mm", "mw", "sn", "mn")}
        for r in range(rounds):
            def run_timer() -> float:
                t0 = time.perf_counter()
                m = tb.Timer(stmt="fn()", globals={"fn": call}, num_threads=torch.get_num_threads()).adaptive_autorange(
                    max_run_time=timer_max_s)
                wall = time.perf_counter() - t0
                res["tm"].append(m.median)
                res["tw"].append(wall)
                return wall

            def run_serprof(s: MeasureSettings, mk: str, wk: str, nk: str) -> None:
                t0 = time.perf_counter()
                t = measure_timing(call, s, PerfCounterTimer())
                res[wk].append(time.perf_counter() - t0)
                res[mk].append(t.median_s)
                res[nk].append(len(t.samples_s))

            if r % 2 == 0:
                wall = run_timer()
                run_serprof(base, "sm", "sw", "sn")
            else:
                run_serprof(base, "sm", "sw", "sn")
                wall = run_timer()
            # the same total wall time as the Timer: a fifth for warm-up, the rest for repetitions
            matched = replace(base, warmup_s=0.2 * wall, min_warmup_calls=1, min_reps=3,
                              time_budget_s=max(0.0, 0.8 * wall - res["tm"][-1]))
            run_serprof(matched, "mm", "mw", "mn")
        rows.append(FidelityRow(
            op=name, timer_median_s=_geo_mean(res["tm"]), timer_wall_s=statistics.mean(res["tw"]),
            serprof_median_s=_geo_mean(res["sm"]), serprof_wall_s=statistics.mean(res["sw"]),
            matched_median_s=_geo_mean(res["mm"]), matched_wall_s=statistics.mean(res["mw"]),
            rounds=rounds, serprof_reps=int(statistics.median(res["sn"])), matched_reps=int(statistics.median(res["mn"])),
        ))
    return rows


# --------------------------------------------------------------------------- CUDA timers side by side

#: ``bench timer --device cuda``: a compute-bound op and a host-bound fla chunk kernel (bf16)
DEFAULT_CUDA_OPS = ("softmax:sdpa:4096", "retnet:fla:4096")
CUDA_TIMER_SETTINGS = MeasureSettings(warmup_s=0.2, min_warmup_calls=2, min_reps=10, max_reps=500,
                                      target_rel_ci=0.01, time_budget_s=2.0, verify=False,
                                      measure_memory=False, measure_energy=False)
#: tool name -> what it measures, for the table's legend and the JSON
CUDA_TOOL_NOTES = {
    "do_bench": "triton.testing.do_bench median: event pair around back-to-back calls, L2 flushed",
    "do_bench_cudagraph": "triton.testing.do_bench_cudagraph median: CUDA graph replay (device time)",
    "torch_timer": "torch.utils.benchmark.Timer.blocked_autorange median: host clock, synchronised per block",
    "sync_loop": "sync-to-sync loop median: synchronize; t0; fn(); synchronize; t1 (one isolated call, host included)",
}
SYNC_LOOP_CALLS = 50


def default_cuda_tools() -> dict[str, Callable[[Callable[[], Any]], float]]:
    """The field's timers, each ``fn -> seconds per call`` (imports triton and torch when called)."""
    def do_bench(fn: Callable[[], Any]) -> float:
        return float(triton_testing.do_bench(fn, warmup=50, rep=200, return_mode="median")) / 1e3

    def do_bench_cudagraph(fn: Callable[[], Any]) -> float:
        return float(triton_testing.do_bench_cudagraph(fn, rep=100, return_mode="median")) / 1e3

    def torch_timer(fn: Callable[[], Any]) -> float:
        return float(tb.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=0.5).median)

    def sync_loop(fn: Callable[[], Any]) -> float:
        out = []
        for _ in range(SYNC_LOOP_CALLS):
            torch.cuda.synchronize()
            t0 = time.perf_counter_ns()
            fn()
            torch.cuda.synchronize()
            out.append((time.perf_counter_ns() - t0) / 1e9)
        return float(statistics.median(out))

    return {"do_bench": do_bench, "do_bench_cudagraph": do_bench_cudagraph, "torch_timer": torch_timer,
            "sync_loop": sync_loop}


@dataclass(frozen=True)
class CudaTimerRow:
    """One op timed by serprof (device time and call latency) and by the field's tools, seconds per call."""

    op: str
    serprof_device_s: float | None
    serprof_method: str | None
    serprof_method_reason: str | None
    serprof_latency_s: float | None
    tools_s: Mapping[str, float | None]
    errors: Mapping[str, str] = field(default_factory=dict)   # tool (or "serprof", "op") -> one-line error

    def ratio(self, tool: str, quantity: str = "device") -> float | None:
        """serprof's device time (or call latency) over ``tool``'s number."""
        mine = self.serprof_device_s if quantity == "device" else self.serprof_latency_s
        theirs = self.tools_s.get(tool)
        return mine / theirs if (mine and theirs) else None

    @property
    def launch_bound(self) -> bool | None:
        if not self.serprof_device_s or not self.serprof_latency_s:
            return None

        return self.serprof_device_s < LAUNCH_BOUND_FRACTION * self.serprof_latency_s

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "serprof_device_s": self.serprof_device_s, "serprof_method": self.serprof_method,
                "serprof_method_reason": self.serprof_method_reason, "serprof_latency_s": self.serprof_latency_s,
                "launch_bound": self.launch_bound, "tools_s": dict(self.tools_s), "errors": dict(self.errors),
                "device_ratio": {t: self.ratio(t) for t in self.tools_s},
                "latency_ratio": {t: self.ratio(t, "latency") for t in self.tools_s}}


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:200]}"


def cuda_timer_comparison(ops: Sequence[str] = DEFAULT_CUDA_OPS, *, device: Any = None,
                          tools: Mapping[str, Callable[[Callable[[], Any]], float]] | None = None,
                          settings: MeasureSettings = CUDA_TIMER_SETTINGS,
                          make_call: Callable[[str], tuple[str, Callable[[], Any]]] | None = None,
                          dtype: str = "bfloat16") -> list[CudaTimerRow]:
    """Each op timed by ``device.time_call`` and by every tool, in one process (see ``CUDA_TOOL_NOTES``).

    ``device`` (a ``Device``; CUDA 0 by default), ``tools`` and ``make_call`` (``token -> (name, fn)``)
    are seams for tests. A failing op or tool becomes an entry in ``errors``, never an exception.
    """
    if device is None:
        device = get_device("cuda")
    if tools is None:
        tools = default_cuda_tools()
    if make_call is None:
        def make_call(token: str) -> tuple[str, Callable[[], Any]]:
            name, call = _op_call(token, device.torch_device, dtype)
            fn = call

            def call_no_grad() -> None:
                with torch.no_grad():
                    fn()

            return name, call_no_grad
    rows = []
    for token in ops:
        errors: dict[str, str] = {}
        try:
            name, fn = make_call(token)
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - an op that cannot run here is a row with its reason
            rows.append(CudaTimerRow(token, None, None, None, None, {t: None for t in tools}, {"op": _one_line(exc)}))
            continue
        dev_s = lat_s = method = reason = None
        try:
            timed = device.time_call(fn, settings)
            dev_s, method, reason = timed.timing.median_s, timed.timing.method, timed.timing.method_reason
            lat_s = timed.call_latency.median_s if timed.call_latency is not None else None
        except Exception as exc:  # noqa: BLE001
            errors["serprof"] = _one_line(exc)
        tool_s: dict[str, float | None] = {}
        for tname, tool in tools.items():
            try:
                tool_s[tname] = float(tool(fn))
            except Exception as exc:  # noqa: BLE001
                tool_s[tname] = None
                errors[tname] = _one_line(exc)
        rows.append(CudaTimerRow(name, dev_s, method, reason, lat_s, tool_s, errors))
    return rows


# --------------------------------------------------------------------------- memory check

@dataclass(frozen=True)
class MemoryCheckRow:
    label: str
    measured_bytes: int | None
    analytic_bytes: int | None
    status: str
    reason: str | None = None

    @property
    def ratio(self) -> float | None:
        if not self.measured_bytes or not self.analytic_bytes:
            return None
        return self.measured_bytes / self.analytic_bytes

    def within(self, tolerance: float = 0.15) -> bool:
        return self.ratio is not None and abs(self.ratio - 1.0) <= tolerance


MEMORY_CHECK_SETTINGS = replace(KERNEL_BENCH_SETTINGS, warmup_s=0.0, min_reps=1, max_reps=1, time_budget_s=0.0)


def memory_check(T: int = 4096, executor_factory: Callable[[], Any] | None = None) -> list[MemoryCheckRow]:
    """Naive softmax (non-causal and causal) at T: CPU peak memory against the analytic model."""
    series = [Series("softmax", "naive", False), Series("softmax", "naive", True)]
    rows = []
    for rec in bench_kernels(series, [T], MEMORY_CHECK_SETTINGS, executor_factory=executor_factory):
        m = rec.memory
        rows.append(MemoryCheckRow(
            label=Series(rec.spec.kernel, rec.spec.backend, rec.spec.causal).label + f"/T{T}",
            measured_bytes=m.peak_bytes if m else None, analytic_bytes=m.analytic_bytes if m else None,
            status=rec.status, reason=rec.reason))
    return rows
