"""FLOPs and bytes of one attention call, counted the way the shape really is.

One place for the arithmetic behind TFLOP/s, GB/s and "% of peak": causal masking, sliding windows,
grouped key/value heads (GQA/MQA, and grouped value heads for linear kernels), a value dim that
differs from the key dim, packed variable-length batches against padded ones, and the backward pass.
Pure integer/float arithmetic on plain values (no torch), so analysis and report can quote the same
formulas (``FORMULAS``) next to their figures.

Conventions (those of FlashAttention's and fla's benchmark scripts):

- 2 FLOPs per multiply-add; only matmuls count (softmax exponentials, masks, gates and decays do not);
- softmax attention: ``QK^T`` costs ``2*D`` and ``PV`` costs ``2*Dv`` per attended (query, key) pair;
  its backward is 2.5x the forward (five matmuls of the forward's size against two), fwd+bwd 3.5x;
- chunkwise linear attention (the GLA form that RetNet, LightNet, simple GLA and the delta rules
  build on), per head and per chunk of ``C`` tokens, T padded to a multiple of C:
  ``2C^2(K+V)`` for the intra-chunk ``QK^T`` and ``AV``, ``4CKV`` for ``QS`` and ``K^T V``;
  its backward is 2x the forward, fwd+bwd 3x;
- minimum DRAM bytes: every input read once and every output written once (a fused kernel's floor);
  with GQA the key/value tensors have ``kv_heads`` heads, so they are read once per kv head;
- a packed batch (``lengths``) counts each sequence at its own length; a padded batch counts every
  sequence at the longest length, and ``padding_waste`` is the share of computed tokens that are pad.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

#: backward and fwd+bwd cost as multiples of the forward, per kind of kernel
MODE_FACTOR = {
    "softmax": {"fwd": 1.0, "bwd": 2.5, "fwdbwd": 3.5},
    "linear": {"fwd": 1.0, "bwd": 2.0, "fwdbwd": 3.0},
}

#: the formulas in words, for the report (keys match the functions below)
FORMULAS = {
    "pairs": "causal: T(T+1)/2; full: T^2; causal window w: w(w+1)/2 + (T-w)w for T >= w",
    "softmax_flops": "B * Hq * pairs * (2D + 2Dv) x {fwd 1, bwd 2.5, fwdbwd 3.5}",
    "linear_flops": "B * Hq * Tp * (2C(K+V) + 4KV), Tp = T padded to C, x {fwd 1, bwd 2, fwdbwd 3}",
    "io_bytes": "tokens * (Hq*D + Hkv*D + Hkv*Dv + Hq*Dv) * itemsize (+ extra per-token inputs)",
    "packed": "sum over sequences at their own length; padded: every sequence at the longest",
}


@dataclass(frozen=True)
class AttnShape:
    """The shape of one attention call.

    ``T`` is the (longest) sequence length; ``lengths`` (a packed batch, ``B`` ignored) lists each
    sequence's length. ``kv_heads`` defaults to ``H`` (one key/value head per query head), ``Dv`` to
    ``D``; ``window`` is a causal sliding window of that many keys (the query's own included).
    """

    B: int
    T: int
    H: int
    D: int
    kv_heads: int | None = None
    Dv: int | None = None
    causal: bool = True
    window: int | None = None
    lengths: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if min(self.B, self.T, self.H, self.D) < 1:
            raise ValueError(f"B, T, H, D must be >= 1 (got {self.B}, {self.T}, {self.H}, {self.D})")
        if self.H % self.hkv:
            raise ValueError(f"kv_heads {self.hkv} must divide the query heads {self.H}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be >= 1 (got {self.window})")
        if self.lengths is not None and (not self.lengths or min(self.lengths) < 1):
            raise ValueError("lengths must be a non-empty list of positive lengths")

    @property
    def hkv(self) -> int:
        return self.kv_heads or self.H

    @property
    def dv(self) -> int:
        return self.Dv or self.D

    def sequences(self, padded: bool = False) -> list[int]:
        """The length each sequence is computed at (all at ``T`` unless packed; padded: at the longest)."""
        if self.lengths is None:
            return [self.T] * self.B
        return [max(self.lengths)] * len(self.lengths) if padded else list(self.lengths)


def attended_pairs(T: int, causal: bool = True, window: int | None = None) -> int:
    """(query, key) pairs one head of one sequence attends.

    Causal: ``T(T+1)/2``; full: ``T^2``; a causal window of ``w`` keys: ``w(w+1)/2 + (T-w)w`` for
    ``T >= w`` (the first ``w`` queries see 1..w keys, the rest w each); a two-sided window (not causal)
    sees the keys with ``|i-j| < w``: ``T(2w-1) - w(w-1)`` for ``T >= w``.
    """
    if window is None or window >= T:
        return T * (T + 1) // 2 if causal else T * T
    w = window
    if causal:
        return w * (w + 1) // 2 + (T - w) * w
    return T * (2 * w - 1) - w * (w - 1)


def softmax_flops(shape: AttnShape, mode: str = "fwd", *, padded: bool = False) -> float:
    """Matmul FLOPs of softmax attention: ``Hq * pairs * (2D + 2Dv)`` summed over sequences."""
    pairs = sum(attended_pairs(t, shape.causal, shape.window) for t in shape.sequences(padded))
    return float(shape.H * pairs * (2 * shape.D + 2 * shape.dv)) * MODE_FACTOR["softmax"][mode]


def linear_flops(shape: AttnShape, mode: str = "fwd", *, chunk: int = 64, padded: bool = False) -> float:
    """Matmul FLOPs of chunkwise linear attention: ``Hq * Tp * (2C(K+V) + 4KV)`` summed over sequences."""
    K, V, C = shape.D, shape.dv, chunk
    per_token = 2 * C * (K + V) + 4 * K * V
    Tp = sum(C * math.ceil(t / C) for t in shape.sequences(padded))
    return float(shape.H * Tp * per_token) * MODE_FACTOR["linear"][mode]


def tokens(shape: AttnShape, *, padded: bool = False) -> int:
    """Tokens computed: ``B*T`` dense, ``sum(lengths)`` packed, ``n*max(lengths)`` padded."""
    return sum(shape.sequences(padded))


def io_bytes(shape: AttnShape, itemsize: int, mode: str = "fwd", *, padded: bool = False,
             extra_per_token: int = 0) -> float:
    """Minimum DRAM bytes: read q, k, v (k/v with ``kv_heads`` heads), write o; per computed token.

    ``extra_per_token`` adds other per-token inputs in elements (gates, decays, betas). The backward
    reads q, k, v, o and dO and writes dq, dk, dv: 2x the forward's tensors; fwd+bwd adds both.
    """
    per_token = shape.H * shape.D + shape.hkv * shape.D + shape.hkv * shape.dv + shape.H * shape.dv
    fwd = float(tokens(shape, padded=padded) * (per_token + extra_per_token) * itemsize)
    return fwd * {"fwd": 1.0, "bwd": 2.0, "fwdbwd": 3.0}[mode]


def kv_cache_bytes(shape: AttnShape, itemsize: int) -> int:
    """Bytes of a softmax KV cache holding every sequence's keys and values (``kv_heads`` heads)."""
    return tokens(shape) * shape.hkv * (shape.D + shape.dv) * itemsize


def padding_waste(lengths: Sequence[int]) -> float:
    """Share of a padded batch's tokens that are padding: ``1 - sum(L) / (n * max(L))``."""
    if not lengths:
        raise ValueError("padding_waste needs at least one length")
    return 1.0 - sum(lengths) / (len(lengths) * max(lengths))
