"""Pure-PyTorch equivalents of the fla building blocks the study's layers use (any device).

Each function reproduces the forward math of one fla module, with the same epsilon and activation
conventions (checked against the installed fla 0.6.0 source):

* ``rms_norm``: ``x / sqrt(mean(x^2) + eps) * w`` in fp32 (fla ``RMSNorm`` / ``rms_norm_linear``);
* ``rms_norm_gated``: the same, times ``g * sigmoid(g)`` (``swish``) or ``sigmoid(g)``
  (fla ``FusedRMSNormGated``, ``rms_norm_swish_gate_linear``);
* ``short_conv``: fla ``ShortConvolution`` = depthwise causal ``nn.Conv1d`` (weight ``[D,1,W]``,
  left padding W-1) followed by SiLU when it has an activation;
* ``rotary``: GPT-NeoX (non-interleaved halves) rotary embedding, base 10000, fp32 angles
  (fla ``RotaryEmbedding`` defaults);
* ``l2norm``: ``x / sqrt(sum(x^2) + 1e-6)`` (fla ``l2norm_fwd``);
* ``attend``: call a mechanism's torch kernel backend (``profiler.kernels``), optionally
  bidirectionally (see ``bidirectional``).
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib

import torch
import torch.nn as nn
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float) -> torch.Tensor:
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    return y.to(x.dtype)


def rms_norm_gated(x: torch.Tensor, g: torch.Tensor, weight: torch.Tensor | None, eps: float,
                   activation: str = "swish") -> torch.Tensor:
    y = rms_norm(x, weight, eps).float()
    gf = g.float()
    y = y * (F.silu(gf) if activation in ("swish", "silu") else torch.sigmoid(gf))
    return y.to(x.dtype)


def short_conv(conv: nn.Conv1d, x: torch.Tensor, activation: bool = True) -> torch.Tensor:
    """Depthwise causal convolution over time of ``x`` [B, T, D] with the parameters of ``conv``."""
    T = x.shape[1]
    y = F.conv1d(x.transpose(1, 2), conv.weight, conv.bias, padding=conv.kernel_size[0] - 1,
                 groups=conv.groups)[..., :T].transpose(1, 2)
    return F.silu(y) if activation else y


def short_conv_stream(conv: nn.Conv1d, x: torch.Tensor, carried: dict | None, name: str,
                      activation: bool = True) -> torch.Tensor:
    """``short_conv`` of the next tokens ``x`` [B, T, D] of a stream: the last ``W-1`` inputs before them
    are ``carried[name]`` [B, W-1, D] (zeros before the first token), updated in place. ``carried`` None:
    a whole sequence from its start (``short_conv``). Equal to ``short_conv`` over the whole stream."""
    if carried is None:
        return short_conv(conv, x, activation)
    W = conv.kernel_size[0]
    tail = carried.get(name)
    if tail is None:      # the stream starts here: zeros before it, as the causal padding
        tail = carried[name] = x.new_zeros(x.shape[0], W - 1, x.shape[2])
    full = torch.cat([tail, x], dim=1)
    y = F.conv1d(full.transpose(1, 2), conv.weight, conv.bias, groups=conv.groups).transpose(1, 2)
    tail.copy_(full[:, full.shape[1] - (W - 1):])
    return F.silu(y) if activation else y


class ShortConv(nn.Conv1d):
    """Parameter-compatible stand-in for fla ``ShortConvolution`` (weight ``[D, 1, W]``, optional bias)."""

    def __init__(self, hidden_size: int, kernel_size: int, bias: bool = False, activation: str | None = "silu"):
        super().__init__(hidden_size, hidden_size, kernel_size, padding=kernel_size - 1, groups=hidden_size, bias=bias)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return short_conv(self, x, activation=self.activation is not None)


def rotary(x: torch.Tensor, base: float = 10000.0, offset: int = 0) -> torch.Tensor:
    """Rotary embedding of ``x`` [B, T, H, D] at positions offset..offset+T-1 (NeoX halves layout)."""
    T, D = x.shape[1], x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, device=x.device, dtype=torch.float32) / D))
    freqs = torch.outer(torch.arange(offset, offset + T, device=x.device, dtype=torch.float32), inv_freq)
    cos = torch.cat([freqs.cos(), freqs.cos()], -1).to(x.dtype)[None, :, None, :]
    sin = torch.cat([freqs.sin(), freqs.sin()], -1).to(x.dtype)[None, :, None, :]
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


def l2norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).sum(-1, keepdim=True) + eps)).to(x.dtype)


_ORACLE = contextvars.ContextVar("serprof_layers_oracle", default=False)


@contextlib.contextmanager
def oracle():
    """Within this block, every mechanism call uses the kernel's fp32 reference instead of a backend."""
    token = _ORACLE.set(True)
    try:
        yield
    finally:
        _ORACLE.reset(token)


def kernel_backend(kernel: str, backend: str):
    """``run(inputs, causal)`` of one kernel backend (imports only that mechanism's module).

    Inside ``oracle()`` it is the kernel's reference instead, fed fp32 tensors.
    """
    spec = importlib.import_module(f"profiler.kernels.{kernel}").KERNEL
    if _ORACLE.get():
        def ref(inputs, causal):
            return spec.reference({k: (v.float() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()},
                                  causal)

        return ref
    return spec.backends[backend].run


def _flip(inputs: dict) -> dict:
    return {k: (v.flip(1) if isinstance(v, torch.Tensor) and v.dim() >= 2 else v) for k, v in inputs.items()}


def attend(kernel: str, inputs: dict, *, causal: bool = True, bidirectional: bool = False,
           diag=None) -> torch.Tensor:
    """Run ``kernel``'s torch backend on ``inputs`` ([B, T, H, *] tensors, plus optional ``scale``).

    Bidirectional (FLA.md sections 1 and 4): the causal scan on the inputs plus the causal scan on
    the time-flipped inputs, flipped back, as in a BiRNN with shared weights. ``diag(inputs)``, if
    given, is the token's own contribution counted by both scans; it is subtracted once (RetNet:
    this makes the result exactly the symmetric decay ``gamma^|i-j|``).
    """
    run = kernel_backend(kernel, "torch")
    if not bidirectional:
        return run(inputs, causal)
    fwd = run(inputs, True)
    bwd = run(_flip(inputs), True).flip(1)
    out = fwd + bwd
    if diag is not None:
        out = out - diag(inputs)
    return out


class NormWeight(nn.Module):
    """A norm holding only ``weight`` (ones), like fla's ``FusedRMSNormGated`` / ``RMSNorm``."""

    def __init__(self, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))


ANY = object()


def reject_unsupported(given: dict, **defaults) -> None:
    """Accept fla keyword arguments only at the values a port implements (``ANY``: any value)."""
    for key, value in given.items():
        if key not in defaults:
            raise TypeError(f"unexpected argument {key!r}")
        if defaults[key] is not ANY and value != defaults[key]:
            raise NotImplementedError(f"this CPU port implements only {key}={defaults[key]!r} (got {value!r})")
