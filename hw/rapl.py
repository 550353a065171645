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

Wraparound: every :meth:`RaplMeter.read` unwraps each counter against the previous
read, so ``Sample.energy_j`` is cumulative since the meter was opened. That is
exact as long as reads are less than one wrap period apart; the meter therefore
declares ``max_poll_interval_s`` = half the time the smallest counter range lasts
at ``ASSUMED_MAX_ZONE_POWER_W`` and :class:`hw.sampler.Sampler` polls at least
that often.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .base import Availability, Meter, MeterError, MissingFileError, NoDeviceError, PermissionDeniedError, Sample, counter_delta

#: assumed: no single RAPL zone draws more than 500 W (largest current server CPUs have TDPs <= 500 W)
ASSUMED_MAX_ZONE_POWER_W = 500.0

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
    except ValueError:
        raise MeterError(f"{path} does not hold an integer") from None


def find_zones(root: str | os.PathLike = "/sys/class/powercap") -> dict[str, Path]:
    """Rail name -> zone directory, for package/dram/core/uncore/psys zones.

    Rails are named ``package-N`` (as the kernel names them) and ``dram-N``,
    ``core-N``, ``uncore-N`` after the package that contains them.
    """
    root = Path(root)
    if not root.is_dir():
        raise MissingFileError(f"{root} does not exist: no powercap interface (not Linux, or the intel_rapl module is not loaded: `sudo modprobe intel_rapl_common`)")
    zones: dict[str, Path] = {}
    for d in sorted(root.iterdir()):
        if not d.name.startswith(("intel-rapl:", "amd-rapl:")) or not (d / "name").is_file():
            continue
        name = (d / "name").read_text().strip()
        parts = d.name.split(":")
        if name.startswith("package") or name == "psys":
            rail = name
        elif name in ("dram", "core", "uncore") and len(parts) >= 3:
            rail = f"{name}-{parts[1]}"
        else:
            continue
        zones.setdefault(rail, d)  # intel-rapl and intel-rapl-mmio may both list a package; keep the first
    return zones


class RaplMeter(Meter):
    """Cumulative energy per RAPL zone (J), unwrapped. No power field: RAPL has only counters."""

    name = "rapl"

    def __init__(self, root: str | os.PathLike = "/sys/class/powercap"):
        self.root = Path(root)
        zones = find_zones(self.root)
        if not zones:
            raise NoDeviceError(f"no RAPL package/dram zones under {self.root} (CPU without RAPL, or a VM that hides it)")
        self.zones = zones
        self._max_uj = {r: _read_int(d / "max_energy_range_uj") for r, d in zones.items()}
        self._last_uj = {r: _read_int(d / "energy_uj") for r, d in zones.items()}
        self._acc_uj = {r: 0.0 for r in zones}
        self.total = tuple(r for r in zones if r.startswith(("package", "dram")))
        smallest_range_j = min(self._max_uj.values()) / 1e6
        self.max_poll_interval_s = smallest_range_j / ASSUMED_MAX_ZONE_POWER_W / 2

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
        t = time.monotonic()
        for rail, d in self.zones.items():
            raw = _read_int(d / "energy_uj")
            self._acc_uj[rail] += counter_delta(self._last_uj[rail], raw, self._max_uj[rail])
            self._last_uj[rail] = raw
        return Sample(t_s=t, energy_j={r: v / 1e6 for r, v in self._acc_uj.items()}, total=self.total)
