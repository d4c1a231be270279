"""Packed varlen kernel points (profiler.kernels.varlen): each sequence of a packed or padded call equals
that sequence alone; the check fails for a backend that leaks state across boundaries; models."""

from __future__ import annotations

import dataclasses
import types

import pytest
import torch

from profiler.core.records import PointSpec
from profiler.kernels import Backend, get_kernel, softmax, varlen
from profiler.kernels.base import Shape


def _point(kernel, backend, dist="fixed:40,24,100", T=164, layout="packed", H=2, D=16, dtype="float32"):
    return PointSpec(kernel, backend, "cpu", dtype, "fwd", 1, T, H, D, True,
                     options=tuple(sorted(varlen.options(dist, 0, layout))))


@pytest.mark.parametrize("kernel, backend", [("softmax", "sdpa"), ("softmax", "naive"), ("softmax", "flex"),
                                             ("lightnet", "torch"), ("gsa", "torch"), ("fox", "torch"),
                                             ("retnet", "torch"), ("kda", "torch")])
@pytest.mark.parametrize("layout", ["packed", "padded"])
def test_each_sequence_equals_running_it_alone(kernel, backend, layout):
    c = varlen.check(get_kernel(kernel), _point(kernel, backend, layout=layout), "cpu", 0, None)
    assert c.passed and len(c.per_sequence_rel_err) == 3 and max(c.per_sequence_rel_err) <= 1e-5, c
    assert c.checked_T == 100 and "each sequence alone (3 sequences)" in c.reference


def test_the_check_fails_for_a_backend_that_ignores_the_boundaries():
    """A backend declaring cu_seqlens but running the packed batch as one sequence is reported wrong."""
    spec = get_kernel("retnet")
    leaky = Backend("leaky", spec.backends["torch"].run, varlen="cu_seqlens")
    spec = dataclasses.replace(spec, backends={**spec.backends, "leaky": leaky})
    c = varlen.check(spec, _point("retnet", "leaky"), "cpu", 0, None)
    assert not c.passed and c.per_sequence_rel_err[0] <= 1e-5 and min(c.per_sequence_rel_err[1:]) > 1e-3


def test_long_sequences_are_checked_on_a_prefix():
    c = varlen.check(get_kernel("retnet"), _point("retnet", "torch"), "cpu", 0, 32)
    assert c.passed and c.checked_T == 32


def test_padded_inputs_are_zero_after_each_sequence():
    spec = get_kernel("kda")
    p = _point("kda", "torch", layout="padded")
    pack = varlen.packing(p)
    x = varlen.make_inputs(spec, p, "cpu", 0, pack)
    packed = varlen.make_inputs(spec, _point("kda", "torch"), "cpu", 0, pack)
    assert x["q"].shape == (3, 100, 2, 16) and "cu_seqlens" not in x
    assert torch.equal(x["g"][1, :24], packed["g"][0, 40:64]) and not x["g"][1, 24:].any()
    assert packed["cu_seqlens"].tolist() == [0, 40, 64, 164] and packed["max_seqlen"] == 100


def test_flash_attn_varlen_gets_int32_offsets_and_the_longest_sequence(monkeypatch):
    """flash-attn is CUDA-only and optional: a stand-in module with flash_attn_varlen_func's signature."""
    seen = {}

    def flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, softmax_scale=None, causal=False):
        seen.update(cu=cu_q.tolist(), dtype=cu_q.dtype, max=(max_q, max_k), causal=causal, shape=tuple(q.shape))
        outs = [softmax.reference({"q": q[None, a:b], "k": k[None, a:b], "v": v[None, a:b], "scale": softmax_scale},
                                  causal)[0] for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist())]
        return torch.cat(outs).to(q.dtype)

    monkeypatch.setattr(softmax, "flash_attn", types.SimpleNamespace(flash_attn_varlen_func=flash_attn_varlen_func))
    c = varlen.check(get_kernel("softmax"), _point("softmax", "flash-attn"), "cpu", 0, None)
    assert seen == {"cu": [0, 40, 64, 164], "dtype": torch.int32, "max": (100, 100), "causal": True,
                    "shape": (164, 2, 16)}
    assert c.passed


def test_models_sum_over_sequences_packed_and_count_padding_padded():
    spec = get_kernel("softmax")
    packed, padded = _point("softmax", "sdpa"), _point("softmax", "sdpa", layout="padded")
    want = sum(spec.flops(Shape(1, L, 2, 16), True) for L in (40, 24, 100))
    assert spec.analytic(packed, 4).flops == pytest.approx(want)
    assert spec.analytic(padded, 4).flops == pytest.approx(spec.flops(Shape(3, 100, 2, 16), True))
    assert spec.analytic(padded, 4).memory_bytes == spec.memory_bytes(Shape(3, 100, 2, 16), 4, "sdpa", True, "fwd")


def test_a_backend_opts_in_with_one_declaration():
    spec = get_kernel("retnet")
    assert varlen.unsupported(spec, "torch") is None
    plain = dataclasses.replace(spec, backends={"plain": Backend("plain", spec.backends["torch"].run)})
    assert "has no packed (cu_seqlens) path" in varlen.unsupported(plain, "plain")
    assert varlen.unsupported(plain, "plain", "padded") is None


def test_workload_carries_lengths_summary_and_layout():
    spec = get_kernel("retnet")
    work = spec.build(_point("retnet", "torch", layout="padded"), "cpu", 0)
    v = work.extra["varlen"]
    assert v["layout"] == "padded" and v["lengths"] == [40, 24, 100] and v["computed_tokens"] == 300
    assert v["real_tokens"] == 164 and v["padding_waste"] == pytest.approx(1 - 164 / 300)
    assert v["distribution"]["name"] == "fixed" and len(v["digest"]) == 16
    work.call()
