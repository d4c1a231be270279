"""OOM frontier of each series from a run's records: how long a sequence fits on the device.

For every series: the longest T that ran, the first T that did not (OOM, skipped by the memory
budget, timeout, crash) with its reason, and the predicted largest T from the memory cost model
(``fits.fit_cost`` on inputs + measured peak bytes) and the memory of the device that measured the
series (``analysis.devices``: per device model in multi-device and SLURM runs, else the manifest's
environment; on CPU ``environment['host_memory_bytes']`` when the fingerprint has it). The prediction extrapolates a fit: it ignores allocator rounding, fragmentation, the
CUDA context and other tenants, so it is an upper bound; the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from profiler.analysis.environment import device_memory_bytes
from profiler.analysis.fits import CostModel, fit_cost
from profiler.analysis.series import Series, SeriesKey
from profiler.core.records import PointRecord

FAILED = ("oom", "skipped", "timeout", "crashed")

@dataclass(frozen=True)
class Frontier:
    key: SeriesKey
    longest_ok_T: int | None
    first_failed_T: int | None
    failed_status: str | None
    failed_reason: str | None
    memory_model: CostModel | None
    device_memory_bytes: float | None
    predicted_max_T: float | None
    note: str


_NO_MEMORY = object()


def series_frontier(key: SeriesKey, series: Series | None, records: Iterable[PointRecord],
                    environment: Mapping[str, Any], models: Mapping[str, str] | None = None,
                    memory_bytes: Any = _NO_MEMORY, memory_note: str = "") -> Frontier:
    """Frontier of one series (``records``: all records of the run; filtered to this series).

    ``models``: point id -> device model (``analysis.devices``); ``memory_bytes``: the device's memory
    when the caller knows it per device model (None: unknown, with ``memory_note`` saying why);
    default: looked up in ``environment``.
    """
    models = models or {}
    mine = [r for r in records if SeriesKey.of(r.spec, models.get(r.id, "")) == key and not r.spec.interpret]
    ok_T = [r.spec.T for r in mine if r.status == "ok"]
    failed = sorted((r for r in mine if r.status in FAILED), key=lambda r: r.spec.T)
    # the first failure above the longest success, else the first failure at all
    longest = max(ok_T) if ok_T else None
    first = next((r for r in failed if longest is None or r.spec.T > longest), failed[0] if failed else None)
    model = None
    if series is not None:
        pts = [(p.T, float(p.peak_bytes + (p.record.memory.input_bytes or 0)))
               for p in series.points if p.peak_bytes]
        if len(pts) >= 2:
            model = fit_cost([t for t, _ in pts], [m for _, m in pts])
    mem = device_memory_bytes(environment, key.device) if memory_bytes is _NO_MEMORY else memory_bytes
    pred: float | None = None
    if model is None:
        note = "no memory fit (fewer than two points with peak memory)"
    elif mem is None:
        note = f"device memory {memory_note or 'not recorded in the manifest'}"
    else:
        pred = model.solve(mem)
        note = (f"inputs + measured peak fitted over T={model.T_min}..{model.T_max}, "
                f"solved for {mem / 2**30:.1f} GiB ({model.dominant} term dominates); ignores allocator "
                "rounding, fragmentation, CUDA context and other processes")
    return Frontier(key, longest, first.spec.T if first else None, first.status if first else None,
                    first.reason if first else None, model, mem, pred, note)


def frontiers(series: Sequence[Series], records: Sequence[PointRecord], environment: Mapping[str, Any],
              devices=None) -> list[Frontier]:
    """One frontier per series key seen in the records (series without any ok point included).

    ``devices`` (``analysis.devices.RunDevices``): per-record device models and per-model memory;
    without it, the manifest's environment describes the one device.
    """
    models = devices.models if devices is not None else {}
    by_key = {s.key: s for s in series}
    keys: list[SeriesKey] = list(by_key)
    for r in records:
        k = SeriesKey.of(r.spec, models.get(r.id, ""))
        if not r.spec.interpret and k not in by_key and k not in keys:
            keys.append(k)
    out = []
    for k in keys:
        if devices is None:
            out.append(series_frontier(k, by_key.get(k), records, environment))
            continue
        info = devices.info(k.device_model)
        out.append(series_frontier(k, by_key.get(k), records, environment, models,
                                   memory_bytes=info.memory_bytes if info else None,
                                   memory_note=info.memory_source if info else "not recorded for this device"))
    return out
