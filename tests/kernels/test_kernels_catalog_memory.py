"""Log-linear attention, TTT-Linear and CyFA (profiler.kernels.catalog_memory): inputs in the layers' ranges,
the torch backends against the fp32 references (forward and gradients, across chunks / levels / mini-batches),
the level rule against fla's own mask, the models, registration and coverage. Tiny CPU shapes only; the fla
backends under Triton's interpreter are in test_fla_interpret_catalog_memory.py."""

from __future__ import annotations

import pytest
import torch
from backend_checks import torch_matches_reference

from profiler.kernels import (
    MECHANISMS,
    catalog_attn,
    catalog_memory,
    fla_coverage,
    registry,
)
from profiler.kernels.base import GROUPS, Shape
from profiler.kernels.verify import _rel

TOL = 1e-5
NAMES = catalog_memory.NAMES


def _fwd_bwd_against_reference(name: str, x: dict, grads=None):
    grads = grads or [n for n in registry()[name].grad_inputs if n in x]
    o = torch_matches_reference(name, x, x["v"].shape, tol=TOL, grads=grads)
    assert o.dtype == torch.float32
    return o


# ----------------------------------------------------------------------------- log-linear attention


def test_log_linear_torch_matches_fla_naive_across_levels_forward_and_gradients():
    """T = 330: six chunks, so the chunk levels m = 0, 1, 2 are read (chunks 4 and 5 read the block of
    chunks 0-3), the level-1 blocks are padded to pairs, and the last chunk is partial."""
    pytest.importorskip("fla")
    x = registry()["log_linear_attn"].make_inputs(Shape(1, 330, 2, 16, value_dim=8), "float32", "cpu", 0)
    _fwd_bwd_against_reference("log_linear_attn", x)


def test_log_linear_torch_shares_query_key_groups_like_fla():
    """Two q / k groups over four heads (group g serves heads 2g, 2g + 1, fla's and the naive's order)."""
    pytest.importorskip("fla")
    k = registry()["log_linear_attn"]
    x = k.make_inputs(Shape(1, 140, 4, 16, value_dim=8), "float32", "cpu", 1)
    gen = torch.Generator().manual_seed(2)
    x["q"], x["k"] = (torch.nn.functional.silu(torch.randn(1, 140, 2, 16, generator=gen)) for _ in range(2))
    o = k.backends["torch"].run(x, True)
    assert _rel(o, k.reference(x, True))[1] <= TOL


def test_fenwick_level_rule_is_flas_level_mask():
    """``bit_length(i XOR j)`` is the level at which fla's naive mask (``construct_level_mask``) lets query i
    see key j; the torch backend's in-chunk table is the same rule."""
    pytest.importorskip("fla")
    from fla.ops.log_linear_attn.naive import construct_level_mask

    T = 70
    levels = torch.zeros(T, T, dtype=torch.long)
    for lev in range(8):
        L = torch.zeros(1, 8, T)
        L[:, lev] = 1.0
        levels += lev * construct_level_mask(lev, L)[0].long()
    for i in range(T):
        for j in range(i + 1):
            assert levels[i, j] == catalog_memory.ll_level(i, j), (i, j)
    lut = catalog_memory._ll_lut(64, "cpu")
    assert torch.equal(lut.tril(), levels[:64, :64].tril())


def test_log_linear_inputs_are_the_layers():
    k = registry()["log_linear_attn"]
    x = k.make_inputs(Shape(2, 64, 3, 64, value_dim=32), "float16", "cpu", 5)
    assert x["q"].shape == x["k"].shape == (2, 64, 1, 64) and x["v"].shape == (2, 64, 3, 32)   # one group
    assert x["g"].dtype == torch.float32 and x["q"].dtype == torch.float16                     # g in fp32
    assert float(x["g"].max()) < 0.0
    assert x["level_scales"].shape == (2, 64, 3, 15) and float(x["level_scales"].min()) > 0.0
    assert float(x["q"].min()) >= -0.279                                # silu's minimum
    assert catalog_memory.ll_levels(16384) == 15 and catalog_memory.ll_levels(16385) == 16


def test_log_linear_fla_limits_are_backend_limits():
    k = registry()["log_linear_attn"]
    assert "multiple of 64" in k.backend_limit("fla", Shape(1, 8, 1, 32))
    assert "power of two" in k.backend_limit("fla", Shape(1, 8, 1, 64, value_dim=48))
    assert "131072" in k.backend_limit("fla", Shape(1, 131073, 1, 64))
    assert k.backend_limit("fla", Shape(1, 131072, 1, 128, value_dim=64)) is None
    assert k.backend_limit("torch", Shape(1, 8, 1, 32, value_dim=48)) is None and k.check_shape(Shape(1, 8, 1, 32)) is None


def test_log_linear_flops_count_one_state_read_per_set_bit():
    for N in range(1, 70):
        assert catalog_memory._ll_reads(N) == sum(bin(n).count("1") for n in range(N)), N
    k = registry()["log_linear_attn"]
    r = k.flops(Shape(1, 65536, 2, 64), True) / k.flops(Shape(1, 16384, 2, 64), True)
    assert 4.0 < r < 5.0                                                  # T log T (4.57 here), not T^2


# ----------------------------------------------------------------------------- TTT-Linear


def test_ttt_torch_matches_fla_reference_forward_and_gradients():
    """T = 40: three 16-token mini-batches, the last one partial; the inner model trains across them."""
    pytest.importorskip("fla")
    x = registry()["ttt"].make_inputs(Shape(2, 40, 2, 8), "float32", "cpu", 0)
    o = _fwd_bwd_against_reference("ttt", x)
    # the inner model learns: with a zero learning rate the output is the untrained model's
    y = dict(x, eta=torch.zeros_like(x["eta"]))
    assert _rel(registry()["ttt"].backends["torch"].run(y, True), o)[1] > 1e-3


def test_ttt_inputs_are_ttt_linears():
    k = registry()["ttt"]
    s = Shape(2, 48, 3, 16)
    x = k.make_inputs(s, "float16", "cpu", 3)
    assert x["h0"].dtype == x["hb0"].dtype == torch.float32 and x["q"].dtype == torch.float16
    assert x["h0"].shape == (2, 3, 16, 16) and torch.equal(x["h0"][0], x["h0"][1])   # W1 tiled over the batch
    assert not x["hb0"].any() and x["w"].shape == x["b"].shape == (3, 16)
    eta = x["eta"].float()
    assert eta.shape == (2, 48, 3, 1) and 0.0 < float(eta.min()) and float(eta.max()) < 1 / 16
    assert float(eta[:, 15::16].max()) < float(eta[:, 0::16].max()) / 4            # 1/(1 + t mod 16)
    assert "value dim" in k.check_shape(Shape(1, 8, 1, 16, value_dim=8))


def test_ttt_fla_backends_leave_out_fp16_because_the_eta_gradient_overflows_it():
    """The exact (fp32 reference) gradient of the learning rate exceeds fp16's largest value at TTT-Linear's
    ranges, so an fp16 fwd+bwd can only return inf there (fla's kernels need eta in q's dtype)."""
    pytest.importorskip("fla")
    k = registry()["ttt"]
    assert all(k.backends[b].dtypes == ("float32", "bfloat16") for b in ("fla", "fla-fused-chunk"))
    x = {n: t.requires_grad_(n == "eta") for n, t in k.make_inputs(Shape(1, 64, 2, 32), "float32", "cpu", 0).items()}
    o = k.reference(x, True)
    o.backward(torch.randn(o.shape, generator=torch.Generator().manual_seed(1)))
    assert float(x["eta"].grad.abs().max()) > torch.finfo(torch.float16).max


# ----------------------------------------------------------------------------- CyFA


def test_cyfa_torch_matches_fla_naive_forward_and_gradients():
    """T = 70: two engine chunks (the slot states carry across); the clock runs through ~35 slots."""
    pytest.importorskip("fla")
    x = registry()["cyfa"].make_inputs(Shape(1, 70, 2, 16, value_dim=8), "float32", "cpu", 0)
    gen = torch.Generator().manual_seed(3)
    x["readout"] = x["readout"] + 0.05 * torch.randn(x["readout"].shape, generator=gen)   # a trained readout
    _fwd_bwd_against_reference("cyfa", x)


def test_cyfa_rotation_and_readout_table_are_flas():
    pytest.importorskip("fla")
    from fla.ops.cyfa.naive import _rotation_terms
    from fla.ops.cyfa.utils import build_readout_table

    lam = torch.tensor([[0.0, 0.3, 7.9, 130.25, 1000.5]])
    for M in (8, 128):
        _, _, c, s = _rotation_terms(lam, M)
        cos, sin = catalog_memory.cyfa_rotation(lam, M)
        assert torch.allclose(cos, c, atol=1e-6) and torch.allclose(sin, s, atol=1e-6)
    readout = torch.randn(2, 127, 127, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(catalog_memory.cyfa_readout_table(readout), build_readout_table(readout), atol=1e-4)


def test_cyfa_inputs_are_the_layers():
    x = registry()["cyfa"].make_inputs(Shape(1, 32, 2, 16), "float16", "cpu", 0)
    assert x["q"].dtype == torch.float16
    for n in ("g", "delta", "beta", "readout", "q_norm_weight", "k_norm_weight"):
        assert x[n].dtype == torch.float32, n
    assert x["readout"].shape == (2, 127, 127) and torch.equal(x["readout"][1], torch.eye(127))
    assert float(x["g"].max()) < 0.0
    for n in ("delta", "beta"):
        assert 0.0 < float(x[n].min()) and float(x[n].max()) < 1.0


# ----------------------------------------------------------------------------- all three


def test_registered_in_one_place_and_covered():
    reg = registry()
    start = MECHANISMS.index(NAMES[0])
    assert MECHANISMS[start:start + len(NAMES)] == NAMES and start > MECHANISMS.index(catalog_attn.NAMES[-1])
    rows = {r["family"]: r for r in fla_coverage.coverage()}
    for fam in catalog_memory.FAMILIES:
        k = reg[fam.name]
        assert k.group in GROUPS and k.group != "other" and k.default_backend == "torch"
        assert k.backends["torch"].devices == ("cpu", "cuda")
        for b, op in fam.backends.items():
            assert k.backends[b].interpretable and k.backends[b].devices == ("cuda",) and op.fn in k.backends[b].description
            if rows:
                assert op.fn in rows[fam.fla]["entry_points"], (fam.name, op.fn)
        assert fla_coverage.COVERED[fam.fla] == fam.name and fam.fla not in fla_coverage.NOT_YET_REASONS
        if rows:
            assert rows[fam.fla]["covered"] and rows[fam.fla]["kernel"] == fam.name
            assert "no timed CPU backend" not in rows[fam.fla]["reason"]
    assert not registry()["cyfa"].backends["fla-recurrent"].backward


def test_models_scale_and_order():
    for name in NAMES:
        k = registry()[name]
        D = 64
        a, b = Shape(1, 4096, 2, D), Shape(1, 16384, 2, D)
        assert k.bytes_moved(b, 2, True) == pytest.approx(4 * k.bytes_moved(a, 2, True), rel=0.05)
        for backend in k.backends:
            for mode in ("fwd", "fwdbwd"):
                ma, mb = k.memory_bytes(a, 2, backend, True, mode), k.memory_bytes(b, 2, backend, True, mode)
                assert 0 < ma < mb <= 6 * ma, (name, backend, mode)          # log-linear: T log T levels
            assert k.memory_bytes(a, 2, backend, True, "fwdbwd") > k.memory_bytes(a, 2, backend, True, "fwd")
    s = Shape(1, 4096, 2, 64)
    assert registry()["ttt"].flops(s, True) == 2 * 4096 * (6 * 64 * 64 + 4 * 16 * 64)   # 3 D x D products, 2 tiles


def test_non_causal_is_a_usage_error():
    from profiler.core.errors import UsageError

    for name in NAMES:
        k = registry()[name]
        x = k.make_inputs(Shape(1, 8, 1, 64), "float32", "cpu", 0)
        for b in ("torch", "fla"):
            with pytest.raises(UsageError, match="causal only"):
                k.backends[b].run(x, False)


@pytest.mark.parametrize("name", ["log_linear_attn"])
def test_torch_memory_model_matches_measured_forward_peak(name):
    from profiler.measure.memory import ProfilerMemoryMeter

    k = registry()[name]
    for s in (Shape(1, 1024, 2, 32), Shape(1, 1024, 2, 64, value_dim=32)):
        x = k.make_inputs(s, "float32", "cpu", 0)
        with torch.no_grad():
            peak = ProfilerMemoryMeter().measure(lambda: k.backends["torch"].run(x, True)).peak_bytes
        model = k.memory_bytes(s, 4, "torch", True, "fwd")
        assert 0.85 <= model / peak <= 1.15, (name, s, model, peak)
