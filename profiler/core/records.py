"""Value types for everything serprof stores: point specs, measurements, run manifests.

Every stored JSON object carries ``schema_version``. Loaders name the file, the line and the missing
key when a record does not fit (asv's results files are the model). Units are SI in stored values:
seconds, bytes, joules, watts; names carry the unit where in doubt (``peak_bytes``, ``energy_j``).

This module imports nothing heavy (no torch, no numpy): analysis and report code use it to rebuild a
report from a run folder on any machine.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from profiler.core import fmt
from profiler.core.settings import (
    MeasureSettings,  # the stored settings, declared with the settings model
)
from profiler.core.stats import summarize

#: Version 2 (issue 16): ``PointSpec.D`` is the per-head dim at every level; a version-1 layer/model record
#: held the hidden size in ``D`` and loads with ``D = hidden / H`` (``upgrade_spec_dict``).
SCHEMA_VERSION = 2
#: Levels whose points are whole layers (``profiler.layers``): the SER seq2seq layer, or the SER head around it.
LAYER_LEVELS = ("layer", "model")

#: Terminal statuses of a point. A point with any record is never re-run by ``--resume``.
STATUSES = ("ok", "wrong", "oom", "timeout", "crashed", "skipped", "unavailable")
#: fwd; bwd (the backward alone, after an untimed forward); fwdbwd (both in one timed call).
MODES = ("fwd", "fwdbwd", "bwd")
DTYPES = ("float32", "float16", "bfloat16")
LEVELS = ("kernel", "layer", "model")
#: A point whose device time is under this fraction of its call latency is launch-bound.
LAUNCH_BOUND_FRACTION = 0.5


class RecordError(ValueError):
    """A stored object does not match the schema (the message names where and which key)."""


class HeadDims:
    """Derived head dims of anything with fields ``H``, ``D``, ``kv_heads`` and ``value_dim`` (0 = the
    default): ``PointSpec``, the kernels' ``Shape``, the analysis ``SeriesKey``."""

    H: int
    D: int
    kv_heads: int
    value_dim: int

    @property
    def Hkv(self) -> int:
        """Key/value heads (H unless grouped)."""
        return self.kv_heads or self.H

    @property
    def Dv(self) -> int:
        """Value / output head dim (D unless set)."""
        return self.value_dim or self.D

    @property
    def hidden(self) -> int:
        """Model width ``H * D``: a layer's input/output size at levels ``layer`` and ``model`` (the
        shape axes ``kv_heads`` / ``value_dim`` are kernel-level and never change it)."""
        return self.H * self.D


@dataclass(frozen=True, order=True)
class PointSpec(HeadDims):
    """One measurement point. Frozen and hashable; ``id`` keys storage, resume and baselines.

    The fields mean the same at every ``level``: ``H`` query heads of ``D`` dims each (the per-head
    dim), ``T`` tokens, ``B`` sequences. What ``kernel`` names depends on the level:

    * ``kernel``: the attention kernel (a ``profiler.kernels`` registry name, e.g. ``retnet``);
    * ``layer`` / ``model``: the measured entry, one of the study's seq2seq layers (a
      ``profiler.layers`` name, e.g. ``retnet`` or ``mha``), named after the attention mechanism inside
      it (``LayerSpec.mechanism`` is the kernel its port is built on: ``mha`` runs ``softmax``); at
      ``model`` level the layer sits inside the SER head. Reports label it ``layer:NAME``, ``serprof
      list`` an entry.
      The layer's model width is ``hidden`` = ``H * D`` (the study: 4 heads of 256 = 1024), the size of
      its input and output vectors; ``H`` is the ``num_heads`` argument the study passed (FoX:
      ``num_kv_heads``) and ``D`` the width per head of that split. The mechanism inside may use other
      head dims (the study's softmax keeps all 1024 dims per head, KDA 128, FoX 32 query heads of 32):
      ``profiler.layers`` lists them.

    ``device`` is the device *type* (``cpu`` or ``cuda``): which GPU index ran a point is recorded in
    the point's ``worker`` info, so the same spec measured on two GPUs has the same id.
    ``options`` holds extra, level-specific settings as sorted ``(key, value)`` string pairs
    (for example ``("bidirectional", "1")``); they are part of the id.
    """

    kernel: str
    backend: str
    device: str = "cpu"
    dtype: str = "float32"
    mode: str = "fwd"
    B: int = 1
    T: int = 1024
    H: int = 4
    D: int = 64
    causal: bool = True
    level: str = "kernel"
    interpret: bool = False
    options: tuple[tuple[str, str], ...] = ()
    # what one call processes (``profiler.core.settings.PHASES``); decode points carry ``steps=N`` and
    # streaming points ``chunk=C`` among their options. A prefill id has no phase part, so ids of runs
    # made before phases existed are unchanged (resume and baselines keep matching).
    phase: str = "prefill"
    # shape axes (issue 18); 0 = the default (kv_heads = H, value_dim = D, no window), which adds no id
    # part, so ids of runs made before these axes existed are unchanged.
    kv_heads: int = 0      # key/value heads (GQA/MQA: H % kv_heads == 0)
    value_dim: int = 0     # Dv, the value (and output) head dim
    window: int = 0        # causal sliding window: keys [i - window + 1, i]

    @property
    def is_layer(self) -> bool:
        """A whole layer (levels ``layer`` / ``model``): ``kernel`` names the layer, ``hidden`` is its width."""
        return self.level in LAYER_LEVELS

    @property
    def shape_parts(self) -> tuple[str, ...]:
        """The id parts of the non-default shape axes: ``KV1``, ``Dv128``, ``W256``."""
        return tuple(f"{tag}{v}" for tag, v in (("KV", self.kv_heads), ("Dv", self.value_dim), ("W", self.window))
                     if v)

    @property
    def id(self) -> str:
        """Stable, human-readable identity, e.g. ``kernel/retnet/torch/cpu/float32/fwd/B1/T1024/H4/D64/causal``."""
        parts = [
            self.level, self.kernel, self.backend, self.device, self.dtype, self.mode,
            f"B{self.B}", f"T{self.T}", f"H{self.H}", f"D{self.D}",
            "causal" if self.causal else "full",
        ]
        parts += self.shape_parts
        if self.interpret:
            parts.append("interpret")
        if self.phase != "prefill":
            parts.append(f"phase={self.phase}")
        parts += [f"{k}={v}" for k, v in self.options]
        return "/".join(parts)

    @property
    def series_key(self) -> tuple:
        """Everything but B and T: points of one series differ only in size (used for OOM skips, fits)."""
        return (self.level, self.kernel, self.backend, self.device, self.dtype, self.mode,
                self.H, self.D, self.causal, self.interpret, self.options) + (
                    (self.phase,) if self.phase != "prefill" else ()) + self.shape_parts

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)

    @property
    def tokens(self) -> int:
        return self.B * self.T

    @property
    def tokens_per_call(self) -> int:
        """Tokens one timed call processes per sequence: T (prefill), the decode steps, or the chunk."""
        if self.phase == "decode":
            return int(self.option("steps", "1"))
        if self.phase == "streaming":
            return int(self.option("chunk", "1"))
        return self.T


#: ``Timing.quantity`` values: what a sample is the time of.
QUANTITIES = ("device_time", "call_latency")
#: ``Timing.method`` values: how the samples were taken (see ``profiler.measure.cuda_time``).
TIMING_METHODS = ("cuda_graph", "kineto", "spin_events", "sync_wall", "perf_counter_ns", "interpreted")


@dataclass(frozen=True)
class Timing:
    """Raw latency samples of one point (seconds per call) and how they were taken.

    ``quantity`` says what was timed: ``device_time`` (what the GPU spends on the call, launch
    overhead hidden) or ``call_latency`` (one isolated call, host included; on CPU the only one).
    ``method`` is how, and ``method_reason`` why an earlier method of the fallback chain was not
    used (its failure message). Records written before these fields existed load with
    ``quantity == ""`` and ``method == ""``.
    """

    samples_s: tuple[float, ...]
    timer: str                        # "perf_counter_ns" | "cuda_event" | "kineto" | "wall_ns" | "interpreted"
    warmup_s: float = 0.0
    warmup_calls: int = 0
    calls_per_sample: int = 1
    stop_reason: str = ""             # "ci_target" | "time_budget" | "max_reps"
    target_rel_ci: float | None = None
    quantity: str = ""                # "device_time" | "call_latency" ("" in old records)
    method: str = ""                  # one of TIMING_METHODS ("" in old records)
    method_reason: str | None = None  # why the earlier methods of the chain were not used
    unroll: int = 1                   # calls per captured CUDA graph (cuda_graph only)
    l2_flush: bool = False            # cold L2: flushed before every call (graph: inside it, its time subtracted)
    # ``samples_s`` concatenates the samples of ``len(process_counts)`` worker processes, in order, this
    # many from each; empty: all samples come from one process (and in records before replication).
    process_counts: tuple[int, ...] = ()
    # CPU: the process's CPU seconds (all threads) and the wall seconds of the sampling phase, and the
    # torch threads; ``cpu_share`` = cpu_s / (cpu_wall_s * threads). None on CUDA and in old records.
    cpu_s: float | None = None
    cpu_wall_s: float | None = None
    threads: int | None = None
    # CPU: one fixed control computation timed right after each sample (``measure.timer.cpu_control``),
    # seconds; the gate divides each sample by its control to cancel the machine's momentary speed.
    control_samples_s: tuple[float, ...] = ()

    # ---- statistics, computed once per value and cached (as torch.utils.benchmark's Measurement does);
    # derived, never stored: ``to_dict`` writes fields only. numpy/scipy load on first use, not on import.
    WIDE_CI: typing.ClassVar[float] = 0.05     # relative half-width of the median's 95% CI flagged as wide
    FEW_SAMPLES: typing.ClassVar[int] = 5      # fewer samples than this are flagged

    @property
    def n(self) -> int:
        return len(self.samples_s)

    @property
    def processes(self) -> int:
        """How many worker processes the samples come from (1 for unreplicated and old records)."""
        return len(self.process_counts) if self.process_counts else 1

    @property
    def cpu_share(self) -> float | None:
        """Fraction of its threads' wall time the process spent on a CPU while sampling (None unknown).

        Near 1 on an otherwise idle machine for a kernel that keeps its threads busy; well below 1 when
        other processes competed for the cores (the samples are then slower for reasons outside the kernel).
        """
        if not self.cpu_s or not self.cpu_wall_s or not self.threads:
            return None
        return self.cpu_s / (self.cpu_wall_s * self.threads)

    def controlled_groups(self, q: float = 0.1) -> tuple[tuple[float, ...], ...] | None:
        """Per process, its samples divided by the ``q`` quantile of its control samples (dimensionless):
        the process's momentary machine speed divided out. None without a control for every sample."""
        if len(self.control_samples_s) != len(self.samples_s) or any(c <= 0 for c in self.control_samples_s):
            return None
        controls = Timing(self.control_samples_s, self.timer, process_counts=self.process_counts).process_groups()
        out = []
        for g, c in zip(self.process_groups(), controls):
            ref = sorted(c)[min(len(c) - 1, int(q * (len(c) - 1) + 0.5))]
            out.append(tuple(x / ref for x in g))
        return tuple(out)

    def process_groups(self) -> tuple[tuple[float, ...], ...]:
        """The samples split by worker process (one group when ``process_counts`` does not add up)."""
        counts = self.process_counts
        if not counts or sum(counts) != len(self.samples_s) or any(c < 1 for c in counts):
            return (tuple(self.samples_s),)
        out, i = [], 0
        for c in counts:
            out.append(tuple(self.samples_s[i:i + c]))
            i += c
        return tuple(out)

    @classmethod
    def concat(cls, timings: "typing.Sequence[Timing]") -> "Timing":
        """One Timing from the timings of one point measured in several processes (in order).

        Samples are seconds per call, so processes with different ``calls_per_sample`` concatenate
        as they are; ``calls_per_sample`` is the first process's, warm-up time and calls add up.
        """
        if not timings:
            raise ValueError("Timing.concat needs at least one timing")
        if len(timings) == 1:
            return timings[0]
        first = timings[0]
        counts: list[int] = []
        for t in timings:
            counts.extend(t.process_counts or (t.n,))
        reasons = sorted({t.stop_reason for t in timings if t.stop_reason})
        return dataclasses.replace(
            first, samples_s=tuple(x for t in timings for x in t.samples_s),
            warmup_s=sum(t.warmup_s for t in timings), warmup_calls=sum(t.warmup_calls for t in timings),
            stop_reason="+".join(reasons), process_counts=tuple(counts),
            cpu_s=sum(t.cpu_s for t in timings) if all(t.cpu_s is not None for t in timings) else None,
            cpu_wall_s=(sum(t.cpu_wall_s for t in timings) if all(t.cpu_wall_s is not None for t in timings)
                        else None),
            control_samples_s=(tuple(x for t in timings for x in t.control_samples_s)
                               if all(len(t.control_samples_s) == t.n for t in timings) else ()))

    @functools.cached_property
    def median_s(self) -> float | None:
        """Median of the samples (None without samples)."""
        return statistics.median(self.samples_s) if self.samples_s else None

    @functools.cached_property
    def summary(self):
        """``profiler.core.stats.Summary`` of the samples: median, 95% CI of the median, mean, spread."""
        return summarize(self.samples_s)

    @property
    def ci_s(self) -> tuple[float, float] | None:
        """Distribution-free 95% CI of the median (order statistics; the full range below 6 samples)."""
        return (self.summary.ci_low, self.summary.ci_high) if self.samples_s else None

    @property
    def rel_ci(self) -> float:
        """Half-width of the median's 95% CI relative to the median (inf when undefined)."""
        return self.summary.rel_ci

    @property
    def few_samples(self) -> bool:
        return self.n < self.FEW_SAMPLES

    @property
    def wide_ci(self) -> bool:
        return self.n >= 2 and self.rel_ci > self.WIDE_CI

    @property
    def noisy(self) -> bool:
        """The median deserves less trust: few samples or a wide CI."""
        return self.few_samples or self.wide_ci

    @property
    def noise_flags(self) -> tuple[str, ...]:
        """Why the median deserves less trust, in words (``few samples (3)``, ``wide CI (±7%)``)."""
        flags = []
        if self.few_samples:
            flags.append(f"few samples ({self.n})")
        if self.wide_ci:
            flags.append(f"wide CI (±{self.rel_ci * 100:.0f}%)")
        return tuple(flags)

    def describe(self) -> str:
        """``1.23 ms [1.21, 1.25] (n=40)``: the median and its 95% CI, as ``Measurement`` prints it."""
        if not self.samples_s:
            return "no samples"
        lo, hi = self.ci_s
        unit = fmt.seconds(self.median_s).split(" ")[-1]
        scale = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}[unit]
        return (f"{fmt.seconds(self.median_s)} [{lo / scale:.3g}, {hi / scale:.3g}] (n={self.n})"
                + "".join(f", {flag}" for flag in self.noise_flags if not flag.startswith("few samples")))

    def __repr__(self) -> str:
        what = self.quantity or "latency"
        return f"<Timing {what} by {self.method or self.timer}: {self.describe()}>"


@dataclass(frozen=True)
class FirstCall:
    """The first call of a point, timed on its own (compile, autotune, lazy init), synchronised after.

    ``cache_dir`` is the Triton cache directory in force and ``cache_warm`` whether it existed and
    was non-empty when the worker started (None where unknown).
    """

    wall_s: float
    cache_dir: str | None = None
    cache_warm: bool | None = None
    note: str | None = None


@dataclass(frozen=True)
class Memory:
    """Peak memory of one call: bytes allocated at the peak minus bytes allocated on entry."""

    peak_bytes: int | None
    method: str                       # "cuda_allocator" | "torch_profiler" | ...
    reserved_bytes: int | None = None  # CUDA caching allocator reserved (None on CPU)
    analytic_bytes: int | None = None  # the kernel's memory model
    input_bytes: int | None = None


@dataclass(frozen=True)
class Energy:
    """Energy per call, net of idle, from an energy counter (``profiler.measure.energy`` says how).

    ``energy_j`` is None with a ``reason`` when no meter exists, and when the net energy is below the
    counter's resolution (``below_resolution``; ``energy_ci_j`` then includes zero). Records written
    before the counter-based idle baseline lack the fields after ``samples`` and may hold a negative
    ``energy_j``: read energy through ``energy_per_call``.
    """

    energy_j: float | None
    meter: str | None = None          # "nvml" | "rapl" | None
    reason: str | None = None         # why energy_j is None
    window_s: float | None = None
    calls: int | None = None
    idle_power_w: float | None = None  # from the counter: mean of the idle windows before and after
    mean_power_w: float | None = None
    throttled: bool | None = None
    throttle_reasons: tuple[str, ...] = ()
    samples: tuple[Mapping[str, Any], ...] = ()   # {"t_s", "power_w", "sm_clock_mhz", "temp_c", "throttle"}
    gross_energy_j: float | None = None            # J per call, idle included (what Zeus reports)
    energy_ci_j: tuple[float, float] | None = None  # (low, high) J per call, net
    idle_power_before_w: float | None = None
    idle_power_after_w: float | None = None
    counter_period_s: float | None = None          # measured update period of the counter
    counter_step_j: float | None = None            # smallest counter change seen (its resolution)
    below_resolution: bool = False


#: States of ``energy_per_call``.
ENERGY_STATES = ("ok", "below_resolution", "none")


def energy_per_call(energy: Energy | None) -> tuple[float | None, str]:
    """Net J per call fit to plot or print, and its state: ``ok``, ``below_resolution`` or ``none``.

    A stored non-positive ``energy_j`` (written by the old power-reading idle baseline) is below
    resolution, never a number.
    """
    if energy is None:
        return None, "none"
    if energy.below_resolution:
        return None, "below_resolution"
    if energy.energy_j is None:
        return None, "none"
    if energy.energy_j <= 0:
        return None, "below_resolution"
    return energy.energy_j, "ok"


@dataclass(frozen=True)
class Correctness:
    """Output (and gradient) error against an fp32 reference on the same inputs."""

    reference: str
    max_abs_err: float | None
    max_rel_err: float | None         # max |out - ref| / max |ref|
    tolerance: float
    passed: bool
    checked_T: int | None = None      # T actually compared (a prefix for long causal points)
    grad_max_rel_err: float | None = None
    # varlen points: each sequence's max rel err against the reference on that sequence alone
    per_sequence_rel_err: tuple[float, ...] = ()


@dataclass(frozen=True)
class Conditions:
    """Under what conditions a point was timed (``profiler.measure.conditions``).

    ``before``/``after``/``during`` are samples (CUDA: ``sm_clock_mhz``, ``mem_clock_mhz``, ``temp_c``,
    ``power_w``, ``throttle``; CPU: ``freq_mhz``, ``load_1m``, ``affinity``, ``threads``). ``throttled``:
    the kept measurement saw throttling (never gated on); ``remeasured``: the first one did
    (``first_throttle_reasons``) and was measured again after ``cooldown_s`` of idle.
    """

    device_type: str = ""
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    during: tuple[Mapping[str, Any], ...] = ()
    throttled: bool = False
    throttle_reasons: tuple[str, ...] = ()
    remeasured: bool = False
    first_throttle_reasons: tuple[str, ...] = ()
    cooldown_s: float = 0.0
    l2: str = "warm"
    clocks_locked: bool | None = None

    @property
    def flag(self) -> str | None:
        """Why the point must not be gated on, or None."""
        if not self.throttled:
            return None
        again = " (also after a cool-down and re-measurement)" if self.remeasured else ""
        return f"measured while throttled: {', '.join(self.throttle_reasons)}{again}"


@dataclass(frozen=True)
class PointRecord:
    """The stored result of one point: a status, and measurements when it ran."""

    spec: PointSpec
    status: str
    reason: str | None = None
    timing: Timing | None = None
    memory: Memory | None = None
    energy: Energy | None = None
    correctness: Correctness | None = None
    flops: float | None = None        # analytic FLOPs per call
    bytes_moved: float | None = None  # analytic DRAM/HBM bytes per call
    worker: Mapping[str, Any] = field(default_factory=dict)  # host, pid, device_index, device_name, threads, affinity
    started_at: str | None = None     # ISO 8601 UTC
    wall_s: float | None = None       # whole point, set-up and verification included
    extra: Mapping[str, Any] = field(default_factory=dict)   # level-specific results (e.g. utterance replay)
    schema_version: int = SCHEMA_VERSION
    # CUDA: sync-to-sync latency of one isolated call (``timing`` is then the device time). None on
    # CPU, where ``timing`` itself is the call latency (quantity "call_latency"), and in old records.
    call_latency: Timing | None = None
    first_call: FirstCall | None = None
    conditions: Conditions | None = None   # None in records from before conditions were sampled

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise RecordError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def flagged(self) -> str | None:
        """Why this point's timing must not be gated on (throttled while measured), or None."""
        return self.conditions.flag if self.conditions is not None else None

    @property
    def host_overhead_s(self) -> float | None:
        """Median call latency minus median device time (None unless both were measured)."""
        if self.call_latency is None or self.timing is None or self.timing.quantity != "device_time":
            return None
        lat, dev = self.call_latency.median_s, self.timing.median_s
        if lat is None or dev is None:
            return None
        return lat - dev

    @property
    def launch_bound(self) -> bool | None:
        """True when the device time is under ``LAUNCH_BOUND_FRACTION`` of the call latency (None if unknown)."""
        if self.host_overhead_s is None:
            return None
        lat, dev = self.call_latency.median_s, self.timing.median_s
        return bool(dev < LAUNCH_BOUND_FRACTION * lat)

    def __repr__(self) -> str:
        """One line: ``retnet/torch cpu float32 fwd B=1 T=1024 H=4 D=64: 1.23 ms [1.21, 1.25] (n=40), peak 3.1 MiB, ok``."""
        s = self.spec
        head = ((f"{s.level} " if s.is_layer else "")
                + f"{s.kernel}/{s.backend} {s.device} {s.dtype} {s.mode} B={s.B} T={s.T} H={s.H} D={s.D}"
                + (f" hidden={s.hidden}" if s.is_layer else "")
                + ("" if s.causal else " non-causal") + (" interpreted" if s.interpret else "")
                + (f" {s.phase}" if s.phase != "prefill" else "")
                + "".join(f" {k}={v}" for k, v in s.options))
        parts = []
        if self.timing is not None and self.timing.samples_s:
            parts.append(self.timing.describe() + (" (interpreted: not a performance number)" if s.interpret else ""))
        if self.call_latency is not None and self.call_latency.samples_s:
            parts.append(f"call latency {self.call_latency.describe()}")
        if self.memory is not None and self.memory.peak_bytes is not None:
            parts.append(f"peak {fmt.bytes_iec(self.memory.peak_bytes)}")
        energy, state = energy_per_call(self.energy)
        if state == "ok":
            parts.append(f"{fmt.joules(energy)}/call")
        parts.append(self.status + (f" ({self.reason})" if self.reason and self.status != "ok" else ""))
        return f"{head}: {', '.join(parts)}"


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` of a run folder."""

    run_id: str
    created_at: str
    scenario: Mapping[str, Any]
    environment: Mapping[str, Any]
    settings: MeasureSettings = field(default_factory=MeasureSettings)
    calibration: Mapping[str, Any] | None = None
    finished_at: str | None = None
    serprof_version: str = ""
    notes: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


def device_key(worker: Any) -> str:
    """The device model a record was measured on: what multi-device analysis groups by."""
    w = dict(worker or {})
    return str(w.get("device_name") or "unknown device")


# --------------------------------------------------------------------------- schema upgrades

def upgrade_spec_dict(spec: Any, version: int, where: str = "spec") -> Any:
    """A stored ``PointSpec`` dict of record schema ``version`` in today's meaning (a new dict; others as given).

    Version 1 stored a layer/model point's hidden size in ``D``; from version 2 ``D`` is the per-head
    dim, so ``D`` becomes ``D / H`` (its id's ``D`` part changes with it; kernel-level specs and ids
    are unchanged). A hidden size that ``H`` does not divide cannot be expressed: ``RecordError``.
    """
    if version >= 2 or not isinstance(spec, Mapping) or spec.get("level") not in LAYER_LEVELS:
        return spec
    H, D = spec.get("H", 4), spec.get("D", 64)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (H, D)):
        return spec   # the schema check names the bad value
    if D % H:
        raise RecordError(f"{where}: a schema-{version} {spec['level']}-level spec holds hidden size D={D}, "
                          f"which H={H} heads do not divide (from schema 2 D is the per-head dim)")
    return {**spec, "D": D // H}


def upgrade_sweep_dict(scenario: Any, version: int) -> Any:
    """A stored ``SweepSpec`` dict (a manifest's ``scenario``) of manifest schema ``version`` in today's meaning.

    Version 1 gave layer/model sweeps' ``head_dims`` as hidden sizes, with the kernel default ``[64]``
    standing for the study's 1024; from version 2 they are per-head dims and ``[]`` is each level's
    default (``profiler.planning.axes.layer_dims``). A hidden size becomes ``hidden / H`` for every
    ``heads`` value that divides it (with several heads values the plan may then hold a few more
    combinations than the old one: a resume measures them, it never loses a record).
    """
    if version >= 2 or not isinstance(scenario, Mapping) or scenario.get("level") not in LAYER_LEVELS:
        return scenario
    dims, heads = scenario.get("head_dims"), scenario.get("heads") or [4]
    if not isinstance(dims, (list, tuple)) or not isinstance(heads, (list, tuple)):
        return scenario
    if list(dims) in ([64], []):
        return {**scenario, "head_dims": []}
    ints = [v for v in list(dims) + list(heads) if isinstance(v, int) and not isinstance(v, bool) and v >= 1]
    if len(ints) != len(dims) + len(heads):
        return scenario   # the schema check names the bad value
    return {**scenario, "head_dims": list(dict.fromkeys(d // h for d in dims for h in heads if d % h == 0)) or list(dims)}


def _stored_version(data: Mapping[str, Any]) -> int:
    # serprof always writes the key; an object without it (made by hand) is taken as today's, as its default is
    v = data.get("schema_version", SCHEMA_VERSION)
    return v if isinstance(v, int) and not isinstance(v, bool) else SCHEMA_VERSION


def _upgrade(cls: type, data: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """``data`` of an older ``schema_version`` in today's meaning, marked with today's version (so a
    record loaded, then written again, is never upgraded twice)."""
    version = _stored_version(data)
    if version >= SCHEMA_VERSION or version < 1:
        return data
    if cls is PointRecord:
        where_spec = f"{where}{'.' if where else ''}spec"
        return {**data, "spec": upgrade_spec_dict(data.get("spec"), version, where_spec),
                "schema_version": SCHEMA_VERSION}
    if cls is Manifest:
        return {**data, "scenario": upgrade_sweep_dict(data.get("scenario"), version), "schema_version": SCHEMA_VERSION}
    return data


# --------------------------------------------------------------------------- (de)serialization

def to_dict(obj: Any) -> Any:
    """Dataclass -> JSON-ready dict (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _bad(where: str, what: str, value: Any) -> RecordError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return RecordError(f"{where}: expected {what}, got {shown}")


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the field type ``tp`` (the schema check) and build nested values."""
    if value is None:
        return None
    tp = _strip_optional(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise _bad(where, "a list", value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise _bad(where, f"a list of {len(args)}", value)
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(where, "true or false", value)
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(where, "an integer", value)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(where, "a number", value)
        return float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise _bad(where, "a string", value)
    elif origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        if not isinstance(value, Mapping):
            raise _bad(where, "an object", value)
    return value


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from a dict; unknown keys are ignored, missing required keys named.

    A ``PointRecord`` or ``Manifest`` of an older ``schema_version`` is first brought to today's
    meaning (``_upgrade``: layer dims of schema 1).
    """
    name = cls.__name__
    if not isinstance(data, Mapping):
        raise RecordError(f"{where}: {name} must be an object, got {type(data).__name__}")
    data = _upgrade(cls, data, where)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{where}{'.' if where else ''}{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecordError(f"{where or name}: missing key {f.name!r}")
    version = kwargs.get("schema_version")
    if version is not None and version < 1:
        raise RecordError(f"{where or name}: schema_version {version} is not a version (>= 1)")
    if version is not None and version > SCHEMA_VERSION:
        raise RecordError(f"{where or name}: schema_version {version} is newer than this serprof ({SCHEMA_VERSION})")
    try:
        return cls(**kwargs)
    except (TypeError, RecordError) as exc:
        raise RecordError(f"{where or name}: {exc}") from None
