"""The vectorised simulator core: a batch of (state, action) -> outcome.

Everything that depends only on (workload, action) is precomputed once into
``(W, A)`` arrays (:class:`ActionTables`, built by :mod:`bench.sim.system`); the
per-decision hot path is array indexing, the link model and noise.

Model of one request (suite choice; see also :mod:`bench.world.network` and
:class:`bench.world.scenarios.InterferenceModel`):

* local time ``t_pre`` runs first (the whole DNN for a local target; the DVFO
  head), then ``t_par`` (DVFO's local tail on the kept feature maps) runs in
  parallel with the offload path; latency = ``t_pre + max(t_par, t_off)``;
* interference stretches local time by ``cpu_slowdown * u_cpu`` times the
  CPU-sensitive part and ``mem_slowdown * u_mem`` times the memory-bound part,
  and adds ``cpu_power_w * u_cpu + mem_power_w * u_mem`` while running locally;
* offload path ``t_off`` = upload (bits / realised uplink goodput, capped by the
  scenario's bandwidth cap) + RTT (+ one TCP RTO with probability = loss) +
  remote compute + download of the result;
* device energy = local active energy + radio energy (Huang et al.: base +
  per-Mbps power while sending/receiving, the tail power while waiting for the
  result, plus the tail after the transfer, cut at the next request's arrival:
  ``tail_w * min(tail_ms, interarrival_ms)``) + device idle power over the
  request's latency. Energy of the cloud or peer is reported separately
  (``remote_energy_mj``).

Stochastic variance comes from :class:`Draws` (common random numbers: one draw
per request, shared by every action, so all actions are compared under the same
realisation). The oracle is an argmin over all actions under those draws.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import pandas as pd

from bench.world.network import MIN_MBPS, LinkModel
from bench.world.scenarios import InterferenceModel, ScenarioTrace


@dataclass(frozen=True)
class Route:
    """An offload destination reached over one radio."""

    name: str  # e.g. cloud_wifi, peer
    radio: int  # index into Simulator.links
    rtt_ms: float


@dataclass(frozen=True)
class ActionTables:
    """Per (workload, action) constants, each ``(W, A)`` unless noted.

    ``*_ms`` local times at no interference; ``*_cpu_ms`` / ``*_mem_ms`` the parts
    that CPU / memory contention stretch (CPU-sensitive part already multiplied
    by the target's coupling).
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
    """A batch of N request states."""

    workload: np.ndarray  # int (N,)
    signal_dbm: np.ndarray  # (N, R), one column per Simulator.links
    cap_mbps: np.ndarray  # (N,), inf when uncapped
    cpu_load: np.ndarray
    mem_load: np.ndarray
    qos_ms: np.ndarray
    max_accuracy_loss: np.ndarray
    interarrival_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.workload)

    def take(self, idx) -> "States":
        return States(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


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
    """Per (request, action) results; arrays shaped like the action batch."""

    energy_mj: np.ndarray  # device (mobile / edge) energy
    remote_energy_mj: np.ndarray  # cloud or peer energy, reported separately
    latency_ms: np.ndarray
    accuracy: np.ndarray
    accuracy_loss: np.ndarray
    qos_ok: np.ndarray  # latency <= QoS target and accuracy loss <= bound
    violation: np.ndarray  # 0 when qos_ok; relative latency excess + relative accuracy excess

    def take(self, idx) -> "Outcome":
        return Outcome(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


class Simulator:
    """Evaluates batches of (state, action) pairs; see the module docstring."""

    def __init__(self, tables: ActionTables, links: Sequence[LinkModel], routes: Sequence[Route],
                 interference: InterferenceModel, idle_power_w: float,
                 local_jitter_sigma: float = 0.05, remote_jitter_sigma: float = 0.1):
        self.tables = tables
        self.links = list(links)
        self.routes = list(routes)
        self.interference = interference
        self.idle_power_w = float(idle_power_w)
        # suite choice, assumed: 5% log-normal jitter of on-device latency (OS scheduling, DVFS
        # transitions), 10% of remote latency (server queueing)
        self.local_jitter_sigma = float(local_jitter_sigma)
        self.remote_jitter_sigma = float(remote_jitter_sigma)
        t = tables
        self.W, self.A = t.pre_ms.shape
        flat = lambda x: np.ascontiguousarray(x, dtype=float).ravel()  # noqa: E731
        self._pre, self._pre_cpu, self._pre_mem = flat(t.pre_ms), flat(t.pre_cpu_ms), flat(t.pre_mem_ms)
        self._par, self._par_cpu, self._par_mem = flat(t.par_ms), flat(t.par_cpu_ms), flat(t.par_mem_ms)
        self._p_local, self._off = flat(t.local_power_w), flat(t.offloads)
        self._up_bits, self._down_bits = flat(t.up_bits), flat(t.down_bits)
        self._remote_ms, self._remote_p = flat(t.remote_ms), flat(t.remote_power_w)
        self._acc, self._loss = flat(t.accuracy), flat(t.accuracy_loss)
        self._route = np.where(t.route < 0, 0, t.route).astype(np.int64)  # masked by _off
        if len(self.routes) == 0:  # a local-only system still needs one (unused) route column
            self.routes = [Route("none", 0, 0.0)]
        self._route_radio = np.array([r.radio for r in self.routes], dtype=np.int64)
        self._route_rtt = np.array([r.rtt_ms for r in self.routes])
        self._rto = np.array([self.links[r.radio].rto_ms for r in self.routes])
        self._base_w = np.array([self.links[r.radio].base_mw / 1e3 for r in self.routes])
        self._au_w = np.array([self.links[r.radio].uplink_mw_per_mbps / 1e3 for r in self.routes])
        self._ad_w = np.array([self.links[r.radio].downlink_mw_per_mbps / 1e3 for r in self.routes])
        self._tail_w = np.array([self.links[r.radio].tail_w for r in self.routes])
        self._tail_ms = np.array([self.links[r.radio].tail_ms for r in self.routes])
        self._tp_sigma = np.array([lk.throughput_sigma for lk in self.links])
        self._rtt_sigma = np.array([lk.rtt_sigma for lk in self.links])

    # ------------------------------------------------------------------ inputs
    @property
    def radio_names(self) -> list[str]:
        return [lk.name for lk in self.links]

    def states_from_trace(self, trace: ScenarioTrace) -> States:
        """States for every step of a scenario trace."""
        sig = np.stack([trace.signal_dbm[name] for name in self.radio_names], axis=1)
        n = trace.steps
        return States(self.tables.workload_index(trace.workload), sig, trace.bandwidth_cap_mbps.astype(float),
                      trace.cpu_load.astype(float), trace.mem_load.astype(float), trace.qos_ms.astype(float),
                      trace.max_accuracy_loss.astype(float), np.full(n, float(trace.interarrival_ms)))

    def draw(self, n: int, rng: np.random.Generator) -> Draws:
        """Draw the randomness of ``n`` requests (in a fixed order, so a seed fixes everything)."""
        r = len(self.links)
        z = rng.standard_normal((4, n, r))
        u = rng.random((n, r))
        zl = rng.standard_normal((2, n))
        # log-normal factors with mean 1: exp(sigma z - sigma^2 / 2)
        lognorm = lambda s, x: np.exp(s * x - 0.5 * s * s)  # noqa: E731
        return Draws(lognorm(self._tp_sigma, z[0]), lognorm(self._tp_sigma, z[1]), lognorm(self._rtt_sigma, z[2]),
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

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, states: States, actions: np.ndarray | None, draws: Draws) -> Outcome:
        """Outcomes of ``actions`` (shape (N,)) or, with ``actions=None``, of every action ((N, A))."""
        n = len(states)
        if actions is None:
            a = np.arange(self.A)[None, :]
            col = lambda x: x[:, None]  # noqa: E731
        else:
            a = np.asarray(actions, dtype=np.int64)
            if a.shape != (n,):
                raise ValueError(f"actions must have shape ({n},), got {a.shape}")
            if n and (a.min() < 0 or a.max() >= self.A):
                raise ValueError(f"actions must lie in [0, {self.A}); got {a.min()}..{a.max()}")
            col = lambda x: x  # noqa: E731
        idx = col(states.workload * self.A) + a
        q = self._route[a]  # (1, A) or (N,)

        # link quantities per state and route, with this request's draws
        ls = self.link_state(states)
        radio = self._route_radio
        cap = states.cap_mbps[:, None]
        up_r = np.maximum(np.minimum(ls["up_mbps"][:, radio] * draws.up_factor[:, radio], cap), MIN_MBPS)
        down_r = np.maximum(np.minimum(ls["down_mbps"][:, radio] * draws.down_factor[:, radio], cap), MIN_MBPS)
        rtt_r = self._route_rtt * draws.rtt_factor[:, radio] + self._rto * (draws.loss_u[:, radio] < ls["loss"][:, radio])
        extra_r = ls["weak_extra_w"][:, radio]
        nq = len(self.routes)
        ridx = (np.arange(n) * nq)[:, None] + q if actions is None else np.arange(n) * nq + q
        up, down, rtt, extra = (m.ravel()[ridx] for m in (up_r, down_r, rtt_r, extra_r))

        # local part
        it = self.interference
        kc = col(it.cpu_slowdown * states.cpu_load)
        km = col(it.mem_slowdown * states.mem_load)
        jit = col(draws.local_factor)
        t_pre = (self._pre[idx] + kc * self._pre_cpu[idx] + km * self._pre_mem[idx]) * jit
        t_par = (self._par[idx] + kc * self._par_cpu[idx] + km * self._par_mem[idx]) * jit
        p_local = self._p_local[idx] + col(it.cpu_power_w * states.cpu_load + it.mem_power_w * states.mem_load)

        # offload part
        off = self._off[idx]
        t_up = self._up_bits[idx] / (up * 1e3)
        t_down = self._down_bits[idx] / (down * 1e3)
        t_remote = self._remote_ms[idx] * col(draws.remote_factor)
        t_wait = rtt + t_remote
        t_off = (t_up + t_wait + t_down) * off
        latency = t_pre + np.maximum(t_par, t_off)

        tail_w = self._tail_w[q]
        radio_mj = ((self._base_w[q] + self._au_w[q] * up + extra) * t_up
                    + (self._base_w[q] + self._ad_w[q] * down) * t_down
                    + tail_w * t_wait + tail_w * np.minimum(self._tail_ms[q], col(states.interarrival_ms)))
        energy = p_local * (t_pre + t_par) + radio_mj * off + self.idle_power_w * latency
        remote = self._remote_p[idx] * t_remote * off

        loss = self._loss[idx]
        qos = col(states.qos_ms)
        bound = col(states.max_accuracy_loss)
        lat_excess = np.maximum(latency / qos - 1.0, 0.0)
        acc_excess = np.maximum(loss - bound, 0.0) / np.maximum(bound, 1e-3)
        ok = (latency <= qos) & (loss <= bound + 1e-12)
        return Outcome(energy, remote, latency, self._acc[idx], loss, ok, np.where(ok, 0.0, lat_excess + acc_excess))

    # ------------------------------------------------------------------ oracle and best static
    def oracle(self, states: States, draws: Draws) -> tuple[np.ndarray, Outcome]:
        """Per request, the best action under its realised draw.

        Least device energy among actions meeting QoS and accuracy; where none
        does, least violation (ties: least energy).
        """
        out = self.evaluate(states, None, draws)
        best = best_actions(out)
        rows = np.arange(len(states))
        return best, out.take((rows, best))

    def best_static(self, states: States, draws: Draws, tolerance: float = 0.0) -> tuple[int, pd.DataFrame]:
        """Hindsight best single action over a batch (e.g. a whole scenario).

        Among the actions whose QoS-met rate is within ``tolerance`` of the best
        rate any single action reaches, the one with least mean device energy.
        Returns the action and a per-action summary.
        """
        out = self.evaluate(states, None, draws)
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
