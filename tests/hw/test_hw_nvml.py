"""NVML against a fake pynvml module (no GPU here)."""

from __future__ import annotations

import sys
import time
import types

import pytest

from hw.base import NoDeviceError
from hw.nvml import NvmlMeter
from hw.sampler import Sampler


def fake_pynvml(energy_supported=True, count=1, init_error=None):
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    m.NVMLError, m.NVMLError_NotSupported, m.NVMLError_LibraryNotFound = NVMLError, NVMLError_NotSupported, NVMLError_LibraryNotFound
    m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM = 1, 2
    m.t0 = time.monotonic()
    m.watts = 250.0
    m.inits = 0

    def init():
        if init_error:
            raise getattr(m, init_error)("Driver Not Loaded")
        m.inits += 1

    def shutdown():
        m.inits -= 1

    def energy(h):
        if not energy_supported:
            raise NVMLError_NotSupported("Not Supported")
        return int(1_000_000 + (time.monotonic() - m.t0) * m.watts * 1e3)  # mJ

    m.nvmlInit, m.nvmlShutdown = init, shutdown
    m.nvmlDeviceGetCount = lambda: count
    m.nvmlDeviceGetHandleByIndex = lambda i: f"h{i}"
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = lambda h: int(m.watts * 1e3)  # mW
    m.nvmlDeviceGetClockInfo = lambda h, c: {1: 1410, 2: 1215}[c]
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=87, memory=40)
    return m


@pytest.mark.parametrize("counter", [True, False])
def test_energy_counter_or_power_polling(monkeypatch, counter):
    fake = fake_pynvml(energy_supported=counter)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert NvmlMeter.probe()
    meter = NvmlMeter(0)
    assert meter.has_energy_counter is counter
    s = meter.read()
    assert s.freq_mhz == {"sm": 1410.0, "mem": 1215.0} and s.util_pct == {"gpu": 87.0, "mem": 40.0}
    with Sampler(meter, rate_hz=100) as sampler, sampler.window() as w:
        time.sleep(0.2)
    assert w.method == ("counter" if counter else "trapezoid")
    # 250 W for the window; the counter has 1 mJ resolution
    assert w.power_w == pytest.approx(250.0, rel=0.02 if counter else 1e-9)
    meter.close()
    assert fake.inits == 0


def test_no_gpu_and_no_driver(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(count=0))
    ok = NvmlMeter.probe()
    assert not ok and "0 GPU" in ok.reason
    with pytest.raises(NoDeviceError, match="sees 0 GPU"):
        NvmlMeter()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error="NVMLError_LibraryNotFound"))
    assert not NvmlMeter.probe()
    with pytest.raises(NoDeviceError, match="driver"):
        NvmlMeter()
