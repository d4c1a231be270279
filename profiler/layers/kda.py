"""CPU port of fla's ``KimiDeltaAttention`` (KDA), default settings (fla 0.6.0).

Forward, as in fla: ``q, k, v = silu(conv(q_proj x)), ...`` (depthwise causal short convolutions of
width ``conv_size``, fla ``ShortConvolution`` with SiLU); heads of ``head_dim`` keys and
``head_dim*expand_v`` values; in-kernel steps of ``chunk_kda`` done here explicitly: q and k
l2-normalised (eps 1e-6), gate ``g = -exp(A_log[h]) * softplus(f_proj x + dt_bias)`` (low-rank
``f_proj``), ``beta = sigmoid(b_proj x)``; the delta-rule recurrence with scale ``K**-0.5`` (the
``kda`` kernel); per-head RMSNorm (eps ``norm_eps``) times ``sigmoid(g_proj x)`` (low-rank
``g_proj`` with bias); ``o_proj``. Bidirectional: two independent scans (forward and time-flipped,
the flipped one with its own causal convolutions over the flipped sequence), summed.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from profiler.layers.common import (
    ANY,
    NormWeight,
    ShortConv,
    attend,
    l2norm,
    reject_unsupported,
    rms_norm_gated,
    short_conv_stream,
)


class KimiDeltaAttention(nn.Module):
    def __init__(self, hidden_size: int = 2048, expand_v: float = 1, head_dim: int = 128, num_heads: int = 16,
                 conv_size: int = 4, conv_bias: bool = False, norm_eps: float = 1e-5, bidirectional: bool = False,
                 **unsupported):
        super().__init__()
        reject_unsupported(unsupported, num_v_heads=None, use_short_conv=True, allow_neg_eigval=False,
                           safe_gate=False, lower_bound=None, mode=ANY, layer_idx=ANY)
        self.hidden_size, self.num_heads, self.norm_eps = hidden_size, num_heads, norm_eps
        self.head_k_dim, self.head_v_dim = head_dim, int(head_dim * expand_v)
        self.key_dim, self.value_dim = num_heads * self.head_k_dim, num_heads * self.head_v_dim
        self.bidirectional = bidirectional
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.q_conv1d = ShortConv(self.key_dim, conv_size, conv_bias)
        self.k_conv1d = ShortConv(self.key_dim, conv_size, conv_bias)
        self.v_conv1d = ShortConv(self.value_dim, conv_size, conv_bias)
        self.f_proj = nn.Sequential(nn.Linear(hidden_size, self.head_v_dim, bias=False),
                                    nn.Linear(self.head_v_dim, self.key_dim, bias=False))
        self.b_proj = nn.Linear(hidden_size, num_heads, bias=False)
        # fla's initialisation, so a randomly initialised port runs in the real gate ranges.
        self.A_log = nn.Parameter(torch.log(torch.empty(num_heads).uniform_(1, 16)))
        dt = torch.exp(torch.rand(self.key_dim) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.g_proj = nn.Sequential(nn.Linear(hidden_size, self.head_v_dim, bias=False),
                                    nn.Linear(self.head_v_dim, self.value_dim, bias=True))
        self.o_norm = NormWeight(self.head_v_dim)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    stream_kernel = "kda"

    def stream_inputs(self, x: torch.Tensor, carried: dict | None = None, t0: int = 0) -> dict:
        """The delta-rule inputs of tokens ``x``; with ``carried`` the short convolutions continue from the
        last ``conv_size - 1`` projections before them (``conv_q`` / ``conv_k`` / ``conv_v``, in place)."""
        B, T, _ = x.shape
        H, K = self.num_heads, self.head_k_dim
        q = l2norm(short_conv_stream(self.q_conv1d, self.q_proj(x), carried, "conv_q").view(B, T, H, K))
        k = l2norm(short_conv_stream(self.k_conv1d, self.k_proj(x), carried, "conv_k").view(B, T, H, K))
        v = short_conv_stream(self.v_conv1d, self.v_proj(x), carried, "conv_v").view(B, T, H, self.head_v_dim)
        g = self.f_proj(x).view(B, T, H, K).float() + self.dt_bias.view(H, K)
        g = -self.A_log.exp().view(H, 1) * F.softplus(g)
        beta = torch.sigmoid(self.b_proj(x).float())
        return {"q": q, "k": k, "v": v, "g": g, "beta": beta, "scale": K ** -0.5}

    def stream_output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        gate = self.g_proj(x).view(B, T, self.num_heads, self.head_v_dim)
        o = rms_norm_gated(o.to(x.dtype), gate, self.o_norm.weight, self.norm_eps, "sigmoid")
        return self.o_proj(o.reshape(B, T, self.value_dim))

    def stream_carried_bytes(self, B: int, T: int, itemsize: int) -> int:
        """The fp32 state (B, H, K, V) and the three convolutions' last ``conv_size - 1`` inputs."""
        W = self.q_conv1d.kernel_size[0]
        return (4 * B * self.num_heads * self.head_k_dim * self.head_v_dim
                + (W - 1) * B * (2 * self.key_dim + self.value_dim) * itemsize)

    def _scan(self, x: torch.Tensor) -> torch.Tensor:
        return attend("kda", self.stream_inputs(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self._scan(x)
        if self.bidirectional:
            o = o + self._scan(x.flip(1)).flip(1)
        return self.stream_output(o, x)
