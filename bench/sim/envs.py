"""Gymnasium environments over the simulator core: ``bench/AutoScale-v0`` and ``bench/DVFO-v0``.

Both are thin wrappers: at ``reset`` they realise the scenario (signal,
interference, workload mix) and draw the common random numbers for the whole
episode from ``self.np_random``; each ``step`` evaluates one request with the
one physics kernel (:mod:`bench.sim.kernel`, through :class:`bench.sim.fast.EpisodeKernel`).
The state a request leaves (queues of the local targets, transmitters and
servers; each radio's quiet time: promotion due or tail still running; thermal
throttling) is carried from step to step and written into the episode's states,
so the oracle and hindsight baselines see it too; every step is recorded in an
:class:`~bench.sim.core.EnergyLedger` (``env.unwrapped.ledger``), the one energy
accounting of the episode. The same seed gives the same rollout.
Register them with :func:`register_envs` (idempotent; run on ``import bench``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from bench.world.scenarios import Scenario, load_scenario
from bench.sim.core import Draws, EnergyLedger, States
from bench.sim.fast import EpisodeKernel
from bench.sim.kernel import Carry
from bench.sim.objective import Objective
from bench.sim.system import System, autoscale_system, dvfo_system

AUTOSCALE_ID = "bench/AutoScale-v0"
DVFO_ID = "bench/DVFO-v0"
EPISODE_STEPS = 200
#: the AutoScale reward derived from the objective is in joules (a unit, not a tuned constant)
OBJECTIVE_REWARD_SCALE_MJ = 1000.0
_DBM_LOW, _DBM_HIGH = -150.0, 0.0
# finite observation bounds (generous; values are clipped to them)
_MAX_LAYERS, _MAX_LOG_FLOPS, _MAX_MS, _MAX_MBPS = 1e4, 20.0, 1e6, 1e4


#: names of the observation fields, in index order (policies look features up by name, never by number)
NN_FIELDS = ("n_conv", "n_fc", "n_recurrent", "n_attention", "log10_flops")
AUTOSCALE_OBS_FIELDS = NN_FIELDS + ("cpu_load", "mem_load", "wifi_dbm", "lte_dbm", "qos_ms", "max_accuracy_loss",
                                    "gpu_load", "local_busy_ms", "radio_busy_ms", "cpu_busy_ms", "gpu_busy_ms",
                                    "dsp_busy_ms")
DVFO_OBS_FIELDS = NN_FIELDS + ("bandwidth_mbps", "prev_cpu", "prev_gpu", "prev_mem", "prev_xi", "time_to_go",
                               "cpu_load", "mem_load", "gpu_load", "signal_dbm", "radio_busy_ms", "radio_connected_ms",
                               "throttled")
#: DVFO observation fields that describe the request and its conditions, not the policy's past actions: a
#: training run standardises them over every training scenario before it starts (bench.policies.dvfo)
DVFO_CONDITION_FIELDS = NN_FIELDS + ("bandwidth_mbps", "cpu_load", "mem_load", "gpu_load", "signal_dbm")


def obs_fields(env) -> tuple[str, ...]:
    """Names of ``env``'s observation fields in index order (an AutoScale or DVFO env, wrapped or not)."""
    u = getattr(env, "unwrapped", env)
    fields_ = getattr(u, "OBS_FIELDS", None)
    if fields_ is None:
        raise TypeError(f"expected a bench AutoScale or DVFO env, got {type(u).__name__}")
    return fields_


def obs_index(env, name: str) -> int:
    """Index of observation field ``name`` in ``env``'s observations; unknown names list the allowed ones."""
    names = obs_fields(env)
    if name not in names:
        raise ValueError(f"observation field {name!r} is not in {type(env.unwrapped).__name__}'s observation; "
                         f"fields: {list(names)}")
    return names.index(name)


def _state_column(states: States, name: str) -> np.ndarray:
    """A per-request state column, zeros when the simulator does not model it (e.g. a GPU co-runner)."""
    col = getattr(states, name, None)
    return np.zeros(len(states.workload)) if col is None else np.asarray(col, dtype=float)


def radio_thermal_obs(tx_free, radio_idle, tail_ms: float, throttled):
    """DVFO observation fields 15-17 from the carried state (scalars or arrays): the transmitter's queue (ms),
    how long the radio stays connected if nothing is sent (ms; ``radio_idle`` is how long it has had no
    activity, ``inf`` never used, negative activity committed ahead), thermal throttling (0/1)."""
    busy = np.minimum(np.maximum(tx_free, 0.0), _MAX_MS)
    connected = np.minimum(np.maximum(tail_ms - np.asarray(radio_idle, dtype=float), 0.0), _MAX_MS)
    return busy, connected, np.asarray(throttled, dtype=float)


def _scenario(s: Scenario | str) -> Scenario:
    return s if isinstance(s, Scenario) else load_scenario(s)


def nn_features(system: System) -> np.ndarray:
    """(W, 5): conv / fc / recurrent / attention layer counts and log10 FLOPs."""
    wl = system.workloads
    return np.column_stack([wl["n_conv"], wl["n_fc"], wl["n_recurrent"], wl["n_attention"],
                            np.log10(np.maximum(wl["flops"].to_numpy(dtype=float), 1.0))]).astype(np.float32)


@dataclass(frozen=True)
class Episode:
    """See :meth:`_SimEnv.episode`."""

    states: States
    draws: Draws
    step: int
    wait_ms: float  # DVFO: how long the current request waits for the edge (0 for AutoScale)


class _SimEnv(gym.Env):
    """Shared episode machinery: a scenario trace + draws per episode, one request per step."""

    metadata = {"render_modes": []}

    def __init__(self, system: System, scenario: Scenario | str):
        self.system = system
        self.sim = system.sim
        self.scenario = _scenario(scenario)
        missing = sorted(set(self.scenario.workloads) - set(self.sim.tables.workloads))
        if missing:
            raise ValueError(f"scenario {self.scenario.name!r} requests workload(s) {missing} the simulator does not "
                             f"know; known: {list(self.sim.tables.workloads)}")
        self.action_space = spaces.Discrete(self.sim.A)
        self._n_actions = int(self.sim.A)
        self._action_names = [str(x) for x in self.sim.tables.actions["name"]]
        tab = self.sim.kernel
        self._tail_ms = tab.tail_ms[tab.route].tolist()  # per action: its route's radio tail
        self._hist: list = []
        self._nn = nn_features(system)
        self._t = 0
        self._states = None

    def _busy(self) -> tuple[float, float]:
        """(longest wait for a local target, longest wait for a radio's transmitter) a new request meets (ms)."""
        k = self._kernel
        lf, tx = k.local_free, k.tx_free
        return max(max(lf), 0.0) if lf else 0.0, max(max(tx), 0.0) if tx else 0.0

    @property
    def action_table(self) -> pd.DataFrame:
        """One row per action index: what it runs where and at which levels."""
        return self.sim.tables.actions

    def episode(self) -> "Episode":
        """The current episode's realised states and random draws, the step and the queueing wait.

        Privileged information (what the oracle and the hindsight baselines use); a real
        scheduler only sees observations. The states carry the radio and thermal state
        of every step so far, the current one included. Raises if ``reset`` has not been called.
        """
        if self._states is None:
            raise gym.error.ResetNeeded("the env has no episode yet: call reset() first")
        self._sync_states()
        return Episode(self._states, self._draws, int(self._t), self._wait_of())

    @property
    def ledger(self) -> EnergyLedger:
        """The episode's :class:`~bench.sim.core.EnergyLedger` (every step so far), the one energy accounting.

        Built on demand from the batch path (:meth:`Simulator.evaluate` over the steps taken, with the
        radio and thermal state each one met), so it is the reference the cheap step is checked against.
        """
        if self._states is None:
            raise gym.error.ResetNeeded("the env has no episode yet: call reset() first")
        k = len(self._hist)
        if self._ledger is None or len(self._ledger.energy_mj) != k:
            self._sync_states()
            idx = np.arange(k)
            ledger = EnergyLedger(self.sim.idle_power_w)
            if k:
                out = self.sim.evaluate(self._states.take(idx), self.actions_taken(),
                                        self._draws.take(idx))
                ledger.arrivals_ms = [self._arrival_ms(t) for t in range(k)]
                ledger.energy_mj = out.energy_mj.tolist()
                ledger.latency_ms = out.latency_ms.tolist()
                ledger.tail_mj = out.tail_mj.tolist()
                ledger.promo_mj = out.promo_mj.tolist()
                cols = {name: v.tolist() for name, v in out.phases.items()}
                ledger.phases = [{name: float(cols[name][t]) for name in cols} for t in range(k)]
            self._ledger = ledger
        return self._ledger

    def realise(self, rng: np.random.Generator):
        """One episode's scenario trace, request states and random draws from ``rng`` (what ``reset`` does)."""
        trace_rng, draw_rng = rng.spawn(2)
        trace = self.scenario.trace(trace_rng, model=self.sim.interference)
        states = self.sim.states_from_trace(trace)
        return trace, states, self.sim.draw(len(states), draw_rng)

    def _new_episode(self) -> None:
        self.trace, self._states, self._draws = self.realise(self.np_random)
        self._gpu_load = _state_column(self._states, "gpu_load")
        self._t = 0
        self._T = len(self._states)
        # every queue starts empty, every radio idle (a promotion is due), the device cool
        # the step (bench.sim.fast, a view of the one kernel): policy-independent inputs + the carried state
        self._kernel = EpisodeKernel(self.sim, self._states, self._draws)
        self._workload_names = list(map(str, self.trace.workload.tolist()))  # info's names, once per episode
        self._states = self._states.with_carry(Carry.fresh(self._T, self.sim.kernel))
        self._ia0 = float(self._states.interarrival_ms[0])
        self._hist: list[tuple[int, tuple]] = []  # (action, carried state it met: EpisodeKernel.snapshot) per step
        self._synced = 0
        self._end_ms = -np.inf  # latest activity so far (request completion or radio tail end)
        self._ledger = None

    def actions_taken(self) -> np.ndarray:
        """The actions of the episode's steps so far."""
        return np.array([h[0] for h in self._hist], dtype=np.int64)

    def _write_carry(self, t: int, c: tuple) -> None:
        st = self._states
        st.local_free_ms[t], st.tx_free_ms[t], st.radio_idle_ms[t], st.server_free_ms[t], st.throttled[t] = c

    def _sync_states(self) -> None:
        """Write the queue, radio and thermal state of the steps taken (and the current one) into the states."""
        k, s = len(self._hist), self._synced
        for t in range(s, k):
            self._write_carry(t, self._hist[t][1])
        if k < self._T:
            self._write_carry(k, self._kernel.snapshot())
        self._synced = k

    def _arrival_ms(self, t: int) -> float:
        return float(t) * self._ia0

    def _action(self, action) -> int:
        if type(action) is int or isinstance(action, np.integer):  # the common case, without Space.contains
            a = int(action)
            if 0 <= a < self._n_actions:
                return a
        elif self.action_space.contains(action):
            return int(action)
        raise ValueError(f"action {action!r} is not in {self.action_space}")

    def _outcome(self, action):
        """Evaluate the current request with ``action`` (one kernel step) and carry queue, radio and thermal state."""
        if self._states is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        a = self._action(action)
        t = self._t
        k = self._kernel
        self._wait_ms = self._wait_of()
        self._hist.append((a, k.snapshot()))
        self._a, self._hot_step = a, k.throttled
        out = k.step(t, a)  # the outcome dict; moves the carried state on to the next request
        arrival = t * self._ia0
        end = arrival + out["latency_ms"]
        if out["radio"] >= 0:  # the radio's tail runs past the request's completion
            end = max(end, arrival + out["new_last_end"] + self._tail_ms[a])
        if end > self._end_ms:
            self._end_ms = end
        return out

    def _wait_of(self) -> float:
        return 0.0

    def _info(self, out) -> dict[str, Any]:
        t = self._t
        if t + 1 >= self._T:  # the idle baseline over the last slot runs to the episode's end: tails included
            slot = max(self._arrival_ms(t + 1), self._end_ms) - self._arrival_ms(t)
        else:
            slot = self._kernel.interarrival[t]
        energy = out["energy_mj"]
        return {"energy_mj": energy, "total_energy_mj": energy + self.sim.idle_power_w * slot,
                "tail_mj": out["tail_mj"], "promo_mj": out["promo_mj"],
                "timed_out": out["timed_out"], "throttled": self._hot_step,
                "remote_energy_mj": out["remote_energy_mj"],
                "latency_ms": out["latency_ms"], "accuracy": out["accuracy"],
                "accuracy_loss": out["accuracy_loss"], "qos_ok": out["qos_ok"],
                "workload": self._workload_names[t], "action_name": self._action_names[self._a],
                "step": t}


class AutoScaleEnv(_SimEnv):
    """AutoScale (Kim & Wu, MICRO 2020): pick where each inference runs.

    Suite formulation (see docs/papers.md, "suite choice"); one step = one inference request.

    **Action** - ``Discrete(A)``; index ``i`` is row ``i`` of :attr:`action_table`:

    =====================  =============================================
    actions                meaning
    =====================  =============================================
    ``cpu@f`` for each f   edge CPU at DVFS level f (fp32)
    ``gpu@f`` for each f   edge GPU at DVFS level f (profile precision)
    ``dsp@f``              edge DSP, INT8 (accuracy cost)
    ``peer``               nearby device over the WLAN
    ``cloud_<radio>``      cloud over Wi-Fi / LTE
    =====================  =============================================

    **Observation** - ``Box(float32, (17,))``; field names in :data:`AUTOSCALE_OBS_FIELDS`.
    The runtime signals are the ones the paper names (signal strength, processor
    utilisation, memory usage), observed with the request:

    ===  =====================  ===============================================  ==========
    idx  name                   feature                                          range
    ===  =====================  ===============================================  ==========
    0    ``n_conv``             convolution layers of the DNN                    [0, 1e4]
    1    ``n_fc``               fully connected layers                           [0, 1e4]
    2    ``n_recurrent``        recurrent layers                                 [0, 1e4]
    3    ``n_attention``        attention layers                                 [0, 1e4]
    4    ``log10_flops``        log10 FLOPs of the DNN                           [0, 20]
    5    ``cpu_load``           co-runner CPU load                               [0, 1]
    6    ``mem_load``           co-runner memory load                            [0, 1]
    7    ``wifi_dbm``           Wi-Fi RSSI (dBm)                                 [-150, 0]
    8    ``lte_dbm``            LTE RSRP (dBm)                                   [-150, 0]
    9    ``qos_ms``             latency target of the request (ms)               (0, 1e6]
    10   ``max_accuracy_loss``  accuracy-loss bound of the request               [0, 1]
    11   ``gpu_load``           co-runner GPU load (0 where the simulator's      [0, 1]
                                states carry none)
    12   ``local_busy_ms``      queue: how long until the busiest local target   [0, 1e6]
                                (CPU, GPU, DSP) is free (ms)
    13   ``radio_busy_ms``      queue: how long until the busiest radio's        [0, 1e6]
                                transmitter is free (ms)
    14   ``cpu_busy_ms``        queue: how long until the edge CPU is free (ms)  [0, 1e6]
    15   ``gpu_busy_ms``        ... the edge GPU (0 where the device has none)   [0, 1e6]
    16   ``dsp_busy_ms``        ... the edge DSP (0 where the device has none)   [0, 1e6]
    ===  =====================  ===============================================  ==========

    Each local target runs one inference at a time and each radio sends one upload
    at a time (FIFO, :mod:`bench.sim.kernel`): a request that arrives while earlier
    ones still run waits, and the wait is part of its latency. Fields 12-16 let a
    policy see that backlog (a real scheduler knows its own queues), in total and per processor.
    A processor's backlog is what runs on it: a DNN without an INT8 model sent to the DSP
    runs as a float graph on the GPU (:mod:`bench.world.float_path`), so it shows in
    ``gpu_busy_ms``, not ``dsp_busy_ms``.

    **Reward** - with ``violation_cost_mj`` (λ; the pipeline passes params.yaml's ``objective``): the
    declared objective, ``-(energy_mj + λ · miss) / 1000`` (joules; a miss: latency > target or accuracy
    loss > bound; docs/bound.md). Without it (legacy): inferences per joule of the mobile device
    (``1000 / energy_mj``, energy above the idle baseline, radio promotion and tail included)
    when latency <= target and accuracy loss <= bound; otherwise
    ``-violation_penalty * (1 + violation)`` (violation: relative latency excess +
    relative accuracy excess).

    **Episode end** - ``truncated`` when the scenario's trace ends; the registered
    id adds a ``TimeLimit`` of 200 steps. Never ``terminated``.

    **Arguments** - ``scenario`` (name/path/Scenario), ``edge``, ``peer``, ``cloud``
    (profile names/paths/objects; ``peer=None`` drops the peer action),
    ``workloads`` (DataFrame, default: the shipped table),
    ``max_levels_per_target``, ``violation_penalty``, ``violation_cost_mj``; extra keyword arguments go to
    the :class:`~bench.sim.core.Simulator`. ``info`` carries energy, remote energy,
    latency, accuracy and the QoS flag of the step, plus ``total_energy_mj`` (with
    the idle baseline over the request's slot), ``tail_mj``, ``promo_mj`` and
    ``timed_out`` (the offload hit its timeout and failed over).
    """

    OBS_FIELDS = AUTOSCALE_OBS_FIELDS

    def __init__(self, scenario: Scenario | str = "wifi_strong", edge="phone_sd845", peer="peer_laptop",
                 cloud="cloud_rtx3080", workloads: pd.DataFrame | None = None, max_levels_per_target: int | None = None,
                 violation_penalty: float = 10.0, violation_cost_mj: float | None = None,
                 render_mode: str | None = None, **sim_kwargs):
        system = autoscale_system(edge=edge, cloud=cloud, peer=peer, workloads=workloads,
                                  max_levels_per_target=max_levels_per_target, **sim_kwargs)
        super().__init__(system, scenario)
        self.violation_penalty = float(violation_penalty)
        # the declared objective (params.yaml `objective`, bench/sim/objective.py); None: the legacy reward
        self.objective = None if violation_cost_mj is None else Objective(violation_cost_mj)
        self._radio = [self.sim.radio_names.index(r) for r in ("wifi", "lte")]
        high = np.array([_MAX_LAYERS] * 4 + [_MAX_LOG_FLOPS, 1, 1, _DBM_HIGH, _DBM_HIGH, _MAX_MS, 1, 1, _MAX_MS, _MAX_MS]
                        + [_MAX_MS] * 3, dtype=np.float32)
        low = np.array([0] * 5 + [0, 0, _DBM_LOW, _DBM_LOW, 0, 0, 0, 0, 0] + [0] * 3, dtype=np.float32)
        names = self.sim.kernel.resource_names  # per local target (cpu, gpu, dsp) its own backlog field; absent: 0
        self._per_target = [(AUTOSCALE_OBS_FIELDS.index(f"{r}_busy_ms"), names.index(r)) for r in ("cpu", "gpu", "dsp")
                            if r in names]
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def _obs_table(self, s: States) -> np.ndarray:
        """(T, 17) observations of every request of an episode; the queue fields (12-16) are filled per step."""
        sig = np.clip(s.signal_dbm[:, self._radio], _DBM_LOW, _DBM_HIGH)
        runtime = np.column_stack([s.cpu_load, s.mem_load, sig[:, 0], sig[:, 1], s.qos_ms,
                                   np.minimum(s.max_accuracy_loss, 1.0),
                                   _state_column(s, "gpu_load"), np.zeros(len(s)), np.zeros(len(s)),
                                   np.zeros((len(s), 3))]).astype(np.float32)
        obs = np.concatenate([self._nn[s.workload], runtime], axis=1).astype(np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def _obs(self) -> np.ndarray:
        obs = self._obs_tab[min(self._t, self._T - 1)].copy()
        obs[12], obs[13] = self._busy()  # (two scalar stores: cheaper than a slice from a tuple)
        lf = self._kernel.local_free
        for i, r in self._per_target:
            obs[i] = min(max(lf[r], 0.0), _MAX_MS)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._new_episode()
        self._obs_tab = self._obs_table(self._states)
        return self._obs(), {"step": 0, "workload": str(self.trace.workload[0])}

    def step(self, action):
        out = self._outcome(action)
        if self.objective is not None:  # -(E + λ·miss) in joules (OBJECTIVE_REWARD_SCALE_MJ)
            reward = -(out["energy_mj"] + self.objective.violation_cost_mj * (not out["qos_ok"])) \
                / OBJECTIVE_REWARD_SCALE_MJ
        else:
            reward = 1000.0 / out["energy_mj"] if out["qos_ok"] else -self.violation_penalty * (1.0 + out["violation"])
        info = self._info(out)
        self._t += 1
        truncated = self._t >= self._T
        return self._obs(), float(reward), False, truncated, info


class DVFOEnv(_SimEnv):
    """DVFO (Zhang et al., TMC 2024): DVFS levels of the edge device + share of feature maps to offload.

    Suite formulation (see docs/papers.md and :mod:`bench.sim.system`); one step = one request.

    **Action** - ``Discrete(n_cpu * n_gpu * n_mem * n_xi)``, C-order over
    (f_CPU index, f_GPU index, f_MEM index, xi index); :attr:`action_table` lists
    the frequencies (MHz) and xi of every index; :meth:`decode` gives the indices.

    **Observation** - ``Box(float32, (18,))``; field names in :data:`DVFO_OBS_FIELDS`.
    The poster's state (DNN type, bandwidth), the thinking-while-moving fields
    (previous action, time to go; Xiao et al., ICLR 2020), the runtime signals
    a co-located edge device sees (co-runner loads, signal strength) and the rest of
    the state the kernel carries from one request to the next that the device knows
    (its radio's transmitter queue and power state, its thermal throttling):

    ===  ==================  ====================================================  ===========
    idx  name                feature                                               range
    ===  ==================  ====================================================  ===========
    0-3  ``n_conv`` ...      conv / fc / recurrent / attention layer counts        [0, 1e4]
    4    ``log10_flops``     log10 FLOPs                                           [0, 20]
    5    ``bandwidth_mbps``  expected uplink goodput, capped (Mbit/s)              [0, 1e4]
    6-9  ``prev_cpu`` ...    previous action: f_CPU, f_GPU, f_MEM, xi indices      [0, 1]
                             scaled to [0, 1] (concurrent control)
    10   ``time_to_go``      the queue: how long until the edge is free when       [0, 10]
                             this request arrives / inter-arrival
    11   ``cpu_load``        co-runner CPU load                                    [0, 1]
    12   ``mem_load``        co-runner memory load                                 [0, 1]
    13   ``gpu_load``        co-runner GPU load (0 where the states carry none)    [0, 1]
    14   ``signal_dbm``      signal strength of the offload radio (dBm)            [-150, 0]
    15   ``radio_busy_ms``   the offload radio's transmitter queue: how long       [0, 1e6]
                             until it is free when this request arrives (ms)
    16   ``radio_connected`` how long the offload radio stays connected (its       [0, 1e6]
         ``_ms``             tail) after this arrival if nothing is sent (ms);
                             0: idle, an offload pays a promotion first
    17   ``throttled``       1 while thermal throttling caps the DVFS levels       [0, 1]
    ===  ==================  ====================================================  ===========

    Fields 15-17 (issue 23): a request's latency and energy depend on them (an idle radio's promotion
    adds tens of ms to an offload and is what made DVFO's misses on the Jetson look random: measured in
    docs/dvfo.md), and a real scheduler knows its own radio and thermal state, so the env shows them
    (the server's queue stays hidden: the device does not see the server).

    **Reward** - with ``violation_cost_mj`` (λ; the pipeline passes params.yaml's ``objective``):
    ``-(w_energy * (E + λ · miss) / E_ref + w_time * T / T_ref)``, the declared objective per request in
    units of the workload's local-only energy (docs/bound.md). Without it (legacy):
    ``-(w_energy * E / E_ref + w_time * T / T_ref) - qos_penalty``
    when the latency target or accuracy bound is missed (no penalty otherwise);
    E_ref and T_ref are the workload's local-only energy and latency at the
    highest frequencies (computed from the profile, not typed in); ``w_time=0``
    gives the poster's energy-only reward. T includes the wait for the previous
    requests (thinking-while-moving: a new request can arrive while the last still runs);
    the edge runs one DNN at a time (FIFO, :mod:`bench.sim.kernel`), so a request waits for
    the earlier ones' local compute (head and kept tail); uploads queue for the radio's
    transmitter and the server has its own queue; a timed-out offload's local
    fallback does not queue (it shares the device).

    **Episode end** - ``truncated`` when the trace ends; the registered id adds a
    ``TimeLimit`` of 200 steps. Never ``terminated``.

    **Arguments** - ``scenario``, ``edge``, ``cloud``, ``workloads``, ``partitions``,
    ``accuracy_curve`` (CSV path or DataFrame; default ``data/dvfo/accuracy_vs_xi.csv``),
    ``n_cpu_levels``, ``n_gpu_levels``, ``n_mem_levels``, ``xi_levels``,
    ``w_energy``, ``w_time``, ``qos_penalty``, ``violation_cost_mj``, ``host_flop_share``, ``radio``.
    """

    OBS_FIELDS = DVFO_OBS_FIELDS

    def __init__(self, scenario: Scenario | str = "dvfo_trickle_5mbps", edge="jetson_xavier_nx", cloud="cloud_rtx3080",
                 workloads: pd.DataFrame | None = None, partitions: pd.DataFrame | None = None, accuracy_curve=None,
                 n_cpu_levels: int | None = 4, n_gpu_levels: int | None = 5, n_mem_levels: int | None = 3,
                 xi_levels=6, w_energy: float = 1.0, w_time: float = 0.0, qos_penalty: float = 1.0,
                 host_flop_share: float | None = None, radio: str | None = None, render_mode: str | None = None,
                 violation_cost_mj: float | None = None, **sim_kwargs):
        system = dvfo_system(edge=edge, cloud=cloud, workloads=workloads, partitions=partitions,
                             accuracy_curve=accuracy_curve, n_cpu_levels=n_cpu_levels, n_gpu_levels=n_gpu_levels,
                             n_mem_levels=n_mem_levels, xi_levels=xi_levels, host_flop_share=host_flop_share,
                             radio=radio, **sim_kwargs)
        super().__init__(system, scenario)
        self.w_energy, self.w_time, self.qos_penalty = float(w_energy), float(w_time), float(qos_penalty)
        # the declared objective (params.yaml `objective`); None: the legacy qos_penalty reward
        self.objective = None if violation_cost_mj is None else Objective(violation_cost_mj)
        acts = self.action_table
        self._dims = np.array([acts[c].max() + 1 for c in ("i_cpu", "i_gpu", "i_mem", "i_xi")])
        self._idx = acts[["i_cpu", "i_gpu", "i_mem", "i_xi"]].to_numpy()
        self._radio = self.sim.routes[0].radio
        # references: local-only (xi = 0) at the highest levels, no interference, no jitter
        ref = np.flatnonzero((acts["i_cpu"] == self._dims[0] - 1) & (acts["i_gpu"] == self._dims[1] - 1)
                             & (acts["i_mem"] == self._dims[2] - 1) & (acts["xi"] == 0))
        if len(ref) == 0:
            raise ValueError("xi_levels must include 0 (local-only execution defines E_ref and T_ref)")
        t = self.sim.tables
        self.t_ref_ms = t.pre_ms[:, ref[0]] + t.par_ms[:, ref[0]]
        # above-idle, like every step's energy (the idle baseline is not charged per unit of latency)
        self.e_ref_mj = t.local_power_w[:, ref[0]] * self.t_ref_ms
        self._route_tail_ms = float(self.sim.kernel.tail_ms[0])  # the offload route's radio tail (one route)
        low = np.array([0] * 11 + [0, 0, 0, _DBM_LOW, 0, 0, 0], dtype=np.float32)
        high = np.array([_MAX_LAYERS] * 4 + [_MAX_LOG_FLOPS, _MAX_MBPS, 1, 1, 1, 1, 10, 1, 1, 1, _DBM_HIGH,
                                             _MAX_MS, _MAX_MS, 1], dtype=np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def decode(self, action: int) -> tuple[int, int, int, int]:
        """(f_CPU index, f_GPU index, f_MEM index, xi index) of an action."""
        return tuple(int(x) for x in self._idx[int(action)])

    def _obs_table(self, s: States, bw_mbps: np.ndarray | None = None) -> np.ndarray:
        """(T, 18) observations with the policy-independent fields filled; see :meth:`_obs`."""
        if bw_mbps is None:
            bw_mbps = self.sim.link_state(s)["up_mbps"][:, self._radio]
        bw = np.minimum(bw_mbps, s.cap_mbps)
        obs = np.zeros((len(s), len(DVFO_OBS_FIELDS)), dtype=np.float32)
        obs[:, :5] = self._nn[s.workload]
        obs[:, 5] = bw
        obs[:, 11:15] = np.column_stack([s.cpu_load, s.mem_load, _state_column(s, "gpu_load"),
                                         s.signal_dbm[:, self._radio]])
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def _obs(self) -> np.ndarray:
        t = min(self._t, self._T - 1)
        obs = self._obs_tab[t].copy()
        obs[6:10] = self._prev_rows[self._prev]
        k = self._kernel
        obs[10] = min(max(k.local_free[0], 0.0) / k.interarrival[t], 10.0)  # (the wait, as _wait_of)
        # fields 15-17 as radio_thermal_obs, in Python scalars (the step's hot path)
        obs[15] = min(max(k.tx_free[self._radio], 0.0), _MAX_MS)
        obs[16] = min(max(self._route_tail_ms - k.radio_idle[self._radio], 0.0), _MAX_MS)
        obs[17] = 1.0 if k.throttled else 0.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._new_episode()
        self._bw = self.sim.link_state(self._states)["up_mbps"][:, self._radio]
        self._prev = self.initial_prev()
        self._prev_obs = self.prev_obs_table()
        self._prev_rows = list(self._prev_obs)  # one row view per action: no fancy indexing per step
        self._e_ref, self._t_ref = self.e_ref_mj.tolist(), self.t_ref_ms.tolist()
        self._wait_ms = 0.0
        self._obs_tab = self._obs_table(self._states, self._bw)
        return self._obs(), {"step": 0, "workload": str(self.trace.workload[0])}

    def condition_observations(self) -> np.ndarray:
        """(T, 18) observations of the current episode's requests; only :data:`DVFO_CONDITION_FIELDS` are filled
        (what a device observes of its requests and conditions whatever it does). Raises before ``reset``."""
        if self._states is None:
            raise gym.error.ResetNeeded("the env has no episode yet: call reset() first")
        return self._obs_tab.copy()

    def _wait_of(self) -> float:
        """How long a request arriving now waits for the edge (the local part of the earlier ones)."""
        return max(self._kernel.local_free[0], 0.0)

    def initial_prev(self) -> int:
        """The 'previous action' observed at an episode's first request: local-only at the highest levels."""
        return len(self._idx) - 1 if self._idx[-1, 3] == 0 else int(np.flatnonzero(self._idx[:, 3] == 0)[-1])

    def prev_obs_table(self) -> np.ndarray:
        """(A, 4) observation fields 6-9 (the previous action's scaled indices) of every action."""
        return (self._idx / np.maximum(self._dims - 1, 1)).astype(np.float32)

    def step(self, action):
        out = self._outcome(action)
        t = self._t
        w = self._kernel.workload[t]
        latency, ok = out["latency_ms"], out["qos_ok"]
        if self.objective is not None:  # -(E + λ·miss) / E_ref: the objective in local-inference units
            e = out["energy_mj"] + (0.0 if ok else self.objective.violation_cost_mj)
            reward = -(self.w_energy * e / self._e_ref[w] + self.w_time * latency / self._t_ref[w])
        else:
            reward = -(self.w_energy * out["energy_mj"] / self._e_ref[w] + self.w_time * latency / self._t_ref[w])
            reward -= 0.0 if ok else self.qos_penalty
        info = self._info(out)
        info["wait_ms"] = self._wait_ms  # the queue this request met (its latency includes it)
        self._prev = self._a
        self._t += 1
        return self._obs(), float(reward), False, self._t >= self._T, info


def register_envs(max_episode_steps: int = EPISODE_STEPS) -> None:
    """Register ``bench/AutoScale-v0`` and ``bench/DVFO-v0`` with gymnasium (idempotent)."""
    for env_id, entry in ((AUTOSCALE_ID, "AutoScale"), (DVFO_ID, "DVFO")):
        if env_id not in gym.registry:
            # vector_entry_point: gymnasium.make_vec steps N copies in one batch call (bench.sim.vector)
            gym.register(id=env_id, entry_point=f"bench.sim.envs:{entry}Env", max_episode_steps=max_episode_steps,
                         vector_entry_point=f"bench.sim.vector:{entry}VectorEnv")
