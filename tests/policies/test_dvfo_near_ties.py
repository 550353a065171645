"""DVFO learnability on near-tied actions (issue 23, docs/dvfo.md rounds 3 and 6).

On the Jetson, DVFO's greedy choice wanders over near-tied local actions (CPU 1344 vs 1907 MHz for ViT-B/16,
a few % apart) with the fields its own previous action sets (thinking-while-moving's previous action), which
do not change the reward. This env has the same structure with a known optimum: a context bit decides which
of 24 actions is best (by a 3 % gap under reward noise 5x larger), and the observation also carries the previous
action, which the reward ignores. The optimal greedy policy picks the same action for every previous action.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from bench.policies.base import Transition
from bench.policies.dvfo import DVFOConfig, DVFOLearner

N_ACTIONS, BEST = 24, (3, 17)
GAP, NOISE = 0.03, 0.15


@functools.lru_cache(maxsize=None)  # each training runs once per session
def _train_on_near_ties(learning_rate_end: float | None, seed: int = 0, steps: int = 6_000,
                        act_average_fraction: float = 0.0):
    """Train on the near-tie bandit; return (share of (context, previous action) pairs where the greedy action is
    the best one, mean regret of the greedy action over those pairs)."""
    rng = np.random.default_rng(1000 + seed)
    cost = np.stack([1.0 + GAP + rng.uniform(0.0, 0.3, N_ACTIONS) for _ in BEST])
    for ctx, best in enumerate(BEST):
        cost[ctx, best] = 1.0
    config = DVFOConfig.ci(seed=seed, total_steps=steps, learning_starts=500, exploration_fraction=0.1,
                           learning_rate=5e-4, learning_rate_end=learning_rate_end, gamma=0.1, batch_size=64,
                           train_frequency=4, hidden_sizes=(64, 64), act_average_fraction=act_average_fraction)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        learner = DVFOLearner(config, obs_dim=2, n_actions=N_ACTIONS)
        ctx, obs = 0, np.array([0.0, 0.0], np.float32)
        for _ in range(steps):
            action = learner.explore(obs)
            reward = -cost[ctx, action] + NOISE * rng.standard_normal()
            ctx = int(rng.integers(len(BEST)))
            nxt = np.array([ctx, action / (N_ACTIONS - 1)], np.float32)  # the previous action, scaled as DVFO's
            learner.update(Transition(obs, action, reward, nxt, False, False, {}))
            obs = nxt
        grid = np.array([[c, p / (N_ACTIONS - 1)] for c in range(len(BEST)) for p in range(N_ACTIONS)], np.float32)
        greedy = learner.act_batch(grid).reshape(len(BEST), N_ACTIONS)
    finally:
        torch.set_num_threads(threads)
    hit = float(np.mean([greedy[c] == BEST[c] for c in range(len(BEST))]))
    regret = float(np.mean([cost[c, greedy[c]] - 1.0 for c in range(len(BEST))]))
    return hit, regret


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="known DVFO flaw, reduced but not fixed (issue 23, docs/dvfo.md rounds 6 and 8): the greedy "
                          "choice among near-tied actions still wanders with the previous-action field on seed 0")
def test_greedy_choice_is_the_best_of_near_tied_actions_whatever_the_previous_action():
    """The shipped learner (constant learning rate, greedy policy on the mean of the last 10 % of the weights:
    params.yaml ``train.dvfo.act_average_fraction``) should pick the best action for every value of the
    previous-action field, which the reward ignores. Without the averaging it does so on 48 % of the pairs on
    seed 0 (50 / 71 % on seeds 1 / 2); with it 85 % (98 / 96 %, docs/dvfo.md round 8): better, not yet the bar.
    Strict: when a learner change makes this pass, the xfail must go."""
    from bench.config import load_params
    hit, regret = _train_on_near_ties(learning_rate_end=None,
                                      act_average_fraction=load_params().train.dvfo.act_average_fraction)
    assert hit >= 0.95, f"greedy action is the best on only {hit:.0%} of (context, previous action) pairs"
    assert regret <= 0.1 * GAP


def test_weight_averaging_lowers_the_near_tie_regret():
    """The round-8 change (act on the mean of the last 10 % of the weights) on the same bandit and seeds: mean
    regret over seeds 0-2 falls from 0.024 to 0.004 (docs/dvfo.md round 8); asserted with margin (at least
    halved), so it fails on the plain last weights."""
    plain = [_train_on_near_ties(None, seed)[1] for seed in (0, 1, 2)]
    averaged = [_train_on_near_ties(None, seed, act_average_fraction=0.1)[1] for seed in (0, 1, 2)]
    assert np.mean(averaged) <= 0.5 * np.mean(plain), (plain, averaged)
