"""Android over a fake adb on PATH: battery conventions, charging refusal, cpufreq, benchmarks, unplug."""

from __future__ import annotations

import time

import pytest

from hw.android import (AdbDevice, AndroidBatteryMeter, BatteryConvention, android_dvfs, detect_convention,
                        parse_battery_readout)
from hw.base import DeviceGoneError, MeterError, NoDeviceError, ParseError, PermissionDeniedError
from hw.sampler import Sampler

from hw_fakes import executable, make_cpufreq

V, I = 3.85, 0.35  # volts, amps drawn; every convention below encodes the same physical state


@pytest.mark.parametrize("voltage_raw, current_raw, units, sign", [
    (3_850_000, -350_000, ("uA", "uV"), -1),  # kernel ABI units, negative while discharging
    (3_850_000, 350_000, ("uA", "uV"), 1),
    (3_850, 350, ("mA", "mV"), 1),  # vendor kernels reporting mA/mV
    (3_850_000, -350, ("mA", "uV"), -1),
])
def test_battery_conventions_detected(phone, voltage_raw, current_raw, units, sign):
    phone.battery(voltage_raw, current_raw, "Discharging")
    meter = AndroidBatteryMeter(AdbDevice("PHONE1"), calibration_reads=3, calibration_interval_s=0)
    conv = meter.convention
    assert (conv.current_unit, conv.voltage_unit, conv.discharge_sign, conv.source) == (*units, sign, "detected")
    assert meter.read().power_w["battery"] == pytest.approx(V * I)
    assert meter.settings()["convention"]["discharge_sign"] == sign  # recorded in the trace metadata
    assert meter.available()


def test_charging_refused_unless_allowed(phone):
    phone.battery(3_850_000, 500_000, "Charging")
    with pytest.raises(MeterError, match="allow_charging"):
        AndroidBatteryMeter(AdbDevice())
    conv = BatteryConvention("uA", "uV", -1)
    meter = AndroidBatteryMeter(AdbDevice(), convention=conv, allow_charging=True)
    assert meter.read().power_w["battery"] == pytest.approx(-3.85 * 0.5)  # net power flows into the battery
    phone.battery(3_850_000, -350_000, "Discharging")
    strict = AndroidBatteryMeter(AdbDevice(), convention=conv)
    phone.battery(3_850_000, 500_000, "Charging")  # plugged in mid-run
    with pytest.raises(MeterError, match="plugged in"):
        strict.read()


def test_detect_convention_rules():
    with pytest.raises(MeterError, match="sign"):
        detect_convention([(3_850_000, 0)] * 3)
    with pytest.raises(ValueError, match="current_unit"):
        BatteryConvention("A", "uV", 1)
    with pytest.raises(MeterError, match="at least 3"):
        detect_convention([(3_850_000, -350_000)])  # one reading decides nothing


def test_small_current_in_ua_is_not_taken_for_ma():
    """An idle µA phone at 15 mA once read as 15 A (58 W): V x I plausibility decides the unit."""
    conv = detect_convention([(3_850_000, -15_000), (3_851_000, -14_500), (3_849_000, -16_000)])
    assert (conv.current_unit, conv.discharge_sign) == ("uA", -1)
    assert conv.power_w(3_850_000, -15_000) == pytest.approx(3.85 * 0.015)
    assert detect_convention([(3_850, 900), (3_850, 1_200), (3_840, 1_100)]).current_unit == "mA"  # 3.5-4.6 W


@pytest.mark.parametrize("readings, why", [
    ([(3_850_000, 4_500)] * 3, "plausible phone power"),  # 4.5 mA (17 mW) or 4.5 A (17 W): neither fits
    ([(3_850_000, -300_000), (3_850_000, 300_000), (3_850_000, -300_000)], "changes sign"),
    ([(3_850_000, -300_000), (3_850_000, -300), (3_850_000, -300_000)], "one unit"),  # readings disagree
    ([(385, -300_000)] * 3, "voltage_now"),  # 0.385 V in mV or 385 µV: no battery
])
def test_ambiguous_conventions_refused_with_a_way_out(readings, why):
    with pytest.raises(MeterError, match=why) as err:
        detect_convention(readings)
    assert "BatteryConvention(" in str(err.value)


@pytest.mark.parametrize("status", ["Not charging", "Full", "Charging"])
def test_plugged_in_statuses_read_whole_and_refused(phone, status):
    phone.battery(3_850_000, -350_000, status)
    with pytest.raises(MeterError, match=f"plugged in \\(battery status '{status}'\\)"):
        AndroidBatteryMeter(AdbDevice(), calibration_interval_s=0)


def test_battery_readout_parser():
    assert parse_battery_readout("3850000\n-350000\nNot charging\n") == (3_850_000, -350_000, "Not charging")
    assert parse_battery_readout("3850000\r\n-350000\r\nDischarging\r\n")[2] == "Discharging"
    for bad in ["", "3850000 -350000 Discharging", "3.85\n1\nFull", "1\n2\n3\n4", "9" * 40 + "\n1\nFull"]:
        with pytest.raises(ParseError):
            parse_battery_readout(bad)


def test_no_phone_and_unknown_serial(phone):
    assert not AndroidBatteryMeter.probe(serial="OTHER")
    with pytest.raises(NoDeviceError, match="not reachable"):
        AndroidBatteryMeter(AdbDevice("OTHER"))
    ok = AndroidBatteryMeter.probe(adb="/nonexistent/adb")
    assert not ok and "platform-tools" in ok.reason


def test_unplugged_mid_run_keeps_samples(phone):
    meter = AndroidBatteryMeter(AdbDevice("PHONE1"), calibration_reads=3, calibration_interval_s=0)
    phone.disconnect_after(4)  # four more adb calls succeed, then the phone is gone
    sampler = Sampler(meter, rate_hz=50)
    with pytest.raises(DeviceGoneError, match="PHONE1") as err:
        with sampler.window():
            time.sleep(3.0)  # the fake disconnects long before this ends
    sampler.stop()
    assert sampler.n_reads == 4
    assert 1 <= len(err.value.samples) <= 4  # those read since the window opened
    assert all(s.power_w["battery"] == pytest.approx(V * I) for s in err.value.samples)


def test_cpufreq_over_adb_needs_root_and_restores(phone):
    make_cpufreq(phone.root, {"policy0": [300000, 1000000, 1800000], "policy4": [400000, 2400000]})
    pol4 = phone.root / "sys/devices/system/cpu/cpufreq/policy4"
    ctl = android_dvfs(AdbDevice())
    assert ctl.frequencies() == {"cpu_policy0": [300.0, 1000.0, 1800.0], "cpu_policy4": [400.0, 2400.0]}
    with pytest.raises(PermissionDeniedError, match="root"):
        ctl.set_frequency("cpu_policy4", 400.0)
    phone.rooted(su=True)
    with pytest.raises(RuntimeError, match="boom"):
        with android_dvfs(AdbDevice()) as ctl:
            ctl.set_frequency("cpu_policy4", 400.0)
            assert (pol4 / "scaling_max_freq").read_text().strip() == "400000"
            assert ctl.current()["cpu_policy4"] == 2400.0  # scaling_cur_freq is the kernel's, untouched here
            raise RuntimeError("boom")
    assert (pol4 / "scaling_max_freq").read_text().strip() == "2400000"
    assert (pol4 / "scaling_min_freq").read_text().strip() == "400000"


def test_push_and_run_benchmark(phone, tmp_path):
    phone.root.joinpath("data/local/tmp").mkdir(parents=True)
    script = executable(tmp_path / "bench.sh", '#!/bin/sh\necho "ran with $1 $2"\n')
    dev = AdbDevice()
    assert dev.run_benchmark(script, ["--graph", "a b.tflite"]).strip() == "ran with --graph a b.tflite"
    timing = dev.time_command(["/data/local/tmp/bench.sh", "x"], repeats=3, warmup=1)
    assert timing["n_runs"] == 3 and 0 < timing["latency_ms"] <= timing["latency_p95_ms"] < 5000
    with pytest.raises(MeterError, match="failed") as err:
        dev.time_command(["/data/local/tmp/missing"], repeats=2)
    assert not isinstance(err.value, DeviceGoneError)  # a missing binary is not an unplugged phone
