"""Device profiles: what a device offers and what running a DNN on it costs.

A profile (``data/profiles/<name>.yaml``) lists the device's execution targets
(``cpu``, ``gpu``, ``dsp`` on an edge device; the one accelerator of a peer or a
cloud server), the runtime each target stands for, their DVFS levels, and the
constants of a layer-aware analytical model. A DNN's work comes as operator-class
features (:mod:`bench.world.opclasses`): FLOPs ``F_c``, bytes ``B_c`` and kernel
launches ``K_c`` per class ``c`` in (conv, dwconv, matmul, attention, recurrent,
elementwise). At core clock ``f`` and memory clock ``f_mem`` (GHz):

* per class, a roofline: ``t_c = max(F_c / (gflops_per_ghz * eff_c * f),
  B_c * bytes_per_value / (mem_gbps_per_ghz * f_mem))`` (``eff_conv = 1``;
  ``bytes_per_value`` = 1, 1/2, 1/4 of fp32 for fp32, fp16, int8 targets);
* latency ``t = sum_c t_c + launch_ms * sum_(c != elementwise) K_c
  + launch_elementwise_ms * K_elementwise + fixed_ms`` (runtimes that fuse
  activations and normalisation into the preceding kernel pay little per
  elementwise op; unfused runtimes pay a full launch);
* power ``P(f, f_mem) = static_power_w + dynamic_power_w_at_max * (V(f)/V_max)^2 * (f/f_max)
  + mem_power_w_at_max * (f_mem/f_mem_max)`` (dynamic CMOS power ~ C V^2 f), with
  ``V(f)`` interpolated from the ``voltage_v`` table.

Without layer features (:meth:`Target.latency_ms` given FLOPs and bytes only) the
work is treated as one dense-conv class with no kernel count.

Every number in a profile file is a mapping ``{value: ..., source: ...}``; the
source names a datasheet, paper, measurement set or fit, or starts with
``assumed:`` and says why. :func:`load_profile` refuses a number without a
source. The shipped profiles are written by the calibration fit
(:mod:`bench.world.fit`) from the hand-made priors in ``data/profiles/priors/``
and the published measurements in ``data/calibration/``; a target's
``calibration`` block records how well it fits them. Where a profile carries
``measurements`` (from traces), those override the model for that
(workload, frequency).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

import bench.validate as V
from bench.errors import DataFileError, allowed_list
from bench.paths import PROFILES_DIR, REPO_ROOT

TARGET_KINDS = ("cpu", "gpu", "dsp")
PROFILE_KINDS = ("phone", "jetson", "peer", "cloud", "host")
PRECISIONS = ("fp32", "fp16", "int8")
#: Bytes per value relative to fp32: memory traffic of a target at its precision.
PRECISION_BYTES = {"fp32": 1.0, "fp16": 0.5, "int8": 0.25}
OP_CLASSES = ("conv", "dwconv", "matmul", "attention", "recurrent", "elementwise")
#: Throughput of each class relative to dense conv (``eff_conv`` is 1 by definition).
EFFICIENCY_KEYS = tuple(f"eff_{c}" for c in OP_CLASSES[1:])

# Sourced quantities of a target: name -> (required, is_list)
_TARGET_QUANTITIES: dict[str, tuple[bool, bool]] = {
    "freq_mhz": (True, True),
    "voltage_v": (True, True),
    "mem_freq_mhz": (True, True),
    "gflops_per_ghz": (True, False),
    "mem_gbps_per_ghz": (True, False),
    "fixed_ms": (True, False),
    "static_power_w": (True, False),
    "dynamic_power_w_at_max": (True, False),
    "mem_power_w_at_max": (False, False),
    "launch_ms": (False, False),
    "launch_elementwise_ms": (False, False),
    "peak_gflops_per_ghz": (False, False),
    "vmin_knee_mhz": (False, False),
    "launch_cpu_freq_mhz": (False, False),
    **{k: (False, False) for k in EFFICIENCY_KEYS},
}
#: Values of optional quantities a profile leaves out, and what that means.
_DEFAULTS = {
    "mem_power_w_at_max": (0.0, "not given: no memory power term"),
    "launch_ms": (0.0, "not given: no per-kernel launch cost (all overhead in fixed_ms)"),
    "launch_elementwise_ms": (math.nan, "not given: elementwise kernels cost launch_ms like the others"),
    "peak_gflops_per_ghz": (0.0, "not given: no peak throughput to bound the fitted classes"),
    "vmin_knee_mhz": (0.0, "not given: the two-value voltage table is linear from f_min (no Vmin plateau)"),
    "launch_cpu_freq_mhz": (0.0, "not given: launch and fixed costs do not depend on the host CPU clock"),
    **{k: (1.0, "not given: this class runs at the dense-conv rate") for k in EFFICIENCY_KEYS},
}
_TARGET_PLAIN = {"kind", "precision", "description", "measurements", "runtime", "calibration"}
_PROFILE_KEYS = {"name", "kind", "description", "idle_power_w", "radios", "targets", "notes"}
_MEASUREMENT_KEYS = {"workload", "freq_mhz", "mem_freq_mhz", "latency_ms", "power_w", "source"}


class ProfileError(DataFileError):
    """A profile file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class Sourced:
    """A number (or list of numbers) with where it came from."""

    value: Any
    source: str

    @property
    def assumed(self) -> bool:
        return self.source.strip().lower().startswith("assumed")


@dataclass(frozen=True)
class Work:
    """Operator-class work of one inference (or a fraction of it): FLOPs, fp32 bytes and kernels per class.

    Values are floats or numpy arrays that broadcast together (the simulator
    builds (workload x action) tables from them).
    """

    flops: Mapping[str, Any]
    bytes: Mapping[str, Any]
    kernels: Mapping[str, Any]

    @classmethod
    def from_features(cls, row: Mapping[str, Any]) -> "Work":
        """From a row of the op-class table (columns ``<class>_flops``, ``<class>_bytes``, ``<class>_kernels``)."""
        def col(c: str, f: str) -> Any:
            v = row[f"{c}_{f}"]
            return np.asarray(v, dtype=float) if not np.isscalar(v) else float(v)
        return cls({c: col(c, "flops") for c in OP_CLASSES}, {c: col(c, "bytes") for c in OP_CLASSES},
                   {c: col(c, "kernels") for c in OP_CLASSES})

    @classmethod
    def aggregate(cls, flops: Any, fp32_bytes: Any) -> "Work":
        """Work known only as total FLOPs and bytes: one dense-conv class, no kernel count."""
        zero = {c: 0.0 for c in OP_CLASSES}
        return cls({**zero, "conv": flops}, {**zero, "conv": fp32_bytes}, dict(zero))

    def scaled(self, k: Any) -> "Work":
        """This work times ``k`` (a share of the DNN; broadcasts)."""
        return Work({c: v * k for c, v in self.flops.items()}, {c: v * k for c, v in self.bytes.items()},
                    {c: v * k for c, v in self.kernels.items()})

    def total_flops(self) -> Any:
        return sum(self.flops[c] for c in OP_CLASSES)

    def total_bytes(self) -> Any:
        return sum(self.bytes[c] for c in OP_CLASSES)


@dataclass(frozen=True)
class Target:
    """One execution target of a device and its layer-aware latency/power model (module docstring)."""

    name: str
    kind: str
    precision: str
    freq_mhz: np.ndarray
    voltage_v: np.ndarray
    mem_freq_mhz: np.ndarray
    gflops_per_ghz: float
    mem_gbps_per_ghz: float
    fixed_ms: float
    static_power_w: float
    dynamic_power_w_at_max: float
    mem_power_w_at_max: float = 0.0
    launch_ms: float = 0.0
    launch_elementwise_ms: float = math.nan
    #: datasheet peak throughput (FLOP per cycle of freq_mhz at the target's precision); bounds the fit
    peak_gflops_per_ghz: float = 0.0  # 0: not given
    #: below this clock the rail sits at Vmin (voltage_v[0]); a two-value table rises linearly above it
    vmin_knee_mhz: float = 0.0
    #: host CPU clock at which launch/fixed costs hold (an accelerator's host-side dispatch); 0: not CPU-bound
    launch_cpu_freq_mhz: float = 0.0  # 0: not given
    eff_dwconv: float = 1.0
    eff_matmul: float = 1.0
    eff_attention: float = 1.0
    eff_recurrent: float = 1.0
    eff_elementwise: float = 1.0
    description: str = ""
    runtime: str = ""
    #: what the calibration fit reported for this target (written by bench.world.fit)
    calibration: Mapping[str, Any] = field(default_factory=dict)
    #: (workload, freq_mhz, mem_freq_mhz) -> (latency_ms, power_w, source)
    measurements: Mapping[tuple[str, float, float], tuple[float, float, str]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    def _freq(self, freq_mhz):
        return self.freq_mhz[-1] if freq_mhz is None else np.asarray(freq_mhz, dtype=float)

    def _mem(self, mem_freq_mhz):
        return self.mem_freq_mhz[-1] if mem_freq_mhz is None else np.asarray(mem_freq_mhz, dtype=float)

    def efficiency(self, op_class: str) -> float:
        """Throughput of ``op_class`` relative to dense conv."""
        return 1.0 if op_class == "conv" else float(getattr(self, f"eff_{op_class}"))

    def voltage(self, freq_mhz=None) -> np.ndarray:
        """V(f): the voltage table interpolated over frequency.

        A per-level table is used as given. Two values ``[v_min, v_max]``: the rail stays at
        ``v_min`` (Vmin) up to ``vmin_knee_mhz`` and rises linearly to ``v_max`` at f_max, so
        below the knee a lower clock saves only the f term of C V^2 f while the run gets longer
        (static power accrues): the lowest clock is not always the cheapest.
        """
        f = self._freq(freq_mhz)
        if len(self.voltage_v) == len(self.freq_mhz) and len(self.freq_mhz) != 2:
            return np.interp(f, self.freq_mhz, self.voltage_v)
        lo = max(float(self.freq_mhz[0]), min(float(self.vmin_knee_mhz), float(self.freq_mhz[-1])))
        if lo >= float(self.freq_mhz[-1]):  # one level, or the knee at the top: a flat rail
            return np.interp(f, [float(self.freq_mhz[-1])], [float(self.voltage_v[-1])])
        return np.interp(f, [lo, float(self.freq_mhz[-1])], [float(self.voltage_v[0]), float(self.voltage_v[-1])])

    def parts_ms(self, work: Work, freq_mhz=None, mem_freq_mhz=None, compute_scale=1.0,
                 memory_scale=1.0, cpu_freq_mhz=None) -> tuple[Any, Any, Any]:
        """(compute-bound ms, memory-bound ms, overhead ms) of ``work``; they add up to the latency.

        Each class's roofline time goes to the part that binds it. ``compute_scale`` /
        ``memory_scale`` multiply the compute throughput / bandwidth (a measured device
        with more or fewer units than the profile's; 1 for the profile itself).
        """
        f_ghz = self._freq(freq_mhz) / 1e3
        fm_ghz = self._mem(mem_freq_mhz) / 1e3
        per_byte = PRECISION_BYTES[self.precision]
        bw = self.mem_gbps_per_ghz * fm_ghz * 1e9 * memory_scale
        compute = memory = 0.0
        overhead = self.fixed_ms
        ew_launch = self.launch_ms if math.isnan(self.launch_elementwise_ms) else self.launch_elementwise_ms
        for c in OP_CLASSES:
            t_c = np.asarray(work.flops[c], dtype=float) / (self.gflops_per_ghz * self.efficiency(c) * f_ghz * 1e9
                                                           * compute_scale) * 1e3
            t_m = np.asarray(work.bytes[c], dtype=float) * per_byte / bw * 1e3
            bound = t_c >= t_m
            compute = compute + np.where(bound, t_c, 0.0)
            memory = memory + np.where(bound, 0.0, t_m)
            launch = ew_launch if c == "elementwise" else self.launch_ms
            overhead = overhead + launch * np.asarray(work.kernels[c], dtype=float)
        return compute, memory, overhead * self.host_cpu_factor(cpu_freq_mhz)

    def host_cpu_factor(self, cpu_freq_mhz=None) -> Any:
        """How much longer the host-side dispatch (launch and fixed costs) takes at ``cpu_freq_mhz``.

        An accelerator's kernels are enqueued by the CPU: at a lower CPU clock each launch takes
        longer, ``launch_cpu_freq_mhz / cpu_freq_mhz``. 1 when either is not given.
        """
        if cpu_freq_mhz is None or not self.launch_cpu_freq_mhz > 0:
            return 1.0
        return self.launch_cpu_freq_mhz / np.asarray(cpu_freq_mhz, dtype=float)

    def work_latency_ms(self, work: Work, freq_mhz=None, mem_freq_mhz=None, **scales) -> np.ndarray:
        """Modelled latency (ms) of ``work`` at the given levels (``cpu_freq_mhz``: host CPU clock); broadcasts."""
        c, m, o = self.parts_ms(work, freq_mhz, mem_freq_mhz, **scales)
        return c + m + o

    def latency_ms(self, flops, mem_bytes, freq_mhz=None, mem_freq_mhz=None) -> np.ndarray:
        """Modelled latency (ms) of ``flops`` of dense compute moving ``mem_bytes`` (already at this target's
        precision), when no layer features are known; broadcasts."""
        fp32 = np.asarray(mem_bytes, dtype=float) / PRECISION_BYTES[self.precision]
        return self.work_latency_ms(Work.aggregate(flops, fp32), freq_mhz, mem_freq_mhz)

    def power_w(self, freq_mhz=None, mem_freq_mhz=None) -> np.ndarray:
        """Modelled active power (W) at the given levels; broadcasts."""
        f = self._freq(freq_mhz)
        fm = self._mem(mem_freq_mhz)
        v_ratio = self.voltage(f) / self.voltage(self.freq_mhz[-1])
        dynamic = self.dynamic_power_w_at_max * v_ratio**2 * (f / self.freq_mhz[-1])
        memory = self.mem_power_w_at_max * (fm / self.mem_freq_mhz[-1])
        return self.static_power_w + dynamic + memory

    def estimate(self, workload: str, work: Work, freq_mhz=None, mem_freq_mhz=None,
                 cpu_freq_mhz=None) -> tuple[float, float, str]:
        """(latency_ms, power_w, source) for one workload: measured if the profile has it, else modelled."""
        f = float(self._freq(freq_mhz))
        fm = float(self._mem(mem_freq_mhz))
        hit = self.measurements.get((workload, f, fm))
        if hit is not None and cpu_freq_mhz is None:
            return hit
        return (float(self.work_latency_ms(work, f, fm, cpu_freq_mhz=cpu_freq_mhz)), float(self.power_w(f, fm)),
                "modeled")

    def cost(self, workload: str, flops, mem_bytes, freq_mhz=None, mem_freq_mhz=None) -> tuple[float, float, str]:
        """:meth:`estimate` for work known only as FLOPs and bytes (at this target's precision)."""
        fp32 = float(mem_bytes) / PRECISION_BYTES[self.precision]
        return self.estimate(workload, Work.aggregate(float(flops), fp32), freq_mhz, mem_freq_mhz)


@dataclass(frozen=True)
class DeviceProfile:
    """A device: its targets, radios and idle power (see module docstring)."""

    name: str
    kind: str
    description: str
    idle_power_w: float
    radios: tuple[str, ...]
    targets: Mapping[str, Target]
    path: Path | None = None
    idle_power_source: str = ""

    @property
    def primary_target(self) -> Target:
        """The first-listed target (a peer's or a cloud's accelerator)."""
        return next(iter(self.targets.values()))

    def default_freq_mhz(self, target: str) -> float:
        """The highest DVFS level of ``target`` (what a governor under load settles on)."""
        return float(self.targets[target].freq_mhz[-1])

    def summary(self) -> list[dict[str, Any]]:
        """One row per target: runtime, precision, levels and calibration quality (for printing)."""
        rows = []
        for t in self.targets.values():
            cal = t.calibration or {}
            rows.append({
                "profile": self.name, "target": t.name, "kind": t.kind, "precision": t.precision,
                "runtime": t.runtime or "-", "n_levels": len(t.freq_mhz), "freq_mhz": _fmt_levels(t.freq_mhz),
                "mem_freq_mhz": _fmt_levels(t.mem_freq_mhz),
                "sourced_points": int(cal.get("n_points", 0)),
                "fit_median_err": _fmt_pct(cal.get("in_sample_median_abs_err")),
                "loo_median_err": _fmt_pct(cal.get("loo_median_abs_err")),
                "measured_points": len(t.measurements),
            })
        return rows


def _fmt_pct(x: Any) -> str:
    return "-" if x is None or not np.isfinite(float(x)) else f"{100 * float(x):.1f}%"


def _fmt_levels(levels: np.ndarray) -> str:
    vals = [f"{x:g}" for x in levels]
    return ", ".join(vals) if len(vals) <= 6 else f"{vals[0]} .. {vals[-1]} ({len(vals)} levels)"


# --------------------------------------------------------------------------- loading

def list_profiles(directory: Path = PROFILES_DIR) -> list[str]:
    """Names of the shipped reference profiles."""
    return sorted(p.stem for p in Path(directory).glob("*.yaml"))


def is_profile_path(name_or_path: str | Path) -> bool:
    """True when ``name_or_path`` names a YAML file (a profile outside ``data/profiles``)."""
    return Path(name_or_path).suffix in (".yaml", ".yml")


def resolve_profile(name_or_path: str | Path) -> Path:
    """The file of a shipped profile name, or of a profile path.

    A relative path is tried against the working directory, then the repository root,
    so ``results/profile/host_profile.yaml`` (written by the ``profile`` stage) works from
    the repo root (DVC), from ``notebooks/`` (papermill) and from the tests alike.
    """
    return _resolve(name_or_path)


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if is_profile_path(path):
        for candidate in ([path] if path.is_absolute() else [path, REPO_ROOT / path]):
            if candidate.is_file():
                return candidate
        raise ProfileError(f"device profile file {str(name_or_path)!r} not found (looked in the working directory "
                           f"and {REPO_ROOT}); shipped profiles: {list_profiles()}")
    candidate = PROFILES_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise ProfileError(f"no device profile {str(name_or_path)!r}; shipped profiles: {list_profiles()} "
                       f"(or give the path of a profile YAML file)")


#: Limits of a sourced quantity (by field name); any other is a finite number in [0, 1e9].
#: Frequencies and voltages must be > 0: the model divides by f_max and V_max.
_QUANTITY_LIMITS: dict[str, dict[str, float]] = {
    "freq_mhz": dict(gt=0, le=1e5), "mem_freq_mhz": dict(gt=0, le=1e5), "voltage_v": dict(gt=0, le=10),
    "gflops_per_ghz": dict(gt=0, le=1e9), "mem_gbps_per_ghz": dict(gt=0, le=1e9),
    "peak_gflops_per_ghz": dict(gt=0, le=1e9), "vmin_knee_mhz": dict(ge=0, le=1e5),
    "launch_cpu_freq_mhz": dict(gt=0, le=1e5),
}
_DEFAULT_LIMITS = dict(ge=0, le=1e9)
#: The only NaN a profile may hold is a scalar whose source starts with this (see bench.world.fit).
NOT_MEASURED = "not measured"


def _sourced(where: str, raw: Any, is_list: bool) -> Sourced:
    if not isinstance(raw, Mapping) or set(raw) != {"value", "source"}:
        raise ProfileError.at(where, "expected a mapping {value: ..., source: ...} (every number says where it "
                              "came from, or 'assumed: why')", raw)
    source = raw["source"]
    if not isinstance(source, str) or not source.strip():
        raise ProfileError.at(f"{where}.source", "must be a non-empty string", source)
    value = raw["value"]
    bounds = _QUANTITY_LIMITS.get(where.rsplit(".", 1)[-1], _DEFAULT_LIMITS)
    if is_list:
        # frequency levels strictly ascend; other tables (voltages) never decrease
        V.numbers(f"{where}.value", value, ProfileError, max_len=10_000,
                  ascending="strict" if where.endswith("freq_mhz") else "weak", **bounds)
        value = [float(v) for v in value]
    elif (isinstance(value, float) and value != value
          and source.strip().lower().startswith(NOT_MEASURED)):
        pass  # a quantity declared unmeasurable (a host without an energy meter) stays NaN, never invented
    else:
        value = V.number(f"{where}.value", value, ProfileError, **bounds)
    return Sourced(value, source.strip())


def _check_keys(where: str, data: Mapping, allowed: set[str]) -> None:
    unknown = sorted((k for k in data if k not in allowed), key=str)
    if unknown:
        raise ProfileError(f"{where}: unknown field(s) {V.short(unknown)}; allowed: {sorted(allowed)}")


def _target(where: str, name: str, raw: Mapping) -> Target:
    if not isinstance(raw, Mapping):
        raise ProfileError.at(where, "expected a mapping", raw)
    _check_keys(where, raw, set(_TARGET_QUANTITIES) | _TARGET_PLAIN)
    kind = V.choice(f"{where}.kind", raw.get("kind"), TARGET_KINDS, ProfileError, "target kind")
    precision = V.choice(f"{where}.precision", raw.get("precision", "fp32"), PRECISIONS, ProfileError, "precision")
    if "description" in raw:
        V.text(f"{where}.description", raw["description"], ProfileError)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, (required, is_list) in _TARGET_QUANTITIES.items():
        if key not in raw:
            if required:
                raise ProfileError(f"{where}: missing field {key!r}")
            values[key], sources[key] = _DEFAULTS[key]
            continue
        q = _sourced(f"{where}.{key}", raw[key], is_list)
        values[key] = np.asarray(q.value, dtype=float) if is_list else float(q.value)
        sources[key] = q.source
    volts = values["voltage_v"]
    if len(volts) not in (2, len(values["freq_mhz"])):
        raise ProfileError(f"{where}.voltage_v: give 2 values (V at f_min, V at f_max) or one per frequency level")
    for key in ("gflops_per_ghz", "mem_gbps_per_ghz", *EFFICIENCY_KEYS):
        if values[key] <= 0:
            raise ProfileError(f"{where}.{key}: must be > 0")
    for key in ("runtime", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise ProfileError(f"{where}.{key}: expected a string, got {raw[key]!r}")
    calibration = raw.get("calibration") or {}
    if not isinstance(calibration, Mapping):
        raise ProfileError(f"{where}.calibration: expected a mapping, got {calibration!r}")
    for key, value in calibration.items():  # the fit's report: counts and relative errors, never NaN/inf
        if key in ("n_points", "n_sources"):
            V.number(f"{where}.calibration.{key}", value, ProfileError, ge=0, le=1e6, integer=True)
        elif str(key).endswith("_err") and not (isinstance(value, float) and math.isnan(value)):
            # NaN: not computable (e.g. leave-one-out with a single point); anything else a finite error
            V.number(f"{where}.calibration.{key}", value, ProfileError, ge=0, le=1e6)
        elif key in ("sources", "models", "skipped"):  # lists of names and addresses
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ProfileError.at(f"{where}.calibration.{key}", "expected a list of strings", value)
        elif key in ("runtime", "data") and not isinstance(value, str):
            raise ProfileError.at(f"{where}.calibration.{key}", "expected a string", value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isfinite(value):
            # any other entry is free-form (a note, a future count) but a number in the report is a finite one
            raise ProfileError.at(f"{where}.calibration.{key}", "expected a finite number", value)
    measurements = {}
    raw_meas = raw.get("measurements") or []
    if not isinstance(raw_meas, list):
        raise ProfileError.at(f"{where}.measurements", "expected a list of measured points", raw_meas)
    for i, m in enumerate(raw_meas):
        mw = f"{where}.measurements[{i}]"
        if not isinstance(m, Mapping):
            raise ProfileError.at(mw, "expected a mapping", m, allowed_list(sorted(_MEASUREMENT_KEYS)))
        _check_keys(mw, m, _MEASUREMENT_KEYS)
        missing = _MEASUREMENT_KEYS - set(m) - {"power_w", "mem_freq_mhz"}
        if missing:
            raise ProfileError(f"{mw}: missing field(s) {sorted(missing)}")
        workload = V.choice(f"{mw}.workload", m["workload"], _workload_names(), ProfileError, "workload")
        f = V.number(f"{mw}.freq_mhz", m["freq_mhz"], ProfileError, **_QUANTITY_LIMITS["freq_mhz"])
        fm = V.number(f"{mw}.mem_freq_mhz", m.get("mem_freq_mhz", values["mem_freq_mhz"][-1]), ProfileError,
                      **_QUANTITY_LIMITS["mem_freq_mhz"])
        latency = V.number(f"{mw}.latency_ms", m["latency_ms"], ProfileError, gt=0, le=1e9)
        power = m.get("power_w")  # absent: latency-only meter (NaN power, never a made-up number)
        power = float("nan") if power is None else V.number(f"{mw}.power_w", power, ProfileError, ge=0, le=1e6)
        source = V.text(f"{mw}.source", m["source"], ProfileError, empty=False)
        measurements[(workload, f, fm)] = (latency, power, source)
    return Target(name=name, kind=kind, precision=precision, description=str(raw.get("description", "")),
                  runtime=str(raw.get("runtime", "")), calibration=dict(calibration),
                  measurements=measurements, sources=sources, **values)


def _workload_names() -> list[str]:
    from bench.world.workloads import WORKLOADS  # a plain dict; torch is imported lazily there

    return sorted(WORKLOADS)


def profile_from_dict(data: Mapping, where: str = "profile") -> DeviceProfile:
    """Validate and build a profile from parsed YAML (see :func:`load_profile`).

    Every number is finite and in range (frequencies and voltages > 0), every name
    (target kind, precision, radio, measured workload) one that exists.
    """
    from bench.world.network import list_links

    if not isinstance(data, Mapping):
        raise ProfileError.at(where, "expected a mapping at the top level", data)
    _check_keys(where, data, _PROFILE_KEYS)
    for key in ("name", "kind", "targets", "idle_power_w"):
        if key not in data:
            raise ProfileError(f"{where}: missing field {key!r}")
    V.text(f"{where}.name", data["name"], ProfileError, empty=False, max_len=200)
    for key in ("description", "notes"):
        if key in data and not isinstance(data[key], (str, list)):
            raise ProfileError.at(f"{where}.{key}", "expected text", data[key])
    V.choice(f"{where}.kind", data["kind"], PROFILE_KINDS, ProfileError, "profile kind")
    if not isinstance(data["targets"], Mapping) or not data["targets"]:
        raise ProfileError.at(f"{where}.targets", "expected a non-empty mapping of target name -> target",
                              data["targets"])
    idle = _sourced(f"{where}.idle_power_w", data["idle_power_w"], False)
    for name in data["targets"]:
        if not isinstance(name, str) or not name:
            raise ProfileError.at(f"{where}.targets", "target names must be non-empty strings", name)
    targets = {name: _target(f"{where}.targets.{name}", name, raw) for name, raw in data["targets"].items()}
    radios = data.get("radios") or []
    if not isinstance(radios, list):
        raise ProfileError.at(f"{where}.radios", "expected a list of network model names", radios,
                              allowed_list(list_links()))
    for i, r in enumerate(radios):
        V.choice(f"{where}.radios[{i}]", r, list_links(), ProfileError, "radio (data/network)")
    return DeviceProfile(name=str(data["name"]), kind=data["kind"], description=str(data.get("description", "")),
                         idle_power_w=float(idle.value), idle_power_source=idle.source,
                         radios=tuple(radios), targets=targets)


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a shipped profile by name (``phone_sd845``) or any profile YAML by path."""
    path = _resolve(name_or_path)
    data = V.read_yaml(path, ProfileError, path.name)
    prof = profile_from_dict(data, where=path.name)
    return dataclasses.replace(prof, path=path)


def profile_to_dict(profile: DeviceProfile) -> dict[str, Any]:
    """The inverse of :func:`profile_from_dict` (for writing fitted profiles)."""
    targets = {}
    for t in profile.targets.values():
        entry: dict[str, Any] = {"kind": t.kind, "precision": t.precision}
        if t.description:
            entry["description"] = t.description
        if t.runtime:
            entry["runtime"] = t.runtime
        for key, (_, is_list) in _TARGET_QUANTITIES.items():
            if key in _DEFAULTS and t.sources.get(key, _DEFAULTS[key][1]) == _DEFAULTS[key][1]:
                continue  # an optional quantity left at its default stays out of the file
            val = getattr(t, key)
            entry[key] = {"value": [float(v) for v in val] if is_list else float(val), "source": t.sources[key]}
        if t.measurements:
            entry["measurements"] = [
                {"workload": w, "freq_mhz": f, "mem_freq_mhz": fm, "latency_ms": lat,
                 **({} if np.isnan(p) else {"power_w": p}), "source": src}
                for (w, f, fm), (lat, p, src) in sorted(t.measurements.items())
            ]
        if t.calibration:
            entry["calibration"] = _plain(t.calibration)
        targets[t.name] = entry
    return {
        "name": profile.name, "kind": profile.kind, "description": profile.description,
        "idle_power_w": {"value": profile.idle_power_w, "source": profile.idle_power_source},
        "radios": list(profile.radios), "targets": targets,
    }


def _plain(obj: Any) -> Any:
    """YAML-safe copy: numpy scalars to Python numbers, tuples to lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def unsourced_numbers(profile: DeviceProfile) -> list[str]:
    """Fields whose source is empty (always [] for a loaded profile; used by tests and checks)."""
    missing = [] if profile.idle_power_source else ["idle_power_w"]
    for t in profile.targets.values():
        missing += [f"{t.name}.{k}" for k, s in t.sources.items() if not s]
    return missing


def unmeasured_numbers(profile: DeviceProfile) -> list[str]:
    """Fields the simulator needs that are NaN (e.g. a host profile fitted without an energy meter:
    its power and idle power are "not measured"). A profile with any cannot be trained or evaluated on."""
    missing = [] if np.isfinite(profile.idle_power_w) else ["idle_power_w"]
    for t in profile.targets.values():
        for key, (required, _) in _TARGET_QUANTITIES.items():
            if key in _DEFAULTS and t.sources.get(key) == _DEFAULTS[key][1]:
                continue  # left at its default (launch_elementwise_ms NaN means "as launch_ms")
            if (required or key in t.sources) and not np.all(np.isfinite(np.asarray(getattr(t, key), dtype=float))):
                missing.append(f"targets.{t.name}.{key}")
    return missing
