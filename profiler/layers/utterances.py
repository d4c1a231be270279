"""Utterance-length distribution and the evaluation-set replay (the study's efficiency protocol).

Distribution (``MSP_PODCAST_LIKE``)
    MSP-Podcast segments speaking turns into utterances of 2.75 s to 11 s; most are short. serprof
    has no access to the corpus at run time, so it draws durations from a documented stand-in: a
    log-normal with median 5.0 s and log-sd 0.45, truncated to [2.75, 11] s by rejection (mean about
    5.5 s, median about 5.1 s, about 2.5 % of utterances above 10 s). It is "MSP-Podcast-like", not
    the corpus histogram; the parameters are stored with every replay so a run says what it used.
    Sampling is seeded (``numpy.random.default_rng(seed)``): same seed, same durations, everywhere.

Replay (``replay``)
    The study timed one call per real utterance at batch 1 after one warm-up batch and reported
    mean/min/max. serprof replays N utterances (default 1000) the same way, but:

    * inputs for every batch are built before the timed region (``prepare``), the call alone is timed
      with ``perf_counter_ns`` (or an injected timer; on CUDA the device's event timer);
    * ``warmup_calls`` untimed calls on the longest batch first (allocator and first-call costs);
    * batch size b > 1: utterances are taken in sampled order, b at a time, either zero-padded to
      the longest in the batch (``packing="padded"``) or, for the fla layers, packed into one
      variable-length sequence with ``cu_seqlens`` (``packing="packed"``,
      ``profiler.layers.packed``); each utterance's latency is its batch's latency (what a caller
      waits); the record keeps the tokens computed (padding included) against the real tokens;
    * per-utterance latency is summarised by mean, p50, p95 and max, each (except max) with a 95 %
      bootstrap interval over utterances (seeded, 1000 resamples); total time of the set and
      utterances per second = N / total; peak memory is the largest per-call peak a meter reports.

What it does not capture: feature extraction (WavLM/BERT), data loading, or the cost of padding
masks (padded positions are computed like real ones, as a padded batch without masks is; building
a packed batch and its ``cu_seqlens`` happens outside the timed region).
All values are SI: seconds, bytes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from profiler.core.errors import UsageError, did_you_mean

DEFAULT_N = 1000


@dataclass(frozen=True)
class DurationDistribution:
    """A truncated log-normal over utterance durations, in seconds."""

    name: str
    median_s: float
    log_sd: float
    min_s: float
    max_s: float
    note: str = ""

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """``n`` durations (seconds, float64) drawn with ``default_rng(seed)`` by rejection."""
        if n < 1:
            raise UsageError(f"number of utterances must be >= 1 (got {n})")
        rng = np.random.default_rng(seed)
        out = np.empty(0)
        mu = math.log(self.median_s)
        while out.size < n:
            draw = rng.lognormal(mu, self.log_sd, size=max(64, 2 * (n - out.size)))
            out = np.concatenate([out, draw[(draw >= self.min_s) & (draw <= self.max_s)]])
        return out[:n]

    def to_dict(self) -> dict:
        return {"name": self.name, "family": "lognormal_truncated", "median_s": self.median_s,
                "log_sd": self.log_sd, "min_s": self.min_s, "max_s": self.max_s, "note": self.note}


MSP_PODCAST_LIKE = DurationDistribution(
    name="msp-podcast-like", median_s=5.0, log_sd=0.45, min_s=2.75, max_s=11.0,
    note="stand-in for MSP-Podcast utterance lengths (segments of 2.75-11 s); not the corpus histogram",
)
DISTRIBUTIONS = {MSP_PODCAST_LIKE.name: MSP_PODCAST_LIKE}


def get_distribution(name: str) -> DurationDistribution:
    if name not in DISTRIBUTIONS:
        raise UsageError(f"unknown utterance distribution {name!r}; {did_you_mean(name, DISTRIBUTIONS)}")
    return DISTRIBUTIONS[name]


def sample_durations(n: int = DEFAULT_N, seed: int = 0, distribution: DurationDistribution = MSP_PODCAST_LIKE) -> np.ndarray:
    """Seeded utterance durations in seconds."""
    return distribution.sample(n, seed)


def batches(n: int, batch_size: int) -> list[list[int]]:
    """Consecutive groups of utterance indices, ``batch_size`` at a time (the last may be shorter)."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1 (got {batch_size})")
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


PACKINGS = ("padded", "packed")


def token_counts(lengths: Sequence[int], batch_size: int, packing: str = "padded") -> tuple[int, int]:
    """``(computed_tokens, real_tokens)`` of a replay taking utterances ``batch_size`` at a time.

    Padded: each batch computes ``len(batch) * max T`` tokens; packed (and batch 1): only real ones.
    """
    real = int(sum(lengths))
    if packing == "packed" or batch_size == 1:
        return real, real
    computed = sum(len(g) * max(lengths[i] for i in g) for g in batches(len(lengths), batch_size))
    return int(computed), real


@dataclass(frozen=True)
class ReplayResult:
    """Per-utterance latencies of one replay, with the summary the report shows."""

    durations_s: tuple[float, ...]
    lengths: tuple[int, ...]            # T of each utterance (unpadded)
    latency_s: tuple[float, ...]        # per utterance: its batch's call time
    batch_size: int
    batch_latency_s: tuple[float, ...]
    peak_bytes: int | None
    warmup_calls: int
    distribution: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    packing: str = "padded"             # "padded" | "packed" (see ``PACKINGS``)

    @property
    def total_s(self) -> float:
        return float(sum(self.batch_latency_s))

    @property
    def utterances_per_s(self) -> float:
        return len(self.latency_s) / self.total_s if self.total_s > 0 else math.inf

    @property
    def audio_s(self) -> float:
        return float(sum(self.durations_s))

    def summary(self, confidence: float = 0.95, resamples: int = 1000) -> dict:
        """Mean, p50, p95 (with bootstrap intervals over utterances) and max latency, totals."""
        x = np.asarray(self.latency_s, dtype=float)
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, x.size, size=(resamples, x.size))
        boot = x[idx]
        lo_q, hi_q = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100

        def stat(name: str, values: np.ndarray, point: float) -> dict:
            lo, hi = np.percentile(values, [lo_q, hi_q])
            return {name: point, f"{name}_ci": [float(lo), float(hi)]}

        out: dict = {"n": int(x.size), "batch_size": self.batch_size}
        out.update(stat("mean_s", boot.mean(axis=1), float(x.mean())))
        out.update(stat("p50_s", np.percentile(boot, 50, axis=1), float(np.percentile(x, 50))))
        out.update(stat("p95_s", np.percentile(boot, 95, axis=1), float(np.percentile(x, 95))))
        out["max_s"] = float(x.max())
        out["min_s"] = float(x.min())
        out["total_s"] = self.total_s
        out["utterances_per_s"] = self.utterances_per_s
        out["audio_s"] = self.audio_s
        out["real_time_factor"] = self.total_s / self.audio_s if self.audio_s > 0 else None
        out["peak_bytes"] = self.peak_bytes
        out["confidence"] = confidence
        return out

    def to_extra(self) -> dict:
        """JSON-ready dict for ``PointRecord.extra['replay']`` (summary plus raw samples).

        ``padded_tokens``: tokens computed over the set (padding included); ``real_tokens``: the
        utterances' own; ``padding_overhead`` = padded / real - 1 (0 for batch 1 and packed).
        """
        computed, real = token_counts(self.lengths, self.batch_size, self.packing)
        return {
            "packing": self.packing,
            "batch_size": self.batch_size,
            "padded_tokens": computed,
            "real_tokens": real,
            "padding_overhead": computed / real - 1 if real else 0.0,
            "summary": self.summary(),
            "distribution": dict(self.distribution),
            "seed": self.seed,
            "warmup_calls": self.warmup_calls,
            "durations_s": [round(d, 4) for d in self.durations_s],
            "lengths": list(self.lengths),
            "batch_latency_s": list(self.batch_latency_s),
        }


def _perf_counter(call: Callable[[], Any]) -> float:
    t0 = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - t0) * 1e-9


def replay(
    durations_s: Sequence[float],
    to_T: Callable[[float], int],
    prepare: Callable[[list[int]], Callable[[], Any]],
    *,
    batch_size: int = 1,
    warmup_calls: int = 1,
    time_call: Callable[[Callable[[], Any]], float] | None = None,
    peak_bytes: Callable[[Callable[[], Any]], int | None] | None = None,
    distribution: Mapping[str, Any] | None = None,
    seed: int = 0,
    packing: str = "padded",
) -> ReplayResult:
    """Time one call per batch of utterances.

    ``prepare(lengths)`` builds the padded batch for utterances of those T (outside the timed region)
    and returns the zero-argument call to time. ``time_call(call)`` runs it once and returns seconds
(default: ``perf_counter_ns`` around the call; CUDA callers pass their event timer). ``peak_bytes(call)``,
    if given, runs the call once more under a memory meter and returns its peak above entry (bytes);
    it is applied to the longest batch only (the peak of the set), never inside the timed loop.
    ``packing`` is recorded; it also picks the "longest" batch: the longest utterance when padded,
    the most tokens when packed (``prepare`` builds the batch accordingly).
    """
    if packing not in PACKINGS:
        raise UsageError(f"unknown packing {packing!r}; valid: {', '.join(PACKINGS)}")
    lengths = [int(to_T(d)) for d in durations_s]
    groups = batches(len(lengths), batch_size)
    if packing == "packed":
        longest = max(groups, key=lambda g: sum(lengths[i] for i in g))
    else:
        longest = max(groups, key=lambda g: max(lengths[i] for i in g))
    warm = prepare([lengths[i] for i in longest])
    for _ in range(max(0, warmup_calls)):
        warm()
    peak = peak_bytes(warm) if peak_bytes is not None else None
    del warm
    per_utt = [0.0] * len(lengths)
    per_batch = []
    for g in groups:
        call = prepare([lengths[i] for i in g])
        dt = float((time_call or _perf_counter)(call))
        per_batch.append(dt)
        for i in g:
            per_utt[i] = dt
    return ReplayResult(
        durations_s=tuple(float(d) for d in durations_s), lengths=tuple(lengths), latency_s=tuple(per_utt),
        batch_size=batch_size, batch_latency_s=tuple(per_batch), peak_bytes=peak, warmup_calls=warmup_calls,
        distribution=dict(distribution or {}), seed=seed, packing=packing,
    )
