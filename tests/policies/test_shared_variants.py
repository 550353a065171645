"""The evaluate stage computes each episode's candidate columns once (issue 25): the hindsight bound's favourable
states (:func:`bench.policies.bound.episode_variants`) feed both the greedy oracle's plan (their first state is the
fresh carry the plan would batch itself) and the bound's search. Handed over for the same episode they give the same
plan and the same bound; for another episode (seed) they are another episode's columns, and a shape that is not the
episode's is refused."""

import gymnasium as gym
import numpy as np
import pytest

import bench.sim  # noqa: F401  (registers the envs)
from bench.policies.bound import episode_variants, hindsight_bound
from bench.policies.oracle import greedy_actions
from bench.sim.objective import Objective

N = 80


@pytest.mark.parametrize("env_id, scenario, kw", [
    ("bench/AutoScale-v0", "cpu_corunner", {}),
    ("bench/DVFO-v0", "dvfo_bandwidth_walk", {"n_cpu_levels": 2, "n_gpu_levels": 2, "n_mem_levels": 2, "xi_levels": 6}),
])
def test_the_episodes_columns_handed_over_give_the_plan_and_bound_computed_apart(env_id, scenario, kw):
    env = gym.make(env_id, scenario=scenario, max_episode_steps=N, **kw)
    env.reset(seed=3)
    v = episode_variants(env, N)
    plan = greedy_actions(env, N, (v.energy_mj[0], v.qos_ok[0]))
    np.testing.assert_array_equal(plan, greedy_actions(env, N))
    got, apart = hindsight_bound(env, Objective(500.0), N, variants=v), hindsight_bound(env, Objective(500.0), N)
    assert got.summary() == apart.summary()
    for name in ("lagrangian", "qos_first"):
        np.testing.assert_array_equal(got.schedule[name], apart.schedule[name])
    # another seed: another episode, other columns (the inputs they depend on are the episode's)
    env.reset(seed=4)
    other = episode_variants(env, N)
    assert not np.array_equal(other.energy_mj, v.energy_mj)
    with pytest.raises(ValueError, match="variants"):
        hindsight_bound(env, Objective(500.0), N - 1, variants=other)
    with pytest.raises(ValueError, match="neutral"):
        greedy_actions(env, N, (v.energy_mj[0][:, :-1], v.qos_ok[0][:, :-1]))


def test_another_episodes_columns_change_the_plan():
    """The plan does read the columns it is given (a mutant ignoring them would pass the test above)."""
    env = gym.make("bench/AutoScale-v0", scenario="mobility_walk", max_episode_steps=N)
    env.reset(seed=3)
    v = episode_variants(env, N)
    e, ok = v.energy_mj[0].copy(), v.qos_ok[0].copy()
    ok[:] = True
    e[:, 0] = -1.0  # every request's cheapest action meeting QoS from the fresh carry: action 0
    plan = greedy_actions(env, N, (e, ok))
    assert (plan == 0).sum() > (greedy_actions(env, N) == 0).sum()
