"""Baseline schedulers every learned policy is compared to.

All of them work on ``bench/AutoScale-v0`` and, where the concept exists there,
on ``bench/DVFO-v0``. Action indices are always derived from the env's
``action_table`` (never hard-coded), so a profile with other DVFS levels or radios
gets the right actions.

=================  ==============================================  ==============================================
name               AutoScale env                                   DVFO env
=================  ==============================================  ==============================================
``cpu_only``       edge CPU at its highest DVFS level              everything local (xi = 0) at the highest CPU,
                                                                   GPU and memory levels: on the Jetson the DNN
                                                                   runs on the GPU with host work on the CPU, so
                                                                   this is "edge-only at default frequencies"
``gpu_only``       edge GPU at its highest level                   not applicable (no separate GPU target; it
                                                                   would equal ``cpu_only``)
``cloud_only``     send the input to the cloud: over Wi-Fi when    the largest xi at the highest frequencies -
                   the observed RSSI is above Wi-Fi's minimum      the most DVFO's action space can offload (the
                   usable level (:func:`wifi_min_usable_dbm`,      head always runs on the edge)
                   802.11n MCS0 sensitivity), else LTE
``random``         uniform over all actions (seeded Generator)     same
``edge_best_static`` *privileged*: the single local action with    same over local (xi = 0) actions
                   least mean device energy among those whose
                   QoS rate is within ``tolerance`` of the best
                   local QoS rate, in hindsight over the episode
``neurosurgeon``   Kang et al. (ASPLOS 2017), adapted: per DNN     per DNN one xi level at the highest
                   one static choice among {each local target at   frequencies, same criterion
                   its highest level, cloud over each radio}
                   minimising predicted energy s.t. latency <=
                   target at the scenario's mean signal / cap, no
                   interference, no noise; where none meets the
                   target, the fastest
=================  ==============================================  ==============================================

Hindsight fit (``edge_best_static``): the policy is fitted in :meth:`reset` on the
*current* episode of the env it was built with (the policy contract calls
``reset()`` right after ``env.reset``), over its first ``n_steps`` requests. This
uses exactly the trace and draws the episode will play, without re-deriving the
env's seeding; the price is reading the env's episode arrays
(:func:`episode_arrays`), which is what "privileged" means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.world.network import LinkModel, load_link
from bench.policies.base import Policy, register
from bench.sim.core import Draws, States

BASELINES = ("cpu_only", "gpu_only", "cloud_only", "random", "edge_best_static", "neurosurgeon")


# --------------------------------------------------------------------------- env helpers

def env_kind(env) -> str:
    """``"autoscale"`` or ``"dvfo"`` for an (optionally wrapped) simulator env."""
    from bench.sim.envs import AutoScaleEnv, DVFOEnv

    u = getattr(env, "unwrapped", env)
    if isinstance(u, AutoScaleEnv):
        return "autoscale"
    if isinstance(u, DVFOEnv):
        return "dvfo"
    raise TypeError(f"expected a bench AutoScale or DVFO env, got {type(u).__name__}")


def episode_arrays(env) -> tuple[States, Draws, int]:
    """(states, draws, current step) of the env's current episode - privileged information
    (:meth:`bench.sim.envs._SimEnv.episode`); raises if ``reset`` was not called."""
    ep = env.unwrapped.episode()
    return ep.states, ep.draws, ep.step


def baselines_for(env) -> list[str]:
    """Names of the baselines that apply to ``env``'s action space."""
    return [b for b in BASELINES if not (b == "gpu_only" and env_kind(env) == "dvfo")]


def _highest_local(acts: pd.DataFrame, target: str) -> int:
    rows = acts.index[(acts["kind"] == "local") & (acts["target"] == target)]
    if len(rows) == 0:
        raise ValueError(f"the edge device has no {target!r} target; its local targets: "
                         f"{sorted(acts.loc[acts['kind'] == 'local', 'target'].unique())}")
    return int(acts.loc[rows, "freq_mhz"].idxmax())


def _dvfo_top(acts: pd.DataFrame) -> pd.Index:
    """Actions at the highest CPU, GPU and memory levels (one per xi level)."""
    top = np.logical_and.reduce([(acts[c] == acts[c].max()).to_numpy() for c in ("i_cpu", "i_gpu", "i_mem")])
    return acts.index[top]


def _cloud_actions(env) -> dict[str, int]:
    """AutoScale env: radio name -> action index of the cloud reached over that radio."""
    u = env.unwrapped
    acts = u.action_table
    out = {}
    for i in acts.index[acts["target"] == "cloud"]:
        route = u.sim.routes[int(acts.at[i, "route"])]
        out[u.sim.links[route.radio].name] = int(i)
    return out


def local_actions(env) -> np.ndarray:
    """Indices of the actions that run everything on the edge device."""
    acts = env.unwrapped.action_table
    mask = (acts["kind"] == "local") if env_kind(env) == "autoscale" else (acts["xi"] == 0)
    return np.flatnonzero(mask.to_numpy())


class WorkloadFromObs:
    """Recovers the workload index from an observation's NN features (obs[0:5], both envs).

    The features are a deterministic function of the workload, so an exact match
    suffices; the nearest row is used otherwise (e.g. after a float round trip).
    """

    def __init__(self, env):
        from bench.sim.envs import nn_features

        self.features = nn_features(env.unwrapped.system).astype(np.float32)
        self._exact = {tuple(r.tolist()): i for i, r in enumerate(self.features)}

    def __call__(self, obs) -> int:
        key = tuple(np.asarray(obs[:5], dtype=np.float32).tolist())
        i = self._exact.get(key)
        if i is None:
            i = int(np.argmin(np.abs(self.features - np.asarray(obs[:5], dtype=np.float32)).sum(axis=1)))
        return i


# --------------------------------------------------------------------------- simple policies

class ConstantPolicy(Policy):
    """Always the same action."""

    name = "constant"

    def __init__(self, action: int, label: str = "constant"):
        self.action = int(action)
        self.label = label

    def act(self, obs) -> int:
        return self.action


@register("cpu_only")
def cpu_only(env, **_) -> ConstantPolicy:
    """Edge CPU at its highest level (AutoScale); edge-only at the highest frequencies (DVFO)."""
    acts = env.unwrapped.action_table
    if env_kind(env) == "autoscale":
        return ConstantPolicy(_highest_local(acts, "cpu"), "cpu_only")
    top = _dvfo_top(acts)
    return ConstantPolicy(int(top[acts.loc[top, "xi"].to_numpy().argmin()]), "cpu_only")


@register("gpu_only")
def gpu_only(env, **_) -> ConstantPolicy:
    """Edge GPU at its highest level (AutoScale env only)."""
    if env_kind(env) == "dvfo":
        raise ValueError("gpu_only does not apply to the DVFO env (its DNN always runs on the GPU: "
                         "use cpu_only, edge-only at the highest frequencies)")
    return ConstantPolicy(_highest_local(env.unwrapped.action_table, "gpu"), "gpu_only")


def wifi_min_usable_dbm(link: LinkModel | None = None) -> float:
    """RSSI (dBm) below which cloud-only leaves Wi-Fi for LTE: the link model's ``min_usable_dbm``
    (-82 dBm, the 802.11n MCS0 sensitivity, in the shipped ``data/network/wifi.yaml``)."""
    return float((link or load_link("wifi")).min_usable_dbm)


class CloudOnly(Policy):
    """Always offload the input to the cloud; Wi-Fi while usable, else LTE (AutoScale env)."""

    name = "cloud_only"
    WIFI_OBS, LTE_OBS = 7, 8  # AutoScale observation indices of the radios' signals

    def __init__(self, wifi_action: int | None, lte_action: int | None, wifi_threshold_dbm: float):
        if wifi_action is None and lte_action is None:
            raise ValueError("cloud_only needs a cloud action over Wi-Fi or LTE; the env has none")
        self.wifi_action, self.lte_action = wifi_action, lte_action
        self.wifi_threshold_dbm = float(wifi_threshold_dbm)

    def act(self, obs) -> int:
        if self.lte_action is None:
            return self.wifi_action
        if self.wifi_action is not None and float(obs[self.WIFI_OBS]) > self.wifi_threshold_dbm:
            return self.wifi_action
        return self.lte_action


@register("cloud_only")
def cloud_only(env, wifi_threshold_dbm: float | None = None, **_) -> Policy:
    """See :class:`CloudOnly` (AutoScale) / the largest xi at the highest frequencies (DVFO)."""
    acts = env.unwrapped.action_table
    if env_kind(env) == "dvfo":
        top = _dvfo_top(acts)
        return ConstantPolicy(int(top[acts.loc[top, "xi"].to_numpy().argmax()]), "cloud_only")
    cloud = _cloud_actions(env)
    thr = wifi_min_usable_dbm() if wifi_threshold_dbm is None else wifi_threshold_dbm
    return CloudOnly(cloud.get("wifi"), cloud.get("lte"), thr)


class RandomPolicy(Policy):
    """Uniform over the action indices, from a seeded Generator."""

    name = "random"

    def __init__(self, n_actions: int, rng: np.random.Generator):
        self.n_actions = int(n_actions)
        self.rng = rng

    def act(self, obs) -> int:
        return int(self.rng.integers(self.n_actions))


@register("random")
def random_policy(env, seed: int | None = None, rng: np.random.Generator | None = None, **_) -> RandomPolicy:
    """Uniform random actions; pass ``rng`` or ``seed`` (one is required: no global RNG)."""
    if rng is None:
        if seed is None:
            raise ValueError("random policy needs seed=<int> or rng=<numpy Generator>")
        rng = np.random.default_rng(seed)
    return RandomPolicy(env.action_space.n, rng)


# --------------------------------------------------------------------------- hindsight static

def best_static_local(states: States, draws: Draws, sim, candidates: np.ndarray,
                      tolerance: float = 0.0) -> tuple[int, pd.DataFrame]:
    """Among ``candidates``, least mean device energy with QoS rate >= best candidate rate - tolerance.

    Same criterion as :meth:`Simulator.best_static`, restricted to a subset of actions.
    Returns the action and a per-candidate summary.
    """
    out = sim.evaluate(states, None, draws)
    rate = out.qos_ok[:, candidates].mean(axis=0)
    energy = out.energy_mj[:, candidates].mean(axis=0)
    eligible = rate >= rate.max() - tolerance
    k = int(np.argmin(np.where(eligible, energy, np.inf)))
    summary = sim.tables.actions.iloc[candidates].copy()
    summary["qos_rate"], summary["mean_energy_mj"], summary["eligible"] = rate, energy, eligible
    return int(candidates[k]), summary


class EdgeBestStatic(Policy):
    """Privileged: best single local action in hindsight over the current episode.

    Refitted at every :meth:`reset` (call it after ``env.reset``) on the first
    ``n_steps`` requests of the episode (default: the env's episode limit).
    """

    name = "edge_best_static"
    privileged = True

    def __init__(self, env, n_steps: int | None = None, tolerance: float = 0.0):
        self.env = env
        spec = getattr(env, "spec", None)
        self.n_steps = n_steps if n_steps is not None else getattr(spec, "max_episode_steps", None)
        self.tolerance = float(tolerance)
        self.candidates = local_actions(env)
        self.action: int | None = None
        self.summary: pd.DataFrame | None = None
        if getattr(env.unwrapped, "_states", None) is not None:
            self.reset()

    def reset(self) -> None:
        states, draws, _ = episode_arrays(self.env)
        n = len(states) if self.n_steps is None else min(int(self.n_steps), len(states))
        idx = np.arange(n)
        self.action, self.summary = best_static_local(states.take(idx), draws.take(idx), self.env.unwrapped.sim,
                                                      self.candidates, self.tolerance)

    def act(self, obs) -> int:
        if self.action is None:
            raise RuntimeError("edge_best_static: call reset() after env.reset() to fit on the episode")
        return self.action


@register("edge_best_static")
def edge_best_static(env, n_steps: int | None = None, tolerance: float = 0.0, **_) -> EdgeBestStatic:
    return EdgeBestStatic(env, n_steps=n_steps, tolerance=tolerance)


# --------------------------------------------------------------------------- Neurosurgeon

def mean_condition_states(env, seed: int = 0) -> States:
    """One state per simulator workload at the scenario's *average* conditions.

    Signal per radio and bandwidth cap = mean over a trace of the scenario realised
    with ``seed`` (a calibration run, not the evaluation episode); no co-runner
    load. Latency target and accuracy bound from the scenario's mix (a workload the
    mix does not request gets no target: energy only).
    """
    u = env.unwrapped
    sim, scen = u.sim, u.scenario
    trace = scen.trace(np.random.default_rng(seed), model=sim.interference)
    st = sim.states_from_trace(trace)
    w = sim.W
    qos, acc = np.full(w, np.inf), np.full(w, 1.0)
    for m in scen.workload_mix:
        i = sim.tables.workload_index([m["workload"]])[0]
        qos[i], acc[i] = float(m["qos_ms"]), float(m["max_accuracy_loss"])
    cap = st.cap_mbps
    return States(workload=np.arange(w), signal_dbm=np.repeat(st.signal_dbm.mean(axis=0, keepdims=True), w, axis=0),
                  cap_mbps=np.full(w, float(cap.mean()) if np.isfinite(cap).all() else np.inf),
                  cpu_load=np.zeros(w), mem_load=np.zeros(w), qos_ms=qos, max_accuracy_loss=acc,
                  interarrival_ms=np.full(w, float(trace.interarrival_ms)))


def neurosurgeon_candidates(env) -> np.ndarray:
    """AutoScale: each local target at its top level + the cloud over each radio; DVFO: xi levels at top frequencies."""
    acts = env.unwrapped.action_table
    if env_kind(env) == "dvfo":
        return np.asarray(_dvfo_top(acts), dtype=np.int64)
    local = [_highest_local(acts, t) for t in acts.loc[acts["kind"] == "local", "target"].unique()]
    return np.array(sorted(local + list(_cloud_actions(env).values())), dtype=np.int64)


class Neurosurgeon(Policy):
    """One static choice per DNN from predicted average conditions (see module docstring)."""

    name = "neurosurgeon"

    def __init__(self, env, seed: int = 0):
        sim = env.unwrapped.sim
        self.candidates = neurosurgeon_candidates(env)
        states = mean_condition_states(env, seed)
        out = sim.evaluate(states, None, Draws.neutral(len(states), len(sim.links)))
        c = self.candidates
        ok = out.qos_ok[:, c]
        e = np.where(ok, out.energy_mj[:, c], np.inf)
        pick = np.where(ok.any(axis=1), e.argmin(axis=1), out.latency_ms[:, c].argmin(axis=1))
        self.per_workload = c[pick]  # (W,) action per simulator workload
        rows = np.arange(len(states))
        self.predicted = pd.DataFrame({"workload": sim.tables.workloads, "action": self.per_workload,
                                       "action_name": sim.tables.actions["name"].to_numpy()[self.per_workload],
                                       "predicted_energy_mj": out.energy_mj[rows, self.per_workload],
                                       "predicted_latency_ms": out.latency_ms[rows, self.per_workload],
                                       "meets_target": ok.any(axis=1)})
        self._workload = WorkloadFromObs(env)

    def act(self, obs) -> int:
        return int(self.per_workload[self._workload(obs)])


@register("neurosurgeon")
def neurosurgeon(env, seed: int = 0, **_) -> Neurosurgeon:
    return Neurosurgeon(env, seed=seed)
