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


# ----------------------------------------------------------------------------- flash-attn decode backend

def _fake_flash_attn(calls: list):
    """A stand-in ``flash_attn`` package whose ``flash_attn_with_kvcache`` models the real one
    (flash-attn 2.x): caches ``(B, capacity, Hkv, D)``; ``k`` / ``v`` ``(B, n, Hkv, D)`` written into the
    caches in place at ``cache_seqlens`` (an int or an int32 ``(B,)`` tensor); the ``n`` queries attend
    keys ``[0, cache_seqlens + n)``, ``causal`` aligned to the bottom right (query i sees keys
    ``<= cache_seqlens + i``); returns ``(B, n, Hq, D)``."""
    import types

    def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                                cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                                softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                rotary_interleaved=True, alibi_slopes=None, num_splits=0,
                                return_softmax_lse=False):
        assert q.dim() == 4 and k_cache.dim() == 4 and k_cache.shape[0] == q.shape[0]
        B, n = q.shape[:2]
        lens = (torch.full((B,), int(cache_seqlens), dtype=torch.int32) if isinstance(cache_seqlens, int)
                else cache_seqlens)
        calls.append({"n": n, "seqlens": lens.tolist(), "causal": causal, "scale": softmax_scale,
                      "k_given": k is not None})
        outs = []
        for b in range(B):
            L = int(lens[b])
            if k is not None:
                k_cache[b, L:L + n] = k[b]
                v_cache[b, L:L + n] = v[b]
            keys, vals = k_cache[b, :L + n].float(), v_cache[b, :L + n].float()   # (Tk, Hkv, D)
            rep = q.shape[2] // keys.shape[1]
            keys, vals = keys.repeat_interleave(rep, 1), vals.repeat_interleave(rep, 1)
            s = torch.einsum("qhd,khd->hqk", q[b].float(), keys) * softmax_scale
            if causal:
                future = torch.arange(L + n)[None, :] > (L + torch.arange(n))[:, None]
                s = s.masked_fill(future, float("-inf"))
            outs.append(torch.einsum("hqk,khd->qhd", s.softmax(-1), vals))
        return torch.stack(outs).to(q.dtype)

    return types.SimpleNamespace(flash_attn_with_kvcache=flash_attn_with_kvcache)


@pytest.mark.parametrize("phase", ["decode", "streaming"])
def test_flash_attn_with_kvcache_decode_matches_the_full_sequence(monkeypatch, phase):
    """Softmax decode / streaming through flash-attn's kvcache call (a fake modelling its signature and
    in-place cache write: flash-attn is CUDA-only and optional) equals the full-sequence reference."""
    calls: list = []
    monkeypatch.setattr(rc, "flash_attn", _fake_flash_attn(calls))   # the lazily imported package
    k = registry()["softmax"]
    p = dataclasses.replace(_point("softmax", phase)[1], backend="flash-attn")
    c = rc.check(k, p, "cpu", seed=2, max_T=2048)
    assert c.passed and c.max_rel_err < 1e-5, c
    assert all(call["causal"] and call["k_given"] for call in calls)
    assert [call["seqlens"][0] for call in calls] == ([40, 41, 42] if phase == "decode" else [40])
    work = k.build(p, "cpu", 0)
    assert work.inputs["k_cache"].shape == (2, 43, 2, 16)            # (B, T + n, H, D), flash-attn's layout
    before = work.inputs["k_cache"][:, 40:].clone()
    work.call()
    assert not torch.equal(work.inputs["k_cache"][:, 40:], before)   # written in place by the call
    assert work.extra["carried_bytes"] == work.extra["carried_bytes_analytic"]


def test_flash_attn_decode_backend_is_optional():
    """Decode declares the flash-attn backend; without the package it is unavailable with the reason
    (never a hard dependency)."""
    import importlib.util

    k = registry()["softmax"]
    assert rc.unsupported(k, "flash-attn", "decode") is None and rc.unsupported(k, "flash-attn", "streaming") is None
    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash_attn is installed here")
    ok, why = k.backends["flash-attn"].availability("cuda", cuda_available=True)
    assert not ok and "flash_attn" in why


def test_fla_decoding_needs_full_caches_for_several_streams():
    """fla's packed varlen decoding cannot read B > 1 pre-allocated caches with free slots: the point says so."""
    from profiler.core.errors import UnavailableError

    k = registry()["softmax"]
    p = dataclasses.replace(_point("softmax", "decode", n=2)[1], backend="fla")
    with pytest.raises(UnavailableError, match="--decode-steps 1"):
        rc.check(k, p, "cpu", seed=0, max_T=2048)
