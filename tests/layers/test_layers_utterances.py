"""Utterance-length sampler (seeded, bounded) and the replay bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from profiler.core.errors import UsageError
from profiler.layers.utterances import (
    MSP_PODCAST_LIKE,
    batches,
    get_distribution,
    replay,
    sample_durations,
)


def test_layers_sampler_is_seeded_and_bounded():
    a = sample_durations(1000, seed=3)
    b = sample_durations(1000, seed=3)
    c = sample_durations(1000, seed=4)
    assert a.shape == (1000,)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 2.75 and a.max() <= 11.0


def test_layers_sampler_shape_matches_its_documentation():
    d = sample_durations(20000, seed=0)
    assert 5.0 < d.mean() < 6.0          # documented: mean about 5.5 s
    assert 4.7 < np.median(d) < 5.5      # documented: median about 5.1 s
    assert (d > 10).mean() < 0.05
    assert MSP_PODCAST_LIKE.to_dict()["min_s"] == 2.75


def test_layers_bad_sampler_input():
    with pytest.raises(UsageError):
        sample_durations(0)
    with pytest.raises(UsageError):
        get_distribution("librispeech")
    with pytest.raises(UsageError):
        batches(10, 0)


def test_layers_replay_times_each_batch_and_summarises():
    durations = [3.0, 4.0, 5.0, 6.0, 10.0]
    prepared = []
    fake_times = iter([0.1, 0.2, 0.3])      # one per batch of 2,2,1

    def prepare(lengths):
        prepared.append(list(lengths))
        return lambda: None

    res = replay(durations, lambda s: int(s * 10), prepare, batch_size=2, warmup_calls=1,
                 time_call=lambda call: next(fake_times), peak_bytes=lambda call: 1234)
    assert prepared[0] == [100]              # warm-up on the longest batch first
    assert prepared[1:] == [[30, 40], [50, 60], [100]]
    assert res.latency_s == (0.1, 0.1, 0.2, 0.2, 0.3)
    s = res.summary()
    assert s["n"] == 5 and s["total_s"] == pytest.approx(0.6)
    assert s["utterances_per_s"] == pytest.approx(5 / 0.6)
    assert s["mean_s"] == pytest.approx(0.18) and s["max_s"] == 0.3
    lo, hi = s["mean_s_ci"]
    assert lo <= s["mean_s"] <= hi
    assert s["peak_bytes"] == 1234
    assert s["audio_s"] == pytest.approx(28.0)
    extra = res.to_extra()
    assert extra["lengths"] == [30, 40, 50, 60, 100]
