"""fla's op catalogue as declarative kernel descriptions (issue 17 items 2-3).

Each row of ``FAMILIES`` is one ``fla.ops`` family described as data: its inputs and the value ranges
the matching fla layer produces (``make``), how it maps onto the shared chunkwise engine
(``gate``: none / per-head scalar / per-key; ``delta``: the delta rule with ``beta``), its fla
backends (``chunk_*`` as ``fla``, ``fused_recurrent_*`` as ``fla-recurrent``, others by name), its
fp32 reference (fla's naive form where one exists) and its group. ``kernel(family)`` turns a row into
a ``KernelSpec`` with

* a ``torch`` backend: ``chunkwise.chunkwise`` configured by the row (any device, O(T));
* fla backends (CUDA; CPU under Triton's interpreter for correctness only), called with the inputs by
  keyword, ``scale`` and the row's fixed keyword arguments;
* analytic FLOP / byte / memory models shared by every row (``chunkwise.analytic_flops``);
* a recurrent form (decode / streaming) built from the engine: the state after the context in closed
  form (``recurrent.gated_state``) or from the delta-rule path's final state, the shared
  ``recurrent.step``, ``recurrent.gla_chunk`` / the delta path with an initial state for streaming
  chunks, and the family's ``fused_recurrent_*`` with a carried state.

Adding a family that reduces to the engine is one new ``Family`` row; ``MECHANISMS`` (the registry)
lists ``NAMES`` after the hand-written modules. This module is cheap to import (torch and fla load
lazily).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from profiler.core.lazy import lazy_import
from profiler.kernels import chunked as ck
from profiler.kernels import chunkwise as cw
from profiler.kernels import kda
from profiler.kernels import recurrent as rc
from profiler.kernels.base import ALL_DTYPES, Backend, KernelSpec, Shape, require_causal

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FlaFn:
    """One fla function as a backend: ``fla.ops.<family>.<fn>(q, k, v, **named inputs, scale=, **kwargs)``.

    ``rename``: input name -> the function's keyword (e.g. ``g`` -> ``gk``); ``backward``: whether it
    has one (some ``fused_recurrent_*`` raise in backward); ``dtypes``: the ones it accepts (some
    ``chunk_*`` assert that q is not fp32).
    """

    fn: str
    rename: Mapping[str, str] = field(default_factory=dict)
    backward: bool = True
    dtypes: tuple[str, ...] = ALL_DTYPES


@dataclass(frozen=True)
class Family:
    """A declarative description of one fla op family (module doc)."""

    name: str                                   # serprof kernel name
    fla: str                                    # fla.ops package
    title: str
    group: str
    description: str
    make: Callable[[Shape, "torch.Generator"], dict]   # fp32 CPU tensors q, k, v, (g), (beta)
    reference: Callable[[dict, float], "torch.Tensor"]  # fp32 inputs, scale -> (B, T, H, V)
    reference_name: str
    reference_max_T: int
    backends: Mapping[str, FlaFn]               # serprof backend name -> fla function
    gate: str | None = None                     # None | "head" (B, T, H) | "key" (B, T, H, K)
    delta: bool = False                         # beta (B, T, H) and the delta rule
    gamma: Callable[[int], "torch.Tensor"] | None = None   # fixed per-head log decay (H,) instead of g
    read_key: bool = False                      # input ``p``: the delta rule's read key (Comba)
    bonus: bool = False                         # input ``u`` (H, K): RWKV6's read-before-write bonus
    fla_kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_head_dim: int | None = None
    #: decode / streaming through the engine's state (False: the family has no carried-state form here)
    decode: bool = True

    @property
    def inputs(self) -> tuple[str, ...]:
        return (("q", "k", "v") + (("g",) if self.gate else ()) + (("beta",) if self.delta else ())
                + (("p",) if self.read_key else ()) + (("u",) if self.bonus else ()))


# ----------------------------------------------------------------------------- input ranges

def _randn(gen, *dims):
    return torch.randn(dims, generator=gen, dtype=torch.float32)


def _qkv(s: Shape, gen, *, l2: bool = False, hadamard: bool = False) -> dict:
    """q, k, v ~ N(0, 1); ``l2``: q and k l2-normalised per head (delta rules: fla's
    ``use_qk_l2norm_in_kernel`` applied up front); ``hadamard``: q, k are elementwise products of two
    N(0, 1) projections (``LinearAttention``'s default ``HadamardFeatureMap``)."""
    dims = (s.B, s.T, s.H, s.D)
    q, k, v = (_randn(gen, *dims) for _ in range(3))
    if hadamard:
        q, k = q * _randn(gen, *dims), k * _randn(gen, *dims)
    if l2:
        q, k = F.normalize(q, p=2, dim=-1), F.normalize(k, p=2, dim=-1)
    return {"q": q, "k": k, "v": v}


def _logsigmoid_gate(dims_fn, normalizer: float = 16.0):
    """``logsigmoid(x) / 16`` with x ~ N(0, 1): the GLA / simple-GLA layers' ``gate_logit_normalizer``."""
    def make(s: Shape, gen) -> "torch.Tensor":
        return F.logsigmoid(_randn(gen, *dims_fn(s))) / normalizer
    return make


def _mamba_gate(s: Shape, gen) -> "torch.Tensor":
    """GatedDeltaNet's per-head decay ``-exp(A_log) * softplus(x + dt_bias)`` (B, T, H): ``A ~ U(0, 16)``,
    ``dt = exp(U(log 1e-3, log 0.1))`` clamped at 1e-4, ``dt_bias = dt + log(-expm1(-dt))`` (its init)."""
    A_log = torch.empty(s.H, dtype=torch.float32).uniform_(0, 16, generator=gen).clamp_min(1e-4).log()
    dt_bias = _mamba_dt_bias(s.H, gen)          # drawn before x, as always: the same inputs per seed
    return -A_log.exp() * F.softplus(_randn(gen, s.B, s.T, s.H) + dt_bias)


def _mamba_dt_bias(H: int, gen) -> "torch.Tensor":
    """Mamba's ``dt_bias`` init (H,): the inverse softplus of ``dt = exp(U(log 1e-3, log 0.1))`` clamped at 1e-4."""
    lo, hi = math.log(1e-3), math.log(0.1)
    dt = torch.exp(torch.rand(H, generator=gen, dtype=torch.float32) * (hi - lo) + lo).clamp(min=1e-4)
    return dt + torch.log(-torch.expm1(-dt))


def _beta(s: Shape, gen) -> "torch.Tensor":
    return torch.sigmoid(_randn(gen, s.B, s.T, s.H))


def lightning_gamma(H: int, layer_idx: int = 0, num_layers: int = 1) -> "torch.Tensor":
    """fla's ``chunk_lightning_attn`` decay ``-(8/H)(1 - layer_idx/num_layers) h`` (H,) (first layer)."""
    return -(8 / H * (1 - layer_idx / num_layers)) * torch.arange(H, dtype=torch.float32)


# ----------------------------------------------------------------------------- references

def _naive(module: str, fn: str):
    return getattr(importlib.import_module(module), fn)


def _ref_linear(x, scale):
    o, _ = _naive("fla.ops.linear_attn.naive", "naive_recurrent_linear_attn")(x["q"], x["k"], x["v"], scale=scale,
                                                                           normalize=False)
    return o


def _ref_simple_gla(x, scale):
    o, _ = _naive("fla.ops.simple_gla.naive", "naive_chunk_simple_gla")(x["q"], x["k"], x["v"], x["g"], scale=scale)
    return o


def _ref_lightning(x, scale):
    B, T, H, _ = x["q"].shape
    g = lightning_gamma(H).to(x["q"].device)[None, None].expand(B, T, H)
    o, _ = _naive("fla.ops.simple_gla.naive", "naive_chunk_simple_gla")(x["q"], x["k"], x["v"], g, scale=scale)
    return o


def _ref_gla(x, scale):
    """``naive_recurrent_gla`` has a fixed ``K**-0.5`` scale: q is rescaled to apply ``scale``."""
    K = x["q"].shape[-1]
    o, _ = _naive("fla.ops.gla.naive", "naive_recurrent_gla")(x["q"] * (scale * K ** 0.5), x["k"], x["v"], x["g"])
    return o


def _ref_delta(x, scale):
    """``delta_rule_recurrence`` is head-first with a fixed ``K**-0.5`` scale."""
    K = x["q"].shape[-1]
    q, k, v = (x[n].transpose(1, 2) for n in ("q", "k", "v"))
    o, _ = _naive("fla.ops.delta_rule.naive", "delta_rule_recurrence")(q * (scale * K ** 0.5), k, v,
                                                                     x["beta"].transpose(1, 2))
    return o.transpose(1, 2)


def _ref_gdn(x, scale):
    o, _ = _naive("fla.ops.gated_delta_rule.naive", "naive_recurrent_gated_delta_rule")(
        x["q"], x["k"], x["v"], x["beta"], x["g"], scale=scale)
    return o


def _comba_inputs(s: Shape, gen) -> dict:
    """Gated-DeltaNet ranges (l2-normalised q, k; Mamba2 gate; sigmoid beta) plus a read key p."""
    x = {**_qkv(s, gen, l2=True), "g": _mamba_gate(s, gen), "beta": _beta(s, gen)}
    x["p"] = F.normalize(x["k"] + 0.5 * _randn(gen, s.B, s.T, s.H, s.D), p=2, dim=-1)
    return x


def _rwkv6_inputs(s: Shape, gen) -> dict:
    x = _qkv(s, gen)
    d = torch.empty(s.H, s.D, dtype=torch.float32).uniform_(-6, -1, generator=gen)
    x["g"] = -torch.exp(d + 0.5 * _randn(gen, s.B, s.T, s.H, s.D))
    x["u"] = torch.rand(s.H, s.D, generator=gen, dtype=torch.float32)
    return x


def _ref_comba(x, scale):
    """Token loop of the recurrence fla's Triton kernels compute (fp32): ``u = beta (v - S^T p)`` with the
    state *before* the decay, ``S <- e^{g} S + k u^T``, ``o = S^T (scale q)``. (fla 0.6.0's
    ``naive_recurrent_comba`` reads the decayed state instead and differs from fla's own chunk and
    fused-recurrent kernels by ~2e-2 at the layer's gates, so it is not used as the oracle.)"""
    q, k, v, p, beta, g = (x[n].float() for n in ("q", "k", "v", "p", "beta", "g"))
    B, T, H, K = q.shape
    S = q.new_zeros(B, H, K, v.shape[-1])
    out = []
    for t in range(T):
        u = (v[:, t] - torch.einsum("bhk,bhkv->bhv", p[:, t], S)) * beta[:, t, :, None]
        S = S * g[:, t].exp()[..., None, None] + k[:, t, :, :, None] * u[:, :, None, :]
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * scale, S))
    return torch.stack(out, 1)


def _ref_rwkv6(x, scale):
    """``naive_recurrent_rwkv6`` is head-first."""
    q, k, v, w = (x[n].transpose(1, 2) for n in ("q", "k", "v", "g"))
    o, _ = _naive("fla.ops.rwkv6.recurrent_naive", "naive_recurrent_rwkv6")(q, k, v, w, x["u"], scale=scale)
    return o.transpose(1, 2)


# ----------------------------------------------------------------------------- the catalogue

_RECURRENT_TOKEN_LOOP_MAX_T = 2048   # fla's token-loop references: ~0.1-0.3 ms per token on CPU
_CHUNKED_REF_MAX_T = 8192            # naive_chunk_simple_gla: a Python loop over T/64 chunks

FAMILIES: tuple[Family, ...] = (
    Family(
        name="linear_attn", fla="linear_attn", title="Linear attention", group="linear+decay",
        description="Causal linear attention without decay or normaliser (LinearAttention's default "
                    "do_feature_map_norm=False), Hadamard-feature-map q and k.",
        make=lambda s, gen: _qkv(s, gen, hadamard=True),
        reference=_ref_linear, reference_name="fla naive_recurrent_linear_attn (fp32 token loop)",
        reference_max_T=_RECURRENT_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_linear_attn"), "fla-fused-chunk": FlaFn("fused_chunk_linear_attn"),
                  "fla-recurrent": FlaFn("fused_recurrent_linear_attn")},
        fla_kwargs={"normalize": False},
    ),
    Family(
        name="simple_gla", fla="simple_gla", title="Simple GLA (Mamba2-style scalar decay)", group="linear+decay",
        description="Linear attention with a data-dependent per-head decay g = logsigmoid(x)/16 "
                    "(SimpleGatedLinearAttention's gate).",
        make=lambda s, gen: {**_qkv(s, gen), "g": _logsigmoid_gate(lambda s: (s.B, s.T, s.H))(s, gen)},
        gate="head",
        reference=_ref_simple_gla, reference_name="fla naive_chunk_simple_gla (fp32)",
        reference_max_T=_CHUNKED_REF_MAX_T,
        backends={"fla": FlaFn("chunk_simple_gla"), "fla-fused-chunk": FlaFn("fused_chunk_simple_gla"),
                  "fla-parallel": FlaFn("parallel_simple_gla"),
                  "fla-recurrent": FlaFn("fused_recurrent_simple_gla")},
    ),
    Family(
        name="lightning_attn", fla="lightning_attn", title="Lightning attention", group="linear+decay",
        description="Linear attention with fla's fixed per-head decay -(8/H) h of the first layer "
                    "(chunk_lightning_attn with layer_idx=0, num_layers=1).",
        make=lambda s, gen: _qkv(s, gen),
        gamma=lightning_gamma,
        reference=_ref_lightning, reference_name="fla naive_chunk_simple_gla with g = lightning decay (fp32)",
        reference_max_T=_CHUNKED_REF_MAX_T,
        backends={"fla": FlaFn("chunk_lightning_attn"), "fla-recurrent": FlaFn("fused_recurrent_lightning_attn")},
        fla_kwargs={"layer_idx": 0, "num_layers": 1},
    ),
    Family(
        name="gla", fla="gla", title="GLA (gated linear attention)", group="gated",
        description="Linear attention with a per-key-channel gate g = logsigmoid(x)/16 "
                    "(GatedLinearAttention's gate).",
        make=lambda s, gen: {**_qkv(s, gen), "g": _logsigmoid_gate(lambda s: (s.B, s.T, s.H, s.D))(s, gen)},
        gate="key",
        reference=_ref_gla, reference_name="fla naive_recurrent_gla (fp32 token loop)",
        reference_max_T=_RECURRENT_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_gla"), "fla-recurrent": FlaFn("fused_recurrent_gla", rename={"g": "gk"})},
    ),
    Family(
        name="delta_rule", fla="delta_rule", title="DeltaNet (delta rule)", group="delta-rule",
        description="Delta rule with l2-normalised q, k and beta = sigmoid(x) (DeltaNet's defaults).",
        make=lambda s, gen: {**_qkv(s, gen, l2=True), "beta": _beta(s, gen)},
        delta=True,
        reference=_ref_delta, reference_name="fla delta_rule_recurrence (fp32 token loop)",
        reference_max_T=_RECURRENT_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_delta_rule", dtypes=("float16", "bfloat16")),  # asserts q is not fp32
                  "fla-recurrent": FlaFn("fused_recurrent_delta_rule")},
        max_head_dim=256,
    ),
    Family(
        name="gated_delta_rule", fla="gated_delta_rule", title="Gated DeltaNet (gated delta rule)",
        group="delta-rule",
        description="Delta rule with a per-head decay -exp(A_log) softplus(x + dt_bias) (GatedDeltaNet's "
                    "init, unbounded), l2-normalised q, k and beta = sigmoid(x).",
        make=lambda s, gen: {**_qkv(s, gen, l2=True), "g": _mamba_gate(s, gen), "beta": _beta(s, gen)},
        gate="head", delta=True,
        reference=_ref_gdn, reference_name="fla naive_recurrent_gated_delta_rule (fp32 token loop)",
        reference_max_T=_RECURRENT_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_gated_delta_rule"),
                  "fla-recurrent": FlaFn("fused_recurrent_gated_delta_rule", backward=False)},
        max_head_dim=256,
    ),
    Family(
        name="comba", fla="comba", title="Comba (improved delta rule)", group="delta-rule",
        description="Gated delta rule whose correction reads the state with p (Comba layer: p = "
                    "l2norm(k * sigmoid(d_h)) = k after the in-kernel l2norm; q = l2norm(q - D p) with the "
                    "output correction D = 1); here p = l2norm(k + 0.5 N(0,1)) so p != k is exercised.",
        make=lambda s, gen: _comba_inputs(s, gen),
        gate="head", delta=True, read_key=True,
        reference=_ref_comba, reference_name="token loop of fla's Comba kernels' recurrence (fp32; not fla's naive)",
        reference_max_T=_RECURRENT_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_comba"), "fla-recurrent": FlaFn("fused_recurrent_comba", backward=False)},
        max_head_dim=256,
    ),
    Family(
        name="rwkv6", fla="rwkv6", title="RWKV-6 (Finch)", group="gated",
        description="Per-key-channel decay w = -exp(d) with d ~ U(-6, -1) + 0.5 N(0,1) (RWKV6 time-decay "
                    "init), read-before-write with a per-head bonus u ~ U(0, 1) (H, K).",
        make=lambda s, gen: _rwkv6_inputs(s, gen),
        gate="key", bonus=True,
        reference=_ref_rwkv6, reference_name="fla naive_recurrent_rwkv6 (fp32 token loop)",
        reference_max_T=_RECURRENT_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_rwkv6", rename={"q": "r", "g": "w"}),
                  "fla-recurrent": FlaFn("fused_recurrent_rwkv6", rename={"q": "r", "g": "w"})},
    ),
)

#: Kernel names of the catalogue, in display order (``profiler.kernels.MECHANISMS`` appends them).
NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)
#: fla.ops package -> serprof kernel (``fla_coverage``).
COVERED: dict[str, str] = {f.fla: f.name for f in FAMILIES}


# ----------------------------------------------------------------------------- engine configuration

def _scale(inputs, D: int) -> float:
    return ck.scale_of(inputs, D)


def _head_gate(fam: Family, inputs) -> "torch.Tensor | None":
    """The per-head log decay (B|1, T|1, H) of a scalar-gated family, or None."""
    if fam.gamma is not None:
        q = inputs["q"]
        return fam.gamma(q.shape[2]).to(q.device)[None, None]
    return inputs["g"] if fam.gate == "head" else None


def engine_kwargs(fam: Family, inputs) -> dict:
    """``chunkwise.chunkwise`` keyword arguments (``g`` / ``gk`` / ``beta``) for a family's inputs."""
    return {"g": _head_gate(fam, inputs), "gk": inputs["g"] if fam.gate == "key" else None,
            "beta": inputs["beta"] if fam.delta else None, "p": _read_key(fam, inputs),
            "bonus": inputs["u"] if fam.bonus else None}


def _read_key(fam: Family, inputs) -> "torch.Tensor | None":
    """Comba's read key in the engine's convention. fla's Triton kernels read the state *before* this
    token's decay, ``u_t = beta_t (v_t - S_{t-1}^T p_t)``; the engine reads the decayed state, so p is
    passed as ``p_t e^{-g_t}`` (``p^T S_{t-1} = (p e^{-g})^T (e^{g} S_{t-1})``): exact while every
    per-step log decay stays above about -80 (fp32 exp range; the layer's gates stay far above)."""
    if not fam.read_key:
        return None
    return inputs["p"].float() * (-_head_gate(fam, inputs).float()).exp()[..., None]


def _state_gate(fam: Family, inputs, t0: int, t1: int) -> "torch.Tensor | None":
    """Log gate of tokens [t0, t1) broadcastable to (B, n, H, K): (.., K) per key, (.., 1) per head."""
    if fam.gate == "key":
        return inputs["g"][:, t0:t1]
    g = _head_gate(fam, inputs)
    if g is None:
        return None
    g = g[:, t0:t1] if g.shape[1] > 1 else g.expand(1, t1 - t0, g.shape[2])
    return g[..., None]


# ----------------------------------------------------------------------------- KernelSpec builder

def kernel(fam: Family) -> KernelSpec:
    """The ``KernelSpec`` of one catalogue row (module doc)."""
    names = fam.inputs

    def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
        x = fam.make(shape, ck.generator(seed))
        dt = ck.torch_dtype(dtype)
        return {n: x[n].to(device=device, dtype=dt) for n in names}

    def run_torch(inputs, causal: bool = True):
        require_causal(causal, f"{fam.name}/torch")
        q = inputs["q"]
        return cw.chunkwise(q, inputs["k"], inputs["v"], scale=_scale(inputs, q.shape[-1]), **engine_kwargs(fam, inputs))

    def fla_run(f: FlaFn):
        def run(inputs, causal: bool = True):
            require_causal(causal, f"{fam.name}/{f.fn}")
            op = getattr(importlib.import_module(f"fla.ops.{fam.fla}"), f.fn)
            args = {f.rename.get(n, n): inputs[n] for n in names}      # by keyword: orders differ
            if "cu_seqlens" in inputs:                                  # a packed varlen batch
                args["cu_seqlens"] = inputs["cu_seqlens"]
            out = op(**args, scale=_scale(inputs, inputs["q"].shape[-1]), **fam.fla_kwargs)
            return out[0] if isinstance(out, tuple) else out
        run.__name__ = f"run_{f.fn}"
        return run

    def reference(inputs, causal: bool = True):
        require_causal(causal, f"{fam.name} reference")
        x = {n: inputs[n].float() for n in names}
        return fam.reference(x, _scale(inputs, x["q"].shape[-1]))

    fla_opts = dict(devices=("cuda",), requires=("fla", "triton"), interpretable=True)
    backends = {"torch": Backend("torch", run_torch, description=_torch_description(fam), varlen="per_sequence")}
    for bname, f in fam.backends.items():
        backends[bname] = Backend(bname, fla_run(f), backward=f.backward, dtypes=f.dtypes, **fla_opts,
                                  varlen="cu_seqlens",
                                  description=f"fla.ops.{fam.fla}.{f.fn} (Triton"
                                              + ("; inference only)" if not f.backward else ")"))

    def flops(shape: Shape, causal: bool = True) -> float:
        return shape.B * shape.H * cw.analytic_flops(shape.T, shape.D, shape.D, delta=fam.delta)

    def bytes_moved(shape: Shape, itemsize: int, causal: bool = True) -> float:
        return float(_io_elements(fam, shape) * itemsize)

    def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
        return _memory_bytes(fam, shape, itemsize, backend, mode)

    flops.__doc__ = ("Forward matmul FLOPs of the chunkwise algorithm, ``B*H*chunkwise.analytic_flops``"
                     f" (delta rule: {fam.delta}).")
    bytes_moved.__doc__ = "Read every input once and write o once: " + " + ".join(names) + " + o."
    memory_bytes.__doc__ = _memory_bytes.__doc__

    return KernelSpec(
        name=fam.name, title=fam.title, family="linear", group=fam.group, make_inputs=make_inputs,
        backends=backends, reference=reference, reference_name=fam.reference_name,
        flops=flops, bytes_moved=bytes_moved, memory_bytes=memory_bytes,
        grad_inputs=names, max_head_dim=fam.max_head_dim, reference_max_T=fam.reference_max_T,
        recurrent=_recurrent(fam, backends), description=fam.description,
        notes={"fla": f"fla.ops.{fam.fla}", "engine": _torch_description(fam)},
    )


def _torch_description(fam: Family) -> str:
    path = ("delta-rule WY/UT path" if fam.delta else "per-key GLA path" if fam.gate == "key"
            else "scalar-decay path" if (fam.gate or fam.gamma) else "plain linear path")
    return f"shared chunkwise engine (chunkwise.py, {path}, C={cw.CHUNK}), pure PyTorch, any device"


def _io_elements(fam: Family, s: Shape) -> int:
    """Elements read and written by one forward: q, k, v, o, plus g (per head or per key) and beta."""
    btH = s.B * s.T * s.H
    n = 4 * btH * s.D
    if fam.gate == "key":
        n += btH * s.D
    elif fam.gate == "head":
        n += btH
    if fam.delta:
        n += btH
    return n


def _memory_bytes(fam: Family, shape: Shape, itemsize: int, backend: str, mode: str) -> int:
    """Predicted peak bytes above the inputs (structural; the extra terms checked against torch.profiler
    peaks at D = C = 64 only, within ~5 %: indicative at other head dims).

    ``torch``: delta rule as KDA's fitted model (the same engine path, ``kda.memory_bytes``; Comba + 2a);
    otherwise with ``a`` one fp32 chunked (B, H, Tp, D) tensor, ``st`` the (D, D) states of all chunks,
    ``sc`` the (C, C) scores of all chunks: fwd ``3a + st + max(st, 2 sc + a)`` (chunked q, k, v and
    the entering states; the scan, or the scores + decay mask + output), per-key gates add ``6a``
    (the gate, its cumsum, the factors, gated q), RWKV6 one more ``a`` (plus, not modelled, the exact
    pairwise ``(n, C, C, D)`` buffers of the chunks whose decay exceeds ``chunked.SAFE_SPAN``: data-dependent,
    up to ~20 % more at RWKV6's steeper channels); fwdbwd ``7a + 2st + 2sc`` + the input gradients (autograd's
    saved tensors). fla backends: the output, fp32 chunk states ``st`` (``fla-parallel``: none) and,
    in fwdbwd, the input gradients.
    """
    a, st, sc, io = ck.torch_peak_terms(shape, itemsize)
    if backend == "torch" and fam.delta:
        # Comba's read key: p and p e^{-g} (fp32 chunked) live through the solve
        # (DeltaNet: + the zero gate the delta path takes)
        return int(kda.memory_bytes(shape, itemsize, "torch", True, mode) + (2 * a if fam.read_key else 0)
                   + (a if fam.gate is None else 0))
    grads = len(fam.inputs) * io
    if backend == "torch":
        # per-key gates: the fp32 gate, its chunked cumsum and the factors e^{b}, e^{-b}, e^{b_C - b}, gated q
        # (fitted: torch.profiler peak at D = C = 64); RWKV6's shifted query adds one more copy
        extra = (6 * a if fam.gate == "key" else 0) + (a if fam.bonus else 0)
        if mode == "fwdbwd":
            return int(7 * a + 2 * st + 2 * sc + extra + grads)
        return int(3 * a + st + max(st, 2 * sc + a) + extra)
    states = 0 if backend == "fla-parallel" else st
    return int(io + states + (grads + states if mode == "fwdbwd" else 0))


# ----------------------------------------------------------------------------- recurrent form

def _recurrent(fam: Family, backends: Mapping[str, Backend]) -> rc.LinearForm | None:
    """Decode / streaming through the engine's state (module doc).

    The carried state ``S`` (B, H, K, V) fp32 is the one fla's ``fused_recurrent_*`` carries, so the
    torch step and the fla backend start from the same state: the state after the context in closed
    form (``recurrent.gated_state``; for RWKV6 this is fla's ``h``, decayed by every gate up to the last
    token) or the delta path's final state. RWKV6 reads before it writes (``o = S^T q + bonus``, then
    ``S <- Diag(e^{w}) S + k v^T``) and has no chunkwise streaming form here (token by token).
    """
    if not fam.decode:
        return None
    names = fam.inputs
    rec_fn = fam.backends.get(rc.FLA_BACKEND)

    def prefix(inputs, t0: int, t1: int) -> dict:
        return {n: (inputs[n][:, t0:t1] if n != "u" else inputs[n]) for n in names}

    def start(inputs, T0: int) -> dict:
        k, v = inputs["k"][:, :T0], inputs["v"][:, :T0]
        if not fam.delta:
            gate = inputs["g"][:, :T0] if fam.bonus else _state_gate(fam, inputs, 0, T0)
            return {"S": rc.gated_state(k, v, gk=gate)}
        x = prefix(inputs, 0, T0)
        kw = engine_kwargs(fam, x)
        gate = cw._key_gate(kw["g"], kw["gk"], x["q"])
        _, S = cw.delta_chunkwise(x["q"], k, v, gate, kw["beta"], 1.0, final_state=True, p=kw["p"])
        return {"S": S}

    def step(state, inputs, t: int, scale: float):
        q, k, v = (rc.token(inputs, n, t).float() for n in ("q", "k", "v"))
        if fam.bonus:
            S = state["S"]
            qs = q * scale
            o = (qs.unsqueeze(-2) @ S).squeeze(-2) + (qs * inputs["u"].float() * k).sum(-1, keepdim=True) * v
            ck.advance(S, k.unsqueeze(-1) * v.unsqueeze(-2), rc.token(inputs, "g", t).float().exp().unsqueeze(-1), out=S)
            return o
        g = _state_gate(fam, inputs, t, t + 1)
        if fam.read_key:   # Comba: read the state before this token's decay (fla's kernels)
            S = state["S"]
            u = (v - (rc.token(inputs, "p", t).float().unsqueeze(-2) @ S).squeeze(-2)) \
                * rc.token(inputs, "beta", t).float().unsqueeze(-1)
            ck.advance(S, k.unsqueeze(-1) * u.unsqueeze(-2), g[:, 0].float().exp().unsqueeze(-1), out=S)
            return ((q * scale).unsqueeze(-2) @ S).squeeze(-2)
        return rc.step(state["S"], q * scale, k, v, gk=None if g is None else g[:, 0],
                       beta=rc.token(inputs, "beta", t) if fam.delta else None)

    def chunk(state, inputs, t0: int, t1: int, scale: float):
        q, k, v = (inputs[n][:, t0:t1] for n in ("q", "k", "v"))
        g = _state_gate(fam, inputs, t0, t1)
        if not fam.delta:
            return rc.gla_chunk(state["S"], q.float() * scale, k, v, gk=g)
        gate = q.new_zeros(q.shape, dtype=torch.float32) + (0.0 if g is None else g.float())
        o, S = cw.delta_chunkwise(q, k, v, gate, inputs["beta"][:, t0:t1], scale, final_state=True,
                                  initial_state=state["S"], p=_read_key(fam, prefix(inputs, t0, t1)))
        state["S"].copy_(S)
        return o.float()

    fla = None
    if rec_fn is not None:
        def fla(state, inputs, t0: int, t1: int, scale: float, step: int = 1):
            op = getattr(importlib.import_module(f"fla.ops.{fam.fla}"), rec_fn.fn)
            outs = []
            for t in range(t0, t1, step):   # decode: one call per token; streaming: one call per chunk
                x = prefix(inputs, t, min(t + step, t1))
                o, S = op(**{rec_fn.rename.get(n, n): x[n] for n in names}, scale=scale,
                          initial_state=state["S"], output_final_state=True, **fam.fla_kwargs)
                state["S"].copy_(S)
                outs.append(o)
            return torch.cat(outs, dim=1)

    return rc.LinearForm(
        start=start, step=step, fla=fla, chunk=None if fam.bonus else chunk,
        state_shapes=lambda s: {"S": (s.B, s.H, s.D, s.D)},
        step_flops=lambda s: (8.0 if fam.delta else 6.0) * s.B * s.H * s.D * s.D,
    )


KERNELS: tuple[KernelSpec, ...] = tuple(kernel(f) for f in FAMILIES)

__all__ = ["Family", "FlaFn", "FAMILIES", "NAMES", "COVERED", "KERNELS", "kernel", "engine_kwargs", "lightning_gamma"]
