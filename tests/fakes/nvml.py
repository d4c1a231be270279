"""A fake NVML (the ``pynvml`` module's surface serprof uses), modelling clocks and throttling.

Names, units and errors are the real pynvml's (nvidia-ml-py): clocks in MHz from
``nvmlDeviceGetClockInfo(h, NVML_CLOCK_SM | NVML_CLOCK_MEM)``, temperature in C, power in mW,
``nvmlDeviceGetCurrentClocksEventReasons`` / ``...ThrottleReasons`` as a bit mask (0x1 idle, 0x4 SW
power cap, 0x10 sync boost, 0x20 SW thermal, ...), ``nvmlDeviceSetGpuLockedClocks(h, min, max)`` and
``nvmlDeviceResetGpuLockedClocks(h)``, which raise ``NVMLError_NoPermission`` unless ``root``.
Constants and exception classes are taken from the real pynvml so ``isinstance`` checks match.

The state follows the H200 of ../shared/evidence (driver 580, SM 1980 MHz boost, HBM 3201 MHz). A
test throttles the GPU with ``throttle(mask, calls=n)``: the next ``n`` reason reads return ``mask``
(and the SM clock drops to ``throttled_sm_mhz``), after which it is cool again.
"""

from __future__ import annotations

import pynvml


class FakeNvml:
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_CLOCK_MEM = pynvml.NVML_CLOCK_MEM
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_CLOCK_LIMIT_ID_TDP = pynvml.NVML_CLOCK_LIMIT_ID_TDP
    NVMLError = pynvml.NVMLError
    NVMLError_NoPermission = pynvml.NVMLError_NoPermission
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported

    def __init__(self, *, root: bool = False, sm_mhz: int = 1980, mem_mhz: int = 3201, base_sm_mhz: int = 1590,
                 throttled_sm_mhz: int = 1410, temp_c: int = 38, power_mw: int = 92_000, energy_mj: int = 5_000_000,
                 persistence: int = 1, driver: str = "580.159.04") -> None:
        self.root = root
        self.sm_mhz, self.mem_mhz, self.base_sm_mhz = sm_mhz, mem_mhz, base_sm_mhz
        self.throttled_sm_mhz = throttled_sm_mhz
        self.temp_c, self.power_mw, self.energy_mj = temp_c, power_mw, energy_mj
        self.persistence, self.driver = persistence, driver
        self.locked: tuple[int, int] | None = None
        self.calls: list[str] = []              # NVML calls that change state, in order
        self._throttle_mask = 0
        self._throttle_reads = 0
        self.inited = False

    # -- test controls
    def throttle(self, mask: int, reads: int = 10 ** 9) -> None:
        """The next ``reads`` reason reads return ``mask`` (SM clock held down meanwhile)."""
        self._throttle_mask, self._throttle_reads = mask, reads

    @property
    def throttled(self) -> bool:
        return self._throttle_reads > 0 and bool(self._throttle_mask)

    # -- pynvml surface
    def nvmlInit(self) -> None:
        self.inited = True

    def nvmlShutdown(self) -> None:
        self.inited = False

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if index != 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return "handle0"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return "handle0"

    def nvmlDeviceGetClockInfo(self, h: str, clock: int) -> int:
        if clock == self.NVML_CLOCK_MEM:
            return self.mem_mhz
        if self.throttled:
            return self.throttled_sm_mhz
        if self.locked is not None:
            return self.base_sm_mhz if self.locked[0] == self.NVML_CLOCK_LIMIT_ID_TDP else self.locked[0]
        return self.sm_mhz

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        return self.temp_c + (45 if self.throttled else 0)

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return self.power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        return self.energy_mj

    def nvmlDeviceGetPersistenceMode(self, h: str) -> int:
        return self.persistence

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        if self._throttle_reads > 0:
            self._throttle_reads -= 1
            return self._throttle_mask
        return 0x0                              # running, not held down

    nvmlDeviceGetCurrentClocksThrottleReasons = nvmlDeviceGetCurrentClocksEventReasons

    def nvmlDeviceSetGpuLockedClocks(self, h: str, lo: int, hi: int) -> None:
        if not self.root:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)   # pynvml raises the NoPermission subclass
        self.locked = (lo, hi)
        self.calls.append(f"lock {lo} {hi}")

    def nvmlDeviceResetGpuLockedClocks(self, h: str) -> None:
        if not self.root:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
        self.locked = None
        self.calls.append("reset")
