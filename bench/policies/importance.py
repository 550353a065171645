"""Which observation fields a policy actually uses: permutation importance on evaluation episodes.

The policy is rolled out greedily on ``scenarios`` x ``seeds`` (the evaluation
set); its observations, the realised states and draws are kept. Then, for each
named observation field, the field's column is shuffled across all requests
(``n_repeats`` times, seeded), the policy re-decides on the shuffled
observations, and the outcomes of its new choices are recomputed under the same
states and draws (:meth:`bench.sim.core.Simulator.evaluate`). Reported per field
(mean and standard deviation over repeats):

* ``decisions_changed`` - share of requests whose action changes (ranked by it):
  the direct measure of how much the policy's choices depend on the field;
* ``energy_change`` - relative change of mean device energy per inference;
* ``qos_violation_change`` - change of the QoS-violation rate (absolute).

A field the policy ignores (or that never varies in the evaluation set, e.g. a
GPU load no scenario scripts) scores 0. Outcomes are the simulator's per-request
ones (the DVFO env's queueing wait is not re-simulated for the shuffled choices;
the decisions are the policy's own on its own rollout's observations).
"""

from __future__ import annotations

from dataclasses import fields as dc_fields
from typing import Sequence

import gymnasium as gym
import json
import numpy as np
import pandas as pd

from bench.policies.base import Policy
from bench.policies.episodes import env_recipe
from bench.sim.core import Draws, States


def act_batch(policy: Policy, obs: np.ndarray) -> np.ndarray:
    """The policy's greedy actions for a batch (its ``act_batch`` when it has one, else one by one)."""
    if hasattr(policy, "act_batch"):
        return np.asarray(policy.act_batch(obs), dtype=np.int64)
    return np.array([policy.act(o) for o in obs], dtype=np.int64)


def _concat(items, cls):
    return cls(**{f.name: np.concatenate([getattr(x, f.name) for x in items]) for f in dc_fields(cls)})


def rollout(policy: Policy, env, scenarios: Sequence[str], seeds: Sequence[int], n_steps: int | None):
    """(obs (N, D), states, draws) of the policy's greedy rollouts on envs built like ``env``
    (``n_steps`` requests each; 0 or None: each scenario's whole trace)."""
    from bench.policies.episodes import scenario_steps

    env_id, kwargs_json = env_recipe(env)
    obs_rows, states, draws = [], [], []
    for sc in scenarios:
        limit = int(n_steps or scenario_steps(sc))
        e = gym.make(env_id, scenario=sc, max_episode_steps=limit, **json.loads(kwargs_json))
        for seed in seeds:
            obs, _ = e.reset(seed=int(seed))
            policy.reset()
            rows = []
            for _ in range(limit):
                rows.append(obs)
                obs, _, term, trunc, _ = e.step(int(policy.act(obs)))
                if term or trunc:
                    break
            ep = e.unwrapped.episode()  # read after the rollout: any carried state is the policy's own
            idx = np.arange(len(rows))
            obs_rows.append(np.asarray(rows, dtype=np.float32))
            states.append(ep.states.take(idx))
            draws.append(ep.draws.take(idx))
        e.close()
    return np.concatenate(obs_rows), _concat(states, States), _concat(draws, Draws)


def permutation_importance(policy: Policy, env, scenarios: Sequence[str], seeds: Sequence[int], n_steps: int | None,
                           n_repeats: int = 5, seed: int = 0, rolled: tuple | None = None) -> pd.DataFrame:
    """One row per observation field, ranked by ``decisions_changed`` (see the module docstring).

    ``rolled``: :func:`rollout` of these arguments when the caller has it (the evaluation's learner cells play
    exactly these episodes: :func:`bench.pipeline.evaluate.run_evaluation`), instead of rolling the policy out again."""
    from bench.sim.envs import obs_fields

    names = obs_fields(env)
    sim = env.unwrapped.sim
    obs, states, draws = rolled if rolled is not None else rollout(policy, env, scenarios, seeds, n_steps)
    base = act_batch(policy, obs)
    out0 = sim.evaluate(states, base, draws)
    e0, v0 = float(out0.energy_mj.mean()), float(1.0 - out0.qos_ok.mean())
    rng = np.random.default_rng(seed)
    rows = []
    for j, name in enumerate(names):
        reps = []
        for _ in range(int(n_repeats)):
            x = obs.copy()
            x[:, j] = x[rng.permutation(len(x)), j]
            a = act_batch(policy, x)
            out = sim.evaluate(states, a, draws)
            reps.append(((a != base).mean(), out.energy_mj.mean() / e0 - 1.0, (1.0 - out.qos_ok.mean()) - v0))
        r = np.asarray(reps)
        rows.append({"feature": name, "decisions_changed": r[:, 0].mean(), "decisions_changed_std": r[:, 0].std(),
                     "energy_change": r[:, 1].mean(), "energy_change_std": r[:, 1].std(),
                     "qos_violation_change": r[:, 2].mean(), "qos_violation_change_std": r[:, 2].std(),
                     "feature_std": float(obs[:, j].std()), "n_requests": len(obs), "n_repeats": int(n_repeats)})
    df = pd.DataFrame(rows).sort_values(["decisions_changed", "feature"], ascending=[False, True], kind="stable")
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df.reset_index(drop=True)
