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
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from .base import Availability, DeviceGoneError, Meter, MissingFileError, NoDeviceError, ParseError, Sample
from .jetson import ParseStats, iter_tegrastats_log

#: assumed: tegrastats' default --interval is 1000 ms (L4T Developer Guide, tegrastats Utility)
TEGRASTATS_DEFAULT_INTERVAL_S = 1.0


def tegrastats_samples(path: str | os.PathLike, interval_s: float | None = None,
                       stats: ParseStats | None = None) -> list[Sample]:
    """The samples of a tegrastats log at log time (seconds from its first usable line).

    Bad lines are skipped and counted in ``stats`` (one never ends a replay). Times
    come from the date prefixes when every usable line has one and they never go
    backwards; otherwise from line numbers at ``interval_s``.
    """
    stats = stats if stats is not None else ParseStats()
    if interval_s is not None and not (math.isfinite(interval_s) and interval_s > 0):
        raise ParseError(f"interval_s={interval_s}: must be a finite number > 0")
    parsed = list(iter_tegrastats_log(path, stats))
    if not parsed:
        raise NoDeviceError(f"{path}: no usable tegrastats lines ({stats.summary()})")
    dated = all(p.timestamp is not None for p in parsed)
    if interval_s is None and dated:
        t0 = parsed[0].timestamp
        times = [(p.timestamp - t0).total_seconds() for p in parsed]
        if any(b < a for a, b in zip(times, times[1:])):
            raise ParseError(f"{path}: date prefixes go backwards; pass interval_s to use line numbers instead")
    else:
        step = TEGRASTATS_DEFAULT_INTERVAL_S if interval_s is None else float(interval_s)
        times = [i * step for i in range(len(parsed))]
    return [p.to_sample(t) for p, t in zip(parsed, times)]


def save_samples(samples: Iterable[Sample], path: str | os.PathLike) -> Path:
    """Write samples as JSON lines (readable by :meth:`ReplayMeter.from_file`)."""
    path = Path(path)
    with open(path, "w") as fh:
        for s in samples:
            fh.write(json.dumps(s.to_dict(), sort_keys=True, allow_nan=False) + "\n")
    return path


def _finite_map(value: Any, key: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise ValueError(f"{key} is {type(value).__name__}; allowed: an object of name -> number")
    out = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{key}[{str(k)[:40]!r}] = {str(v)[:40]!r}; allowed: a finite number")
        out[str(k)] = float(v)
    return out


def sample_from_json(entry: Any) -> Sample:
    """A :class:`Sample` from one parsed JSON object; ``ValueError`` naming the bad field otherwise."""
    if not isinstance(entry, dict):
        raise ValueError(f"a {type(entry).__name__}; allowed: a JSON object")
    allowed = {"t_s", "power_w", "energy_j", "freq_mhz", "util_pct", "temp_c", "total"}
    unknown = set(entry) - allowed
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(map(str, unknown))[:5]}; allowed: {sorted(allowed)}")
    t = entry.get("t_s")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        raise ValueError(f"t_s = {str(t)[:40]!r}; allowed: a finite number of seconds")
    total = entry.get("total", [])
    if not isinstance(total, list) or not all(isinstance(r, str) for r in total):
        raise ValueError("total must be a list of rail names")
    maps = {k: _finite_map(entry.get(k, {}), k) for k in ("power_w", "energy_j", "freq_mhz", "util_pct", "temp_c")}
    return Sample(t_s=float(t), total=tuple(total), **maps)


def load_samples(path: str | os.PathLike, stats: ParseStats | None = None) -> list[Sample]:
    """Samples of a JSON-lines file; bad lines (not JSON, bad fields, non-finite numbers, times going
    backwards) are skipped and counted in ``stats``."""
    stats = stats if stats is not None else ParseStats()
    out: list[Sample] = []
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            stats.n_lines += 1
            try:
                s = sample_from_json(json.loads(raw.decode("utf-8"), parse_constant=_no_constant))
                if out and s.t_s < out[-1].t_s:
                    raise ValueError(f"t_s = {s.t_s} goes backwards (previous {out[-1].t_s})")
            except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                stats.skip(i, str(exc)[:200])
                continue
            out.append(s)
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number; allowed: finite numbers")


class ReplayMeter(Meter):
    """A meter that plays back recorded samples in real time (``speed`` x), looping by default."""

    name = "replay"

    def __init__(self, samples: Sequence[Sample], speed: float = 1.0, loop: bool = True, source: str = "memory"):
        if not samples:
            raise NoDeviceError("replay: no samples to play")
        if not (math.isfinite(speed) and speed > 0):
            raise ParseError(f"speed={speed}: must be a finite number > 0")
        t0 = samples[0].t_s
        self.samples = list(samples)
        self._times = [s.t_s - t0 for s in samples]
        # one more nominal step so that the last sample lasts as long as the others when looping
        step = (self._times[-1] / (len(samples) - 1)) if len(samples) > 1 else 1.0
        self.duration_s = self._times[-1] + step
        self.speed, self.loop, self.source = float(speed), bool(loop), source
        self._start: float | None = None
        #: lines read from the recording and lines skipped as unusable
        self.stats = ParseStats()

    @classmethod
    def from_file(cls, path: str | os.PathLike, speed: float = 1.0, loop: bool = True,
                  interval_s: float | None = None) -> "ReplayMeter":
        """A tegrastats log (``.log``/``.txt``) or a samples JSON-lines file (``.jsonl``)."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"replay: {path} does not exist")
        stats = ParseStats()
        samples = load_samples(path, stats) if path.suffix == ".jsonl" else tegrastats_samples(path, interval_s, stats)
        if not samples:
            raise NoDeviceError(f"replay: no usable samples in {path} ({stats.summary()})")
        if not any(s.power_w or s.energy_j for s in samples):  # nothing to integrate: refuse now, not at the end
            raise NoDeviceError(f"replay: {path}: none of its {len(samples)} usable samples has a power or energy "
                                f"reading; allowed: a tegrastats log with power rails (e.g. VDD_IN 5000mW/5000mW) "
                                f"or samples with power_w or energy_j")
        meter = cls(samples, speed=speed, loop=loop, source=str(path))
        meter.stats = stats
        return meter

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
        return {"source": self.source, "speed": self.speed, "loop": self.loop,
                "lines_read": self.stats.n_lines, "lines_skipped": self.stats.n_bad}

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
