"""Decode and streaming (profiler.kernels.recurrent): outputs from a carried state / KV cache equal the
full-sequence reference at the same positions, the carried memory is constant (state) or linear (cache)
in T, and the one shared recurrent step is the chunkwise engine's recurrence. Tiny shapes only."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from profiler.core.records import PointSpec
from profiler.kernels import chunked as ck
from profiler.kernels import recurrent as rc
from profiler.kernels import registry
from profiler.kernels.base import Shape

RECURRENT = ("softmax", "retnet", "lightnet", "gsa", "kda", "fox")


def _point(kernel, phase="decode", n=3, T=40, B=2, dtype="float32"):
    k = registry()[kernel]
    opt = ("steps", str(n)) if phase == "decode" else ("chunk", str(n))
    return k, PointSpec(kernel=kernel, backend=k.recurrent.backends()[0], B=B, T=T, H=2, D=16, dtype=dtype,
                        phase=phase, options=(opt,))


def test_every_builtin_mechanism_declares_its_recurrent_form():
    kinds = {name: registry()[name].recurrent.kind for name in RECURRENT}
    assert kinds == {"softmax": "cache", "fox": "cache", "retnet": "state", "lightnet": "state", "gsa": "state",
                     "kda": "state"}


@pytest.mark.parametrize("phase", ["decode", "streaming"])
@pytest.mark.parametrize("kernel", RECURRENT)
def test_decode_and_streaming_match_the_full_sequence(kernel, phase):
    k, p = _point(kernel, phase)
    c = rc.check(k, p, "cpu", seed=1, max_T=2048)
    assert c.passed and c.max_rel_err < 1e-5 and c.checked_T == p.T, c


@pytest.mark.parametrize("kernel", ["retnet", "kda", "softmax"])
def test_a_wrong_context_is_caught(kernel, monkeypatch):
    """The check can fail: a context built from a shorter prefix disagrees with the full sequence."""
    k, p = _point(kernel)
    real = rc.context

    def short(kernel_, point, device, seed, T=None, n=None, inputs=None):
        ctx = real(kernel_, point, device, seed, T=T, n=n, inputs=inputs)
        bad = real(kernel_, point, device, seed, T=T - 5, n=n + 5, inputs=inputs)
        ctx.carried = {name: t if t.shape == ctx.carried[name].shape else ctx.carried[name]
                       for name, t in bad.carried.items()} if k.recurrent.kind == "state" else ctx.carried
        if k.recurrent.kind == "cache":
            ctx.carried["k_cache"][:, :, T - 5:T] = 0
        return ctx

    monkeypatch.setattr(rc, "context", short)
    c = rc.check(k, p, "cpu", seed=1, max_T=2048)
    assert not c.passed and c.max_rel_err > 1e-3


def test_long_context_is_checked_on_what_the_reference_affords():
    k, p = _point("kda", T=100, n=2)
    c = rc.check(k, p, "cpu", seed=0, max_T=48)
    assert c.passed and c.checked_T == 46


def test_carried_bytes_state_constant_cache_linear():
    for name in ("retnet", "kda"):
        k = registry()[name]
        sizes = [rc.carried_bytes(k, Shape(1, T, 4, 64), 4) for T in (1024, 4096, 16384)]
        assert sizes == [4 * 64 * 64 * 4] * 3
    sm = registry()["softmax"]
    assert [rc.carried_bytes(sm, Shape(1, T, 4, 64), 2) for T in (1024, 2048)] == [2 * 4 * T * 64 * 2 for T in (1024, 2048)]
    assert rc.carried_bytes(registry()["lightnet"], Shape(2, 8, 4, 64), 4) == 2 * 4 * (64 * 64 + 64) * 4


@pytest.mark.parametrize("kernel", ["retnet", "softmax", "gsa"])
def test_workload_measures_the_carried_tensors(kernel):
    k, p = _point(kernel, n=2)
    work = k.build(p, "cpu", 0)
    work.call()
    assert work.extra["carried_bytes"] > 0 and work.extra["tokens_per_call"] == 2
    expected = rc.carried_bytes(k, Shape(p.B, p.T + (2 if k.recurrent.kind == "cache" else 0), p.H, p.D), 4)
    assert work.extra["carried_bytes"] == expected == work.extra["carried_bytes_analytic"]   # cache: T + steps rows


def test_shared_step_is_the_chunkwise_engine_at_chunk_length_one():
    """From a zero state, T steps of ``recurrent.step`` reproduce the chunkwise RetNet engine, and
    ``gated_state`` is the state the steps leave behind."""
    g = torch.Generator().manual_seed(0)
    B, T, H, D = 1, 70, 2, 8
    q, k, v = (torch.randn(B, T, H, D, generator=g) for _ in range(3))
    from profiler.kernels.retnet import log_gamma

    lg = log_gamma(H)
    chunk = ck.from_chunks(ck.decay_chunked(*(ck.to_chunks(x, 64) for x in (q, k, v)), lg, 0.5), T)
    S = torch.zeros(B, H, D, D)
    steps = torch.stack([rc.step(S, q[:, t] * 0.5, k[:, t], v[:, t], gk=lg[None, :, None]) for t in range(T)], 1)
    torch.testing.assert_close(steps, chunk, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rc.gated_state(k, v, gk=lg[None, None, :, None].expand(1, T, H, 1)), S,
                               rtol=1e-5, atol=1e-5)


def test_scan_states_runs_the_shared_advance(monkeypatch):
    calls = []
    real = rc.advance
    monkeypatch.setattr(ck, "advance", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    ck.scan_states(torch.ones(1, 1, 4, 2, 2), torch.full((1, 1, 4, 2, 1), 0.5))
    assert len(calls) == 3


def test_decode_is_inference_only():
    from profiler.core.errors import UsageError

    k, p = _point("retnet")
    with pytest.raises(UsageError, match="inference only"):
        k.build(dataclasses.replace(p, mode="fwdbwd"), "cpu", 0)


def test_prefill_ids_do_not_change_and_phase_ids_differ():
    p = PointSpec(kernel="retnet", backend="torch")
    assert p.id == "kernel/retnet/torch/cpu/float32/fwd/B1/T1024/H4/D64/causal"
    d = dataclasses.replace(p, phase="decode", options=(("steps", "4"),))
    assert d.id == p.id + "/phase=decode/steps=4" and d.series_key != p.series_key and d.tokens_per_call == 4


def test_fox_forget_bias_stays_exact_at_long_context():
    """FoX's bias G_i - G_j is a difference of long cumulative sums: the gate cache is fp64."""
    k, p = _point("fox", T=3000, n=2, B=1)
    c = rc.check(k, p, "cpu", seed=0, max_T=4096)
    assert c.passed and c.max_rel_err < 1e-6, c


@pytest.mark.parametrize("kernel", ["retnet", "lightnet", "gsa", "kda"])
def test_streaming_chunks_run_the_chunkwise_form_from_the_state(kernel, monkeypatch):
    """A chunk longer than the engine's sub-chunk is exact, and never goes through the token step."""
    k, p = _point(kernel, "streaming", n=70, T=30, B=1)
    calls = []
    real = rc.step
    monkeypatch.setattr(rc, "step", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    c = rc.check(k, p, "cpu", seed=2, max_T=2048)
    assert c.passed and c.max_rel_err < 1e-5 and calls == [], (c, len(calls))
    k, p = _point(kernel, "streaming", n=rc.CHUNK_MIN - 1, T=30, B=1)   # a short frame: token by token
    assert rc.check(k, p, "cpu", seed=2, max_T=2048).passed and len(calls) >= rc.CHUNK_MIN - 1


def test_many_decode_steps_are_checked_on_what_the_reference_affords():
    k, p = _point("retnet", n=500, T=300, B=1)
    c = rc.check(k, p, "cpu", seed=0, max_T=64)
    assert c.passed and c.checked_T == 32 and "of 64 tokens" in c.reference
