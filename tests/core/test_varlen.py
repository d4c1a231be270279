"""Length distributions and packings of kernel-level varlen batches (profiler.core.varlen)."""

from __future__ import annotations

import statistics

import pytest

from profiler.core import varlen
from profiler.core.errors import UsageError


@pytest.mark.parametrize("text, canon", [
    ("lognormal", "lognormal"),
    ("LogNormal:sigma=0.5,median=2k", "lognormal:median=2048,sigma=0.5"),
    ("uniform:max=1k", "uniform:max=1024"),
    ("1000,3000,500", "fixed:1000,3000,500"),          # a bare list keeps order and repeats
    ("fixed:2k,1k,2k", "fixed:2048,1024,2048"),
    ("speech", "speech"),
])
def test_spellings_have_one_canonical_form(text, canon):
    d = varlen.parse(text)
    assert d.text == canon and varlen.parse(d.text) == d
    assert "/" not in d.label and "=" not in d.label


@pytest.mark.parametrize("text, fragment", [
    ("zipf", "unknown distribution 'zipf'"),
    ("lognormal:rate=2", "no parameter 'rate'"),
    ("lognormal:sigma=x", "sigma must be a number"),
    ("uniform:min=10,max=5", "min (10) is above max (5)"),
    ("fixed:", "'fixed' needs lengths"),
    ("fixed:10,-2", "--varlen"),
    ("speech:max=3", "speech has no parameter 'max'"),
])
def test_bad_spellings_name_the_flag(text, fragment):
    with pytest.raises(UsageError) as e:
        varlen.parse(text, "--varlen")
    assert str(e.value).startswith("--varlen") and fragment in str(e.value)


def test_pack_is_seeded_fills_the_budget_exactly_and_records_the_cut():
    d = varlen.parse("lognormal")
    a, b, c = varlen.pack(d, 65536, 0), varlen.pack(d, 65536, 0), varlen.pack(d, 65536, 1)
    assert a == b and a.lengths != c.lengths
    assert a.tokens == 65536 and a.cu_seqlens[-1] == 65536 and len(a.cu_seqlens) == len(a.lengths) + 1
    assert all(16 <= n <= 8192 for n in a.lengths[:-1])
    if a.cut_from is not None:
        assert a.cut_from > a.lengths[-1]


def test_fixed_list_repeats_in_order_and_its_waste_is_hand_computed():
    p = varlen.pack(varlen.parse("1000,3000,500"), 9000, 0)
    assert p.lengths == (1000, 3000, 500, 1000, 3000, 500) and p.cut_from is None
    s = p.summary()
    assert (s["count"], s["min"], s["median"], s["max"]) == (6, 500, 1000, 3000)
    assert s["padded_tokens"] == 6 * 3000 and s["padding_waste"] == pytest.approx(1 - 9000 / 18000)
    cut = varlen.pack(varlen.parse("1000,3000"), 4500, 0)
    assert cut.lengths == (1000, 3000, 500) and cut.cut_from == 1000


def test_distributions_have_their_documented_shape():
    rng_draws = {name: varlen.pack(varlen.parse(name), 2_000_000, 3).lengths[:-1]
                 for name in ("uniform", "lognormal", "exponential", "speech")}
    u = rng_draws["uniform"]
    assert min(u) >= 64 and max(u) <= 4096 and statistics.mean(u) == pytest.approx(2080, rel=0.05)
    assert statistics.median(rng_draws["lognormal"]) == pytest.approx(1024, rel=0.1)
    e = rng_draws["exponential"]
    assert statistics.median(e) < statistics.mean(e)            # the long tail
    s = rng_draws["speech"]
    assert min(s) >= 146 and max(s) <= 583                      # 2.75 s .. 11 s at 53 tokens/s


def test_speech_is_the_ser_replay_distribution():
    from profiler.layers.utterances import MSP_PODCAST_LIKE as m

    assert (varlen.SPEECH_MEDIAN_S, varlen.SPEECH_LOG_SD, varlen.SPEECH_MIN_S, varlen.SPEECH_MAX_S) == (
        m.median_s, m.log_sd, m.min_s, m.max_s)


def test_budget_below_the_longest_sequence_is_refused():
    with pytest.raises(UsageError, match=r"--tokens: token budget 4096 is smaller than the longest .* \(8192\)"):
        varlen.check_budget(varlen.parse("lognormal"), 4096, "--tokens")
    varlen.check_budget(varlen.parse("lognormal:max=4k"), 4096, "--tokens")
