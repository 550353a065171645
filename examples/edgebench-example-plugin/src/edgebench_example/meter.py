"""``cpu_tdp``: CPU power estimated from utilisation x TDP, where no energy counter is readable.

``power_w = tdp_w * busy_fraction`` with the busy fraction of all CPUs since the previous read,
from the ``cpu`` line of ``/proc/stat`` (proc(5): user nice system idle iowait irq softirq steal
...; idle + iowait are idle time). This is the estimate CodeCarbon falls back to without RAPL
(https://mlco2.github.io/codecarbon/methodology.html, "CPU"); it is a model, so the sample's
rail is called ``cpu_estimate`` and every window says so. Give ``tdp_w`` from your CPU's
datasheet; the default is only a placeholder.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hw.base import Availability, Meter, MissingFileError, Sample

#: assumed: a typical 15 W laptop CPU package TDP; pass tdp_w= for your CPU (datasheet)
DEFAULT_TDP_W = 15.0


def _cpu_times(stat: Path) -> tuple[float, float]:
    """(busy, total) jiffies of the aggregate ``cpu`` line."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except FileNotFoundError:
        raise MissingFileError(f"{stat} does not exist (Linux only)") from None
    values = [float(v) for v in first[1:9]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class CpuTdpMeter(Meter):
    """Estimated CPU power (W) = ``tdp_w`` x busy fraction since the last read."""

    name = "cpu_tdp"

    def __init__(self, tdp_w: float = DEFAULT_TDP_W, stat_path: str = "/proc/stat"):
        if not tdp_w > 0:
            raise ValueError(f"tdp_w={tdp_w}: must be > 0 W")
        self.tdp_w = float(tdp_w)
        self.stat = Path(stat_path)
        self._last = _cpu_times(self.stat)

    @classmethod
    def probe(cls, stat_path: str = "/proc/stat", **_: Any) -> Availability:
        ok = Path(stat_path).exists()
        return Availability(ok, "" if ok else f"{stat_path} not found (Linux only)")

    def settings(self) -> dict[str, Any]:
        return {"tdp_w": self.tdp_w, "stat_path": str(self.stat)}

    def read(self) -> Sample:
        busy, total = _cpu_times(self.stat)
        d_busy, d_total = busy - self._last[0], total - self._last[1]
        self._last = (busy, total)
        frac = d_busy / d_total if d_total > 0 else 0.0
        return Sample(t_s=time.monotonic(), power_w={"cpu_estimate": self.tdp_w * min(max(frac, 0.0), 1.0)})
