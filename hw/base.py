"""Interfaces shared by every device adapter: ``Sample``, ``Meter``, ``DvfsController``, errors.

One small interface per device family, in the spirit of Zeus (ml.energy):

* a **meter** probes itself with :meth:`Meter.available` (no side effects; says
  why not) and returns a timestamped :class:`Sample` from :meth:`Meter.read`;
* a **DVFS controller** lists :meth:`DvfsController.frequencies`, sets one with
  :meth:`DvfsController.set_frequency` and restores everything it changed when
  its ``with`` block ends — normally, on an exception or on Ctrl-C
  (``KeyboardInterrupt`` is an exception too) — and, as a last resort, at
  interpreter exit (``atexit``). A ``kill -9`` cannot be caught by any process:
  after one, run ``restore`` by hand or reboot.

Energy over a window is ``end - begin`` of a cumulative counter. Hardware
counters wrap (RAPL ``energy_uj`` at ``max_energy_range_uj``); meters that read
such counters unwrap them with :func:`counter_delta` on every read so that
``Sample.energy_j`` never decreases, and they declare
:attr:`Meter.max_poll_interval_s` so that the sampler polls often enough never to
miss a wrap.

Errors a person can act on all derive from :class:`MeterError`:
:class:`MissingFileError`, :class:`PermissionDeniedError` (its message carries
the fix), :class:`NoDeviceError`, :class:`ParseError` (a readout that is not what
the adapter knows), :class:`CounterError` (a counter that went backwards or reset)
and :class:`SamplingError` / its subclass :class:`DeviceGoneError` (a read failed
inside a window, e.g. the device vanished mid-run; the samples taken so far travel
with it).
"""

from __future__ import annotations

import os

import abc
import atexit
import dataclasses
import math
import time
import types
import weakref
from typing import Any, Iterable, Mapping, Sequence


# --------------------------------------------------------------------------- errors
class MeterError(RuntimeError):
    """Base class: a meter or controller cannot do what was asked; the message says why."""


class MissingFileError(MeterError, FileNotFoundError):
    """A sysfs file or binary the adapter needs does not exist on this host."""


class PermissionDeniedError(MeterError, PermissionError):
    """The adapter may not read/write a file; the message says how to grant access."""


class NoDeviceError(MeterError):
    """No device of this family is present (no GPU, no phone attached, no zones)."""


class SamplingError(MeterError):
    """A reading failed inside an energy window; ``samples`` keeps what was measured before it."""

    def __init__(self, message: str, samples: Sequence["Sample"] = ()):
        super().__init__(message)
        self.samples = list(samples)


class DeviceGoneError(SamplingError):
    """The device disappeared in the middle of a run; ``samples`` keeps what was measured."""


class CounterError(MeterError):
    """A cumulative counter moved in a way no wrap explains (went backwards, reset, or jumped)."""


class ParseError(MeterError):
    """A device readout could not be parsed; the message names the source, the bad text and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Availability:
    """Result of :meth:`Meter.available`: truthy when the meter can run, else ``reason`` says why."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


# --------------------------------------------------------------------------- samples
_object_new = object.__new__
#: the one empty mapping that samples from :meth:`Sample.fast` share for fields they do not fill (read-only)
_NONE: Mapping[str, float] = types.MappingProxyType({})

@dataclasses.dataclass(frozen=True)
class Sample:
    """One reading of a meter.

    =================  ==========================================================
    field              meaning
    =================  ==========================================================
    ``t_s``            ``time.monotonic()`` seconds when read (replay: log time)
    ``power_w``        instantaneous power per rail, W
    ``energy_j``       cumulative energy per rail, J, already unwrapped
    ``freq_mhz``       clock per domain, MHz
    ``util_pct``       utilisation per domain, %
    ``temp_c``         temperature per sensor, °C
    ``total``          rails whose sum is the device total (others are sub-rails)
    =================  ==========================================================
    """

    t_s: float
    power_w: Mapping[str, float] = dataclasses.field(default_factory=dict)
    energy_j: Mapping[str, float] = dataclasses.field(default_factory=dict)
    freq_mhz: Mapping[str, float] = dataclasses.field(default_factory=dict)
    util_pct: Mapping[str, float] = dataclasses.field(default_factory=dict)
    temp_c: Mapping[str, float] = dataclasses.field(default_factory=dict)
    total: tuple[str, ...] = ()

    def _total_rails(self, values: Mapping[str, float]) -> tuple[str, ...]:
        return self.total if self.total else tuple(values)

    @property
    def total_power_w(self) -> float | None:
        """Sum of the total rails' power, or ``None`` when this sample carries no power."""
        rails = self._total_rails(self.power_w)
        if not rails or any(r not in self.power_w for r in rails):
            return None
        return float(sum(self.power_w[r] for r in rails))

    @property
    def total_energy_j(self) -> float | None:
        rails = self._total_rails(self.energy_j)
        if not rails or any(r not in self.energy_j for r in rails):
            return None
        return float(sum(self.energy_j[r] for r in rails))

    @classmethod
    def fast(cls, t_s: float, power_w: Mapping[str, float] | None = None, energy_j: Mapping[str, float] | None = None,
             total: tuple[str, ...] = ()) -> "Sample":
        """The same as ``Sample(t_s=..., power_w=..., energy_j=..., total=...)`` without the frozen
        dataclass's per-field ``__setattr__`` calls: meters build one per read on the sampler thread,
        where a read's cost is the sampler's overhead (``python -m bench.perf.sampler``)."""
        s = _object_new(cls)
        s.__dict__.update(t_s=t_s, power_w=_NONE if power_w is None else power_w,
                          energy_j=_NONE if energy_j is None else energy_j, freq_mhz=_NONE, util_pct=_NONE,
                          temp_c=_NONE, total=total)
        return s

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("power_w", "energy_j", "freq_mhz", "util_pct", "temp_c"):
            out[key] = dict(out[key])
        out["total"] = list(self.total)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Sample":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"sample: unknown field(s) {sorted(unknown)}; allowed: {sorted(fields)}")
        kwargs = dict(data)
        kwargs["total"] = tuple(kwargs.get("total", ()))
        return cls(**kwargs)


def counter_delta(begin: float, end: float, max_range: float, max_step: float = math.inf) -> float:
    """``end - begin`` for a counter that wraps to 0 after ``max_range``.

    Assumes at most one wrap between the two reads — which is why meters with
    wrapping counters declare ``max_poll_interval_s`` and the sampler honours it.
    A decrease that one wrap cannot explain — ``begin`` above the range, or an
    unwrapped step larger than ``max_step`` (the most the counter can advance
    between two reads; a counter *reset* to near 0 looks like an almost full wrap)
    — raises :class:`CounterError` instead of adding a phantom range.
    """
    if end >= begin:
        return end - begin
    if not (max_range > 0) or begin > max_range or end > max_range:
        raise CounterError(f"counter went backwards ({begin} -> {end}) and max_range={max_range} cannot explain it")
    step = (max_range - begin) + end
    if step > max_step:
        raise CounterError(f"counter went backwards ({begin} -> {end}); a wrap at max_range={max_range} would mean "
                           f"{step:.0f} units since the last read, more than the {max_step:.0f} possible: "
                           "the counter was reset (CPU hotplug, suspend/resume, driver reload)")
    return step


# --------------------------------------------------------------------------- meters
class Meter(abc.ABC):
    """A power/energy meter. Subclasses set ``name`` and implement ``available`` and ``read``.

    ``read`` must be cheap and thread-safe enough to be called from the sampler
    thread while the main thread also calls it at window edges (the sampler
    serialises the calls with a lock, so meters need no lock of their own).
    """

    #: registry key (``hw.METERS``) and the value written in the trace ``meter`` column
    name: str = "meter"
    #: longest time between two reads that still cannot miss a counter wrap (inf: no wrap)
    max_poll_interval_s: float = math.inf

    @classmethod
    @abc.abstractmethod
    def probe(cls, **kwargs: Any) -> Availability:
        """Class-level probe with the constructor's arguments (no side effects)."""

    def available(self) -> Availability:
        """Whether this meter can run here, and why not. Never raises, changes nothing."""
        return type(self).probe(**self.settings())

    @abc.abstractmethod
    def read(self) -> Sample:
        """One timestamped reading; raises a :class:`MeterError` subclass on failure."""

    def poll(self) -> Sample:
        """The sampler thread's periodic reading (window edges use :meth:`read`).

        May carry fewer rails than :meth:`read` where that is exact and cheaper (RAPL: only
        the counters of the total between edges); by default it is :meth:`read`.
        """
        return self.read()

    def settings(self) -> dict[str, Any]:
        """Constructor arguments, recorded in the trace metadata sidecar."""
        return {}

    def close(self) -> None:
        """Release handles/subprocesses. Idempotent."""

    def __enter__(self) -> "Meter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- DVFS
_LIVE_CONTROLLERS: "weakref.WeakSet[DvfsController]" = weakref.WeakSet()


@atexit.register
def _restore_all_at_exit() -> None:  # last resort: a controller used without ``with``
    for ctl in list(_LIVE_CONTROLLERS):
        try:
            ctl.restore()
        except Exception:  # noqa: BLE001 - exiting anyway; nothing better to do
            pass


class DvfsController(abc.ABC):
    """Sets clock frequencies on a device and puts back whatever it changed.

    Subclasses implement ``frequencies``, ``current``, ``_snapshot(domain)``,
    ``_apply(domain, mhz)`` and ``_restore(domain, snapshot)``; this base class
    keeps one snapshot per touched domain (taken before the first change) and
    restores them in reverse order.
    """

    def __init__(self) -> None:
        self._saved: dict[str, Any] = {}
        _LIVE_CONTROLLERS.add(self)

    @abc.abstractmethod
    def frequencies(self) -> dict[str, list[float]]:
        """Domain -> available levels in MHz, ascending."""

    @abc.abstractmethod
    def current(self) -> dict[str, float]:
        """Domain -> current frequency in MHz."""

    @abc.abstractmethod
    def _snapshot(self, domain: str) -> Any: ...

    @abc.abstractmethod
    def _apply(self, domain: str, mhz: float) -> None: ...

    @abc.abstractmethod
    def _restore(self, domain: str, snapshot: Any) -> None: ...

    def set_frequency(self, domain: str, mhz: float) -> None:
        """Pin ``domain`` to ``mhz`` (must be one of :meth:`frequencies`)."""
        levels = self.frequencies()
        if domain not in levels:
            raise ValueError(f"unknown DVFS domain {domain!r}; allowed: {sorted(levels)}")
        if not any(math.isclose(mhz, lv, abs_tol=0.5) for lv in levels[domain]):
            raise ValueError(f"{domain}: {mhz} MHz is not an available level; allowed: {levels[domain]}")
        if domain not in self._saved:
            self._saved[domain] = self._snapshot(domain)
        self._apply(domain, mhz)

    def restore(self) -> None:
        """Put back every domain this controller changed (idempotent)."""
        errors = []
        for domain in reversed(list(self._saved)):
            try:
                self._restore(domain, self._saved[domain])
            except Exception as exc:  # noqa: BLE001 - restore the others, then report
                errors.append(f"{domain}: {exc}")
            else:
                del self._saved[domain]
        if errors:
            raise MeterError("could not restore DVFS settings: " + "; ".join(errors))

    @property
    def changed(self) -> list[str]:
        return list(self._saved)

    def __enter__(self) -> "DvfsController":
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def nearest(levels: Iterable[float], mhz: float) -> float:
    """The available level closest to ``mhz`` (for sweeps given in round numbers)."""
    levels = list(levels)
    if not levels:
        raise ValueError("no frequency levels to choose from")
    return min(levels, key=lambda lv: abs(lv - mhz))


def monotonic() -> float:
    return time.monotonic()


def open_readonly(path: "str | os.PathLike", *, permission_fix: str, missing: str) -> int:
    """A read-only descriptor kept open for a meter's life (each read is then one ``os.pread``), with the
    family's errors: ``permission_fix`` says how to grant access, ``missing`` why the file may be absent."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except PermissionError:
        raise PermissionDeniedError(f"cannot read {path}: permission denied. {permission_fix}") from None
    except FileNotFoundError:
        raise MissingFileError(f"{path} does not exist ({missing})") from None
    except OSError as exc:
        raise MeterError(f"cannot open {path}: {exc.strerror or exc}") from None
