"""Packed vs padded variable-length batches: tokens/s per distribution (values only; the report renders).

From the kernel-level varlen points of a run (``--varlen``; ``profiler.kernels.varlen``): one row per
(distribution, token budget, kernel, backend, dtype, mode, H, D), joining the packed point and the
padded point of the same sequences. tokens/s = real tokens (the budget) / the median call time for
both layouts, so padding counts as waste, never as throughput; ``speedup`` = padded median / packed
median (> 1: packing pays). ``padding_waste`` = 1 - real / (count x longest), the share of a padded
batch's tokens that are padding. ``max_rel_err`` is the worst sequence of the per-sequence check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from profiler.core.records import PointRecord


@dataclass(frozen=True)
class VarlenRow:
    distribution: str                    # the canonical spelling (``profiler.core.varlen``)
    tokens: int                          # the budget: real tokens per call
    kernel: str
    backend: str
    device: str
    dtype: str
    mode: str
    H: int
    D: int
    count: int | None                    # sequences in the batch
    median_len: float | None
    max_len: int | None
    padding_waste: float | None
    path: str | None                     # how the packed call ran: "cu_seqlens" | "per_sequence" (None: no packed point)
    packed_s: float | None               # median seconds per call
    padded_s: float | None
    packed_status: str | None            # the record status (a dropped layout has no record: None)
    padded_status: str | None
    max_rel_err: float | None            # worst sequence, worst layout

    @property
    def packed_tokens_per_s(self) -> float | None:
        return self.tokens / self.packed_s if self.packed_s else None

    @property
    def padded_tokens_per_s(self) -> float | None:
        return self.tokens / self.padded_s if self.padded_s else None

    @property
    def speedup(self) -> float | None:
        """Padded median / packed median (> 1: the packed call is faster)."""
        return self.padded_s / self.packed_s if self.packed_s and self.padded_s else None


@dataclass(frozen=True)
class VarlenAnalysis:
    rows: tuple[VarlenRow, ...]

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.distribution for r in self.rows))


def analyze_varlen(records: Iterable[PointRecord]) -> VarlenAnalysis | None:
    """Packed and padded varlen points joined per series (None: the run has none)."""
    groups: dict[tuple, dict[str, PointRecord]] = {}
    for r in records:
        s = r.spec
        dist = s.option("varlen")
        if not dist:
            continue
        key = (dist, s.T, s.kernel, s.backend, s.device, s.dtype, s.mode, s.H, s.D, s.option("varlen_seed"))
        groups.setdefault(key, {})[s.option("layout", "packed") or "packed"] = r
    rows = []
    for key, by in groups.items():
        dist, T, kernel, backend, device, dtype, mode, H, D, _seed = key
        info = next((dict(r.extra.get("varlen") or {}) for r in by.values() if r.extra.get("varlen")), {})
        errs = [r.correctness.max_rel_err for r in by.values()
                if r.correctness is not None and r.correctness.max_rel_err is not None]
        packed, padded = by.get("packed"), by.get("padded")
        rows.append(VarlenRow(
            distribution=dist, tokens=T, kernel=kernel, backend=backend, device=device, dtype=dtype, mode=mode,
            H=H, D=D, count=info.get("count"), median_len=info.get("median"), max_len=info.get("max"),
            padding_waste=info.get("padding_waste"),
            path=(packed.extra.get("varlen") or {}).get("path") if packed is not None else None,
            packed_s=_median(packed), padded_s=_median(padded),
            packed_status=packed.status if packed is not None else None,
            padded_status=padded.status if padded is not None else None,
            max_rel_err=max(errs) if errs else None))
    if not rows:
        return None
    rows.sort(key=lambda r: (r.distribution, r.tokens, r.kernel, r.backend, r.dtype, r.mode, r.H, r.D))
    return VarlenAnalysis(tuple(rows))


def _median(r: PointRecord | None) -> float | None:
    if r is None or r.status != "ok" or r.timing is None:
        return None
    return r.timing.median_s
