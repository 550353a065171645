"""The learners' rewards derive from the declared objective (params.yaml `objective`, bench/sim/objective.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import bench.sim  # noqa: F401  (registers the envs)
from bench.config import load_params
from bench.sim.envs import AUTOSCALE_ID, DVFO_ID

LAM = 700.0


@pytest.mark.parametrize("env_id,scenario", [(AUTOSCALE_ID, "heldout_cell_edge"), (DVFO_ID, "dvfo_bandwidth_walk")])
def test_reward_is_minus_the_objective_per_request(env_id, scenario):
    env = gym.make(env_id, scenario=scenario, max_episode_steps=80, violation_cost_mj=LAM)
    env.reset(seed=3)
    u = env.unwrapped
    rng = np.random.default_rng(3)
    misses = 0
    for _ in range(80):
        _, r, _, trunc, info = env.step(int(rng.integers(0, u.sim.A)))
        j = info["energy_mj"] + LAM * (not info["qos_ok"])
        misses += not info["qos_ok"]
        if env_id == AUTOSCALE_ID:
            assert r == pytest.approx(-j / 1000.0, rel=1e-12)
        else:  # per request in units of the workload's local-only energy (w_time = 0)
            w = u.sim.tables.workload_index([info["workload"]])[0]
            assert r == pytest.approx(-j / u.e_ref_mj[w], rel=1e-12)
        if trunc:
            break
    assert misses > 0  # the episode exercised the violation term


@pytest.mark.parametrize("env_id,scenario", [(AUTOSCALE_ID, "random_walk"), (DVFO_ID, "dvfo_bandwidth_walk")])
def test_vector_env_rewards_match_the_single_env_with_the_objective(env_id, scenario):
    kw = dict(scenario=scenario, max_episode_steps=40, violation_cost_mj=LAM)
    sync = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", **kw)
    vec = gym.make_vec(env_id, num_envs=2, **kw)
    sync.reset(seed=5)
    vec.reset(seed=5)
    rng = np.random.default_rng(5)
    for _ in range(60):
        act = rng.integers(0, vec.single_action_space.n, 2)
        assert data_equivalence(sync.step(act)[1], vec.step(act)[1])


def test_the_pipeline_learners_get_lambda_from_params():
    p = load_params()
    lam = p.objective.violation_cost_mj
    assert p.train.autoscale.env_kwargs()["violation_cost_mj"] == lam
    assert p.train.dvfo.env_kwargs()["violation_cost_mj"] == lam
