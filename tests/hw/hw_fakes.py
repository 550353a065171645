"""Fake hardware for the hw tests (helpers; fixtures are in conftest.py): sysfs trees in tmp_path, a fake adb, a fake tegrastats."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from hw.base import Availability, DeviceGoneError, Meter, Sample

FIXTURES = Path(__file__).resolve().parents[2] / "data" / "samples" / "tegrastats"
LOGS = sorted(FIXTURES.glob("*.log"))


def write(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{value}\n")
    return path


def make_powercap(root: Path, zones: dict[str, tuple[str, int, int]]) -> Path:
    """zones: dir name -> (name, energy_uj, max_energy_range_uj); flat like /sys/class/powercap."""
    for d, (name, energy, max_range) in zones.items():
        write(root / d / "name", name)
        write(root / d / "energy_uj", energy)
        write(root / d / "max_energy_range_uj", max_range)
    return root


def make_cpufreq(root: Path, policies: dict[str, list[int]]) -> Path:
    """policies: policyN -> available kHz levels; min/max set to the extremes, governor schedutil."""
    for pol, levels in policies.items():
        d = root / "sys/devices/system/cpu/cpufreq" / pol
        write(d / "scaling_available_frequencies", " ".join(map(str, levels)))
        write(d / "scaling_min_freq", min(levels))
        write(d / "scaling_max_freq", max(levels))
        write(d / "scaling_cur_freq", max(levels))
        write(d / "scaling_governor", "schedutil")
    return root


def make_devfreq(root: Path, name: str, levels_hz: list[int]) -> Path:
    d = root / "sys/class/devfreq" / name
    write(d / "available_frequencies", " ".join(map(str, levels_hz)))
    write(d / "min_freq", min(levels_hz))
    write(d / "max_freq", max(levels_hz))
    write(d / "cur_freq", max(levels_hz))
    write(d / "governor", "nvhost_podgov")
    return root


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


FAKE_ADB = textwrap.dedent('''\
    #!{python}
    """Fake adb: emulates one phone whose filesystem lives under state['root']."""
    import json, os, shutil, subprocess, sys
    state_path = os.environ["FAKE_ADB_STATE"]
    with open(state_path) as fh:
        st = json.load(fh)
    st["calls"] += 1
    with open(state_path, "w") as fh:
        json.dump(st, fh)
    args = sys.argv[1:]
    serial = st["serial"]
    if args[:1] == ["-s"]:
        serial, args = args[1], args[2:]
    gone = st["disconnect_after"] is not None and st["calls"] > st["disconnect_after"]
    if args == ["devices"]:
        print("List of devices attached")
        if not gone:
            print(st["serial"] + "\\tdevice")
        sys.exit(0)
    if gone or serial != st["serial"]:
        sys.stderr.write("error: device '%s' not found\\n" % serial)
        sys.exit(1)
    root = st["root"]
    if args[0] == "get-state":
        print("device"); sys.exit(0)
    if args[0] == "push":
        dst = root + args[2]
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(args[1], dst); print("1 file pushed"); sys.exit(0)
    if args[0] == "shell":
        cmd = " ".join(args[1:]).replace("/sys/", root + "/sys/").replace("/data/", root + "/data/")
        env = dict(os.environ, PATH=st["bin"] + ":" + os.environ["PATH"], FAKE_UID=st["uid"])
        p = subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True)
        sys.stdout.write(p.stdout.replace(root, "")); sys.stderr.write(p.stderr.replace(root, ""))
        sys.exit(p.returncode)
    sys.stderr.write("fake adb: unsupported %r\\n" % args); sys.exit(1)
''')


class FakePhone:
    def __init__(self, tmp: Path, monkeypatch):
        self.tmp = tmp
        self.root = tmp / "phone"
        self.bin = tmp / "phone_bin"
        self.bin.mkdir(parents=True)
        hostbin = tmp / "host_bin"
        hostbin.mkdir()
        executable(hostbin / "adb", FAKE_ADB.format(python=sys.executable))
        self.state_path = tmp / "adb_state.json"
        monkeypatch.setenv("PATH", f"{hostbin}:{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_ADB_STATE", str(self.state_path))
        self.state = {"serial": "PHONE1", "root": str(self.root), "bin": str(self.bin), "uid": "2000",
                      "calls": 0, "disconnect_after": None}
        self.rooted(False)
        self.save()
        ps = self.root / "sys/class/power_supply"
        write(ps / "usb" / "type", "USB")
        write(ps / "usb" / "online", 1)
        self.battery(3_850_000, -350_000, "Discharging")

    def rooted(self, su: bool, adbd: bool = False) -> None:
        executable(self.bin / "id", '#!/bin/sh\necho "${FAKE_UID:-2000}"\n')
        body = 'FAKE_UID=0 exec sh -c "$2"' if su else 'echo "su: not found" >&2; exit 127'
        executable(self.bin / "su", f"#!/bin/sh\n{body}\n")
        self.state["uid"] = "0" if adbd else "2000"
        self.save()

    def battery(self, voltage, current, status) -> None:
        d = self.root / "sys/class/power_supply/battery"
        write(d / "type", "Battery")
        write(d / "voltage_now", voltage)
        write(d / "current_now", current)
        write(d / "status", status)

    def disconnect_after(self, n_more_calls: int) -> None:
        self.load()
        self.state["disconnect_after"] = self.state["calls"] + n_more_calls
        self.save()

    def load(self) -> None:
        self.state = json.loads(self.state_path.read_text())

    def save(self) -> None:
        self.state_path.write_text(json.dumps(self.state))


class RampMeter(Meter):
    """Power rising linearly in time: P(t) = a + b t (exact trapezoid); b = 0 is a constant meter.

    After ``fail_after`` reads it raises DeviceGoneError, like an unplugged meter."""

    name = "ramp"

    def __init__(self, a=2.0, b=4.0, fail_after=None):
        self.a, self.b, self.t0, self.n, self.fail_after = a, b, time.monotonic(), 0, fail_after

    @classmethod
    def probe(cls, **_):
        return Availability(True)

    def read(self):
        self.n += 1
        if self.fail_after is not None and self.n > self.fail_after:
            raise DeviceGoneError("unplugged")
        t = time.monotonic()
        return Sample(t_s=t, power_w={"x": self.a + self.b * (t - self.t0)})
