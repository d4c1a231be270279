"""Energy meters through their seams: NVML as an autospec mock with an exact counter, a fake RAPL tree."""

from __future__ import annotations

import pathlib
from unittest import mock

import pynvml

from profiler.measure.energy import (NullEnergyMeter, NvmlEnergyMeter, PowerSampler, RaplEnergyMeter,
                                     throttle_names)


class Clock:
    """Seconds as exact binary fractions (every step below is a power of two)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


IDLE_MW = 50_000       # 50 W idle
BUSY_W = 150.0         # while the kernel runs
STEP_S = 0.125         # one call


def fake_nvml(clock: Clock, reasons=(0x1,)):
    nvml = mock.create_autospec(pynvml)
    nvml.NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    nvml.NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    state = {"mj": 10_000_000, "reason_calls": 0}
    nvml.nvmlDeviceGetTotalEnergyConsumption.side_effect = lambda h: state["mj"]
    nvml.nvmlDeviceGetPowerUsage.return_value = IDLE_MW
    nvml.nvmlDeviceGetClockInfo.return_value = 1410
    nvml.nvmlDeviceGetTemperature.return_value = 71
    nvml.nvmlDeviceGetHandleByIndex.return_value = "handle0"

    def reason(h):
        i = state["reason_calls"]
        state["reason_calls"] += 1
        return reasons[min(i, len(reasons) - 1)]

    nvml.nvmlDeviceGetCurrentClocksEventReasons.side_effect = reason
    nvml.nvmlDeviceGetCurrentClocksThrottleReasons.side_effect = reason

    def kernel() -> None:
        clock.t += STEP_S
        state["mj"] += int(BUSY_W * STEP_S * 1000)

    return nvml, state, kernel


def nvml_meter(nvml, clock: Clock) -> NvmlEnergyMeter:
    meter = NvmlEnergyMeter.create(0, nvml=nvml, clock=clock, sleep=clock.sleep, sampler_hz=32, idle_s=0.5)
    assert isinstance(meter, NvmlEnergyMeter)
    return meter


def test_nvml_joules_per_call_net_of_idle_are_exact():
    clock = Clock()
    nvml, state, kernel = fake_nvml(clock)
    syncs = []
    e = nvml_meter(nvml, clock).measure(kernel, window_s=1.0, sync=lambda: syncs.append(clock.t))
    # 8 calls x 0.125 s = 1 s window; 150 J gross, 50 W x 1 s idle -> 100 J net -> 12.5 J per call
    assert e.meter == "nvml"
    assert e.calls == 8 and e.window_s == 1.0
    assert e.idle_power_w == 50.0
    assert e.mean_power_w == 150.0
    assert e.energy_j == 12.5
    assert e.throttled is False and e.throttle_reasons == ()
    assert len(e.samples) >= 2
    assert {"t_s", "power_w", "sm_clock_mhz", "temp_c", "throttle"} <= set(e.samples[0])
    assert e.samples[0]["sm_clock_mhz"] == 1410 and e.samples[0]["temp_c"] == 71
    nvml.nvmlDeviceGetClockInfo.assert_called_with("handle0", pynvml.NVML_CLOCK_SM)
    assert len(syncs) >= 2      # synchronised before the window opens and before it closes


def test_nvml_throttled_sample_flags_the_window():
    clock = Clock()
    nvml, _, kernel = fake_nvml(clock, reasons=(0x4 | 0x40, 0x1))   # power cap + HW thermal, then idle
    e = nvml_meter(nvml, clock).measure(kernel, window_s=1.0)
    assert e.throttled is True
    assert e.throttle_reasons == ("hw_thermal_slowdown", "sw_power_cap")
    assert e.energy_j == 12.5


def test_nvml_falls_back_to_throttle_reasons_on_old_modules():
    clock = Clock()
    nvml, _, kernel = fake_nvml(clock, reasons=(0x8,))
    del nvml.nvmlDeviceGetCurrentClocksEventReasons
    e = nvml_meter(nvml, clock).measure(kernel, window_s=0.5)
    assert e.throttled is True and e.throttle_reasons == ("hw_slowdown",)
    assert nvml.nvmlDeviceGetCurrentClocksThrottleReasons.called


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
    assert throttle_names(0x1 | 0x2 | 0x10) == ()        # idle, app clocks, sync boost: not throttling
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


def test_rapl_wraparound_and_idle_subtraction(tmp_path):
    zone = rapl_tree(tmp_path, start_uj=MAX_UJ - 30_000_000)   # 30 J before the wrap
    clock = Clock()

    def add(joules: float) -> None:
        now = int((zone / "energy_uj").read_text())
        (zone / "energy_uj").write_text(f"{(now + int(joules * 1e6)) % MAX_UJ}\n")

    def sleep(s: float) -> None:     # idle: 20 W
        clock.t += s
        add(20.0 * s)

    def kernel() -> None:            # 60 W for 0.25 s
        clock.t += 0.25
        add(60.0 * 0.25)

    meter = RaplEnergyMeter.create(tmp_path, clock=clock, sleep=sleep, idle_s=0.5)
    assert isinstance(meter, RaplEnergyMeter) and [z.name for z in meter.zones] == ["intel-rapl:0"]
    e = meter.measure(kernel, window_s=1.0)
    # 4 calls x 15 J = 60 J gross (wrapping past 1000 J), minus 20 W x 1 s -> 40 J -> 10 J per call
    assert e.meter == "rapl" and e.calls == 4 and e.window_s == 1.0
    assert e.idle_power_w == 20.0
    assert e.energy_j == 10.0
    assert e.throttled is None and e.samples == ()
    assert int((zone / "energy_uj").read_text()) < 100_000_000     # it did wrap


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
