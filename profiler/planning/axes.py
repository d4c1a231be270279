"""Sweep axes beyond kernels x backends x B x T x H x D: audio durations, bidirectional variants,
utterance replay and packing (used by ``profiler.planning.points``).
"""

from __future__ import annotations

import itertools

from profiler.core.audio import AudioRates
from profiler.core.errors import UsageError
from profiler.kernels import varlen as kernel_varlen
from profiler.layers import STUDY_HIDDEN
from profiler.layers.utterances import MSP_PODCAST_LIKE


#: The head dim of a kernel-level sweep that gives none (``--head-dim``).
KERNEL_HEAD_DIM = 64


def layer_dims(sweep, H: int) -> tuple[int, ...]:
    """The D (per-head dim) axis of a sweep at ``H`` heads: ``--head-dim`` / ``head_dim`` as given, at
    every level. None given: 64 at the kernel level; at layer/model levels the study's model width
    split over the heads, ``D = 1024 / H`` (so ``PointSpec.hidden`` = H * D = 1024; ``H`` that does not
    divide 1024 gets the nearest lower width it divides)."""
    if sweep.head_dims:
        return tuple(sweep.head_dims)
    if sweep.level == "kernel":
        return (KERNEL_HEAD_DIM,)
    return (max(1, STUDY_HIDDEN // H),)


def _rate_options(sweep) -> tuple[tuple[str, str], ...]:
    rates = AudioRates(getattr(sweep, "frame_rate", 50.0), getattr(sweep, "text_rate", 3.0))
    return tuple((k, v) for k, v in rates.options(1.0) if k != "audio_s")


def lengths_with_options(sweep) -> list[tuple[int, tuple[tuple[str, str], ...]]]:
    """``(T, options)`` per length: from ``--audio`` durations (T = frames + tokens, the rates stored as
    options; the duration is ``T / (frame_rate + text_rate)`` up to rounding and is stored in the
    record's ``extra['audio_s']``) or plain ``--lengths``. Utterance-replay points follow, with
    T = the longest possible utterance and options ``replay=N`` and ``distribution``."""
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
    has_bi = bool(kernel.bidirectional) and sweep.level != "kernel"
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


def check_varlen(sweep) -> None:
    """Refuse (``UsageError``, exit 2) ``--varlen`` where it cannot apply: layer/model levels."""
    if sweep.settings.varlen is not None and sweep.level != "kernel":
        raise UsageError(f"--varlen measures packed batches at --level kernel, not {sweep.level!r} (layers pack "
                         f"with --utterances N --packing packed)")
    shaped = [f for f, v in (("--kv-heads", "kv_heads"), ("--value-dim", "value_dims"), ("--window", "windows"))
              if any(getattr(sweep, v, ()) or ())]
    if sweep.settings.varlen is not None and shaped:
        raise UsageError(f"--varlen packs sequences of the default shape; it does not combine with {', '.join(shaped)}")


def varlen_variants(sweep, kernel, backend: str, causal: bool) -> list[tuple[tuple[tuple[str, str], ...], str | None]]:
    """``(options, drop reason or None)`` per layout of one varlen series: packed (dropped for a backend
    without a packed path), and padded unless ``--no-varlen-padded``. Non-varlen sweeps: ``[((), None)]``."""
    st = sweep.settings
    if st.varlen is None:
        return [((), None)]
    layouts = ("packed", "padded") if st.varlen_padded else ("packed",)
    out = []
    for lay in layouts:
        why = kernel_varlen.unsupported(kernel, backend, lay)
        if not causal:
            why = "varlen points are causal (a padded non-causal batch would need a key mask)"
        out.append((kernel_varlen.options(st.varlen, st.seed, lay), why))
    return out


def shape_variants(sweep) -> list[tuple[int, int, int]]:
    """``(kv_heads, value_dim, window)`` per combination of the shape axes (0: the default, which adds no
    id part: ``PointSpec.kv_heads``)."""
    return list(itertools.product(tuple(getattr(sweep, "kv_heads", ()) or (0,)),
                                  tuple(getattr(sweep, "value_dims", ()) or (0,)),
                                  tuple(getattr(sweep, "windows", ()) or (0,))))


def shape_unsupported(kernel, backend: str, shape, phase: str) -> str | None:
    """Why ``kernel/backend`` cannot take the shape axes of ``shape`` (kv heads, value dim, window), or None."""
    if not (shape.kv_heads or shape.value_dim or shape.window):
        return None
    if phase != "prefill":
        return f"{phase} points keep the default shape (no --kv-heads / --value-dim / --window)"
    check = getattr(kernel, "axis_unsupported", None)
    if check is None:
        return f"{kernel.name}: the shape axes are kernel-level"
    why = check(backend, shape)
    if why is None and shape.value_dim:
        why = kernel.check_shape(type(shape)(1, 1, shape.H, shape.value_dim)) or kernel.backend_limit(
            backend, type(shape)(1, 1, shape.H, shape.value_dim))
        why = why and f"value dim: {why}"
    return why
