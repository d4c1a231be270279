"""CPU port of fla's ``ForgettingAttention`` (FoX), default settings (fla 0.6.0).

Forward, as in fla: ``q = q_proj x`` (num_heads heads of ``hidden/num_heads``), ``k, v`` with
``num_kv_heads`` heads (GQA: query head h uses kv head ``h // (num_heads/num_kv_heads)``), log forget
gate ``g = logsigmoid(f_proj x)`` in fp32 (one scalar per query head and token, ``f_proj`` has a
bias); softmax attention with bias ``G_i - G_j`` (``G = cumsum g``) and scale ``D**-0.5`` (the
``fox`` kernel); ``o_proj``. No RoPE, no output gate (defaults). The study's
``ForgettingAttention(hidden_size=1024, num_kv_heads=4)`` keeps ``num_heads=32``: 32 query heads of
32 dims sharing 4 kv heads. Bidirectional: the kernel's non-causal form, bias ``-|G_i - G_j|``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from profiler.layers.common import ANY, attend, reject_unsupported


class ForgettingAttention(nn.Module):
    def __init__(self, hidden_size: int = 2048, num_heads: int = 32, num_kv_heads: int | None = None,
                 bidirectional: bool = False, **unsupported):
        super().__init__()
        reject_unsupported(unsupported, qkv_bias=False, qk_norm=False, window_size=None, use_output_gate=False,
                           layer_idx=ANY)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.num_kv_heads = num_kv_heads if num_kv_heads is not None else num_heads
        self.num_kv_groups = num_heads // self.num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.kv_dim = self.num_kv_heads * self.head_dim
        self.bidirectional = bidirectional
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.kv_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.kv_dim, bias=False)
        self.f_proj = nn.Linear(hidden_size, num_heads, bias=True)
        self.o_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    #: streaming: a KV cache of the kv heads (GQA read in place) and the cumulative forget gate
    stream_kernel = "fox"

    def stream_inputs(self, x: torch.Tensor, carried: dict | None = None, t0: int = 0) -> dict:
        """q (num_heads), k and v (num_kv_heads, not repeated), the fp32 log forget gate, the scale."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim)
        g = F.logsigmoid(self.f_proj(x).float())
        return {"q": q, "k": k, "v": v, "g": g, "scale": self.head_dim ** -0.5}

    def stream_output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return self.o_proj(o.reshape(B, T, self.hidden_size).to(x.dtype))

    def stream_carried_bytes(self, B: int, T: int, itemsize: int) -> int:
        """K and V caches of the kv heads (2 B Hkv T D itemsize) + the fp64 cumulative gate (B H T 8)."""
        return 2 * B * self.num_kv_heads * T * self.head_dim * itemsize + 8 * B * self.num_heads * T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = self.stream_inputs(x)
        if self.num_kv_groups > 1:
            inputs["k"] = inputs["k"].repeat_interleave(self.num_kv_groups, dim=2)
            inputs["v"] = inputs["v"].repeat_interleave(self.num_kv_groups, dim=2)
        o = attend("fox", inputs, causal=not self.bidirectional)
        return self.stream_output(o, x)
