"""The shared chunkwise engine (profiler.kernels.chunkwise) and the declarative fla catalogue
(profiler.kernels.catalog): every engine configuration against an independent token loop, every
catalogue member's torch backend against its fp32 reference (forward and gradients), decode and
streaming from the engine's state, registration and coverage. Tiny CPU shapes only; the fla backends
under Triton's interpreter are in test_fla_interpret_catalog.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from backend_checks import torch_matches_reference

from profiler.core.records import PointSpec
from profiler.kernels import MECHANISMS, catalog, fla_coverage, registry
from profiler.kernels import chunkwise as cw
from profiler.kernels import recurrent as rc
from profiler.kernels.base import GROUPS, Shape
from profiler.kernels.verify import _rel

TOL = 1e-5
NAMES = catalog.NAMES


def _loop(q, k, v, g=None, gk=None, beta=None, p=None, bonus=None, scale=1.0):
    """Token loop through the shared step: an independent oracle for every engine configuration
    (``bonus``: RWKV6's read-before-write, written out here)."""
    B, T, H, K = q.shape
    S = torch.zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        gate = None if gk is None else gk[:, t]
        if g is not None:
            gs = g[:, t][..., None]
            gate = gs if gate is None else gate + gs
        if bonus is not None:
            qs = q[:, t] * scale
            o = torch.einsum("bhk,bhkv->bhv", qs, S) + (qs * bonus * k[:, t]).sum(-1, keepdim=True) * v[:, t]
            S = S * (gate.exp()[..., None] if gate is not None else 1.0) + k[:, t, ..., None] * v[:, t, :, None, :]
            out.append(o)
            continue
        if p is not None:   # the engine's read key: u = beta (v - S'^T p) with the decayed state S'
            S = S * (gate.exp()[..., None] if gate is not None else 1.0)
            u = (v[:, t] - torch.einsum("bhk,bhkv->bhv", p[:, t], S)) * beta[:, t, :, None]
            S = S + k[:, t, ..., None] * u[:, :, None, :]
            out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S))
            continue
        out.append(rc.step(S, q[:, t] * scale, k[:, t], v[:, t], gk=gate, beta=None if beta is None else beta[:, t]))
    return torch.stack(out, 1)


@pytest.mark.parametrize("config", ["linear", "scalar", "scalar-steep", "key", "key+scalar", "delta",
                                    "delta+scalar-steep", "delta+key", "delta+read-key", "bonus+key"])
def test_engine_configuration_matches_token_loop(config):
    gen = torch.Generator().manual_seed(3)
    B, T, H, K = 2, 100, 2, 16                         # T not a multiple of the chunk: padding exercised

    def r(*d):
        return torch.randn(*d, generator=gen)

    q, k, v = r(B, T, H, K), r(B, T, H, K), r(B, T, H, K)
    kw = {}
    if "scalar" in config:
        # steep: per-step decays down to -20, chunk sums of hundreds (no factorised form survives this)
        kw["g"] = -torch.rand(B, T, H, generator=gen) * 20 if "steep" in config else F.logsigmoid(r(B, T, H)) / 4
    if "key" in config:
        kw["gk"] = F.logsigmoid(r(B, T, H, K)) / 8
    if "delta" in config:
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        kw["beta"] = torch.sigmoid(r(B, T, H))
    if "read-key" in config:
        kw["p"] = F.normalize(k + 0.5 * r(B, T, H, K), dim=-1)
    if "bonus" in config:
        kw["bonus"] = torch.rand(H, K, generator=gen)
    o = cw.chunkwise(q, k, v, scale=0.3, **kw)
    assert _rel(o, _loop(q, k, v, scale=0.3, **kw))[1] <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_member_matches_its_fp32_reference_forward_and_gradients(name):
    x = registry()[name].make_inputs(Shape(2, 70, 2, 16), "float32", "cpu", 0)
    torch_matches_reference(name, x, x["v"].shape, tol=TOL)


def test_member_runs_low_precision_in_fp32_and_returns_the_input_dtype():
    for name in NAMES:
        k = registry()[name]
        x = k.make_inputs(Shape(1, 33, 2, 16), "bfloat16", "cpu", 0)
        o = k.backends["torch"].run(x, True)
        assert o.dtype == torch.bfloat16
        ref = k.reference(x, True)
        assert _rel(o.float(), ref)[1] <= 3e-2, name


def test_inputs_are_in_the_layer_ranges():
    s = Shape(2, 64, 3, 16)
    for name in NAMES:
        fam = next(f for f in catalog.FAMILIES if f.name == name)
        x = registry()[name].make_inputs(s, "float32", "cpu", 5)
        assert set(x) == set(fam.inputs)
        if "g" in x:
            assert float(x["g"].max()) <= 0.0
            assert x["g"].shape == ((2, 64, 3, 16) if fam.gate == "key" else (2, 64, 3))
        if fam.delta:
            assert torch.allclose(x["k"].norm(dim=-1), torch.ones(2, 64, 3), atol=1e-5)
            assert 0.0 < float(x["beta"].min()) and float(x["beta"].max()) < 1.0
        again = registry()[name].make_inputs(s, "float32", "cpu", 5)
        assert all(torch.equal(x[n], again[n]) for n in x)   # deterministic in the seed
    # the scalar gate of Gated DeltaNet is unbounded below (Mamba2 init): steeper than -1 somewhere
    x = registry()["gated_delta_rule"].make_inputs(Shape(1, 256, 4, 16), "float32", "cpu", 0)
    assert float(x["g"].min()) < -1.0


@pytest.mark.parametrize("phase", ["decode", "streaming"])
@pytest.mark.parametrize("name", ["linear_attn", "lightning_attn", "gla", "gated_delta_rule", "comba", "rwkv6"])
def test_decode_and_streaming_from_the_engine_state_match_the_full_sequence(name, phase):
    k = registry()[name]
    opt = ("steps", "3") if phase == "decode" else ("chunk", "20")   # 20 >= CHUNK_MIN: the chunkwise form
    p = PointSpec(kernel=name, backend="torch", B=2, T=40, H=2, D=16, dtype="float32", phase=phase, options=(opt,))
    c = rc.check(k, p, "cpu", seed=1, max_T=2048)
    assert c.passed and c.max_rel_err < TOL, c


def test_registered_in_one_place_and_covered():
    reg = registry()
    start = MECHANISMS.index(NAMES[0])   # the catalogue follows the hand-written modules, in order
    assert MECHANISMS[start:start + len(NAMES)] == NAMES
    for fam in catalog.FAMILIES:
        k = reg[fam.name]
        assert k.group in GROUPS and k.group != "other"
        assert k.backends["torch"].devices == ("cpu", "cuda")
        for b, f in fam.backends.items():
            assert k.backends[b].interpretable and k.backends[b].devices == ("cuda",)
            assert f.fn in k.backends[b].description
        assert fla_coverage.COVERED[fam.fla] == fam.name
    rows = {r["family"]: r for r in fla_coverage.coverage()}
    if rows:
        for fam in catalog.FAMILIES:   # every declared fla function is a real export of that family
            assert set(f.fn for f in fam.backends.values()) <= set(rows[fam.fla]["entry_points"]), fam.name


def test_non_causal_is_a_usage_error():
    from profiler.core.errors import UsageError

    k = registry()["gla"]
    x = k.make_inputs(Shape(1, 8, 1, 8), "float32", "cpu", 0)
    with pytest.raises(UsageError, match="causal only"):
        k.backends["torch"].run(x, False)


def test_analytic_models_scale_linearly():
    for name in NAMES:
        k = registry()[name]
        a, b = Shape(1, 4096, 4, 64), Shape(1, 16384, 4, 64)
        assert k.flops(b, True) == pytest.approx(4 * k.flops(a, True))
        assert k.bytes_moved(b, 2, True) == pytest.approx(4 * k.bytes_moved(a, 2, True))
        for backend in k.backends:
            for mode in ("fwd", "fwdbwd"):
                ma, mb = k.memory_bytes(a, 4, backend, True, mode), k.memory_bytes(b, 4, backend, True, mode)
                assert 0 < ma and mb == pytest.approx(4 * ma, rel=0.02), (name, backend, mode)
    # the delta rule costs more FLOPs than plain linear attention at the same shape
    s = Shape(1, 1024, 4, 64)
    assert registry()["delta_rule"].flops(s, True) > registry()["linear_attn"].flops(s, True)


def test_an_input_that_never_reaches_the_output_has_zero_gradient_in_verify():
    """RWKV6 at T=1: the decay acts after the only output, so the reference leaves its .grad None; the
    check counts that as a zero gradient (the engine returns exact zeros), not as a failure."""
    k = registry()["rwkv6"]
    p = PointSpec(kernel="rwkv6", backend="torch", B=2, T=1, H=2, D=16, dtype="float32", mode="fwdbwd")
    [c] = k.verify(p, "cpu", 0, None)
    assert c.passed and c.grad_max_rel_err is not None and c.grad_max_rel_err <= TOL, c


@pytest.mark.parametrize("D", [32, 64])
def test_torch_memory_model_matches_measured_forward_peak(D):
    from profiler.measure.memory import ProfilerMemoryMeter

    s = Shape(1, 1024, 2, D)
    for name in (n for n in NAMES if n != "rwkv6"):   # rwkv6: data-dependent exact-chunk buffers (model doc)
        k = registry()[name]
        x = k.make_inputs(s, "float32", "cpu", 0)
        with torch.no_grad():
            peak = ProfilerMemoryMeter().measure(lambda: k.backends["torch"].run(x, True)).peak_bytes
        model = k.memory_bytes(s, 4, "torch", True, "fwd")
        assert 0.85 <= model / peak <= 1.15, (name, D, model, peak)
