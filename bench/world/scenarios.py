"""Scripted, seeded scenarios: signal strength, interference and workload mix over time.

A scenario (``data/scenarios/<name>.yaml``) describes, per decision step:

* ``signal``: one process per radio (``wifi``, ``lte``), values in dBm;
* ``bandwidth_cap_mbps``: optional cap on every link's goodput (like ``trickle``
  in DVFO's setup), a process in Mbit/s;
* ``interference``: the co-runner's CPU, memory and GPU load, each in [0, 1];
* ``workload_mix``: which DNN each request runs, with its latency target (QoS)
  and accuracy-loss bound.

Process kinds (``kind:``) and their fields:

=============  =====================================================================
kind           fields
=============  =====================================================================
constant       ``level`` (strong / medium / weak, from the link model) or ``value``
step           ``at`` (step indices, first 0), ``values`` (numbers or level names)
random_walk    ``start``, ``step_std``, ``min``, ``max`` (bounded by reflection)
periodic       ``mean``, ``amplitude``, ``period_steps``, optional ``phase_steps``, ``noise_std``
mobility       ``p0_dbm`` (at 1 m), ``path_loss_exponent``, ``start_m``, ``speed_m_per_step``,
               ``min_m``, ``max_m``, ``shadowing_std_db``, ``shadowing_corr``
               (log-distance path loss + AR(1) log-normal shadowing; walks away and back)
replay         ``path`` (CSV; relative to the scenario file or the repo), ``column``,
               optional ``loop`` (default true)
trace          a measured trace (``data/traces/``, format in its README): ``path``, optional
               ``column`` (default ``mbps``), ``time_scale`` (default 1: trace seconds per
               simulated second), ``random_offset`` (default true: the start is drawn
               uniformly over the trace from the process's seeded stream), ``loop`` (default
               true). Step i reads the sample in force at ``offset + i * interarrival_s *
               time_scale`` (sample and hold). A ``mbps`` column is a goodput: use it as
               ``bandwidth_cap_mbps``; a ``rsrp_dbm`` column is a signal
=============  =====================================================================

Interference kinds: ``none``; ``cpu_heavy`` / ``memory_heavy`` / ``gpu_heavy``
(optional ``intensity`` in [0, 1]); ``constant`` (``cpu``, ``mem``, optional ``gpu``); ``bursty`` (a two-state
Markov chain: ``app`` when on, ``p_on`` = P(off -> on), ``p_off`` = P(on -> off));
``app_mix`` (named apps from ``_model.yaml``, ``apps``, ``stay_prob``, optional
``weights``). App loads and the slowdown/power constants live in
``data/scenarios/_model.yaml``, each with its ``assumed:`` reason.

The kinds are registries (:data:`PROCESS_KINDS`, :data:`INTERFERENCE_KINDS`): a plugin adds
one with ``PROCESS_KINDS.register("name", ProcessKind(fields, required, realise))`` or an
entry point (docs/extending.md).

All randomness comes from the ``numpy.random.Generator`` passed to
:meth:`Scenario.trace` (the signal, cap, interference and mix each get their own
child stream, so changing one process does not reshuffle the others).
"""

from __future__ import annotations

import functools
import re

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

import bench.validate as V
from bench.errors import DataFileError, allowed_list
from bench.paths import DATA_DIR, REPO_ROOT
from bench.world.network import load_link
from hw.registry import Registry

SCENARIO_DIR = DATA_DIR / "scenarios"
MODEL_FILE = SCENARIO_DIR / "_model.yaml"
RADIOS = ("wifi", "lte")

_TOP_FIELDS = {"name", "description", "source", "family", "steps", "interarrival_ms", "signal", "bandwidth_cap_mbps",
               "interference", "workload_mix"}
_MIX_FIELDS = {"workload", "weight", "qos_ms", "max_accuracy_loss"}
_DEFAULT_SIGNAL = {"kind": "constant", "level": "medium"}


class ScenarioError(DataFileError):
    """A scenario file is malformed; the message names the file and the field."""


# --------------------------------------------------------------------------- shared model constants


@functools.lru_cache(maxsize=None)
def _link_levels(radio: str) -> tuple[tuple[str, float], ...]:
    """A shipped link's named signal levels, read once per process (every env reset realises a trace)."""
    return tuple(load_link(radio).levels_dbm.items())

@dataclass(frozen=True)
class InterferenceModel:
    """How co-runner load slows local execution and adds power (see ``_model.yaml``).

    Local compute time x ``1 + cpu_slowdown * u_cpu * coupling`` (coupling 1 on the
    CPU target, ``accel_cpu_coupling`` on GPU/DSP: their CPU-side launch and
    pre/post-processing), memory-bound time on every local target x ``1 +
    mem_slowdown * u_mem`` (so a layer mix slows in proportion to its memory
    share), GPU compute time x ``1 + gpu_slowdown * u_gpu`` (a game or camera
    pipeline sharing the GPU), and ``cpu_power_w * u_cpu + mem_power_w * u_mem``
    extra watts while the inference runs locally. Offloaded work is not slowed.
    Each constant's source is in ``_model.yaml``.
    """

    cpu_slowdown: float
    mem_slowdown: float
    accel_cpu_coupling: float
    cpu_power_w: float
    mem_power_w: float
    gpu_slowdown: float = 0.0
    apps: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)


def load_interference_model(path: str | Path = MODEL_FILE) -> InterferenceModel:
    where = Path(path).name
    return interference_model_from_dict(V.read_yaml(path, ScenarioError, where), where)


#: Limits of the interference constants: slowdowns and coupling are factors, powers in watts.
_MODEL_LIMITS = {"cpu_slowdown": dict(ge=0, le=100), "mem_slowdown": dict(ge=0, le=100),
                 "accel_cpu_coupling": dict(ge=0, le=1), "cpu_power_w": dict(ge=0, le=1000),
                 "mem_power_w": dict(ge=0, le=1000), "gpu_slowdown": dict(ge=0, le=100)}


def interference_model_from_dict(data: Mapping, where: str = "_model.yaml") -> InterferenceModel:
    """Validate parsed ``_model.yaml``: every constant finite and in range, every app load in [0, 1]."""
    V.mapping(where, data, ScenarioError)
    raw = data.get("interference_model") or {}
    V.mapping(f"{where}.interference_model", raw, ScenarioError, allowed=_MODEL_LIMITS)
    values, sources = {}, {}
    for k, bounds in _MODEL_LIMITS.items():
        entry = raw.get(k)
        if not isinstance(entry, Mapping) or set(entry) != {"value", "source"}:
            raise ScenarioError.at(f"{where}.interference_model.{k}", "expected {value, source}", entry)
        values[k] = V.number(f"{where}.interference_model.{k}.value", entry["value"], ScenarioError, **bounds)
        sources[k] = V.text(f"{where}.interference_model.{k}.source", entry["source"], ScenarioError, empty=False)
    apps = {}
    raw_apps = data.get("apps") or {}
    V.mapping(f"{where}.apps", raw_apps, ScenarioError)
    for name, entry in raw_apps.items():
        aw = f"{where}.apps.{name}"
        if (not isinstance(name, str) or not isinstance(entry, Mapping)
                or not {"cpu", "mem", "source"} <= set(entry) <= {"cpu", "mem", "gpu", "source"}):
            raise ScenarioError.at(aw, "expected a named entry with fields ['cpu', 'mem', 'source'] and optional 'gpu'",
                                   entry)
        apps[name] = (V.number(f"{aw}.cpu", entry["cpu"], ScenarioError, ge=0, le=1),
                      V.number(f"{aw}.mem", entry["mem"], ScenarioError, ge=0, le=1),
                      V.number(f"{aw}.gpu", entry.get("gpu", 0.0), ScenarioError, ge=0, le=1))
        sources[f"apps.{name}"] = V.text(f"{aw}.source", entry["source"], ScenarioError, empty=False)
    return InterferenceModel(apps=apps, sources=sources, **values)


# --------------------------------------------------------------------------- the trace of a scenario

@dataclass(frozen=True)
class ScenarioTrace:
    """Per-step arrays of a scenario realisation (all of length ``steps``)."""

    scenario: str
    interarrival_ms: float
    signal_dbm: Mapping[str, np.ndarray]  # radio -> dBm
    bandwidth_cap_mbps: np.ndarray  # inf where uncapped
    cpu_load: np.ndarray
    mem_load: np.ndarray
    workload: np.ndarray  # str
    qos_ms: np.ndarray
    max_accuracy_loss: np.ndarray
    gpu_load: np.ndarray | None = None  # a GPU-bound co-runner's load; None = 0

    def __post_init__(self):
        if self.gpu_load is None:
            object.__setattr__(self, "gpu_load", np.zeros(len(self.cpu_load)))

    @property
    def steps(self) -> int:
        return len(self.cpu_load)

    def frame(self) -> pd.DataFrame:
        """Wide per-step frame (one row per step)."""
        data = {"scenario": self.scenario, "step": np.arange(self.steps),
                "time_s": np.arange(self.steps) * self.interarrival_ms / 1e3}
        data.update({f"{r}_dbm": v for r, v in self.signal_dbm.items()})
        data.update(bandwidth_cap_mbps=self.bandwidth_cap_mbps, cpu_load=self.cpu_load, mem_load=self.mem_load,
                    gpu_load=self.gpu_load,
                    workload=self.workload, qos_ms=self.qos_ms, max_accuracy_loss=self.max_accuracy_loss)
        return pd.DataFrame(data)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario definition; :meth:`trace` realises it with a generator."""

    name: str
    description: str
    steps: int
    interarrival_ms: float
    signal: Mapping[str, Mapping[str, Any]]
    bandwidth_cap_mbps: Mapping[str, Any] | None
    interference: Mapping[str, Any]
    workload_mix: Sequence[Mapping[str, Any]]
    source: str = ""
    path: Path | None = None
    #: pre-registered family (signal process / co-runner mix / DNN mix, e.g. ``wifi-static/none/mixed``);
    #: the train/held-out split is checked on families (bench/config.py). Default: the scenario's name.
    family: str = ""

    def __post_init__(self):
        if not self.family:
            object.__setattr__(self, "family", self.name)

    @property
    def workloads(self) -> list[str]:
        return [m["workload"] for m in self.workload_mix]

    def trace(self, rng: np.random.Generator, steps: int | None = None,
              model: InterferenceModel | None = None) -> ScenarioTrace:
        """Realise the scenario for ``steps`` decisions (default: the scenario's own length)."""
        n = int(self.steps if steps is None else steps)
        model = model or load_interference_model()
        child = rng.spawn(4)
        signal = {}
        for radio in RADIOS:
            spec = self.signal.get(radio, _DEFAULT_SIGNAL)
            signal[radio] = _realise(spec, n, child[0].spawn(1)[0], f"{self.name}.signal.{radio}",
                                     levels=dict(_link_levels(radio)), base=self.path, bounds=SIGNAL_DBM,
                                     step_s=self.interarrival_ms / 1e3)
        if self.bandwidth_cap_mbps is None:
            cap = np.full(n, np.inf)
        else:
            cap = np.maximum(_realise(self.bandwidth_cap_mbps, n, child[1], f"{self.name}.bandwidth_cap_mbps",
                                      levels={}, base=self.path, bounds=CAP_MBPS,
                                      step_s=self.interarrival_ms / 1e3), 1e-3)
        cpu, mem, gpu = _interference(self.interference, n, child[2], model, f"{self.name}.interference")
        weights = np.array([float(m.get("weight", 1.0)) for m in self.workload_mix])
        pick = child[3].choice(len(self.workload_mix), size=n, p=weights / weights.sum())
        names = np.array(self.workloads, dtype=object)
        qos = np.array([float(m["qos_ms"]) for m in self.workload_mix])
        acc = np.array([float(m["max_accuracy_loss"]) for m in self.workload_mix])
        return ScenarioTrace(self.name, self.interarrival_ms, signal, cap, cpu, mem, names[pick], qos[pick], acc[pick],
                             gpu)


# --------------------------------------------------------------------------- processes

@dataclass(frozen=True)
class ProcessContext:
    """What a process kind's ``realise`` gets besides its spec."""

    n: int  # steps to realise
    rng: np.random.Generator  # this process's own stream (draw from nothing else)
    where: str  # for error messages: "<scenario>.signal.wifi"
    levels: Mapping[str, float]  # named levels of the radio (strong/medium/weak), dBm; {} for a cap
    base: Path | None  # the scenario file (relative paths resolve against it)
    bounds: Mapping[str, float] = field(default_factory=dict)  # allowed range of the values (ge/le): dBm or Mbit/s
    step_s: float = 1.0  # simulated seconds per step (the scenario's inter-arrival time)

    @property
    def t(self) -> np.ndarray:
        return np.arange(self.n)

    def value(self, v: Any) -> float:
        """A number, or a named level of the radio."""
        return _value(v, self.levels, self.where)


@dataclass(frozen=True)
class ProcessKind:
    """A kind of per-step process (signal in dBm, bandwidth cap in Mbit/s): ``kind: NAME`` in a scenario.

    ``realise(spec, ctx) -> np.ndarray`` of length ``ctx.n``; ``check(spec, where)`` (optional)
    validates the spec at load time beyond the allowed/required field names.
    """

    fields: frozenset[str]
    required: frozenset[str]
    realise: Callable[[Mapping, ProcessContext], np.ndarray]
    check: Callable[[Mapping, str], None] | None = None


@dataclass(frozen=True)
class InterferenceContext:
    """What an interference kind's ``realise`` gets besides its spec."""

    n: int
    rng: np.random.Generator
    where: str
    model: InterferenceModel

    def app(self, name: str) -> tuple[float, float]:
        """(cpu, mem) load of a named app of ``_model.yaml``."""
        return self.app_loads(name)[:2]

    def app_loads(self, name: str) -> tuple[float, float, float]:
        """(cpu, mem, gpu) load of a named app of ``_model.yaml``."""
        if name not in self.model.apps:
            raise ScenarioError(f"{self.where}: app {name!r} is not allowed; allowed apps: {sorted(self.model.apps)}")
        return self.model.apps[name]


@dataclass(frozen=True)
class InterferenceKind:
    """A kind of co-runner process: ``realise(spec, ctx) -> (cpu_load, mem_load[, gpu_load])``, each in [0, 1] per step.

    A kind that returns two arrays has no GPU-bound load (0).
    """

    fields: frozenset[str]
    required: frozenset[str]
    realise: Callable[[Mapping, InterferenceContext], tuple[np.ndarray, np.ndarray]]
    check: Callable[[Mapping, str], None] | None = None


def _check_kind(name: str, value: Any) -> None:
    if not isinstance(value, (ProcessKind, InterferenceKind)):
        raise ValueError(f"scenario kind {name!r}: {value!r} is not a ProcessKind / InterferenceKind")


#: ``kind`` of a signal or bandwidth-cap process -> :class:`ProcessKind`
#: (plugins: entry-point group ``edge_inference_bench.scenario_kinds``)
PROCESS_KINDS: Registry = Registry("scenario process kind", "scenario_kinds", check=_check_kind)
#: ``kind`` of an interference process -> :class:`InterferenceKind`
#: (plugins: entry-point group ``edge_inference_bench.interference_kinds``)
INTERFERENCE_KINDS: Registry = Registry("interference kind", "interference_kinds", check=_check_kind)


def _check(where: str, spec: Mapping, kinds: Registry) -> str:
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise ScenarioError.at(where, "expected a mapping with a 'kind' field", spec, f"kinds {sorted(kinds)}")
    kind = spec["kind"]
    if not isinstance(kind, str) or kind not in kinds:
        raise ScenarioError.at(f"{where}.kind", "unknown kind", kind, allowed_list(sorted(kinds)))
    entry = kinds[kind]
    allowed, required = set(entry.fields), set(entry.required)
    unknown = sorted((k for k in spec if k not in allowed and k != "kind"), key=str)
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {V.short(unknown)} for kind {kind!r}; allowed fields: {sorted(allowed | {'kind'})}")
    missing = sorted(required - set(spec))
    if missing:
        raise ScenarioError(f"{where}: missing field(s) {missing} for kind {kind!r}")
    if entry.check is not None:
        entry.check(spec, where)
    return kind


def _value(v: Any, levels: Mapping[str, float], where: str, **bounds) -> float:
    """A level name (from the link model) or a finite number within ``bounds``."""
    if isinstance(v, str):
        if v not in levels:
            raise ScenarioError.at(where, "unknown level", v, f"{sorted(levels)} or a number")
        return float(levels[v])
    return V.number(where, v, ScenarioError, **bounds)


#: Range of a process's values by what it drives (a signal in dBm, a bandwidth cap in Mbit/s).
SIGNAL_DBM = dict(ge=-200.0, le=50.0)
CAP_MBPS = dict(ge=0.0, le=1e6)
#: Limits of each process kind's numeric fields (level-or-value fields are checked with the quantity's range).
_PROCESS_NUMBERS: dict[str, dict[str, dict[str, float]]] = {
    "random_walk": {"step_std": dict(ge=0, le=1e3)},
    "periodic": {"amplitude": dict(ge=0, le=1e3), "period_steps": dict(gt=0, le=1e9),
                 "phase_steps": dict(ge=-1e9, le=1e9), "noise_std": dict(ge=0, le=1e3)},
    "mobility": {"p0_dbm": dict(ge=-200, le=50), "path_loss_exponent": dict(gt=0, le=10), "start_m": dict(ge=0, le=1e6),
                 "speed_m_per_step": dict(ge=0, le=1e6), "min_m": dict(gt=0, le=1e6), "max_m": dict(gt=0, le=1e6),
                 "shadowing_std_db": dict(ge=0, le=100), "shadowing_corr": dict(ge=-1, le=1)},
}
_LEVEL_FIELDS = {"constant": ("level", "value"), "random_walk": ("start", "min", "max"), "periodic": ("mean",)}


def _check_process(where: str, spec: Mapping, levels: Mapping[str, float], qty: Mapping[str, float],
                   base: Path | None = None) -> None:
    """Validate a process's numbers at load time, so :func:`_realise` only ever sees finite, ranged values."""
    kind = _check(where, spec, PROCESS_KINDS)
    for key in _LEVEL_FIELDS.get(kind, ()):
        if key in spec:
            _value(spec[key], levels, f"{where}.{key}", **qty)
    for key, bounds in _PROCESS_NUMBERS.get(kind, {}).items():
        if key in spec:
            V.number(f"{where}.{key}", spec[key], ScenarioError, **bounds)
    if kind == "step":
        at = V.numbers(f"{where}.at", spec["at"], ScenarioError, integer=True, ge=0, le=1e9, ascending="strict")
        if not isinstance(spec["values"], list):
            raise ScenarioError.at(f"{where}.values", "expected a list", spec["values"])
        for i, v in enumerate(spec["values"]):
            _value(v, levels, f"{where}.values[{i}]", **qty)
        if at[0] != 0 or len(at) != len(spec["values"]):
            raise ScenarioError.at(f"{where}.at", "must start at 0 and match 'values' in length", spec["at"])
    elif kind == "random_walk":
        lo, hi = (_value(spec[k], levels, where, **qty) for k in ("min", "max"))
        start = _value(spec["start"], levels, where, **qty)
        if not lo <= start <= hi:
            raise ScenarioError.at(where, "needs min <= start <= max", (spec["min"], spec["start"], spec["max"]))
    elif kind == "mobility":
        lo = V.number(f"{where}.min_m", spec.get("min_m", 1.0), ScenarioError, gt=0, le=1e6)
        if not spec["max_m"] > lo:
            raise ScenarioError.at(f"{where}.max_m", "must exceed min_m", spec["max_m"], f"> {lo:g}")
    elif kind in ("replay", "trace"):
        V.text(f"{where}.path", spec["path"], ScenarioError, empty=False, max_len=4096)
        V.text(f"{where}.column", spec.get("column", "mbps"), ScenarioError, empty=False, max_len=1000)
        for key in ("loop", "random_offset"):
            if not isinstance(spec.get(key, True), bool):
                raise ScenarioError.at(f"{where}.{key}", "expected true or false", spec[key])
        if "time_scale" in spec:
            V.number(f"{where}.time_scale", spec["time_scale"], ScenarioError, gt=0, le=1e6)
        if kind == "trace":  # read (and cache) the file now: a bad trace stops validation, not an episode
            found = _find_csv(spec, where, base)
            st = found.stat()
            _read_trace(str(found), str(spec.get("column", "mbps")), (st.st_mtime_ns, st.st_size),
                        tuple(sorted(qty.items())))


def _realise(spec: Mapping, n: int, rng: np.random.Generator, where: str, levels: Mapping[str, float],
             base: Path | None, bounds: Mapping[str, float] | None = None, step_s: float = 1.0) -> np.ndarray:
    kind = _check(where, spec, PROCESS_KINDS)
    ctx = ProcessContext(n, rng, where, levels, base, dict(bounds or {}), float(step_s))
    out = np.asarray(PROCESS_KINDS[kind].realise(spec, ctx), dtype=float)
    if out.shape != (n,):
        raise ScenarioError(f"{where}: kind {kind!r} returned shape {out.shape}, expected ({n},)")
    # whatever the kind (a plugin's included): finite values within the quantity's range, never NaN downstream
    return V.finite_array(where, out, ScenarioError, what="step value", **(bounds or {}))


def _constant_check(spec: Mapping, where: str) -> None:
    if len({"level", "value"} & set(spec)) != 1:
        raise ScenarioError(f"{where}: kind 'constant' needs exactly one of ['level', 'value']")


def _constant(spec: Mapping, ctx: ProcessContext) -> np.ndarray:
    return np.full(ctx.n, ctx.value(spec.get("level", spec.get("value"))))


def _step(spec: Mapping, ctx: ProcessContext) -> np.ndarray:
    at, vals = list(spec["at"]), [_value(v, ctx.levels, f"{ctx.where}.values") for v in spec["values"]]
    if len(at) != len(vals) or not at or at[0] != 0 or any(b <= a for a, b in zip(at, at[1:])):
        raise ScenarioError(f"{ctx.where}: 'at' must start at 0, ascend, and match 'values' in length")
    return np.asarray(vals)[np.searchsorted(at, ctx.t, side="right") - 1]


def _random_walk(spec: Mapping, ctx: ProcessContext) -> np.ndarray:
    n = ctx.n
    lo, hi = float(spec["min"]), float(spec["max"])
    x = np.empty(n)
    cur = ctx.value(spec["start"])
    steps = ctx.rng.normal(0.0, float(spec["step_std"]), size=n)
    for i in range(n):  # reflection at the bounds keeps the walk inside [lo, hi]
        x[i] = cur
        cur += steps[i]
        if cur > hi:
            cur = 2 * hi - cur
        if cur < lo:
            cur = 2 * lo - cur
        cur = min(max(cur, lo), hi)
    return x


def _periodic(spec: Mapping, ctx: ProcessContext) -> np.ndarray:
    mean = ctx.value(spec["mean"])
    phase = float(spec.get("phase_steps", 0))
    x = mean + float(spec["amplitude"]) * np.sin(2 * np.pi * (ctx.t + phase) / float(spec["period_steps"]))
    return x + ctx.rng.normal(0.0, float(spec.get("noise_std", 0.0)), size=ctx.n)


def _mobility(spec: Mapping, ctx: ProcessContext) -> np.ndarray:
    n, t = ctx.n, ctx.t
    lo, hi = float(spec.get("min_m", 1.0)), float(spec["max_m"])
    span = hi - lo
    travelled = float(spec["start_m"]) - lo + float(spec["speed_m_per_step"]) * t
    phase = np.mod(travelled, 2 * span)  # walk out to max_m and back (triangle wave)
    dist = lo + np.where(phase <= span, phase, 2 * span - phase)
    sigma, rho = float(spec.get("shadowing_std_db", 0.0)), float(spec.get("shadowing_corr", 0.0))
    eps = ctx.rng.normal(0.0, 1.0, size=n)
    shadow = np.empty(n)
    s = eps[0] * sigma
    for i in range(n):  # AR(1) keeps the marginal std at sigma
        shadow[i] = s
        s = rho * s + np.sqrt(1 - rho**2) * sigma * eps[(i + 1) % n]
    return float(spec["p0_dbm"]) - 10 * float(spec["path_loss_exponent"]) * np.log10(np.maximum(dist, 1e-3)) + shadow


def _find_csv(spec: Mapping, where: str, base: Path | None) -> Path:
    """A process's CSV: absolute, or relative to the scenario file, else to the repository (or data/)."""
    path = Path(V.text(f"{where}.path", spec["path"], ScenarioError, empty=False, max_len=4096))
    candidates = [path] if path.is_absolute() else [*(([base.parent / path]) if base else []), REPO_ROOT / path,
                                                    DATA_DIR / path]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ScenarioError.at(f"{where}.path", f"file not found (looked in {V.short([str(c) for c in candidates])})",
                               spec["path"])
    return found


def _replay(spec: Mapping, ctx: ProcessContext) -> np.ndarray:
    where, t = ctx.where, ctx.t
    found = _find_csv(spec, where, ctx.base)
    # cell by cell: a non-number, NaN/inf or out-of-range value names its line
    values = V.read_csv_column(found, spec["column"], ScenarioError, f"{where}: {found.name}", **ctx.bounds)
    if spec.get("loop", True):
        return values[t % len(values)]
    return values[np.minimum(t, len(values) - 1)]


@functools.lru_cache(maxsize=64)
def _read_trace(path: str, column: str, stamp: tuple[int, int], bounds: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(time_s, values) of a trace file, validated cell by cell; cached per file version (every reset realises it)."""
    where = f"trace {Path(path).name}"
    times = V.read_csv_column(path, "time_s", ScenarioError, where, ge=0, le=1e9)
    values = V.read_csv_column(path, column, ScenarioError, where, **dict(bounds))
    if len(times) != len(values):  # read_csv_column refuses ragged rows; kept as a guard
        raise ScenarioError(f"{where}: {len(times)} times but {len(values)} values; allowed: one value per row")
    if np.any(np.diff(times) <= 0):
        line = int(np.flatnonzero(np.diff(times) <= 0)[0]) + 3  # header is line 1, first row line 2
        raise ScenarioError(f"{where} line {line}: time_s does not increase; allowed: strictly ascending time_s")
    times.setflags(write=False), values.setflags(write=False)  # shared by every realisation (cached)
    return times, values


def _trace(spec: Mapping, ctx: ProcessContext) -> np.ndarray:
    found = _find_csv(spec, ctx.where, ctx.base)
    st = found.stat()
    times, values = _read_trace(str(found), str(spec.get("column", "mbps")), (st.st_mtime_ns, st.st_size),
                                tuple(sorted(ctx.bounds.items())))
    # the trace's period: its last sample lasts as long as the median spacing (1 s for the shipped files)
    period = float(times[-1] + (np.median(np.diff(times)) if len(times) > 1 else 1.0))
    offset = float(ctx.rng.uniform(0.0, period)) if spec.get("random_offset", True) else 0.0
    t = offset + ctx.t * ctx.step_s * float(spec.get("time_scale", 1.0))
    t = np.mod(t, period) if spec.get("loop", True) else np.minimum(t, times[-1])
    return values[np.searchsorted(times, t, side="right") - 1]


def _kind(fields: set, required: set, realise, check=None, cls=ProcessKind):
    return cls(frozenset(fields), frozenset(required), realise, check)


for _name, _entry in {
    "constant": _kind({"level", "value"}, set(), _constant, _constant_check),
    "step": _kind({"at", "values"}, {"at", "values"}, _step),
    "random_walk": _kind({"start", "step_std", "min", "max"}, {"start", "step_std", "min", "max"}, _random_walk),
    "periodic": _kind({"mean", "amplitude", "period_steps", "phase_steps", "noise_std"},
                      {"mean", "amplitude", "period_steps"}, _periodic),
    "mobility": _kind({"p0_dbm", "path_loss_exponent", "start_m", "speed_m_per_step", "min_m", "max_m",
                       "shadowing_std_db", "shadowing_corr"},
                      {"p0_dbm", "path_loss_exponent", "start_m", "speed_m_per_step", "max_m"}, _mobility),
    "replay": _kind({"path", "column", "loop"}, {"path", "column"}, _replay),
    "trace": _kind({"path", "column", "time_scale", "random_offset", "loop"}, {"path"}, _trace),
}.items():
    PROCESS_KINDS.register(_name, _entry)


def _interference(spec: Mapping, n: int, rng: np.random.Generator, model: InterferenceModel,
                  where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cpu, mem, gpu) load per step."""
    kind = _check(where, spec, INTERFERENCE_KINDS)
    loads = tuple(INTERFERENCE_KINDS[kind].realise(spec, InterferenceContext(n, rng, where, model)))
    if len(loads) not in (2, 3):
        raise ScenarioError(f"{where}: kind {kind!r} returned {len(loads)} arrays; allowed: (cpu, mem) or (cpu, mem, gpu)")
    cpu, mem, gpu = (np.asarray(x, dtype=float) for x in (loads if len(loads) == 3 else (*loads, np.zeros(n))))
    if cpu.shape != (n,) or mem.shape != (n,) or gpu.shape != (n,):
        raise ScenarioError(f"{where}: kind {kind!r} returned shapes {cpu.shape}, {mem.shape}, {gpu.shape}, "
                            f"expected ({n},)")
    # loads are fractions of capacity, whatever the kind (a plugin's included)
    return (V.finite_array(f"{where} (cpu load)", cpu, ScenarioError, ge=0, le=1, what="load"),
            V.finite_array(f"{where} (mem load)", mem, ScenarioError, ge=0, le=1, what="load"),
            V.finite_array(f"{where} (gpu load)", gpu, ScenarioError, ge=0, le=1, what="load"))


def _no_interference(spec: Mapping, ctx: InterferenceContext):
    return np.zeros(ctx.n), np.zeros(ctx.n), np.zeros(ctx.n)


def _heavy(app: str):
    def realise(spec: Mapping, ctx: InterferenceContext):
        k = float(spec.get("intensity", 1.0))
        if not 0 <= k <= 1:
            raise ScenarioError(f"{ctx.where}.intensity: {k!r}; allowed: a number in [0, 1]")
        c, m, g = ctx.app_loads(app)
        return np.full(ctx.n, c * k), np.full(ctx.n, m * k), np.full(ctx.n, g * k)

    return realise


def _constant_load(spec: Mapping, ctx: InterferenceContext):
    c, m, g = float(spec["cpu"]), float(spec["mem"]), float(spec.get("gpu", 0.0))
    if not (0 <= c <= 1 and 0 <= m <= 1 and 0 <= g <= 1):
        raise ScenarioError(f"{ctx.where}: cpu={c!r}, mem={m!r}, gpu={g!r}; allowed: loads in [0, 1]")
    return np.full(ctx.n, c), np.full(ctx.n, m), np.full(ctx.n, g)


def _bursty(spec: Mapping, ctx: InterferenceContext):
    n = ctx.n
    c, m, g = ctx.app_loads(spec["app"])
    p_on, p_off = float(spec["p_on"]), float(spec["p_off"])
    u = ctx.rng.random(n)
    on = np.empty(n, dtype=bool)
    state = bool(spec.get("start_on", False))
    for i in range(n):
        on[i] = state
        state = (u[i] >= p_off) if state else (u[i] < p_on)
    return np.where(on, c, 0.0), np.where(on, m, 0.0), np.where(on, g, 0.0)


def _app_mix(spec: Mapping, ctx: InterferenceContext):
    """Markov chain over named apps."""
    n = ctx.n
    names = list(spec["apps"])
    loads = np.array([ctx.app_loads(a) for a in names])
    w = np.asarray(spec.get("weights", [1.0] * len(names)), dtype=float)
    if len(w) != len(names):
        raise ScenarioError(f"{ctx.where}.weights: needs one weight per app ({len(names)}), got {len(w)}")
    stay = float(spec["stay_prob"])
    u, jump = ctx.rng.random(n), ctx.rng.choice(len(names), size=n, p=w / w.sum())
    idx = np.empty(n, dtype=int)
    cur = int(jump[0])
    for i in range(n):
        idx[i] = cur
        if u[i] >= stay:
            cur = int(jump[(i + 1) % n])
    return loads[idx, 0].copy(), loads[idx, 1].copy(), loads[idx, 2].copy()


for _name, _entry in {
    "none": _kind(set(), set(), _no_interference, cls=InterferenceKind),
    "cpu_heavy": _kind({"intensity"}, set(), _heavy("cpu_heavy"), cls=InterferenceKind),
    "memory_heavy": _kind({"intensity"}, set(), _heavy("memory_heavy"), cls=InterferenceKind),
    "gpu_heavy": _kind({"intensity"}, set(), _heavy("gpu_heavy"), cls=InterferenceKind),
    "constant": _kind({"cpu", "mem", "gpu"}, {"cpu", "mem"}, _constant_load, cls=InterferenceKind),
    "bursty": _kind({"app", "p_on", "p_off", "start_on"}, {"app", "p_on", "p_off"}, _bursty, cls=InterferenceKind),
    "app_mix": _kind({"apps", "stay_prob", "weights"}, {"apps", "stay_prob"}, _app_mix, cls=InterferenceKind),
}.items():
    INTERFERENCE_KINDS.register(_name, _entry)


# --------------------------------------------------------------------------- loading

def list_scenarios(directory: Path = SCENARIO_DIR) -> list[str]:
    """Names of the shipped scenarios (files starting with ``_`` hold shared constants)."""
    return sorted(p.stem for p in Path(directory).glob("*.yaml") if not p.name.startswith("_"))


def _workload_names() -> list[str]:
    from bench.world.workloads import WORKLOADS  # a plain dict; torch is imported lazily there

    return sorted(WORKLOADS)


def _app_names() -> list[str]:
    return sorted(load_interference_model().apps)


def _check_interference(where: str, spec: Mapping) -> None:
    """Validate an interference process's numbers and app names at load time."""
    kind = _check(where, spec, INTERFERENCE_KINDS)
    apps = _app_names() if kind in ("cpu_heavy", "memory_heavy", "bursty", "app_mix") else []
    unit = dict(ge=0, le=1)
    for key in ("intensity", "cpu", "mem", "p_on", "p_off", "stay_prob"):
        if key in spec:
            V.number(f"{where}.{key}", spec[key], ScenarioError, **unit)
    if "start_on" in spec and not isinstance(spec["start_on"], bool):
        raise ScenarioError.at(f"{where}.start_on", "expected true or false", spec["start_on"])
    if kind in ("cpu_heavy", "memory_heavy"):
        V.choice(where, kind, apps, ScenarioError, "app (in _model.yaml)")
    if kind == "bursty":
        V.choice(f"{where}.app", spec["app"], apps, ScenarioError, "app")
    if kind == "app_mix":
        names = spec["apps"]
        if not isinstance(names, list) or not names:
            raise ScenarioError.at(f"{where}.apps", "expected a non-empty list of app names", names)
        for i, a in enumerate(names):
            V.choice(f"{where}.apps[{i}]", a, apps, ScenarioError, "app")
        if "weights" in spec:
            w = V.numbers(f"{where}.weights", spec["weights"], ScenarioError, ge=0, le=1e9)
            if len(w) != len(names) or not w.sum() > 0:
                raise ScenarioError.at(f"{where}.weights", "needs one weight >= 0 per app, not all zero", spec["weights"])


_FAMILY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*(/[A-Za-z0-9][A-Za-z0-9_.+-]*)*")


def _family(where: str, value: Any) -> str:
    """A family name: parts of letters, digits, '_', '.', '+', '-' joined by '/' (signal/co-runner/DNN mix)."""
    text = V.text(where, value, ScenarioError, empty=False, max_len=200)
    if not _FAMILY_RE.fullmatch(text):
        raise ScenarioError.at(where, "not a family name", text,
                               "parts of letters, digits, '_', '.', '+', '-' joined by '/', e.g. wifi-static/none/mixed")
    return text


def scenario_from_dict(data: Mapping, where: str = "scenario", path: Path | None = None) -> Scenario:
    """Validate parsed YAML; an unknown or missing field raises naming it and the allowed fields.

    Every number is checked here (finite, in range: dBm in [-200, 50], loads and probabilities in
    [0, 1], QoS and inter-arrival times > 0, ...), every level, app and workload name against what
    exists, so a realised trace holds finite values only.
    """
    if not isinstance(data, Mapping):
        raise ScenarioError.at(where, "expected a mapping at the top level", data)
    unknown = sorted((k for k in data if k not in _TOP_FIELDS), key=str)
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {V.short(unknown)}; allowed fields: {sorted(_TOP_FIELDS)}")
    missing = sorted({"name", "steps", "interarrival_ms", "signal", "interference", "workload_mix"} - set(data))
    if missing:
        raise ScenarioError(f"{where}: missing field(s) {missing}; allowed fields: {sorted(_TOP_FIELDS)}")
    name = V.text(f"{where}.name", data["name"], ScenarioError, empty=False, max_len=200)
    for key in ("description", "source"):
        if key in data:
            V.text(f"{where}.{key}", data[key], ScenarioError)
    family = _family(f"{where}.family", data.get("family", name))
    steps = V.number(f"{where}.steps", data["steps"], ScenarioError, integer=True, ge=1, le=10_000_000)
    inter = V.number(f"{where}.interarrival_ms", data["interarrival_ms"], ScenarioError, gt=0, le=1e7)
    signal = data["signal"]
    if not isinstance(signal, Mapping):
        raise ScenarioError.at(f"{where}.signal", "expected a mapping radio -> process", signal, list(RADIOS))
    bad = sorted((r for r in signal if r not in RADIOS), key=str)
    if bad:
        raise ScenarioError(f"{where}.signal: unknown radio(s) {V.short(bad)}; allowed radios: {list(RADIOS)}")
    for radio, spec in signal.items():
        _check_process(f"{where}.signal.{radio}", spec, dict(load_link(radio).levels_dbm), SIGNAL_DBM, path)
    cap = data.get("bandwidth_cap_mbps")
    if cap is not None:
        _check_process(f"{where}.bandwidth_cap_mbps", cap, {}, CAP_MBPS, path)
    _check_interference(f"{where}.interference", data["interference"])
    mix = data["workload_mix"]
    if not isinstance(mix, list) or not mix:
        raise ScenarioError.at(f"{where}.workload_mix", "expected a non-empty list of requests", mix)
    for i, m in enumerate(mix):
        mw = f"{where}.workload_mix[{i}]"
        if not isinstance(m, Mapping):
            raise ScenarioError.at(mw, "expected a mapping", m, f"fields {sorted(_MIX_FIELDS)}")
        unknown = sorted((k for k in m if k not in _MIX_FIELDS), key=str)
        if unknown:
            raise ScenarioError(f"{mw}: unknown field(s) {V.short(unknown)}; allowed fields: {sorted(_MIX_FIELDS)}")
        missing = sorted({"workload", "qos_ms", "max_accuracy_loss"} - set(m))
        if missing:
            raise ScenarioError(f"{mw}: missing field(s) {missing}")
        V.choice(f"{mw}.workload", m["workload"], _workload_names(), ScenarioError, "workload")
        V.number(f"{mw}.qos_ms", m["qos_ms"], ScenarioError, gt=0, le=1e7)
        V.number(f"{mw}.weight", m.get("weight", 1.0), ScenarioError, gt=0, le=1e9)
        V.number(f"{mw}.max_accuracy_loss", m["max_accuracy_loss"], ScenarioError, ge=0, le=1)
    return Scenario(name=name, description=str(data.get("description", "")), steps=int(steps),
                    interarrival_ms=inter, signal=dict(signal), bandwidth_cap_mbps=cap,
                    interference=dict(data["interference"]), workload_mix=list(mix),
                    source=str(data.get("source", "")), path=path, family=family)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name or any scenario YAML by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ScenarioError.at("scenario", "unknown scenario", str(name_or_path), allowed_list(list_scenarios(), 100))
    data = V.read_yaml(path, ScenarioError, path.name)
    return scenario_from_dict(data, where=path.name, path=path)


def scenario_families(names: Sequence[str] | None = None) -> dict[str, str]:
    """Scenario name -> family, for the shipped scenarios (or ``names``)."""
    return {n: load_scenario(n).family for n in (list_scenarios() if names is None else names)}


def scenario_traces_frame(names: Sequence[str] | None = None, seed: int = 0, steps: int | None = None) -> pd.DataFrame:
    """Tidy (long) frame of each scenario's signal, cap and interference traces, for plotting.

    Columns: ``scenario, step, time_s, variable, value`` with variables
    ``wifi_dbm, lte_dbm, bandwidth_cap_mbps, cpu_load, mem_load, gpu_load``. Each scenario
    gets its own child of ``SeedSequence(seed)`` so adding a scenario changes no other.
    """
    names = list(names) if names is not None else list_scenarios()
    model = load_interference_model()
    frames = []
    for name in names:
        scen = load_scenario(name)
        # Seed per scenario name: the trace of one scenario does not depend on which others are listed.
        key = [seed, *name.encode()]
        wide = scen.trace(np.random.default_rng(np.random.SeedSequence(key)), steps, model).frame()
        value_cols = [f"{r}_dbm" for r in RADIOS] + ["bandwidth_cap_mbps", "cpu_load", "mem_load", "gpu_load"]
        frames.append(wide.melt(id_vars=["scenario", "step", "time_s"], value_vars=value_cols,
                                var_name="variable", value_name="value"))
    return pd.concat(frames, ignore_index=True)
