"""CPU ports have the fla layers' parameter names, shapes and counts at the study's size."""

from __future__ import annotations

import warnings

import pytest

from profiler.core.errors import UsageError
from profiler.layers import (
    LAYERS,
    STUDY_LAYERS,
    build_fla,
    build_port,
    get_layer,
    param_count,
)

FLA_LAYERS = [s.name for s in LAYERS if s.fla_class]


@pytest.fixture(scope="module")
def fla_layers():
    pytest.importorskip("fla.layers")
    import torch

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {name: build_fla(name) for name in FLA_LAYERS}


@pytest.mark.parametrize("name", FLA_LAYERS)
def test_layers_port_matches_fla_state_dict_at_study_size(name, fla_layers):
    ref = fla_layers[name]
    port = build_port(name)
    want = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in port.state_dict().items()}
    assert got == want
    port.load_state_dict(ref.state_dict(), strict=True)
    assert param_count(name) == sum(p.numel() for p in ref.parameters())


def test_layers_study_configuration_is_the_papers(fla_layers):
    fox = fla_layers["fox"]
    assert (fox.num_heads, fox.num_kv_heads, fox.head_dim) == (32, 4, 32)   # num_kv_heads=4 keeps 32 heads
    kda = fla_layers["kda"]
    assert (kda.num_heads, kda.head_k_dim, kda.use_short_conv) == (4, 128, True)
    assert fla_layers["retnet"].num_heads == 4 and fla_layers["gsa"].num_heads == 4
    assert fla_layers["lightnet"].num_heads == 4
    assert get_layer("fox").study_kwargs == {"hidden_size": 1024, "num_kv_heads": 4}


def test_layers_softmax_baseline_keeps_full_width_heads():
    d, h = 1024, 4
    assert param_count("softmax") == 3 * (d * h * d + h * d) + (h * d * d + d)
    assert param_count("mha") == 4 * (d * d + d)
    port = build_port("softmax")
    assert port.q_proj.weight.shape == (4096, 1024) and port.o_proj.weight.shape == (1024, 4096)


def test_layers_registry_lists_seven_layers_and_rejects_unknown():
    assert STUDY_LAYERS == ("softmax", "mha", "retnet", "lightnet", "gsa", "fox", "kda")
    with pytest.raises(UsageError):
        get_layer("mamba")
    with pytest.raises(UsageError):
        build_port("mha", bidirectional=True)
