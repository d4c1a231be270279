"""Packed variable-length kernel points (``--varlen DIST --tokens N``): inputs, calls, checks, models.

A varlen point is ``PointSpec(B=1, T=N)`` with the options ``varlen=<distribution>`` (its canonical
spelling, ``profiler.core.varlen``) and ``varlen_seed=<seed>``; the sequence lengths follow from them
and ``N`` (``core.varlen.pack``), in the planner and in the worker alike. Two layouts of the same sequences:

``packed`` (no ``layout`` option)
    One ``(1, N, H, D)`` batch: every time-indexed input is drawn at ``(1, N, ...)`` and the
    offsets go in as ``inputs["cu_seqlens"]`` (int64, ``[n + 1]``, on the device). How a backend
    runs it is its declaration ``Backend.varlen`` (one flag; a plugin or a new kernel opts in there):

    * ``"cu_seqlens"``: the backend's ``run`` reads ``inputs["cu_seqlens"]`` and restarts its state or
      causal window at each boundary in one call (fla ``chunk_*`` / ``fused_recurrent_*`` /
      ``parallel_attn``, flash-attn varlen, SDPA on nested jagged tensors, a FlexAttention
      document mask);
    * ``"per_sequence"``: serprof calls ``run`` once per sequence on its slice and concatenates the
      outputs (the CPU torch engines: the state resets because each call starts from zero). The
      timed call includes that loop; it is this backend's packed path, not a model of one;
    * ``""``: no packed path: the packed point is dropped with the reason.

``padded`` (option ``layout=padded``; ``--no-varlen-padded`` turns it off)
    The same sequences right-padded with zeros to the longest, ``(n, max T, ...)``, through the
    ordinary ``run``. Causal kernels never let a padded token reach a real one, so the real tokens'
    outputs are those of each sequence alone. tokens/s counts real tokens only (``N`` per call).

Correctness (``check``): before timing, every sequence's output in the packed (or padded) call is
compared with the kernel's fp32 reference on that sequence alone, over its first
``min(L_i, max_T)`` tokens (causal: a prefix of a sequence alone is that sequence's prefix). The
stored ``Correctness`` is the worst sequence; ``per_sequence_rel_err`` keeps each one. Varlen points
are causal (a non-causal padded batch would need a key mask); the check covers the forward output.

Models: FLOPs and bytes sum the kernel's models over the sequences (packed) or take them at
``(n, max T)`` (padded: the padding is computed); working memory is the kernel's model at
``(1, N)`` (``cu_seqlens``), at ``(1, max T)`` plus the concatenated output (``per_sequence``), or at
``(n, max T)`` plus the padded inputs (``padded``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from profiler.core import varlen as dists
from profiler.core.lazy import lazy_import
from profiler.core.records import Correctness
from profiler.kernels import interpret as fla_interpret
from profiler.kernels.base import Analytic, Shape
from profiler.kernels.verify import KernelContractError, _rel, tolerance_for

torch = lazy_import("torch")

if TYPE_CHECKING:
    from profiler.core.records import PointSpec
    from profiler.kernels.base import KernelSpec

#: ``Backend.varlen`` values.
PATHS = ("cu_seqlens", "per_sequence")
LAYOUTS = ("packed", "padded")
#: Records keep every length up to this many sequences (always their digest and summary).
MAX_STORED_LENGTHS = 4096


def layout(point: PointSpec) -> str:
    return point.option("layout", "packed") or "packed"


def options(dist_text: str, seed: int, layout_: str = "packed") -> tuple[tuple[str, str], ...]:
    """A varlen point's options: the distribution, the seed its lengths are drawn with, the layout."""
    out = (("varlen", dist_text), ("varlen_seed", str(int(seed))))
    return out + ((("layout", "padded"),) if layout_ == "padded" else ())


def packing(point: PointSpec) -> dists.Packing:
    """The lengths of a varlen point: deterministic in its distribution, ``T`` and ``varlen_seed``."""
    return dists.pack(dists.parse(point.option("varlen") or "", "point option varlen"), point.T,
                      int(point.option("varlen_seed", "0") or 0))


def unsupported(kernel: Any, backend: str, layout_: str = "packed") -> str | None:
    """Why ``kernel/backend`` cannot run a varlen point in ``layout_``, or None."""
    if layout_ == "padded":
        return None
    path = getattr(kernel.backends[backend], "varlen", "")
    if path not in PATHS:
        return (f"{kernel.name}/{backend} has no packed (cu_seqlens) path; declare Backend(varlen='cu_seqlens' "
                f"or 'per_sequence') to add one")
    return None


def _time_indexed(t: Any, B: int, T: int) -> bool:
    return torch.is_tensor(t) and t.dim() >= 2 and t.shape[0] == B and t.shape[1] == T


def _slice(inputs: dict, T: int, a: int, b: int) -> dict:
    """Inputs of the tokens ``a:b`` of a packed batch (time-indexed tensors sliced, the rest shared)."""
    return {n: (t[:, a:b] if _time_indexed(t, 1, T) else t) for n, t in inputs.items() if n not in ("cu_seqlens", "max_seqlen")}


def pad(inputs: dict, pack: dists.Packing) -> dict:
    """The packed inputs as a right-padded batch ``(n, max T, ...)`` (zeros after each sequence)."""
    T, n, m = pack.tokens, len(pack.lengths), max(pack.lengths)
    cu = pack.cu_seqlens
    out = {}
    for name, t in inputs.items():
        if name in ("cu_seqlens", "max_seqlen"):
            continue
        if _time_indexed(t, 1, T):
            p = t.new_zeros((n, m) + tuple(t.shape[2:]))
            for i in range(n):
                p[i, : cu[i + 1] - cu[i]] = t[0, cu[i]:cu[i + 1]]
            out[name] = p
        else:
            out[name] = t
    return out


def runner(kernel: KernelSpec, backend: str, point: PointSpec, pack: dists.Packing):
    """``run(inputs, causal) -> (1, N, H, Dv)`` for the packed layout, or ``(n, max T, H, Dv)`` padded."""
    b = kernel.backends[backend]
    if layout(point) == "padded" or b.varlen == "cu_seqlens":
        return b.run
    cu, T = pack.cu_seqlens, pack.tokens

    def per_sequence(inputs, causal):
        outs = [b.run(_slice(inputs, T, cu[i], cu[i + 1]), causal) for i in range(len(cu) - 1)]
        return torch.cat(outs, dim=1)

    return per_sequence


def make_inputs(kernel: KernelSpec, point: PointSpec, device: str, seed: int, pack: dists.Packing) -> dict:
    """Packed inputs ``(1, N, ...)`` with ``cu_seqlens``, or their padded form."""
    inputs = kernel.make_inputs(Shape(1, pack.tokens, point.H, point.D), getattr(torch, point.dtype), device,
                                seed)
    if layout(point) == "padded":
        return pad(inputs, pack)
    inputs["cu_seqlens"] = torch.tensor(pack.cu_seqlens, dtype=torch.long, device=device)
    inputs["max_seqlen"] = max(pack.lengths)   # a python int: varlen APIs that need it (flash-attn) read it
    return inputs


def extra(kernel: KernelSpec, point: PointSpec, pack: dists.Packing) -> dict:
    """``PointRecord.extra['varlen']``: distribution, layout, path, summary (count, min/median/max, waste,
    digest) and the lengths (up to ``MAX_STORED_LENGTHS``)."""
    lay = layout(point)
    path = "padded" if lay == "padded" else kernel.backends[point.backend].varlen
    dist = dists.parse(point.option("varlen") or "", "point option varlen")
    return {"distribution": dist.to_dict(), "layout": lay, "path": path, "real_tokens": pack.tokens,
            "computed_tokens": pack.padded_tokens if lay == "padded" else pack.tokens, **pack.summary(),
            "lengths": list(pack.lengths) if len(pack.lengths) <= MAX_STORED_LENGTHS else None}


def check(kernel: KernelSpec, point: PointSpec, device: str, seed: int, max_T: int | None) -> Correctness:
    """Each sequence of the packed (padded) call against the fp32 reference on that sequence alone."""
    if point.interpret:
        fla_interpret.enable()
    pack = packing(point)
    inputs = make_inputs(kernel, point, device, seed, pack)
    run = runner(kernel, point.backend, point, pack)
    with torch.no_grad():
        out = run(inputs, True)
    lay = layout(point)
    n, m = len(pack.lengths), max(pack.lengths)
    want = (n, m) if lay == "padded" else (1, pack.tokens)
    if not torch.is_tensor(out) or out.dim() != 4 or tuple(out.shape[:2]) != want:
        raise KernelContractError(f"{kernel.name}/{point.backend} varlen ({lay}): output shape "
                                  f"{tuple(getattr(out, 'shape', ()))}, expected {want + (point.H, 'Dv')}")
    packed_in = inputs if lay == "packed" else None
    if packed_in is None:   # the same values, packed: the reference runs on each sequence's own slice
        packed_in = make_inputs(kernel, _packed_twin(point), device, seed, pack)
    cu = pack.cu_seqlens
    limit = max_T if max_T is not None else kernel.reference_max_T
    errs, worst_abs, checked = [], 0.0, 0
    for i, L in enumerate(pack.lengths):
        k = L if limit is None else min(L, int(limit))
        seq = {name: (t.detach().float() if torch.is_tensor(t) and t.is_floating_point() else t)
               for name, t in _slice(packed_in, pack.tokens, cu[i], cu[i] + k).items()}
        with torch.no_grad():
            ref = kernel.reference(seq, True)
        got = out[i:i + 1, :k] if lay == "padded" else out[:, cu[i]:cu[i] + k]
        a, r = _rel(got.float(), ref.float())
        errs.append(r)
        worst_abs = max(worst_abs, a)
        checked = max(checked, k)
    tol = tolerance_for(point.dtype, kernel.backends[point.backend].requires, device)
    worst = max(errs)
    return Correctness(reference=f"{kernel.reference_name}, each sequence alone ({n} sequences)",
                       max_abs_err=worst_abs, max_rel_err=worst, tolerance=tol,
                       passed=bool(worst <= tol and all(math.isfinite(e) for e in errs)), checked_T=checked,
                       per_sequence_rel_err=tuple(errs))


def _packed_twin(point: PointSpec) -> PointSpec:
    return dataclasses.replace(point, options=tuple((k, v) for k, v in point.options if k != "layout"))


def _models(kernel: KernelSpec, point: PointSpec, pack: dists.Packing, itemsize: int):
    n, m = len(pack.lengths), max(pack.lengths)
    if layout(point) == "padded":
        s = Shape(n, m, point.H, point.D)
        return kernel.flops(s, True), kernel.bytes_moved(s, itemsize, True)
    flops = sum(kernel.flops(Shape(1, L, point.H, point.D), True) for L in pack.lengths)
    moved = sum(kernel.bytes_moved(Shape(1, L, point.H, point.D), itemsize, True) for L in pack.lengths)
    return flops, moved


def working_bytes(kernel: KernelSpec, point: PointSpec, pack: dists.Packing, itemsize: int) -> int:
    """Working memory above the inputs (see module doc)."""
    n, m, H, D = len(pack.lengths), max(pack.lengths), point.H, point.D
    if layout(point) == "padded":
        return int(kernel.memory_bytes(Shape(n, m, H, D), itemsize, point.backend, True, point.mode))
    if kernel.backends[point.backend].varlen == "per_sequence":
        out = pack.tokens * H * D * itemsize   # the concatenated output beside the per-sequence outputs
        return int(kernel.memory_bytes(Shape(1, m, H, D), itemsize, point.backend, True, point.mode)) + out
    return int(kernel.memory_bytes(Shape(1, pack.tokens, H, D), itemsize, point.backend, True, point.mode))


def input_bytes(kernel: KernelSpec, point: PointSpec, pack: dists.Packing, itemsize: int) -> int:
    """Bytes of the inputs (and output): the padded batch's for ``layout=padded``."""
    if layout(point) == "padded":
        return int(kernel.input_bytes(Shape(len(pack.lengths), max(pack.lengths), point.H, point.D), itemsize,
                                      point.mode))
    return int(kernel.input_bytes(Shape(1, pack.tokens, point.H, point.D), itemsize, point.mode)) + 8 * (
        len(pack.lengths) + 1)


def analytic(kernel: KernelSpec, point: PointSpec, itemsize: int) -> Analytic:
    """``Analytic`` of a varlen point (FLOPs x3 and no byte model for fwd+bwd, as dense points)."""
    pack = packing(point)
    flops, moved = _models(kernel, point, pack, itemsize)
    flops, moved = float(flops), float(moved)
    if point.mode == "fwdbwd":
        flops, moved = 3.0 * flops, None
    return Analytic(flops, moved, working_bytes(kernel, point, pack, itemsize))
