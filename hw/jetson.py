"""NVIDIA Jetson: tegrastats parsing/streaming, INA3221 rails from sysfs, cpufreq/devfreq DVFS.

tegrastats formats handled by :func:`parse_tegrastats` (sources: the L4T
Developer Guide, "tegrastats Utility" appendix, and logs recorded on real boards —
see tests/hw and data/samples/tegrastats/README.md):

=====================================  ===============================================
token                                  seen on
=====================================  ===============================================
``MM-DD-YYYY HH:MM:SS`` prefix          JetPack 5/6 (tegrastats prints a date)
``RAM 2633/7850MB (lfb 3x4MB)``          all
``SWAP 0/3417MB (cached 2MB)``           all with swap
``CPU [2%@1036,off,...]``                per-core load %@MHz, ``off`` for offline cores
``cpu [17%,13%]@408``                    old L4T (TX1): one frequency after the bracket
``EMC_FREQ 3%@665`` / ``EMC_FREQ 0%``   with or without ``@MHz`` (without: not root)
``EMC_FREQ @2133``                      DriveOS/Orin without load
``GR3D_FREQ 43%@[305,0]``               Orin: one frequency per GPC (GPU clock = max)
``GR3D 3%@76`` / ``EMC 1%@408``          old L4T names
``VDD_IN 3624/3624``                    TX2/Nano era: rails ``current/average`` in mW, no unit
``VDD_IN 5542mW/5542mW``                JetPack 5+: explicit ``mW``
``VDD_IN 5542mW/5542mW/6000mW``         newer JetPack: a third field (kept in ``rails_extra_w``)
``cpu@51.031C`` ... ``PMIC@100C``         temperatures; ``-256C`` = sensor absent (dropped)
``APE 174``, ``NVENC off``, ``VIC 0%@115`` engine clocks (MHz, ``None`` when off)
anything else                          kept verbatim in ``unparsed``; never fatal
=====================================  ===============================================

A corrupt token never becomes a value: numbers longer than 9 digits, rails above
:data:`MAX_RAIL_MW`, and memory tokens that lost their unit (``RAM 12579/6``,
``RAM 2633/7850``) stay in ``unparsed``. A line that is unusable as a whole (malformed
date prefix, nothing recognised) is marked ``bad``; readers skip and count it
(:class:`ParseStats`).

The device total is the board input rail (``VDD_IN`` on TX2/Xavier NX/Orin NX and
Nano, ``POM_5V_IN`` on Nano/TX1) when present; boards without one (AGX Xavier,
AGX Orin) sum all their rails — the choice energymon's Jetson backend makes too.

INA3221 sysfs layouts (:class:`Ina3221Meter`): the mainline ``ina3221`` hwmon driver
(L4T r34+: ``.../hwmon/hwmonN/inK_label``, ``inK_input`` in mV, ``currK_input`` in
mA) and the older L4T ``ina3221x`` iio driver (r32: ``.../iio:deviceN/rail_name_K``,
``in_powerK_input`` in mW).
"""

from __future__ import annotations

import datetime as _dt
import glob
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .base import (open_readonly, Availability, DeviceGoneError, Meter, MeterError, MissingFileError, NoDeviceError, ParseError,
                   PermissionDeniedError, Sample)
from .dvfs import DEVFREQ_DIR, LocalFS, SysfsDvfs

#: rails that measure the whole board input, in order of preference
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
#: devfreq names of the Jetson GPU (Orin, Xavier, TX2, Nano/TX1)
GPU_DEVFREQ = ("17000000.ga10b", "17000000.gv11b", "17000000.gp10b", "57000000.gpu")

# Numbers are bounded in length ({1,9} digits) so that a corrupt token never becomes a huge or
# infinite float; character classes never cross the next bracket or line, so every pattern scans a
# line in linear time (an unclosed "CPU [" once made the bracket pattern quadratic). re.ASCII: \d
# is 0-9 only.
_N = r"\d{1,9}(?!\d)"  # an integer of at most 9 digits
_F = r"\d{1,9}(?:\.\d{1,6})?(?![\d.])"  # a decimal of at most 9.6 digits
_A = re.ASCII
_DATE = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2})\s+", _A)
_DATEISH = re.compile(r"^\s*\d{1,4}[-/]\d{1,4}[-/]\d{1,4}[ T]\d{1,2}:\d{1,2}", _A)
_RAM = re.compile(rf"\bRAM ({_N})/({_N})([kMG])B(?: \(lfb [^)(]{{0,40}}\))?", _A)
_SWAP = re.compile(rf"\bSWAP ({_N})/({_N})([kMG])B(?: \(cached [^)(]{{0,40}}\))?", _A)
_IRAM = re.compile(rf"\bIRAM ({_N})/({_N})([kMG])B(?: \(lfb [^)(]{{0,40}}\))?", _A)
_CPU = re.compile(rf"\bCPU \[([^\]\[]{{0,2000}})\](?:@({_N}))?", re.IGNORECASE | _A)
_CLOCK = re.compile(rf"\b(EMC_FREQ|EMC|GR3D_FREQ|GR3D) (?:({_N})%)?(?:@({_N}|\[[\d,]{{0,200}}\]))?(?=\s|$)", _A)
_RAIL = re.compile(rf"\b([A-Za-z][A-Za-z0-9_]{{0,63}}) ({_F})(mW)?/({_F})(mW)?(?:/({_F})(mW)?)?(?=\s|$)", _A)
_TEMP = re.compile(rf"\b([A-Za-z][A-Za-z0-9_]{{0,63}})@(-?{_F})C(?=\s|$)", _A)
_ENGINE = re.compile(rf"\b(NV[A-Z]{{1,10}}\d?|VIC|OFA|PVA\d_FREQ|APE|MSENC|DLA\d\w{{0,10}}) (off|{_N}%@{_N}|{_N})(?=\s|$)", _A)
_MTS = re.compile(rf"\bMTS fg ({_N})% bg ({_N})%", _A)
_CPU_ENTRY = re.compile(rf"({_N})%(?:@({_N}))?", _A)
_UNITS_MB = {"k": 1 / 1024, "M": 1.0, "G": 1024.0}
#: tegrastats prints this when a thermal zone exists but has no sensor
ABSENT_TEMP_C = -256.0
#: token names that are never power rails: a truncated ``RAM 12579/6`` or a ``RAM 2633/7850`` whose
#: ``MB`` was lost has the rail shape ``NAME a/b`` but is memory, not mW
NOT_RAILS = frozenset({"RAM", "SWAP", "IRAM", "CPU", "EMC", "EMC_FREQ", "GR3D", "GR3D_FREQ", "MTS", "lfb", "cached",
                       "fg", "bg"})
#: assumed: no Jetson rail reads above 1 kW (the largest module, AGX Orin 64GB, is rated 60 W);
#: a larger value is a corrupt token, not a reading
MAX_RAIL_MW = 1_000_000.0
#: assumed: tegrastats lines are < 2 KB (24-core AGX Thor lines ~1 KB); longer lines are not tegrastats
MAX_LINE_CHARS = 16_384


@dataclass
class TegraSample:
    """One parsed tegrastats line. Powers in W, clocks in MHz, loads in %, memory in MB."""

    timestamp: _dt.datetime | None = None
    ram_used_mb: float | None = None
    ram_total_mb: float | None = None
    swap_used_mb: float | None = None
    swap_total_mb: float | None = None
    cpu_load_pct: list[float | None] = field(default_factory=list)  # None: core off
    cpu_freq_mhz: list[float | None] = field(default_factory=list)
    emc_load_pct: float | None = None
    emc_freq_mhz: float | None = None
    gpu_load_pct: float | None = None
    gpu_freq_mhz: float | None = None
    gpu_gpc_freq_mhz: list[float] = field(default_factory=list)
    rails_w: dict[str, float] = field(default_factory=dict)  # instantaneous
    rails_avg_w: dict[str, float] = field(default_factory=dict)  # running average since start
    rails_extra_w: dict[str, float] = field(default_factory=dict)  # third field, newer JetPack
    temps_c: dict[str, float] = field(default_factory=dict)
    absent_sensors: list[str] = field(default_factory=list)
    engines_mhz: dict[str, float | None] = field(default_factory=dict)
    unparsed: list[str] = field(default_factory=list)
    #: why the line is unusable (skipped and counted by the log readers); "" when it is usable
    bad: str = ""

    @property
    def total_rails(self) -> tuple[str, ...]:
        for rail in INPUT_RAILS:
            if rail in self.rails_w:
                return (rail,)
        return tuple(self.rails_w)

    @property
    def total_power_w(self) -> float:
        return float(sum(self.rails_w[r] for r in self.total_rails))

    def to_sample(self, t_s: float) -> Sample:
        freq = {f"cpu{i}": f for i, f in enumerate(self.cpu_freq_mhz) if f is not None}
        util = {f"cpu{i}": u for i, u in enumerate(self.cpu_load_pct) if u is not None}
        for dom in ("gpu", "emc"):
            if getattr(self, f"{dom}_freq_mhz") is not None:
                freq[dom] = getattr(self, f"{dom}_freq_mhz")
            if getattr(self, f"{dom}_load_pct") is not None:
                util[dom] = getattr(self, f"{dom}_load_pct")
        return Sample(t_s=t_s, power_w=dict(self.rails_w), freq_mhz=freq, util_pct=util,
                      temp_c=dict(self.temps_c), total=self.total_rails)


class _BadToken(Exception):
    """A token had the right shape but an impossible value; it goes to ``unparsed``."""


def _mw(value: str) -> float:
    mw = float(value)  # rails are mW with or without the unit; at most 9.6 digits, so finite
    if mw > MAX_RAIL_MW:
        raise _BadToken
    return mw / 1000.0


def _clock(value: str | None) -> tuple[float | None, list[float]]:
    if value is None:
        return None, []
    if value.startswith("["):
        gpcs = [float(v) for v in value.strip("[]").split(",") if v]
        if any(len(v) > 9 for v in value.strip("[]").split(",")):
            raise _BadToken
        return (max(gpcs) if gpcs else None), gpcs
    return float(value), []


def parse_tegrastats(line: str) -> TegraSample:
    """Parse one tegrastats line (any format in the table above). Never raises.

    Unknown or corrupt tokens are kept in ``unparsed``. A line that cannot be used at
    all — a malformed date prefix, nothing recognised, longer than :data:`MAX_LINE_CHARS`,
    not text — comes back with ``bad`` saying why; :func:`iter_tegrastats_log` and the
    streaming meter skip such lines and count them. Time: linear in the line length.
    """
    s = TegraSample()
    if not isinstance(line, str):
        s.bad = f"not text: {type(line).__name__}"
        return s
    if len(line) > MAX_LINE_CHARS:
        s.bad = f"line of {len(line)} characters; allowed: at most {MAX_LINE_CHARS}"
        return s
    rest = line.strip()
    m = _DATE.match(rest)
    if m:
        try:
            s.timestamp = _dt.datetime.strptime(m.group(1), "%m-%d-%Y %H:%M:%S")
        except ValueError:
            s.bad = f"malformed date prefix {m.group(1)!r}; allowed: MM-DD-YYYY HH:MM:SS"
            return s
        rest = rest[m.end():]
    elif _DATEISH.match(rest):
        s.bad = f"malformed date prefix {rest[:19]!r}; allowed: MM-DD-YYYY HH:MM:SS"
        return s

    def take(regex: re.Pattern, handler) -> None:
        nonlocal rest
        def sub(mm: re.Match) -> str:
            try:
                handler(mm)
            except (_BadToken, ValueError, OverflowError):
                s.unparsed.append(mm.group(0))
            return " "
        rest = regex.sub(sub, rest)

    def ram(mm):
        k = _UNITS_MB[mm.group(3)]
        s.ram_used_mb, s.ram_total_mb = float(mm.group(1)) * k, float(mm.group(2)) * k

    def swap(mm):
        k = _UNITS_MB[mm.group(3)]
        s.swap_used_mb, s.swap_total_mb = float(mm.group(1)) * k, float(mm.group(2)) * k

    def cpu(mm):
        cluster_f = float(mm.group(2)) if mm.group(2) else None
        for entry in mm.group(1).split(","):
            entry = entry.strip()
            em = _CPU_ENTRY.fullmatch(entry)
            if entry == "off" or not em:
                s.cpu_load_pct.append(None)
                s.cpu_freq_mhz.append(None)
                if entry != "off":
                    s.unparsed.append(f"CPU:{entry}")
                continue
            s.cpu_load_pct.append(float(em.group(1)))
            s.cpu_freq_mhz.append(float(em.group(2)) if em.group(2) else cluster_f)

    def clock(mm):
        load = float(mm.group(2)) if mm.group(2) is not None else None
        freq, gpcs = _clock(mm.group(3))
        if mm.group(1).startswith("EMC"):
            s.emc_load_pct, s.emc_freq_mhz = load, freq
        else:
            s.gpu_load_pct, s.gpu_freq_mhz, s.gpu_gpc_freq_mhz = load, freq, gpcs

    def rail(mm):
        name = mm.group(1)
        if name in NOT_RAILS:  # memory with its unit lost or cut off: never a rail
            raise _BadToken
        now, avg = _mw(mm.group(2)), _mw(mm.group(4))
        extra = _mw(mm.group(6)) if mm.group(6) is not None else None
        s.rails_w[name], s.rails_avg_w[name] = now, avg
        if extra is not None:
            s.rails_extra_w[name] = extra

    def temp(mm):
        value = float(mm.group(2))
        if value <= ABSENT_TEMP_C:
            s.absent_sensors.append(mm.group(1))
        else:
            s.temps_c[mm.group(1)] = value

    def engine(mm):
        v = mm.group(2)
        s.engines_mhz[mm.group(1)] = None if v == "off" else float(v.split("@")[-1])

    take(_RAM, ram)
    take(_IRAM, lambda mm: None)
    take(_SWAP, swap)
    take(_CPU, cpu)
    take(_CLOCK, clock)
    take(_RAIL, rail)
    take(_TEMP, temp)
    take(_MTS, lambda mm: None)
    take(_ENGINE, engine)
    s.unparsed.extend(rest.split())
    recognised = (s.rails_w or s.ram_used_mb is not None or s.cpu_load_pct or s.temps_c or s.engines_mhz
                  or s.gpu_freq_mhz is not None or s.emc_freq_mhz is not None or s.swap_used_mb is not None)
    if not recognised:
        s.bad = f"no tegrastats field recognised in {line.strip()[:60]!r}"
    return s


@dataclass
class ParseStats:
    """Lines read and skipped by a log reader; ``examples`` keeps the first few reasons."""

    n_lines: int = 0
    n_bad: int = 0
    examples: list[str] = field(default_factory=list)

    def skip(self, lineno: int, reason: str) -> None:
        self.n_bad += 1
        if len(self.examples) < 5:
            self.examples.append(f"line {lineno}: {reason}")

    def summary(self) -> str:
        return f"{self.n_bad} of {self.n_lines} lines skipped" + (f" ({'; '.join(self.examples)})" if self.examples else "")


def iter_tegrastats_log(path: str | os.PathLike, stats: ParseStats | None = None) -> Iterator[TegraSample]:
    """Usable samples of a tegrastats log file. Blank lines are ignored; bad lines (see
    :func:`parse_tegrastats`) are skipped and counted in ``stats``; undecodable bytes are replaced."""
    stats = stats if stats is not None else ParseStats()
    with open(path, errors="replace", newline=None) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            stats.n_lines += 1
            sample = parse_tegrastats(line)
            if sample.bad:
                stats.skip(lineno, sample.bad)
                continue
            yield sample


# --------------------------------------------------------------------------- tegrastats streaming
class TegrastatsMeter(Meter):
    """Streams ``tegrastats --interval MS`` from a subprocess; :meth:`read` returns the latest line.

    A background thread parses lines as they arrive, so a read costs no I/O. The
    ``t_s`` of a sample is the monotonic time its line arrived; the sampler drops
    repeated reads of the same line. Run as root for GPU/EMC clocks on older L4T.
    """

    name = "jetson"

    def __init__(self, interval_ms: int = 100, binary: str = "tegrastats", startup_timeout_s: float = 5.0):
        if interval_ms < 1:
            raise ValueError(f"interval_ms={interval_ms}: must be >= 1")
        self.interval_ms, self.binary = int(interval_ms), binary
        self._latest: tuple[float, TegraSample] | None = None
        self._cond = threading.Condition()
        #: lines streamed and lines skipped as unusable
        self.stats = ParseStats()
        try:
            self._proc = subprocess.Popen([binary, "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1)
        except FileNotFoundError:
            raise MissingFileError(f"{binary!r} not found on PATH: not a Jetson, or L4T tools not installed") from None
        except PermissionError:
            raise PermissionDeniedError(f"cannot execute {binary!r}; check its mode or run with sudo") from None
        self._reader = threading.Thread(target=self._pump, name="tegrastats-reader", daemon=True)
        self._reader.start()
        with self._cond:
            self._cond.wait_for(lambda: self._latest is not None or self._proc.poll() is not None, timeout=startup_timeout_s)
        if self._latest is None:
            err = (self._proc.stderr.read() if self._proc.poll() is not None else "") or "no output"
            self.close()
            raise NoDeviceError(f"{binary} produced no usable sample within {startup_timeout_s}s "
                                f"({self.stats.summary()}): {err.strip()[:300]}")

    @classmethod
    def probe(cls, interval_ms: int = 100, binary: str = "tegrastats", **_: Any) -> Availability:
        import shutil

        if shutil.which(binary) is None:
            return Availability(False, f"{binary!r} not found on PATH (not a Jetson)")
        return Availability(True)

    def settings(self) -> dict[str, Any]:
        return {"interval_ms": self.interval_ms, "binary": self.binary}

    def _pump(self) -> None:
        assert self._proc.stdout is not None
        # a line that is not valid UTF-8 must not end the stream: text mode with errors="replace"
        for line in self._proc.stdout:
            if not line.strip():
                continue
            self.stats.n_lines += 1
            sample = parse_tegrastats(line)
            if sample.bad:  # one bad line never ends a collection: skip it, count it
                self.stats.skip(self.stats.n_lines, sample.bad)
                continue
            with self._cond:
                self._latest = (time.monotonic(), sample)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def read(self) -> Sample:
        with self._cond:
            latest = self._latest
        if self._proc.poll() is not None and not self._reader.is_alive():
            raise DeviceGoneError(f"{self.binary} exited with status {self._proc.returncode} mid-run")
        assert latest is not None
        return latest[1].to_sample(latest[0])

    def close(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- INA3221 sysfs
def find_ina3221_rails(root: str | os.PathLike = "/") -> dict[str, tuple[str, ...]]:
    """Rail label -> ("hwmon", in_mV_file, curr_mA_file) or ("iio", power_mW_file)."""
    root = glob.escape(str(root).rstrip("/"))  # a root like /tmp/run[1] is a path, not a pattern
    rails: dict[str, tuple[str, ...]] = {}
    for hw in sorted(glob.glob(f"{root}/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*")):
        for label in sorted(glob.glob(f"{glob.escape(hw)}/in*_label")):
            k = re.search(r"in(\d+)_label$", label).group(1)
            try:
                name = Path(label).read_text(errors="replace").strip()
            except OSError:
                continue
            volt, curr = f"{hw}/in{k}_input", f"{hw}/curr{k}_input"
            if name and name != "NC" and os.path.exists(volt) and os.path.exists(curr):
                rails[name] = ("hwmon", volt, curr)
    for dev in sorted(glob.glob(f"{root}/sys/bus/i2c/drivers/ina3221x/*/iio:device*")):
        for label in sorted(glob.glob(f"{glob.escape(dev)}/rail_name_*")):
            k = label.rsplit("_", 1)[1]
            try:
                name = Path(label).read_text(errors="replace").strip()
            except OSError:
                continue
            power = f"{dev}/in_power{k}_input"
            if name and name != "NC" and os.path.exists(power):
                rails[name] = ("iio", power)
    return rails


def _sysfs_open(path: str) -> int:
    return open_readonly(path, permission_fix=f"Run as root or `sudo chmod a+r {path}`.", missing="no such rail")


#: assumed: no INA3221 channel reads beyond 1e7 (the chip's registers are 13-bit; drivers scale to mV/mA/mW)
INA_MAX_READING = 10_000_000


class Ina3221Meter(Meter):
    """Power per INA3221 rail read straight from sysfs (no tegrastats process, ~µs per file).

    Every file stays open for the meter's life and a read is one ``os.pread`` per
    file (sysfs regenerates an attribute on each read at offset 0), so sampling
    costs no open/close or path lookup.
    """

    name = "jetson-ina3221"

    def __init__(self, root: str | os.PathLike = "/"):
        self.root = str(root)
        self.rails = find_ina3221_rails(root)
        if not self.rails:
            raise NoDeviceError(f"no INA3221 rails under {os.path.join(str(root), 'sys/bus/i2c/drivers/ina3221')}{{,x}} "
                               f"(not a Jetson with power monitors)")
        self.total = next(((r,) for r in INPUT_RAILS if r in self.rails), tuple(self.rails))
        self._fds: list[int] = []
        # (rail, scale, fd, fd-or-None): hwmon mV * mA * 1e-6 = W; iio mW * 1e-3 = W
        self._plan: list[tuple[str, float, int, int | None, tuple[str, ...]]] = []
        try:
            for name, spec in self.rails.items():
                fds = [_sysfs_open(p) for p in spec[1:]]
                self._fds.extend(fds)
                if spec[0] == "hwmon":
                    self._plan.append((name, 1e-6, fds[0], fds[1], spec[1:]))
                else:
                    self._plan.append((name, 1e-3, fds[0], None, spec[1:]))
        except BaseException:
            self.close()
            raise

    @classmethod
    def probe(cls, root: str | os.PathLike = "/") -> Availability:
        try:
            rails = find_ina3221_rails(root)
        except OSError as exc:
            return Availability(False, str(exc))
        return Availability(bool(rails), "" if rails else "no INA3221 rails in sysfs (not a Jetson)")

    def settings(self) -> dict[str, Any]:
        return {"root": self.root}

    @staticmethod
    def _pread(fd: int, path: str) -> int:
        try:
            raw = os.pread(fd, 24, 0)
        except OSError as exc:  # ENODEV/EIO: the driver went away with the device
            raise DeviceGoneError(f"cannot read {path} mid-run ({exc.strerror or exc})") from None
        try:
            value = int(raw)
        except ValueError:
            raise ParseError(f"{path} holds {raw[:40]!r}; allowed: one decimal integer") from None
        if abs(value) > INA_MAX_READING:
            raise ParseError(f"{path} holds {value}; allowed: |value| <= {INA_MAX_READING} (mV, mA or mW)")
        return value

    def read(self) -> Sample:
        t = time.monotonic()
        pread = self._pread
        power = {}
        for name, scale, fd_a, fd_b, paths in self._plan:
            v = pread(fd_a, paths[0])
            if fd_b is not None:
                v *= pread(fd_b, paths[1])
            power[name] = v * scale
        return Sample.fast(t, power_w=power, total=self.total)

    def close(self) -> None:
        fds, self._fds = getattr(self, "_fds", []), []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


# --------------------------------------------------------------------------- DVFS
def jetson_dvfs(root: str | os.PathLike = "/") -> SysfsDvfs:
    """cpufreq policies plus the GPU (and EMC, where L4T exposes it) devfreq domains."""
    fs = LocalFS(root)
    devfreq = {}
    gpu = next((d for d in GPU_DEVFREQ if fs.exists(f"{DEVFREQ_DIR}/{d}")), None)
    if gpu:
        devfreq["gpu"] = gpu
    emc = next((d for d in fs.listdir(DEVFREQ_DIR) if "emc" in d.lower()), None)
    if emc:
        devfreq["emc"] = emc
    return SysfsDvfs(fs, devfreq)
