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

:data:`METERS` and :data:`DVFS` are :class:`hw.registry.Registry` objects: a plugin adds a
meter with ``hw.METERS.register("mymeter", MyMeter)`` or an entry point in the group
``edge_inference_bench.meters`` (docs/extending.md); ``collect``, ``monitor`` and
params.yaml's ``profile.adapter`` then accept its name.

See :mod:`hw.base` for the interfaces, :mod:`hw.measurement` for named energy windows
(``begin_window``/``end_window``), :mod:`hw.sampler` for the sampling underneath and
:mod:`hw.collect` for sweeps.
"""

from __future__ import annotations

from .android import AndroidBatteryMeter
from .base import (Availability, CounterError, DeviceGoneError, DvfsController, Meter, MeterError, MissingFileError,
                   NoDeviceError, ParseError, PermissionDeniedError, Sample, SamplingError)
from .jetson import Ina3221Meter, TegrastatsMeter
from .nvml import NvmlMeter
from .rapl import RaplMeter
from .registry import PluginError, Registry, load_plugin
from .replay import ReplayMeter


def _check_meter(name: str, value: object) -> None:
    if not (isinstance(value, type) and issubclass(value, Meter)):
        raise PluginError(f"meter {name!r}: {value!r} is not a subclass of hw.base.Meter")


#: meter name -> :class:`Meter` subclass (built-ins below, plugins from ``edge_inference_bench.meters``)
METERS: Registry = Registry("meter", "meters", check=_check_meter)
for _name, _cls in {"rapl": RaplMeter, "jetson": TegrastatsMeter, "jetson-ina3221": Ina3221Meter,
                    "android": AndroidBatteryMeter, "nvml": NvmlMeter, "replay": ReplayMeter}.items():
    METERS.register(_name, _cls)


def _sysfs_dvfs(root: str = "/", **_: object) -> DvfsController:
    from .jetson import jetson_dvfs

    return jetson_dvfs(root)  # cpufreq policies + the Jetson GPU's devfreq where present


def _android_dvfs(device: object = None, **_: object) -> DvfsController:
    from .android import android_dvfs

    return android_dvfs(device)


#: DVFS controller name -> ``factory(**options) -> DvfsController`` (plugins: ``edge_inference_bench.dvfs``)
DVFS: Registry = Registry("DVFS controller", "dvfs")
DVFS.register("sysfs", _sysfs_dvfs)
DVFS.register("android", _android_dvfs)
#: order tried by ``auto``: a GPU server's NVML first, then the host CPU, then a Jetson board
AUTO_ORDER = ("nvml", "rapl", "jetson-ina3221", "jetson")


def best_available_meter(reasons: dict[str, str] | None = None, **kwargs_by_name: dict) -> Meter | None:
    """The first meter of :data:`AUTO_ORDER` that probes and opens here, else ``None``.

    ``reasons`` (if given) is filled with why each skipped meter could not run;
    ``kwargs_by_name`` passes constructor arguments, e.g. ``rapl={"root": ...}``.
    """
    for name in AUTO_ORDER:
        if name not in METERS:
            continue
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


__all__ = ["METERS", "DVFS", "Registry", "PluginError", "load_plugin", "AUTO_ORDER", "best_available_meter", "Meter", "Sample", "Availability", "DvfsController",
           "MeterError", "MissingFileError", "PermissionDeniedError", "NoDeviceError", "DeviceGoneError",
           "SamplingError", "CounterError", "ParseError",
           "RaplMeter", "TegrastatsMeter", "Ina3221Meter", "AndroidBatteryMeter", "NvmlMeter", "ReplayMeter"]
