"""Simple baseline schedulers and the helpers the fitted baselines share.

All of them work on ``bench/AutoScale-v0`` and, where the concept exists there,
on ``bench/DVFO-v0``. Action indices are always derived from the env's
``action_table`` (never hard-coded), and observation fields are looked up by name
(:func:`bench.sim.envs.obs_index`), so a profile with other DVFS levels or radios
gets the right actions.

=================  ==============================================  ==============================================
name               AutoScale env                                   DVFO env
=================  ==============================================  ==============================================
``cpu_only``       edge CPU at its highest DVFS level              not applicable: DVFO's action space has no CPU
                                                                   target (the DNN runs on the Jetson's GPU)
``gpu_only``       edge GPU at its highest level                   not applicable (see ``edge_gpu_max``)
``edge_gpu_max``   not applicable (use ``gpu_only``)               everything local (xi = 0) at the highest CPU,
                                                                   GPU and memory levels: DVFO's "edge-only" -
                                                                   the DNN on the Jetson GPU at top clocks
``cloud_only``     send the input to the cloud: over Wi-Fi when    the largest xi at the highest frequencies -
                   the observed RSSI is above Wi-Fi's minimum      the most DVFO's action space can offload (the
                   usable level (:func:`wifi_min_usable_dbm`,      head always runs on the edge)
                   802.11n MCS0 sensitivity), else LTE
``random``         uniform over all actions (seeded Generator)     same
``edge_best_static`` *privileged*: the single local action with    same over local (xi = 0) actions
                   least mean device energy among those whose
                   QoS rate is within ``tolerance`` of the best
                   local QoS rate, in hindsight over the episode
=================  ==============================================  ==============================================

The fitted and published baselines live in their own modules:
:mod:`bench.policies.static` (best static per DNN, per DNN and signal bucket),
:mod:`bench.policies.distilled` (a depth-3 tree fitted to the oracle),
:mod:`bench.policies.neurosurgeon`, :mod:`bench.policies.appealnet`,
:mod:`bench.policies.drldo`.

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

#: every baseline in the registry, and which env kinds it applies to
BASELINES = ("cpu_only", "gpu_only", "edge_gpu_max", "cloud_only", "random", "edge_best_static", "neurosurgeon",
             "best_static_dnn", "best_static_dnn_signal", "distilled", "appealnet", "drldo")
_ONLY = {"cpu_only": "autoscale", "gpu_only": "autoscale", "edge_gpu_max": "dvfo", "appealnet": "dvfo",
         "drldo": "dvfo"}


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
    kind = env_kind(env)
    return [b for b in BASELINES if _ONLY.get(b, kind) == kind]


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
    """Recovers the workload index from an observation's NN features (the first fields of both envs).

    The features are a deterministic function of the workload, so an exact match
    suffices; the nearest row is used otherwise (e.g. after a float round trip).
    """

    def __init__(self, env):
        from bench.sim.envs import NN_FIELDS, nn_features

        self.n = len(NN_FIELDS)
        self.features = nn_features(env.unwrapped.system).astype(np.float32)
        self._exact = {tuple(r.tolist()): i for i, r in enumerate(self.features)}

    def __call__(self, obs) -> int:
        key = tuple(np.asarray(obs[:self.n], dtype=np.float32).tolist())
        i = self._exact.get(key)
        if i is None:
            i = int(np.argmin(np.abs(self.features - np.asarray(obs[:self.n], dtype=np.float32)).sum(axis=1)))
        return i

    def batch(self, obs: np.ndarray) -> np.ndarray:
        """Workload index of every row of an (N, obs_dim) batch."""
        nn = np.asarray(obs, dtype=np.float32)[:, :self.n]
        return np.abs(nn[:, None, :] - self.features[None, :, :]).sum(axis=2).argmin(axis=1)


# --------------------------------------------------------------------------- simple policies

class ConstantPolicy(Policy):
    """Always the same action."""

    name = "constant"

    def __init__(self, action: int, label: str = "constant"):
        self.action = int(action)
        self.label = label

    def act(self, obs) -> int:
        return self.action


@register("cpu_only", order=160, colour="#7f7f7f", marker="<")
def cpu_only(env, **_) -> ConstantPolicy:
    """Edge CPU at its highest level (AutoScale env only)."""
    if env_kind(env) == "dvfo":
        raise ValueError("cpu_only does not apply to the DVFO env: its action space has no CPU target (the DNN runs "
                         "on the Jetson's GPU); use edge_gpu_max, everything local at the highest frequencies")
    return ConstantPolicy(_highest_local(env.unwrapped.action_table, "cpu"), "cpu_only")


def edge_gpu_max_action(env) -> int:
    """DVFO env: the everything-local action (xi = 0) at the highest CPU, GPU and memory levels."""
    acts = env.unwrapped.action_table
    top = _dvfo_top(acts)
    return int(top[acts.loc[top, "xi"].to_numpy().argmin()])


@register("edge_gpu_max", order=130, colour="#2ca02c", marker="X", label="edge-only (GPU at top clocks)")
def edge_gpu_max(env, **_) -> ConstantPolicy:
    """DVFO's "edge-only": xi = 0 at the highest frequencies (DVFO env only; on the AutoScale env use gpu_only)."""
    if env_kind(env) != "dvfo":
        raise ValueError("edge_gpu_max applies to the DVFO env only; on the AutoScale env use gpu_only")
    return ConstantPolicy(edge_gpu_max_action(env), "edge_gpu_max")


@register("gpu_only", order=150, colour="#98df8a", marker="p")
def gpu_only(env, **_) -> ConstantPolicy:
    """Edge GPU at its highest level (AutoScale env only)."""
    if env_kind(env) == "dvfo":
        raise ValueError("gpu_only does not apply to the DVFO env (its DNN always runs on the GPU: "
                         "use edge_gpu_max, edge-only at the highest frequencies)")
    return ConstantPolicy(_highest_local(env.unwrapped.action_table, "gpu"), "gpu_only")


def wifi_min_usable_dbm(link: LinkModel | None = None) -> float:
    """RSSI (dBm) below which cloud-only leaves Wi-Fi for LTE: the link model's ``min_usable_dbm``
    (-82 dBm, the 802.11n MCS0 sensitivity, in the shipped ``data/network/wifi.yaml``)."""
    return float((link or load_link("wifi")).min_usable_dbm)


class CloudOnly(Policy):
    """Always offload the input to the cloud; Wi-Fi while usable, else LTE (AutoScale env)."""

    name = "cloud_only"

    def __init__(self, wifi_action: int | None, lte_action: int | None, wifi_threshold_dbm: float):
        if wifi_action is None and lte_action is None:
            raise ValueError("cloud_only needs a cloud action over Wi-Fi or LTE; the env has none")
        from bench.sim.envs import AUTOSCALE_OBS_FIELDS

        self.wifi_action, self.lte_action = wifi_action, lte_action
        self.wifi_threshold_dbm = float(wifi_threshold_dbm)
        self.wifi_obs = AUTOSCALE_OBS_FIELDS.index("wifi_dbm")

    def act(self, obs) -> int:
        if self.lte_action is None:
            return self.wifi_action
        if self.wifi_action is not None and float(obs[self.wifi_obs]) > self.wifi_threshold_dbm:
            return self.wifi_action
        return self.lte_action


@register("cloud_only", order=170, colour="#6baed6", marker=">")
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


@register("random", order=180, colour="#bdbdbd", marker="d")
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


@register("edge_best_static", order=60, colour="#1f77b4", marker="s")
def edge_best_static(env, n_steps: int | None = None, tolerance: float = 0.0, **_) -> EdgeBestStatic:
    return EdgeBestStatic(env, n_steps=n_steps, tolerance=tolerance)
