"""KDA kernel: the chunkwise torch backend against fla's token-loop reference, unbounded gates included."""

from __future__ import annotations

import itertools

import pytest
import torch

from profiler.core.errors import UsageError
from profiler.kernels import kda
from profiler.kernels.base import Shape

NAMES = ("q", "k", "v", "g", "beta")
TOL = 1e-5


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


def check_forward(shape: Shape, gate: str = "default", seed: int = 0, **kw) -> float:
    x = kda.make_inputs(shape, torch.float32, "cpu", seed, gate=gate)
    out = kda.run_torch(x)
    ref = kda.reference(x)
    assert out.shape == ref.shape == (shape.B, shape.T, shape.H, shape.D)
    assert out.dtype == torch.float32
    return rel_err(out, ref)


# ----------------------------------------------------------------------------- forward accuracy

SHORT = list(itertools.product((1, 63, 64, 100), (1, 3), (1, 4), (32, 64, 128)))


def _grid(shapes, heavy=256):
    """Shapes as params; the ones with B*H*D > ``heavy`` (seconds each against the token loop) run in
    ``make test-long``, so ``make test`` keeps every T and every D at a smaller B*H."""
    return [pytest.param(*s, marks=pytest.mark.long if s[1] * s[2] * s[3] > heavy else (),
                         id=f"T{s[0]}-B{s[1]}-H{s[2]}-D{s[3]}") for s in shapes]


@pytest.mark.parametrize("T,B,H,D", _grid(SHORT))
def test_forward_matches_naive_recurrent_default_gate(T, B, H, D):
    assert check_forward(Shape(B, T, H, D)) <= TOL


LONG = [(512, 1, 4, 64), (512, 3, 1, 128), (512, 1, 1, 32), (1000, 1, 4, 32), (1000, 3, 1, 64), (1000, 1, 1, 128)]


@pytest.mark.parametrize("T,B,H,D", _grid(LONG, heavy=128))
def test_forward_long_default_gate(T, B, H, D):
    assert check_forward(Shape(B, T, H, D), seed=T + D) <= TOL


BOUNDED = [(1, 1, 1, 32), (63, 3, 4, 64), (100, 1, 4, 128), (1000, 1, 4, 64)]


@pytest.mark.parametrize("T,B,H,D", BOUNDED, ids=[f"T{t}-B{b}-H{h}-D{d}" for t, b, h, d in BOUNDED])
def test_forward_bounded_gate(T, B, H, D):
    assert check_forward(Shape(B, T, H, D), gate="bounded") <= TOL


def test_default_gates_overflow_a_factorised_form():
    """The test inputs really are in the hazardous regime: chunk gate sums far below -88 (e^88 ~ fp32 max)."""
    g = kda.make_inputs(Shape(1, 256, 4, 64))["g"]
    chunk_sums = g.view(1, 4, 64, 4, 64).sum(2)
    assert chunk_sums.min() < -88
    assert (g <= 0).all()


def _extreme_gates(shape: Shape) -> dict:
    x = kda.make_inputs(shape, seed=7)
    g = x["g"].clone()
    g[:, ::3] = -200.0                 # per-step log gate -200
    g[:, 1::7] = 0.0                   # no decay at all next to it
    g[..., : shape.D // 4] = -200.0    # a quarter of the channels always -200
    x["g"] = g
    return x


def test_extreme_gates_finite_and_exact():
    shape = Shape(2, 150, 2, 32)
    x = _extreme_gates(shape)
    out = kda.run_torch(x)
    assert torch.isfinite(out).all()
    assert rel_err(out, kda.reference(x)) <= TOL
    x["g"] = torch.full_like(x["g"], -200.0)
    out = kda.run_torch(x)
    assert torch.isfinite(out).all()
    assert rel_err(out, kda.reference(x)) <= TOL


def test_no_cancellation_from_large_chunk_sums():
    """A chunk sum of -1600 followed by tiny steps: exponents formed as differences of prefix sums lose
    ~1e-4 relative precision here; direct sums do not."""
    shape = Shape(1, 256, 2, 64)
    x = kda.make_inputs(shape, seed=3)
    pos = torch.arange(shape.T) % 64
    g = torch.where((pos < 32)[None, :, None, None], torch.tensor(-50.0), torch.tensor(-0.01))
    x["g"] = g.expand_as(x["g"]).contiguous()
    assert rel_err(kda.run_torch(x), kda.reference(x)) <= TOL


@pytest.mark.parametrize("chunk,sub", [(16, 4), (32, 8), (64, 16), (64, 1)])
def test_chunk_configuration_does_not_change_the_result(chunk, sub):
    x = kda.make_inputs(Shape(1, 200, 2, 32), seed=5)
    args = [x[n] for n in NAMES]
    ref = kda.reference(x)
    assert rel_err(kda.kda_chunkwise(*args, chunk_size=chunk, sub_chunk=sub), ref) <= TOL


def test_scale_is_honoured():
    x = kda.make_inputs(Shape(1, 70, 2, 32), seed=2)
    x["scale"] = 0.3
    out, ref = kda.run_torch(x), kda.reference(x)
    assert rel_err(out, ref) <= TOL
    del x["scale"]
    assert rel_err(kda.run_torch(x), out) > 0.1      # the default D**-0.5 = 0.177 differs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs(dtype):
    x = kda.make_inputs(Shape(2, 100, 2, 64), dtype, seed=4)
    out = kda.run_torch(x)
    assert out.dtype == dtype
    assert rel_err(out.float(), kda.reference(x)) <= (2e-3 if dtype == torch.float16 else 1.6e-2)


# ----------------------------------------------------------------------------- gradients

GRAD = [(1, 1, 1, 32, "default"), (63, 2, 2, 32, "default"), (100, 1, 4, 64, "default"),
        (130, 1, 1, 128, "bounded")]


@pytest.mark.parametrize("T,B,H,D,gate", GRAD, ids=[f"T{t}-B{b}-H{h}-D{d}-{g}" for t, b, h, d, g in GRAD])
def test_gradients_match_autograd_through_reference(T, B, H, D, gate):
    shape = Shape(B, T, H, D)
    x = kda.make_inputs(shape, seed=11, gate=gate)
    do = torch.randn(B, T, H, D, generator=torch.Generator().manual_seed(1))
    grads = []
    for fn in (kda.reference, kda.run_torch):
        leaves = {n: x[n].clone().requires_grad_(True) for n in NAMES}
        fn(leaves).backward(do)
        grads.append({n: leaves[n].grad for n in NAMES})
    ref, got = grads
    for n in NAMES:
        assert torch.isfinite(got[n]).all(), n
        err = (got[n] - ref[n]).abs().max().item()
        assert err <= 2e-5 * max(ref[n].abs().max().item(), 1e-2), (n, err)


def test_gradients_finite_with_extreme_gates():
    x = _extreme_gates(Shape(1, 100, 2, 32))
    leaves = {n: x[n].clone().requires_grad_(True) for n in NAMES}
    kda.run_torch(leaves).sum().backward()
    for n in NAMES:
        assert torch.isfinite(leaves[n].grad).all(), n


# ----------------------------------------------------------------------------- inputs

def test_make_inputs_ranges_and_determinism():
    shape = Shape(2, 50, 3, 32)
    x = kda.make_inputs(shape, torch.float32, "cpu", 9)
    y = kda.make_inputs(shape, torch.float32, "cpu", 9)
    z = kda.make_inputs(shape, torch.float32, "cpu", 10)
    for n in NAMES:
        assert torch.equal(x[n], y[n]), n
        assert not torch.equal(x[n], z[n]), n
    assert x["beta"].shape == (2, 50, 3) and x["g"].shape == (2, 50, 3, 32)
    for n in ("q", "k"):
        torch.testing.assert_close(x[n].norm(dim=-1), torch.ones(2, 50, 3))
    assert ((x["beta"] > 0) & (x["beta"] < 1)).all()
    assert (x["g"] < 0).all()
    b = kda.make_inputs(shape, torch.bfloat16, "cpu", 9, gate="bounded")
    assert all(b[n].dtype == torch.bfloat16 for n in NAMES)
    assert ((b["g"] >= kda.DEFAULT_LOWER_BOUND) & (b["g"] <= 0)).all()
    with pytest.raises(UsageError, match="valid: bounded, default"):
        kda.make_inputs(shape, gate="nope")


def test_gate_matches_fla_gate_helpers():
    from fla.ops.kda.gate import naive_kda_gate, naive_kda_lowerbound_gate

    gen = torch.Generator().manual_seed(0)
    H, D = 4, 16
    A_log, dt_bias = kda.layer_gate_params(H, D, gen)
    assert ((A_log >= 0) & (A_log <= torch.log(torch.tensor(16.0)))).all()
    dt = torch.nn.functional.softplus(dt_bias)                       # the layer's inverse-softplus init
    assert ((dt >= 1e-4 * 0.99) & (dt <= 0.1 * 1.01)).all()
    x = torch.randn(2, 5, H, D, generator=gen)
    torch.testing.assert_close(kda.kda_gate(x, A_log, dt_bias), naive_kda_gate(x, A_log, dt_bias))
    torch.testing.assert_close(kda.kda_gate(x, A_log, dt_bias, lower_bound=-5.0),
                               naive_kda_lowerbound_gate(x, A_log, dt_bias, lower_bound=-5.0))


# ----------------------------------------------------------------------------- backends and registry

def test_non_causal_is_a_usage_error():
    x = kda.make_inputs(Shape(1, 8, 1, 16))
    for run in (kda.run_torch, kda.run_fla, kda.run_fla_recurrent):
        with pytest.raises(UsageError, match="causal only"):
            run(x, False)


@pytest.mark.parametrize("backend,fn_name", [("fla", "chunk_kda"), ("fla-recurrent", "fused_recurrent_kda")])
def test_fla_backends_pass_precomputed_gate_and_scale(monkeypatch, backend, fn_name):
    import fla.ops.kda as fk

    seen = {}

    def fake(q, k, v, g, beta, **kw):
        seen.update(kw, args=(q, k, v, g, beta))
        return torch.zeros_like(v), None

    monkeypatch.setattr(fk, fn_name, fake)
    x = kda.make_inputs(Shape(1, 8, 2, 16))
    x["scale"] = 0.5
    kda.KERNEL.backends[backend].run(x, True)
    assert seen["scale"] == 0.5
    assert seen["use_gate_in_kernel"] is False and seen["use_qk_l2norm_in_kernel"] is False
    assert seen["use_beta_sigmoid_in_kernel"] is False
    assert all(a is x[n] for a, n in zip(seen["args"], NAMES))


def test_registry_entry():
    spec = kda.KERNEL
    assert spec.name == "kda" and spec.family == "linear"
    assert set(spec.backends) == {"torch", "fla", "fla-recurrent"}
    assert spec.grad_inputs == NAMES
    assert spec.backends["fla-recurrent"].backward is False and spec.backends["fla"].backward is True
    assert spec.check_shape(Shape(1, 8, 1, 257)) is not None and spec.check_shape(Shape(1, 8, 1, 256)) is None
    ok, why = spec.backends["fla"].availability("cpu")
    assert not ok and "cuda" in why
    assert spec.backends["fla"].availability("cpu", interpret=True)[0]
    assert spec.backends["torch"].availability("cpu") == (True, "ok")


def test_analytic_models_scale_linearly():
    s1, s2 = Shape(1, 4096, 4, 64), Shape(1, 8192, 4, 64)
    assert kda.flops(s2) == pytest.approx(2 * kda.flops(s1))
    assert kda.bytes_moved(s1, 4) == 1 * 4096 * 4 * (5 * 64 + 1) * 4
    for backend in ("torch", "fla", "fla-recurrent"):
        for mode in ("fwd", "fwdbwd"):
            assert kda.memory_bytes(s2, 4, backend, True, mode) == pytest.approx(
                2 * kda.memory_bytes(s1, 4, backend, True, mode), rel=1e-9)
    # fla chunk_kda forward, fp32, D=64: about 9 MiB per 1k tokens at H=4 (FLA.md, measured dry)
    assert kda.memory_bytes(Shape(1, 1024, 4, 64), 4, "fla") / 2**20 == pytest.approx(9.0, rel=0.05)


@pytest.mark.parametrize("shape,mode", [(Shape(1, 300, 2, 64), "fwd"), (Shape(2, 200, 1, 128), "fwd"),
                                        (Shape(1, 300, 2, 32), "fwdbwd"), (Shape(1, 256, 1, 256), "fwdbwd")])
def test_torch_memory_model_matches_measured_peak(shape, mode):
    from profiler.measure.memory import ProfilerMemoryMeter

    x = kda.make_inputs(shape)
    if mode == "fwd":
        def call():
            with torch.no_grad():
                kda.run_torch(x)
    else:
        for n in NAMES:
            x[n].requires_grad_(True)
        do = torch.randn(shape.B, shape.T, shape.H, shape.D)

        def call():
            kda.run_torch(x).backward(do)
    measured = ProfilerMemoryMeter().measure(call).peak_bytes
    predicted = kda.memory_bytes(shape, 4, "torch", True, mode)
    assert measured == pytest.approx(predicted, rel=0.02 if mode == "fwd" else 0.08)
