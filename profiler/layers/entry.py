"""A layer (level ``layer``) or the SER head around it (level ``model``) as a measurable entry.

``LayerEntry`` implements ``profiler.kernels.base.Entry`` for the study's seq2seq layers: the sweep
planner reads its backends, constraints and analytic models; ``measure_point`` calls ``build`` and
``verify`` exactly as for kernels.

Analytic models (per forward call; the layer's model width is ``hidden = H * D``, ``PointSpec.hidden``):

* FLOPs: ``2 * B * T * (weights in the projections)`` plus the mechanism kernel's own FLOP model at
  the layer's head shape (softmax/FoX quadratic, the rest linear in T);
* memory above inputs: ``B * T * (floats per token of the projections and gates) * itemsize`` plus the
  mechanism kernel's memory model at the layer's head shape (the study's softmax: its ``naive``
  backend's ``B * H * T^2`` scores);
* bytes: weights once plus activations in and out of every projection.

Decode / streaming points (``PointSpec.phase``; ``profiler.layers.streaming``): FLOPs ``2 * B * n *
params`` plus the mechanism's recurrent model at the layer's head shape for the ``n`` positions of one
call; bytes: the weights once, the carried state or cache read (and written) once per call, the
activations of the ``n`` positions; memory above inputs: the carried bytes (``stream_carried_bytes``).

Measuring side: ``build`` gives the ``profiler.layers.workload`` call of the point, or, for points
with option ``replay=N``, a ``Workload.replay`` that times N utterances (``profiler.layers.replay``);
utterance-replay points carry no FLOP or byte model (their T varies per call).
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

from profiler.core.audio import rates_from_options
from profiler.core.errors import UsageError
from profiler.core.lazy import lazy_import
from profiler.core.records import Correctness, PointSpec
from profiler.kernels.base import Analytic, Backend, KernelSpec, Shape, Workload
from profiler.layers import LayerSpec, build_port, get_layer, layer_registry

#: the measuring side (nn.Modules, torch at import) loads when a point is built, not when it is planned
layer_verify = lazy_import("profiler.layers.verify")
layer_replay = lazy_import("profiler.layers.replay")
layer_workload = lazy_import("profiler.layers.workload")
layer_streaming = lazy_import("profiler.layers.streaming")
torch = lazy_import("torch")

#: kernel backend each layer's port runs on (for the kernel's memory and FLOP models)
_KERNEL_BACKEND = {"softmax": "naive", "mha": "sdpa"}


@lru_cache(maxsize=64)
def head_shape(name: str, hidden: int, heads: int) -> tuple[int, int, int, int]:
    """``(H, Dk, params, floats_per_token)`` of the layer's attention core at this size (meta device)."""
    with torch.device("meta"):
        m = build_port(name, hidden, heads)
    params = sum(p.numel() for p in m.parameters())
    H = getattr(m, "num_heads")
    Dk = next(getattr(m, a) for a in ("head_dim", "head_k_dim", "head_f_dim") if hasattr(m, a))
    per_token = sum(mod.out_features for mod in m.modules() if isinstance(mod, torch.nn.Linear))
    return H, Dk, params, per_token


@lru_cache(maxsize=64)
def _port_on_meta(name: str, hidden: int, heads: int):
    """The port built on the meta device (shapes only, nothing allocated)."""
    with torch.device("meta"):
        return build_port(name, hidden, heads)


def _kernel(mechanism: str) -> KernelSpec:
    return importlib.import_module(f"profiler.kernels.{mechanism}").KERNEL


@dataclass(frozen=True)
class LayerEntry:
    """One layer at one level (``layer`` | ``model``); see module doc."""

    spec: LayerSpec
    level: str = "layer"

    # -- planning side: the layer's own description
    name = property(lambda self: self.spec.name)
    title = property(lambda self: self.spec.title)
    family = property(lambda self: self.spec.family)
    description = property(lambda self: self.spec.description)
    mechanism = property(lambda self: self.spec.mechanism)
    bidirectional = property(lambda self: self.spec.bidirectional)
    default_backend = "torch"
    reference_name = "fla layer (tests) / fp32 port"

    @property
    def backends(self) -> Mapping[str, Backend]:
        causal = (False, True) if self.spec.mechanism == "softmax" else (True,)
        out = {"torch": Backend("torch", causal=causal, description="pure-PyTorch port on the kernels' torch backends")}
        if self.spec.fla_class:
            out["fla"] = Backend("fla", devices=("cuda",), requires=("fla", "triton"), interpretable=True,
                                 description=f"{self.spec.fla_class} (Triton)")
        return out

    def check_shape(self, shape: Shape) -> str | None:
        if min(shape.B, shape.T, shape.H, shape.D) < 1:
            return f"B, T, H and D must be >= 1 (got B={shape.B}, T={shape.T}, H={shape.H}, D={shape.D})"
        try:
            head_shape(self.name, shape.hidden, shape.H)
        except Exception as exc:  # noqa: BLE001 - the constructor's complaint is the reason
            return (f"layer {self.name} cannot be built with {shape.H} heads of {shape.D} (hidden {shape.hidden}): "
                    f"{exc}")
        return None

    def backend_limit(self, backend: str, shape: Shape) -> str | None:
        return None

    def phase_unsupported(self, backend: str, phase: str) -> str | None:
        """Why this layer cannot run ``phase`` on ``backend`` (``profiler.layers.streaming.unsupported``)."""
        if phase == "prefill":
            return None
        return layer_streaming.unsupported(self.level, backend, phase, self.name)

    def carried_bytes(self, shape: Shape, itemsize: int) -> int:
        """Analytic bytes carried after ``shape.T`` positions by ``shape.B`` streams (decode / streaming)."""
        return int(_port_on_meta(self.name, shape.hidden, shape.H).stream_carried_bytes(shape.B, shape.T, itemsize))

    def _phase_analytic(self, point: PointSpec, itemsize: int) -> Analytic:
        n = point.tokens_per_call
        H, Dk, params, per_token = head_shape(self.name, point.hidden, point.H)
        carried = self.carried_bytes(Shape(point.B, point.T, point.H, point.D), itemsize)
        core = 0.0
        try:
            kern = _kernel(self.mechanism)
            core = float(kern.recurrent.analytic(kern, dataclasses.replace(point, level="kernel", kernel=self.mechanism,
                                                                          H=H, D=Dk), itemsize).flops or 0.0)
        except Exception:  # noqa: BLE001 - a mechanism without a model adds nothing, never a guess
            pass
        moved = itemsize * (params + 2 * point.B * n * (point.hidden + per_token)) + 2 * carried
        return Analytic(2.0 * point.B * n * params + core, float(moved), int(carried))

    def flops(self, shape: Shape, causal: bool) -> float:
        H, Dk, params, _ = head_shape(self.name, shape.hidden, shape.H)
        core = 0.0
        try:
            core = float(_kernel(self.mechanism).flops(Shape(shape.B, shape.T, H, Dk), causal))
        except Exception:  # noqa: BLE001 - a mechanism without a model adds nothing, never a guess
            pass
        return 2.0 * shape.B * shape.T * params + core

    def bytes_moved(self, shape: Shape, itemsize: int, causal: bool) -> float:
        _, _, params, per_token = head_shape(self.name, shape.hidden, shape.H)
        return float(itemsize * (params + 2 * shape.B * shape.T * (shape.hidden + per_token)))

    def memory_bytes(self, shape: Shape, itemsize: int, backend: str, causal: bool, mode: str) -> int:
        H, Dk, _, per_token = head_shape(self.name, shape.hidden, shape.H)
        total = shape.B * shape.T * per_token * itemsize * (3 if mode == "fwdbwd" else 1)
        kb = _KERNEL_BACKEND.get(self.name, "torch")
        total += int(_kernel(self.mechanism).memory_bytes(Shape(shape.B, shape.T, H, Dk), itemsize, kb, causal, mode))
        return total

    def input_bytes(self, shape: Shape, itemsize: int, mode: str) -> int:
        """The layer's input and output activations, [B, T, hidden] each."""
        return 2 * shape.B * shape.T * shape.hidden * itemsize

    def analytic(self, point: PointSpec, itemsize: int) -> Analytic:
        if point.phase != "prefill":
            return self._phase_analytic(point, itemsize)
        shape = Shape(point.B, point.T, point.H, point.D)
        mem = int(self.memory_bytes(shape, itemsize, point.backend, point.causal, point.mode))
        if point.option("replay") is not None:
            return Analytic(None, None, mem)
        return Analytic(float(self.flops(shape, point.causal)), float(self.bytes_moved(shape, itemsize, point.causal)), mem)

    # -- measuring side
    def _extra(self, point: PointSpec) -> dict[str, Any]:
        extra: dict[str, Any] = {"params": head_shape(self.name, point.hidden, point.H)[2]}
        if point.option("audio_s") is not None:
            extra["audio_s"] = float(point.option("audio_s"))
        elif point.option("frame_rate") is not None and point.option("replay") is None:
            r = rates_from_options(point.options)   # the duration this T stands for (up to rounding)
            extra["audio_s"] = point.T / (r.frame_rate_hz + r.text_rate_hz)
        return extra

    def build(self, point: PointSpec, device: str, seed: int) -> Workload:
        if point.phase != "prefill":
            if point.mode != "fwd":
                raise UsageError(f"--phase {point.phase} measures inference only; use --mode fwd")
            sw = layer_streaming.workload(point, device, seed)
            itemsize = sw.x.element_size()
            port = _port_on_meta(self.name, point.hidden, point.H)
            form = layer_streaming._form(port)
            cache = form.kind == "cache"
            extra = self._extra(point)
            extra.update({"phase": point.phase, "tokens_per_call": sw.n, "carried_kind": form.kind,
                          "carried_bytes": sw.carried_nbytes,
                          # a cache is allocated for T + n rows up front (the call writes the last n)
                          "carried_bytes_analytic": int(port.stream_carried_bytes(
                              point.B, point.T + (sw.n if cache else 0), itemsize))})
            return Workload(sw.call, None, {"x": sw.x, **{k: v for k, v in sw.carried.items() if hasattr(v, "nbytes")}},
                            extra)
        work = layer_workload.workload_for(point, device, getattr(torch, point.dtype), seed)
        reset = work.reset if point.mode == "fwdbwd" else None
        replay = None
        if point.option("replay") is not None:
            def replay(dev, settings, meter, _work=work):
                return layer_replay.replay_point(point, settings, dev, meter, _work)

        return Workload(work.call, reset, work.inputs, self._extra(point), replay)

    def verify(self, point: PointSpec, device: str, seed: int, max_T: int | None,
               oracles: Sequence[str | None] = (None,)) -> list[Correctness]:
        if any(o is not None for o in oracles):
            raise UsageError("layers are checked against their fp32 oracle only (no backend-vs-backend check)")
        if point.phase != "prefill":
            return [layer_streaming.check(point, device, seed, min(layer_verify.VERIFY_T, max_T or layer_verify.VERIFY_T))]
        verify_fn = layer_verify.verify_packed if point.option("packing") == "packed" else layer_verify.verify
        return [verify_fn(point, device, seed, min(layer_verify.VERIFY_T, max_T or layer_verify.VERIFY_T))]


def entry(name: str, level: str = "layer") -> LayerEntry:
    """One layer's entry (imports only its mechanism's kernel module when a model is evaluated)."""
    return LayerEntry(get_layer(name), level)


def registry(level: str = "layer") -> dict[str, LayerEntry]:
    """Layer entries by name, in the study's display order."""
    return {name: LayerEntry(spec, level) for name, spec in layer_registry().items()}
