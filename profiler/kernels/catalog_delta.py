"""More of fla's op catalogue as declarative kernels (issue 17 item 2): the delta-rule relatives whose
transition or read-out is not a plain ``catalog.Family`` row, and HGRN.

Each row of ``MECHANISMS`` is one ``fla.ops`` family described as data, like ``catalog.FAMILIES``: the
inputs in the value ranges the matching fla layer produces (``make``), the fla backends (``chunk_*`` as
``fla``, ``fused_recurrent_*`` as ``fla-recurrent``, others by name; ``catalog.FlaFn``), an fp32
reference (fla's naive function with the layer's transforms written out), analytic FLOP / byte /
memory models and a report group. ``kernel(mech)`` turns a row into a ``KernelSpec``.

=========================  ==========================================  ================================
kernel                     CPU ``torch`` backend                       fla backends
=========================  ==========================================  ================================
rwkv7                      none (DPLR)                                 fla (layer call), fla-exact,
                                                                       fla-recurrent, fla-mul-recurrent
dplr_delta_rule            none (DPLR)                                 fla, fla-recurrent
iplr_delta_rule            none (IPLR)                                 fla (fwd only), fla-recurrent
gated_delta_product        engine: delta rule on T*n interleaved       fla, fla-recurrent (the layer's
                           sub-steps                                   fused_recurrent_gated_delta_rule)
hgrn                       none (elementwise vector recurrence)        fla, fla-recurrent
gdn2                       engine: delta rule, per-key gate, beta=1,   fla, fla-recurrent
                           read key b*k, values w*v
precond_gated_delta_rule   engine: scalar path (ATK accumulator), then fla, fla-recurrent
                           delta rule with write key k*M, read key k
precond_kda                the same with KDA's per-key gate            fla, fla-recurrent
momentum_delta_rule        none (two coupled states)                   fla, fla-recurrent (fla's own
                                                                       PyTorch paths + Triton l2norm)
=========================  ==========================================  ================================

CPU. A row whose recurrence is a configuration of the shared chunkwise engine (``chunkwise.py``) gets
a ``torch`` backend that runs it through the engine (``engine``). The others have no timed CPU
backend (``no_cpu`` says why: e.g. the DPLR transition ``Diag(e^{w}) + b a^T`` writes its rank-one
correction along ``b`` while the value is written along ``k``, where the engine's delta rule writes both
along ``k``); ``serprof list`` shows it in the backends' descriptions and ``serprof list --fla`` in the
family's row; their reference is for correctness only. Every fla backend runs on CPU under Triton's
interpreter for correctness (``serprof verify --interpret``). ``LEFT_OUT``: families studied and left
out, with the reason.

No decode / streaming form here (``recurrent=None``: such points are dropped with the reason).
This module is cheap to import (torch and fla load lazily).
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
from profiler.kernels.base import Backend, KernelSpec, Shape, require_causal
from profiler.kernels.catalog import FlaFn, _beta, _mamba_gate, _naive, _randn

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Mechanism:
    """A declarative description of one fla op family that is not a ``catalog.Family`` row (module doc).

    ``make(shape, gen)`` draws fp32 CPU tensors named ``inputs`` (every one time-indexed ``(B, T, ...)``,
    so a causal prefix and a packed varlen batch slice them on dim 1); ``prepare(backend, inputs)`` maps
    them to that backend's fla keyword arguments (e.g. RWKV-7's ``a = -kk``, ``b = kk * iclr``, as the
    layer passes them; default: the inputs themselves) and ``post(backend, out, inputs)`` maps the fla
    output back to ``(B, T, H, V)`` (default: unchanged); a ``FlaFn.fn`` written ``family.function``
    calls a function of another ``fla.ops`` family (the layer's own choice of kernel);
    ``reference(x, scale)`` is the fp32 oracle on the same inputs; ``engine(x, scale)`` (or None) the
    torch backend and ``engine_memory(shape, itemsize, mode)`` its peak-bytes model.
    ``flops(shape)``: forward FLOPs per (batch, head); ``io(shape)``: elements read and written by one
    forward per (batch, head); ``work(shape, itemsize)``: the fla chunk kernel's bytes per (batch, head)
    above the inputs in the forward (intermediates, chunk states); ``scale``: the fixed scale the layer
    passes (None: ``K ** -0.5``); ``fla_kwargs``: backend name -> the fixed keyword arguments passed to
    its fla function (as the layer passes them).
    """

    name: str
    fla: str
    title: str
    group: str
    description: str
    inputs: tuple[str, ...]
    make: Callable[[Shape, "torch.Generator"], dict]
    reference: Callable[[dict, float], "torch.Tensor"]
    reference_name: str
    reference_max_T: int
    backends: Mapping[str, FlaFn]
    flops: Callable[[Shape], float]
    io: Callable[[Shape], int]
    work: Callable[[Shape, int], float]
    prepare: Callable[[str, dict], dict] | None = None
    post: Callable[[str, "torch.Tensor", dict], "torch.Tensor"] | None = None
    fla_kwargs: Mapping[str, Any] = field(default_factory=dict)
    scale: float | None = None
    engine: Callable[[dict, float], "torch.Tensor"] | None = None
    engine_path: str = ""
    engine_memory: Callable[[Shape, int, str], float] | None = None
    no_cpu: str = ""
    max_head_dim: int | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    #: the fla functions take ``scale`` (False: no query, e.g. HGRN)
    takes_scale: bool = True
    #: backends whose fla function takes no ``cu_seqlens`` (packed varlen points are dropped with the reason)
    no_varlen: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- input ranges

#: RWKV-7's decay bound: ``w = -e^{-1/2} sigmoid(.)`` (``RWKV7Attention``; ``chunk_rwkv7(lower_bound=)``)
RWKV7_W_MIN = -0.6065306597126334


def _rwkv7_channel_init(s: Shape) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """``RWKV7Attention._initialize_weights`` at layer 0 for ``hidden = H * D`` channels, shaped (H, D):
    the decay LoRA bias ``www + 0.5 + 2.5 zigzag`` (``www`` from -6 to 0 across the hidden channels), the
    in-context learning rate bias ``-0.19 + 0.3 zigzag + 0.4 linear`` and ``k_k = 0.71 - 0.1 linear``."""
    C = s.H * s.D
    n = torch.arange(C, dtype=torch.float32)
    linear = n / max(C - 1, 1) - 0.5
    zz = ((n % s.D) - (s.D - 1) / 2) / max((s.D - 1) / 2, 1)
    zigzag = zz * zz.abs()
    www = -6 + 6 * (n / max(C - 1, 1))
    w_bias = (www + 0.5 + zigzag * 2.5).view(s.H, s.D)
    a_bias = (-0.19 + zigzag * 0.3 + linear * 0.4).view(s.H, s.D)
    k_k = (0.71 - linear * 0.1).view(s.H, s.D)
    return w_bias, a_bias, k_k


def _rwkv7_inputs(s: Shape, gen) -> dict:
    """RWKV-7 at the layer's init plus a trained LoRA's spread (0.5 N(0, 1) on each LoRA output; the
    init LoRAs are zero): ``r ~ N(0, 1)`` (orthogonal ``r_proj``, gain 1), raw keys ``k0 ~ 0.1 N(0, 1)``
    (gain 0.1), ``v ~ N(0, 1)``; ``w = -e^{-1/2} sigmoid(w_bias + .)`` in (-0.607, 0);
    ``iclr = sigmoid(a_bias + .)``; ``kk = l2norm(k0 * k_k)`` per head;
    ``k = k0 (1 + (iclr - 1) 1.02)`` (``fused_k_rwkv7`` with ``k_a = 1.02``)."""
    dims = (s.B, s.T, s.H, s.D)
    w_bias, a_bias, k_k = _rwkv7_channel_init(s)
    q, k0, v = _randn(gen, *dims), 0.1 * _randn(gen, *dims), _randn(gen, *dims)
    w = RWKV7_W_MIN * torch.sigmoid(w_bias + 0.5 * _randn(gen, *dims))
    iclr = torch.sigmoid(a_bias + 0.5 * _randn(gen, *dims))
    kk = F.normalize(k0 * k_k, p=2, dim=-1)
    k = k0 * (1 + (iclr - 1) * 1.02)
    return {"q": q, "k": k, "v": v, "g": w, "kk": kk, "iclr": iclr}


def _rwkv7_prepare(backend: str, x: dict) -> dict:
    """The layer's call: ``chunk_rwkv7(r, w, k, v, a=-kk, b=kk * iclr)``; ``fused_mul_recurrent_rwkv7``
    (the layer's inference kernel) takes kk and iclr themselves."""
    if backend == "fla-mul-recurrent":
        return {n: x[n] for n in ("q", "k", "v", "g", "kk", "iclr")}
    return {"q": x["q"], "k": x["k"], "v": x["v"], "g": x["g"], "a": -x["kk"], "b": x["kk"] * x["iclr"]}


def _dplr_inputs(s: Shape, gen, *, gate: bool = True) -> dict:
    """A generic DPLR delta rule in the ranges of its best-known instance (RWKV-7 / DeltaNet-style
    keys): l2-normalised q, k (``use_qk_l2norm``-style), ``v ~ N(0, 1)``, ``a = -kk``, ``b = kk * beta``
    with ``kk`` an l2-normalised key direction and ``beta = sigmoid(N(0, 1))`` per channel (so
    ``I + b a^T`` has eigenvalues in (0, 1]), and a per-key log decay ``logsigmoid(N(0, 1)) / 16``
    (GLA's gate normaliser). ``gate=False``: the IPLR rule (no decay)."""
    dims = (s.B, s.T, s.H, s.D)
    q, k = (F.normalize(_randn(gen, *dims), p=2, dim=-1) for _ in range(2))
    v = _randn(gen, *dims)
    kk = F.normalize(_randn(gen, *dims), p=2, dim=-1)
    beta = torch.sigmoid(_randn(gen, *dims))
    x = {"q": q, "k": k, "v": v, "a": -kk, "b": kk * beta}
    if gate:
        x["g"] = F.logsigmoid(_randn(gen, *dims)) / 16
    return x


#: Householder updates per token of Gated DeltaProduct (``GatedDeltaProduct(num_householder=2)``, its default)
NUM_HOUSEHOLDER = 2


def _gdp_inputs(s: Shape, gen, n: int = NUM_HOUSEHOLDER) -> dict:
    """``GatedDeltaProduct``'s defaults: n keys, values and betas per token, stored ``(B, T, n, H, ...)``
    (the layer's ``(t n)`` interleaving, time on dim 1); q, k l2-normalised (``use_qk_l2norm_in_kernel``
    applied up front); ``beta = 2 sigmoid(x)`` in (0, 2) (``allow_neg_eigval=True``); the Mamba2 gate
    ``-exp(A_log) softplus(x + dt_bias)`` per head and token (``use_forget_gate=True``)."""
    q = F.normalize(_randn(gen, s.B, s.T, s.H, s.D), p=2, dim=-1)
    k = F.normalize(_randn(gen, s.B, s.T, n, s.H, s.D), p=2, dim=-1)
    v = _randn(gen, s.B, s.T, n, s.H, s.Dv)
    beta = 2 * torch.sigmoid(_randn(gen, s.B, s.T, n, s.H))
    return {"q": q, "k": k, "v": v, "g": _mamba_gate(s, gen), "beta": beta}


def _gdp_flat(x: dict) -> dict:
    """k, v, beta as the ``(B, T*n, H, ...)`` sequences fla takes (views)."""
    B, T, n = x["k"].shape[:3]
    return {"k": x["k"].reshape(B, T * n, *x["k"].shape[3:]), "v": x["v"].reshape(B, T * n, *x["v"].shape[3:]),
            "beta": x["beta"].reshape(B, T * n, x["beta"].shape[-1])}


def _gdp_interleaved(x: dict) -> dict:
    """The gated delta rule on the ``T*n`` sub-steps that Gated DeltaProduct is (fla's own reduction: its
    chunk kernel interleaves the gate, its layer's fused_recurrent mode does all of it): the gate at each
    token's first sub-step, the query at its last, zeros elsewhere."""
    q, g = x["q"], x["g"]
    B, T, n, H = x["k"].shape[:4]
    zq = q.new_zeros(B, T, n - 1, H, q.shape[-1])
    qi = torch.cat([zq, q[:, :, None]], dim=2).reshape(B, T * n, H, q.shape[-1])
    gi = torch.cat([g[:, :, None], g.new_zeros(B, T, n - 1, H)], dim=2).reshape(B, T * n, H)
    return {"q": qi, "g": gi, **_gdp_flat(x)}


def _gdp_prepare(backend: str, x: dict) -> dict:
    """fla: ``chunk_gated_delta_product(q, k, v, g, beta, num_householder=n)`` on the flat sequences;
    fla-recurrent: ``fused_recurrent_gated_delta_rule`` on the interleaved form with ``cu_seqlens * n``
    (the layer's fused_recurrent mode)."""
    if backend == "fla-recurrent":
        out = _gdp_interleaved(x)
        if "cu_seqlens" in x:
            out["cu_seqlens"] = x["cu_seqlens"] * x["k"].shape[2]
        return out
    return {"q": x["q"], "g": x["g"], **_gdp_flat(x)}


def _gdp_post(backend: str, o: "torch.Tensor", x: dict) -> "torch.Tensor":
    """fla-recurrent's ``(B, T*n, H, V)`` output read at each token's last sub-step."""
    if backend != "fla-recurrent":
        return o
    B, T, n = x["k"].shape[:3]
    return o.view(B, T, n, *o.shape[2:])[:, :, -1]


def _gdp_engine(x: dict, scale: float) -> "torch.Tensor":
    """The shared engine's delta-rule path (``chunkwise.chunkwise`` with ``g`` and ``beta``) on the
    interleaved ``T*n`` sub-steps (``_gdp_interleaved``), read at each token's last sub-step."""
    y = _gdp_interleaved(x)
    B, T, n = x["k"].shape[:3]
    o = cw.chunkwise(y["q"], y["k"], y["v"], g=y["g"], beta=y["beta"], scale=scale)
    return o.view(B, T, n, *o.shape[2:])[:, :, -1]


def _gdp_engine_memory(s: Shape, itemsize: int, mode: str) -> float:
    """The delta-rule path's model (``kda.memory_bytes``, the same engine path) at the ``T*n`` interleaved
    sub-steps, plus the interleaved query (one fp32 chunked ``a`` at ``T*n``; fwd+bwd: four, the
    interleaving's saved copies and gradients). Checked against torch.profiler peaks at T = 1024,
    D = 32 and 64: within ~10 % (fwd and fwd+bwd)."""
    n = NUM_HOUSEHOLDER
    wide = Shape(s.B, s.T * n, s.H, s.D, value_dim=s.value_dim)
    a = ck.torch_peak_terms(wide, itemsize)[0]
    return kda.memory_bytes(wide, itemsize, "torch", True, mode) + (1 if mode == "fwd" else 4) * a


def _hgrn_inputs(s: Shape, gen) -> dict:
    """``HGRNAttention`` (layer 0, no lower bound) over ``H * D`` channels: forget gate
    ``g = logsigmoid(f)``, input ``x = silu(i) * (1 - e^{g})`` (``swiglu(i, 1 - f.exp())``), with the
    projections ``i, f ~ N(0, 1)``; stored (B, T, H, D), the kernels see (B, T, H * D)."""
    dims = (s.B, s.T, s.H, s.D)
    g = F.logsigmoid(_randn(gen, *dims))
    x = F.silu(_randn(gen, *dims)) * (1 - g.exp())
    return {"x": x, "g": g}


def _hgrn_prepare(backend: str, x: dict) -> dict:
    B, T = x["x"].shape[:2]
    return {"x": x["x"].reshape(B, T, -1), "g": x["g"].reshape(B, T, -1)}


def _hgrn_post(backend: str, o: "torch.Tensor", x: dict) -> "torch.Tensor":
    return o.view(x["x"].shape)


def _gdn2_inputs(s: Shape, gen) -> dict:
    """``GatedDeltaNet2`` (allow_neg_eigval=False): l2-normalised q, k (``use_qk_l2norm_in_kernel``
    applied up front); per-key log decay ``g = -exp(A_log)_h softplus(f + dt_bias)`` with
    ``A ~ U(1, 16)`` per head and the Mamba ``dt`` init per key channel (its ``dt_bias``); erase gate
    ``b = sigmoid(.)`` per key channel, write gate ``w = sigmoid(.)`` per value channel."""
    dims = (s.B, s.T, s.H, s.D)
    q, k = (F.normalize(_randn(gen, *dims), p=2, dim=-1) for _ in range(2))
    v = _randn(gen, s.B, s.T, s.H, s.Dv)
    A_log = torch.empty(s.H, dtype=torch.float32).uniform_(1, 16, generator=gen).log()
    lo, hi = math.log(1e-3), math.log(0.1)
    dt = torch.exp(torch.rand(s.H, s.D, generator=gen, dtype=torch.float32) * (hi - lo) + lo).clamp(min=1e-4)
    dt_bias = dt + torch.log(-torch.expm1(-dt))
    g = -A_log.exp()[:, None] * F.softplus(_randn(gen, *dims) + dt_bias)
    b = torch.sigmoid(_randn(gen, *dims))
    w = torch.sigmoid(_randn(gen, s.B, s.T, s.H, s.Dv))
    return {"q": q, "k": k, "v": v, "g": g, "b": b, "w": w}


def _gdn2_engine(x: dict, scale: float) -> "torch.Tensor":
    """GDN-2 ``S <- (I - k (b*k)^T) Diag(e^{g}) S + k (w*v)^T`` is the engine's delta rule with a per-key
    gate, ``beta = 1``, the values ``w * v`` and the read key ``p = b * k`` (the correction reads the
    decayed state, as the engine does)."""
    q, k = x["q"], x["k"]
    ones = q.new_ones(q.shape[:3])
    return cw.chunkwise(q, k, x["v"] * x["w"], gk=x["g"], beta=ones, p=x["b"] * k, scale=scale)


def _gdn2_engine_memory(s: Shape, itemsize: int, mode: str) -> float:
    """The delta-rule path's model (``kda.memory_bytes``); the forward adds the read key ``p = b * k`` and
    its fp32 chunked copy (``2a``, as Comba) and the gated values ``w * v`` (an input-sized tensor); fwd+bwd
    is KDA's fitted model as is (it already over-counts this path by about these). Checked against
    torch.profiler peaks at T = 1024, D = 32 and 64: within ~6 % (fwd and fwd+bwd)."""
    a, _, _, io = ck.torch_peak_terms(s, itemsize)
    return kda.memory_bytes(s, itemsize, "torch", True, mode) + (2 * a + io if mode == "fwd" else 0)


#: ``PrecondGatedDeltaNet``'s squash: ``M = x^{-s}``, ``s = r / (1 + |r|)``, ``r = log(A + eps) - log_atk_scale``
PRECOND_X, PRECOND_EPS, PRECOND_CENTER = 1.5, 1e-6, -0.2


def _precond_inputs(s: Shape, gen) -> dict:
    """``PrecondGatedDeltaNet``'s defaults: raw q, k ~ N(0, 1) (the kernels l2-normalise them,
    ``use_qk_l2norm_in_kernel=True``); the gated delta rule's Mamba2 gate ``g`` and ``beta = sigmoid``;
    the ATK preconditioner's own gate ``g_atk`` (the same Mamba2 init) and ``beta_atk = sigmoid``; the
    per-head ``log_atk_scale`` at its init ``-0.2``, squash ``x = 1.5``, ``eps = 1e-6`` (fla's defaults)."""
    dims = (s.B, s.T, s.H, s.D)
    q, k = _randn(gen, *dims), _randn(gen, *dims)
    v = _randn(gen, s.B, s.T, s.H, s.Dv)
    return {"q": q, "k": k, "v": v, "g": _mamba_gate(s, gen), "beta": _beta(s, gen),
            "g_atk": _mamba_gate(s, gen), "beta_atk": _beta(s, gen)}


def _precond_engine(x: dict, scale: float) -> "torch.Tensor":
    """Two engine configurations. The ATK preconditioner ``A_t = e^{g_atk} A_{t-1} + beta_atk k_t^2``
    (per key channel) is the scalar-decay path with a one-dimensional key (``q = k = 1``, values
    ``beta_atk k^2``, fp32); the squash gives the write key ``k M``; the gated delta rule that reads with
    ``k`` and writes with ``k M`` is the delta-rule path with write key ``k M`` and read key ``p = k``."""
    q, k = F.normalize(x["q"].float(), p=2, dim=-1), F.normalize(x["k"].float(), p=2, dim=-1)
    ones = k.new_ones(*k.shape[:3], 1)
    A = cw.chunkwise(ones, ones, x["beta_atk"].float()[..., None] * k * k, g=x["g_atk"], scale=1.0)
    r = torch.log(A + PRECOND_EPS) - PRECOND_CENTER
    k_pre = k * torch.exp(-math.log(PRECOND_X) * (r / (1.0 + r.abs())))
    gate = {"gk": x["g"]} if x["g"].dim() == 4 else {"g": x["g"]}     # precond_kda: KDA's per-key gate
    return cw.chunkwise(q, k_pre, x["v"], beta=x["beta"], p=k, scale=scale, **gate)


def _precond_kda_inputs(s: Shape, gen) -> dict:
    """``PrecondKDA``'s defaults (safe_gate off): ``_precond_inputs`` with KDA's per-key log decay
    ``-exp(A_log)_h softplus(x + dt_bias)`` (``fused_kda_gate``; ``A ~ U(1, 16)``) as ``g``."""
    x = _precond_inputs(s, gen)
    x["g"] = _gdn2_inputs(s, gen)["g"]          # the same KDA-style gate draw as GDN-2's
    return x


def _precond_engine_memory(s: Shape, itemsize: int, mode: str) -> float:
    """The delta-rule path's model (``kda.memory_bytes``) plus, with ``a`` one fp32 chunked (B, H, Tp, D)
    tensor, the normalised q, k, the preconditioner state and the write key (``4a``) and the read key's
    chunked copy (``a``); fwd+bwd: KDA's fitted model plus ``12a`` (the preconditioner's saved tensors and
    gradients). Checked against torch.profiler peaks at T = 1024: fwd within ~7 % (D = 32, 64), fwd+bwd
    within ~5 % (D = 32..128)."""
    a = ck.torch_peak_terms(s, itemsize)[0]
    return kda.memory_bytes(s, itemsize, "torch", True, mode) + (5 if mode == "fwd" else 12) * a


def _momentum_inputs(s: Shape, gen) -> dict:
    """``MomentumDeltaNet``'s defaults (qk_norm='l2', use_p_times_alpha, p = k, tau_factor 1 over
    ``hidden = H * D``): raw q, k ~ N(0, 1) (l2-normalised in the kernel), ``v ~ N(0, 1)``;
    ``eta = tanh(e / sqrt(hidden)) + 1``; ``theta = arctan(eta * F)`` with ``F ~ U(0, 4)`` per head;
    ``log_alpha = -A softplus(a + dt_bias) + log cos^2 theta`` (``A ~ U(0, 16)``, Mamba ``dt`` init);
    ``beta = sigmoid(b) sin^2 theta``; ``log_mu = max(-Mu softplus(m + mu_bias), -2)`` (``Mu ~ U(0, 16)``);
    the projections ``a, b, m, e ~ N(0, 1)``."""
    dims3 = (s.B, s.T, s.H)
    q, k = _randn(gen, s.B, s.T, s.H, s.D), _randn(gen, s.B, s.T, s.H, s.D)
    v = _randn(gen, s.B, s.T, s.H, s.Dv)
    A = torch.empty(s.H, dtype=torch.float32).uniform_(0, 16, generator=gen)
    Mu = torch.empty(s.H, dtype=torch.float32).uniform_(0, 16, generator=gen)
    lo, hi = math.log(1e-3), math.log(0.1)
    dt = torch.exp(torch.rand(s.H, generator=gen, dtype=torch.float32) * (hi - lo) + lo).clamp(min=1e-4)
    dt_bias = dt + torch.log(-torch.expm1(-dt))
    factor = torch.empty(s.H, dtype=torch.float32).uniform_(0, 4, generator=gen)
    eta = torch.tanh(_randn(gen, *dims3) / math.sqrt(s.H * s.D)) + 1
    theta = torch.atan(eta * factor)
    log_alpha = -A * F.softplus(_randn(gen, *dims3) + dt_bias) + torch.cos(theta).pow(2).log()
    beta = torch.sigmoid(_randn(gen, *dims3)) * torch.sin(theta).pow(2)
    log_mu = (-Mu * F.softplus(_randn(gen, *dims3) + dt_bias)).clamp_min(-2.0)
    return {"q": q, "k": k, "v": v, "log_alpha": log_alpha, "log_mu": log_mu, "beta": beta, "eta": eta}


def _momentum_prepare(backend: str, x: dict) -> dict:
    """The layer's call: ``p = k`` (the same tensor: its gradient sums both uses)."""
    return {**{n: x[n] for n in ("q", "k", "v", "log_alpha", "log_mu", "beta", "eta")}, "p": x["k"]}


# ----------------------------------------------------------------------------- references

def _ref_dplr(x: dict, scale: float) -> "torch.Tensor":
    """``dplr_recurrence`` (fp32 token loop, head-first, fixed ``K**-0.5`` scale: q is rescaled):
    ``S_t = Diag(e^{g_t}) S_{t-1} + b_t (a_t^T S_{t-1}) + k_t v_t^T``, ``o_t = S_t^T (scale q_t)``."""
    K = x["q"].shape[-1]
    q, k, v, a, b, g = (x[n].transpose(1, 2) for n in ("q", "k", "v", "a", "b", "g"))
    o, _ = _naive("fla.ops.generalized_delta_rule.dplr.naive", "dplr_recurrence")(q * (scale * K ** 0.5), k, v, a, b, g)
    return o.transpose(1, 2)


def _ref_iplr(x: dict, scale: float) -> "torch.Tensor":
    """``iplr_recurrence`` (the same without decay): ``S_t = S_{t-1} + b_t (a_t^T S_{t-1}) + k_t v_t^T``."""
    K = x["q"].shape[-1]
    q, k, v, a, b = (x[n].transpose(1, 2) for n in ("q", "k", "v", "a", "b"))
    o, _ = _naive("fla.ops.generalized_delta_rule.iplr.naive", "iplr_recurrence")(q * (scale * K ** 0.5), k, v, a, b)
    return o.transpose(1, 2)


def _ref_rwkv7(x: dict, scale: float) -> "torch.Tensor":
    return _ref_dplr(_rwkv7_prepare("reference", x), scale)


def _ref_gdp(x: dict, scale: float) -> "torch.Tensor":
    """``naive_recurrent_gated_delta_product`` (fp32 token loop with n Householder sub-steps per token)."""
    o, _ = _naive("fla.ops.gated_delta_product.naive", "naive_recurrent_gated_delta_product")(
        x["q"], scale=scale, g=x["g"], num_householder=x["k"].shape[2], **_gdp_flat(x))
    return o


def _ref_hgrn(x: dict, scale) -> "torch.Tensor":
    """``naive_recurrent_hgrn``: ``h_t = e^{g_t} * h_{t-1} + x_t``, ``o_t = h_t`` per channel (fp32 token loop)."""
    y = _hgrn_prepare("reference", x)
    o, _ = _naive("fla.ops.hgrn.naive", "naive_recurrent_hgrn")(y["x"], y["g"])
    return o.view(x["x"].shape)


def _ref_gdn2(x: dict, scale: float) -> "torch.Tensor":
    o, _ = _naive("fla.ops.gdn2.naive", "naive_recurrent_gdn2")(x["q"], x["k"], x["v"], x["g"], x["b"], x["w"],
                                                               scale=scale)
    return o


def _ref_precond(x: dict, scale: float) -> "torch.Tensor":
    """``naive_recurrent_precond_gated_delta_rule`` (fp32 token loop; l2-normalises q and k itself)."""
    o, _, _ = _naive("fla.ops.precond_gated_delta_rule.naive", "naive_recurrent_precond_gated_delta_rule")(
        x["q"], x["k"], x["v"], x["g_atk"], x["g"], x["beta_atk"], x["beta"], scale=scale, x=PRECOND_X,
        eps=PRECOND_EPS, log_atk_scale=PRECOND_CENTER)
    return o


def _ref_precond_kda(x: dict, scale: float) -> "torch.Tensor":
    """``naive_recurrent_precond_kda`` (fp32 token loop) on l2-normalised q, k (fla's chunk and
    fused-recurrent kernels always l2-normalise them in the kernel; the naive loop does not)."""
    q, k = F.normalize(x["q"], p=2, dim=-1), F.normalize(x["k"], p=2, dim=-1)
    o, _, _ = _naive("fla.ops.precond_kda.naive", "naive_recurrent_precond_kda")(
        q, k, x["v"], x["g"], x["g_atk"], x["beta_atk"], x["beta"], scale=scale, x=PRECOND_X, eps=PRECOND_EPS,
        log_atk_scale=PRECOND_CENTER)
    return o


def _ref_momentum(x: dict, scale: float) -> "torch.Tensor":
    """``recurrent_momentum_delta_rule_ref`` (fp32 token loop) with the layer's transforms written out:
    l2-normalised q, k (and p = k), the key scaled by eta, the read key by alpha (``use_p_times_alpha``):
    ``M_t = mu M + (eta k)(p_t^T S - v)^T``-style momentum, ``S_t = alpha S - beta M_t``, ``o = S^T q``."""
    q, k = F.normalize(x["q"], p=2, dim=-1), F.normalize(x["k"], p=2, dim=-1)
    o, _ = _naive("fla.ops.momentum_delta_rule.naive", "recurrent_momentum_delta_rule_ref")(
        q, k * x["eta"][..., None], x["v"], x["log_alpha"], x["log_mu"], k * x["log_alpha"].exp()[..., None],
        beta=x["beta"], eta=torch.ones_like(x["beta"]), scale=scale)
    return o


# ----------------------------------------------------------------------------- models

def dplr_flops(s: Shape, C: int) -> float:
    """Forward matmul FLOPs per (batch, head) of fla's chunked DPLR / IPLR algorithm (T padded to C):
    per token ``10CK + 8CV + 8KV`` -- the four intra-chunk score matrices ``A_qk, A_qb, A_ak, A_ab``
    (``8CK``), the WY factors ``w = A_ab (a e^{g})`` (``2CK``) and ``u = A_ab (A_ak v)`` (``4CV``),
    ``v' = u + w S`` (``2KV``), the state update with ``k`` and ``b`` (``4KV``) and the output
    ``A_qk v + A_qb v' + (q e^{g}) S`` (``4CV + 2KV``). Gating and exponentials are not counted."""
    Tp = C * math.ceil(s.T / C)
    K, V = s.D, s.Dv
    return float(Tp * (10 * C * K + 8 * C * V + 8 * K * V))


def _dplr_io(n_key_inputs: int):
    """q, k, a, b (and the gate) of K channels, v and o of V channels, per (batch, head)."""
    return lambda s: s.T * (n_key_inputs * s.D + 2 * s.Dv)


def dplr_work(C: int, gate: bool):
    """The chunk kernel's forward bytes above the inputs per (batch, head) (``chunk_dplr_fwd``):
    four fp32 (T, C) score matrices, the gated copies ``q e^{g}, k e^{-g}, a e^{g}, b e^{-g}`` and two
    fp32 gate cumsums (DPLR only), the WY factors w (T, K) and u, v' (T, V), the fp32 chunk states
    (T / C, K, V) and the output."""
    def work(s: Shape, itemsize: int) -> float:
        T, K, V = C * math.ceil(s.T / C), s.D, s.Dv
        gated = (4 * T * K * itemsize + 2 * T * K * 4) if gate else 0
        return (4 * T * C * 4 + gated + T * K * itemsize + 2 * T * V * itemsize
                + (T // C) * K * V * 4 + s.T * V * itemsize)
    return work


def _gdp_fla_work(s: Shape, itemsize: int) -> float:
    """``chunk_gated_delta_product``'s forward bytes above the inputs per (batch, head), at the ``T*n``
    sub-steps (C = 64): two fp32 gate cumsums, the fp32 (C) ``A`` and its solved copy, w, u and v_new,
    the chunk states (``Tn / C`` of (K, V)) and the output."""
    C, n = 64, NUM_HOUSEHOLDER
    Tn = C * math.ceil(s.T * n / C)
    return (2 * Tn * 4 + Tn * C * (4 + itemsize) + Tn * (s.D + 2 * s.Dv) * itemsize
            + (Tn // C) * s.D * s.Dv * 4 + s.T * s.Dv * itemsize)


# ----------------------------------------------------------------------------- the rows

_TOKEN_LOOP_MAX_T = 2048      # fla's token-loop references: ~0.1-0.3 ms per token on CPU
_DPLR_NO_CPU = ("no timed CPU backend: the DPLR transition Diag(e^w) + b a^T writes its rank-one correction "
                "along b and the value along k, which the chunkwise engine's delta rule (both along k) does not "
                "express; the fp32 reference is for correctness only")

MECHANISMS: tuple[Mechanism, ...] = (
    Mechanism(
        name="rwkv7", fla="rwkv7", title="RWKV-7 (Goose, DPLR delta rule)", group="delta-rule",
        description="Generalized delta rule S <- Diag(e^w) S + b (a^T S) + k v^T with RWKV7Attention's "
                    "a = -kk, b = kk * iclr, w = -e^{-1/2} sigmoid(.) and scale 1. fla: chunk_rwkv7 as the "
                    "layer calls it (safe_gate, lower_bound = -e^{-1/2}, chunk_size 64; fp16 / bf16 only: its "
                    "centred exp2 factorisation misses fp32's 1e-5 by ~4x); fla-exact: chunk_rwkv7's default "
                    "exact-gate path (chunk 16), any dtype.",
        inputs=("q", "k", "v", "g", "kk", "iclr"), make=_rwkv7_inputs, prepare=_rwkv7_prepare,
        reference=_ref_rwkv7, reference_name="fla dplr_recurrence with a = -kk, b = kk * iclr (fp32 token loop)",
        reference_max_T=_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_rwkv7", rename={"q": "r", "g": "w"}, dtypes=("float16", "bfloat16")),
                  "fla-exact": FlaFn("chunk_rwkv7", rename={"q": "r", "g": "w"}),
                  "fla-recurrent": FlaFn("fused_recurrent_rwkv7", rename={"q": "r", "g": "w"}, backward=False),
                  "fla-mul-recurrent": FlaFn("fused_mul_recurrent_rwkv7", rename={"q": "r", "g": "w", "iclr": "a"},
                                             backward=False)},
        fla_kwargs={"fla": {"safe_gate": True, "lower_bound": RWKV7_W_MIN, "chunk_size": 64}},
        scale=1.0, flops=lambda s: dplr_flops(s, 64), io=lambda s: s.T * (5 * s.D + 2 * s.Dv),
        work=dplr_work(64, True), no_cpu=_DPLR_NO_CPU, max_head_dim=256,
        notes={"fla": "the layer's training / prefill call (safe_gate=True, lower_bound, chunk_size=64)",
               "fla-exact": "chunk_rwkv7 with fla's defaults (chunk 16, exact gate path)",
               "fla-mul-recurrent": "the layer's inference kernel (T < 64, no grad): takes kk and iclr, forms a, "
                                    "b inside"},
    ),
    Mechanism(
        name="dplr_delta_rule", fla="generalized_delta_rule", title="DPLR delta rule (diagonal plus low rank)",
        group="delta-rule",
        description="S <- Diag(e^g) S + b (a^T S) + k v^T with a per-key log decay g = logsigmoid(x)/16, "
                    "l2-normalised q, k, a = -kk, b = kk * sigmoid(x) (chunk_dplr_delta_rule's defaults: "
                    "chunk 16, exact gate path).",
        inputs=("q", "k", "v", "a", "b", "g"), make=_dplr_inputs,
        reference=_ref_dplr, reference_name="fla dplr_recurrence (fp32 token loop)",
        reference_max_T=_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_dplr_delta_rule", rename={"g": "gk"}),
                  "fla-recurrent": FlaFn("fused_recurrent_dplr_delta_rule", rename={"g": "gk"}, backward=False)},
        flops=lambda s: dplr_flops(s, 16), io=_dplr_io(5), work=dplr_work(16, True), no_cpu=_DPLR_NO_CPU,
        max_head_dim=256,
    ),
    Mechanism(
        name="iplr_delta_rule", fla="generalized_delta_rule", title="IPLR delta rule (identity plus low rank)",
        group="delta-rule",
        description="S <- S + b (a^T S) + k v^T (no decay), l2-normalised q, k, a = -kk, b = kk * sigmoid(x) "
                    "(chunk_iplr_delta_rule: forward only; fused_recurrent_iplr_delta_rule has a backward).",
        inputs=("q", "k", "v", "a", "b"), make=lambda s, gen: _dplr_inputs(s, gen, gate=False),
        reference=_ref_iplr, reference_name="fla iplr_recurrence (fp32 token loop)",
        reference_max_T=_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_iplr_delta_rule", backward=False),
                  "fla-recurrent": FlaFn("fused_recurrent_iplr_delta_rule")},
        flops=lambda s: dplr_flops(s, 64), io=_dplr_io(4), work=dplr_work(64, False),
        no_cpu=_DPLR_NO_CPU.replace("Diag(e^w) + b a^T", "I + b a^T"), max_head_dim=256,
    ),
)

MECHANISMS += (
    Mechanism(
        name="gated_delta_product", fla="gated_delta_product", title="Gated DeltaProduct (n = 2 Householder steps)",
        group="delta-rule",
        description=f"Gated delta rule with {NUM_HOUSEHOLDER} delta updates (keys, values, betas) per token "
                    "(GatedDeltaProduct's defaults: l2-normalised q, k, beta = 2 sigmoid(x) in (0, 2), Mamba2 "
                    "per-head gate); k, v, beta are (B, T, n, H, ...).",
        inputs=("q", "k", "v", "g", "beta"), make=_gdp_inputs, prepare=_gdp_prepare, post=_gdp_post,
        reference=_ref_gdp, reference_name="fla naive_recurrent_gated_delta_product (fp32 token loop)",
        reference_max_T=_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_gated_delta_product", dtypes=("float16", "bfloat16")),  # asserts q is not fp32
                  "fla-recurrent": FlaFn("gated_delta_rule.fused_recurrent_gated_delta_rule", backward=False)},
        fla_kwargs={"fla": {"num_householder": NUM_HOUSEHOLDER}},
        flops=lambda s: cw.analytic_flops(s.T * NUM_HOUSEHOLDER, s.D, s.Dv, delta=True),
        io=lambda s: s.T * (s.D + 1 + NUM_HOUSEHOLDER * (s.D + s.Dv + 1) + s.Dv),
        work=lambda s, itemsize: _gdp_fla_work(s, itemsize),
        engine=_gdp_engine, engine_path=f"delta-rule WY/UT path on the T*{NUM_HOUSEHOLDER} interleaved sub-steps",
        engine_memory=_gdp_engine_memory, max_head_dim=256,
        notes={"fla-recurrent": "fused_recurrent_gated_delta_rule on the interleaved sub-steps, as the layer's "
                                "fused_recurrent mode calls it"},
    ),
)

MECHANISMS += (
    Mechanism(
        name="hgrn", fla="hgrn", title="HGRN (gated elementwise recurrence)", group="gated",
        description="h_t = e^{g_t} * h_{t-1} + x_t per channel over H*D channels, o_t = h_t (no q, k, v): "
                    "HGRNAttention's g = logsigmoid(f), x = silu(i) (1 - e^g).",
        inputs=("x", "g"), make=_hgrn_inputs, prepare=_hgrn_prepare, post=_hgrn_post,
        reference=_ref_hgrn, reference_name="fla naive_recurrent_hgrn (fp32 token loop)",
        reference_max_T=8192,                       # a loop of T elementwise steps: ~0.1 s at 8k
        backends={"fla": FlaFn("chunk_hgrn"), "fla-recurrent": FlaFn("fused_recurrent_hgrn")},
        takes_scale=False, no_varlen=("fla",),      # chunk_hgrn takes no cu_seqlens (the layer refuses it too)
        flops=lambda s: 2.0 * s.T * s.D, io=lambda s: 3 * s.T * s.D,
        work=lambda s, itemsize: s.T * s.D * (8 + itemsize),   # fp32 gate cumsum and output, then the cast
        no_cpu="no timed CPU backend: an elementwise recurrence of a vector state (no q, k); the chunkwise "
               "engine runs it only as H*D scalar-decay heads with K = V = 1, whose (C, C) decay masks cost C "
               "times the recurrence's own work and memory, which would time the configuration, not HGRN; the "
               "fp32 reference is for correctness only",
    ),
)

MECHANISMS += (
    Mechanism(
        name="gdn2", fla="gdn2", title="Gated DeltaNet-2 (channel-wise erase / write gates)", group="delta-rule",
        description="S <- (I - k (b*k)^T) Diag(e^g) S + k (w*v)^T (GatedDeltaNet2's defaults: l2-normalised "
                    "q, k, per-key decay -exp(A_log) softplus(x + dt_bias), erase gate b = sigmoid(x) per key, "
                    "write gate w = sigmoid(x) per value channel).",
        inputs=("q", "k", "v", "g", "b", "w"), make=_gdn2_inputs,
        reference=_ref_gdn2, reference_name="fla naive_recurrent_gdn2 (fp32 token loop)",
        reference_max_T=_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_gdn2"), "fla-recurrent": FlaFn("fused_recurrent_gdn2", backward=False)},
        flops=lambda s: cw.analytic_flops(s.T, s.D, s.Dv, delta=True),
        io=lambda s: s.T * (4 * s.D + 3 * s.Dv),
        work=lambda s, itemsize: kda.memory_bytes(Shape(1, s.T, 1, s.D, value_dim=s.value_dim), itemsize, "fla",
                                                  True, "fwd") + s.T * s.Dv * itemsize,
        engine=_gdn2_engine, engine_path="delta-rule WY/UT path, per-key gate, beta = 1, read key b*k",
        engine_memory=_gdn2_engine_memory, max_head_dim=256,
        notes={"fla": "the KDA-style chunk kernel (chunk_gdn2); work model: chunk_kda's plus the gated values"},
    ),
)

MECHANISMS += (
    Mechanism(
        name="precond_gated_delta_rule", fla="precond_gated_delta_rule",
        title="Preconditioned Gated DeltaNet (ATK diagonal preconditioner)", group="delta-rule",
        description="Gated delta rule that reads with k and writes with k * M, M = 1.5^{-squash(log A)} from a "
                    "gated per-channel accumulator A <- e^{g_atk} A + beta_atk k^2 (PrecondGatedDeltaNet's "
                    "defaults: in-kernel l2norm of q, k, Mamba2 gates, sigmoid betas, log_atk_scale -0.2).",
        inputs=("q", "k", "v", "g", "beta", "g_atk", "beta_atk"), make=_precond_inputs,
        reference=_ref_precond, reference_name="fla naive_recurrent_precond_gated_delta_rule (fp32 token loop)",
        reference_max_T=_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_precond_gated_delta_rule"),
                  "fla-recurrent": FlaFn("fused_recurrent_precond_gated_delta_rule", backward=False)},
        fla_kwargs={b: {"use_qk_l2norm_in_kernel": True, "x": PRECOND_X, "eps": PRECOND_EPS}
                    for b in ("fla", "fla-recurrent")},
        flops=lambda s: cw.analytic_flops(s.T, 1, s.D, delta=False) + cw.analytic_flops(s.T, s.D, s.Dv, delta=True),
        io=lambda s: s.T * (2 * s.D + 2 * s.Dv + 4),
        work=lambda s, itemsize: (kda.memory_bytes(Shape(1, s.T, 1, s.D, value_dim=s.value_dim), itemsize, "fla",
                                                   True, "fwd") + 2 * s.T * s.D * 4),
        engine=_precond_engine, engine_path="scalar-decay path for the ATK accumulator, then the delta-rule "
                                            "WY/UT path with write key k*M and read key k",
        engine_memory=_precond_engine_memory, max_head_dim=256,
        notes={"fla": "work model: chunk_kda's plus the fp32 preconditioner state and write key"},
    ),
)

MECHANISMS += (
    Mechanism(
        name="precond_kda", fla="precond_kda", title="Preconditioned KDA (ATK diagonal preconditioner)",
        group="delta-rule",
        description="KDA (per-key decay) that reads with k and writes with k * M, M = 1.5^{-squash(log A)} from "
                    "a gated per-channel accumulator A <- e^{g_atk} A + beta_atk k^2 (PrecondKDA's defaults: "
                    "in-kernel l2norm of q, k, KDA gate, sigmoid betas, log_atk_scale -0.2).",
        inputs=("q", "k", "v", "g", "beta", "g_atk", "beta_atk"), make=_precond_kda_inputs,
        reference=_ref_precond_kda, reference_name="fla naive_recurrent_precond_kda on l2-normalised q, k "
                                                   "(fp32 token loop)",
        reference_max_T=_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_precond_kda"),
                  "fla-recurrent": FlaFn("fused_recurrent_precond_kda", backward=False)},
        fla_kwargs={"fla": {"x": PRECOND_X, "eps": PRECOND_EPS},
                    "fla-recurrent": {"use_qk_l2norm_in_kernel": True, "x": PRECOND_X, "eps": PRECOND_EPS}},
        flops=lambda s: cw.analytic_flops(s.T, 1, s.D, delta=False) + cw.analytic_flops(s.T, s.D, s.Dv, delta=True),
        io=lambda s: s.T * (3 * s.D + 2 * s.Dv + 3),
        work=lambda s, itemsize: (kda.memory_bytes(Shape(1, s.T, 1, s.D, value_dim=s.value_dim), itemsize, "fla",
                                                   True, "fwd") + 2 * s.T * s.D * 4),
        engine=_precond_engine, engine_path="scalar-decay path for the ATK accumulator, then the delta-rule "
                                            "WY/UT path with a per-key gate, write key k*M and read key k",
        engine_memory=_precond_engine_memory, max_head_dim=256,
        notes={"fla": "chunk_precond_kda always l2-normalises q, k in the kernel; work model: chunk_kda's plus "
                      "the fp32 preconditioner state and write key"},
    ),
)

MECHANISMS += (
    Mechanism(
        name="momentum_delta_rule", fla="momentum_delta_rule", title="Momentum DeltaNet (delta rule with momentum)",
        group="delta-rule",
        description="Delta rule whose update goes through a decayed momentum state M <- mu M + eta k (p^T S - v)^T, "
                    "S <- alpha S - beta M (MomentumDeltaNet's defaults: in-kernel l2norm, p = k scaled by alpha). "
                    "fla 0.6.0 implements both entry points as PyTorch code (chunk_momentum_delta_rule_ref, "
                    "a token loop for fused_recurrent) around Triton l2norm kernels: that is what is timed.",
        inputs=("q", "k", "v", "log_alpha", "log_mu", "beta", "eta"), make=_momentum_inputs,
        prepare=_momentum_prepare,
        reference=_ref_momentum, reference_name="fla recurrent_momentum_delta_rule_ref with the layer's transforms "
                                                "(fp32 token loop)",
        reference_max_T=_TOKEN_LOOP_MAX_T,
        backends={"fla": FlaFn("chunk_momentum_delta_rule", dtypes=("float16", "bfloat16")),   # asserts not fp32
                  "fla-recurrent": FlaFn("fused_recurrent_momentum_delta_rule")},
        fla_kwargs={b: {"use_qk_l2norm_in_kernel": True, "use_p_times_alpha": True} for b in ("fla", "fla-recurrent")},
        no_varlen=("fla", "fla-recurrent"),         # both raise NotImplementedError on cu_seqlens
        flops=lambda s: cw.analytic_flops(s.T, s.D, s.Dv, delta=True) + 4.0 * s.T * s.D * s.Dv,
        io=lambda s: s.T * (2 * s.D + 2 * s.Dv + 4),
        work=lambda s, itemsize: 12 * 64 * math.ceil(s.T / 64) * 64 * 4 + 2 * (math.ceil(s.T / 64)) * s.D * s.Dv * 4
        + 4 * s.T * s.D * 4,
        no_cpu="no timed CPU backend: two coupled states (momentum M and memory S) with different decays are not a "
               "configuration of the chunkwise engine; fla's own PyTorch paths need its Triton l2norm (CUDA, or "
               "the interpreter); the fp32 reference is for correctness only",
        max_head_dim=256,
        notes={"fla": "chunk_momentum_delta_rule_ref in PyTorch (C = 64) plus Triton l2norm; work model: an estimate "
                      "(about twelve fp32 (C, C) tensors per chunk, the chunk states, normalised q, k, p)",
               "fla-recurrent": "recurrent_momentum_delta_rule_ref, a PyTorch token loop, plus Triton l2norm"},
    ),
)

#: Kernel names, in display order (``profiler.kernels.MECHANISMS`` appends them after ``catalog.NAMES``).
NAMES: tuple[str, ...] = tuple(m.name for m in MECHANISMS)
#: fla.ops package -> the serprof kernel named in ``serprof list --fla`` (the first row of that family).
COVERED: dict[str, str] = {}
for _m in MECHANISMS:
    COVERED.setdefault(_m.fla, _m.name)
#: fla.ops families studied here and left out, and why (``fla_coverage`` shows the reason).
LEFT_OUT: dict[str, str] = {
    "mesa_net": "chunk_mesa_net could not be verified under Triton's interpreter (triton 3.9, fla 0.6.0): at "
                "T <= 64 it differs from naive_mesa_net_exact and from fla's own chunked-CG naive_mesa_net_CG by "
                "~6e-4 relative (more CG steps do not reduce it), and with more than one chunk (T > 64) it "
                "returns values ~1e10; a kernel without a verified backend is not added",
    "gated_oja_rule": "no layer in fla 0.6.0 (so no value ranges to draw from) and no naive reference; its "
                      "transposed (Oja) update reads the state with v and the output contracts over the key axis, "
                      "which the chunkwise engine does not express",
}

#: fla.ops package -> what ``serprof list --fla`` adds to "measured as kernel ...": the family's other
#: kernels and why there is no timed CPU backend.
COVERAGE_NOTES: dict[str, str] = {}
for _m in MECHANISMS:
    _others = [m.name for m in MECHANISMS if m.fla == _m.fla and m.name != COVERED[_m.fla]]
    if _m.name == COVERED[_m.fla]:
        COVERAGE_NOTES[_m.fla] = ((f" (and {', '.join(repr(n) for n in _others)})" if _others else "")
                                  + ("; fla backends only, " + _m.no_cpu if _m.no_cpu and not _m.engine else ""))
del _m


# ----------------------------------------------------------------------------- KernelSpec builder

def _scale(mech: Mechanism, inputs) -> float | None:
    """``inputs["scale"]``, else the row's fixed scale, else ``K ** -0.5``; None for a row without a query."""
    if not mech.takes_scale:
        return None
    if inputs.get("scale") is None and mech.scale is not None:
        return float(mech.scale)
    return ck.scale_of(inputs, inputs["q"].shape[-1])


def fla_target(mech: Mechanism, f: FlaFn) -> tuple[str, str]:
    """``(fla.ops family, function)`` a backend calls: the row's family, or the one ``FlaFn.fn`` names."""
    family, _, fn = f.fn.rpartition(".")
    return family or mech.fla, fn


def kernel(mech: Mechanism) -> KernelSpec:
    """The ``KernelSpec`` of one row (module doc)."""
    names = mech.inputs
    prepare = mech.prepare or (lambda backend, x: {n: x[n] for n in names})

    def make_inputs(shape: Shape, dtype="float32", device="cpu", seed: int = 0) -> dict:
        x = mech.make(shape, ck.generator(seed))
        dt = ck.torch_dtype(dtype)
        return {n: x[n].to(device=device, dtype=dt) for n in names}

    def fla_run(bname: str, f: FlaFn):
        family, fn = fla_target(mech, f)

        def run(inputs, causal: bool = True):
            kwargs = dict(mech.fla_kwargs.get(bname, {}))
            require_causal(causal, f"{mech.name}/{fn}")
            op = getattr(importlib.import_module(f"fla.ops.{family}"), fn)
            x = prepare(bname, inputs)
            args = {f.rename.get(n, n): t for n, t in x.items()}      # by keyword: orders differ
            if "cu_seqlens" in inputs:                                  # a packed varlen batch
                args["cu_seqlens"] = x.get("cu_seqlens", inputs["cu_seqlens"])
            if mech.takes_scale:
                kwargs["scale"] = _scale(mech, inputs)
            out = op(**args, **kwargs)
            out = out[0] if isinstance(out, tuple) else out
            return out if mech.post is None else mech.post(bname, out, inputs)
        run.__name__ = f"run_{fn}"
        return run

    def reference(inputs, causal: bool = True):
        require_causal(causal, f"{mech.name} reference")
        x = {n: inputs[n].float() for n in names}
        return mech.reference(x, _scale(mech, inputs))

    backends: dict[str, Backend] = {}
    if mech.engine is not None:
        def run_torch(inputs, causal: bool = True):
            require_causal(causal, f"{mech.name}/torch")
            return mech.engine(inputs, _scale(mech, inputs))
        backends["torch"] = Backend("torch", run_torch, varlen="per_sequence",
                                    description=f"shared chunkwise engine (chunkwise.py, {mech.engine_path}), "
                                                "pure PyTorch, any device")
    cpu = "" if mech.engine is not None else f"; {mech.no_cpu}"
    for bname, f in mech.backends.items():
        backends[bname] = Backend(bname, fla_run(bname, f), devices=("cuda",), requires=("fla", "triton"),
                                  interpretable=True, backward=f.backward, dtypes=f.dtypes,
                                  varlen="" if bname in mech.no_varlen else "cu_seqlens",
                                  description=f"fla.ops.{mech.fla}.{f.fn} (Triton"
                                              + ("; inference only" if not f.backward else "") + ")" + cpu)

    def flops(shape: Shape, causal: bool = True) -> float:
        return shape.B * shape.H * mech.flops(shape)

    def bytes_moved(shape: Shape, itemsize: int, causal: bool = True) -> float:
        return float(shape.B * shape.H * mech.io(shape) * itemsize)

    def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool = True, mode: str = "fwd") -> int:
        """fla backends: the chunk kernel's forward working set (``work``; ``fused_recurrent_*``: the output
        only); fwd+bwd adds the input gradients and the same working set again (recomputed in backward).
        torch: the engine's model of the configuration."""
        BH = shape.B * shape.H
        out = BH * shape.T * shape.Dv * itemsize
        grads = BH * mech.io(shape) * itemsize - out
        if backend == "torch":
            return int(mech.engine_memory(shape, itemsize, mode))
        if backend.startswith("fla-") and "recurrent" in backend:
            base = out
        else:
            base = BH * mech.work(shape, itemsize)
        return int(base + ((grads + base) if mode in ("fwdbwd", "bwd") else 0))

    flops.__doc__ = mech.flops.__doc__ or "Forward matmul FLOPs (row's model) times B*H."
    bytes_moved.__doc__ = "Read every input once and write o once: " + " + ".join(names) + " + o."

    notes = {"fla": f"fla.ops.{mech.fla}", **mech.notes}
    if mech.engine is None:
        notes["cpu"] = mech.no_cpu
    return KernelSpec(
        name=mech.name, title=mech.title, family="linear", group=mech.group, make_inputs=make_inputs,
        backends=backends, reference=reference, reference_name=mech.reference_name,
        flops=flops, bytes_moved=bytes_moved, memory_bytes=memory_bytes,
        grad_inputs=names, max_head_dim=mech.max_head_dim, reference_max_T=mech.reference_max_T,
        default_backend="torch" if mech.engine is not None else "fla",
        description=mech.description + ("" if mech.engine is not None else f" ({mech.no_cpu})"),
        notes=notes,
    )


KERNELS: tuple[KernelSpec, ...] = tuple(kernel(m) for m in MECHANISMS)

__all__ = ["Mechanism", "MECHANISMS", "NUM_HOUSEHOLDER", "fla_target", "LEFT_OUT", "NAMES", "COVERED",
           "COVERAGE_NOTES", "KERNELS", "kernel",
           "dplr_flops", "dplr_work", "RWKV7_W_MIN"]
