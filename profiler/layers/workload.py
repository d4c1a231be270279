"""Build the callable and inputs of a layer- or model-level point (what the measurement engine times).

``workload_for(spec, device, dtype, seed)`` returns a ``Workload``:

* level ``layer``: the seq2seq layer alone (as the study measured), built with ``H`` heads and model
  width ``hidden = H * D`` (``PointSpec.hidden``), input ``x`` [B, T, hidden] of unit variance (the
  scale of layer-normalised features);
* level ``model``: the whole SER head (``profiler.layers.ser``), inputs ``speech`` [B, Ts, hidden] and
  ``text`` [B, Tt, hidden] with ``Ts + Tt = T``: from the point's ``audio_s`` option and rates when
  present, else T split in the ratio of the frame and token rates;
* backend ``torch``: the pure-PyTorch port; backend ``fla``: the flash-linear-attention class built
  as the study did (CUDA; or CPU under Triton's interpreter for correctness only);
* options: ``bidirectional=1`` (ports only), ``audio_s`` / ``frame_rate`` / ``text_rate``.

Weights and inputs are drawn from ``torch.manual_seed(seed)``; everything is built here, outside
any timed region. ``Workload.call`` runs the measured thing once: forward under ``no_grad`` in
``fwd`` mode; forward plus backward of a fixed random output gradient in ``fwdbwd`` mode
(``reset`` clears parameter gradients between repetitions, outside the timing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from profiler.core.audio import rates_from_options
from profiler.core.errors import UnavailableError, UsageError
from profiler.core.records import PointSpec
from profiler.layers import build_fla, build_port, get_layer
from profiler.layers.ser import SERHead


@dataclass
class Workload:
    fn: Callable[[dict], torch.Tensor]     # fn(inputs) -> output
    inputs: dict[str, torch.Tensor]
    module: torch.nn.Module
    mode: str = "fwd"
    description: str = ""
    state: dict[str, Any] = field(default_factory=dict)

    def call(self) -> None:
        if self.mode == "fwd":
            with torch.no_grad():
                self.fn(self.inputs)
            return
        out = self.fn(self.inputs)
        g = self.state.get("grad")
        if g is None:
            gen = torch.Generator().manual_seed(12345)
            g = torch.randn(out.shape, generator=gen).to(device=out.device, dtype=out.dtype)
            self.state["grad"] = g
        out.backward(g)

    def reset(self) -> None:
        for p in self.module.parameters():
            p.grad = None

    def output(self) -> torch.Tensor:
        with torch.no_grad():
            return self.fn(self.inputs)


def is_bidirectional(spec: PointSpec) -> bool:
    return spec.option("bidirectional", "0") in ("1", "true")


def split_T(spec: PointSpec) -> tuple[int, int]:
    """``(speech_frames, text_tokens)`` of a model-level point."""
    rates = rates_from_options(spec.options)
    audio = spec.option("audio_s")
    if audio is not None:
        s, t = rates.split(float(audio))
        if s + t == spec.T:
            return s, t
    total = rates.frame_rate_hz + rates.text_rate_hz
    t = int(round(spec.T * rates.text_rate_hz / total)) if total > 0 else 0
    t = min(t, spec.T - 1)
    return spec.T - t, t


def build_module(spec: PointSpec, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 seed: int = 0) -> torch.nn.Module:
    """The point's layer (level ``layer``) or SER head around it (level ``model``), seeded, eval mode."""
    layer = get_layer(spec.kernel)
    bidir = is_bidirectional(spec)
    torch.manual_seed(seed)
    if spec.backend == "torch":
        core = build_port(spec.kernel, spec.hidden, spec.H, causal=spec.causal, bidirectional=bidir)
    elif spec.backend == "fla":
        if bidir:
            raise UnavailableError("bidirectional variants exist for the torch ports only (fla kernels are causal)")
        if not spec.causal:
            raise UnavailableError(f"fla layer {spec.kernel!r} is causal only")
        core = build_fla(spec.kernel, spec.hidden, spec.H)
    else:
        raise UsageError(f"layer {spec.kernel!r} has no backend {spec.backend!r}; valid: {', '.join(layer.backends)}")
    module = core
    if spec.level == "model":
        module = SERHead(core, hidden=spec.hidden)
    module = module.to(device=device, dtype=dtype or getattr(torch, spec.dtype)).eval()
    return module


def _layer_fn(module: torch.nn.Module) -> Callable[[dict], torch.Tensor]:
    def fn(inputs: dict) -> torch.Tensor:
        out = module(inputs["x"])
        return out[0] if isinstance(out, tuple) else out

    return fn


def _model_fn(module: torch.nn.Module) -> Callable[[dict], torch.Tensor]:
    def fn(inputs: dict) -> torch.Tensor:
        return module(inputs["speech"], inputs["text"])

    return fn


def make_inputs(spec: PointSpec, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                seed: int = 0) -> dict[str, torch.Tensor]:
    dtype = dtype or getattr(torch, spec.dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    if spec.level == "model":
        ts, tt = split_T(spec)
        return {"speech": torch.randn(spec.B, ts, spec.hidden, generator=gen).to(device=device, dtype=dtype),
                "text": torch.randn(spec.B, tt, spec.hidden, generator=gen).to(device=device, dtype=dtype)}
    return {"x": torch.randn(spec.B, spec.T, spec.hidden, generator=gen).to(device=device, dtype=dtype)}


def workload_for(spec: PointSpec, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 seed: int = 0) -> Workload:
    """Module, inputs and the measured call of a layer/model point (see module doc)."""
    if spec.level not in ("layer", "model"):
        raise UsageError(f"workload_for handles levels layer and model, not {spec.level!r}")
    module = build_module(spec, device=device, dtype=dtype, seed=seed)
    inputs = make_inputs(spec, device=device, dtype=dtype, seed=seed)
    fn = _model_fn(module) if spec.level == "model" else _layer_fn(module)
    if spec.mode == "fwd":
        for p in module.parameters():
            p.requires_grad_(False)
    return Workload(fn=fn, inputs=inputs, module=module, mode=spec.mode, description=spec.id)


def padded_inputs(spec: PointSpec, lengths: list[int], full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inputs of a padded batch of utterances with these T: slices of preallocated ``full`` tensors.

    ``full`` holds inputs for B >= len(lengths) and T >= max(lengths) (built once by ``make_inputs``);
    slicing is free, so building a batch never allocates in the replay loop.
    """
    b, t = len(lengths), max(lengths)
    if spec.level == "model":
        rates = rates_from_options(spec.options)
        frac = rates.text_rate_hz / (rates.frame_rate_hz + rates.text_rate_hz)
        tt = min(int(round(t * frac)), t - 1)
        return {"speech": full["speech"][:b, : t - tt], "text": full["text"][:b, :tt]}
    return {"x": full["x"][:b, :t]}
