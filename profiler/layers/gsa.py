"""CPU port of fla's ``GatedSlotAttention`` (GSA), default settings (fla 0.6.0).

Forward, as in fla: ``q, k = swish(q_proj x), swish(k_proj x)`` (``SwishFeatureMap``),
``v = silu(v_proj x)``; slot gate ``f = logsigmoid(f_proj x) / gate_logit_normalizer`` and slot
inputs ``s = 1 - exp(f)`` ([B, T, H, M], M = num_slots = key head dim by default); the ``gsa``
kernel with ``scale = 1`` (the layer's default); then ``o_proj(rms_norm(silu(o)))`` with one RMSNorm
over the whole hidden vector (eps 1e-5, fla ``rms_norm_linear``'s default). Bidirectional: the
kernel's non-causal form (FLA.md: "fwd + reversed scan for both passes"): each pass is the forward
plus the reversed scan with the diagonal once, and the slot softmax acts on the combined pass-1
scores (``profiler.kernels.gsa``), not a sum of two whole causal GSA calls.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from profiler.layers.common import ANY, NormWeight, attend, reject_unsupported, rms_norm

#: fla's GSA calls rms_norm_linear without eps (its default is 1e-5).
FUSED_NORM_EPS = 1e-5


class GatedSlotAttention(nn.Module):
    def __init__(self, hidden_size: int = 1024, expand_k: float = 1.0, expand_v: float = 1.0, num_heads: int = 4,
                 num_slots: int | None = None, gate_logit_normalizer: int = 8, scale: float | None = 1.0,
                 bidirectional: bool = False, **unsupported):
        super().__init__()
        reject_unsupported(unsupported, num_kv_heads=None, use_short_conv=False, feature_map="swish",
                           use_output_gate=False, use_norm=True, elementwise_affine=True, mode=ANY, layer_idx=ANY,
                           norm_eps=ANY, conv_size=ANY, conv_bias=ANY)
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.key_dim, self.value_dim = round(hidden_size * expand_k), round(hidden_size * expand_v)
        self.head_k_dim, self.head_v_dim = self.key_dim // num_heads, self.value_dim // num_heads
        self.num_slots = num_slots if num_slots is not None else self.head_k_dim
        self.gate_logit_normalizer, self.scale = gate_logit_normalizer, scale
        self.bidirectional = bidirectional
        self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)
        self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)
        self.f_proj = nn.Linear(hidden_size, num_heads * self.num_slots, bias=False)
        self.g_norm = NormWeight(hidden_size)
        self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)

    stream_kernel = "gsa"

    def stream_inputs(self, x: torch.Tensor, carried: dict | None = None, t0: int = 0) -> dict:
        B, T, _ = x.shape
        H = self.num_heads
        q = F.silu(self.q_proj(x)).view(B, T, H, self.head_k_dim)
        k = F.silu(self.k_proj(x)).view(B, T, H, self.head_k_dim)
        v = F.silu(self.v_proj(x)).view(B, T, H, self.head_v_dim)
        f = F.logsigmoid(self.f_proj(x)).view(B, T, H, self.num_slots) / self.gate_logit_normalizer
        s = 1 - f.exp()
        inputs = {"q": q, "k": k, "v": v, "s": s, "g": f}
        if self.scale is not None:
            inputs["scale"] = float(self.scale)
        return inputs

    def stream_output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        o = rms_norm(F.silu(o.reshape(B, T, self.value_dim)), self.g_norm.weight, FUSED_NORM_EPS)
        return self.o_proj(o)

    def stream_carried_bytes(self, B: int, T: int, itemsize: int) -> int:
        """The two fp32 slot states (B, H, K, M) and (B, H, M, V), constant in T."""
        return 4 * B * self.num_heads * self.num_slots * (self.head_k_dim + self.head_v_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = attend("gsa", self.stream_inputs(x), causal=not self.bidirectional)
        return self.stream_output(o, x)
