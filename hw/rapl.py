"""x86 RAPL energy counters through the Linux powercap interface.

Source of the conventions: Documentation/power/powercap/powercap.rst. Each zone
is a directory ``/sys/class/powercap/intel-rapl:N[:M]`` with

* ``name``                 ``package-N``, ``dram``, ``core``, ``uncore`` or ``psys``;
* ``energy_uj``            cumulative energy in µJ, wraps to 0 after
* ``max_energy_range_uj``  (the counter's range in µJ).

AMD Zen CPUs expose their package counters through the same ``intel-rapl``
powercap driver (Linux 5.8+), so one backend serves both; AMD has no ``dram``
zone. Zones are found by their ``name`` files, never by directory number.

Since Linux 5.10 (fix for CVE-2020-8694, "PLATYPUS") ``energy_uj`` is readable
only by root; :class:`RaplMeter` says so and how to grant access.

The device total is the sum of the ``package-*`` and ``dram`` zones (dram is not
inside the package domain on Intel server parts); ``core``/``uncore`` are sub-zones
of a package and ``psys`` overlaps everything, so they are recorded as extra rails
but left out of the total.

Cost: each counter file stays open for the meter's life and a read is one
``os.pread`` per zone (no open/close, no path lookups), which keeps a 100 Hz
sampler well under 1 % of a core (``python -m bench.perf.sampler``).

Wraparound: every :meth:`RaplMeter.read` unwraps each counter against the previous
read, so ``Sample.energy_j`` is cumulative since the meter was opened. That is
exact as long as reads are less than one wrap period apart; the meter therefore
declares ``max_poll_interval_s`` = half the time the smallest counter range lasts
at ``ASSUMED_MAX_ZONE_POWER_W`` and :class:`hw.sampler.Sampler` polls at least
that often. A decrease that one wrap cannot explain — a step larger than the zone
could draw since the last read, i.e. a counter reset (suspend/resume, driver reload) —
raises :class:`~hw.base.CounterError` for that read; the meter re-bases on the new
value and never adds a phantom full range. A ``max_energy_range_uj`` of 0 is refused.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from .base import (open_readonly, Availability, CounterError, DeviceGoneError, Meter, MeterError, MissingFileError, NoDeviceError,
                   ParseError, PermissionDeniedError, Sample, counter_delta)

#: assumed: no single RAPL zone draws more than 500 W (largest current server CPUs have TDPs <= 500 W)
ASSUMED_MAX_ZONE_POWER_W = 500.0

#: assumed: reads less than 0.1 s apart are treated as 0.1 s apart when judging a reset (jitter margin)
RESET_MIN_WINDOW_S = 0.1

PERMISSION_FIX = (
    "energy_uj is readable only by root since Linux 5.10 (CVE-2020-8694). Grant read access with "
    "`sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj` (until reboot), or permanently with a udev rule, e.g. "
    "/etc/udev/rules.d/99-rapl.rules: "
    'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chmod a+r /sys%p/energy_uj"'
    " — or run the benchmark as root."
)


def _read_int(path: Path) -> int:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except PermissionError:
        raise PermissionDeniedError(f"cannot read {path}: permission denied. {PERMISSION_FIX}") from None
    except IsADirectoryError:  # a broken tree; report like an unreadable file
        raise MeterError(f"cannot read {path}: it is a directory, not a counter file") from None
    except FileNotFoundError:
        raise MissingFileError(f"{path} does not exist (RAPL zone vanished?)") from None
    except UnicodeDecodeError:
        raise ParseError(f"{path} is not text; allowed: one decimal integer") from None
    except ValueError:
        raise ParseError(f"{path} does not hold an integer; allowed: one decimal integer") from None
    except OSError as exc:  # EIO/ENODEV from a driver going away, ELOOP...
        raise MeterError(f"cannot read {path}: {exc.strerror or exc}") from None


def _open_counter(path: Path) -> int:
    """A read-only descriptor kept open for the meter's life: each read is then one ``pread``."""
    return open_readonly(path, permission_fix=PERMISSION_FIX, missing="RAPL zone vanished?")


def _parse_counter(raw: bytes, path: Path) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ParseError(f"{path} holds {raw[:40]!r}; allowed: one decimal integer (µJ)") from None
    if value < 0:
        raise ParseError(f"{path} holds {value}; allowed: a counter >= 0 µJ")
    return value


def _zone_name(d: Path) -> str | None:
    try:
        return (d / "name").read_text(errors="replace").strip()
    except OSError:
        return None  # an unreadable zone name: not a zone we can use


def find_zones(root: str | os.PathLike = "/sys/class/powercap") -> dict[str, Path]:
    """Rail name -> zone directory, for package/dram/core/uncore/psys zones.

    Rails are named ``package-N`` (as the kernel names them) and ``dram-N``,
    ``core-N``, ``uncore-N`` after the package that contains them — read from the
    parent zone's ``name``, since zone numbers need not follow package numbers (real
    4-socket hosts list ``intel-rapl:0`` as ``package-3``).
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root} does not exist: no powercap interface (not Linux, or the intel_rapl module is not loaded: `sudo modprobe intel_rapl_common`)")
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise MeterError(f"cannot list {root}: {exc.strerror or exc}") from None
    zones: dict[str, Path] = {}
    for d in entries:
        if not d.name.startswith(("intel-rapl:", "amd-rapl:")) or not (d / "name").is_file():
            continue
        name = _zone_name(d)
        parts = d.name.split(":")
        if name is None:
            continue
        if re.fullmatch(r"package-\d{1,4}", name, re.ASCII) or name == "psys":
            rail = name
        elif name in ("dram", "core", "uncore") and len(parts) == 3:
            parent = _zone_name(root / f"{parts[0]}:{parts[1]}") or ""
            m = re.fullmatch(r"package-(\d{1,4})", parent, re.ASCII)
            rail = f"{name}-{m.group(1) if m else parts[1]}"
        else:
            continue
        zones.setdefault(rail, d)  # a zone listed twice (two interfaces): keep the first
    return zones


_monotonic, _pread = time.monotonic, os.pread
_sample_fast = Sample.fast


class _NotCommon(Exception):
    """Internal: a poll that needs :meth:`RaplMeter._update`'s careful path."""


class RaplMeter(Meter):
    """Cumulative energy per RAPL zone (J), unwrapped. No power field: RAPL has only counters."""

    name = "rapl"

    def __init__(self, root: str | os.PathLike = "/sys/class/powercap"):
        self.root = Path(root)
        zones = find_zones(self.root)
        if not zones:
            raise NoDeviceError(f"no RAPL package/dram zones under {self.root} (CPU without RAPL, or a VM that hides it)")
        self.zones = zones
        self._max_uj = {}
        for r, d in zones.items():
            max_uj = _read_int(d / "max_energy_range_uj")
            if max_uj <= 0:  # would mean a poll interval of 0: a sampler spinning a core
                raise MeterError(f"{d / 'max_energy_range_uj'} = {max_uj}: a counter range must be > 0 µJ "
                                 "(a broken powercap driver or a VM that fakes the zone)")
            self._max_uj[r] = max_uj
        self._fds: dict[str, int] = {}
        try:
            for r, d in zones.items():
                self._fds[r] = _open_counter(d / "energy_uj")
            self._last_uj = {r: self._pread(r) for r in zones}
        except BaseException:
            self.close()
            raise
        t0 = time.monotonic()
        self._last_full_t = t0
        # parallel lists, in zone order: the read loop indexes them instead of hashing rail names
        self._rails = list(zones)
        self._last_t_list = [t0] * len(self._rails)
        self._fd_list = [self._fds[r] for r in self._rails]
        self._last_list = [self._last_uj[r] for r in self._rails]
        self._acc_list = [0.0] * len(self._rails)
        self.total = tuple(r for r in zones if r.startswith(("package", "dram")))
        self._all_idx = list(range(len(zones)))
        self._total_idx = [k for k, r in enumerate(zones) if r in self.total]
        # poll()'s own view of the zones of the total: (index, descriptor, rail) once, not looked up per read
        self._poll_zones = tuple((k, self._fd_list[k], self._rails[k]) for k in self._total_idx)
        smallest_range_j = min(self._max_uj.values()) / 1e6
        self.max_poll_interval_s = smallest_range_j / ASSUMED_MAX_ZONE_POWER_W / 2
        self._full_read_every_s = 0.5 * self.max_poll_interval_s

    def _pread(self, rail: str) -> int:
        path = self.zones[rail] / "energy_uj"
        try:
            raw = os.pread(self._fds[rail], 32, 0)
        except KeyError:
            raise MeterError(f"{path}: the meter is closed") from None
        except PermissionError:
            raise PermissionDeniedError(f"cannot read {path}: permission denied. {PERMISSION_FIX}") from None
        except OSError as exc:  # ENODEV/EIO: the zone went away with its driver
            raise DeviceGoneError(f"cannot read {path} mid-run ({exc.strerror or exc}): RAPL zone vanished") from None
        return _parse_counter(raw, path)

    @classmethod
    def probe(cls, root: str | os.PathLike = "/sys/class/powercap") -> Availability:
        try:
            zones = find_zones(root)
            if not zones:
                return Availability(False, f"no RAPL package/dram zones under {root}")
            for d in zones.values():
                _read_int(d / "energy_uj")
        except (MeterError, OSError) as exc:
            return Availability(False, str(exc))
        return Availability(True)

    def settings(self) -> dict[str, Any]:
        return {"root": str(self.root)}

    def read(self) -> Sample:
        """Cumulative energy of every zone. A counter that went backwards in a way no wrap explains
        (a reset) raises :class:`~hw.base.CounterError`; the meter then counts on from the new
        value, so the next read is good again and no phantom range is ever added."""
        t = time.monotonic()
        self._update(self._all_idx, t)
        self._last_full_t = t
        acc = self._acc_list
        return Sample.fast(t, energy_j=dict(zip(self._rails, [a * 1e-6 for a in acc])), total=self.total)

    def poll(self) -> Sample:
        """The sampler thread's periodic read: only the zones of the total (one ``pread`` each),
        plus every zone at least every half ``max_poll_interval_s`` so that no sub-zone wrap is
        missed. Window edges use :meth:`read`, so per-zone window energies stay exact.

        This runs 100 times a second on a cold cache, so its common case (every counter at or above
        its last value) is one loop with nothing looked up twice; anything else (a wrap, a reset, a
        bad or unreadable file, a closed meter) goes to :meth:`_update`, which reads again and handles
        it (a counter that did not move backwards is never counted twice: the re-read starts from the
        value this loop stored)."""
        t = _monotonic()
        if t - self._last_full_t >= self._full_read_every_s:
            return self.read()
        zones = self._poll_zones
        if not zones and not self._fd_list:
            raise MeterError(f"RAPL meter on {self.root} is closed")
        last, acc, last_t = self._last_list, self._acc_list, self._last_t_list
        energy = {}
        try:
            for k, fd, rail in zones:
                raw = int(_pread(fd, 32, 0))
                prev = last[k]
                if raw < prev:  # a wrap, a reset or a negative value: the careful path
                    raise _NotCommon
                acc[k] += raw - prev
                last[k] = raw
                last_t[k] = t
                energy[rail] = acc[k] * 1e-6
        except (_NotCommon, OSError, ValueError):
            self._update(self._total_idx, t)
            energy = {self._rails[k]: acc[k] * 1e-6 for k in self._total_idx}
        return _sample_fast(t, None, energy, self.total)

    def _update(self, idx: list[int], t: float) -> None:
        fds = self._fd_list
        try:  # fast path: one pread per zone, nothing else (this runs 10-100 times a second)
            pread = os.pread
            raws = [int(pread(fds[k], 32, 0)) for k in idx]
        except (OSError, ValueError, IndexError):
            if not fds:
                raise MeterError(f"RAPL meter on {self.root} is closed") from None
            raws = [self._pread(self._rails[k]) for k in idx]  # the slow path names the file and the fault
        if min(raws) < 0:
            raise ParseError(f"RAPL under {self.root}: a negative energy_uj ({raws}); allowed: counters >= 0")
        last, acc, last_t = self._last_list, self._acc_list, self._last_t_list
        bad = None
        for k, raw in zip(idx, raws):
            prev = last[k]
            if raw >= prev:
                acc[k] += raw - prev
            else:
                bad = self._unwrap(k, prev, raw, t, bad)
            last[k] = raw
            last_t[k] = t
        if bad:
            raise CounterError(f"RAPL under {self.root}: " + "; ".join(bad))

    def _unwrap(self, k: int, prev: int, raw: int, t: float, bad: list[str] | None) -> list[str] | None:
        """Add one wrap of zone ``k``; a decrease no wrap explains is a reset: noted in ``bad``, not added."""
        rail = self._rails[k]
        # the most the zone can advance since its last read: x2 margin, and never less than
        # 0.1 s worth, so that scheduler jitter and the counter's ~1 ms update steps never trip it
        max_step_uj = 2.0 * ASSUMED_MAX_ZONE_POWER_W * max(t - self._last_t_list[k], RESET_MIN_WINDOW_S) * 1e6
        try:
            self._acc_list[k] += counter_delta(prev, raw, self._max_uj[rail], max_step_uj)
        except CounterError as exc:
            return [*(bad or []), f"{rail}: {exc}"]
        return bad

    def close(self) -> None:
        fds, self._fds = getattr(self, "_fds", {}), {}
        self._fd_list = []
        self._poll_zones = ()  # before the descriptors close: a reused number must never be read as a counter
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()
