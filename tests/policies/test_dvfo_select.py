"""DVFO's choice among the last weight averages (``select_snapshots``, issue 23, docs/dvfo.md round 10).

With ``act_average_fraction`` f and ``select_snapshots`` K, the online weights averaged over each of the last K
windows of f·total_steps are candidates; the one with the lowest objective over one greedy episode of each
training scenario acts. The training trajectory must not change, the last window's candidate must be exactly what
``select_snapshots: 1`` acts on, and the choice must go to the candidate that scores best.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from bench.policies.dvfo import DVFOConfig, DVFOLearner, select_snapshot, train

SHORT = dict(total_steps=900, learning_starts=200, train_frequency=1, max_episode_steps=150, batch_size=32,
             hidden_sizes=(32, 32), n_cpu_levels=2, n_gpu_levels=2, n_mem_levels=2, xi_levels=(0.0, 1.0),
             scenarios=["dvfo_trickle_5mbps", "dvfo_bandwidth_sweep"], violation_cost_mj=1000.0)


def _params(learner: DVFOLearner) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for p in learner.q.parameters()]


@pytest.fixture(scope="module")
def pair():
    """The same seed with one window (the shipped acting rule) and with a choice among three."""
    one = train(DVFOConfig.ci(**SHORT, act_average_fraction=0.2))
    three = train(DVFOConfig.ci(**SHORT, act_average_fraction=0.2, select_snapshots=3))
    return one, three


def test_the_choice_leaves_the_trajectory_alone_and_scores_every_window(pair):
    one, three = pair
    assert np.allclose(one.curve["reward"], three.curve["reward"], rtol=0, atol=0)
    sel = three.learner.selection
    assert len(sel["scores"]) == 3 and all(np.isfinite(sel["scores"]))
    assert sel["scores"][sel["chosen"]] == min(sel["scores"])
    assert one.learner.selection is None  # one window: nothing to choose


def test_the_last_window_is_the_one_window_policy(pair):
    """Where the last window wins, the weights are byte-identical to the one-window run's; where an earlier one
    wins, they differ (the windows' averages are different weights)."""
    one, three = pair
    same = all(np.array_equal(a, b) for a, b in zip(_params(one.learner), _params(three.learner), strict=True))
    assert same == (three.learner.selection["chosen"] == 2)


class _TwoArms(gym.Env):
    """Action 0 costs 1 mJ, action 1 costs 2 mJ and misses its target every tenth step; 20 steps an episode."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        info = {"energy_mj": 1.0 + float(action), "qos_ok": not (action == 1 and self.t % 10 == 0)}
        return np.zeros(2, np.float32), -info["energy_mj"], False, self.t >= 20, info


def _learner_preferring(arm: int) -> list[torch.Tensor]:
    return [torch.zeros(2, 2), torch.tensor([0.0, 1.0] if arm == 1 else [1.0, 0.0])]


@pytest.mark.parametrize("order", [(1, 0, 1), (0, 1, 1), (1, 1, 0)])
def test_the_cheapest_candidate_acts(order):
    """Three candidates whose greedy choice is a known arm: the one playing the cheap arm is chosen and becomes
    the online and the target network."""
    c = DVFOConfig.ci(hidden_sizes=(2,), act_average_fraction=0.1, select_snapshots=3, violation_cost_mj=100.0)
    learner = DVFOLearner(c, obs_dim=2, n_actions=2)
    with torch.no_grad():  # a hidden layer that passes nothing: the output layer's bias decides
        learner.q.net[0].weight.zero_()
        learner.q.net[0].bias.zero_()
        learner.target.load_state_dict(learner.q.state_dict())
    hidden = [p.detach().clone() for p in learner._params[:2]]
    cands = [hidden + _learner_preferring(arm) for arm in order]
    learner._snapshots = cands[:2]
    with torch.no_grad():
        torch._foreach_copy_(learner._params, cands[2])
    sel = select_snapshot(learner, {"a": _TwoArms(), "b": _TwoArms()}, np.random.default_rng(0))
    assert sel["chosen"] == order.index(0)
    assert sel["scores"][sel["chosen"]] == pytest.approx(1.0)
    assert max(sel["scores"]) == pytest.approx(2.0 + 100.0 * 0.1)
    assert learner.act(np.zeros(2, np.float32)) == 0
    assert learner.target(torch.zeros(1, 2)).argmax().item() == 0
    assert learner._snapshots == []


def test_a_tie_goes_to_the_later_window():
    c = DVFOConfig.ci(hidden_sizes=(2,), act_average_fraction=0.1, select_snapshots=2)
    learner = DVFOLearner(c, obs_dim=2, n_actions=2)
    learner._snapshots = [[p.detach().clone() for p in learner._params]]  # the same weights twice
    assert select_snapshot(learner, {"a": _TwoArms()}, np.random.default_rng(0))["chosen"] == 1


@pytest.mark.parametrize("bad", [dict(select_snapshots=2), dict(select_snapshots=0),
                                 dict(select_snapshots=11, act_average_fraction=0.1)])
def test_a_choice_without_windows_to_choose_from_is_refused(bad):
    with pytest.raises((ValueError, TypeError)):
        DVFOConfig(**bad)
