"""hw.measurement: named windows over any meter, their guard, and ``monitor -- COMMAND``."""

from __future__ import annotations

import json
import sys
import time

import pytest

import hw
from hw.base import Availability, Meter, Sample
from hw.measurement import EnergyMonitor, Measurement, WindowTooShortError, main


class ConstantPower(Meter):
    """2 W, sampled (trapezoid)."""

    name = "const_power"

    @classmethod
    def probe(cls, **_):
        return Availability(True)

    def read(self) -> Sample:
        return Sample(t_s=time.monotonic(), power_w={"soc": 2.0})


class Counter(Meter):
    """A 3 W energy counter (counter method)."""

    name = "counter3"

    def __init__(self, watts: float = 3.0):
        self.watts = watts
        self.t0 = time.monotonic()

    @classmethod
    def probe(cls, **_):
        return Availability(True)

    def read(self) -> Sample:
        t = time.monotonic()
        return Sample(t_s=t, energy_j={"pkg": self.watts * (t - self.t0)})


class Slow(ConstantPower):
    """Declares that it needs 10 s windows (like a battery gauge updating every few seconds)."""

    name = "slow"
    min_window_s = 10.0


def test_begin_end_window_counter_meter():
    with EnergyMonitor(Counter(), rate_hz=100) as mon:
        mon.begin_window("a")
        time.sleep(0.05)
        m = mon.end_window("a")
    assert isinstance(m, Measurement) and m.method == "counter" and m.meter == "counter3"
    # the counter is read just outside the window's edges, so energy covers at least its duration
    assert m.energy_j >= 3.0 * m.duration_s * (1 - 1e-9)
    assert m.power_w == pytest.approx(3.0, rel=0.25)
    assert m.energy_mj == pytest.approx(m.energy_j * 1e3)
    assert m.n_samples >= 2 and m.valid


def test_context_manager_decorator_and_nested_windows():
    with EnergyMonitor(ConstantPower(), rate_hz=200) as mon:
        @mon.measure("step")
        def step(x):
            time.sleep(0.03)
            return x + 1

        with mon.window("outer") as outer:
            assert step(1) == 2
            with mon.window("inner") as inner:
                time.sleep(0.03)
    assert step.last_measurement.name == "step"
    for m in (outer.result, inner.result, step.last_measurement):
        assert m.method == "trapezoid"
        assert m.power_w == pytest.approx(2.0, rel=1e-6)
    assert outer.duration_s > inner.duration_s and outer.energy_j > inner.energy_j


def test_window_names_are_checked():
    with EnergyMonitor(ConstantPower()) as mon:
        mon.begin_window("x")
        with pytest.raises(ValueError, match="already open"):
            mon.begin_window("x")
        with pytest.raises(ValueError, match="not open"):
            mon.end_window("y")
        with pytest.raises(AttributeError, match="still open"):
            with mon.window("z") as w:
                w.energy_j


def test_short_window_guard():
    with EnergyMonitor(Slow(), rate_hz=100) as mon:
        mon.begin_window("short")
        with pytest.raises(WindowTooShortError, match="too short for meter 'slow'"):
            mon.end_window("short")
    with EnergyMonitor(Slow(), rate_hz=100, on_short="warn") as mon:
        mon.begin_window("short")
        with pytest.warns(RuntimeWarning, match="too short"):
            m = mon.end_window("short")
    assert not m.valid
    with pytest.raises(ValueError, match="min_samples"):
        EnergyMonitor(ConstantPower(), min_samples=1)


def test_open_meter_by_name_and_unknown_name():
    hw.METERS.register("counter3", Counter)
    try:
        with EnergyMonitor("counter3") as mon, mon.window("w") as w:
            time.sleep(0.01)
        assert w.meter == "counter3"
        with pytest.raises(hw.NoDeviceError, match="did you mean 'counter3'"):
            EnergyMonitor("counter4")
    finally:
        del hw.METERS["counter3"]


def test_monitor_command(tmp_path, capsys):
    hw.METERS.register("counter3", Counter)
    try:
        out = tmp_path / "m.json"
        rc = main(["--adapter", "counter3", "--json", str(out), "--", sys.executable, "-c",
                   "import time, sys; time.sleep(0.1); sys.exit(3)"])
        assert rc == 3  # the command's exit code
        rec = json.loads(out.read_text())
        assert rec["returncode"] == 3 and rec["command"][0] == sys.executable
        assert rec["power_w"] == pytest.approx(3.0, rel=0.25) and rec["duration_s"] >= 0.1
        assert "average power" in capsys.readouterr().err
        assert main(["--adapter", "counter3", "--", "/no/such/binary"]) == 127
        assert main(["--adapter", "counter3", "--meter-option", "watts=1.5", "--", sys.executable, "-c", "0"]) == 0
        assert main(["--adapter", "counter3", "--meter-option", "nope=1", "--", sys.executable, "-c", "0"]) == 2
        assert "unexpected keyword argument 'nope'" in capsys.readouterr().err
    finally:
        del hw.METERS["counter3"]



def test_monitor_user_errors(capsys):
    assert main([]) == 2
    assert "nothing to measure" in capsys.readouterr().err
    assert main(["--adapter", "none", "--", "true"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["--adapter", "no_such_meter", "--", "true"])
    assert exc.value.code == 2
