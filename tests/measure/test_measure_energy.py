"""Energy meters through their seams: NVML as an autospec mock with an exact counter, a fake RAPL tree."""

from __future__ import annotations

import bisect
import json
import math
import pathlib
from unittest import mock

import pynvml
import pytest

from profiler.core.records import (
    Energy,
    PointRecord,
    PointSpec,
    Timing,
    energy_per_call,
    from_dict,
    to_dict,
)
from profiler.measure.energy import (
    DEFAULT_PROBE_S,
    NullEnergyMeter,
    NvmlEnergyMeter,
    PowerSampler,
    RaplEnergyMeter,
    throttle_names,
)


class FakeGpu:
    """A device whose true power is piecewise constant in fake time, read the way NVML reports it.

    * ``counter_mj()``: ``nvmlDeviceGetTotalEnergyConsumption``: integer mJ, updated only every
      ``period_s`` (at ``phase_s + k * period_s``) with the energy integrated up to that update.
    * ``power_mw()``: ``nvmlDeviceGetPowerUsage``: the 1-second moving average of power, as on
      Ampere and newer; a meter that took idle power from it would carry the preceding busy phase.
    Time advances only through ``sleep`` (idle) and ``run`` (a kernel call above idle).
    """

    def __init__(self, idle_w: float = 70.0, period_s: float = 0.1, phase_s: float = 0.037,
                 start_mj: int = 5_000_000, lag_s: float = 0.0) -> None:
        self.t = 0.0
        self.lag_s = lag_s       # an update carries the energy up to ``lag_s`` before it
        self.idle_w = idle_w
        self.period_s = period_s
        self.phase_s = phase_s
        self.start_mj = start_mj
        self._pts = [(-100.0, 0.0, idle_w)]    # (t_s, energy J at t_s, power W from t_s on)

    def __call__(self) -> float:
        return self.t

    def energy_at(self, t: float) -> float:
        i = bisect.bisect_right(self._pts, (t, math.inf, math.inf)) - 1
        t0, e0, p = self._pts[i]
        return e0 + p * (t - t0)

    def _advance(self, dt: float, power_w: float) -> None:
        if power_w != self._pts[-1][2]:
            self._pts.append((self.t, self.energy_at(self.t), power_w))
        self.t += dt

    def sleep(self, s: float) -> None:
        self._advance(s, self.idle_w)

    def run(self, s: float, extra_w: float) -> None:
        self._advance(s, self.idle_w + extra_w)

    def counter_mj(self) -> int:
        tick = self.phase_s + self.period_s * math.floor((self.t - self.phase_s) / self.period_s)
        return self.start_mj + math.floor(self.energy_at(tick - self.lag_s) * 1e3)

    def power_mw(self) -> int:
        return int((self.energy_at(self.t) - self.energy_at(self.t - 1.0)) * 1e3)


def fake_nvml(gpu: FakeGpu, reasons=(0x1,)):
    """pynvml as an autospec mock reading ``gpu`` (real pynvml names and units)."""
    nvml = mock.create_autospec(pynvml)
    nvml.NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    nvml.NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    state = {"reason_calls": 0}
    nvml.nvmlDeviceGetTotalEnergyConsumption.side_effect = lambda h: gpu.counter_mj()
    nvml.nvmlDeviceGetPowerUsage.side_effect = lambda h: gpu.power_mw()
    nvml.nvmlDeviceGetClockInfo.return_value = 1410
    nvml.nvmlDeviceGetTemperature.return_value = 71
    nvml.nvmlDeviceGetHandleByIndex.return_value = "handle0"

    def reason(h):
        i = state["reason_calls"]
        state["reason_calls"] += 1
        return reasons[min(i, len(reasons) - 1)]

    nvml.nvmlDeviceGetCurrentClocksEventReasons.side_effect = reason
    nvml.nvmlDeviceGetCurrentClocksThrottleReasons.side_effect = reason
    return nvml


def nvml_meter(nvml, gpu: FakeGpu, **kw) -> NvmlEnergyMeter:
    kw.setdefault("idle_s", 0.5)
    meter = NvmlEnergyMeter.create(0, nvml=nvml, clock=gpu, sleep=gpu.sleep, sampler_hz=32, **kw)
    assert isinstance(meter, NvmlEnergyMeter)
    return meter


def kernel(gpu: FakeGpu, call_s: float, extra_w: float):
    return lambda: gpu.run(call_s, extra_w)


def busy_prelude(gpu: FakeGpu, extra_w: float = 300.0, s: float = 1.0) -> None:
    """The timing phase just before energy: leaves the 1-s averaged power reading far above idle."""
    gpu.sleep(2.0)
    gpu.run(s, extra_w)


IDLE_W = 50.0          # idle
BUSY_W = 150.0         # while the kernel runs
STEP_S = 0.125         # one call


def test_nvml_joules_per_call_net_of_idle_are_exact():
    gpu = FakeGpu(idle_w=IDLE_W, period_s=0.04)        # 20 periods < 1 s: the window is 1 s
    nvml = fake_nvml(gpu)
    syncs = []
    e = nvml_meter(nvml, gpu).measure(kernel(gpu, STEP_S, BUSY_W - IDLE_W), window_s=1.0,
                                      sync=lambda: syncs.append(gpu.t))
    # 8 calls x 0.125 s = 1 s window; 150 J gross, 50 W x 1 s idle -> 100 J net -> 12.5 J per call
    assert e.meter == "nvml"
    assert e.calls == 8 and e.window_s == pytest.approx(1.0, abs=1e-9)
    assert e.idle_power_w == pytest.approx(50.0, rel=1e-3)
    assert e.mean_power_w == pytest.approx(150.0, rel=1e-3)
    assert e.energy_j == pytest.approx(12.5, rel=1e-3)
    assert e.gross_energy_j == pytest.approx(150.0 * STEP_S, rel=1e-3)
    assert e.below_resolution is False and e.reason is None
    assert e.energy_ci_j[0] < 12.5 < e.energy_ci_j[1]
    assert e.throttled is False and e.throttle_reasons == ()
    assert len(e.samples) >= 2
    assert {"t_s", "power_w", "sm_clock_mhz", "temp_c", "throttle"} <= set(e.samples[0])
    assert e.samples[0]["sm_clock_mhz"] == 1410 and e.samples[0]["temp_c"] == 71
    nvml.nvmlDeviceGetClockInfo.assert_called_with("handle0", pynvml.NVML_CLOCK_SM)
    assert len(syncs) >= 2      # synchronised before the window opens and before it closes


def test_nvml_throttled_sample_flags_the_window():
    gpu = FakeGpu(idle_w=IDLE_W, period_s=0.04)
    nvml = fake_nvml(gpu, reasons=(0x4 | 0x40, 0x1))   # power cap + HW thermal, then idle
    e = nvml_meter(nvml, gpu).measure(kernel(gpu, STEP_S, BUSY_W - IDLE_W), window_s=1.0)
    assert e.throttled is True
    assert e.throttle_reasons == ("hw_thermal_slowdown", "sw_power_cap")
    assert e.energy_j == pytest.approx(12.5, rel=1e-3)


def test_nvml_falls_back_to_throttle_reasons_on_old_modules():
    gpu = FakeGpu()
    nvml = fake_nvml(gpu, reasons=(0x8,))
    del nvml.nvmlDeviceGetCurrentClocksEventReasons
    e = nvml_meter(nvml, gpu).measure(kernel(gpu, STEP_S, 100.0), window_s=0.5)
    assert e.throttled is True and e.throttle_reasons == ("hw_slowdown",)
    assert nvml.nvmlDeviceGetCurrentClocksThrottleReasons.called


def test_nvml_counter_period_is_measured_once_and_cached():
    gpu = FakeGpu(period_s=0.1)
    meter = nvml_meter(fake_nvml(gpu), gpu)
    assert meter.counter_period_s is None
    assert meter.probe() == pytest.approx(0.1, abs=2e-3)
    assert gpu.t < DEFAULT_PROBE_S                       # bounded: five updates, not the whole bound
    assert meter.counter_step_j == pytest.approx(7.0, abs=2e-3)   # 70 W x 0.1 s per update
    gpu.period_s = 0.05
    e = meter.measure(kernel(gpu, 0.01, 300.0), window_s=0.1)
    assert e.counter_period_s == pytest.approx(0.1, abs=2e-3)     # not probed again


@pytest.mark.parametrize("period_s, least_s", [(0.1, 2.0), (0.02, 1.0)])
def test_nvml_window_spans_20_counter_periods_and_a_second(period_s, least_s):
    gpu = FakeGpu(period_s=period_s)
    e = nvml_meter(fake_nvml(gpu), gpu).measure(kernel(gpu, 0.01, 300.0), window_s=0.05)
    assert e.counter_period_s == pytest.approx(period_s, rel=0.05)
    assert e.window_s >= least_s and e.window_s >= 20 * e.counter_period_s
    assert e.window_s < least_s + 0.02
    assert e.calls == pytest.approx(least_s / 0.01, abs=1)


@pytest.mark.parametrize("lag_s, call_s", [(0.0, 0.01), (0.095, 0.01), (0.095, 0.0123), (0.095, 0.104)])
def test_nvml_large_op_is_exact_to_the_counter_resolution(lag_s, call_s):
    """Exact to one counter step per window, also when an update carries energy up to a period old."""
    gpu = FakeGpu(idle_w=70.0, period_s=0.1, lag_s=lag_s)
    busy_prelude(gpu)
    e = nvml_meter(fake_nvml(gpu), gpu).measure(kernel(gpu, call_s, 300.0), window_s=1.0)
    truth = 300.0 * call_s                                 # 300 W above idle while a call runs
    assert not e.below_resolution and e.reason is None
    assert abs(e.energy_j - truth) <= e.counter_step_j / e.calls
    assert e.energy_ci_j[0] <= truth <= e.energy_ci_j[1]
    assert e.gross_energy_j == pytest.approx(370.0 * call_s, abs=e.counter_step_j / e.calls)
    assert e.idle_power_w == pytest.approx(70.0, abs=0.5)  # from the counter, not the 1-s power average
    assert e.idle_power_before_w == pytest.approx(70.0, abs=0.5)
    assert e.idle_power_after_w == pytest.approx(70.0, abs=0.5)


def test_nvml_tiny_op_is_below_resolution_not_negative():
    gpu = FakeGpu(idle_w=70.0, period_s=0.1)
    busy_prelude(gpu)
    assert gpu.power_mw() / 1e3 > 300.0                    # the 1-s power reading still remembers the busy phase
    e = nvml_meter(fake_nvml(gpu), gpu).measure(kernel(gpu, 50e-6, 0.005), window_s=0.5)   # 5 mW above idle
    assert e.below_resolution is True and e.energy_j is None
    assert e.reason.startswith("below resolution: net ") and "J/call within ±" in e.reason
    lo, hi = e.energy_ci_j
    assert lo < 0.0 < hi
    assert e.gross_energy_j == pytest.approx(70.0 * 50e-6, rel=0.01)
    assert e.idle_power_w == pytest.approx(70.0, abs=0.5)
    assert energy_per_call(e) == (None, "below_resolution")


@pytest.mark.parametrize("extra_w", [0.0, 0.001, 0.5, 5.0, 300.0])
@pytest.mark.parametrize("call_s", [1e-4, 3e-3])
def test_nvml_energy_is_never_negative(extra_w, call_s):
    gpu = FakeGpu(idle_w=120.0, period_s=0.1, phase_s=0.011)
    busy_prelude(gpu, extra_w=400.0)
    e = nvml_meter(fake_nvml(gpu), gpu).measure(kernel(gpu, call_s, extra_w), window_s=0.5)
    assert (e.energy_j is None) == e.below_resolution
    if e.energy_j is not None:
        assert e.energy_j > 0.0 and e.energy_ci_j[0] > 0.0
        assert e.energy_ci_j[0] <= extra_w * call_s <= e.energy_ci_j[1]
    assert e.gross_energy_j > 0.0
    if extra_w == 300.0:
        assert e.energy_j is not None


def test_nvml_idle_drift_widens_the_interval():
    def measure(drift_w: float):
        gpu = FakeGpu(idle_w=70.0, period_s=0.1)
        op = kernel(gpu, 0.01, 300.0)

        def heating() -> None:                 # idle power rises once the kernel has run (leakage)
            gpu.idle_w = 70.0 + drift_w
            op()

        return nvml_meter(fake_nvml(gpu), gpu).measure(heating, window_s=1.0)

    flat, drifting = measure(0.0), measure(10.0)
    assert drifting.idle_power_before_w == pytest.approx(70.0, abs=0.5)
    assert drifting.idle_power_after_w == pytest.approx(80.0, abs=0.5)
    width = lambda e: e.energy_ci_j[1] - e.energy_ci_j[0]
    span_s = drifting.window_s + 0.1                  # the window plus about one period of quiet tail
    assert width(drifting) - width(flat) == pytest.approx(2 * 10.0 * span_s / drifting.calls, rel=0.1)


def test_nvml_stalled_counter_gives_no_number_within_the_bound():
    gpu = FakeGpu()
    nvml = fake_nvml(gpu)
    nvml.nvmlDeviceGetTotalEnergyConsumption.side_effect = lambda h: 1234
    ran = []
    e = nvml_meter(nvml, gpu, probe_s=0.5).measure(lambda: ran.append(1), window_s=1.0)
    assert e.energy_j is None and "cannot measure its update period" in e.reason and not ran
    assert gpu.t < 0.6


def test_nvml_unavailable_gives_a_null_meter_with_the_reason():
    nvml = mock.create_autospec(pynvml)
    nvml.nvmlInit.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    meter = NvmlEnergyMeter.create(0, nvml=nvml)
    assert isinstance(meter, NullEnergyMeter) and not meter.available
    ran = []
    e = meter.measure(lambda: ran.append(1), window_s=1.0)
    assert e.energy_j is None and "NVML unavailable" in e.reason and not ran


def test_nvml_without_energy_counter_says_so():
    nvml = mock.create_autospec(pynvml)
    nvml.nvmlDeviceGetTotalEnergyConsumption.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    meter = NvmlEnergyMeter.create(0, nvml=nvml)
    assert isinstance(meter, NullEnergyMeter) and "energy counter" in meter.reason


def test_throttle_names():
    assert throttle_names(0) == ()
    assert throttle_names(0x1 | 0x2 | 0x100) == ()       # idle, app clocks, display clock: not throttling
    assert throttle_names(0x10) == ("sync_boost",)        # held down to match a sync-boost group (issue 20)
    assert throttle_names(0x20 | 0x80) == ("sw_thermal_slowdown", "hw_power_brake_slowdown")


def test_power_sampler_takes_start_and_stop_samples():
    values = iter(range(1000))
    s = PowerSampler(lambda: {"power_w": float(next(values))}, hz=1000)
    s.start()
    out = s.stop()
    assert len(out) >= 2 and out[0]["power_w"] == 0.0
    assert [x["t_s"] for x in out] == sorted(x["t_s"] for x in out)


# --------------------------------------------------------------------------- RAPL

MAX_UJ = 1_000_000_000          # counter wraps at 1000 J


def rapl_tree(root: pathlib.Path, start_uj: int) -> pathlib.Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{start_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{MAX_UJ}\n")
    sub = root / "intel-rapl:0:0"          # a sub-domain (core): must not be double-counted
    sub.mkdir()
    (sub / "energy_uj").write_text("0\n")
    (sub / "max_energy_range_uj").write_text(f"{MAX_UJ}\n")
    return zone


def rapl_package(tmp_path: pathlib.Path, start_uj: int, idle_w: float = 20.0) -> tuple[pathlib.Path, FakeGpu]:
    """A RAPL package zone whose ``energy_uj`` follows a fake package (1 ms updates), wrapping at MAX_UJ."""
    zone = rapl_tree(tmp_path, start_uj=start_uj)
    pkg = FakeGpu(idle_w=idle_w, period_s=2.0 ** -10, phase_s=2.0 ** -12)   # ~1 ms; binary fractions keep time exact

    def write() -> None:
        tick = pkg.phase_s + pkg.period_s * math.floor((pkg.t - pkg.phase_s) / pkg.period_s)
        (zone / "energy_uj").write_text(f"{(start_uj + math.floor(pkg.energy_at(tick) * 1e6)) % MAX_UJ}\n")

    real_advance = pkg._advance

    def advance(dt: float, power_w: float) -> None:
        real_advance(dt, power_w)
        write()

    pkg._advance = advance
    return zone, pkg


def rapl_meter(root: pathlib.Path, pkg: FakeGpu) -> RaplEnergyMeter:
    meter = RaplEnergyMeter.create(root, clock=pkg, sleep=pkg.sleep, idle_s=2.0 ** -4)
    assert isinstance(meter, RaplEnergyMeter)
    meter.poll_s = 2.0 ** -13
    return meter


def test_rapl_wraparound_and_idle_subtraction(tmp_path):
    zone, pkg = rapl_package(tmp_path, start_uj=MAX_UJ - 30_000_000)   # 30 J before the wrap; 20 W idle
    meter = rapl_meter(tmp_path, pkg)
    assert [z.name for z in meter.zones] == ["intel-rapl:0"]
    e = meter.measure(kernel(pkg, 0.25, 40.0), window_s=1.0)      # 60 W for 0.25 s per call
    # 4 calls x 15 J = 60 J gross (wrapping past 1000 J), minus 20 W x 1 s -> 40 J -> 10 J per call
    assert e.meter == "rapl" and e.calls == 4 and e.window_s == pytest.approx(1.0, abs=1e-9)
    assert e.idle_power_w == pytest.approx(20.0, rel=1e-3)
    assert e.idle_power_before_w == pytest.approx(20.0, rel=1e-3) and e.idle_power_after_w == pytest.approx(20.0, rel=1e-3)
    assert e.counter_period_s == pytest.approx(2.0 ** -10)
    assert e.energy_j == pytest.approx(10.0, rel=1e-3) and not e.below_resolution
    assert e.energy_ci_j[0] <= 10.0 <= e.energy_ci_j[1]
    assert e.gross_energy_j == pytest.approx(15.0, rel=1e-3)
    assert e.throttled is None and e.samples == ()
    assert int((zone / "energy_uj").read_text()) < 100_000_000     # it did wrap


def test_rapl_tiny_op_is_below_resolution(tmp_path):
    _, pkg = rapl_package(tmp_path, start_uj=0)
    meter = rapl_meter(tmp_path, pkg)
    e = meter.measure(kernel(pkg, 1e-3, 1e-4), window_s=0.1)       # 0.1 mW above idle
    assert e.window_s >= 1.0
    assert e.below_resolution and e.energy_j is None and e.reason.startswith("below resolution")
    assert e.energy_ci_j[0] < 0.0 < e.energy_ci_j[1]


def test_rapl_permission_denied(tmp_path, monkeypatch):
    rapl_tree(tmp_path, start_uj=0)
    real = pathlib.Path.read_text

    def deny(self, *a, **kw):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "read_text", deny)
    meter = RaplEnergyMeter.create(tmp_path)
    assert isinstance(meter, NullEnergyMeter)
    assert "permission denied" in meter.reason and "energy_uj" in meter.reason
    assert meter.measure(lambda: None, window_s=1.0).energy_j is None


def test_rapl_absent(tmp_path):
    meter = RaplEnergyMeter.create(tmp_path / "nope")
    assert isinstance(meter, NullEnergyMeter) and "no RAPL" in meter.reason
    e = meter.measure(lambda: None, window_s=1.0)
    assert e.energy_j is None and e.meter is None and e.reason == meter.reason


# --------------------------------------------------------------------------- stored records


OLD_RECORD_ENERGY = {    # an H200 record of 2026-11-30 (old schema; idle from the 1-s power average)
    "energy_j": -0.03312, "meter": "nvml", "reason": None, "window_s": 0.5021, "calls": 40,
    "idle_power_w": 301.2, "mean_power_w": 298.6, "throttled": False, "throttle_reasons": [],
    "samples": [{"power_w": 301.2, "sm_clock_mhz": 1980, "temp_c": 36, "throttle": [], "t_s": 0.0}],
}


def test_old_record_with_negative_energy_loads_and_reads_below_resolution():
    e = from_dict(Energy, OLD_RECORD_ENERGY, "points.jsonl:3.energy")
    assert e.energy_j == -0.03312 and e.below_resolution is False and e.energy_ci_j is None
    assert e.gross_energy_j is None and e.counter_period_s is None
    assert energy_per_call(e) == (None, "below_resolution")
    rec = from_dict(PointRecord, {"spec": {"kernel": "softmax", "backend": "sdpa", "device": "cuda"},
                                  "status": "ok", "energy": OLD_RECORD_ENERGY}, "points.jsonl:3")
    assert energy_per_call(rec.energy) == (None, "below_resolution")


def test_energy_per_call_states_and_new_fields_round_trip():
    assert energy_per_call(None) == (None, "none")
    assert energy_per_call(Energy(energy_j=None, reason="no RAPL")) == (None, "none")
    assert energy_per_call(Energy(energy_j=0.0)) == (None, "below_resolution")
    assert energy_per_call(Energy(energy_j=0.25)) == (0.25, "ok")
    new = Energy(energy_j=None, meter="nvml", reason="below resolution: net 1e-06 J/call within ±0.001 J",
                 gross_energy_j=0.5, energy_ci_j=(-0.001, 0.001), idle_power_before_w=70.0,
                 idle_power_after_w=71.0, counter_period_s=0.1, counter_step_j=7.0, below_resolution=True)
    back = from_dict(Energy, json.loads(json.dumps(to_dict(new))))
    assert back == new and energy_per_call(back) == (None, "below_resolution")


def test_analysis_never_sees_a_negative_energy():
    from profiler.analysis.series import point_stats

    spec = PointSpec(kernel="softmax", backend="sdpa", device="cuda")
    timing = Timing(samples_s=(1e-3, 1.1e-3, 0.9e-3), timer="cuda_event")
    old = PointRecord(spec=spec, status="ok", timing=timing, energy=from_dict(Energy, OLD_RECORD_ENERGY))
    ok = PointRecord(spec=spec, status="ok", timing=timing, energy=Energy(energy_j=0.2, gross_energy_j=0.5))
    assert point_stats(old).energy_j is None
    assert point_stats(ok).energy_j == 0.2
