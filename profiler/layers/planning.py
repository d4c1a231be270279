"""Layers as ``KernelSpec`` entries, so the sweep planner treats ``--level layer|model`` like kernels.

The planner needs, per layer: backends (availability, causal support, dtypes), shape checks, and
analytic FLOP and memory models (to skip points predicted to exceed the memory budget). Inputs and
the measured call of a layer point come from ``profiler.layers.workload`` instead (the ``run`` of
these backends is never used for timing).

Analytic models (per forward call, ``D`` = model width):

* FLOPs: ``2 * B * T * (weights in the projections)`` plus the mechanism kernel's own FLOP model at
  the layer's head shape (softmax/FoX quadratic, the rest linear in T);
* memory above inputs: ``B * T * (floats per token of the projections and gates) * itemsize`` plus the
  mechanism kernel's memory model at the layer's head shape (the study's softmax: its ``naive``
  backend's ``B * H * T^2`` scores).
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from profiler.core.errors import UsageError
from profiler.kernels.base import Backend, KernelSpec, Shape
from profiler.layers import STUDY_HEADS, LayerSpec, build_port, get_layer, layer_registry

#: kernel backend each layer's port runs on (for the kernel's memory and FLOP models)
_KERNEL_BACKEND = {"softmax": "naive", "mha": "sdpa"}


def _not_for_timing(inputs, causal):  # pragma: no cover - layer points are timed via workload_for
    raise RuntimeError("layer points are built by profiler.layers.workload.workload_for")


@lru_cache(maxsize=64)
def head_shape(name: str, hidden: int, heads: int) -> tuple[int, int, int, int]:
    """``(H, Dk, params, floats_per_token)`` of the layer's attention core at this size (meta device)."""
    import torch

    with torch.device("meta"):
        m = build_port(name, hidden, heads)
    params = sum(p.numel() for p in m.parameters())
    H = getattr(m, "num_heads")
    Dk = next(getattr(m, a) for a in ("head_dim", "head_k_dim", "head_f_dim") if hasattr(m, a))
    per_token = sum(mod.out_features for mod in m.modules() if isinstance(mod, torch.nn.Linear))
    return H, Dk, params, per_token


def _kernel(name: str) -> KernelSpec:
    return importlib.import_module(f"profiler.kernels.{get_layer(name).mechanism}").KERNEL


def _flops(name: str):
    def flops(shape: Shape, causal: bool) -> float:
        H, Dk, params, _ = head_shape(name, shape.D, shape.H)
        core = 0.0
        try:
            core = float(_kernel(name).flops(Shape(shape.B, shape.T, H, Dk), causal))
        except Exception:  # noqa: BLE001 - a mechanism without a model adds nothing, never a guess
            pass
        return 2.0 * shape.B * shape.T * params + core

    return flops


def _memory(name: str):
    def memory_bytes(shape: Shape, itemsize: int, backend: str, causal: bool, mode: str) -> int:
        H, Dk, _, per_token = head_shape(name, shape.D, shape.H)
        total = shape.B * shape.T * per_token * itemsize * (3 if mode == "fwdbwd" else 1)
        kb = _KERNEL_BACKEND.get(name, "torch")
        total += int(_kernel(name).memory_bytes(Shape(shape.B, shape.T, H, Dk), itemsize, kb, causal, mode))
        return total

    return memory_bytes


def _bytes_moved(name: str):
    def bytes_moved(shape: Shape, itemsize: int, causal: bool) -> float:
        _, _, params, per_token = head_shape(name, shape.D, shape.H)
        return float(itemsize * (params + 2 * shape.B * shape.T * (shape.D + per_token)))

    return bytes_moved


def _check(name: str):
    def check_shape(shape: Shape) -> str | None:
        if min(shape.B, shape.T, shape.H, shape.D) < 1:
            return f"B, T, H and D must be >= 1 (got B={shape.B}, T={shape.T}, H={shape.H}, D={shape.D})"
        try:
            head_shape(name, shape.D, shape.H)
        except Exception as exc:  # noqa: BLE001 - the constructor's complaint is the reason
            return f"layer {name} cannot be built with hidden {shape.D} and {shape.H} heads: {exc}"
        return None

    return check_shape


def _entry(spec: LayerSpec, level: str) -> KernelSpec:
    causal = (False, True) if spec.mechanism == "softmax" else (True,)
    backends = {"torch": Backend("torch", _not_for_timing, causal=causal,
                                description="pure-PyTorch port on the kernels' torch backends")}
    if spec.fla_class:
        backends["fla"] = Backend("fla", _not_for_timing, devices=("cuda",), requires=("fla", "triton"),
                                  interpretable=True, description=f"{spec.fla_class} (Triton)")
    entry = KernelSpec(
        name=spec.name, title=spec.title, family=spec.family,
        make_inputs=lambda *a, **k: {}, backends=backends, reference=_not_for_timing,
        reference_name="fla layer (tests) / fp32 port", flops=_flops(spec.name),
        bytes_moved=_bytes_moved(spec.name), memory_bytes=_memory(spec.name), grad_inputs=(),
        description=spec.description,
        extras={"level": level, "mechanism": spec.mechanism, "bidirectional": spec.bidirectional,
                "input_bytes": lambda shape, itemsize, mode: 2 * shape.B * shape.T * shape.D * itemsize},
    )
    object.__setattr__(entry, "check_shape", _check(spec.name))
    return entry


def entry(name: str, level: str = "layer") -> KernelSpec:
    """One layer's entry (imports only its mechanism's kernel module when a model is evaluated)."""
    return _entry(get_layer(name), level)


def registry(level: str = "layer") -> dict[str, KernelSpec]:
    """Layer entries by name for the planner (``profiler.spec.plan.registry_for``)."""
    return {name: _entry(spec, level) for name, spec in layer_registry().items()}


__all__ = ["registry", "entry", "head_shape", "STUDY_HEADS"]


# --------------------------------------------------------------------------- sweep axes (used by profiler.spec.plan)

def layer_dims(sweep) -> tuple[int, ...]:
    """D axis of a sweep: at layer/model levels D is the model width; the kernel default 64 means 1024."""
    if sweep.level != "kernel" and tuple(sweep.head_dims) == (64,):
        from profiler.layers import STUDY_HIDDEN

        return (STUDY_HIDDEN,)
    return tuple(sweep.head_dims)


def _rate_options(sweep) -> tuple[tuple[str, str], ...]:
    from profiler.core.audio import AudioRates

    rates = AudioRates(getattr(sweep, "frame_rate", 50.0), getattr(sweep, "text_rate", 3.0))
    return tuple((k, v) for k, v in rates.options(1.0) if k != "audio_s")


def lengths_with_options(sweep) -> list[tuple[int, tuple[tuple[str, str], ...]]]:
    """``(T, options)`` per length: from ``--audio`` durations (T = frames + tokens, the rates stored as
    options; the duration is ``T / (frame_rate + text_rate)`` up to rounding and is stored in the
    record's ``extra['audio_s']``) or plain ``--lengths``. Utterance-replay points follow, with
    T = the longest possible utterance and options ``replay=N`` and ``distribution``."""
    from profiler.core.audio import AudioRates
    from profiler.layers.utterances import MSP_PODCAST_LIKE

    out: list[tuple[int, tuple[tuple[str, str], ...]]] = []
    audio = tuple(getattr(sweep, "audio", ()) or ())
    rates = AudioRates(getattr(sweep, "frame_rate", 50.0), getattr(sweep, "text_rate", 3.0))
    if audio:
        out += [(rates.to_T(s), _rate_options(sweep)) for s in audio]
    else:
        out += [(T, ()) for T in sweep.lengths]
    n = int(getattr(sweep, "utterances", 0) or 0)
    if n > 0 and sweep.level != "kernel":
        opts = _rate_options(sweep) + (("distribution", MSP_PODCAST_LIKE.name), ("replay", str(n)))
        out.append((rates.to_T(MSP_PODCAST_LIKE.max_s), tuple(sorted(opts))))
    return out


def causal_variants(sweep, kernel, causals) -> list[tuple[bool, tuple[tuple[str, str], ...]]]:
    """``(causal, options)`` variants: the backend's causal flags, plus (``--bidirectional on``) or instead
    of them (``only``) the forward+reversed variant (causal False, option ``bidirectional=1``) for
    layers that have one."""
    mode = getattr(sweep, "bidirectional", "off")
    has_bi = bool(getattr(kernel, "extras", {}).get("bidirectional")) and sweep.level != "kernel"
    out = [] if (mode == "only" and has_bi) else [(c, ()) for c in causals]
    if mode in ("on", "only") and has_bi:
        out.append((False, (("bidirectional", "1"),)))
    return out


def check_packing(sweep, reg) -> None:
    """Refuse (``UsageError``, exit 2) a ``packing`` that cannot yield a single packed replay point."""
    if "packed" not in tuple(getattr(sweep, "packing", ("padded",))):
        return
    hint = "packed replay batches run the fla layers with cu_seqlens"
    if not int(getattr(sweep, "utterances", 0) or 0):
        raise UsageError(f"--packing packed applies to the utterance replay: add --utterances N ({hint})")
    if sweep.level != "layer":
        raise UsageError(f"--packing packed is for --level layer only, not {sweep.level!r} ({hint})")
    if max(sweep.batch) < 2:
        raise UsageError("--packing packed needs a batch size > 1 (e.g. --batch 8): a packed batch of one "
                         "utterance is the batch-1 replay")
    if sweep.backends and "fla" not in sweep.backends:
        raise UsageError(f"--packing packed needs --backend fla ({hint}; the torch ports are padded only)")
    names = sweep.kernels or tuple(reg)
    if not any("fla" in reg[n].backends for n in names if n in reg):
        fla = ", ".join(n for n, k in reg.items() if "fla" in k.backends)
        raise UsageError(f"--packing packed needs an fla layer; valid: {fla}")


def packing_variants(sweep, backend: str, B: int, options) -> list[tuple[tuple[tuple[str, str], ...], str | None]]:
    """``(extra options, drop reason or None)`` per packing of one point. Only replay points vary:
    ``padded`` adds no option (ids of padded replays are unchanged), ``packed`` adds ``packing=packed``
    and is dropped for the torch ports, batch 1 and the bidirectional variants."""
    opts = dict(options)
    packings = tuple(getattr(sweep, "packing", ("padded",)))
    if "replay" not in opts:
        return [((), None)]
    out: list[tuple[tuple[tuple[str, str], ...], str | None]] = []
    if "padded" in packings:
        out.append(((), None))
    if "packed" in packings:
        why = None
        if backend != "fla":
            why = f"packed replay: the {backend} backend has no varlen (cu_seqlens) path; it runs padded or batch 1"
        elif B < 2:
            why = "packed replay at batch 1 is the batch-1 replay"
        elif opts.get("bidirectional") == "1":
            why = "packed replay: the fla layers are causal only (no bidirectional variant)"
        out.append(((("packing", "packed"),), why))
    return out
