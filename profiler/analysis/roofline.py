"""Roofline: how close each point comes to the machine's compute and memory-bandwidth limits.

Achieved FLOP/s = analytic FLOPs per call (``record.flops``) / median latency; achieved bytes/s =
analytic minimum DRAM/HBM traffic (``record.bytes_moved``) / median latency. Analytic counts are
lower bounds on the work a kernel must do, so these are *useful* throughputs, not hardware counters.

Peaks: the calibration the runner measured at the start of the run (``manifest.calibration``:
``matmul_flops_per_s_by_dtype``, a mapping by dtype, and ``bandwidth_bytes_per_s``; older manifests
have only ``matmul_flops_per_s``, the fp32 rate, as a number or a mapping) and, for common GPUs,
spec-sheet peaks (dense, no sparsity; labelled as spec-sheet values: real kernels rarely exceed
~70-80% of them).

One roof per dtype. Each point is placed against the compute ceiling of its *own* dtype: a bf16
point under a bf16 matmul rate, never under the fp32 one (on an H200 bf16 SDPA reaches ~9x the fp32
matmul rate, so an fp32 roof is no roof). Order of sources for a dtype: the calibration's rate for
that dtype; else (an old manifest with an fp32 rate only, a reduced-precision point) the spec
sheet's rate for that dtype with the calibrated bandwidth, noted; else the fp32 calibration, noted
as not the point's dtype. The roof has two segments: the bandwidth slope ``bytes/s x intensity``
and the compute ceiling; a point is memory- or compute-bound by which segment is lower at its
intensity (the ridge is at ``flops / bandwidth`` FLOP per byte).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from profiler.analysis.environment import device_name
from profiler.analysis.series import PointStats, Series

#: Spec-sheet peaks (vendor data sheets; dense tensor-core rates, no sparsity). FLOP/s by dtype, bytes/s.
SPEC_PEAKS: dict[str, dict[str, float]] = {
    "H100 SXM": {"float32": 67e12, "tf32": 494.7e12, "float16": 989.4e12, "bfloat16": 989.4e12, "bandwidth": 3.35e12},
    "H100 PCIe": {"float32": 51e12, "tf32": 378e12, "float16": 756e12, "bfloat16": 756e12, "bandwidth": 2.0e12},
    "A100 80GB": {"float32": 19.5e12, "tf32": 156e12, "float16": 312e12, "bfloat16": 312e12, "bandwidth": 2.039e12},
    "A100 40GB": {"float32": 19.5e12, "tf32": 156e12, "float16": 312e12, "bfloat16": 312e12, "bandwidth": 1.555e12},
    "L4": {"float32": 30.3e12, "tf32": 60e12, "float16": 121e12, "bfloat16": 121e12, "bandwidth": 300e9},
    "H200 SXM": {"float32": 67e12, "tf32": 494.7e12, "float16": 989.4e12, "bfloat16": 989.4e12, "bandwidth": 4.8e12},
    "H200 NVL": {"float32": 60e12, "tf32": 417.5e12, "float16": 835e12, "bfloat16": 835e12, "bandwidth": 4.8e12},
    "RTX 4090": {"float32": 82.6e12, "tf32": 82.6e12, "float16": 165.2e12, "bfloat16": 165.2e12, "bandwidth": 1.008e12},
}


def spec_peaks(device_name: str | None) -> tuple[str, dict[str, float]] | None:
    """Spec-sheet entry matching a device name (e.g. 'NVIDIA H100 80GB HBM3' -> 'H100 SXM')."""
    if not device_name:
        return None
    n = device_name.upper()
    if "H200" in n:
        return ("H200 NVL", SPEC_PEAKS["H200 NVL"]) if "NVL" in n else ("H200 SXM", SPEC_PEAKS["H200 SXM"])
    if "H100" in n:
        return ("H100 PCIe", SPEC_PEAKS["H100 PCIe"]) if "PCIE" in n else ("H100 SXM", SPEC_PEAKS["H100 SXM"])
    if "A100" in n:
        return ("A100 40GB", SPEC_PEAKS["A100 40GB"]) if "40GB" in n else ("A100 80GB", SPEC_PEAKS["A100 80GB"])
    if "4090" in n:
        return "RTX 4090", SPEC_PEAKS["RTX 4090"]
    if n.endswith(" L4") or n == "L4" or "NVIDIA L4" in n:
        return "L4", SPEC_PEAKS["L4"]
    return None


@dataclass(frozen=True)
class Peaks:
    flops_per_s: float | None
    bytes_per_s: float | None
    source: str            # "calibration" | "spec sheet: H100 SXM" | "none"
    dtype: str = ""        # the dtype whose compute rate ``flops_per_s`` is
    note: str = ""         # why this is not the point's own calibrated dtype, when it is not

    @property
    def label(self) -> str:
        return f"{self.source}" + (f" ({self.note})" if self.note else "")


def _num(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def _pick(value: Any, dtype: str) -> float | None:
    if isinstance(value, Mapping):
        value = value.get(dtype, value.get("float32"))
    return _num(value)


def calibrated_rate(cal: Mapping[str, Any], dtype: str) -> float | None:
    """The calibration's matmul rate for exactly ``dtype`` (None when it was not measured)."""
    for key in ("matmul_flops_per_s_by_dtype", "matmul_flops_per_s"):
        v = cal.get(key)
        if isinstance(v, Mapping) and _num(v.get(dtype)):
            return _num(v.get(dtype))
    if dtype == "float32":
        return _pick(cal.get("matmul_flops_per_s"), "float32")
    return None


def peaks_for(calibration: Mapping[str, Any] | None, device: str, dtype: str,
              device_name: str | None) -> list[Peaks]:
    """Peaks for points of ``dtype``, the one to use first (module docstring: calibration of the
    dtype; else spec sheet of the dtype, noted; else the fp32 calibration, noted), then the spec sheet."""
    out = []
    sp = spec_peaks(device_name) if device == "cuda" else None
    if calibration:
        cal = calibration.get(device, calibration) if isinstance(calibration.get(device), Mapping) else calibration
        b = _pick(cal.get("bandwidth_bytes_per_s"), dtype)
        f = calibrated_rate(cal, dtype)
        if f:
            out.append(Peaks(f, b, "calibration", dtype))
        else:
            f32 = calibrated_rate(cal, "float32")
            if sp and sp[1].get(dtype):
                out.append(Peaks(sp[1][dtype], b or sp[1]["bandwidth"], f"spec sheet: {sp[0]}", dtype,
                                 f"no {dtype} calibration in this run; bandwidth " +
                                 ("calibrated" if b else "from the spec sheet")))
            if f32 or b:
                out.append(Peaks(f32, b, "calibration", "float32",
                                 f"fp32 rate: no {dtype} calibration in this run" if f32 else ""))
    if sp and not any(p.source == f"spec sheet: {sp[0]}" for p in out):
        out.append(Peaks(sp[1].get(dtype), sp[1]["bandwidth"], f"spec sheet: {sp[0]}", dtype))
    return out


@dataclass(frozen=True)
class RooflinePoint:
    series_label: str
    variant: str
    T: int
    flops_per_s: float | None
    bytes_per_s: float | None
    intensity: float | None            # FLOP per byte
    frac_flops: float | None           # of the first peak
    frac_bw: float | None
    bound: str | None                  # "compute" | "memory" (which roof is lower at this intensity)


def roofline_point(series_label: str, variant: str, p: PointStats, peaks: Sequence[Peaks]) -> RooflinePoint:
    rec = p.record
    fl = rec.flops / p.median_s if rec.flops and p.median_s > 0 else None
    bw = rec.bytes_moved / p.median_s if rec.bytes_moved and p.median_s > 0 else None
    ai = rec.flops / rec.bytes_moved if rec.flops and rec.bytes_moved else None
    pk = peaks[0] if peaks else None
    ff = fl / pk.flops_per_s if pk and pk.flops_per_s and fl else None
    fb = bw / pk.bytes_per_s if pk and pk.bytes_per_s and bw else None
    bound = None
    if pk and pk.flops_per_s and pk.bytes_per_s and ai:
        bound = "compute" if ai * pk.bytes_per_s >= pk.flops_per_s else "memory"
    return RooflinePoint(series_label, variant, p.T, fl, bw, ai, ff, fb, bound)


def series_peaks(key, calibration: Mapping[str, Any] | None, environment: Mapping[str, Any],
                 devices=None) -> list[Peaks]:
    """Peaks for one series: its own device model's calibration and spec sheet.

    With ``devices`` (``analysis.devices.RunDevices``) the model and calibration come from the device
    that measured the series (per-record worker ``device_name``; a SLURM manifest describes the
    submitting host, so its environment is never used for the name). Without it, the manifest's.
    """
    if devices is None:
        return peaks_for(calibration, key.device, key.dtype, device_name(environment, key.device))
    info = devices.info(key.device_model)
    name = info.model if info is not None and info.model != "(not recorded)" else None
    if name is None and not devices.submit_host:
        name = device_name(environment, key.device)
    return peaks_for(info.calibration if info is not None else None, key.device, key.dtype, name)


def roofline(series: Sequence[Series], calibration: Mapping[str, Any] | None,
             environment: Mapping[str, Any], device_name_of=None, devices=None) -> list[RooflinePoint]:
    """Roofline points of every series (peaks per series: ``series_peaks``)."""
    out = []
    for s in series:
        if devices is None and device_name_of is not None:
            pk = peaks_for(calibration, s.key.device, s.key.dtype, device_name_of(s.key.device))
        else:
            pk = series_peaks(s.key, calibration, environment, devices)
        for p in s.points:
            rp = roofline_point(s.key.label, s.key.variant, p, pk)
            if rp.flops_per_s is not None or rp.bytes_per_s is not None:
                out.append(rp)
    return out
