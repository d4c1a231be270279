"""CPU port of fla's ``LightNetAttention``, default settings (fla 0.6.0).

Forward, as in fla: ``q = silu(q_proj x)``, ``k = k_proj x`` (raw logits; the additive gate
``z = logcumsumexp_t k`` is inside the ``lightnet`` kernel), ``v = v_proj x``; key head dim
``expand_ratio``, value head dim ``hidden/H``; scale ``K**-0.5``. Output: RMSNorm over the whole
hidden vector (eps 1e-6: fla's ``rms_norm_swish_gate_linear`` is called without ``eps``) times
``swish(g_proj x)`` with the low-rank ``g_proj`` (hidden -> gate_low_rank_dim -> hidden), then
``o_proj``. Bidirectional: forward plus time-flipped scan (each with its own causal normaliser).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from profiler.layers.common import (
    ANY,
    NormWeight,
    attend,
    reject_unsupported,
    rms_norm_gated,
)

#: fla's LightNet calls rms_norm_swish_gate_linear with its default eps, not norm_eps.
FUSED_GATE_EPS = 1e-6


class LightNetAttention(nn.Module):
    def __init__(self, hidden_size: int = 1024, num_heads: int | None = None, expand_ratio: int | None = 128,
                 gate_low_rank_dim: int = 128, bidirectional: bool = False, **unsupported):
        super().__init__()
        reject_unsupported(unsupported, use_short_conv=False, elementwise_affine=True, mode=ANY, layer_idx=ANY,
                           norm_eps=ANY, conv_size=ANY, conv_bias=ANY)
        if expand_ratio is None and num_heads is not None:
            expand_ratio = hidden_size // num_heads
        elif expand_ratio is not None and num_heads is None:
            num_heads = hidden_size // expand_ratio
        elif expand_ratio is None and num_heads is None:
            raise ValueError("one of expand_ratio or num_heads must be given")
        self.hidden_size, self.num_heads, self.expand_ratio = hidden_size, num_heads, expand_ratio
        self.key_dim, self.value_dim = num_heads * expand_ratio, hidden_size
        self.head_f_dim, self.head_i_dim = expand_ratio, hidden_size // num_heads
        self.bidirectional = bidirectional
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.g_proj = nn.Sequential(nn.Linear(hidden_size, gate_low_rank_dim, bias=False),
                                    nn.Linear(gate_low_rank_dim, hidden_size, bias=False))
        self.g_norm = NormWeight(hidden_size)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    stream_kernel = "lightnet"

    def stream_inputs(self, x: torch.Tensor, carried: dict | None = None, t0: int = 0) -> dict:
        B, T, _ = x.shape
        H = self.num_heads
        q = F.silu(self.q_proj(x)).view(B, T, H, self.head_f_dim)
        k = self.k_proj(x).view(B, T, H, self.head_f_dim)
        v = self.v_proj(x).view(B, T, H, self.head_i_dim)
        return {"q": q, "k": k, "v": v, "scale": self.head_f_dim ** -0.5}

    def stream_output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        o = rms_norm_gated(o.reshape(B, T, self.value_dim), self.g_proj(x), self.g_norm.weight, FUSED_GATE_EPS)
        return self.o_proj(o)

    def stream_carried_bytes(self, B: int, T: int, itemsize: int) -> int:
        """The fp32 state (B, H, K, V) and the running log-normaliser z (B, H, K), constant in T."""
        return 4 * B * self.num_heads * self.head_f_dim * (self.head_i_dim + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = attend("lightnet", self.stream_inputs(x), bidirectional=self.bidirectional)
        return self.stream_output(o, x)
