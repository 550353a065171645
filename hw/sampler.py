"""Background sampling of a :class:`~hw.base.Meter` and energy windows over code blocks.

>>> with Sampler(meter, rate_hz=50) as sampler:          # doctest: +SKIP
...     with sampler.window() as w:
...         run_inference()
>>> w.energy_j, w.power_w, w.method                       # doctest: +SKIP

How energy is computed over a window ``[t0, t1]`` (monotonic wall time of the block):

* **counter** — when the meter reports cumulative ``energy_j`` (RAPL, NVML Volta+):
  ``end - begin`` of forced reads at both edges; the meter already unwrapped the
  counter, and the sampler polls at least every ``meter.max_poll_interval_s`` so
  that no wrap is missed however long the window is.
* **trapezoid** — otherwise (tegrastats, INA3221, Android battery, NVML power):
  the trapezoid integral of the power samples, linearly interpolated at ``t0`` and
  ``t1`` and held constant beyond the first/last sample (``numpy.interp``).

The thread only calls ``meter.read()`` and appends to a list, so its CPU overhead is
the meter's read cost times the rate (``python -m bench.perf.sampler`` measures it).
Timestamps are ``time.monotonic()``. A meter error in the thread (device unplugged)
stops sampling; the window then raises :class:`~hw.base.DeviceGoneError` with every
sample taken so far attached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from typing import Callable, Iterator, Sequence

import numpy as np

from .base import DeviceGoneError, Meter, MeterError, Sample


def integrate_power(samples: Sequence[Sample], t0: float | None = None, t1: float | None = None,
                    rail: str | None = None) -> float:
    """Energy in J of the total power (or one ``rail``) over ``[t0, t1]`` by the trapezoid rule.

    ``t0``/``t1`` default to the first/last sample time. Samples without the power
    value are skipped.
    """
    pts = [(s.t_s, s.total_power_w if rail is None else s.power_w.get(rail)) for s in samples]
    pts = [(t, p) for t, p in pts if p is not None and not math.isnan(p)]
    if not pts:
        raise ValueError(f"no power values{'' if rail is None else f' for rail {rail!r}'} to integrate")
    ts = np.array([t for t, _ in pts], dtype=float)
    ps = np.array([p for _, p in pts], dtype=float)
    if np.any(np.diff(ts) < 0):
        raise ValueError("sample times must be non-decreasing")
    a = ts[0] if t0 is None else float(t0)
    b = ts[-1] if t1 is None else float(t1)
    if b <= a:
        return 0.0
    inner = ts[(ts > a) & (ts < b)]
    grid = np.concatenate(([a], inner, [b]))
    return float(np.trapezoid(np.interp(grid, ts, ps), grid))


@dataclasses.dataclass
class Window:
    """What a :meth:`Sampler.window` measured. ``energy_j``/``power_w`` are NaN until it closes."""

    t_start_s: float = math.nan
    t_end_s: float = math.nan
    energy_j: float = math.nan
    rails_energy_j: dict[str, float] = dataclasses.field(default_factory=dict)
    method: str = ""  # counter | trapezoid
    samples: list[Sample] = dataclasses.field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.t_end_s - self.t_start_s

    @property
    def power_w(self) -> float:
        """Mean power over the window, W."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else math.nan

    @property
    def n_samples(self) -> int:
        return len(self.samples)


def window_energy(samples: Sequence[Sample], t0: float, t1: float) -> Window:
    """Build a closed :class:`Window` from the samples around ``[t0, t1]``."""
    w = Window(t_start_s=t0, t_end_s=t1, samples=list(samples))
    if not samples:
        raise ValueError("no samples in window")
    first, last = samples[0], samples[-1]
    if first.total_energy_j is not None and last.total_energy_j is not None:
        w.method = "counter"
        w.energy_j = last.total_energy_j - first.total_energy_j
        w.rails_energy_j = {r: last.energy_j[r] - first.energy_j[r] for r in last.energy_j if r in first.energy_j}
    else:
        w.method = "trapezoid"
        w.energy_j = integrate_power(samples, t0, t1)
        rails = sorted({r for s in samples for r in s.power_w})
        w.rails_energy_j = {r: integrate_power(samples, t0, t1, rail=r) for r in rails}
    return w


class Sampler:
    """Polls ``meter.read()`` on a daemon thread at ``rate_hz`` (10-100 Hz typical).

    The effective rate is raised to ``1 / meter.max_poll_interval_s`` when the
    meter's counter could otherwise wrap unseen.
    """

    def __init__(self, meter: Meter, rate_hz: float = 50.0):
        if not (0 < rate_hz <= 1000):
            raise ValueError(f"rate_hz={rate_hz}: must be in (0, 1000]")
        self.meter = meter
        self.interval_s = min(1.0 / rate_hz, meter.max_poll_interval_s)
        self.error: MeterError | None = None
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open_windows = 0
        self.n_reads = 0

    # -- thread -----------------------------------------------------------------
    def _read(self) -> Sample:
        with self._lock:
            s = self.meter.read()
            self.n_reads += 1
            if self._open_windows == 0 and len(self._samples) > 1:
                del self._samples[:-1]  # bounded memory when no window needs the history
            # a meter that updates slower than we poll (tegrastats) returns the same sample again
            if not self._samples or s.t_s != self._samples[-1].t_s:
                self._samples.append(s)
            return s

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self._read()
            except MeterError as exc:
                self.error = exc
                return
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:  # read slower than the rate: do not burst to catch up
                next_t, delay = time.monotonic(), 0.0
            self._stop.wait(delay)

    def start(self) -> "Sampler":
        if self._thread is None:
            self._read()  # first read in the caller: a broken meter fails here, loudly
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"sampler-{self.meter.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def _gone(self, exc: BaseException, i0: int) -> DeviceGoneError:
        kept = self._samples[i0:]
        if isinstance(exc, DeviceGoneError):
            exc.samples = list(kept)
            return exc
        return DeviceGoneError(f"meter {self.meter.name!r} failed mid-window: {exc}", kept)

    # -- windows ----------------------------------------------------------------
    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        """Measure the ``with`` block. Starts the sampler if needed."""
        if self._thread is None:
            self.start()
        w = Window()
        with self._lock:
            self._open_windows += 1
        try:
            self._read()
            with self._lock:
                i0 = len(self._samples) - 1
            w.t_start_s = time.monotonic()
            yield w
            w.t_end_s = time.monotonic()
            if self.error is not None:
                raise self._gone(self.error, i0)
            try:
                self._read()
            except MeterError as exc:
                raise self._gone(exc, i0) from exc
            with self._lock:
                samples = self._samples[i0:]
            closed = window_energy(samples, w.t_start_s, w.t_end_s)
            w.energy_j, w.rails_energy_j, w.method, w.samples = closed.energy_j, closed.rails_energy_j, closed.method, closed.samples
        finally:
            with self._lock:
                self._open_windows -= 1
                if self._open_windows == 0 and len(self._samples) > 1:
                    del self._samples[:-1]  # bounded memory between windows


@contextlib.contextmanager
def window(meter: Meter, rate_hz: float = 50.0) -> Iterator[Window]:
    """One-off window: start a sampler on ``meter``, measure the block, stop."""
    with Sampler(meter, rate_hz) as sampler, sampler.window() as w:
        yield w


def measure(meter: Meter, fn: Callable[[], object], rate_hz: float = 50.0) -> tuple[object, Window]:
    """Run ``fn()`` inside a window; returns ``(fn's result, window)``."""
    with window(meter, rate_hz) as w:
        result = fn()
    return result, w
