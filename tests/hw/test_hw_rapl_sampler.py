"""RAPL on a fake powercap tree (zones by name, wraparound, permissions) and the sampler."""

from __future__ import annotations

import builtins
import os
import threading
import time

import pytest

from hw.base import (Availability, CounterError, DeviceGoneError, Meter, MeterError, ParseError, PermissionDeniedError,
                     Sample, SamplingError, counter_delta)
from hw.rapl import RaplMeter, find_zones
from hw.sampler import Sampler, integrate_power, measure, window

from hw_fakes import RampMeter, make_powercap, write

MAX = 262_143_328_850  # a typical Intel max_energy_range_uj


def intel_tree(root, pkg=1_000_000, dram=500_000, max_range=MAX):
    return make_powercap(root, {
        "intel-rapl:0": ("package-0", pkg, max_range),
        "intel-rapl:0:0": ("core", 10, max_range),
        "intel-rapl:0:1": ("dram", dram, max_range),  # dram not at index 2: found by name
        "intel-rapl:1": ("psys", 5, max_range),
        "intel-rapl-mmio:0": ("package-0", 7, max_range),  # duplicate interface: ignored
    })


def test_zones_found_by_name_intel_and_amd(tmp_path):
    zones = find_zones(intel_tree(tmp_path / "intel"))
    assert set(zones) == {"package-0", "core-0", "dram-0", "psys"}
    assert zones["dram-0"].name == "intel-rapl:0:1"
    amd = make_powercap(tmp_path / "amd", {"intel-rapl:0": ("package-0", 1, 2**32), "intel-rapl:1": ("package-1", 1, 2**32)})
    m = RaplMeter(amd)
    assert m.total == ("package-0", "package-1")
    # 2**32 µJ at an assumed 500 W lasts 8.6 s: poll at least every 4.3 s
    assert m.max_poll_interval_s == pytest.approx(2**32 / 1e6 / 500 / 2)


def test_energy_is_end_minus_begin_and_wrap_handled(tmp_path):
    root = intel_tree(tmp_path, pkg=MAX - 2_000_000)
    m = RaplMeter(root)
    assert m.total == ("package-0", "dram-0")
    a = m.read()
    write(root / "intel-rapl:0/energy_uj", 3_000_000)  # wrapped: 2 J before the wrap + 3 J after
    write(root / "intel-rapl:0:1/energy_uj", 1_500_000)
    b = m.read()
    assert b.energy_j["package-0"] - a.energy_j["package-0"] == pytest.approx(5.0)
    assert b.total_energy_j - a.total_energy_j == pytest.approx(6.0)
    assert counter_delta(10, 4, 12) == 6 and counter_delta(4, 10, 12) == 6


def test_long_window_never_undercounts(tmp_path, monkeypatch):
    """A counter with a tiny range wraps many times during the window; the sampler must see every wrap."""
    max_range = 50_000_000  # 50 J
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 0, max_range)})
    monkeypatch.setattr("hw.rapl.ASSUMED_MAX_ZONE_POWER_W", 2000.0)  # -> poll every <= 12.5 ms
    meter = RaplMeter(root)
    energy_fd = os.open(root / "intel-rapl:0/energy_uj", os.O_WRONLY)
    true_uj = [0]
    stop = threading.Event()

    def hardware():  # 5 J every 10 ms (~500 W, within the assumed maximum): a wrap every ~0.1 s
        while not stop.is_set():
            true_uj[0] += 5_000_000
            # in place and fixed width (one small write): the meter keeps the file open and
            # preads it, as it does on sysfs, so the file must stay the same inode
            os.pwrite(energy_fd, f"{true_uj[0] % max_range:015d}\n".encode(), 0)
            time.sleep(0.01)

    sampler = Sampler(meter, rate_hz=1)  # asks for 1 Hz; the meter forces >= 80 Hz
    assert sampler.interval_s == pytest.approx(0.0125)
    with sampler:
        t = threading.Thread(target=hardware)
        start_uj = true_uj[0]
        with sampler.window() as w:
            t.start()
            deadline = time.monotonic() + 5
            while true_uj[0] - start_uj < 4 * max_range and time.monotonic() < deadline:
                time.sleep(0.01)  # run until the counter wrapped at least 3 times
            stop.set()
            t.join()
            os.close(energy_fd)
        expected_j = (true_uj[0] - start_uj) / 1e6
    assert expected_j > 3 * max_range / 1e6
    assert w.method == "counter"
    assert w.energy_j == pytest.approx(expected_j)


def test_permission_error_says_how_to_grant_access(tmp_path, monkeypatch):
    root = intel_tree(tmp_path)
    real_open = builtins.open

    def deny(path, *a, **k):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    real_os_open = os.open

    def deny_os(path, *a, **k):
        if str(path).endswith("energy_uj"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_os_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", deny)
    monkeypatch.setattr(os, "open", deny_os)  # the meter keeps its counters open with os.open
    ok = RaplMeter.probe(root)
    assert not ok and "chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj" in ok.reason
    with pytest.raises(PermissionDeniedError, match="udev"):
        RaplMeter(root)


def test_unreadable_counter_and_missing_tree(tmp_path):
    root = intel_tree(tmp_path)
    (root / "intel-rapl:0/energy_uj").unlink()
    (root / "intel-rapl:0/energy_uj").mkdir()  # not a file: a clear MeterError, not a traceback from deep inside
    assert not RaplMeter.probe(root)
    with pytest.raises(MeterError, match="energy_uj"):
        RaplMeter(root)
    ok = RaplMeter.probe(tmp_path / "absent")
    assert not ok and "does not exist" in ok.reason


# --------------------------------------------------------------------------- sampler
def test_trapezoid_window_matches_analytic_integral():
    m = RampMeter()
    with Sampler(m, rate_hz=100) as s, s.window() as w:
        time.sleep(0.2)
    t0, t1 = w.t_start_s - m.t0, w.t_end_s - m.t0
    exact = m.a * (t1 - t0) + m.b * (t1**2 - t0**2) / 2
    assert w.method == "trapezoid"
    assert w.energy_j == pytest.approx(exact, rel=1e-6)
    assert w.power_w == pytest.approx(exact / (t1 - t0), rel=1e-6)
    assert 2 <= w.n_samples <= 40  # ~20 at 100 Hz; fewer only if this thread is starved (no timing goal here)
    assert all(b.t_s >= a.t_s for a, b in zip(w.samples, w.samples[1:]))


def test_integrate_power_clips_and_holds():
    s = [Sample(t_s=1.0, power_w={"x": 2.0}), Sample(t_s=3.0, power_w={"x": 4.0})]
    assert integrate_power(s) == pytest.approx(6.0)
    assert integrate_power(s, 0.0, 4.0) == pytest.approx(2.0 + 6.0 + 4.0)  # held at both ends
    assert integrate_power(s, 2.0, 3.0) == pytest.approx(3.5)
    with pytest.raises(ValueError, match="rail 'y'"):
        integrate_power(s, rail="y")


def test_device_gone_mid_window_keeps_samples():
    m = RampMeter(fail_after=8)
    with pytest.raises(DeviceGoneError) as err:
        with Sampler(m, rate_hz=100) as s, s.window():
            time.sleep(0.3)
    assert len(err.value.samples) >= 5
    assert all(isinstance(x, Sample) for x in err.value.samples)


def test_measure_helper_and_bad_rate(tmp_path):
    result, w = measure(RampMeter(), lambda: 42, rate_hz=50)
    assert result == 42 and w.energy_j >= 0
    with pytest.raises(ValueError, match="rate_hz"):
        Sampler(RampMeter(), rate_hz=0)
    with window(RaplMeter(intel_tree(tmp_path))) as w:
        pass
    assert w.method == "counter" and w.energy_j == 0.0


# --------------------------------------------------------------------------- robustness (issue 13)
class SlowGoneMeter(Meter):
    """Each read holds the sampler lock for one subprocess call, like adb; gone after ``n_ok`` reads."""

    name = "slow"

    def __init__(self, n_ok):
        self.n, self.n_ok = 0, n_ok

    @classmethod
    def probe(cls, **_):
        return Availability(True)

    def read(self):
        import subprocess
        import sys

        self.n += 1
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        if self.n > self.n_ok:
            raise DeviceGoneError("unplugged")
        return Sample(t_s=time.monotonic(), power_w={"x": 1.0})


def test_edge_reads_are_not_starved_by_a_slow_meter():
    """The race behind the flaky adb unplug test: the thread took the lock back right after each
    slow read, so the window's opening read came after the device was gone and the error left with
    no samples. Edge reads now go first: the window always holds its opening read."""
    for _ in range(3):
        s = Sampler(SlowGoneMeter(n_ok=4), rate_hz=50)
        with pytest.raises(DeviceGoneError) as err:
            with s.window():
                time.sleep(2.0)
        s.stop()
        assert s.n_reads == 4 and 2 <= len(err.value.samples) <= 3


def test_thread_waits_while_an_edge_read_is_pending():
    m = RampMeter()
    s = Sampler(m, rate_hz=1000)
    s._edges = 1  # an edge read is waiting for the lock
    with s:
        time.sleep(0.1)
        n_blocked = s.n_reads
        s._edges = 0
        s._edge_done.set()
        time.sleep(0.1)
    assert n_blocked <= 2 and s.n_reads > n_blocked + 5  # 1: start(); at most one read already under way


def test_counter_reset_is_an_error_not_a_phantom_range(tmp_path):
    root = intel_tree(tmp_path, pkg=100_000_000_000)
    m = RaplMeter(root)
    a = m.read()
    write(root / "intel-rapl:0/energy_uj", 5_000)  # reset (suspend/resume): not a wrap of 162 kJ in 0 s
    with pytest.raises(CounterError, match="reset") as err:
        m.read()
    assert not isinstance(err.value, ValueError) and isinstance(err.value, MeterError)
    write(root / "intel-rapl:0/energy_uj", 1_005_000)
    b = m.read()  # counts on from the new value: +1 J
    assert b.energy_j["package-0"] - a.energy_j["package-0"] == pytest.approx(1.0)


def test_sampler_thread_error_surfaces_at_window_end(tmp_path):
    root = intel_tree(tmp_path, pkg=100_000_000_000)
    s = Sampler(RaplMeter(root), rate_hz=200)
    with pytest.raises(SamplingError, match="reset") as err:
        with s.window():
            write(root / "intel-rapl:0/energy_uj", 5)
            time.sleep(0.1)
    assert isinstance(s.error, CounterError) and len(err.value.samples) >= 1
    with s.window() as w:  # the next window samples afresh
        time.sleep(0.05)
    assert w.energy_j == 0.0 and s.error is None
    s.stop()


def test_zero_counter_range_refused_not_busy_looped(tmp_path):
    root = make_powercap(tmp_path, {"intel-rapl:0": ("package-0", 10, 0)})
    with pytest.raises(MeterError, match="max_energy_range_uj = 0"):
        RaplMeter(root)
    m = RampMeter()
    m.max_poll_interval_s = 0.0
    with pytest.raises(MeterError, match="1000 Hz"):
        Sampler(m)


def test_counter_garbage_is_a_parse_error(tmp_path):
    root = intel_tree(tmp_path)
    m = RaplMeter(root)
    write(root / "intel-rapl:0/energy_uj", "12ab")
    with pytest.raises(ParseError, match="decimal integer"):
        m.read()
    write(root / "intel-rapl:0/energy_uj", -4)
    with pytest.raises(ParseError, match=">= 0"):
        m.read()
    m.close()
    with pytest.raises(MeterError, match="closed"):
        m.read()
