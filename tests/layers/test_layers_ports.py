"""Properties of the CPU ports, the SER head, the workload builder, layer points and the sweep axes."""

from __future__ import annotations

import pytest
import torch

from profiler.core.records import MeasureSettings, PointSpec
from profiler.layers import STUDY_LAYERS, build_port
from profiler.layers.common import attend

SMALL = dict(hidden=64, heads=2)


def _x(T=40, B=1, D=64, seed=0):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed))


def test_layers_bidirectional_retnet_is_symmetric_decay():
    B, T, H, D = 1, 37, 2, 8
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(B, T, H, D, generator=g) for _ in range(3))
    from profiler.layers.retnet import _retnet_diag

    got = attend("retnet", {"q": q, "k": k, "v": v}, bidirectional=True, diag=_retnet_diag)
    i = torch.arange(T)
    want = torch.empty_like(got)
    for h in range(H):
        gamma = 1 - 2 ** (-5 - h)
        decay = gamma ** (i[:, None] - i[None, :]).abs().double()
        s = (q[0, :, h].double() @ k[0, :, h].double().T) * D ** -0.5 * decay
        want[0, :, h] = (s @ v[0, :, h].double()).float()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", STUDY_LAYERS)
def test_layers_causal_ports_ignore_the_future_and_bidirectional_ones_do_not(name):
    torch.manual_seed(0)
    causal_layer = build_port(name, **SMALL, causal=True)
    x = _x()
    y = x.clone()
    y[:, -1] += 1.0
    with torch.no_grad():
        a, b = causal_layer(x), causal_layer(y)
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-5)
    assert not torch.allclose(a[:, -1], b[:, -1], atol=1e-5)
    spec_bi = name not in ("softmax", "mha")
    full = build_port(name, **SMALL, bidirectional=True) if spec_bi else build_port(name, **SMALL, causal=False)
    with torch.no_grad():
        c, d = full(x), full(y)
    assert (c[:, -2] - d[:, -2]).abs().max() > 1e-6   # an earlier token now sees the last one


def test_layers_ser_head_shapes_and_split():
    from profiler.layers.workload import split_T, workload_for

    spec = PointSpec(kernel="retnet", backend="torch", level="model", B=2, T=106, H=2, D=32,
                     options=(("frame_rate", "50"), ("text_rate", "3")))
    assert split_T(spec) == (100, 6)
    work = workload_for(spec)
    assert work.inputs["speech"].shape == (2, 100, 64) and work.inputs["text"].shape == (2, 6, 64)
    out = work.output()
    assert out.shape == (2, 8)
    from profiler.layers.ser import SERHead

    head = work.module
    assert isinstance(head, SERHead)
    linears = [m for m in head.classifier if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 512, 512, 8]


def test_layers_fwdbwd_workload_produces_parameter_gradients():
    from profiler.layers.workload import workload_for

    spec = PointSpec(kernel="gsa", backend="torch", level="layer", mode="fwdbwd", B=1, T=20, H=2, D=32)
    work = workload_for(spec)
    work.call()
    grads = [p.grad for p in work.module.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    work.reset()
    assert all(p.grad is None for p in work.module.parameters())


def _settings(**kw):
    base = dict(warmup_s=0.0, min_warmup_calls=1, min_reps=2, max_reps=3, time_budget_s=0.05,
                measure_energy=False, measure_memory=True)
    base.update(kw)
    return MeasureSettings(**base)


def test_layers_point_is_verified_timed_and_measured():
    from profiler.measure.point import measure_point

    spec = PointSpec(kernel="retnet", backend="torch", level="layer", B=1, T=48, H=2, D=32,
                     causal=False, options=(("bidirectional", "1"),))
    rec = measure_point(spec, _settings())
    assert rec.status == "ok", rec.reason
    assert rec.correctness.passed and rec.correctness.max_rel_err < 1e-4 and rec.correctness.checked_T == 48
    assert len(rec.timing.samples_s) >= 2 and all(s > 0 for s in rec.timing.samples_s)
    assert rec.memory.peak_bytes > 0 and rec.memory.analytic_bytes > 0
    assert rec.extra["params"] == sum(p.numel() for p in build_port("retnet", 64, 2).parameters())


def test_layers_replay_point_stores_the_utterance_summary():
    from profiler.measure.point import measure_point

    spec = PointSpec(kernel="mha", backend="torch", level="layer", B=2, T=583, H=2, D=32, causal=False,
                     options=(("distribution", "msp-podcast-like"), ("frame_rate", "50"), ("replay", "5"),
                              ("text_rate", "3")))
    rec = measure_point(spec, _settings(verify=False))
    assert rec.status == "ok", rec.reason
    rep = rec.extra["replay"]
    assert len(rep["durations_s"]) == 5 and len(rec.timing.samples_s) == 5
    assert len(rep["batch_latency_s"]) == 3            # 5 utterances in batches of 2
    s = rep["summary"]
    assert s["n"] == 5 and s["batch_size"] == 2
    assert s["total_s"] == pytest.approx(sum(rep["batch_latency_s"]))
    assert all(2.75 <= d <= 11 for d in rep["durations_s"])
    assert rep["lengths"] == [round(d * 50) + round(d * 3) for d in rep["durations_s"]]
    assert s["peak_bytes"] > 0


def test_layers_plan_expands_audio_bidirectional_and_replay():
    from profiler.planning.points import make_plan
    from profiler.planning.scenario import build_spec

    sweep = build_spec(None, {"level": "layer", "kernels": "retnet,softmax", "audio": "1min,2min",
                              "bidirectional": "on", "utterances": "10", "device": "cpu", "backends": "torch"})
    plan = make_plan(sweep)
    ids = [p.spec for p in plan.points]
    retnet = [s for s in ids if s.kernel == "retnet"]
    assert {s.T for s in retnet} == {3180, 6360, 583}
    assert {s.option("bidirectional") for s in retnet} == {None, "1"}
    assert all(not s.causal for s in retnet if s.option("bidirectional") == "1")
    # no --head-dim at layer level: the study's width, 1024 = 4 heads of 256 (D is per head at every level)
    assert all((s.H, s.D, s.hidden) == (4, 256, 1024) for s in ids)
    assert sum(1 for s in retnet if s.option("replay") == "10") == 2
    softmax = [s for s in ids if s.kernel == "softmax"]
    assert all(s.option("bidirectional") is None for s in softmax)
    assert {s.causal for s in softmax} == {True, False}
