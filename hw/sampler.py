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
Timestamps are ``time.monotonic()``. Any error in the thread (device unplugged, a
counter reset) stops sampling and is kept in ``Sampler.error``; the window then
raises it — :class:`~hw.base.DeviceGoneError` or another
:class:`~hw.base.SamplingError` — with every sample taken since it opened attached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from typing import Callable, Iterator, Sequence

import numpy as np

from .base import DeviceGoneError, Meter, MeterError, Sample, SamplingError

#: fastest sampling the sampler accepts (a meter asking for more would spin a core)
MAX_RATE_HZ = 1000.0
#: longest period the sampling thread sleeps through (stop() may wait this long); longer periods wait on a lock
SLEEP_MAX_S = 0.025


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
    meter's counter could otherwise wrap unseen (at most :data:`MAX_RATE_HZ`).

    Window edges are read by the caller's thread. The sampling thread holds the
    meter lock while it reads, and a slow meter (adb: tens of ms per read) would
    otherwise take the lock again right after releasing it and starve an edge read;
    so an edge announces itself (``_edges``) and the thread lets it go first.
    Any exception in the thread stops it and is kept in :attr:`error`; the window
    that was open raises it at its end (:class:`~hw.base.SamplingError`, or the
    meter's :class:`~hw.base.DeviceGoneError`) with the samples taken so far.
    """

    def __init__(self, meter: Meter, rate_hz: float = 50.0):
        if not (0 < rate_hz <= MAX_RATE_HZ):
            raise ValueError(f"rate_hz={rate_hz}: must be in (0, {MAX_RATE_HZ:g}]")
        max_poll = meter.max_poll_interval_s
        if not (max_poll >= 1.0 / MAX_RATE_HZ):  # also catches NaN and 0 (a meter that would busy-loop)
            raise MeterError(f"meter {meter.name!r} needs a read every {max_poll} s to see every counter wrap; "
                             f"allowed: at least {1.0 / MAX_RATE_HZ:g} s (sampling above {MAX_RATE_HZ:g} Hz is refused)")
        self.meter = meter
        self.interval_s = min(1.0 / rate_hz, max_poll)
        #: the exception that stopped the sampling thread (``None`` while it runs)
        self.error: BaseException | None = None
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        # stop signal: a lock held while the thread runs; stop() releases it. The thread waits on it with a
        # timeout (one C-level acquire per period, woken at once by stop()), where Event.wait ran Python-level
        # Condition code at every period: ~25 µs CPU per wake-up on a loaded machine, a quarter of the budget
        self._stop_lock: threading.Lock | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._open_windows = 0
        self._edges = 0  # edge reads waiting for the lock (int updates under the GIL are atomic enough here)
        self._edge_done = threading.Event()
        self.n_reads = 0

    # -- thread -----------------------------------------------------------------
    def _read(self, edge: bool = True) -> Sample:
        with self._lock:
            s = self.meter.read() if edge else self.meter.poll()
            self.n_reads += 1
            samples = self._samples
            if self._open_windows == 0 and len(samples) > 1:
                del samples[:-1]  # bounded memory when no window needs the history
            # a meter that updates slower than we poll (tegrastats) returns the same sample again
            if not samples or s.t_s != samples[-1].t_s:
                samples.append(s)
            return s

    def _edge_read(self) -> Sample:
        """A read at a window edge: goes before the sampling thread's next read."""
        self._edges += 1
        try:
            return self._read()
        finally:
            self._edges -= 1
            self._edge_done.set()

    def _run(self) -> None:
        # The body of _read is inlined and everything bound to locals: this loop runs 10-100
        # times a second on a cold cache, and each attribute lookup and call shows up in the
        # sampler's CPU overhead (python -m bench.perf.sampler).
        interval = self.interval_s
        lock, poll, samples = self._lock, self.meter.poll, self._samples
        monotonic, stop_wait, sleep = time.monotonic, self._stop_lock.acquire, time.sleep
        # Why sleep at short periods: a plain sleep costs the thread ~10 µs less CPU per wake-up than a timed
        # lock acquire (45-50 vs 60 µs on the 2-core VM under load; python -m bench.perf.sampler), a tenth
        # of a sample's cost at 100 Hz; stop() then waits at most one period (<= SLEEP_MAX_S)
        short = interval <= SLEEP_MAX_S
        next_t = monotonic()
        while not self._stopping:
            while self._edges:  # let a waiting edge read take the lock first
                self._edge_done.clear()
                if self._edges:
                    self._edge_done.wait(0.05)
            try:
                with lock:
                    s = poll()
                    self.n_reads += 1
                    if self._open_windows == 0 and len(samples) > 1:
                        del samples[:-1]  # bounded memory when no window needs the history
                    if not samples or s.t_s != samples[-1].t_s:  # a slow meter repeats its last sample
                        samples.append(s)
            except BaseException as exc:  # noqa: BLE001 - kept and raised by the window, never lost
                self.error = exc
                return
            next_t += interval
            delay = next_t - monotonic()
            if delay <= 0:  # read slower than the rate: do not burst to catch up
                next_t = monotonic()
                continue
            if short:  # stop() waits at most one short period (the loop checks _stopping)
                sleep(delay)
            # a timed acquire of the stop lock, not sleep: stop() wakes the thread at once whatever the
            # rate (a sliced sleep still finished its last slice, up to a whole period at --rate-hz 0.01)
            elif stop_wait(True, delay):
                return

    def start(self) -> "Sampler":
        if self._thread is None:
            self.error = None
            self._read()  # first read in the caller: a broken meter fails here, loudly
            self._stopping = False
            self._stop_lock = threading.Lock()
            self._stop_lock.acquire()  # held until stop(): the thread's timed waits on it time out
            self._thread = threading.Thread(target=self._run, name=f"sampler-{self.meter.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        if self._thread is not None:
            stop_lock = self._stop_lock
            if stop_lock is not None and stop_lock.locked():
                stop_lock.release()  # wakes the thread's wait at once
            self._thread.join()
            self._thread = None

    def thread_cpu_clock(self) -> int | None:
        """The sampling thread's CPU clock (for ``time.clock_gettime``): what sampling itself costs, apart from
        every other thread of the process (``python -m bench.perf.sampler``). None when the thread is not running
        or the platform has no per-thread clock."""
        t = self._thread
        if t is None or t.ident is None or not hasattr(time, "pthread_getcpuclockid"):
            return None
        try:
            return time.pthread_getcpuclockid(t.ident)
        except OSError:  # the thread ended between the check and the call
            return None

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def _failed(self, exc: BaseException, i0: int | None) -> SamplingError:
        """The error a window raises for ``exc``, carrying the window's samples so far."""
        with self._lock:
            kept = list(self._samples[i0:]) if i0 is not None else []
        if isinstance(exc, SamplingError):
            exc.samples = kept
            return exc
        name = self.meter.name
        if isinstance(exc, MeterError):
            return SamplingError(f"meter {name!r} failed mid-window: {exc}", kept)
        return SamplingError(f"meter {name!r} failed mid-window with {type(exc).__name__}: {exc}", kept)

    def _thread_error(self) -> BaseException | None:
        """The error that stopped the thread, if it has stopped; a thread stopped by a
        non-fatal error is forgotten so that the next window starts a fresh one."""
        exc = self.error
        if exc is not None and self._thread is not None:
            self._thread.join(timeout=1.0)  # it sets error as its last act: this returns at once
            if not isinstance(exc, DeviceGoneError) and not self._thread.is_alive():
                self._thread = None  # e.g. a counter reset: the next window samples again
        return exc

    # -- windows ----------------------------------------------------------------
    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        """Measure the ``with`` block. Starts the sampler if needed."""
        if self._thread is not None and self.error is not None:  # the thread died between windows
            if isinstance(self._thread_error(), DeviceGoneError):
                raise self._failed(self.error, None)
            # anything else (a counter reset) touched no window: sample afresh
        if self._thread is None:
            self.start()
        w = Window()
        opened = False
        try:
            self._edges += 1  # held across the opening so the thread cannot cut in between the two locks
            try:
                with self._lock:
                    self._open_windows += 1
                opened = True
                self._edge_read()
            except MeterError as exc:
                raise self._failed(exc, None) from exc
            finally:
                self._edges -= 1
                self._edge_done.set()
            with self._lock:
                i0 = len(self._samples) - 1
            w.t_start_s = time.monotonic()
            yield w
            w.t_end_s = time.monotonic()
            exc = self._thread_error()
            if exc is not None:
                raise self._failed(exc, i0) from exc
            try:
                self._edge_read()
            except MeterError as exc:
                raise self._failed(exc, i0) from exc
            with self._lock:
                samples = self._samples[i0:]
            closed = window_energy(samples, w.t_start_s, w.t_end_s)
            w.energy_j, w.rails_energy_j, w.method, w.samples = closed.energy_j, closed.rails_energy_j, closed.method, closed.samples
        finally:
            with self._lock:
                self._open_windows -= opened
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
