"""DVFS through Linux sysfs: cpufreq policies and devfreq devices.

Used locally (Jetson, any Linux host) and over ADB (Android) through a tiny file
accessor, so that the pinning/restoring logic exists once.

Conventions, from the kernel documentation:

* cpufreq (Documentation/admin-guide/pm/cpufreq.rst):
  ``/sys/devices/system/cpu/cpufreq/policyN/`` with
  ``scaling_available_frequencies`` (kHz, space separated; absent on some
  intel_pstate/amd-pstate hosts), ``scaling_min_freq``, ``scaling_max_freq``,
  ``scaling_cur_freq`` (kHz) and ``scaling_governor``.
* devfreq (Documentation/ABI/testing/sysfs-class-devfreq):
  ``/sys/class/devfreq/<dev>/`` with ``available_frequencies``, ``min_freq``,
  ``max_freq``, ``cur_freq`` (Hz) and ``governor``. On Jetson the GPU is
  ``17000000.ga10b`` (Orin), ``17000000.gv11b`` (Xavier), ``17000000.gp10b``
  (TX2) or ``57000000.gpu`` (Nano/TX1); an EMC devfreq node exists only on some
  L4T releases (elsewhere EMC is clocked by the BPMP and cannot be set here).

A frequency is *pinned* by writing the same level to min and max; the order of
the two writes depends on the direction so that min <= max holds at every
instant (the kernel rejects a write that would break it). The governor is left
alone; min/max (and the governor, in case a write changed it) are restored.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Protocol

from .base import DvfsController, MeterError, MissingFileError, ParseError, PermissionDeniedError


class FileAccess(Protocol):
    def read(self, path: str) -> str: ...
    def write(self, path: str, value: str) -> None: ...
    def listdir(self, path: str) -> list[str]: ...
    def exists(self, path: str) -> bool: ...


class LocalFS:
    """Reads/writes sysfs paths on this machine; ``root`` prefixes every path (fake trees in tests)."""

    def __init__(self, root: str | os.PathLike = "/"):
        self.root = Path(root)

    def _p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def read(self, path: str) -> str:
        p = self._p(path)
        try:
            return p.read_text().strip()
        except FileNotFoundError:
            raise MissingFileError(f"{p} does not exist") from None
        except PermissionError:
            raise PermissionDeniedError(f"cannot read {p}: permission denied; run as root or `sudo chmod a+r {p}`") from None

    def write(self, path: str, value: str) -> None:
        p = self._p(path)
        try:
            with open(p, "w") as fh:
                fh.write(value)
        except FileNotFoundError:
            raise MissingFileError(f"{p} does not exist") from None
        except PermissionError:
            raise PermissionDeniedError(
                f"cannot write {p}: permission denied; DVFS needs root (sudo) or a udev rule giving your group write access"
            ) from None
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise MeterError(f"kernel rejected {value!r} for {p} (EINVAL)") from None
            raise

    def listdir(self, path: str) -> list[str]:
        p = self._p(path)
        return sorted(os.listdir(p)) if p.is_dir() else []

    def exists(self, path: str) -> bool:
        return self._p(path).exists()


def _freq(text: str, path: str) -> int:
    """One clock value of a cpufreq/devfreq file (kHz or Hz); anything else is a ParseError naming the file."""
    try:
        value = int(text.strip())
    except ValueError:
        raise ParseError(f"{path}: {text.strip()[:40]!r} is not a clock value; allowed: a non-negative integer "
                         f"(kHz for cpufreq, Hz for devfreq)") from None
    if value < 0:
        raise ParseError(f"{path}: {value} is not a clock value; allowed: a non-negative integer")
    return value


def _freq_list(text: str, path: str) -> list[int]:
    """The levels of an available-frequencies file: bad tokens are skipped (a file with none is a ParseError)."""
    levels = [int(v) for v in text.split() if v.isascii() and v.isdigit()]  # "²".isdigit() too
    if not levels:
        raise ParseError(f"{path}: no clock level in {text.strip()[:40]!r}; allowed: space-separated non-negative "
                         f"integers")
    return levels


CPUFREQ_DIR = "/sys/devices/system/cpu/cpufreq"
DEVFREQ_DIR = "/sys/class/devfreq"


class SysfsDvfs(DvfsController):
    """cpufreq policies (domains ``cpu_policyN``) and devfreq devices (domains given by ``devfreq``).

    ``devfreq`` maps a domain name (``gpu``, ``emc``) to a devfreq device name;
    devices that are absent are skipped. Frequencies are in MHz at this interface.
    """

    def __init__(self, fs: FileAccess | None = None, devfreq: dict[str, str] | None = None):
        super().__init__()
        self.fs = fs or LocalFS()
        self._domains: dict[str, tuple[str, str, float]] = {}  # domain -> (dir, kind, unit_per_mhz)
        for pol in self.fs.listdir(CPUFREQ_DIR):
            if pol.startswith("policy"):
                self._domains[f"cpu_{pol}"] = (f"{CPUFREQ_DIR}/{pol}", "cpufreq", 1e3)  # kHz
        for domain, dev in (devfreq or {}).items():
            path = f"{DEVFREQ_DIR}/{dev}"
            if self.fs.exists(path):
                self._domains[domain] = (path, "devfreq", 1e6)  # Hz

    @property
    def domains(self) -> list[str]:
        return list(self._domains)

    def _files(self, domain: str) -> tuple[str, str, str, str, str]:
        d, kind, _ = self._domains[domain]
        if kind == "cpufreq":
            return (f"{d}/scaling_available_frequencies", f"{d}/scaling_min_freq", f"{d}/scaling_max_freq",
                    f"{d}/scaling_cur_freq", f"{d}/scaling_governor")
        return (f"{d}/available_frequencies", f"{d}/min_freq", f"{d}/max_freq", f"{d}/cur_freq", f"{d}/governor")

    def frequencies(self) -> dict[str, list[float]]:
        out = {}
        for domain, (_, _, unit) in self._domains.items():
            avail = self._files(domain)[0]
            if not self.fs.exists(avail):
                continue  # intel_pstate etc.: no discrete levels to offer
            out[domain] = sorted({v / unit for v in _freq_list(self.fs.read(avail), avail)})
        return out

    def current(self) -> dict[str, float]:
        return {d: _freq(self.fs.read(self._files(d)[3]), self._files(d)[3]) / self._domains[d][2]
                for d in self._domains}

    def _snapshot(self, domain: str) -> tuple[str, str, str]:
        _, fmin, fmax, _, gov = self._files(domain)
        return self.fs.read(fmin), self.fs.read(fmax), self.fs.read(gov)

    def _set_minmax(self, domain: str, lo: int, hi: int) -> None:
        _, fmin, fmax, _, _ = self._files(domain)
        cur_max = _freq(self.fs.read(fmax), fmax)
        if lo > cur_max:  # raising: max first so that min <= max at every step
            self.fs.write(fmax, str(hi))
            self.fs.write(fmin, str(lo))
        else:
            self.fs.write(fmin, str(lo))
            self.fs.write(fmax, str(hi))

    def _apply(self, domain: str, mhz: float) -> None:
        value = int(round(mhz * self._domains[domain][2]))
        self._set_minmax(domain, value, value)

    def _restore(self, domain: str, snapshot: tuple[str, str, str]) -> None:
        lo, hi, gov = snapshot
        *_, fgov = self._files(domain)
        if self.fs.read(fgov) != gov:
            self.fs.write(fgov, gov)
        _, fmin, fmax, _, _ = self._files(domain)
        self._set_minmax(domain, _freq(lo, fmin), _freq(hi, fmax))
