"""Whole attention layers of the SER study, one declarative entry each (import is cheap: no torch).

A ``LayerSpec`` names the study's seq2seq layer, the flash-linear-attention class and keyword
arguments the study used (PAPER.md), the pure-PyTorch port that runs on CPU (same parameter names,
shapes and forward math, built on the kernels' ``torch`` backends, loads an fla state_dict with
``strict=True``), and how to scale the configuration to another hidden size for tests.

Backends of a layer: ``torch`` (the port; any device) and, for the five fla layers, ``fla`` (the fla
class itself; CUDA, or CPU under Triton's interpreter for correctness only).

In a ``PointSpec`` of level ``layer`` or ``model``: ``kernel`` is the layer name (named after the
attention mechanism inside it; ``LayerSpec.mechanism`` is the kernel its port runs), ``H`` the
``num_heads`` argument the study passed (4; FoX: ``num_kv_heads``), ``D`` the per-head dim of the model
width split over those heads (256 in the study), so the layer is built with ``hidden_size`` =
``PointSpec.hidden`` = ``H * D`` (1024 in the study); the mechanism's own head dims follow from the
layer's arguments (``LayerSpec.title`` / ``description``: the study's softmax keeps 1024 dims per head,
KDA 128, FoX 32 query heads of 32). ``causal`` says whether the mechanism runs causally, options ``bidirectional=1`` for
the forward-plus-reversed variants and ``audio_s`` / ``frame_rate`` / ``text_rate`` when T came from
an audio duration.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Mapping

from profiler.core.errors import UsageError, did_you_mean
from profiler.core.lazy import lazy_import

torch = lazy_import("torch")

LEVELS_HERE = ("layer", "model")
STUDY_HIDDEN = 1024
STUDY_HEADS = 4


@dataclass(frozen=True)
class LayerSpec:
    """One seq2seq layer of the study."""

    name: str
    title: str
    family: str                          # "quadratic" | "linear"
    mechanism: str                       # kernel registry name the port is built on
    port: str                            # "module:Class" of the pure-PyTorch layer
    study_kwargs: Mapping[str, Any]      # arguments of the study (hidden_size=1024, ...)
    fla_class: str | None = None         # "fla.layers:Class" (None: not an fla layer)
    heads_arg: str = "num_heads"         # which argument PointSpec.H sets
    scaled: Callable[[int, int], dict] | None = None   # (hidden, heads) -> extra kwargs at other sizes
    study_causal: bool = True            # how the study ran it (fla kernels are causal)
    causal: tuple[bool, ...] = (True,)   # causal settings the port supports
    bidirectional: bool = False          # has a --bidirectional variant
    description: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def backends(self) -> tuple[str, ...]:
        return ("torch", "fla") if self.fla_class else ("torch",)

    def kwargs(self, hidden: int = STUDY_HIDDEN, heads: int = STUDY_HEADS) -> dict:
        """Constructor arguments (shared by the fla class and the port) at ``hidden`` / ``heads``."""
        kw = dict(self.study_kwargs)
        kw["hidden_size"] = hidden
        kw[self.heads_arg] = heads
        if self.scaled is not None and (hidden, heads) != (STUDY_HIDDEN, STUDY_HEADS):
            kw.update(self.scaled(hidden, heads))
        return kw


def _kda_scaled(hidden: int, heads: int) -> dict:
    return {"head_dim": max(16, hidden // heads)}


LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec("softmax", "softmax (study baseline, 4x1024 heads, explicit TxT)", "quadratic", "softmax",
              "profiler.layers.softmax:StudySoftmaxAttention", {"hidden_size": 1024, "num_heads": 4},
              study_causal=False, causal=(False, True),
              description="hand-written MHA of the study: q,k,v 1024->4096, scores TxT per head, softmax"),
    LayerSpec("mha", "softmax MHA (4x256, SDPA)", "quadratic", "softmax",
              "profiler.layers.softmax:MultiHeadAttention", {"hidden_size": 1024, "num_heads": 4},
              study_causal=False, causal=(False, True), description="standard multi-head attention, fused SDPA"),
    LayerSpec("retnet", "RetNet (MultiScaleRetention)", "linear", "retnet",
              "profiler.layers.retnet:MultiScaleRetention", {"hidden_size": 1024, "num_heads": 4},
              fla_class="fla.layers:MultiScaleRetention", bidirectional=True),
    LayerSpec("lightnet", "LightNet (LightNetAttention)", "linear", "lightnet",
              "profiler.layers.lightnet:LightNetAttention", {"hidden_size": 1024, "num_heads": 4},
              fla_class="fla.layers:LightNetAttention", bidirectional=True,
              scaled=lambda h, n: {"expand_ratio": max(8, h // (2 * n))}),
    LayerSpec("gsa", "GSA (GatedSlotAttention)", "linear", "gsa",
              "profiler.layers.gsa:GatedSlotAttention", {"hidden_size": 1024, "num_heads": 4},
              fla_class="fla.layers:GatedSlotAttention", bidirectional=True),
    LayerSpec("fox", "FoX (ForgettingAttention)", "quadratic", "fox",
              "profiler.layers.fox:ForgettingAttention", {"hidden_size": 1024, "num_kv_heads": 4},
              fla_class="fla.layers:ForgettingAttention", heads_arg="num_kv_heads",
              scaled=lambda h, n: {"num_heads": 2 * n}, bidirectional=True,
              description="num_heads keeps fla's default 32 (32 query heads of 32 dims, 4 kv heads)"),
    LayerSpec("kda", "KDA (KimiDeltaAttention)", "linear", "kda",
              "profiler.layers.kda:KimiDeltaAttention", {"hidden_size": 1024, "num_heads": 4},
              fla_class="fla.layers:KimiDeltaAttention", bidirectional=True, scaled=_kda_scaled,
              description="head_dim keeps fla's default 128 (4 heads of 128, short convolutions)"),
)

#: The study's seven seq2seq layers, display order (quadratic baselines first).
STUDY_LAYERS = tuple(s.name for s in LAYERS)


@lru_cache(maxsize=1)
def layer_registry() -> dict[str, LayerSpec]:
    return {s.name: s for s in LAYERS}


def get_layer(name: str) -> LayerSpec:
    reg = layer_registry()
    if name not in reg:
        raise UsageError(f"unknown layer {name!r}; {did_you_mean(name, reg)}")
    return reg[name]


def _load(path: str):
    mod, _, attr = path.partition(":")
    return getattr(importlib.import_module(mod), attr)


def build_port(name: str, hidden: int = STUDY_HIDDEN, heads: int = STUDY_HEADS, *, causal: bool | None = None,
               bidirectional: bool = False, **overrides):
    """The pure-PyTorch layer (an ``nn.Module`` mapping [B, T, hidden] -> [B, T, hidden]), on CPU, fp32."""
    spec = get_layer(name)
    kw = spec.kwargs(hidden, heads)
    kw.update(overrides)
    if bidirectional and not spec.bidirectional:
        raise UsageError(f"layer {name!r} has no bidirectional variant (it is non-causal already: use causal=false)")
    if spec.mechanism == "softmax":
        kw["causal"] = spec.study_causal if causal is None else causal
    elif bidirectional:
        kw["bidirectional"] = True
    return _load(spec.port)(**kw)


def build_fla(name: str, hidden: int = STUDY_HIDDEN, heads: int = STUDY_HEADS, **overrides):
    """The flash-linear-attention layer class built as the study did (imports fla: seconds)."""
    spec = get_layer(name)
    if spec.fla_class is None:
        raise UsageError(f"layer {name!r} is not an fla layer; backends: {', '.join(spec.backends)}")
    kw = spec.kwargs(hidden, heads)
    kw.update(overrides)
    return _load(spec.fla_class)(**kw)


def param_count(name: str, hidden: int = STUDY_HIDDEN, heads: int = STUDY_HEADS) -> int:
    """Parameters of the layer at this size (counted on the meta device: nothing is allocated)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_port(name, hidden, heads).parameters())


__all__ = ["LayerSpec", "LAYERS", "STUDY_LAYERS", "layer_registry", "get_layer", "build_port", "build_fla",
           "param_count"]
