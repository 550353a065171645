"""DVFO's weight-averaged greedy policy (``act_average_fraction``, issue 23, docs/dvfo.md round 8).

The greedy policy acts on the uniform average of the online weights over the gradient steps of the last fraction
of training; the training trajectory itself must not change, and the same seed must give the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.policies.base import Transition
from bench.policies.dvfo import DVFOConfig, DVFOLearner, train

SHORT = dict(total_steps=800, learning_starts=200, train_frequency=1, max_episode_steps=200, batch_size=32,
             hidden_sizes=(32, 32), n_cpu_levels=2, n_gpu_levels=2, n_mem_levels=2, xi_levels=(0.0, 1.0))


def _params(learner: DVFOLearner) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in learner.q.parameters()]


def _close(a: list[np.ndarray], b: list[np.ndarray], tol: float) -> bool:
    return all(np.allclose(x, y, rtol=0.0, atol=tol) for x, y in zip(a, b, strict=True))


def test_greedy_weights_are_the_mean_of_the_online_weights_over_the_last_steps():
    """Synthetic transitions, a gradient step every env step: after the last step the online and target networks
    hold the mean of the online weights after each gradient step of the last 25 % (steps 151-200)."""
    c = DVFOConfig.ci(total_steps=200, learning_starts=50, train_frequency=1, batch_size=16, hidden_sizes=(8,),
                      act_average_fraction=0.25)
    learner = DVFOLearner(c, obs_dim=2, n_actions=3)
    rng = np.random.default_rng(0)
    swap, seen = learner._act_on_average, []

    def record_then_swap():
        seen.append(_params(learner))  # the last step's online weights, before the average replaces them
        swap()
    learner._act_on_average = record_then_swap
    for step in range(1, c.total_steps + 1):
        obs, nxt = rng.normal(size=2).astype(np.float32), rng.normal(size=2).astype(np.float32)
        learner.update(Transition(obs, int(rng.integers(3)), float(rng.normal()), nxt, False, False, {}))
        if 150 < step < c.total_steps:
            seen.append(_params(learner))
    assert len(seen) == 50
    want = [np.mean([s[i] for s in seen], axis=0) for i in range(len(seen[0]))]
    assert _close(_params(learner), want, 1e-6)
    assert _close([p.detach().numpy() for p in learner.target.parameters()], want, 1e-6)
    # the average differs from the last weights (the test would pass trivially if nothing moved)
    assert not _close(seen[-1], want, 1e-6)


@pytest.fixture(scope="module")
def pair():
    """The same seed trained without and with averaging (the latter keeps its pre-swap weights)."""
    plain = train(DVFOConfig.ci(**SHORT))
    config = DVFOConfig.ci(**SHORT, act_average_fraction=0.3)
    before: list = []
    original = DVFOLearner._act_on_average

    def keep(self):
        before.append(_params(self))
        original(self)
    DVFOLearner._act_on_average = keep
    try:
        averaged = train(config)
    finally:
        DVFOLearner._act_on_average = original
    return plain, averaged, before[0]


def test_averaging_leaves_the_training_trajectory_unchanged(pair):
    """No random draw and no online update changes: the same curve, and the online weights before the swap are
    the plain run's final weights."""
    plain, averaged, before = pair
    assert np.allclose(plain.curve["reward"], averaged.curve["reward"], rtol=0, atol=1e-12)
    assert _close(before, _params(plain.learner), 0.0)
    assert not _close(_params(averaged.learner), _params(plain.learner), 1e-7)


def test_averaged_training_is_deterministic_for_a_seed(pair):
    _, averaged, _ = pair
    again = train(DVFOConfig.ci(**SHORT, act_average_fraction=0.3))
    assert _close(_params(again.learner), _params(averaged.learner), 0.0)
    obs = np.zeros((4, averaged.learner.obs_dim), np.float32)
    assert (again.learner.act_batch(obs) == averaged.learner.act_batch(obs)).all()


def test_saved_averaged_learner_acts_like_the_trained_one(pair, tmp_path):
    _, averaged, _ = pair
    loaded = DVFOLearner.load(averaged.learner.save(tmp_path / "p"))
    obs = np.random.default_rng(1).normal(size=(16, averaged.learner.obs_dim)).astype(np.float32)
    assert (loaded.act_batch(obs) == averaged.learner.act_batch(obs)).all()


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_act_average_fraction_outside_0_1_is_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        DVFOConfig(act_average_fraction=bad)
