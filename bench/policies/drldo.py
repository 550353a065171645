"""DRLDO on the DVFO env - DRL-based DNN offloading without DVFS, one of DVFO's published baselines.

**Confirmed.** DVFO (Zhang et al., TMC 2024, and the authors' IPSN 2023 poster)
names DRLDO as a deep-reinforcement-learning DNN offloading baseline and reports
DVFO's energy 18 % lower than DRLDO's at 5 Mbit/s (poster). No public text
describing DRLDO itself was found.

**Suite choice (documented).** DRLDO = DVFO's own DQN (same network, replay,
Double-DQN target and hyper-parameters, :mod:`bench.policies.dvfo`) restricted to
offloading decisions: its actions are the offloaded share xi at the edge's
highest CPU, GPU and memory frequencies (no frequency scaling); it observes the
same state as DVFO. Trained on the DVFO run's *training* scenarios with a seed
of its own, for the same number of steps as DVFO unless told otherwise - so the
comparison with DVFO isolates what DVFS adds.

Training happens when the policy is built (cached per process: a suite's cells
in one worker train once; same config -> same weights), or a saved learner is
loaded with ``path=`` (safetensors + JSON, :meth:`DVFOLearner.save`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from bench.policies.base import Policy, register
from bench.policies.baselines import _dvfo_top, env_kind


def offload_actions(env) -> np.ndarray:
    """DVFO env: the action indices at the highest frequencies, in increasing xi (DRLDO's action set)."""
    acts = env.unwrapped.action_table
    top = np.asarray(_dvfo_top(acts), dtype=np.int64)
    return top[np.argsort(acts.loc[top, "xi"].to_numpy(), kind="stable")]


class OffloadOnly(gym.ActionWrapper):
    """Discrete(n_xi) -> the DVFO env's action with that xi at the highest frequencies."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.actions = offload_actions(env)
        self.action_space = gym.spaces.Discrete(len(self.actions))

    def action(self, action):
        return int(self.actions[int(action)])


class DRLDO(Policy):
    """A DQN over the offload share at the top frequencies; acts on the full DVFO env's observations."""

    name = "drldo"

    def __init__(self, env, learner):
        if env_kind(env) != "dvfo":
            raise ValueError("drldo applies to the DVFO env only (it is one of DVFO's baselines)")
        self.actions = offload_actions(env)
        if learner.n_actions != len(self.actions):
            raise ValueError(f"drldo learner has {learner.n_actions} actions; the env offers {len(self.actions)} "
                             f"xi levels at the top frequencies")
        self.learner = learner

    def act(self, obs) -> int:
        return int(self.actions[self.learner.act(obs)])

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        return self.actions[self.learner.act_batch(obs)]


@lru_cache(maxsize=2)
def _trained(config_json: str):
    from bench.policies.dvfo import DVFOConfig, train

    return train(DVFOConfig.from_dict(json.loads(config_json)), wrap_env=OffloadOnly).learner


def train_drldo(config: dict[str, Any]):
    """Train (or fetch from this process's cache) DRLDO's DQN for a DVFOConfig mapping."""
    return _trained(json.dumps(config, sort_keys=True, default=list))


@register("drldo", order=110, colour="#8c564b", marker="v", label="DRLDO")
def drldo(env, path: str | Path | None = None, config: dict[str, Any] | None = None,
          train_scenarios: Sequence[str] | None = None, train_seed: int | None = None,
          total_steps: int | None = None, **_) -> DRLDO:
    """A saved DRLDO (``path=``) or one trained on ``train_scenarios`` with ``train_seed`` (DVFOConfig ``config``)."""
    from bench.policies.dvfo import DVFOConfig, DVFOLearner

    if path is not None:
        return DRLDO(env, DVFOLearner.load(path))
    if train_seed is None:
        raise ValueError("drldo: pass path=<saved learner> or train_seed=<int> (and train_scenarios, config)")
    fields = dict(config or {})
    fields["seed"] = int(train_seed)
    if train_scenarios:
        fields["scenarios"] = list(train_scenarios)
    if total_steps is not None:
        fields["total_steps"] = int(total_steps)
    cfg = DVFOConfig.from_dict(fields)  # validates the fields
    kwargs = {k: v for k, v in dict(getattr(env.spec, "kwargs", {}) or {}).items() if k != "scenario"}
    mismatch = {k: (v, cfg.env_kwargs()[k]) for k, v in kwargs.items()
                if k in cfg.env_kwargs() and json.dumps(v, default=list) != json.dumps(cfg.env_kwargs()[k], default=list)}
    if mismatch:
        raise ValueError(f"drldo: its training config differs from the env's arguments {mismatch}; pass the DVFO "
                         f"run's config")
    return DRLDO(env, train_drldo(cfg.to_dict()))
