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

* voltage unit — the one that puts the battery at 2.5–10 V (assumed, ``BATTERY_VOLTAGE_V``);
* current unit — the one, µA or mA, under which voltage × current is a plausible
  phone power, 20 mW–15 W (assumed, ``PHONE_POWER_W``; the range spans < 1000×, so
  the two units can never both fit);
* sign — that of the current while ``status`` is ``Discharging``.

Every one of several readings (at least 3, spread over a second) must agree; if
they do not, or fit no convention, the meter refuses and asks for an explicit one.
``status`` is read as a whole line (``Not charging`` is two words) and must be one
of the kernel's values.

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

from .base import (Availability, DeviceGoneError, Meter, MeterError, MissingFileError, NoDeviceError, ParseError,
                   PermissionDeniedError, Sample)
from .dvfs import SysfsDvfs

POWER_SUPPLY = "/sys/class/power_supply"
#: adb's own messages when the phone is not (or no longer) there; a command's "not found" is not one of them
_GONE = re.compile(r"error: device .*not found|no devices/emulators found|no devices found|device offline|error: closed")
#: assumed: a phone draws between 20 mW (idle, screen off) and 15 W (flagship SoC + screen at peak)
#: from its battery; the ratio must stay below 1000 so that µA and mA can never both be plausible
PHONE_POWER_W = (0.02, 15.0)
#: assumed: a phone battery reads 2.5-10 V (one Li-ion cell 2.5-4.5 V; a few phones use 2S packs ~7.7 V)
BATTERY_VOLTAGE_V = (2.5, 10.0)
#: calibration needs at least this many readings to decide a convention
MIN_CALIBRATION_READS = 3
#: values the kernel ABI allows in power_supply/*/status (Documentation/ABI/testing/sysfs-class-power)
STATUSES = ("Unknown", "Charging", "Discharging", "Not charging", "Full")
#: |raw| above this in voltage_now/current_now is no reading at all (> 2^31 on a 32-bit kernel int)
MAX_RAW = 2**31
assert PHONE_POWER_W[1] / PHONE_POWER_W[0] < 1000


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
            # errors="replace": bytes that are not UTF-8 (a broken adb, a binary dump) reach the parsers, which
            # refuse them naming the file, instead of a UnicodeDecodeError naming nothing
            proc = subprocess.run(self._argv(*args), capture_output=True, text=True, errors="replace",
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
        # a phone whose date lacks %N prints "LAT_NS 0" or garbage: such lines are not timings
        lat = [int(m.group(1)) / 1e6 for m in re.finditer(r"^LAT_NS (\d{1,15})\s*$", out, re.M | re.ASCII)
               if int(m.group(1)) > 0][warmup:]
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


def _voltage_unit(volt_raw: float) -> str | None:
    lo, hi = BATTERY_VOLTAGE_V
    if lo * 1e6 <= volt_raw <= hi * 1e6:
        return "uV"
    if lo * 1e3 <= volt_raw <= hi * 1e3:
        return "mV"
    return None


def _current_unit(volt_v: float, cur_raw: float) -> str | None:
    """The one current unit under which ``volt_v × cur_raw`` is a plausible phone power, else None."""
    lo, hi = PHONE_POWER_W
    fits = [unit for unit, scale in (("uA", 1e-6), ("mA", 1e-3)) if lo <= volt_v * abs(cur_raw) * scale <= hi]
    return fits[0] if len(fits) == 1 else None


def detect_convention(readings: Sequence[tuple[int, int]]) -> BatteryConvention:
    """Units and sign from ``(voltage_raw, current_raw)`` pairs read while discharging.

    Decided from every reading, not one: the voltage unit is the one that puts the
    battery in :data:`BATTERY_VOLTAGE_V`; the current unit the one (µA or mA) under
    which voltage × current is a plausible phone power (:data:`PHONE_POWER_W`) —
    the two ranges cannot both fit, as the power range spans less than 1000×; the
    sign is that of the current while discharging. Every reading must agree and at
    least :data:`MIN_CALIBRATION_READS` are needed; otherwise this refuses with a
    :class:`~hw.base.MeterError` asking for an explicit convention.
    """
    ask = ("pass an explicit convention: BatteryConvention(current_unit='uA'|'mA', voltage_unit='uV'|'mV', "
           "discharge_sign=1|-1) (e.g. checked against a USB power meter), or put the phone under steady load")
    if len(readings) < MIN_CALIBRATION_READS:
        raise MeterError(f"{len(readings)} battery reading(s) to detect the convention from; "
                         f"allowed: at least {MIN_CALIBRATION_READS}. Or {ask}")
    v_units = {_voltage_unit(v) for v, _ in readings}
    if len(v_units) != 1 or None in v_units:
        raise MeterError(f"voltage_now readings {[v for v, _ in readings][:8]} do not all read as a {BATTERY_VOLTAGE_V[0]}-"
                         f"{BATTERY_VOLTAGE_V[1]} V battery in µV or in mV: {ask}")
    v_unit = v_units.pop()
    v_scale = 1e-6 if v_unit == "uV" else 1e-3
    currents = [c for _, c in readings]
    if any(c == 0 for c in currents):
        raise MeterError(f"current_now reads 0 while discharging ({currents[:8]}): cannot tell its sign or unit; {ask}")
    signs = {1 if c > 0 else -1 for c in currents}
    if len(signs) != 1:
        raise MeterError(f"current_now changes sign while discharging ({currents[:8]}): cannot tell the convention; {ask}")
    c_units = {_current_unit(v * v_scale, c) for v, c in readings}
    if len(c_units) != 1 or None in c_units:
        lo, hi = PHONE_POWER_W
        raise MeterError(f"current_now readings {currents[:8]} (voltage {v_unit}) are not all a plausible phone power "
                         f"({lo:g}-{hi:g} W) under one unit, µA or mA: {ask}")
    return BatteryConvention(current_unit=c_units.pop(), voltage_unit=v_unit, discharge_sign=signs.pop(),
                             source="detected")


def find_battery(device: AdbDevice) -> str:
    """Path of the supply whose ``type`` is ``Battery`` (``battery`` preferred)."""
    listed = device.shell(["ls", POWER_SUPPLY]).split()
    # a supply's name is a sysfs directory name: anything else (a NUL, a slash, garbage from a broken adb) is skipped
    names = [n for n in listed if re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", n)]
    batteries = []
    for name in names:
        try:
            kind = device.shell(["cat", f"{POWER_SUPPLY}/{name}/type"]).strip()
        except MeterError:
            continue
        if kind == "Battery":
            batteries.append(name)
    if not batteries:
        raise NoDeviceError(f"no power supply of type Battery under {POWER_SUPPLY} (found {names[:8]}"
                            f"{f'; {len(listed) - len(names)} unusable names skipped' if len(listed) > len(names) else ''})")
    return f"{POWER_SUPPLY}/{'battery' if 'battery' in batteries else batteries[0]}"


def parse_battery_readout(out: str, where: str = "battery") -> tuple[int, int, str]:
    """``(voltage_raw, current_raw, status)`` from ``cat voltage_now current_now status``.

    One value per line; the status is the whole third line (``Not charging`` is two
    words). Anything else raises :class:`~hw.base.ParseError` naming the readout.
    """
    lines = [ln.strip() for ln in out.replace("\r", "").split("\n") if ln.strip()]
    if len(lines) != 3:
        raise ParseError(f"unexpected battery readout from {where}: {out[:120]!r}; allowed: three lines "
                         "(voltage_now, current_now, status)")
    values = []
    for name, text in (("voltage_now", lines[0]), ("current_now", lines[1])):
        if not re.fullmatch(r"[-+]?\d{1,12}", text, re.ASCII):
            raise ParseError(f"{where}/{name} reads {text[:40]!r}; allowed: a decimal integer")
        value = int(text)
        if abs(value) >= MAX_RAW:
            raise ParseError(f"{where}/{name} reads {value}; allowed: |value| < {MAX_RAW}")
        values.append(value)
    return values[0], values[1], lines[2]


class AndroidBatteryMeter(Meter):
    """Battery discharge power of a phone over adb (rail ``battery``)."""

    name = "android"
    CHARGING = ("Charging", "Full", "Not charging")

    def __init__(self, device: AdbDevice | None = None, convention: BatteryConvention | None = None,
                 allow_charging: bool = False, calibration_reads: int = 5, calibration_interval_s: float = 0.2):
        self.device = device or AdbDevice()
        self.allow_charging = allow_charging
        self.path = find_battery(self.device)
        if convention is None:
            if calibration_reads < MIN_CALIBRATION_READS:
                raise MeterError(f"calibration_reads={calibration_reads}; allowed: at least {MIN_CALIBRATION_READS} "
                                 "(the convention is decided from several readings), or pass convention=...")
            readings = []
            for _ in range(calibration_reads):
                v, c, status = self._raw()
                self._check_status(status)
                if status != "Discharging":
                    raise MeterError(f"battery status is {status!r}: the current sign can only be detected while "
                                     "discharging; pass convention=BatteryConvention(...)")
                readings.append((v, c))
                time.sleep(calibration_interval_s)  # fuel gauges update at ~1-4 Hz: spread the readings
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
        return parse_battery_readout(out, self.path)

    def _check_status(self, status: str) -> None:
        if status not in STATUSES:
            raise ParseError(f"{self.path}/status reads {status[:40]!r}; allowed: {list(STATUSES)}")
        if status == "Unknown" and not self.allow_charging:
            raise MeterError(f"{self.path}/status reads 'Unknown': cannot tell whether the phone is charging; "
                             "pass allow_charging=True (CLI: --allow-charging) to measure anyway")
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
