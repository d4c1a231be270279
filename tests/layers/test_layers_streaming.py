"""Streaming and decode of whole SER layers (profiler.layers.streaming): a layer fed chunk by chunk with its
state / KV cache (and KDA's convolution tails) carried equals the full-sequence layer at the same
positions; what cannot stream is dropped with the reason; the workload measures the carried tensors.
Tiny shapes (hidden 64: 2 heads of 32)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from profiler.core.errors import UsageError
from profiler.core.records import PointSpec
from profiler.kernels.base import Shape
from profiler.layers import STUDY_LAYERS, common
from profiler.layers import streaming as ls
from profiler.layers.entry import entry


def _point(name, phase="streaming", n=2, T=24, B=2, dtype="float32"):
    opt = ("chunk", str(n)) if phase == "streaming" else ("steps", str(n))
    return PointSpec(kernel=name, backend="torch", level="layer", B=B, T=T, H=2, D=32, causal=True,
                     dtype=dtype, phase=phase, options=(opt,))


@pytest.mark.parametrize("phase,n", [("streaming", 2), ("streaming", 9), ("decode", 2)])
@pytest.mark.parametrize("name", STUDY_LAYERS)
def test_streamed_layer_equals_the_full_sequence(name, phase, n):
    """Chunks of 2 (token steps), 9 (the chunkwise form from the state) and decode steps, three in a row."""
    c = ls.check(_point(name, phase, n), "cpu", seed=1)
    assert c.passed and c.max_rel_err < 1e-5 and c.checked_T == 24, c


def test_bf16_stream_is_checked_against_the_fp32_layer():
    c = ls.check(_point("retnet", dtype="bfloat16"), "cpu", seed=0)
    assert c.passed and 1e-4 < c.max_rel_err <= c.tolerance, c


def test_rope_at_the_wrong_position_is_caught(monkeypatch):
    """The check can fail: RetNet's chunk rotated as if it started the sequence."""
    real = common.rotary
    import profiler.layers.retnet as retnet

    monkeypatch.setattr(retnet, "rotary", lambda x, base=10000.0, offset=0: real(x, base))
    c = ls.check(_point("retnet"), "cpu", seed=1)
    assert not c.passed and c.max_rel_err > 1e-2


def test_kda_convolution_tail_must_be_carried(monkeypatch):
    """KDA without its carried convolution inputs (zeros before every chunk) disagrees."""
    real = common.short_conv_stream
    import profiler.layers.kda as kda

    def forgetful(conv, x, carried, name, activation=True):
        if carried is not None and name in carried:
            carried[name].zero_()
        return real(conv, x, carried, name, activation)

    monkeypatch.setattr(kda, "short_conv_stream", forgetful)
    c = ls.check(_point("kda"), "cpu", seed=1)
    assert not c.passed and c.max_rel_err > 1e-3


def test_short_conv_stream_equals_the_whole_sequence():
    torch.manual_seed(0)
    conv = common.ShortConv(8, 4)
    x = torch.randn(2, 11, 8)
    carried: dict = {}
    parts = [common.short_conv_stream(conv, x[:, a:b], carried, "c") for a, b in ((0, 2), (2, 3), (3, 11))]
    torch.testing.assert_close(torch.cat(parts, 1), common.short_conv(conv, x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["retnet", "kda", "fox", "softmax"])
def test_workload_measures_what_the_layer_carries(name):
    e = entry(name)
    p = _point(name, T=32, B=1)
    w = e.build(p, "cpu", 0)
    w.call()
    w.call()   # repeated calls re-process the same positions (a cache rewrites its rows)
    ex = w.extra
    assert ex["tokens_per_call"] == 2 and ex["phase"] == "streaming"
    assert ex["carried_bytes"] == ex["carried_bytes_analytic"] > 0
    kind = ex["carried_kind"]
    assert kind == ("cache" if name in ("fox", "softmax") else "state")
    a_short = e.carried_bytes(Shape(1, 100, 2, 32), 4)
    a_long = e.carried_bytes(Shape(1, 1000, 2, 32), 4)
    assert (a_long == a_short) if kind == "state" else (a_long > 9 * a_short)
    an = e.analytic(p, 4)
    assert an.flops > 0 and an.bytes_moved > 0 and an.memory_bytes == e.carried_bytes(Shape(1, 32, 2, 32), 4)


def test_what_cannot_stream_says_why():
    assert "ForgettingAttention" in entry("fox").phase_unsupported("fla", "streaming")
    assert entry("retnet").phase_unsupported("fla", "streaming") is None
    assert "pooling" in entry("retnet", "model").phase_unsupported("torch", "decode")
    assert entry("kda").phase_unsupported("torch", "streaming") is None
    with pytest.raises(UsageError, match="inference only"):
        entry("retnet").build(dataclasses.replace(_point("retnet"), mode="fwdbwd"), "cpu", 0)


def test_layer_streaming_plan():
    from profiler.core.records import MeasureSettings
    from profiler.planning.points import make_plan
    from profiler.planning.scenario import SweepSpec

    settings = MeasureSettings(phase="streaming", chunk_size=2, memory_budget_bytes=1 << 40)
    plan = make_plan(SweepSpec(kernels=("retnet", "fox"), lengths=(64, 4096), level="layer", device="cpu", heads=(2,),
                               head_dims=(32,), settings=settings))
    ids = [p.spec.id for p in plan.points]
    assert len(ids) == 4 and all("phase=streaming" in i and "chunk=2" in i for i in ids)
    reasons = " ".join(d.reason for d in plan.dropped)
    assert "ForgettingAttention" in reasons
    est = {(p.spec.kernel, p.spec.T): p.est_bytes for p in plan.points}
    # a state is constant in T (the inputs of T + 2 positions add a little); a cache grows with T
    assert est[("retnet", 4096)] - est[("retnet", 64)] < 2 * 4032 * 1024 * 4 + 1
    assert est[("fox", 4096)] > 30 * est[("fox", 64)]


def _fla_child(layers: list) -> dict:
    """In an interpreted child: each fla layer class streamed through its own past_key_values cache
    (chunks of 2; decode steps) against the fp32 torch port with the fla weights."""
    from profiler.core.records import PointSpec
    from profiler.layers import streaming as ls

    out = {}
    for name in layers:
        for phase, opt in (("streaming", ("chunk", "2")), ("decode", ("steps", "1"))):
            p = PointSpec(kernel=name, backend="fla", level="layer", B=1, T=8, H=2, D=32, causal=True,
                          interpret=True, phase=phase, options=(opt,))
            c = ls.check(p, "cpu", 0, max_T=32)
            out[f"{name}/{phase}"] = [c.max_rel_err, c.passed]
    return out


@pytest.fixture(scope="module")
def fla_results():
    from profiler.kernels.interpret import run_isolated

    return run_isolated(f"{__file__}:_fla_child", {"layers": list(ls.FLA_STREAMING)}, timeout_s=600)


@pytest.mark.interpret
@pytest.mark.long        # one interpreted child for 4 fla layer classes x 2 phases (~15-40 s); make test-long
@pytest.mark.parametrize("phase", ["streaming", "decode"])
@pytest.mark.parametrize("name", ls.FLA_STREAMING)
def test_fla_layer_streams_through_its_cache_under_interpreter(fla_results, name, phase):
    err, passed = fla_results[f"{name}/{phase}"]
    assert passed and err < 1e-5, err
