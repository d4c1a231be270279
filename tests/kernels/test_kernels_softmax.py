"""Softmax attention kernel: backends vs the exact reference (and fla's naive oracle), models."""

import warnings

import pytest
import torch

from profiler.kernels import softmax
from profiler.kernels.base import Shape

warnings.filterwarnings("ignore", message="Triton is not supported")

# Covering subset of T x B x H x D (every T, every B, H and D value appears; T=1000 with D=128)
GRID = [
    (1, 1, 1, 32), (63, 3, 4, 64), (64, 1, 4, 128), (100, 3, 1, 32),
    (512, 1, 4, 64), (1000, 1, 1, 128), (1000, 3, 4, 32),
]
CPU_BACKENDS = ("sdpa", "naive")


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@pytest.mark.parametrize("T,B,H,D", GRID)
@pytest.mark.parametrize("causal", [True, False])
def test_forward_matches_reference_fp32(T, B, H, D, causal):
    x = softmax.make_qkv(Shape(B, T, H, D), "float32", "cpu", seed=T)
    ref = softmax.reference(x, causal)
    assert ref.shape == (B, T, H, D)
    for name in CPU_BACKENDS:
        out = softmax.KERNEL.backends[name].run(x, causal)
        assert out.shape == (B, T, H, D) and out.dtype == torch.float32
        assert rel(out, ref) <= 1e-5, name


@pytest.mark.parametrize("causal", [True, False])
def test_reference_agrees_with_fla_naive(causal):
    from fla.ops.attn.naive import naive_parallel_attn

    x = softmax.make_qkv(Shape(2, 100, 3, 64), "float32", "cpu", seed=1)
    oracle, _ = naive_parallel_attn(x["q"].double(), x["k"].double(), x["v"].double(), causal=causal)
    assert rel(softmax.reference(x, causal), oracle) <= 1e-6


@pytest.mark.parametrize("T,B,H,D", [(1, 1, 1, 32), (100, 3, 4, 64), (512, 1, 2, 128)])
@pytest.mark.parametrize("causal", [True, False])
def test_gradients_match_reference(T, B, H, D, causal):
    x = softmax.make_qkv(Shape(B, T, H, D), "float32", "cpu", seed=2)
    dO = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(3))

    def grads(fn):
        xs = {n: t.clone().requires_grad_(True) for n, t in x.items()}
        fn(xs, causal).backward(dO)
        return [xs[n].grad for n in ("q", "k", "v")]

    want = grads(softmax.reference)
    for name in CPU_BACKENDS:
        got = grads(softmax.KERNEL.backends[name].run)
        scale = max(float(w.abs().max()) for w in want)
        for g, w in zip(got, want):
            assert float((g - w).abs().max()) / scale <= 1e-5, name


def test_scale_input_is_used_by_every_backend():
    x = softmax.make_qkv(Shape(1, 50, 2, 32), seed=4)
    default = softmax.reference(x, True)
    xs = dict(x, scale=0.3)
    s = torch.einsum("bqhd,bkhd->bhqk", x["q"].double(), x["k"].double()) * 0.3
    s = s.masked_fill(torch.ones(50, 50, dtype=torch.bool).triu(1), float("-inf"))
    want = torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), x["v"].double())
    assert rel(softmax.reference(xs, True), want) <= 1e-7
    assert rel(default, want) > 1e-3  # the scale really changes the result
    for name in CPU_BACKENDS:
        assert rel(softmax.KERNEL.backends[name].run(xs, True), want) <= 1e-5, name


def test_reference_accepts_a_query_prefix():
    x = softmax.make_qkv(Shape(2, 300, 2, 32), seed=5)
    full = softmax.reference(x, False)
    part = softmax.reference(dict(x, q=x["q"][:, :70]), False)
    assert torch.allclose(part, full[:, :70], atol=1e-7, rtol=0)


def test_blocked_reference_uses_many_blocks_exactly(monkeypatch):
    x = softmax.make_qkv(Shape(1, 257, 2, 32), seed=6)
    whole = softmax.reference(x, True)
    monkeypatch.setattr(softmax, "TILE_ELEMENTS", 16 * 2 * 2 * 257)  # 16-row blocks
    assert rel(softmax.reference(x, True), whole) <= 1e-12


def test_fp16_outputs_keep_dtype_and_fp16_accuracy():
    x = softmax.make_qkv(Shape(1, 128, 2, 64), "float16", "cpu", seed=7)
    ref = softmax.reference(x, True)
    for name in CPU_BACKENDS:
        out = softmax.KERNEL.backends[name].run(x, True)
        assert out.dtype == torch.float16
        assert rel(out.float(), ref) <= 5e-3


def test_inputs_are_deterministic_in_the_seed():
    a = softmax.make_qkv(Shape(1, 8, 2, 4), seed=1)
    b = softmax.make_qkv(Shape(1, 8, 2, 4), seed=1)
    c = softmax.make_qkv(Shape(1, 8, 2, 4), seed=2)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["q"], c["q"])
    assert not torch.equal(a["q"], a["k"])


def test_naive_peak_memory_matches_its_model():
    """T=4096, B=1, H=4, fp32: torch.profiler's peak within +-15% of 2*B*H*T^2*itemsize."""
    from profiler.measure.memory import ProfilerMemoryMeter

    shape = Shape(1, 4096, 4, 64)
    x = softmax.make_qkv(shape, seed=0)
    model = softmax.memory_bytes(shape, 4, "naive", True, "fwd")
    assert model == 2 * 4 * 4096 * 4096 * 4
    with torch.no_grad():
        peak = ProfilerMemoryMeter().measure(lambda: softmax.run_naive(x, True)).peak_bytes
    assert 0.85 * model <= peak <= 1.15 * model, (peak, model)


def test_analytic_models():
    s = Shape(2, 1024, 4, 64)
    assert softmax.flops(s, False) == 4 * 2 * 4 * 64 * 1024 * 1024
    assert softmax.flops(s, True) == pytest.approx(softmax.flops(s, False) * 1025 / 2048)
    assert softmax.bytes_moved(s, 2, True) == 4 * 2 * 1024 * 4 * 64 * 2
    # flash-style backends are linear in T, naive quadratic
    s2 = Shape(2, 2048, 4, 64)
    assert softmax.memory_bytes(s2, 4, "sdpa", True, "fwd") == 2 * softmax.memory_bytes(s, 4, "sdpa", True, "fwd")
    assert softmax.memory_bytes(s2, 4, "naive", True, "fwd") == 4 * softmax.memory_bytes(s, 4, "naive", True, "fwd")
    assert softmax.memory_bytes(s, 4, "naive", True, "fwdbwd") > softmax.memory_bytes(s, 4, "naive", True, "fwd")


def test_registry_entry_is_consistent():
    k = softmax.KERNEL
    assert k.family == "quadratic" and k.name == "softmax"
    assert set(k.backends) == {"sdpa", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-math", "flex",
                               "flash-attn", "naive", "fla"}
    assert k.backends["sdpa"].causal == (True, False) and k.backends["naive"].causal == (True, False)
    fla = k.backends["fla"]
    assert fla.causal == (True,) and fla.devices == ("cuda",) and fla.interpretable
    ok, why = fla.availability("cpu")
    assert not ok and "--interpret" in why
    for name in ("sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "flash-attn"):
        assert k.backends[name].devices == ("cuda",)
    for name in ("sdpa-math", "flex"):
        assert k.backends[name].availability("cpu") == (True, "ok")
    assert k.backends["flex"].has_backward("cuda") and not k.backends["flex"].has_backward("cpu")
    assert k.backend_max_head_dim["fla"] == 256 and k.backend_max_head_dim["flash-attn"] == 256


# ----------------------------------------------------------------------------- issue 17 item 4: real backends

@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("T", [1, 37, 130])
def test_sdpa_math_and_eager_flex_match_reference_on_cpu(T, causal):
    """sdpa-math (pinned MATH) and FlexAttention (eager here; compiled in ``make check-flex``) on CPU."""
    x = softmax.make_qkv(Shape(2, T, 2, 16), "float32", "cpu", seed=T)
    ref = softmax.reference(x, causal)
    for out in (softmax.run_sdpa_math(x, causal), softmax.run_flex(x, causal, compiled=False)):
        assert out.shape == ref.shape and out.dtype == torch.float32
        assert rel(out, ref) <= 1e-5


def test_flex_block_mask_is_built_once_per_length():
    a = softmax.flex_block_mask(40, 40, "cpu")
    assert softmax.flex_block_mask(40, 40, "cpu") is a and softmax.flex_block_mask(41, 41, "cpu") is not a


def test_flex_test_seam_defaults_to_compiled(monkeypatch):
    """Outside the test suite (no SERPROF_FLEX_COMPILE=0) the backend compiles; the seam is opt-in."""
    calls = []
    monkeypatch.delenv(softmax.FLEX_COMPILE_ENV, raising=False)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: calls.append(kw) or fn)
    monkeypatch.setattr(softmax, "_FLEX_COMPILED", {})
    x = softmax.make_qkv(Shape(1, 8, 1, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        softmax.run_flex(x, True)
    assert calls[0] == {"dynamic": False}   # ours (flex_attention may compile its own pieces after)


def test_sdpa_cudnn_is_pinned_not_a_silent_fallback():
    """On a device without cuDNN attention the pinned backend raises torch's reason; it never falls back."""
    x = softmax.make_qkv(Shape(1, 16, 1, 16))
    with pytest.raises(RuntimeError):
        softmax.run_sdpa_cudnn(x, True)


def test_flash_attn_backend_calls_flash_attn_func(monkeypatch):
    """The flash-attn backend passes (B, T, H, D) tensors, the scale and causality to flash_attn_func
    (a stand-in package here: flash-attn is CUDA-only and optional); missing package -> skip reason."""
    import sys
    import types

    seen = {}

    def flash_attn_func(q, k, v, softmax_scale=None, causal=False):
        seen.update(scale=softmax_scale, causal=causal, shape=tuple(q.shape))
        return softmax.reference({"q": q, "k": k, "v": v, "scale": softmax_scale}, causal).to(q.dtype)

    b = softmax.KERNEL.backends["flash-attn"]
    if "flash_attn" not in sys.modules:
        ok, why = b.availability("cuda", cuda_available=True)
        assert not ok and "'flash_attn' is not installed" in why
    monkeypatch.setitem(sys.modules, "flash_attn", types.SimpleNamespace(flash_attn_func=flash_attn_func))
    x = softmax.make_qkv(Shape(2, 33, 3, 16))
    x["scale"] = 0.3
    out = b.run(x, False)
    assert seen == {"scale": 0.3, "causal": False, "shape": (2, 33, 3, 16)}
    assert rel(out, softmax.reference(x, False)) <= 1e-5


@pytest.mark.slow
def test_compiled_flex_matches_reference_on_cpu():
    """The compiled FlexAttention on CPU (inductor; ~30-60 s compile on 2 cores)."""
    x = softmax.make_qkv(Shape(1, 64, 2, 16))
    for causal in (True, False):
        assert rel(softmax.run_flex(x, causal, compiled=True), softmax.reference(x, causal)) <= 1e-5
