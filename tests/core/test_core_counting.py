"""FLOP and byte counts against hand-computed cases and a brute-force pair count."""

from __future__ import annotations

import itertools

import pytest

from profiler.core.counting import (
    FORMULAS,
    AttnShape,
    attended_pairs,
    io_bytes,
    kv_cache_bytes,
    linear_flops,
    padding_waste,
    softmax_flops,
    tokens,
)


def brute_pairs(T, causal, window):
    ok = 0
    for i, j in itertools.product(range(T), range(T)):
        if causal and j > i:
            continue
        if window is not None and abs(i - j) >= window:
            continue
        ok += 1
    return ok


@pytest.mark.parametrize("T", [1, 2, 5, 9])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [None, 1, 2, 4, 20])
def test_pairs_match_a_brute_force_count(T, causal, window):
    assert attended_pairs(T, causal, window) == brute_pairs(T, causal, window)


def test_pairs_hand_computed():
    assert attended_pairs(4, True) == 10                 # 1+2+3+4
    assert attended_pairs(4, False) == 16
    assert attended_pairs(5, True, window=2) == 9        # 1+2+2+2+2
    assert attended_pairs(5, False, window=2) == 13      # 2+3+3+3+2


def test_softmax_flops_causal_is_about_half_of_full_and_window_less():
    full = softmax_flops(AttnShape(B=2, T=1024, H=4, D=64, causal=False))
    causal = softmax_flops(AttnShape(B=2, T=1024, H=4, D=64))
    assert full == 2 * 4 * 1024 * 1024 * (2 * 64 + 2 * 64)             # B*H*T^2*4D
    assert causal == 2 * 4 * (1024 * 1025 // 2) * 256
    assert causal / full == pytest.approx(0.5, abs=1e-3)
    win = softmax_flops(AttnShape(B=1, T=8, H=1, D=2, window=3))
    assert win == (3 * 4 // 2 + 5 * 3) * (4 + 4)                       # 21 pairs x 8


def test_softmax_gqa_keeps_flops_and_cuts_bytes_value_dim_counts():
    mha = AttnShape(B=1, T=100, H=8, D=64)
    gqa = AttnShape(B=1, T=100, H=8, D=64, kv_heads=2)
    assert softmax_flops(mha) == softmax_flops(gqa)
    assert io_bytes(mha, 2) == 100 * (4 * 8 * 64) * 2
    assert io_bytes(gqa, 2) == 100 * (8 * 64 + 2 * 64 + 2 * 64 + 8 * 64) * 2
    wide_v = AttnShape(B=1, T=10, H=1, D=64, Dv=128, causal=False)
    assert softmax_flops(wide_v) == 100 * (128 + 256)
    assert kv_cache_bytes(gqa, 2) == 100 * 2 * 128 * 2


def test_modes_follow_flash_attention_and_linear_conventions():
    s = AttnShape(B=1, T=64, H=1, D=16)
    assert softmax_flops(s, "bwd") == 2.5 * softmax_flops(s) and softmax_flops(s, "fwdbwd") == 3.5 * softmax_flops(s)
    assert linear_flops(s, "bwd") == 2 * linear_flops(s) and linear_flops(s, "fwdbwd") == 3 * linear_flops(s)
    assert io_bytes(s, 4, "bwd") == 2 * io_bytes(s, 4)


def test_linear_flops_hand_computed_with_padding_to_the_chunk():
    s = AttnShape(B=2, T=100, H=3, D=16, Dv=32)
    per_token = 2 * 64 * (16 + 32) + 4 * 16 * 32                    # 6144 + 2048
    assert linear_flops(s) == 3 * (2 * 128) * per_token               # T=100 padded to 128, two sequences


def test_packed_against_padded_varlen():
    s = AttnShape(B=0 + 1, T=5, H=1, D=1, lengths=(3, 5))
    assert tokens(s) == 8 and tokens(s, padded=True) == 10
    assert softmax_flops(s) == (6 + 15) * 4                          # pairs 3*4/2 + 5*6/2, x (2D + 2Dv)
    assert softmax_flops(s, padded=True) == 2 * 15 * 4
    assert padding_waste([3, 5]) == pytest.approx(0.2)
    assert padding_waste([7, 7, 7]) == 0.0
    assert linear_flops(s, chunk=4) == (4 + 8) * (2 * 4 * 2 + 4)      # 3->4, 5->8


@pytest.mark.parametrize("kw, msg", [
    (dict(kv_heads=3), "divide"), (dict(window=0), "window"), (dict(lengths=()), "lengths"),
    (dict(lengths=(3, 0)), "lengths"),
])
def test_bad_shapes_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        AttnShape(B=1, T=8, H=4, D=8, **kw)
    with pytest.raises(ValueError):
        padding_waste([])


def test_every_formula_is_written_down():
    assert set(FORMULAS) >= {"pairs", "softmax_flops", "linear_flops", "io_bytes", "packed"}
