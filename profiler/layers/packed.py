"""Packed variable-length batches for the fla layers (utterance replay option ``packing=packed``).

Methodology
    A padded batch of b utterances is a [b, max T, D] tensor: every utterance is computed up to the
    longest one. A packed batch concatenates the b utterances along time into one sequence
    ``x`` [1, sum T, D] and passes ``cu_seqlens`` [b + 1] (int64 offsets, FlashAttention
    convention) so that every fla Triton op restarts its recurrence / causal window at each
    boundary: no padded token is computed.

    The call is ``layer(x, cu_seqlens=cu_seqlens)``, the path fla's own models take when they are
    given ``cu_seqlens`` (fla 0.6.0 ``fla/layers/*.py``: ``unpad_hidden_states`` returns the input
    unchanged when ``cu_seqlens`` is given; short convolutions, rotary embeddings and the
    ``chunk_*`` / ``fused_recurrent_*`` / ``parallel_forgetting_attn`` ops all receive it). The
    other route, a padded batch plus a [b, T] ``attention_mask`` that the layer unpads
    (``get_unpad_indices_and_cu`` + ``index_first_axis``) and repads (``pad_input``), runs the same
    kernels plus a gather and a scatter; serprof measures the former (a varlen pipeline packs its
    features once, upstream of the layer) and notes the difference here rather than timing both.

    Caveat: fla layers pick their recurrent kernels when the (packed) sequence has at most 64
    tokens and the chunked ones above; a packed batch is one long sequence, so it may take the
    chunked path where its utterances alone would take the recurrent one. Outputs agree either way.

Only the fla layers have a varlen path; the pure-PyTorch ports are padded (or batch 1) only.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from profiler.layers.utterances import PACKINGS


def cu_seqlens(lengths: Sequence[int], device: str | torch.device = "cpu") -> torch.Tensor:
    """int64 offsets ``[0, T0, T0+T1, ...]`` of utterances of these lengths in one packed sequence."""
    out = torch.zeros(len(lengths) + 1, dtype=torch.long)
    out[1:] = torch.cumsum(torch.tensor([int(t) for t in lengths], dtype=torch.long), 0)
    return out.to(device)


def packed_inputs(lengths: Sequence[int], full_x: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"x": [1, sum T, D], "cu_seqlens": [b + 1]}``: row i of ``full_x`` cut to ``lengths[i]``, concatenated.

    ``full_x`` is the [B, T, D] input a padded batch would slice, so packed and padded replays see
    the same real tokens. Built outside the timed region (one concatenation per batch).
    """
    b = len(lengths)
    if b > full_x.shape[0] or max(lengths) > full_x.shape[1]:
        raise ValueError(f"lengths {list(lengths)} do not fit inputs of shape {tuple(full_x.shape)}")
    x = torch.cat([full_x[i, : int(t)] for i, t in enumerate(lengths)], dim=0).unsqueeze(0)
    return {"x": x, "cu_seqlens": cu_seqlens(lengths, full_x.device)}


def packed_fn(module: torch.nn.Module) -> Callable[[dict], torch.Tensor]:
    """``fn(inputs) -> [1, sum T, D]``: the fla layer on a packed batch (``cu_seqlens`` keyword)."""
    def fn(inputs: dict) -> torch.Tensor:
        out = module(inputs["x"], cu_seqlens=inputs["cu_seqlens"])
        return out[0] if isinstance(out, tuple) else out

    return fn


def split_packed(out: torch.Tensor, lengths: Sequence[int]) -> list[torch.Tensor]:
    """Per-utterance outputs [T_i, D] of a packed output [1, sum T, D]."""
    return list(torch.split(out[0], [int(t) for t in lengths], dim=0))


def packed_vs_single(module: torch.nn.Module, xs: Sequence[torch.Tensor]) -> list[float]:
    """Max relative error, per utterance, of the packed call against that utterance alone at batch 1.

    ``xs``: utterances [T_i, D]. Relative to the largest magnitude of the batch-1 output.
    """
    lengths = [x.shape[0] for x in xs]
    fn = packed_fn(module)
    with torch.no_grad():
        full = torch.zeros(len(xs), max(lengths), xs[0].shape[-1], dtype=xs[0].dtype, device=xs[0].device)
        for i, x in enumerate(xs):
            full[i, : x.shape[0]] = x
        packed = split_packed(fn(packed_inputs(lengths, full)), lengths)
        errs = []
        for x, p in zip(xs, packed):
            alone = module(x.unsqueeze(0))
            alone = (alone[0] if isinstance(alone, tuple) else alone)[0]
            errs.append(float((p.float() - alone.float()).abs().max() / alone.float().abs().max().clamp_min(1e-30)))
    return errs


__all__ = ["PACKINGS", "cu_seqlens", "packed_inputs", "packed_fn", "split_packed", "packed_vs_single"]
