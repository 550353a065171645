"""The greedy oracle's decisions computed for a whole episode at once equal its step-by-step decisions.

The evaluation's greedy-oracle cells and the fitted baselines' replays (:func:`bench.policies.episodes.replay`)
play :class:`~bench.policies.oracle.PlannedGreedyOracle` (one kernel pass per request on a copy of the episode's
kernel) instead of :class:`~bench.policies.oracle.GreedyOracle` (the simulator's full evaluate on the env's synced
states per request); their rows must be the same bytes.
"""

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.policies.oracle import GreedyOracle, PlannedGreedyOracle, greedy_actions
from bench.policies.rollout import evaluate_policy

N = 120


def _same_rows(env, seed: int, n: int) -> None:
    old = evaluate_policy(GreedyOracle(env), env, None, [seed], n, label="greedy_oracle")
    new = evaluate_policy(PlannedGreedyOracle(env, n), env, None, [seed], n, label="greedy_oracle")
    assert len(new) == len(old) > 0
    for col in old.columns:  # every column, exactly: the plan replays the oracle's own choices
        np.testing.assert_array_equal(new[col].to_numpy(), old[col].to_numpy(), err_msg=col)


def test_planned_oracle_plays_the_step_by_step_oracles_episode(any_env):
    _same_rows(any_env, 7, N)


@pytest.mark.parametrize("env_id, scenario, kw", [
    # a co-runner (thermal throttling, busy CPU) and a walk (radio tails, promotions) on the full action sets
    ("bench/AutoScale-v0", "cpu_corunner", {}),
    ("bench/AutoScale-v0", "mobility_walk", {}),
    ("bench/DVFO-v0", "dvfo_bandwidth_walk", {"n_cpu_levels": 2, "n_gpu_levels": 2, "n_mem_levels": 2,
                                             "xi_levels": 6}),
])
def test_planned_oracle_on_queues_throttling_and_radio_tails(env_id, scenario, kw):
    env = gym.make(env_id, scenario=scenario, max_episode_steps=N, **kw)
    _same_rows(env, 3, N)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40))
def test_greedy_actions_equal_the_oracles_choices_on_any_episode_prefix(as_env, seed, n):
    as_env.reset(seed=seed)
    plan = greedy_actions(as_env, n)
    obs, _ = as_env.reset(seed=seed)
    oracle, acts = GreedyOracle(as_env), []
    for _ in range(len(plan)):
        acts.append(oracle.act(obs))
        obs, *_ = as_env.step(acts[-1])
    assert len(plan) == min(n, as_env.unwrapped._T)
    np.testing.assert_array_equal(plan, np.asarray(acts, dtype=np.int64))


def test_greedy_actions_leave_the_env_where_it_was(as_env):
    obs, _ = as_env.reset(seed=11)
    before = as_env.unwrapped._kernel.snapshot()
    greedy_actions(as_env, 50)
    assert as_env.unwrapped._kernel.snapshot() == before
    assert as_env.unwrapped.episode().step == 0
