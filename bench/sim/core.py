"""The simulator's front door: tables, states, draws, outcomes and :class:`Simulator`.

The physics of one request lives once, in :mod:`bench.sim.kernel`
(:func:`~bench.sim.kernel.request_physics`; its module docstring states the
world model: one inference at a time per local target, one transmitter per
radio, a FIFO queue per server route, PHY rate vs goodput, radio power drawn
once, timeouts). This module holds what is around it:

* :class:`ActionTables` - per (workload, action) constants, built by
  :mod:`bench.sim.system`; the simulator turns them into the kernel's public
  :class:`~bench.sim.kernel.KernelTables` (``Simulator.kernel``);
* :class:`States` - a batch of requests and the state each meets (queues, radio,
  thermal: ``local_free_ms``, ``tx_free_ms``, ``radio_idle_ms``, ``server_free_ms``,
  ``throttled``; default: all empty, idle and cool), :class:`Draws` - their common
  random numbers (one draw per request, shared by every action, so all actions
  are compared under the same realisation);
* :class:`Simulator` - thin views over the kernel: :meth:`~Simulator.evaluate`
  (independent rows, one action each or every action),
  :meth:`~Simulator.run_sequence` (action sequences with the state carried),
  :meth:`~Simulator.rollout` (many episodes in lock-step),
  :meth:`~Simulator.evaluate_from` / :meth:`~Simulator.advance` (every action of
  one request from a carried state, then the state after the chosen one: what a
  search over schedules needs), the per-request :meth:`~Simulator.oracle` and
  :meth:`~Simulator.best_static`;
* :class:`EnergyLedger` - the episode's one energy accounting (above-idle
  energy per request + the idle baseline over the episode).

Energy of the cloud or peer is reported separately (``remote_energy_mj``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from bench.errors import DataFileError
from bench.paths import DATA_DIR
from bench.validate import read_yaml
from bench.sim.kernel import PHASES  # noqa: F401  (re-exported: the ledger's phase names)
from bench.sim.kernel import (EPISODE_KEYS, OUTCOME_FIELDS, Carry, RequestInputs, advance, gather_route,
                              gather_state, kernel_tables, request_physics, run_episodes, step_rows)
from bench.world.network import LinkModel
from bench.world.scenarios import InterferenceModel, ScenarioTrace

SIM_MODEL_FILE = DATA_DIR / "sim" / "model.yaml"
ON_TIMEOUT = ("local", "drop")
APP_CLASSES = ("vision", "text")


class SimModelError(DataFileError):
    """``data/sim/model.yaml`` is malformed; the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class SimConstants:
    """The simulator's own constants (``data/sim/model.yaml``), each with its source."""

    local_jitter_sigma: float
    remote_jitter_sigma: float
    offload_timeout_ms: Mapping[str, float]
    on_timeout: str
    fallback_target: str
    vision_upload_bits_per_value: float
    sources: Mapping[str, str] = field(default_factory=dict)


def load_sim_constants(path: str | Path = SIM_MODEL_FILE) -> SimConstants:
    """Read and check ``data/sim/model.yaml``."""
    where = Path(path).name
    data = read_yaml(path, SimModelError)
    keys = ("local_jitter_sigma", "remote_jitter_sigma", "offload_timeout_ms", "on_timeout", "fallback_target",
            "vision_upload_bits_per_value")
    if not isinstance(data, Mapping):
        raise SimModelError(f"{where}: expected a mapping of {list(keys)}")
    unknown, missing = sorted(set(data) - set(keys)), sorted(set(keys) - set(data))
    if unknown or missing:
        raise SimModelError(f"{where}: unknown {unknown} / missing {missing} key(s); allowed: {list(keys)}")
    values, sources = {}, {}
    for k in keys:
        entry = data[k]
        if not isinstance(entry, Mapping) or set(entry) != {"value", "source"} or not str(entry["source"]).strip():
            raise SimModelError(f"{where}.{k}: expected {{value, source}} with a non-empty source, got {entry!r}")
        values[k], sources[k] = entry["value"], str(entry["source"])
    for k in ("local_jitter_sigma", "remote_jitter_sigma", "vision_upload_bits_per_value"):
        if not isinstance(values[k], (int, float)) or isinstance(values[k], bool) or values[k] < 0:
            raise SimModelError(f"{where}.{k}: {values[k]!r}; allowed: a number >= 0")
        values[k] = float(values[k])
    t = values["offload_timeout_ms"]
    if not isinstance(t, Mapping) or set(t) != set(APP_CLASSES) or any(
            not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in t.values()):
        raise SimModelError(f"{where}.offload_timeout_ms: {t!r}; allowed: a mapping {list(APP_CLASSES)} -> ms > 0")
    values["offload_timeout_ms"] = {str(k): float(v) for k, v in t.items()}
    if values["on_timeout"] not in ON_TIMEOUT:
        raise SimModelError(f"{where}.on_timeout: {values['on_timeout']!r}; allowed: {list(ON_TIMEOUT)}")
    values["fallback_target"] = str(values["fallback_target"])
    return SimConstants(sources=sources, **values)


THERMAL_FILE = DATA_DIR / "sim" / "thermal.yaml"


@dataclass(frozen=True)
class ThermalModel:
    """First-order thermal throttling (``data/sim/thermal.yaml``, see its header)."""

    time_constant_s: float
    trip_power_w: float
    release_fraction: float
    cap_fraction: float

    def step(self, heat_w: float, throttled: bool, power_w: float, dt_ms: float) -> tuple[float, bool]:
        """The heat state and throttle flag after ``dt_ms`` at average local power ``power_w``."""
        k = float(np.exp(-dt_ms / (self.time_constant_s * 1e3)))
        heat = heat_w * k + power_w * (1.0 - k)
        if throttled:
            return heat, heat >= self.release_fraction * self.trip_power_w
        return heat, heat > self.trip_power_w


def load_thermal_model(kind: str, path: str | Path = THERMAL_FILE) -> ThermalModel | None:
    """The thermal model of a profile kind (``phone``, ``jetson``); None if the file has none for it."""
    where = Path(path).name
    data = read_yaml(path, SimModelError) or {}
    if kind not in data:
        return None
    keys = ("time_constant_s", "trip_power_w", "release_fraction", "cap_fraction")
    entry = data[kind]
    if not isinstance(entry, Mapping) or set(entry) != set(keys):
        raise SimModelError(f"{where}.{kind}: keys {sorted(entry) if isinstance(entry, Mapping) else entry!r}; "
                            f"allowed (all required): {list(keys)}")
    vals = {}
    for k in keys:
        e = entry[k]
        if not isinstance(e, Mapping) or set(e) != {"value", "source"} or not str(e["source"]).strip():
            raise SimModelError(f"{where}.{kind}.{k}: expected {{value, source}} with a non-empty source, got {e!r}")
        v = e["value"]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 or (k.endswith("fraction") and v > 1):
            raise SimModelError(f"{where}.{kind}.{k}: {v!r}; allowed: a number > 0 (fractions <= 1)")
        vals[k] = float(v)
    return ThermalModel(**vals)


@dataclass(frozen=True)
class Route:
    """An offload destination reached over one radio."""

    name: str  # e.g. cloud_wifi, peer
    radio: int  # index into Simulator.links
    rtt_ms: float


@dataclass(frozen=True)
class ActionTables:
    """Per (workload, action) constants, each ``(W, A)`` unless noted.

    ``*_ms`` local times at no interference; ``*_cpu_ms`` / ``*_mem_ms`` / ``*_gpu_ms``
    the parts that CPU / memory / GPU contention stretch (the CPU-sensitive part
    already multiplied by the target's coupling). ``timeout_ms`` (W,) is the
    offload timeout of the workload's app class; ``fallback`` (A,) the local action
    a timed-out offload runs instead (-1: none). ``runs_on`` (W, A) str: the local
    target that runs the request (whose queue it joins; "" for none), where it can
    differ from the action's ``target`` (a DNN without an INT8 model sent to the DSP
    runs as a float graph on the GPU: :mod:`bench.world.float_path`); default: the
    action's ``target`` (:func:`bench.sim.kernel.local_resources`).
    """

    workloads: tuple[str, ...]
    actions: pd.DataFrame  # one row per action (A rows), for people and policies
    pre_ms: np.ndarray
    pre_cpu_ms: np.ndarray
    pre_mem_ms: np.ndarray
    par_ms: np.ndarray
    par_cpu_ms: np.ndarray
    par_mem_ms: np.ndarray
    local_power_w: np.ndarray
    offloads: np.ndarray  # bool (W, A)
    route: np.ndarray  # int (A,), -1 for none
    up_bits: np.ndarray
    down_bits: np.ndarray
    remote_ms: np.ndarray
    remote_power_w: np.ndarray
    accuracy: np.ndarray  # fraction in [0, 1]; NaN where the workload has no published accuracy
    accuracy_loss: np.ndarray  # fraction (0.01 = one percentage point)
    pre_gpu_ms: np.ndarray | None = None  # default: zeros
    par_gpu_ms: np.ndarray | None = None
    timeout_ms: np.ndarray | None = None  # (W,), default: no timeout (inf)
    fallback: np.ndarray | None = None  # (A,), default: -1 (a timed-out request is dropped)
    throttle_to: np.ndarray | None = None  # (A,), the action run instead while thermally throttled; default: itself
    runs_on: np.ndarray | None = None  # (W, A) str, the local target that runs (and queues) it; default: the action's

    def __post_init__(self):
        shape = self.pre_ms.shape
        for name in ("pre_gpu_ms", "par_gpu_ms"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(shape))
        if self.timeout_ms is None:
            object.__setattr__(self, "timeout_ms", np.full(shape[0], np.inf))
        if self.fallback is None:
            object.__setattr__(self, "fallback", np.full(shape[1], -1, dtype=np.int64))
        if self.throttle_to is None:
            object.__setattr__(self, "throttle_to", np.arange(shape[1], dtype=np.int64))

    @property
    def n_actions(self) -> int:
        return len(self.route)

    def workload_index(self, names) -> np.ndarray:
        lookup = {w: i for i, w in enumerate(self.workloads)}
        try:
            return np.array([lookup[n] for n in np.asarray(names).ravel()], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"workload {exc.args[0]!r} is not in the simulator's table; known: {list(self.workloads)}") from None


@dataclass(frozen=True)
class States:
    """A batch of N request states.

    ``radio_idle_ms`` (N, R): how long each radio has carried no traffic when the
    request arrives (``inf``: idle since the episode began, so a promotion is due;
    negative: an earlier transfer is still running).
    The env carries it across steps; ``None`` means every radio idle.
    ``gpu_load`` (N,): a GPU-bound co-runner's share of the GPU (``None``: 0).
    """

    workload: np.ndarray  # int (N,)
    signal_dbm: np.ndarray  # (N, R), one column per Simulator.links
    cap_mbps: np.ndarray  # (N,), inf when uncapped
    cpu_load: np.ndarray
    mem_load: np.ndarray
    qos_ms: np.ndarray
    max_accuracy_loss: np.ndarray
    interarrival_ms: np.ndarray
    radio_idle_ms: np.ndarray | None = None
    gpu_load: np.ndarray | None = None
    throttled: np.ndarray | None = None  # (N,) bool: thermal throttling caps the top DVFS levels
    local_free_ms: np.ndarray | None = None  # (N, L): when each local resource is free (<= 0: free); None: all free
    tx_free_ms: np.ndarray | None = None  # (N, R): when each radio's transmitter is free
    server_free_ms: np.ndarray | None = None  # (N, Q): when each route's server queue is free

    def __post_init__(self):
        n = len(self.workload)
        r = np.shape(self.signal_dbm)[1] if np.ndim(self.signal_dbm) == 2 else 1
        for name, width in (("local_free_ms", 1), ("tx_free_ms", r), ("server_free_ms", 1)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros((n, width)))
        if self.throttled is None:
            object.__setattr__(self, "throttled", np.zeros(n, dtype=bool))
        if self.radio_idle_ms is None:
            object.__setattr__(self, "radio_idle_ms", np.full(np.shape(self.signal_dbm), np.inf))
        if self.gpu_load is None:
            object.__setattr__(self, "gpu_load", np.zeros(n))

    def __len__(self) -> int:
        return len(self.workload)

    def take(self, idx) -> "States":
        return States(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def with_carry(self, carry: Carry) -> "States":
        """These states meeting ``carry``'s queue, radio and thermal state (one carry row per state)."""
        return States(**{**{f.name: getattr(self, f.name) for f in fields(self)},
                         "local_free_ms": carry.local_free, "tx_free_ms": carry.tx_free,
                         "radio_idle_ms": carry.radio_idle, "server_free_ms": carry.server_free,
                         "throttled": carry.throttled})


@dataclass(frozen=True)
class Draws:
    """Common random numbers for N requests (one realisation shared by all actions)."""

    up_factor: np.ndarray  # (N, R) multiplicative throughput noise
    down_factor: np.ndarray  # (N, R)
    rtt_factor: np.ndarray  # (N, R)
    loss_u: np.ndarray  # (N, R) uniform: a retransmission timeout happens when < loss probability
    local_factor: np.ndarray  # (N,) local latency jitter
    remote_factor: np.ndarray  # (N,) remote latency jitter

    def take(self, idx) -> "Draws":
        return Draws(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def neutral(n: int, n_radios: int) -> "Draws":
        """No variance: every factor 1 and no retransmission timeout (for sanity checks)."""
        one = np.ones((n, n_radios))
        return Draws(one, one, one, np.ones((n, n_radios)), np.ones(n), np.ones(n))


@dataclass
class Outcome:
    """Per (request, action) results; arrays shaped like the action batch.

    ``energy_mj`` is the device energy attributed to the request above the device's
    idle baseline (what every policy minimises); ``tail_mj`` and ``promo_mj`` are
    its radio tail (net of the credit for a tail it cut short) and promotion parts.
    ``phases`` holds the timing of each phase (:data:`PHASES`) for the ledger.
    """

    energy_mj: np.ndarray  # device (mobile / edge) energy above idle
    remote_energy_mj: np.ndarray  # cloud or peer energy, reported separately
    latency_ms: np.ndarray
    accuracy: np.ndarray
    accuracy_loss: np.ndarray
    qos_ok: np.ndarray  # latency <= QoS target and accuracy loss <= bound (and no timeout)
    violation: np.ndarray  # 0 when qos_ok; relative latency excess + relative accuracy excess
    tail_mj: np.ndarray | None = None
    promo_mj: np.ndarray | None = None
    timed_out: np.ndarray | None = None
    phases: dict[str, np.ndarray] | None = None

    def take(self, idx) -> "Outcome":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = None if v is None else ({k: x[idx] for k, x in v.items()} if isinstance(v, dict) else v[idx])
        return Outcome(**kw)


class Simulator:
    """Evaluates batches of (state, action) pairs; see the module docstring."""

    def __init__(self, tables: ActionTables, links: Sequence[LinkModel], routes: Sequence[Route],
                 interference: InterferenceModel, idle_power_w: float,
                 local_jitter_sigma: float | None = None, remote_jitter_sigma: float | None = None,
                 on_timeout: str | None = None, constants: SimConstants | None = None,
                 thermal: ThermalModel | None = None):
        self.constants = constants or load_sim_constants()
        self.thermal = thermal
        self.tables = tables
        self.links = list(links)
        self.routes = list(routes)
        self.interference = interference
        self.idle_power_w = float(idle_power_w)
        c = self.constants
        self.local_jitter_sigma = float(c.local_jitter_sigma if local_jitter_sigma is None else local_jitter_sigma)
        self.remote_jitter_sigma = float(c.remote_jitter_sigma if remote_jitter_sigma is None else remote_jitter_sigma)
        self.on_timeout = str(c.on_timeout if on_timeout is None else on_timeout)
        if self.on_timeout not in ON_TIMEOUT:
            raise ValueError(f"on_timeout={self.on_timeout!r}; allowed: {list(ON_TIMEOUT)}")
        self.W, self.A = tables.pre_ms.shape
        if len(self.routes) == 0:  # a local-only system still needs one (unused) route column
            self.routes = [Route("none", 0, 0.0)]
        #: the kernel's public, named tables (bench.sim.kernel.KernelTables)
        self.kernel = kernel_tables(tables, self.links, self.routes, interference, self.on_timeout)
        self.throughput_sigma = np.array([lk.throughput_sigma for lk in self.links])
        self.rtt_sigma = np.array([lk.rtt_sigma for lk in self.links])
        th = thermal
        #: (time constant ms, trip W, release W) of the thermal model, or None
        self.thermal_params = None if th is None else (th.time_constant_s * 1e3, th.trip_power_w,
                                                       th.release_fraction * th.trip_power_w)

    # ------------------------------------------------------------------ inputs
    @property
    def radio_names(self) -> list[str]:
        return [lk.name for lk in self.links]

    def states_from_trace(self, trace: ScenarioTrace) -> States:
        """States for every step of a scenario trace (every radio idle; the env updates that as it steps)."""
        sig = np.stack([trace.signal_dbm[name] for name in self.radio_names], axis=1)
        n = trace.steps
        gpu = getattr(trace, "gpu_load", None)
        return States(self.tables.workload_index(trace.workload), sig, trace.bandwidth_cap_mbps.astype(float),
                      trace.cpu_load.astype(float), trace.mem_load.astype(float), trace.qos_ms.astype(float),
                      trace.max_accuracy_loss.astype(float), np.full(n, float(trace.interarrival_ms)),
                      np.full(sig.shape, np.inf), None if gpu is None else np.asarray(gpu, dtype=float))

    def draw(self, n: int, rng: np.random.Generator) -> Draws:
        """Draw the randomness of ``n`` requests (in a fixed order, so a seed fixes everything)."""
        r = len(self.links)
        z = rng.standard_normal((4, n, r))
        u = rng.random((n, r))
        zl = rng.standard_normal((2, n))
        # log-normal factors with mean 1: exp(sigma z - sigma^2 / 2)
        lognorm = lambda s, x: np.exp(s * x - 0.5 * s * s)  # noqa: E731
        return Draws(lognorm(self.throughput_sigma, z[0]), lognorm(self.throughput_sigma, z[1]), lognorm(self.rtt_sigma, z[2]),
                     u, lognorm(self.local_jitter_sigma, zl[0]), lognorm(self.remote_jitter_sigma, zl[1]))

    def link_state(self, states: States) -> dict[str, np.ndarray]:
        """Expected per-radio goodput, loss and weak-signal power, each (N, R) (no noise)."""
        up = np.empty(states.signal_dbm.shape)
        down, loss, extra = np.empty_like(up), np.empty_like(up), np.empty_like(up)
        for j, lk in enumerate(self.links):
            s = states.signal_dbm[:, j]
            up[:, j] = lk.uplink_goodput_mbps(s)
            down[:, j] = lk.downlink_goodput_mbps(s)
            loss[:, j] = lk.loss_prob(s)
            extra[:, j] = lk.weak_extra_w(s)
        return {"up_mbps": up, "down_mbps": down, "loss": loss, "weak_extra_w": extra}

    def _link_state_at(self, states: States, radio: np.ndarray, cell: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`link_state` at each row's radio ``radio`` only ((N,) arrays; ``cell`` the flat (N, R) index
        of that radio): each radio's model runs on its own rows (the same functions, on half the values)."""
        sig = np.ascontiguousarray(states.signal_dbm, dtype=float).reshape(-1).take(cell)
        n = len(sig)
        out = {k: np.empty(n) for k in ("up_mbps", "down_mbps", "loss", "weak_extra_w")}
        for j, lk in enumerate(self.links):
            fns = (("up_mbps", lk.uplink_goodput_mbps), ("down_mbps", lk.downlink_goodput_mbps),
                   ("loss", lk.loss_prob), ("weak_extra_w", lk.weak_extra_w))
            rows = np.flatnonzero(radio == j)
            if len(rows) == n:  # every row on this radio
                out.update({k: np.asarray(fn(sig), dtype=float) for k, fn in fns})
            elif len(rows):
                s = sig[rows]
                for k, fn in fns:
                    out[k][rows] = fn(s)
        return out

    # ------------------------------------------------------------------ evaluation
    def request_inputs(self, states: States, draws: Draws, route: np.ndarray | None = None) -> RequestInputs:
        """The policy-independent per-request inputs of the kernel (:class:`bench.sim.kernel.RequestInputs`).

        ``route`` (N,) int: the route arrays hold each row's values on that route only, (N,) (what the
        kernel would gather at ``[row, route]``, the same numbers computed for that route alone: the batch
        path with the queue knows each request's action before it computes its inputs).
        """
        tab = self.kernel
        if route is None:
            ls = self.link_state(states)
            radio = tab.route_radio
            cap = states.cap_mbps[:, None]
            at = lambda v: v[:, radio]  # noqa: E731  (N, R) -> (N, Q)
            rtt_ms, rto_ms = tab.route_rtt_ms, tab.rto_ms
        else:
            q = np.asarray(route, dtype=np.int64)
            n_r = len(self.links)
            radio = tab.route_radio[q]
            cell = np.arange(len(q)) * n_r + radio  # each row's radio, as a flat (N, R) index
            cap = states.cap_mbps
            at = lambda v: v if v.ndim == 1 else np.ascontiguousarray(v).reshape(-1).take(cell)  # noqa: E731
            ls = self._link_state_at(states, radio, cell)
            rtt_ms, rto_ms = tab.route_rtt_ms[q], tab.rto_ms[q]
        up_phy = at(ls["up_mbps"]) * at(draws.up_factor)
        down_phy = at(ls["down_mbps"]) * at(draws.down_factor)
        rtt = rtt_ms * at(draws.rtt_factor) + rto_ms * (at(draws.loss_u) < at(ls["loss"]))
        return RequestInputs(up_phy, np.minimum(up_phy, cap), down_phy, np.minimum(down_phy, cap), rtt,
                             at(ls["weak_extra_w"]), np.asarray(states.workload, dtype=np.int64),
                             tab.cpu_slowdown * states.cpu_load, tab.mem_slowdown * states.mem_load,
                             tab.gpu_slowdown * states.gpu_load,
                             tab.cpu_power_w * states.cpu_load + tab.mem_power_w * states.mem_load,
                             draws.local_factor, draws.remote_factor, states.qos_ms, states.max_accuracy_loss,
                             states.interarrival_ms)

    def carry_of(self, states: States) -> Carry:
        """The queue, radio and thermal state each request of ``states`` meets, as a :class:`Carry` (N rows)."""
        n, tab = len(states), self.kernel
        w = lambda v, k: np.broadcast_to(np.asarray(v, dtype=float).reshape(n, -1), (n, k))  # noqa: E731
        return Carry(w(states.local_free_ms, tab.n_resources), w(states.tx_free_ms, tab.n_radios),
                     w(states.radio_idle_ms, tab.n_radios), w(states.server_free_ms, tab.n_routes),
                     np.asarray(states.throttled, dtype=bool), np.zeros(n))

    def evaluate(self, states: States, actions: np.ndarray | None, draws: Draws, phases: bool = True) -> Outcome:
        """Outcomes of ``actions`` (shape (N,)) or, with ``actions=None``, of every action ((N, A)).

        Each request is evaluated from the state its row of ``states`` carries (queues, radio,
        thermal; default: all empty and idle), independently of the other rows. A thin view
        over :func:`bench.sim.kernel.request_physics`.
        """
        n = len(states)
        tab = self.kernel
        if actions is None:
            a = np.arange(self.A)[None, :]
            rows = np.arange(n)[:, None]
        else:
            a = np.asarray(actions, dtype=np.int64)
            if a.shape != (n,):
                raise ValueError(f"actions must have shape ({n},), got {a.shape}")
            if n and (a.min() < 0 or a.max() >= self.A):
                raise ValueError(f"actions must lie in [0, {self.A}); got {a.min()}..{a.max()}")
            rows = np.arange(n)
        x = self.request_inputs(states, draws)
        col = (lambda v: v[:, None]) if actions is None else (lambda v: v)  # noqa: E731
        xr = {k: col(getattr(x, k)) for k in ("workload", "kc", "km", "kg", "p_add", "jit", "rjit", "qos_ms", "bound")}
        q = tab.route[a]
        rt = gather_route(x, rows, q)
        hot = col(np.asarray(states.throttled, dtype=bool))
        st = gather_state(tab, self.carry_of(states), rows, a, hot, xr["workload"])
        out = request_physics(tab, xr, a, hot, rt, st, phases=phases)
        return Outcome(*(out[f] for f in OUTCOME_FIELDS),
                       phases={k: v for k, v in out.items() if k not in OUTCOME_FIELDS})

    def evaluate_from(self, states: States, draws: Draws, t: int, carry: Carry, row: int = 0) -> Outcome:
        """Every action for request ``t`` of an episode from a carried state (row ``row`` of ``carry``): (1, A)."""
        st = states.take(np.array([t])).with_carry(carry.rows(np.array([row])))
        return self.evaluate(st, None, draws.take(np.array([t])))

    def advance(self, carry: Carry, out: Outcome, interarrival_ms, live=None) -> Carry:
        """The carried state after one request per row of ``carry`` (``out`` shaped (K,))."""
        return advance(carry, out.phases, interarrival_ms, live=live, thermal=self.thermal_params)

    # ------------------------------------------------------------------ state across requests
    def run_sequence(self, states: States, actions: np.ndarray, draws: Draws, carry: Carry | None = None,
                     radio_idle_ms: np.ndarray | None = None) -> Outcome:
        """Outcomes of fixed action sequences over consecutive requests, carrying queues, radio and thermal state.

        ``actions`` is (N,) or (N, K): K independent sequences evaluated side by side
        (e.g. every static action at once). Returns arrays shaped like ``actions``. The
        per-request state is the episode's own (``carry`` at the start; default: fresh),
        not the rows' ``States`` fields.
        """
        acts = np.asarray(actions, dtype=np.int64)
        single = acts.ndim == 1
        acts = acts[:, None] if single else acts
        n, k = acts.shape
        tab = self.kernel
        if carry is None:
            carry = Carry.fresh(k, tab)
            if radio_idle_ms is not None:
                carry.radio_idle[:] = radio_idle_ms
        x = self.request_inputs(states, draws)
        outs = []
        for i in range(n):
            out = step_rows(tab, x, np.full(k, i), acts[i], carry, phases=True)
            outs.append(out)
            carry = advance(carry, out, x.interarrival_ms[i], thermal=self.thermal_params)
        stack = lambda xs: np.stack(xs)[:, 0] if single else np.stack(xs)  # noqa: E731
        return Outcome(*(stack([o[f] for o in outs]) for f in OUTCOME_FIELDS),
                       phases={p: stack([o[p] for o in outs]) for p in outs[0] if p not in OUTCOME_FIELDS})

    def rollout(self, states: States, draws: Draws, actions: np.ndarray, block_steps: int = 32) -> dict:
        """K episodes of T requests in lock-step (``states``/``draws`` T*K rows laid out (T, K), ``actions``
        (T, K)): the batch path with the queue. Returns the outcome arrays (T, K) and the final ``carry``.

        The per-request inputs are computed ``block_steps`` steps at a time and the carry runs on from
        block to block (the same outcomes as one pass: the inputs are per row): a block's arrays stay small,
        where the arrays of a whole run would stream through memory, and the inputs' few dozen numpy calls
        are paid once per block (32 steps: at the perf run's 2,500 episodes, ~5 % faster than 8 and as
        fast as 40, process CPU time on the 2-core Xeon). Each request's inputs are computed on its own
        action's route only.
        """
        acts = np.asarray(actions, dtype=np.int64)
        n_t, k = acts.shape
        if len(states) != n_t * k:  # T requests shared by the K episodes: one pass
            return run_episodes(self.kernel, self.request_inputs(states, draws), acts, thermal=self.thermal_params)
        res = {key: np.empty((n_t, k), dtype=bool if key in ("qos_ok", "timed_out") else float)
               for key in EPISODE_KEYS}
        carry = None
        for s0 in range(0, n_t, max(1, int(block_steps))):
            s1 = min(n_t, s0 + max(1, int(block_steps)))
            rows = slice(s0 * k, s1 * k)
            # the inputs on each request's route only (its action is known): (rows,) arrays, not (rows, routes)
            x = self.request_inputs(states.take(rows), draws.take(rows), route=self.kernel.route[acts[s0:s1].ravel()])
            carry = run_episodes(self.kernel, x, acts[s0:s1], thermal=self.thermal_params, carry=carry,
                                 out={key: v[s0:s1] for key, v in res.items()})["carry"]
        res["carry"] = carry if carry is not None else Carry.fresh(k, self.kernel)
        return res

    # ------------------------------------------------------------------ oracle and best static
    def oracle(self, states: States, draws: Draws) -> tuple[np.ndarray, Outcome]:
        """Per request, the best action under its realised draw and radio state.

        Least device energy among actions meeting QoS and accuracy; where none
        does, least violation (ties: least energy).
        """
        out = self.evaluate(states, None, draws)
        best = best_actions(out)
        rows = np.arange(len(states))
        return best, out.take((rows, best))

    def best_static(self, states: States, draws: Draws, tolerance: float = 0.0) -> tuple[int, pd.DataFrame]:
        """Hindsight best single action over a batch of consecutive requests (e.g. a whole scenario).

        Every action is run as a sequence (so its radio tails and promotions are those
        it really causes). Among the actions whose QoS-met rate is within ``tolerance``
        of the best rate any single action reaches, the one with least mean device energy.
        Returns the action and a per-action summary.
        """
        acts = np.broadcast_to(np.arange(self.A), (len(states), self.A))
        out = self.run_sequence(states, acts, draws)
        rate = out.qos_ok.mean(axis=0)
        energy = out.energy_mj.mean(axis=0)
        eligible = rate >= rate.max() - tolerance
        best = int(np.argmin(np.where(eligible, energy, np.inf)))
        summary = self.tables.actions.copy()
        summary["qos_rate"] = rate
        summary["mean_energy_mj"] = energy
        summary["mean_latency_ms"] = out.latency_ms.mean(axis=0)
        return best, summary


def best_actions(out: Outcome) -> np.ndarray:
    """Row-wise best action of an (N, A) outcome (see :meth:`Simulator.oracle`)."""
    ok = out.qos_ok
    e_ok = np.where(ok, out.energy_mj, np.inf)
    best_ok = np.argmin(e_ok, axis=1)
    # least violation, energy as tie-break: lexsort-free via a tiny energy weight on exact ties
    v = out.violation
    vmin = v.min(axis=1, keepdims=True)
    best_v = np.argmin(np.where(v <= vmin, out.energy_mj, np.inf), axis=1)
    return np.where(ok.any(axis=1), best_ok, best_v)


# --------------------------------------------------------------------------- episode energy accounting

@dataclass
class EnergyLedger:
    """Device energy over an episode: one accounting for every policy.

    ``total = sum(active above-idle energy of each request, radio tails and promotions
    included) + idle_power_w * duration``, where ``duration`` runs from the first
    arrival to the end of the episode: the later of the last slot's end, the last
    request's completion and the last radio tail's end (a tail running past the
    last request is paid). The idle baseline is drawn whatever the policy does; it is
    not charged per unit of a request's latency. ``per_request_total_mj`` spreads it
    over the requests by their slot (arrival to the next arrival; the last takes the
    remainder), so its sum is ``total_mj``.
    """

    idle_power_w: float
    arrivals_ms: list[float] = field(default_factory=list)
    energy_mj: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    tail_mj: list[float] = field(default_factory=list)
    promo_mj: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)

    def record(self, arrival_ms: float, out: Outcome) -> None:
        """Add one request (a single-request outcome) that arrived at ``arrival_ms``."""
        one = lambda x: float(np.asarray(x).ravel()[0])  # noqa: E731
        self.arrivals_ms.append(float(arrival_ms))
        self.energy_mj.append(one(out.energy_mj))
        self.latency_ms.append(one(out.latency_ms))
        self.tail_mj.append(one(out.tail_mj))
        self.promo_mj.append(one(out.promo_mj))
        self.phases.append({k: one(v) for k, v in out.phases.items()})

    def end_ms(self, slot_end_ms: float) -> float:
        """The episode's end: the last slot's end or the last activity (request or radio tail), whichever is later."""
        end = float(slot_end_ms)
        for a, lat, ph in zip(self.arrivals_ms, self.latency_ms, self.phases):
            end = max(end, a + lat)
            if ph["radio"] >= 0:
                end = max(end, a + ph["radio_end_ms"] + ph["tail_ms"])
        return end

    def slots_ms(self, slot_end_ms: float) -> np.ndarray:
        a = np.asarray(self.arrivals_ms)
        return np.diff(np.append(a, self.end_ms(slot_end_ms)))

    def per_request_total_mj(self, slot_end_ms: float) -> np.ndarray:
        """Each request's above-idle energy plus the idle baseline over its slot."""
        return np.asarray(self.energy_mj) + self.idle_power_w * self.slots_ms(slot_end_ms)

    def summary(self, slot_end_ms: float) -> dict[str, float]:
        """Totals over the episode (mJ) and per inference."""
        start = self.arrivals_ms[0] if self.arrivals_ms else 0.0
        duration = self.end_ms(slot_end_ms) - start
        above = float(np.sum(self.energy_mj))
        idle = self.idle_power_w * duration
        n = max(len(self.energy_mj), 1)
        return {"requests": len(self.energy_mj), "duration_ms": duration, "above_idle_mj": above, "idle_mj": idle,
                "total_mj": above + idle, "tail_mj": float(np.sum(self.tail_mj)), "promo_mj": float(np.sum(self.promo_mj)),
                "total_per_inference_mj": (above + idle) / n, "above_idle_per_inference_mj": above / n}
