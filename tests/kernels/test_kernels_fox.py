"""FoX kernel: blockwise torch backends vs an fp64 brute force, fla's naive oracle, gradients, memory."""

import math
import warnings

import pytest
import torch

from profiler.kernels import fox
from profiler.kernels.base import Shape

warnings.filterwarnings("ignore", message="Triton is not supported")

GRID = [
    (1, 1, 1, 32), (63, 3, 4, 64), (64, 1, 4, 128), (100, 3, 1, 32),
    (512, 1, 4, 64), (1000, 1, 1, 128), (1000, 3, 4, 32),
]
BACKENDS = ("torch", "torch-pruned")


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def brute_force(x, causal, scale=None):
    """Independent fp64 dense FoX: bias G_i - G_j (causal) or -|G_i - G_j| (bidirectional)."""
    q, k, v = (x[n].double() for n in ("q", "k", "v"))
    T, D = q.shape[1], q.shape[-1]
    G = x["g"].double().cumsum(1).transpose(1, 2)  # B H T
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * (scale or D ** -0.5)
    d = G[..., :, None] - G[..., None, :]
    s = s + (d if causal else -d.abs())
    if causal:
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v)


@pytest.mark.parametrize("T,B,H,D", GRID)
@pytest.mark.parametrize("causal", [True, False])
def test_forward_matches_fp64_brute_force(T, B, H, D, causal):
    x = fox.make_inputs(Shape(B, T, H, D), "float32", "cpu", seed=T)
    want = brute_force(x, causal)
    assert rel(fox.reference(x, causal), want) <= 1e-7
    for name in BACKENDS:
        out = fox.KERNEL.backends[name].run(x, causal)
        assert out.shape == (B, T, H, D) and out.dtype == torch.float32
        assert rel(out, want) <= 1e-5, name


@pytest.mark.parametrize("T,B,H,D", [(63, 3, 4, 64), (256, 1, 2, 128)])
def test_matches_fla_naive_forgetting_attn(T, B, H, D):
    """fla's own oracle (fp32, dense) agrees where its fp32 cumulative bias is still accurate."""
    x = fox.make_inputs(Shape(B, T, H, D), "float32", "cpu", seed=11)
    oracle = fox.naive_reference(x, True)
    assert rel(fox.reference(x, True), oracle) <= 1e-5
    assert rel(fox.run_torch(x, True), oracle) <= 1e-5


@pytest.mark.parametrize("T,B,H,D", [(1, 1, 1, 32), (100, 3, 4, 64), (700, 1, 2, 32)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_autograd_of_brute_force(T, B, H, D, causal, backend):
    x = fox.make_inputs(Shape(B, T, H, D), "float32", "cpu", seed=12)
    dO = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(13))

    def grads(fn, cast):
        xs = {n: cast(t).clone().requires_grad_(True) for n, t in x.items()}
        fn(xs, causal).backward(cast(dO))
        return [xs[n].grad for n in ("q", "k", "v", "g")]

    want = grads(brute_force, lambda t: t.double())
    got = grads(fox.KERNEL.backends[backend].run, lambda t: t)
    scale = max(float(w.abs().max()) for w in want)  # dq, dk are exactly 0 at T=1
    for name, g, w in zip("qkvg", got, want):
        assert g.dtype == torch.float32
        assert float((g.double() - w).abs().max()) / scale <= 1e-5, name


def test_pruning_skips_keys_and_stays_exact(monkeypatch):
    monkeypatch.setattr(fox, "TILE_ELEMENTS", 64 * 2 * 1024)  # 64-row blocks
    x = fox.make_inputs(Shape(1, 1024, 2, 32), "float32", "cpu", seed=14)
    qh, kh = (x[n].transpose(1, 2) for n in ("q", "k"))
    G = x["g"].double().cumsum(1).transpose(1, 2)
    thr = fox._prune_threshold(qh, kh, 1024, 32 ** -0.5)
    j0, j1 = fox._key_range(G, 960, 1024, True, thr)
    assert j0 > 0 and j1 == 1024  # default gates (mean log-gate ~ -0.8) forget fast
    lo, hi = fox._key_range(G, 512, 576, False, thr)
    assert 0 < lo and hi < 1024
    for causal in (True, False):
        assert rel(fox.run_torch_pruned(x, causal), fox.run_torch(x, causal)) <= 1e-6


def test_pruning_keeps_everything_with_weak_forgetting():
    x = fox.make_inputs(Shape(1, 300, 2, 32), "float32", "cpu", seed=15)
    x["g"] = x["g"] * 1e-3
    G = x["g"].double().cumsum(1).transpose(1, 2)
    thr = fox._prune_threshold(x["q"].transpose(1, 2), x["k"].transpose(1, 2), 300, 32 ** -0.5)
    assert fox._key_range(G, 256, 300, True, thr) == (0, 300)
    assert rel(fox.run_torch_pruned(x, True), brute_force(x, True)) <= 1e-5


def test_bias_stays_accurate_at_long_T():
    """fp32 s + G_i - G_j would lose ulp(|G|) ~ 1e-4 at T=4096; the split bias must not."""
    x = fox.make_inputs(Shape(1, 4096, 1, 32), "float32", "cpu", seed=16)
    assert abs(float(x["g"].sum())) > 2000  # the regime in question
    out = fox.run_torch(x, True)
    ref = fox.reference(x, True)
    assert rel(out, ref) <= 2e-6


def test_scale_input_and_fp16():
    x = fox.make_inputs(Shape(2, 80, 2, 64), "float16", "cpu", seed=17)
    assert x["g"].dtype == torch.float32 and bool((x["g"] <= 0).all())
    xs = dict(x, scale=0.05)
    want = brute_force(x, True, scale=0.05)
    assert rel(fox.reference(xs, True), want) <= 1e-7
    out = fox.run_torch(xs, True)
    assert out.dtype == torch.float16
    assert rel(out.float(), want) <= 5e-3
    assert rel(fox.run_torch(x, True).float(), want) > 1e-2  # default scale differs


def test_torch_forward_memory_is_linear_and_matches_model():
    from profiler.measure.memory import ProfilerMemoryMeter

    meter = ProfilerMemoryMeter()
    peaks = {}
    for T in (2048, 4096):  # same number of block levels (a level adds a copy of q, k, v)
        shape = Shape(1, T, 4, 64)
        x = fox.make_inputs(shape, "float32", "cpu", seed=0)
        with torch.no_grad():
            peaks[T] = meter.measure(lambda: fox.run_torch(x, True)).peak_bytes
        model = fox.memory_bytes(shape, 4, "torch", True, "fwd")
        assert 0.8 * model <= peaks[T] <= 1.2 * model, (T, peaks[T], model)
    assert peaks[4096] < 2.3 * peaks[2048]  # O(T): never a T x T tensor


def test_registry_entry():
    k = fox.KERNEL
    assert k.family == "quadratic" and k.max_head_dim == 256
    assert k.grad_inputs == ("q", "k", "v", "g")
    assert k.backends["torch"].causal == (True, False)
    assert k.backends["fla"].causal == (True,) and k.backends["fla"].interpretable
    assert k.check_shape(Shape(1, 8, 1, 512)) is not None
    assert k.flops(Shape(1, 4, 1, 8), True) == 4 * 8 * 10
    assert math.isclose(k.flops(Shape(1, 4, 1, 8), False), 4 * 8 * 16)


@pytest.mark.parametrize("T", [1, 129, 1030])
@pytest.mark.parametrize("causal", [True, False])
def test_sdpa_forward_blocks_match_the_tile_forward(T, causal, monkeypatch):
    """The fused-kernel forward (key-vector mask + fp64 merge, uneven remainder blocks) agrees with
    the explicit-tile forward in output and log-sum-exp, and is the path ``torch`` takes on CPU."""
    x = fox.make_inputs(Shape(2, T, 2, 32), "float32", "cpu", seed=18)
    qh, kh, vh = (x[n].transpose(1, 2).contiguous() for n in ("q", "k", "v"))
    G = x["g"].double().cumsum(1).transpose(1, 2).contiguous()
    o, lse = fox._sdpa_forward(qh, kh, vh, G, 32 ** -0.5, causal, blocks=(256, 64))
    o_ref, lse_ref = fox._fox_forward(qh, kh, vh, G, 32 ** -0.5, causal, False)
    assert rel(o, o_ref) <= 2e-6 and float((lse - lse_ref.double()).abs().max()) <= 1e-5
    calls = []
    monkeypatch.setattr(fox, "_sdpa_forward", lambda *a, **k: calls.append(1) or (o, lse))
    fox.run_torch(x, causal)
    assert calls == [1]
    monkeypatch.setattr(fox, "_flash_cpu", lambda: None)  # op missing in this torch: tile path
    assert rel(fox.run_torch(x, causal), o_ref.transpose(1, 2)) <= 1e-6 and calls == [1]
