"""Hindsight static baselines: one action per DNN (and per signal bucket), chosen on the evaluation traces.

*Privileged* references - what a practitioner who had measured every action on
exactly the evaluation traces would hard-code. A learner that does not beat them
adds nothing over a lookup table.

``best_static_dnn``
    For each DNN, among all actions, the one with the least mean device energy
    whose QoS-met rate (latency target and accuracy bound) is within
    ``tolerance`` of the best rate any single action reaches for that DNN
    (:func:`choose_static`). The issue's definition; its criterion is the one
    :meth:`bench.sim.core.Simulator.best_static` uses, per DNN.
``best_static_dnn_signal``
    The same per (DNN, signal bucket). The signal is what the policy observes:
    AutoScale env - Wi-Fi RSSI and LTE RSRP; DVFO env - the uplink bandwidth.
    Each signal is cut into ``n_buckets`` buckets at its quantiles over the fit
    data (terciles by default: computed, not typed); a (DNN, bucket) never seen
    in the fit falls back to the DNN's choice.

Fit data (suite choice): ``fit_scenarios`` x ``fit_seeds`` replayed episodes of
``n_steps`` requests, or each scenario's whole trace when ``n_steps`` is 0 or None
(:mod:`bench.policies.episodes`). The evaluation passes its
scenarios and seeds, so a suite has one table fitted over all its evaluation
traces; by default (only ``seed`` given) the fit is the current cell's episode.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from bench.policies.base import Policy, register
from bench.policies.baselines import WorkloadFromObs, env_kind
from bench.policies.episodes import EpisodeData, collect_episodes

#: the observed signal fields a signal bucket is made of, per env kind
SIGNAL_FIELDS = {"autoscale": ("wifi_dbm", "lte_dbm"), "dvfo": ("bandwidth_mbps",)}


def fit_episodes(env, fit_scenarios: Sequence[str] | None, fit_seeds: Sequence[int] | None, seed: int | None,
                 n_steps: int | None) -> tuple[EpisodeData, ...]:
    """The episodes a fitted baseline learns from (see the module docstring for the defaults)."""
    scenarios = list(fit_scenarios) if fit_scenarios else [env.unwrapped.scenario.name]
    if fit_seeds is None:
        if seed is None:
            raise ValueError("a fitted baseline needs fit_seeds=[...] or seed=<int> (the episode to fit on)")
        fit_seeds = [seed]
    if not n_steps and not fit_scenarios:  # the current cell's episode: as long as the env's
        n_steps = getattr(getattr(env, "spec", None), "max_episode_steps", None)
    return collect_episodes(env, scenarios, list(fit_seeds), n_steps)


def choose_static(energy_sum: np.ndarray, ok_sum: np.ndarray, count: np.ndarray, tolerance: float) -> np.ndarray:
    """Per group (rows of the (G, A) sums), the least-mean-energy action among those whose QoS rate is
    within ``tolerance`` of the group's best; -1 for a group with no requests."""
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = ok_sum / count[:, None]
        energy = energy_sum / count[:, None]
    eligible = rate >= np.nanmax(np.where(count[:, None] > 0, rate, -np.inf), axis=1, keepdims=True) - tolerance
    pick = np.argmin(np.where(eligible, energy, np.inf), axis=1)
    return np.where(count > 0, pick, -1)


def group_sums(episodes: Sequence[EpisodeData], sim, groups: Sequence[np.ndarray], n_groups: int):
    """(G, A) sums of device energy and QoS-met counts, and (G,) counts, over every request's group id."""
    energy, ok = np.zeros((n_groups, sim.A)), np.zeros((n_groups, sim.A))
    count = np.zeros(n_groups)
    for ep, g in zip(episodes, groups):
        out = sim.evaluate(ep.states, None, ep.draws)
        np.add.at(energy, g, out.energy_mj)
        np.add.at(ok, g, out.qos_ok.astype(float))
        np.add.at(count, g, 1.0)
    return energy, ok, count


class BestStaticPerDNN(Policy):
    """Privileged: one action per DNN, optionally per signal bucket (see the module docstring)."""

    name = "best_static_dnn"
    privileged = True

    def __init__(self, env, episodes: Sequence[EpisodeData], tolerance: float = 0.0, signal_buckets: int = 0,
                 fit_key: tuple | None = None):
        from bench.sim.envs import obs_index

        self.label = "best_static_dnn_signal" if signal_buckets else "best_static_dnn"
        self._workload = WorkloadFromObs(env)
        fields = SIGNAL_FIELDS[env_kind(env)] if signal_buckets else ()
        self.signal_idx = [obs_index(env, f) for f in fields]
        # the fit (every action on every fit request: seconds for DVFO's hundreds of actions) is the same for
        # every cell of a suite; ``fit_key`` names what it depends on, so a process fits once per key
        fit = _FITS.get(fit_key) if fit_key is not None else None
        if fit is None:
            fit = self._fit(env.unwrapped.sim, episodes, tolerance, signal_buckets)
            if fit_key is not None:
                _FITS[fit_key] = fit
                while len(_FITS) > _MAX_FITS:
                    _FITS.pop(next(iter(_FITS)))
        self.edges, self.table, self.summary = fit
        self.sizes = [len(e) + 1 for e in self.edges]

    def _fit(self, sim, episodes: Sequence[EpisodeData], tolerance: float, signal_buckets: int):
        """(quantile edges per signal field, (W, buckets) action table, summary frame) from the fit episodes."""
        self.edges = []
        obs = np.concatenate([ep.obs for ep in episodes])
        for j in self.signal_idx:  # quantile edges over the fit data, duplicates dropped
            q = np.quantile(obs[:, j], np.arange(1, signal_buckets) / signal_buckets) if signal_buckets > 1 else []
            self.edges.append(np.unique(np.asarray(q, dtype=float)))
        self.sizes = [len(e) + 1 for e in self.edges]
        n_b = int(np.prod(self.sizes)) if self.sizes else 1
        w = sim.W
        groups = [ep.states.workload * n_b + self._bucket(ep.obs) for ep in episodes]
        e, ok, n = group_sums(episodes, sim, groups, w * n_b)
        per_bucket = choose_static(e, ok, n, tolerance).reshape(w, n_b)
        per_dnn = choose_static(e.reshape(w, n_b, -1).sum(1), ok.reshape(w, n_b, -1).sum(1), n.reshape(w, n_b).sum(1),
                                tolerance)
        pooled = int(choose_static(e.sum(0, keepdims=True), ok.sum(0, keepdims=True), n.sum(keepdims=True),
                                   tolerance)[0])
        per_dnn = np.where(per_dnn < 0, pooled, per_dnn)  # a DNN the fit never requested: the pooled choice
        table = np.where(per_bucket < 0, per_dnn[:, None], per_bucket)  # (W, buckets)
        names = sim.tables.actions["name"].to_numpy()
        summary = pd.DataFrame([{"workload": sim.tables.workloads[i], "bucket": b, "requests": int(n[i * n_b + b]),
                                 "action": int(table[i, b]), "action_name": names[table[i, b]]}
                                for i in range(w) for b in range(n_b)])
        return self.edges, table, summary

    def _bucket(self, obs: np.ndarray) -> np.ndarray:
        obs = np.atleast_2d(obs)
        b = np.zeros(len(obs), dtype=np.int64)
        for j, edges, size in zip(self.signal_idx, self.edges, self.sizes):
            b = b * size + np.searchsorted(edges, obs[:, j].astype(float), side="right")
        return b

    def act(self, obs) -> int:
        return int(self.table[self._workload(obs), int(self._bucket(np.asarray(obs))[0])])

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        return self.table[self._workload.batch(obs), self._bucket(obs)]


#: fitted tables of this process, by what they depend on (:func:`_fit_key`); a suite's cells share one
_FITS: dict[tuple, tuple] = {}
_MAX_FITS = 16


def _fit_key(env, fit_scenarios, fit_seeds, seed, n_steps, tolerance, signal_buckets) -> tuple | None:
    """What a fitted table depends on: the env's class and arguments (its simulator), the fit episodes'
    definition and the criterion; None (no reuse) for an env ``gymnasium.make`` did not build."""
    from bench.policies.episodes import env_recipe

    try:
        recipe = env_recipe(env)
    except ValueError:
        return None
    own = () if fit_scenarios else (env.unwrapped.scenario.name, getattr(getattr(env, "spec", None),
                                                                        "max_episode_steps", None))
    return (recipe, tuple(fit_scenarios or ()), own, None if fit_seeds is None else tuple(int(s) for s in fit_seeds),
            None if fit_seeds is not None else seed, n_steps, float(tolerance), int(signal_buckets))


@register("best_static_dnn", order=70, colour="#17becf", marker="D", label="the best static choice per DNN")
def best_static_dnn(env, fit_scenarios: Sequence[str] | None = None, fit_seeds: Sequence[int] | None = None,
                    seed: int | None = None, n_steps: int | None = None, tolerance: float = 0.0,
                    **_) -> BestStaticPerDNN:
    return BestStaticPerDNN(env, fit_episodes(env, fit_scenarios, fit_seeds, seed, n_steps), tolerance,
                            fit_key=_fit_key(env, fit_scenarios, fit_seeds, seed, n_steps, tolerance, 0))


@register("best_static_dnn_signal", order=80, colour="#0b6e78", marker="D",
          label="the best static choice per DNN and signal bucket")
def best_static_dnn_signal(env, fit_scenarios: Sequence[str] | None = None, fit_seeds: Sequence[int] | None = None,
                           seed: int | None = None, n_steps: int | None = None, tolerance: float = 0.0,
                           n_buckets: int = 3, **_) -> BestStaticPerDNN:
    if int(n_buckets) < 2:
        raise ValueError(f"best_static_dnn_signal: n_buckets must be >= 2, got {n_buckets}")
    return BestStaticPerDNN(env, fit_episodes(env, fit_scenarios, fit_seeds, seed, n_steps), tolerance,
                            signal_buckets=int(n_buckets),
                            fit_key=_fit_key(env, fit_scenarios, fit_seeds, seed, n_steps, tolerance, int(n_buckets)))
