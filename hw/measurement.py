"""Named energy windows over any meter, in the style of Zeus's ``ZeusMonitor``.

>>> from hw.measurement import EnergyMonitor               # doctest: +SKIP
>>> with EnergyMonitor("auto") as mon:                      # best meter here: nvml > rapl > jetson
...     mon.begin_window("infer")
...     model(x)
...     m = mon.end_window("infer")
...     with mon.window("again") as w:                     # a context manager ...
...         model(x)
...     step = mon.measure("step")(train_step)             # ... and a decorator
>>> m.energy_j, m.energy_mj, m.duration_s, m.power_w, m.n_samples

Every window is a :class:`Measurement` (energy in J and mJ, duration, average power,
sample count, and how the energy was computed: ``counter`` differences for meters with
an energy counter such as RAPL or NVML, else the ``trapezoid`` integral of power
samples; see :mod:`hw.sampler`). Windows may nest and overlap; their names must be
unique while open. One background :class:`~hw.sampler.Sampler` serves them all.

**Guard.** A window too short for the meter gives no honest energy: with fewer than
``min_samples`` distinct readings (default 2: one at each edge) or shorter than
``min_duration_s`` (default: the meter's ``min_window_s`` if it declares one, else
two sampling periods for a power-sampling meter and 0 for a counter), :meth:`end_window`
raises :class:`WindowTooShortError` (``on_short="raise"``), or returns the measurement
with ``valid=False`` and a warning (``"warn"``). Measure many repetitions in one window
instead and divide.

This module imports nothing from ``bench``; ``python -m bench monitor -- CMD`` is its
command line (:func:`main`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, Callable, Iterator, Sequence

from .atomic import atomic_write_text, check_writable_target
from .base import Meter, MeterError, NoDeviceError
from .sampler import Sampler, Window


class WindowTooShortError(MeterError):
    """A window had too few samples or too little time for the meter to measure it."""


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What one named window measured."""

    name: str
    #: wall time of the window, s (monotonic clock)
    duration_s: float
    #: energy over the window, J (all rails the meter totals)
    energy_j: float
    #: distinct meter readings used (the edges included)
    n_samples: int
    #: ``counter`` (difference of an energy counter) or ``trapezoid`` (integral of power samples)
    method: str
    #: the meter's registry name (``rapl``, ``nvml``, ...)
    meter: str
    #: energy per rail, J
    rails_energy_j: dict[str, float] = dataclasses.field(default_factory=dict)
    #: False when the window failed the minimum-window guard (numbers then unreliable)
    valid: bool = True

    @property
    def energy_mj(self) -> float:
        return self.energy_j * 1e3

    @property
    def power_w(self) -> float:
        """Average power over the window, W."""
        return self.energy_j / self.duration_s if self.duration_s > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(energy_mj=self.energy_mj, power_w=self.power_w)
        return d


def open_meter(meter: Meter | str | None = "auto", **kwargs: Any) -> Meter:
    """A meter from an instance, a registry name (``hw.METERS``, plugins included) or ``"auto"``."""
    from . import METERS, best_available_meter

    if isinstance(meter, Meter):
        return meter
    if meter in (None, "auto"):
        reasons: dict[str, str] = {}
        found = best_available_meter(reasons)
        if found is None:
            raise NoDeviceError("no energy meter available here: "
                                + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
        return found
    if meter not in METERS:
        raise NoDeviceError(METERS.unknown_message(str(meter)))
    return METERS[meter](**kwargs)


class EnergyMonitor:
    """Named energy windows (``begin_window``/``end_window``, :meth:`window`, :meth:`measure`) over one meter."""

    def __init__(self, meter: Meter | str | None = "auto", rate_hz: float = 50.0, *, min_samples: int = 2,
                 min_duration_s: float | None = None, on_short: str = "raise"):
        if on_short not in ("raise", "warn"):
            raise ValueError(f"on_short={on_short!r}: allowed 'raise' or 'warn'")
        if min_samples < 2:
            raise ValueError(f"min_samples={min_samples}: must be >= 2 (one reading at each edge)")
        self.meter = open_meter(meter)
        self.sampler = Sampler(self.meter, rate_hz)
        self.min_samples = int(min_samples)
        self._min_duration_s = min_duration_s
        self.on_short = on_short
        self._open: dict[str, tuple[contextlib.AbstractContextManager, Window]] = {}

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop sampling and close the meter (open windows are dropped)."""
        self._open.clear()
        self.sampler.stop()
        self.meter.close()

    def __enter__(self) -> "EnergyMonitor":
        self.sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- windows ------------------------------------------------------------------------
    def min_duration_s(self, method: str) -> float:
        if self._min_duration_s is not None:
            return float(self._min_duration_s)
        declared = getattr(self.meter, "min_window_s", None)
        if declared is not None:
            return float(declared)
        return 0.0 if method == "counter" else 2 * self.sampler.interval_s

    def begin_window(self, name: str) -> None:
        """Open the window ``name`` (starts sampling on first use)."""
        if name in self._open:
            raise ValueError(f"window {name!r} is already open")
        cm = self.sampler.window()
        window = cm.__enter__()
        self._open[name] = (cm, window)

    def end_window(self, name: str) -> Measurement:
        """Close the window ``name`` and return what it measured (see the guard in the module docstring)."""
        if name not in self._open:
            raise ValueError(f"window {name!r} is not open; open windows: {sorted(self._open)}")
        cm, w = self._open.pop(name)
        cm.__exit__(None, None, None)
        distinct = len({s.t_s for s in w.samples})
        m = Measurement(name=name, duration_s=w.duration_s, energy_j=w.energy_j, n_samples=distinct,
                        method=w.method, meter=self.meter.name, rails_energy_j=dict(w.rails_energy_j))
        need_s = self.min_duration_s(w.method)
        if distinct < self.min_samples or w.duration_s < need_s:
            why = (f"window {name!r} is too short for meter {self.meter.name!r}: {distinct} sample(s) in "
                   f"{w.duration_s * 1e3:.3g} ms; need >= {self.min_samples} samples and >= {need_s * 1e3:.3g} ms "
                   f"(measure more repetitions in one window, or raise rate_hz)")
            if self.on_short == "raise":
                raise WindowTooShortError(why)
            warnings.warn(why, RuntimeWarning, stacklevel=2)
            m = dataclasses.replace(m, valid=False)
        return m

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator["WindowResult"]:
        """``with mon.window("x") as w: ...``; afterwards ``w.result`` is the :class:`Measurement`."""
        handle = WindowResult(name)
        self.begin_window(name)
        try:
            yield handle
        except BaseException:
            cm, _ = self._open.pop(name)
            cm.__exit__(None, None, None)
            raise
        handle.result = self.end_window(name)

    def measure(self, name: str | None = None) -> Callable[[Callable], Callable]:
        """Decorator: every call of the function is a window; the latest is ``fn.last_measurement``."""

        def deco(fn: Callable) -> Callable:
            label = name or getattr(fn, "__qualname__", "call")

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.window(label) as w:
                    result = fn(*args, **kwargs)
                wrapper.last_measurement = w.result  # type: ignore[attr-defined]
                return result

            wrapper.last_measurement = None  # type: ignore[attr-defined]
            return wrapper

        return deco


@dataclasses.dataclass
class WindowResult:
    """Filled when a :meth:`EnergyMonitor.window` block exits."""

    name: str
    result: Measurement | None = None

    def __getattr__(self, attr: str) -> Any:  # w.energy_j etc. once closed
        result = self.__dict__.get("result")
        if result is None:
            raise AttributeError(f"window {self.name!r} is still open (no {attr} yet)")
        return getattr(result, attr)


# --------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    from .cli import add_meter_arguments

    p = argparse.ArgumentParser(prog="python -m bench monitor",
                                description="Measure the energy of any command: "
                                            "python -m bench monitor [options] -- COMMAND [ARGS...]")
    p.add_argument("--json", metavar="FILE", help="also write the measurement as JSON ('-' for stdout)")
    p.add_argument("--min-samples", type=int, default=2)
    p.add_argument("--allow-short", action="store_true", help="report a too-short window (valid=false) instead "
                   "of failing")
    add_meter_arguments(p)
    return p


#: signals ``monitor`` passes on to its command (a supervisor stopping monitor stops what it measures)
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def shell_returncode(returncode: int) -> int:
    """A child's exit status as a shell reports it: killed by signal N -> 128 + N (SIGKILL 137, SIGTERM 143)."""
    return 128 - returncode if returncode < 0 else returncode


def run_forwarding_signals(command: Sequence[str]) -> int:
    """Run ``command`` (argument list) to its end; SIGTERM/SIGINT/SIGHUP sent to this process are passed
    on to it while it runs. Returns its exit status the shell's way (:func:`shell_returncode`)."""
    proc = subprocess.Popen(list(command))
    previous: dict[int, Any] = {}

    def forward(signum: int, _frame: Any) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    in_main_thread = threading.current_thread() is threading.main_thread()  # handlers install only there
    try:
        if in_main_thread:
            for sig in FORWARDED_SIGNALS:
                previous[sig] = signal.signal(sig, forward)
        while True:
            try:
                return shell_returncode(proc.wait())
            except KeyboardInterrupt:  # a handler installed by someone else raised: still wait for the child
                forward(signal.SIGINT, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run COMMAND (an argument list, never a shell) inside one window; print energy, time and power.

    Exit code: COMMAND's own (128 + N when a signal N killed it, as a shell reports it), or 2 when the arguments are wrong or no meter can run (the
    reason is printed), 127 when COMMAND cannot be started.
    """
    from .cli import make_meter

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        cut = argv.index("--")
        opts, command = argv[:cut], argv[cut + 1:]
    elif argv and argv[0].startswith("-"):  # options only (--help), or a command forgotten after them
        opts, command = argv, []
    else:
        opts, command = [], argv
    parser = build_parser()
    args = parser.parse_args(opts)
    if not command:
        print("error: nothing to measure: python -m bench monitor [options] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    if args.adapter == "none":
        print("error: --adapter none measures no energy; pick a meter (or auto)", file=sys.stderr)
        return 2
    if args.json is not None and args.json != "-":  # refused before the command runs, not after (its measurement lost)
        why = check_writable_target(args.json)
        if why:
            print(f"error: --json {args.json!r}: {why} (or '-' for stdout)", file=sys.stderr)
            return 2
    try:
        meter = make_meter(args)
        if meter is None:
            raise NoDeviceError("no energy meter available here (see the reasons above)")
        mon = EnergyMonitor(meter, rate_hz=args.rate_hz, min_samples=args.min_samples,
                            on_short="warn" if args.allow_short else "raise")
    except (MeterError, ValueError) as exc:
        print(f"error: {args.adapter}: {exc}", file=sys.stderr)
        return 2
    t_wall = time.time()
    try:
        with mon:
            mon.begin_window("command")
            try:
                returncode = run_forwarding_signals(command)
            except OSError as exc:
                print(f"error: cannot run {command[0]!r}: {exc}", file=sys.stderr)
                return 127
            m = mon.end_window("command")
    except WindowTooShortError as exc:
        print(f"error: {exc}; pass --allow-short to report it anyway", file=sys.stderr)
        return 2
    except MeterError as exc:
        print(f"error: meter failed: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. a replayed log whose stretch under the window holds no power reading
        print(f"error: {args.adapter}: no energy for the window: {' '.join(str(exc).split())}; allowed: a meter "
              f"that reads power or energy while the command runs", file=sys.stderr)
        return 2
    print(f"monitor: {' '.join(command)}\n"
          f"  meter {m.meter} ({m.method}), {m.n_samples} samples{'' if m.valid else ' [TOO SHORT: unreliable]'}\n"
          f"  duration {m.duration_s:.3f} s, energy {m.energy_j:.3f} J ({m.energy_mj:.1f} mJ), "
          f"average power {m.power_w:.3f} W\n  exit code {returncode}", file=sys.stderr)
    if args.json:
        record = {**m.to_dict(), "command": command, "returncode": returncode, "started_unix_s": t_wall}
        text = json.dumps(record, indent=2, sort_keys=True)
        if args.json == "-":
            print(text)
        else:
            atomic_write_text(args.json, text + "\n")  # a crash mid-write keeps the previous file whole
    return returncode


if __name__ == "__main__":
    raise SystemExit(main())
