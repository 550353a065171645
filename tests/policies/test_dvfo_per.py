"""DVFO's prioritised replay (a documented, configurable sample-efficiency choice)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.policies.dvfo import DVFOConfig, ReplayBuffer


def _filled(n=50, dim=3) -> ReplayBuffer:
    buf = ReplayBuffer(64, dim)
    for i in range(n):
        buf.add(np.full(dim, i, dtype=np.float32), i % 4, float(i), np.zeros(dim, dtype=np.float32), False)
    return buf


def test_new_transitions_start_at_the_highest_priority_and_high_td_is_drawn_more():
    buf = _filled()
    assert np.all(buf.priority[:50] == 1.0) and np.all(buf.priority[50:] == 0.0)
    td = np.full(50, 0.01)
    td[7] = 100.0
    buf.set_priorities(np.arange(50), td, alpha=0.6, eps=1e-3)
    rng = np.random.default_rng(0)
    (_, _, rew, _, _), idx, w = buf.sample_prioritized(2000, rng, beta=0.4)
    share = float(np.mean(idx == 7))
    expected = buf.priority[7] / buf.priority[:50].sum()
    assert abs(share - expected) < 0.05 and share > 0.5  # drawn in proportion to its priority
    assert np.allclose(rew.numpy(), idx)  # the batch is the drawn transitions
    # importance weights: the most drawn transition is weighted least, max weight 1
    assert float(w.max()) == pytest.approx(1.0) and float(w[idx == 7].max()) < float(w[idx != 7].min())
    buf.add(np.zeros(3, dtype=np.float32), 0, 0.0, np.zeros(3, dtype=np.float32), False)
    assert buf.priority[50] == buf.max_priority == pytest.approx((100.0 + 1e-3) ** 0.6)


def test_alpha_zero_is_uniform_and_beta_one_undoes_the_bias():
    buf = _filled()
    buf.set_priorities(np.arange(50), np.linspace(0, 10, 50), alpha=0.0, eps=1e-3)
    (_, _, _, _, _), idx, w = buf.sample_prioritized(5000, np.random.default_rng(1), beta=1.0)
    counts = np.bincount(idx, minlength=50)
    assert counts.min() > 50 and np.allclose(w.numpy(), 1.0)


def test_config_checks_the_replay_exponents():
    with pytest.raises(ValueError, match="per_alpha"):
        DVFOConfig(per_alpha=1.5)
    with pytest.raises(ValueError, match="per_eps"):
        DVFOConfig(per_eps=0.0)


def test_training_with_prioritised_replay_is_reproducible():
    import torch

    from bench.policies.dvfo import train

    cfg = DVFOConfig.ci(total_steps=700, learning_starts=200, prioritized_replay=True,
                        scenarios=("dvfo_trickle_5mbps",), max_episode_steps=100)
    a, b = train(cfg).learner, train(cfg).learner
    for pa, pb in zip(a.q.parameters(), b.q.parameters()):
        assert torch.equal(pa, pb)
    assert a.buffer.max_priority != 1.0  # the TD errors reached the priorities
