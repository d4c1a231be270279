"""fla's feature-map / quadratic families (profiler.kernels.catalog_attn): inputs in the layers' ranges,
the exact feature maps, the torch backends against their references (forward and gradients, across
chunks, with a value dim), the analytic models, registration and coverage. Tiny CPU shapes only; the
fla backends under Triton's interpreter are in test_fla_interpret_catalog_attn.py."""

from __future__ import annotations

import pytest
import torch
from backend_checks import torch_matches_reference

from profiler.core.errors import UsageError
from profiler.kernels import MECHANISMS, catalog_attn, fla_coverage, registry
from profiler.kernels.base import GROUPS, Shape
from profiler.kernels.verify import _rel

TOL = 1e-5
TORCH = [f.name for f in catalog_attn.FAMILIES if f.torch_run is not None]
FEATURE = ["based", "rebased"]


GQA = [n for n in TORCH if "kv_heads" in registry()[n].shape_axes]


VDIM = [n for n in TORCH if "value_dim" in registry()[n].shape_axes]


@pytest.mark.parametrize("name,shape", [(n, Shape(2, 150, 2, 8)) for n in TORCH]
                         + [(n, Shape(1, 70, 2, 8, value_dim=12)) for n in VDIM]
                         + [(n, Shape(1, 40, 4, 8, kv_heads=2)) for n in GQA])
def test_torch_backend_matches_reference_forward_and_gradients(name, shape):
    """T = 150 spans three chunks of 64 (the feature-space states carry across them)."""
    x = registry()[name].make_inputs(shape, "float32", "cpu", 0)
    torch_matches_reference(name, x, (shape.B, shape.T, shape.H, shape.Dv), tol=TOL)


def test_feature_maps_reproduce_the_pair_kernels_exactly():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 7, generator=gen, dtype=torch.float64), torch.randn(5, 7, generator=gen, dtype=torch.float64)
    s = (x * y).sum(-1)
    # fp32 maps; compare in fp64 of their products
    tx, ty = catalog_attn.taylor_features(x).double(), catalog_attn.taylor_features(y).double()
    assert tx.shape[-1] == catalog_attn.feature_dim(7, True) == 1 + 7 + 28
    assert torch.allclose((tx * ty).sum(-1), 1 + s + s * s / 2, rtol=1e-5, atol=1e-5)
    qx, qy = catalog_attn.square_features(x).double(), catalog_attn.square_features(y).double()
    assert qx.shape[-1] == catalog_attn.feature_dim(7, False) == 28
    assert torch.allclose((qx * qy).sum(-1), s * s, rtol=1e-5, atol=1e-5)


def test_based_reference_is_fla_naive_and_rebased_reference_uses_the_kernel_eps():
    pytest.importorskip("fla")
    from fla.ops.rebased.naive import naive_parallel_rebased

    k = registry()["rebased"]
    x = k.make_inputs(Shape(1, 40, 2, 8), "float32", "cpu", 3)
    ref = k.reference(x, True)
    naive = naive_parallel_rebased(*(x[n].transpose(1, 2) for n in ("q", "k", "v"))).transpose(1, 2)  # eps 1e-6
    assert _rel(ref, naive)[1] < 1e-2          # the same mechanism ...
    assert registry()["based"].reference_name.startswith("fla naive_parallel_based")


def test_inputs_are_in_the_layer_ranges_and_deterministic():
    s = Shape(2, 64, 3, 16, value_dim=24)
    for name in FEATURE:
        x = registry()[name].make_inputs(s, "float32", "cpu", 5)
        assert x["q"].shape == x["k"].shape == (2, 64, 3, 16) and x["v"].shape == (2, 64, 3, 24)
        again = registry()[name].make_inputs(s, "float32", "cpu", 5)
        assert all(torch.equal(x[n], again[n]) for n in x)
    x = registry()["rebased"].make_inputs(s, "float32", "cpu", 5)   # LayerNorm-ed over the feature dim
    for n in ("q", "k"):
        assert torch.allclose(x[n].mean(-1), torch.zeros(2, 64, 3), atol=1e-5)
        assert torch.allclose(x[n].var(-1, unbiased=False), torch.ones(2, 64, 3), atol=1e-3)
    x = registry()["based"].make_inputs(Shape(1, 512, 4, 16), "float32", "cpu", 0)   # projections: N(0, 1)
    assert abs(float(x["q"].std()) - 1.0) < 0.05


def test_registered_in_one_place_and_covered():
    reg = registry()
    assert set(catalog_attn.NAMES) <= set(MECHANISMS)
    rows = {r["family"]: r for r in fla_coverage.coverage()}
    for fam in catalog_attn.FAMILIES:
        k = reg[fam.name]
        assert k.group in GROUPS and k.group != "other"
        for b, op in fam.backends.items():
            assert k.backends[b].interpretable and k.backends[b].devices == ("cuda",)
            assert op.fn in k.backends[b].description
            if rows:
                assert op.fn in rows[fam.fla]["entry_points"], (fam.name, op.fn)
        assert fla_coverage.COVERED[fam.fla] == fam.name
        if rows:
            assert rows[fam.fla]["covered"] and rows[fam.fla]["kernel"] == fam.name
        if fam.torch_run is not None:
            assert k.backends["torch"].devices == ("cpu", "cuda") and k.default_backend == "torch"
        else:
            assert "torch" not in k.backends and "no timed CPU backend" in k.notes["torch"]
            if rows:   # serprof list --fla says so
                assert "no timed CPU backend" in rows[fam.fla]["reason"]


def test_backend_head_dim_limit_and_non_causal():
    k = registry()["based"]
    assert k.backend_limit("fla-fused-chunk", Shape(1, 8, 1, 32)) is not None   # fused_chunk_based: D <= 16
    assert k.backend_limit("fla-fused-chunk", Shape(1, 8, 1, 16)) is None
    assert k.backend_limit("fla", Shape(1, 8, 1, 128)) is None
    assert k.check_shape(Shape(1, 8, 1, 256)) is not None
    x = k.make_inputs(Shape(1, 8, 1, 8), "float32", "cpu", 0)
    with pytest.raises(UsageError, match="causal only"):
        k.backends["torch"].run(x, False)


def test_verify_skips_an_unnamed_backend_over_its_head_dim_limit_and_refuses_a_named_one(monkeypatch):
    from profiler.measure import verify as mv

    ran = []
    monkeypatch.setattr(mv, "verify_point", lambda point, *a, **kw: ran.append(point.backend) or [])
    rows = mv.verify_many(["based"], lengths=[5], batches=[1], heads=1, head_dim=32, modes=["fwd"], interpret=True)
    assert [r.backend for r in rows] == ["fla-fused-chunk"] and "limit of 16" in rows[0].skipped
    assert ran == ["fla"]                  # under --interpret only the interpretable backends
    with pytest.raises(UsageError, match="limit of 16"):
        mv.verify_many(["based"], ["fla-fused-chunk"], lengths=[5], batches=[1], heads=1, head_dim=32,
                       modes=["fwd"], interpret=True)


def test_analytic_models():
    for name in FEATURE:
        k = registry()[name]
        a, b = Shape(1, 2048, 4, 16, value_dim=64), Shape(1, 8192, 4, 16, value_dim=64)
        # quadratic kernels (parallel_*): causal pairs * (2D + 2Dv) per head
        assert k.flops(a, True) == pytest.approx(4 * 2048 * 2049 / 2 * (32 + 128))
        assert k.bytes_moved(b, 2, True) == pytest.approx(4 * k.bytes_moved(a, 2, True))
        for backend in k.backends:
            for mode in ("fwd", "fwdbwd"):
                ma, mb = k.memory_bytes(a, 4, backend, True, mode), k.memory_bytes(b, 4, backend, True, mode)
                assert 0 < ma and mb == pytest.approx(4 * ma, rel=0.05), (name, backend, mode)


@pytest.mark.parametrize("name", TORCH)
def test_torch_memory_model_matches_measured_forward_peak(name):
    from profiler.measure.memory import ProfilerMemoryMeter

    k = registry()[name]
    shapes = [Shape(1, 1024, 2, 16)] + ([Shape(1, 1024, 2, 16, value_dim=64)] if name in VDIM else [])
    for s in shapes:
        x = k.make_inputs(s, "float32", "cpu", 0)
        with torch.no_grad():
            peak = ProfilerMemoryMeter().measure(lambda: k.backends["torch"].run(x, True)).peak_bytes
        model = k.memory_bytes(s, 4, "torch", True, "fwd")
        assert 0.85 <= model / peak <= 1.15, (name, s, model, peak)


# ----------------------------------------------------------------------------- NSA


def test_nsa_inputs_are_the_layers_gqa_gates_and_selected_blocks():
    pytest.importorskip("fla")
    from profiler.kernels.catalog_attn import NSA_BLOCK_COUNT, NSA_BLOCK_SIZE

    k = registry()["nsa"]
    s = Shape(1, 200, 16, 8)
    x = k.make_inputs(s, "float16", "cpu", 0)     # 200 tokens: 4 blocks of 64, the last partial
    assert x["q"].shape == (1, 200, 16, 8) and x["k"].shape == x["v"].shape == (1, 200, 1, 8)   # H/16 kv heads
    for g in ("g_cmp", "g_slc", "g_swa"):
        assert x[g].dtype == torch.float16 and 0 < float(x[g].min()) and float(x[g].max()) < 1
    idx = x["block_indices"]
    assert idx.dtype == torch.long and idx.shape == (1, 200, 1, NSA_BLOCK_COUNT)
    t = torch.arange(200).view(1, 200, 1, 1)
    sel = idx >= 0
    assert bool((idx[sel] <= (t.expand_as(idx)[sel] // NSA_BLOCK_SIZE)).all())     # causal blocks only
    own = (idx == t // NSA_BLOCK_SIZE).any(-1)                                       # own block always selected
    assert bool(own.all())
    assert k.make_inputs(Shape(1, 70, 32, 8, kv_heads=2), "float32", "cpu", 0)["k"].shape[2] == 2


def test_nsa_shape_rule_and_skip_in_verify_all():
    k = registry()["nsa"]
    assert k.check_shape(Shape(1, 8, 16, 16)) is None and k.check_shape(Shape(1, 8, 64, 16, kv_heads=4)) is None
    for bad in (Shape(1, 8, 2, 16), Shape(1, 8, 24, 16), Shape(1, 8, 32, 16, kv_heads=4)):
        assert "power of two >= 16" in k.check_shape(bad)
    assert k.input_bytes(Shape(1, 10, 16, 8), 2, "fwd") == 10 * (16 * 8 + 1 * 16 + 16 * 8) * 2   # 1 kv head



def test_nsa_named_refuses_and_all_kernels_skip_a_shape_it_cannot_take(monkeypatch):
    from profiler.measure import verify as mv

    with pytest.raises(UsageError, match="nsa: query heads"):
        mv.verify_many(["nsa"], lengths=[4], batches=[1], heads=2, head_dim=8, modes=["fwd"], interpret=True)
    monkeypatch.setattr(mv, "verify_point", lambda point, *a, **kw: [])
    rows = mv.verify_many(None, lengths=[4], batches=[1], heads=2, head_dim=8, modes=["fwd"], interpret=True)
    skipped = {r.kernel: r.skipped for r in rows if r.skipped}
    assert "power of two >= 16" in skipped["nsa"]


def test_nsa_flop_counts_match_a_brute_force_count():
    from profiler.kernels import catalog_attn as ca

    for T in (1, 63, 64, 65, 200, 1100):
        s = Shape(1, T, 16, 8)
        bs, S, W = ca.NSA_BLOCK_SIZE, ca.NSA_BLOCK_COUNT, ca.NSA_WINDOW
        cmp = sum(((t + 1) // bs) for t in range(T))                      # complete blocks in the past
        slc = sum((min(S, t // bs + 1) - 1) * bs + (t % bs + 1) for t in range(T))
        swa = sum(min(W, t + 1) for t in range(T))
        assert ca._nsa_counts(s) == pytest.approx((cmp, slc, swa)), T
        assert registry()["nsa"].flops(s, True) == pytest.approx(16 * (cmp + slc + swa) * 32)
    k = registry()["nsa"]
    a, b = Shape(1, 4096, 16, 64), Shape(1, 16384, 16, 64)
    assert k.bytes_moved(b, 2, True) == pytest.approx(4 * k.bytes_moved(a, 2, True))
    for mode in ("fwd", "fwdbwd"):
        assert k.memory_bytes(b, 2, "fla", True, mode) == pytest.approx(4 * k.memory_bytes(a, 2, "fla", True, mode), rel=0.02)
    # sparse: beyond 16 blocks + the window, FLOPs grow linearly in T (not quadratically)
    assert k.flops(Shape(1, 32768, 16, 64), True) < 2.2 * k.flops(Shape(1, 16384, 16, 64), True)


def test_nsa_reference_window_is_the_points_window():
    pytest.importorskip("fla")
    k = registry()["nsa"]
    x = k.make_inputs(Shape(1, 24, 16, 8), "float32", "cpu", 0)
    full = k.reference(x, True)
    x["window"] = 24
    assert torch.allclose(k.reference(x, True), full)          # a window >= T is plain causal (as 512 here)
    x["window"] = 4
    assert not torch.allclose(k.reference(x, True), full)


# ----------------------------------------------------------------------------- stick-breaking


def test_stickbreaking_weights_are_a_stick_broken_from_the_nearest_key():
    """Two keys, the query at t=2 (attend_current=False): A_21 = s(z_21), A_20 = s(z_20)(1 - s(z_21))."""
    k = registry()["stickbreaking_attn"]
    x = k.make_inputs(Shape(1, 3, 1, 4), "float32", "cpu", 0)
    x["v"] = torch.eye(3)[None, :, None, :3].expand(1, 3, 1, 3).clone()    # one-hot values: o = the weights
    x["v"] = torch.nn.functional.pad(x["v"], (0, 1))                       # Dv = D = 4
    o = k.backends["torch"].run(x, True)[0, :, 0]
    z = (x["q"][0, :, 0] @ x["k"][0, :, 0].T) * 4 ** -0.5
    s = torch.sigmoid(z)
    assert torch.allclose(o[0], torch.zeros(4))                            # the first query sees nothing
    assert torch.allclose(o[2, :3], torch.stack([s[2, 0] * (1 - s[2, 1]), s[2, 1], torch.tensor(0.0)]), atol=1e-6)
    assert torch.allclose(o, k.reference(x, True)[0, :, 0], atol=1e-6)


def test_stickbreaking_models():
    k = registry()["stickbreaking_attn"]
    s = Shape(1, 1000, 4, 32, kv_heads=2, value_dim=16)
    assert k.flops(s, True) == pytest.approx(4 * 1000 * 999 / 2 * (64 + 32))
    assert k.bytes_moved(s, 2, True) == pytest.approx(1000 * (4 * 32 + 2 * (32 + 16) + 4 * 16) * 2)
    a, b = Shape(1, 4096, 4, 64), Shape(1, 16384, 4, 64)
    assert k.memory_bytes(b, 2, "fla", True, "fwd") == pytest.approx(4 * k.memory_bytes(a, 2, "fla", True, "fwd"))


# ----------------------------------------------------------------------------- Parallax


@pytest.mark.parametrize("shape", [Shape(1, 150, 4, 8, kv_heads=2), Shape(2, 90, 2, 8, window=16)])
def test_parallax_torch_matches_reference_with_gqa_and_window(shape):
    k = registry()["parallax"]
    x = k.make_inputs(shape, "float32", "cpu", 0)
    if shape.window:
        x["window"] = shape.window
    xs = {n: (t.clone().requires_grad_(True) if torch.is_tensor(t) else t) for n, t in x.items()}
    xr = {n: (t.clone().requires_grad_(True) if torch.is_tensor(t) else t) for n, t in x.items()}
    o, ref = k.backends["torch"].run(xs, True), k.reference(xr, True)
    assert _rel(o, ref)[1] <= TOL
    g = torch.randn(o.shape, generator=torch.Generator().manual_seed(1))
    o.backward(g)
    ref.backward(g)
    for n in ("q", "k", "v", "r"):
        assert _rel(xs[n].grad, xr[n].grad)[1] <= TOL, n
    if shape.window:   # the window matters: without it the output differs
        del x["window"]
        assert _rel(k.reference(x, True), ref)[1] > 1e-2


def test_parallax_models_and_dtypes():
    k = registry()["parallax"]
    assert k.backends["fla"].dtypes == ("float16", "bfloat16")
    s = Shape(1, 100, 2, 8)
    assert k.flops(s, True) == pytest.approx(2 * 100 * 101 / 2 * 64)
    assert k.flops(Shape(1, 100, 2, 8, window=10), True) == pytest.approx(2 * (55 + 90 * 10) * 64)
    a, b = Shape(1, 4096, 4, 64), Shape(1, 16384, 4, 64)
    assert k.memory_bytes(b, 2, "fla", True, "fwd") == pytest.approx(4 * k.memory_bytes(a, 2, "fla", True, "fwd"))


# ----------------------------------------------------------------------------- Wall attention


def test_wall_inputs_keep_the_layers_fp32_gate():
    k = registry()["wall_attn"]
    x = k.make_inputs(Shape(1, 50, 4, 8, kv_heads=2), "float16", "cpu", 0)
    assert x["q"].dtype == torch.float16 and x["g"].dtype == torch.float32
    assert x["g"].shape == (1, 50, 4, 8) and x["k"].shape == (1, 50, 2, 8)
    assert float(x["g"].max()) < 0 and float(x["g"].min()) > -0.1           # logsigmoid(x + 8): ~ -3e-4


def test_wall_reference_matches_a_pair_by_pair_loop_and_takes_the_window():
    k = registry()["wall_attn"]
    x = k.make_inputs(Shape(1, 7, 2, 3), "float32", "cpu", 1)
    x["g"] = x["g"] * 2000                                                    # steep decays: the exponent matters
    ref = k.reference(x, True)[0]
    q, kk, v, g = (x[n][0].double() for n in ("q", "k", "v", "g"))
    P = g.cumsum(0)
    for i in range(7):
        for h in range(2):
            s = torch.stack([(q[i, h] * kk[j, h] * (P[i, h] - P[j, h]).exp()).sum() for j in range(i + 1)]) * 3 ** -0.5
            o = s.softmax(0) @ v[: i + 1, h]
            assert torch.allclose(ref[i, h].double(), o, atol=1e-6), (i, h)
    x["window"] = 2
    assert not torch.allclose(k.reference(x, True), ref[None])


def test_verify_of_several_kernels_raises_only_when_no_kernel_takes_the_shape():
    from profiler.measure.verify import verify_many

    with pytest.raises(UsageError, match="exceeds the limit of 128"):
        verify_many(["based", "rebased"], lengths=[4], batches=[1], heads=1, head_dim=512, modes=["fwd"])
    rows = verify_many(["based", "stickbreaking_attn"], lengths=[4], batches=[1], heads=1, head_dim=200, modes=["fwd"])
    assert {r.kernel: bool(r.skipped) for r in rows} == {"based": True, "stickbreaking_attn": False}


def test_abc_is_gsa_with_a_running_softmax_over_time_of_the_slot_logits():
    """ABC's writes e^{s_t - z_t} and gates z_{t-1} - z_t (z = logcumsumexp of s): for every t, the write
    decayed from each earlier step sums to 1 (a softmax of s_1..s_t), so the slot memory is a convex mix."""
    s = torch.randn(1, 9, 2, 3, generator=torch.Generator().manual_seed(0)) * 4
    w, g = catalog_attn.abc_as_gsa(s)
    assert (g <= 0).all() and (g[:, 0] == 0).all() and ((w > 0) & (w <= 1)).all()
    for t in range(9):
        decay = torch.stack([g[:, r + 1:t + 1].sum(1) for r in range(t + 1)], 1).exp()   # prod of gates after r
        assert torch.allclose((w[:, :t + 1] * decay).sum(1), torch.ones(1, 2, 3), atol=1e-5)
        assert torch.allclose(w[:, :t + 1] * decay, s[:, :t + 1].softmax(1), atol=1e-5)


@pytest.mark.parametrize("spread", [32.0, 400.0])   # the layer's clamp (the fast cumsum path); a wider span (logcumsumexp)
def test_abc_running_normaliser_matches_logcumsumexp_in_fp64(spread):
    """abc_as_gsa's z (through the writes w = e^{s - z}) equals fp64 logcumsumexp, for logits within the
    layer's clamp and far beyond it."""
    gen = torch.Generator().manual_seed(1)
    s = (torch.rand(2, 300, 2, 5, generator=gen) * 2 - 1) * spread
    w, g = catalog_attn.abc_as_gsa(s)
    z = s.double().logcumsumexp(1)
    assert torch.allclose(w.double(), (s.double() - z).exp(), rtol=1e-4, atol=1e-6)
    z_prev = torch.cat((z[:, :1], z[:, :-1]), 1)
    assert torch.allclose(g.double(), z_prev - z, atol=1e-4)
