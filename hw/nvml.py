"""NVIDIA GPUs through NVML (``import pynvml``, from the nvidia-ml-py package).

Source: NVML API Reference (docs.nvidia.com/deploy/nvml-api).

* ``nvmlDeviceGetTotalEnergyConsumption`` — energy since the driver was loaded, in
  mJ, 64-bit (no wrap in practice); Volta and newer. Used as a counter when
  supported: window energy = end - begin, exact regardless of the sampling rate.
* ``nvmlDeviceGetPowerUsage`` — board power in mW, averaged by the driver over
  about one second on most boards; polled and integrated (trapezoid) otherwise.
* ``nvmlDeviceGetClockInfo(NVML_CLOCK_SM | NVML_CLOCK_MEM)`` in MHz and
  ``nvmlDeviceGetUtilizationRates`` (``.gpu``, ``.memory`` in %).

No DVFS controller here: locking clocks (``nvmlDeviceSetGpuLockedClocks``) needs
root and persists after the process; left out on purpose.
"""

from __future__ import annotations

import time
from typing import Any

from .base import Availability, DeviceGoneError, Meter, MeterError, MissingFileError, NoDeviceError, PermissionDeniedError, Sample


def _pynvml():
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        raise MissingFileError("pynvml is not installed: `pip install nvidia-ml-py`") from None
    return pynvml


def _translate(pynvml, exc: Exception, what: str) -> MeterError:
    """Map NVMLError subclasses to actionable errors."""
    name = type(exc).__name__
    if "NoPermission" in name:
        return PermissionDeniedError(f"{what}: NVML denied permission ({exc}); run as root or ask the admin")
    if "GpuIsLost" in name or "Unknown" == name.rsplit("_", 1)[-1]:
        return DeviceGoneError(f"{what}: the GPU fell off the bus or is lost ({exc})")
    if "LibraryNotFound" in name or "DriverNotLoaded" in name:
        return NoDeviceError(f"{what}: NVIDIA driver not available ({exc}); no NVIDIA GPU here")
    return MeterError(f"{what}: {exc}")


class NvmlMeter(Meter):
    """One GPU: energy counter (mJ) where supported, else power polling; clocks and utilisation."""

    name = "nvml"

    def __init__(self, index: int = 0):
        pynvml = self._nvml = _pynvml()
        self.index = int(index)
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise _translate(pynvml, exc, "nvmlInit") from None
        try:
            count = pynvml.nvmlDeviceGetCount()
            if not 0 <= self.index < count:  # a negative index would wrap to a huge unsigned one in NVML's C API
                raise NoDeviceError(f"GPU index {self.index} requested but NVML sees {count} GPU(s)"
                                    + (f"; allowed: 0..{count - 1}" if count else ""))
            self._h = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.rail = f"gpu{self.index}"
            try:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h)
                self.has_energy_counter = True
            except pynvml.NVMLError as exc:
                if "NotSupported" not in type(exc).__name__:
                    raise
                self.has_energy_counter = False  # pre-Volta: integrate power instead
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise _translate(pynvml, exc, f"GPU {self.index}") from None
        except MeterError:
            pynvml.nvmlShutdown()
            raise
        self._closed = False

    @classmethod
    def probe(cls, index: int = 0) -> Availability:
        try:
            pynvml = _pynvml()
            pynvml.nvmlInit()
        except MeterError as exc:
            return Availability(False, str(exc))
        except Exception as exc:  # NVMLError_LibraryNotFound etc.
            return Availability(False, f"NVML unavailable: {exc} (no NVIDIA driver/GPU)")
        try:
            count = pynvml.nvmlDeviceGetCount()
            ok = 0 <= index < count
            return Availability(ok, "" if ok else f"NVML sees {count} GPU(s); index {index} absent")
        finally:
            pynvml.nvmlShutdown()

    def settings(self) -> dict[str, Any]:
        return {"index": self.index, "energy_counter": self.has_energy_counter}

    def read(self) -> Sample:
        p, h = self._nvml, self._h
        t = time.monotonic()
        try:
            if self.has_energy_counter:
                energy = {self.rail: p.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3}
                power = {}
            else:
                energy, power = {}, {self.rail: p.nvmlDeviceGetPowerUsage(h) / 1e3}
            freq = {"sm": float(p.nvmlDeviceGetClockInfo(h, p.NVML_CLOCK_SM)),
                    "mem": float(p.nvmlDeviceGetClockInfo(h, p.NVML_CLOCK_MEM))}
            util = p.nvmlDeviceGetUtilizationRates(h)
        except p.NVMLError as exc:
            raise _translate(p, exc, f"GPU {self.index}") from None
        return Sample(t_s=t, power_w=power, energy_j=energy, freq_mhz=freq,
                      util_pct={"gpu": float(util.gpu), "mem": float(util.memory)}, total=(self.rail,))

    def close(self) -> None:
        if not getattr(self, "_closed", True):
            self._closed = True
            self._nvml.nvmlShutdown()
