"""Android phones over ADB: battery power meter, cpufreq DVFS, push-and-run benchmarks.

Everything goes through the ``adb`` binary with argument lists (no host shell);
the one string that reaches the phone's ``sh`` is built with :func:`shlex.quote`.

Battery power = ``voltage_now`` × ``current_now`` of the battery supply under
``/sys/class/power_supply/*`` (the one whose ``type`` is ``Battery``). The kernel
ABI (Documentation/ABI/testing/sysfs-class-power) specifies µV and µA, but vendors
differ in practice: some kernels report mA/mV, and the sign of ``current_now``
while discharging is negative on some phones (the convention Android's
``BatteryManager.BATTERY_PROPERTY_CURRENT_NOW`` documents) and positive on others.
:func:`detect_convention` decides from readings taken while discharging:

* unit — assumed: a phone under load draws between 20 mA and 20 A, so
  ``|current_now| >= 20000`` means µA and smaller means mA; likewise
  ``voltage_now >= 100000`` means µV (a Li-ion cell is 3–5 V), else mV;
* sign — the sign of the median reading while ``status`` is ``Discharging``.

Pass an explicit :class:`BatteryConvention` to skip detection (e.g. calibrated
against an external meter); the convention used is recorded in the meter's
``settings()`` and so in the trace metadata. A phone on USB is usually charging,
which makes battery readings meaningless: the meter refuses unless
``allow_charging=True``; measure over Wi-Fi adb (``adb tcpip 5555``) or disable
charging instead. Fuel gauges update ``current_now`` at roughly 1–4 Hz, and each
``adb shell`` costs tens of ms, so 10–20 Hz is the useful sampling rate.

A phone unplugged mid-run makes adb print ``error: device 'X' not found`` (or
``no devices/emulators found``): that becomes :class:`~hw.base.DeviceGoneError`,
and the sampler keeps the samples already taken.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import statistics
import subprocess
import time
from pathlib import PurePosixPath
from typing import Any, Sequence

from .base import (Availability, DeviceGoneError, Meter, MeterError, MissingFileError, NoDeviceError,
                   PermissionDeniedError, Sample)
from .dvfs import SysfsDvfs

POWER_SUPPLY = "/sys/class/power_supply"
#: adb's own messages when the phone is not (or no longer) there; a command's "not found" is not one of them
_GONE = re.compile(r"error: device .*not found|no devices/emulators found|no devices found|device offline|error: closed")
#: assumed: a phone under load draws 20 mA .. 20 A (see module docstring)
CURRENT_UA_THRESHOLD = 20_000
#: assumed: a Li-ion cell reads 3-5 V, i.e. >= 1e5 only when in µV
VOLTAGE_UV_THRESHOLD = 100_000


class AdbDevice:
    """One phone reached through ``adb [-s serial] ...``."""

    def __init__(self, serial: str | None = None, adb: str = "adb", timeout_s: float = 30.0):
        self.serial, self.adb, self.timeout_s = serial, adb, timeout_s
        self._connected_once = False
        self._root: str | None | bool = False  # False: not probed yet

    def _argv(self, *args: str) -> list[str]:
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def run(self, *args: str, timeout_s: float | None = None) -> str:
        """``adb <args>``; stdout on success, an actionable :class:`MeterError` otherwise."""
        try:
            proc = subprocess.run(self._argv(*args), capture_output=True, text=True,
                                  timeout=timeout_s or self.timeout_s)
        except FileNotFoundError:
            raise MissingFileError(f"{self.adb!r} not found: install Android platform-tools and put adb on PATH") from None
        except subprocess.TimeoutExpired:
            raise DeviceGoneError(f"adb {' '.join(args[:2])} timed out after {timeout_s or self.timeout_s}s (phone asleep or gone?)") from None
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip()
            who = self.serial or "the phone"
            if "unauthorized" in msg:
                raise NoDeviceError(f"{who} is unauthorized: accept the USB-debugging prompt on the phone ({msg})")
            if _GONE.search(msg):
                cls = DeviceGoneError if self._connected_once else NoDeviceError
                raise cls(f"{who} is not reachable through adb: {msg}")
            raise MeterError(f"adb {' '.join(args)} failed ({proc.returncode}): {msg}")
        self._connected_once = True
        return proc.stdout

    def shell(self, argv: Sequence[str] | str, root: bool = False, timeout_s: float | None = None) -> str:
        """Run a command on the phone. A list is quoted for the phone's sh; ``root`` uses su if needed."""
        cmd = argv if isinstance(argv, str) else " ".join(shlex.quote(a) for a in argv)
        if root:
            mode = self.root_mode()
            if mode is None:
                raise PermissionDeniedError("this needs root on the phone: use a rooted phone (su) or an "
                                            "eng/userdebug build with `adb root`")
            if mode == "su":
                cmd = f"su -c {shlex.quote(cmd)}"
        return self.run("shell", cmd, timeout_s=timeout_s)

    def root_mode(self) -> str | None:
        """``"adbd"`` when adb itself runs as root, ``"su"`` when su works, else ``None``."""
        if self._root is False:
            if self.shell(["id", "-u"]).strip() == "0":
                self._root = "adbd"
            else:
                try:
                    self._root = "su" if self.shell("su -c 'id -u'").strip() == "0" else None
                except MeterError:
                    self._root = None
        return self._root  # type: ignore[return-value]

    def state(self) -> str:
        return self.run("get-state").strip()

    def push(self, local: str | os.PathLike, remote: str) -> None:
        if not os.path.exists(local):
            raise MissingFileError(f"cannot push {local}: no such file")
        self.run("push", os.fspath(local), remote, timeout_s=max(self.timeout_s, 120))

    def run_benchmark(self, local: str | os.PathLike, args: Sequence[str] = (), remote_dir: str = "/data/local/tmp",
                      timeout_s: float = 600.0) -> str:
        """Push an executable to ``remote_dir``, make it executable and run it with ``args``; its stdout."""
        remote = str(PurePosixPath(remote_dir) / os.path.basename(local))
        self.push(local, remote)
        self.shell(["chmod", "755", remote])
        return self.shell([remote, *args], timeout_s=timeout_s)

    def time_command(self, argv: Sequence[str], repeats: int, warmup: int = 0) -> dict[str, float]:
        """Run ``argv`` on the phone ``warmup + repeats`` times, timed on the phone (``date +%s%N``).

        Returns ``latency_ms`` (median), ``latency_p95_ms`` and ``n_runs`` like
        ``bench.pipeline.measure.time_workload``, so it plugs into :func:`hw.collect.collect`.
        """
        if repeats < 1 or warmup < 0:
            raise ValueError(f"repeats={repeats} must be >= 1 and warmup={warmup} >= 0")
        cmd = " ".join(shlex.quote(a) for a in argv)
        script = (f"i=0; while [ $i -lt {warmup + repeats} ]; do s=$(date +%s%N); {cmd} >/dev/null || exit 3; "
                  f"e=$(date +%s%N); echo LAT_NS $((e-s)); i=$((i+1)); done")
        out = self.shell(["sh", "-c", script], timeout_s=max(self.timeout_s, 600))
        lat = [int(line.split()[1]) / 1e6 for line in out.splitlines() if line.startswith("LAT_NS ")][warmup:]
        if len(lat) != repeats:
            raise MeterError(f"expected {repeats} timings from the phone, got {len(lat)}: {out[-300:]!r}")
        lat.sort()
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        return {"latency_ms": statistics.median(lat), "latency_p95_ms": p95, "n_runs": repeats}


# --------------------------------------------------------------------------- battery
@dataclasses.dataclass(frozen=True)
class BatteryConvention:
    """How this phone's ``current_now``/``voltage_now`` are to be read."""

    current_unit: str  # "uA" | "mA"
    voltage_unit: str  # "uV" | "mV"
    discharge_sign: int  # +1: positive while discharging, -1: negative while discharging
    source: str = "given"  # given | detected

    def __post_init__(self) -> None:
        if self.current_unit not in ("uA", "mA"):
            raise ValueError(f"current_unit={self.current_unit!r}; allowed: ['uA', 'mA']")
        if self.voltage_unit not in ("uV", "mV"):
            raise ValueError(f"voltage_unit={self.voltage_unit!r}; allowed: ['uV', 'mV']")
        if self.discharge_sign not in (1, -1):
            raise ValueError(f"discharge_sign={self.discharge_sign}; allowed: [1, -1]")

    def power_w(self, voltage_raw: int, current_raw: int) -> float:
        """Power drawn from the battery (positive while discharging), W."""
        v = voltage_raw * (1e-6 if self.voltage_unit == "uV" else 1e-3)
        i = current_raw * (1e-6 if self.current_unit == "uA" else 1e-3) * self.discharge_sign
        return v * i


def detect_convention(readings: Sequence[tuple[int, int]]) -> BatteryConvention:
    """Units and sign from ``(voltage_raw, current_raw)`` pairs read while discharging."""
    if not readings:
        raise ValueError("no battery readings to detect the convention from")
    cur = statistics.median(c for _, c in readings)
    volt = statistics.median(v for v, _ in readings)
    if cur == 0:
        raise MeterError("current_now reads 0 while discharging: cannot tell its sign; "
                         "pass convention=BatteryConvention(...) or put the phone under load")
    return BatteryConvention(
        current_unit="uA" if abs(cur) >= CURRENT_UA_THRESHOLD else "mA",
        voltage_unit="uV" if volt >= VOLTAGE_UV_THRESHOLD else "mV",
        discharge_sign=1 if cur > 0 else -1,
        source="detected",
    )


def find_battery(device: AdbDevice) -> str:
    """Path of the supply whose ``type`` is ``Battery`` (``battery`` preferred)."""
    names = device.shell(["ls", POWER_SUPPLY]).split()
    batteries = []
    for name in names:
        try:
            kind = device.shell(["cat", f"{POWER_SUPPLY}/{name}/type"]).strip()
        except MeterError:
            continue
        if kind == "Battery":
            batteries.append(name)
    if not batteries:
        raise NoDeviceError(f"no power supply of type Battery under {POWER_SUPPLY} (found {names})")
    return f"{POWER_SUPPLY}/{'battery' if 'battery' in batteries else batteries[0]}"


class AndroidBatteryMeter(Meter):
    """Battery discharge power of a phone over adb (rail ``battery``)."""

    name = "android"
    CHARGING = ("Charging", "Full", "Not charging")

    def __init__(self, device: AdbDevice | None = None, convention: BatteryConvention | None = None,
                 allow_charging: bool = False, calibration_reads: int = 5):
        self.device = device or AdbDevice()
        self.allow_charging = allow_charging
        self.path = find_battery(self.device)
        if convention is None:
            readings = []
            for _ in range(calibration_reads):
                v, c, status = self._raw()
                self._check_status(status)
                if status != "Discharging":
                    raise MeterError(f"battery status is {status!r}: the current sign can only be detected while "
                                     "discharging; pass convention=BatteryConvention(...)")
                readings.append((v, c))
            convention = detect_convention(readings)
        self.convention = convention

    @classmethod
    def probe(cls, serial: str | None = None, adb: str = "adb", **_: Any) -> Availability:
        dev = AdbDevice(serial, adb, timeout_s=10)
        try:
            if dev.state() != "device":
                return Availability(False, "adb reports the phone is not in state 'device'")
            find_battery(dev)
        except MeterError as exc:
            return Availability(False, str(exc))
        return Availability(True)

    def available(self) -> Availability:
        return type(self).probe(self.device.serial, self.device.adb)

    def settings(self) -> dict[str, Any]:
        return {"serial": self.device.serial, "battery": self.path, "allow_charging": self.allow_charging,
                "convention": dataclasses.asdict(self.convention)}

    def _raw(self) -> tuple[int, int, str]:
        out = self.device.shell(["cat", f"{self.path}/voltage_now", f"{self.path}/current_now", f"{self.path}/status"])
        lines = out.split()
        try:
            return int(lines[0]), int(lines[1]), lines[2]
        except (IndexError, ValueError):
            raise MeterError(f"unexpected battery readout from {self.path}: {out!r}") from None

    def _check_status(self, status: str) -> None:
        if status in self.CHARGING and not self.allow_charging:
            raise MeterError(
                f"the phone is plugged in (battery status {status!r}), so battery readings do not show what it draws. "
                "Use adb over Wi-Fi (`adb tcpip 5555`, unplug, `adb connect IP`), disable charging "
                "(root; vendor-specific, e.g. /sys/class/power_supply/battery/input_suspend), "
                "or pass allow_charging=True (CLI: --allow-charging)")

    def read(self) -> Sample:
        t = time.monotonic()
        v, c, status = self._raw()
        self._check_status(status)
        return Sample(t_s=t, power_w={"battery": self.convention.power_w(v, c)}, total=("battery",))


# --------------------------------------------------------------------------- cpufreq over adb
class AdbFS:
    """The :class:`hw.dvfs.FileAccess` protocol over ``adb shell`` (writes need root)."""

    def __init__(self, device: AdbDevice):
        self.device = device

    def read(self, path: str) -> str:
        try:
            return self.device.shell(["cat", path]).strip()
        except DeviceGoneError:
            raise
        except MeterError as exc:
            raise MissingFileError(f"cannot read {path} on the phone: {exc}") from None

    def write(self, path: str, value: str) -> None:
        self.device.shell(f"echo {shlex.quote(value)} > {shlex.quote(path)}", root=True)

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(self.device.shell(["ls", path]).split())
        except DeviceGoneError:
            raise
        except MeterError:
            return []

    def exists(self, path: str) -> bool:
        return self.device.shell(f"[ -e {shlex.quote(path)} ] && echo 1 || echo 0").strip() == "1"


def android_dvfs(device: AdbDevice | None = None) -> SysfsDvfs:
    """cpufreq policies of the phone (domains ``cpu_policyN``); setting needs root."""
    return SysfsDvfs(AdbFS(device or AdbDevice()))
