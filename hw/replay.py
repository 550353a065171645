"""Replay a recorded trace as a meter, so the pipeline and the tests run with no hardware.

Two recorded formats are accepted:

* a **tegrastats log** (any format :func:`hw.jetson.parse_tegrastats` reads). Sample
  times come from the date prefix when every line has one (JetPack 5+, 1 s
  resolution); otherwise line ``i`` is at ``i * interval_s`` with
  ``interval_s = 1.0`` by default (assumed: tegrastats' default ``--interval`` is
  1000 ms; pass the interval the log was recorded with when it differs);
* a **samples file**: JSON lines, one :meth:`hw.base.Sample.to_dict` per line, as
  written by :func:`save_samples` (e.g. the samples of a :class:`hw.sampler.Window`).

:meth:`ReplayMeter.read` plays the recording in real time (times ``speed``), looping
by default: it returns the recorded sample in force at the elapsed log time,
stamped with the current monotonic time. :attr:`ReplayMeter.samples` gives the
recording itself (log times) for offline integration.
"""

from __future__ import annotations

import bisect
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from .base import Availability, DeviceGoneError, Meter, MissingFileError, NoDeviceError, Sample
from .jetson import iter_tegrastats_log

#: assumed: tegrastats' default --interval is 1000 ms (L4T Developer Guide, tegrastats Utility)
TEGRASTATS_DEFAULT_INTERVAL_S = 1.0


def tegrastats_samples(path: str | os.PathLike, interval_s: float | None = None) -> list[Sample]:
    """The samples of a tegrastats log at log time (seconds from its first line)."""
    parsed = list(iter_tegrastats_log(path))
    if not parsed:
        raise NoDeviceError(f"{path}: no tegrastats lines")
    dated = all(p.timestamp is not None for p in parsed)
    if interval_s is None and dated:
        t0 = parsed[0].timestamp
        times = [(p.timestamp - t0).total_seconds() for p in parsed]
        if any(b < a for a, b in zip(times, times[1:])):
            raise ValueError(f"{path}: date prefixes go backwards; pass interval_s to use line numbers instead")
    else:
        step = TEGRASTATS_DEFAULT_INTERVAL_S if interval_s is None else float(interval_s)
        if step <= 0:
            raise ValueError(f"interval_s={interval_s}: must be > 0")
        times = [i * step for i in range(len(parsed))]
    return [p.to_sample(t) for p, t in zip(parsed, times)]


def save_samples(samples: Iterable[Sample], path: str | os.PathLike) -> Path:
    """Write samples as JSON lines (readable by :meth:`ReplayMeter.from_file`)."""
    path = Path(path)
    with open(path, "w") as fh:
        for s in samples:
            fh.write(json.dumps(s.to_dict(), sort_keys=True) + "\n")
    return path


def load_samples(path: str | os.PathLike) -> list[Sample]:
    out = []
    with open(path) as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(Sample.from_dict(json.loads(line)))
                except (ValueError, TypeError) as exc:
                    raise ValueError(f"{path}:{i}: not a sample line ({exc})") from None
    return out


class ReplayMeter(Meter):
    """A meter that plays back recorded samples in real time (``speed`` x), looping by default."""

    name = "replay"

    def __init__(self, samples: Sequence[Sample], speed: float = 1.0, loop: bool = True, source: str = "memory"):
        if not samples:
            raise NoDeviceError("replay: no samples to play")
        if speed <= 0:
            raise ValueError(f"speed={speed}: must be > 0")
        t0 = samples[0].t_s
        self.samples = list(samples)
        self._times = [s.t_s - t0 for s in samples]
        # one more nominal step so that the last sample lasts as long as the others when looping
        step = (self._times[-1] / (len(samples) - 1)) if len(samples) > 1 else 1.0
        self.duration_s = self._times[-1] + step
        self.speed, self.loop, self.source = float(speed), bool(loop), source
        self._start: float | None = None

    @classmethod
    def from_file(cls, path: str | os.PathLike, speed: float = 1.0, loop: bool = True,
                  interval_s: float | None = None) -> "ReplayMeter":
        """A tegrastats log (``.log``/``.txt``) or a samples JSON-lines file (``.jsonl``)."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"replay: {path} does not exist")
        samples = load_samples(path) if path.suffix == ".jsonl" else tegrastats_samples(path, interval_s)
        return cls(samples, speed=speed, loop=loop, source=str(path))

    @classmethod
    def probe(cls, path: str | os.PathLike | None = None, **_: Any) -> Availability:
        if path is None:
            return Availability(False, "replay needs a recorded log: pass path (CLI: --replay PATH)")
        if not Path(path).is_file():
            return Availability(False, f"{path} does not exist")
        return Availability(True)

    def available(self) -> Availability:
        return Availability(True)

    def settings(self) -> dict[str, Any]:
        return {"source": self.source, "speed": self.speed, "loop": self.loop}

    def read(self) -> Sample:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        pos = (now - self._start) * self.speed
        if pos >= self.duration_s:
            if not self.loop:
                raise DeviceGoneError(f"replay of {self.source} ended after {self.duration_s:.1f} s of log time")
            cycles, pos = divmod(pos, self.duration_s)
        else:
            cycles = 0
        rec = self.samples[bisect.bisect_right(self._times, pos) - 1]
        energy = rec.energy_j
        if cycles and energy:  # keep replayed counters cumulative across loops
            first, last = self.samples[0].energy_j, self.samples[-1].energy_j
            energy = {r: v + cycles * (last.get(r, v) - first.get(r, v)) for r, v in energy.items()}
        return Sample(t_s=now, power_w=rec.power_w, energy_j=energy, freq_mhz=rec.freq_mhz,
                      util_pct=rec.util_pct, temp_c=rec.temp_c, total=rec.total)
