"""The study's softmax baseline and a standard multi-head attention (pure PyTorch, any device).

``StudySoftmaxAttention`` (the study's hand-written baseline, PAPER.md): 4 heads, each keeping the
full model width (q, k, v projections hidden -> heads*hidden, i.e. 1024 -> 4096), an explicit
T x T score matrix per head with scale ``hidden**-0.5`` and softmax (the ``softmax`` kernel's
``naive`` backend), output projection heads*hidden -> hidden. Linear layers carry biases (the
PyTorch default in hand-written code). Non-causal by default, as an utterance encoder.

``MultiHeadAttention``: the usual shape, 4 heads of hidden/4 dims, projections hidden -> hidden,
fused scaled-dot-product attention (the ``softmax`` kernel's ``sdpa`` backend).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from profiler.layers.common import kernel_backend


def _softmax(backend: str, q, k, v, scale: float, causal: bool) -> torch.Tensor:
    return kernel_backend("softmax", backend)({"q": q, "k": k, "v": v, "scale": scale}, causal)


class StudySoftmaxAttention(nn.Module):
    def __init__(self, hidden_size: int = 1024, num_heads: int = 4, head_dim: int | None = None,
                 bias: bool = True, causal: bool = False, backend: str = "naive"):
        super().__init__()
        self.hidden_size, self.num_heads = hidden_size, num_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size
        self.causal, self.backend = causal, backend
        inner = num_heads * self.head_dim
        self.q_proj = nn.Linear(hidden_size, inner, bias=bias)
        self.k_proj = nn.Linear(hidden_size, inner, bias=bias)
        self.v_proj = nn.Linear(hidden_size, inner, bias=bias)
        self.o_proj = nn.Linear(inner, hidden_size, bias=bias)

    #: streaming (causal only): a KV cache read by SDPA (``profiler.kernels.recurrent.cache_attend``)
    stream_kernel = "softmax"

    def stream_inputs(self, x: torch.Tensor, carried: dict | None = None, t0: int = 0) -> dict:
        B, T, _ = x.shape
        shape = (B, T, self.num_heads, self.head_dim)
        q, k, v = (p(x).view(shape) for p in (self.q_proj, self.k_proj, self.v_proj))
        return {"q": q, "k": k, "v": v, "scale": self.head_dim ** -0.5}

    def stream_output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return self.o_proj(o.reshape(B, T, -1).to(x.dtype))

    def stream_carried_bytes(self, B: int, T: int, itemsize: int) -> int:
        """K and V caches, 2 B H T head_dim itemsize (the study's heads keep the full width: 4 x 1024)."""
        return 2 * B * self.num_heads * T * self.head_dim * itemsize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self.stream_inputs(x)
        o = _softmax(self.backend, i["q"], i["k"], i["v"], i["scale"], self.causal)
        return self.stream_output(o, x)


class MultiHeadAttention(StudySoftmaxAttention):
    def __init__(self, hidden_size: int = 1024, num_heads: int = 4, bias: bool = True, causal: bool = False):
        super().__init__(hidden_size, num_heads, hidden_size // num_heads, bias, causal, backend="sdpa")
