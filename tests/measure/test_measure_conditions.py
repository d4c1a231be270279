"""Issue 20: conditions of every point on the fake CUDA device (fake NVML with clocks and throttle
reasons), re-measurement of throttled points, locked clocks restored on every exit, the CPU probe,
and the gate refusing a throttled point."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import pytest
from measure_fake_cuda import FakeGpu

from profiler.core.errors import UnavailableError
from profiler.core.records import (
    Conditions,
    MeasureSettings,
    PointRecord,
    PointSpec,
    Timing,
    from_dict,
    to_dict,
)
from profiler.measure import conditions as cond
from profiler.measure.device import CudaDevice
from tests.fakes.nvml import FakeNvml

SET = MeasureSettings(warmup_s=0.01, min_warmup_calls=2, min_reps=5, max_reps=50, target_rel_ci=0.02, time_budget_s=0.2)


class FakeCudaModule:
    def synchronize(self, index=None) -> None:
        return None

    def get_device_name(self, index) -> str:
        return "NVIDIA Fake H200"

    def get_device_properties(self, index):
        return SimpleNamespace(uuid="1234-abcd", L2_cache_size=60 << 20)


def fake_cuda_device(nvml: FakeNvml) -> tuple[CudaDevice, FakeGpu]:
    gpu = FakeGpu()
    return CudaDevice(0, cuda=FakeCudaModule(), event_factory=gpu.event, nvml=nvml, api=gpu), gpu


def timed_point(dev: CudaDevice, gpu: FakeGpu, *, cooldown_s: float = 0.0):
    op = gpu.op(20e-6, 400e-6)
    runs, sleeps = [], []

    def work():
        runs.append(1)
        return dev.time_call(op, SET)

    timed, c = cond.measure_under_conditions(work, dev.conditions_probe(), cooldown_s=cooldown_s, l2="warm",
                                             clocks_locked=False, sleep=sleeps.append)
    return timed, c, runs, sleeps


def test_cool_gpu_records_clocks_temperature_power_and_is_not_flagged():
    nvml = FakeNvml()
    dev, gpu = fake_cuda_device(nvml)
    timed, c, runs, sleeps = timed_point(dev, gpu, cooldown_s=0.8)
    assert timed.timing.method == "cuda_graph" and runs == [1]
    assert sleeps == [0.8]                                  # --cooldown before the point
    assert c.before["sm_clock_mhz"] == 1980 and c.before["mem_clock_mhz"] == 3201
    assert c.after["temp_c"] == 38 and c.after["power_w"] == pytest.approx(92.0)
    assert c.throttled is False and c.remeasured is False and c.flag is None
    assert c.device_type == "cuda" and c.cooldown_s == 0.8


def test_throttled_point_is_flagged_and_remeasured_once_after_a_cooldown():
    nvml = FakeNvml()
    dev, gpu = fake_cuda_device(nvml)
    dev.conditions_probe()
    nvml.throttle(0x20, reads=2)                            # thermal slowdown seen by the first window only
    _, c, runs, sleeps = timed_point(dev, gpu)
    assert runs == [1, 1] and sleeps == [cond.RECOOL_S]
    assert c.remeasured and c.first_throttle_reasons == ("sw_thermal_slowdown",)
    assert c.throttled is False and c.flag is None          # the kept measurement was cool

    nvml.throttle(0x4 | 0x10)                               # power cap + sync boost, for good
    _, c, runs, sleeps = timed_point(dev, gpu, cooldown_s=5.0)
    assert runs == [1, 1] and sleeps == [5.0, 5.0]          # re-measured after max(cooldown, RECOOL_S)
    assert c.throttled and c.remeasured and c.throttle_reasons == ("sw_power_cap", "sync_boost")
    assert c.before["sm_clock_mhz"] == 1410 and c.before["temp_c"] == 83
    assert "measured while throttled: sw_power_cap, sync_boost (also after" in c.flag


def test_conditions_round_trip_and_old_records_still_load():
    c = Conditions("cuda", {"sm_clock_mhz": 1410, "throttle": ["sw_thermal_slowdown"]}, {}, (), True,
                   ("sw_thermal_slowdown",), True, ("sw_thermal_slowdown",), 2.0, "cold", False)
    rec = PointRecord(PointSpec("softmax", "sdpa", device="cuda"), "ok", timing=Timing((1e-3,) * 5, "cuda_event"),
                      conditions=c)
    back = from_dict(PointRecord, to_dict(rec))
    assert back.conditions == c and back.flagged and "sw_thermal_slowdown" in back.flagged
    old = to_dict(rec)
    del old["conditions"]
    assert from_dict(PointRecord, old).conditions is None and from_dict(PointRecord, old).flagged is None


def test_lock_clocks_resets_on_error_ctrl_c_and_sigterm():
    nvml = FakeNvml(root=True)
    with pytest.raises(RuntimeError, match="kernel failed"):
        with cond.maybe_lock_clocks(True, "cuda", nvml=nvml) as state:
            assert state["locked"] and nvml.locked == (nvml.NVML_CLOCK_LIMIT_ID_TDP,) * 2
            assert state["sm_clock_mhz"] == 1590                      # base clock while locked
            raise RuntimeError("kernel failed")
    assert nvml.locked is None and nvml.calls[-1] == "reset"
    with pytest.raises(KeyboardInterrupt):
        with cond.maybe_lock_clocks(True, "cuda", nvml=nvml):
            raise KeyboardInterrupt
    assert nvml.locked is None and nvml.calls.count("reset") == 2
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with cond.maybe_lock_clocks(True, "cuda", nvml=nvml):
            os.kill(os.getpid(), signal.SIGTERM)   # the handler raises at the next bytecode
            for _ in range(1000):
                pass
    assert nvml.locked is None and nvml.calls.count("reset") == 3
    assert signal.getsignal(signal.SIGTERM) is before                # the handler is restored too


def test_lock_clocks_not_permitted_is_one_line_and_changes_nothing():
    nvml = FakeNvml(root=False)
    with pytest.raises(UnavailableError) as exc:
        with cond.maybe_lock_clocks(True, "cuda", nvml=nvml):
            pytest.fail("the body must not run")
    assert "not permitted" in str(exc.value) and "\n" not in str(exc.value)
    assert nvml.locked is None and nvml.calls == []
    with pytest.raises(UnavailableError, match="CPU"):
        with cond.maybe_lock_clocks(True, "cpu"):
            pass
    with cond.maybe_lock_clocks(False, "cuda", nvml=nvml) as state:
        assert state is None


def test_cpu_probe_reads_cpufreq_then_cpuinfo(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    for c in cpus:
        d = tmp_path / "sys" / f"cpu{c}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text("2400000\n")
    p = cond.CpuProbe(sys_root=tmp_path / "sys", loadavg=lambda: (1.5, 1.0, 0.5))
    s = p.read()
    assert s["freq_mhz"] == pytest.approx(2400.0) and s["freq_source"] == "cpufreq"
    assert s["load_1m"] == 1.5 and s["affinity"] == cpus and s["threads"] >= 1
    info = tmp_path / "cpuinfo"
    info.write_text("".join(f"processor\t: {i}\ncpu MHz\t\t: 2000.5\n" for i in range(max(cpus) + 1)))
    s = cond.CpuProbe(sys_root=tmp_path / "none", cpuinfo=info).read()
    assert s["freq_mhz"] == pytest.approx(2000.5) and s["freq_source"] == "cpuinfo"
    s = cond.CpuProbe(sys_root=tmp_path / "none", cpuinfo=tmp_path / "missing").read()
    assert s["freq_mhz"] is None and s["freq_source"] == "not readable"


def test_no_nvml_is_a_null_probe_saying_why():
    class Broken(FakeNvml):
        def nvmlInit(self):
            raise RuntimeError("NVML Shared Library Not Found")

    p = cond.NvmlProbe.create(0, nvml=Broken())
    assert isinstance(p, cond.NullProbe) and "Not Found" in p.read()["unavailable"]


def test_cpu_point_records_its_conditions_and_cooldown(monkeypatch):
    from profiler.measure import point

    slept = []
    monkeypatch.setattr(cond.time, "sleep", slept.append)
    s = MeasureSettings(warmup_s=0.0, min_warmup_calls=1, min_reps=3, max_reps=5, time_budget_s=0.02, verify=False,
                        measure_memory=False, measure_energy=False, cooldown_s=0.25)
    rec = point.measure_point(PointSpec("softmax", "sdpa", T=16, H=1, D=8), s)
    c = rec.conditions
    assert rec.status == "ok" and c.device_type == "cpu" and c.l2 == "n/a" and c.clocks_locked is None
    assert slept == [0.25] and c.cooldown_s == 0.25 and not c.throttled and rec.flagged is None
    assert {"freq_mhz", "load_1m", "affinity", "threads"} <= set(c.before) and "load_1m" in c.after
