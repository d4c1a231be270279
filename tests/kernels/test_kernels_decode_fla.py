"""Decode through fla's fused recurrent kernels with a carried ``initial_state`` (the CUDA decode path),
run on CPU under Triton's interpreter in a fresh process (``interpret.run_isolated``), tiny shapes."""

from __future__ import annotations

import pytest

from profiler.kernels.interpret import run_isolated

pytestmark = pytest.mark.interpret

LINEAR = ("retnet", "lightnet", "gsa", "kda")


def _child(kernels: list) -> dict:
    """In the interpreted child: decode (2 steps) and streaming (chunk 3) after T=8 vs the full sequence."""
    from profiler.core.records import PointSpec
    from profiler.kernels import recurrent as rc
    from profiler.kernels import registry

    out = {}
    for name in kernels:
        k = registry()[name]
        for phase, opt in (("decode", ("steps", "2")), ("streaming", ("chunk", "3"))):
            p = PointSpec(kernel=name, backend=rc.FLA_BACKEND, B=1, T=8, H=2, D=16, interpret=True,
                          phase=phase, options=(opt,))
            c = rc.check(k, p, "cpu", seed=0, max_T=64)
            out[f"{name}/{phase}"] = [c.max_rel_err, c.passed]
    return out


@pytest.fixture(scope="module")
def results():
    return run_isolated(f"{__file__}:_child", {"kernels": list(LINEAR)}, timeout_s=300)


@pytest.mark.parametrize("kernel", LINEAR)
@pytest.mark.parametrize("phase", ["decode", "streaming"])
def test_fla_fused_recurrent_with_carried_state_matches_full_sequence(results, kernel, phase):
    err, passed = results[f"{kernel}/{phase}"]
    assert passed and err < 1e-5, err


def _child_cache(kernels: list) -> dict:
    """In the interpreted child: softmax / FoX decode through fla's ``attn_decoding_one_step`` on a packed
    KV cache (B=1: 2 steps, streaming chunk 3; B=2: one step, full caches) vs the full sequence."""
    from profiler.core.records import PointSpec
    from profiler.kernels import recurrent as rc
    from profiler.kernels import registry

    out = {}
    for name in kernels:
        k = registry()[name]
        for B, phase, opt in ((1, "decode", ("steps", "2")), (2, "decode", ("steps", "1")),
                              (1, "streaming", ("chunk", "3"))):
            p = PointSpec(kernel=name, backend=rc.FLA_DECODING_BACKEND, B=B, T=8, H=2, D=16, interpret=True,
                          phase=phase, options=(opt,))
            c = rc.check(k, p, "cpu", seed=0, max_T=64)
            out[f"{name}/B{B}/{phase}"] = [c.max_rel_err, c.passed]
    return out


@pytest.fixture(scope="module")
def cache_results():
    return run_isolated(f"{__file__}:_child_cache", {"kernels": ["softmax", "fox"]}, timeout_s=300)


@pytest.mark.parametrize("kernel", ["softmax", "fox"])
@pytest.mark.parametrize("case", ["B1/decode", "B2/decode", "B1/streaming"])
def test_fla_attention_decoding_matches_full_sequence(cache_results, kernel, case):
    err, passed = cache_results[f"{kernel}/{case}"]
    assert passed and err < 1e-5, err
