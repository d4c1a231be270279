"""CPU port of fla's ``MultiScaleRetention`` (RetNet), default settings (fla 0.6.0).

Forward, as in fla: ``q = q_proj x``, ``k = k_proj x``, ``v = v_proj x`` split into heads
(key head dim ``hidden*expand_k/H``, value head dim ``hidden*expand_v/H``); RoPE on q and k; retention
with the fixed per-head decay ``log(1 - 2**(-5-h))`` and scale ``K**-0.5`` (the ``retnet`` kernel's
torch backend); per-head RMSNorm (eps ``norm_eps``) times ``swish(g_proj x)`` (fla
``FusedRMSNormGated``); ``o_proj``. Parameter names and shapes equal fla's, so an fla state_dict
loads with ``strict=True``. Only the defaults the study uses are implemented (no feature map, no
short convolution, fused swish output gate, no GQA).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from profiler.layers.common import (
    ANY,
    NormWeight,
    attend,
    reject_unsupported,
    rms_norm_gated,
    rotary,
)


class MultiScaleRetention(nn.Module):
    def __init__(self, hidden_size: int = 1024, expand_k: float = 1.0, expand_v: float = 2.0, num_heads: int = 8,
                 norm_eps: float = 1e-5, bidirectional: bool = False, **unsupported):
        super().__init__()
        reject_unsupported(unsupported, feature_map=None, use_short_conv=False, use_output_gate=True, gate_fn="swish",
                fuse_norm=True, num_kv_heads=None, elementwise_affine=True, mode=ANY, layer_idx=ANY)
        self.hidden_size, self.num_heads, self.norm_eps = hidden_size, num_heads, norm_eps
        self.key_dim, self.value_dim = round(hidden_size * expand_k), round(hidden_size * expand_v)
        self.head_k_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        self.bidirectional = bidirectional
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)
        self.g_norm_swish_gate = NormWeight(self.head_v_dim)

    #: streaming (``profiler.layers.streaming``): the mechanism whose recurrent form carries the state
    stream_kernel = "retnet"

    def stream_inputs(self, x: torch.Tensor, carried: dict | None = None, t0: int = 0) -> dict:
        """The retention inputs of tokens ``x`` at positions ``t0..`` (RoPE at those positions)."""
        B, T, _ = x.shape
        H = self.num_heads
        q = rotary(self.q_proj(x).view(B, T, H, self.head_k_dim), offset=t0)
        k = rotary(self.k_proj(x).view(B, T, H, self.head_k_dim), offset=t0)
        v = self.v_proj(x).view(B, T, H, self.head_v_dim)
        return {"q": q, "k": k, "v": v, "scale": self.head_k_dim ** -0.5}

    def stream_output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        g = self.g_proj(x).view(B, T, self.num_heads, self.head_v_dim)
        o = rms_norm_gated(o, g, self.g_norm_swish_gate.weight, self.norm_eps, "swish")
        return self.o_proj(o.reshape(B, T, self.value_dim))

    def stream_carried_bytes(self, B: int, T: int, itemsize: int) -> int:
        """The fp32 state (B, H, K, V), constant in T."""
        return 4 * B * self.num_heads * self.head_k_dim * self.head_v_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = attend("retnet", self.stream_inputs(x), bidirectional=self.bidirectional, diag=_retnet_diag)
        return self.stream_output(o, x)


def _retnet_diag(inputs: dict) -> torch.Tensor:
    """Each token's own term ``scale (q_i . k_i) v_i`` (decay gamma^0 = 1), counted by both scans."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    scale = inputs.get("scale", q.shape[-1] ** -0.5)
    return ((q.float() * k.float()).sum(-1, keepdim=True) * scale * v.float()).to(v.dtype)


__all__ = ["MultiScaleRetention"]
