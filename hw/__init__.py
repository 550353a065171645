"""Device adapters: meters (power/energy), DVFS controllers, sampling and resumable trace sweeps.

=================  ===============================  =========================================
registry name      class                            measures
=================  ===============================  =========================================
``rapl``           :class:`hw.rapl.RaplMeter`       x86 package/dram energy counters (powercap)
``jetson``         :class:`hw.jetson.TegrastatsMeter`  Jetson rails via ``tegrastats``
``jetson-ina3221`` :class:`hw.jetson.Ina3221Meter`  Jetson rails straight from INA3221 sysfs
``android``        :class:`hw.android.AndroidBatteryMeter`  phone battery power over adb
``nvml``           :class:`hw.nvml.NvmlMeter`       NVIDIA GPU energy counter / power
``replay``         :class:`hw.replay.ReplayMeter`   a recorded log played back
=================  ===============================  =========================================

See :mod:`hw.base` for the interfaces, :mod:`hw.sampler` for energy windows and
:mod:`hw.collect` for sweeps.
"""

from __future__ import annotations

from .android import AndroidBatteryMeter
from .base import (Availability, DeviceGoneError, DvfsController, Meter, MeterError, MissingFileError,
                   NoDeviceError, PermissionDeniedError, Sample)
from .jetson import Ina3221Meter, TegrastatsMeter
from .nvml import NvmlMeter
from .rapl import RaplMeter
from .replay import ReplayMeter

METERS: dict[str, type[Meter]] = {
    "rapl": RaplMeter,
    "jetson": TegrastatsMeter,
    "jetson-ina3221": Ina3221Meter,
    "android": AndroidBatteryMeter,
    "nvml": NvmlMeter,
    "replay": ReplayMeter,
}
#: order tried by ``auto``: a GPU server's NVML first, then the host CPU, then a Jetson board
AUTO_ORDER = ("nvml", "rapl", "jetson-ina3221", "jetson")


def best_available_meter(reasons: dict[str, str] | None = None, **kwargs_by_name: dict) -> Meter | None:
    """The first meter of :data:`AUTO_ORDER` that probes and opens here, else ``None``.

    ``reasons`` (if given) is filled with why each skipped meter could not run;
    ``kwargs_by_name`` passes constructor arguments, e.g. ``rapl={"root": ...}``.
    """
    for name in AUTO_ORDER:
        cls, kwargs = METERS[name], kwargs_by_name.get(name, {})
        ok = cls.probe(**kwargs)
        if not ok:
            if reasons is not None:
                reasons[name] = ok.reason
            continue
        try:
            return cls(**kwargs)
        except MeterError as exc:
            if reasons is not None:
                reasons[name] = str(exc)
    return None


__all__ = ["METERS", "AUTO_ORDER", "best_available_meter", "Meter", "Sample", "Availability", "DvfsController",
           "MeterError", "MissingFileError", "PermissionDeniedError", "NoDeviceError", "DeviceGoneError",
           "RaplMeter", "TegrastatsMeter", "Ina3221Meter", "AndroidBatteryMeter", "NvmlMeter", "ReplayMeter"]
