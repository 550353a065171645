"""Episodes of other scenarios and seeds, for baselines fitted on data (hindsight statics, the distilled rule).

:func:`collect_episodes` replays, for each (scenario, seed), exactly the episode
``evaluate_policy`` would play (``env.reset(seed=seed)`` on an env of the same
class and arguments), rolls the per-request oracle through it and keeps, per
request, the observation the oracle saw, the realised state and draw, and the
oracle's action. Outcomes of any action can then be recomputed in batch with
:meth:`bench.sim.core.Simulator.evaluate` (nothing of shape requests x actions is
kept: DVFO has hundreds of actions).

Results are cached per process (the key is the env's id and arguments, the
scenarios, seeds and length), so a suite's cells running in one worker fit once.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Sequence

import gymnasium as gym
import numpy as np

from bench.sim.core import Draws, States


@dataclass(frozen=True)
class EpisodeData:
    """One replayed episode: per request the oracle's observation, state, draw and action."""

    scenario: str
    seed: int
    obs: np.ndarray  # (N, obs_dim) float32, observations along the oracle's rollout
    states: States
    draws: Draws
    oracle: np.ndarray  # (N,) the oracle's action (Simulator.oracle semantics)


def env_recipe(env) -> tuple[str, str]:
    """(env id, JSON of its constructor arguments without the scenario) of a ``gymnasium.make`` env."""
    spec = getattr(env, "spec", None) or getattr(env.unwrapped, "spec", None)
    if spec is None:
        raise ValueError("fitting on other scenarios needs an env made with gymnasium.make (it has no spec to "
                         "rebuild it from); pass fit_seeds=None to fit on the current episode instead")
    kwargs = {k: v for k, v in dict(spec.kwargs).items() if k != "scenario"}
    return spec.id, json.dumps(kwargs, sort_keys=True, default=list)


def collect_episodes(env, scenarios: Sequence[str], seeds: Sequence[int],
                     n_steps: int | None) -> tuple[EpisodeData, ...]:
    """Replay ``scenarios`` x ``seeds`` on envs built like ``env`` (cached): the first ``n_steps`` requests of
    each, or (``n_steps`` None or 0) each scenario's whole trace."""
    key = _key(env, scenarios, seeds, n_steps)
    if key in _SUPPLIED:  # rolled out already (the evaluation's greedy-oracle cells: the same episodes)
        return _SUPPLIED[key]
    return _collect(*key)


def _key(env, scenarios: Sequence[str], seeds: Sequence[int], n_steps: int | None) -> tuple:
    env_id, kwargs_json = env_recipe(env)
    return env_id, kwargs_json, tuple(str(s) for s in scenarios), tuple(int(s) for s in seeds), int(n_steps or 0)


#: episodes handed in by :func:`supplied` (by the same key as :func:`_collect`'s cache)
_SUPPLIED: dict[tuple, tuple[EpisodeData, ...]] = {}


@contextlib.contextmanager
def supplied(env, scenarios: Sequence[str], seeds: Sequence[int], n_steps: int | None,
             episodes: Sequence[EpisodeData]) -> Iterator[None]:
    """Within the block, :func:`collect_episodes` of exactly these arguments returns ``episodes`` instead of
    replaying them: the caller rolled the greedy oracle through the same episodes already (the evaluation's
    ``greedy_oracle`` cells: ``env.reset(seed)`` on an env of the same class and arguments, the oracle acting
    until the episode ends), so :func:`replay` would compute the same arrays again. ``episodes`` must be in
    :func:`_collect`'s order (scenario-major, then seed) and each as long as :func:`_collect`'s limit."""
    key = _key(env, scenarios, seeds, n_steps)
    want = [(sc, sd) for sc in key[2] for sd in key[3]]
    got = [(ep.scenario, int(ep.seed)) for ep in episodes]
    if got != want:
        raise ValueError(f"supplied episodes {got[:3]}... differ from the fit's (scenario, seed) order {want[:3]}...")
    _SUPPLIED[key] = tuple(episodes)
    try:
        yield
    finally:
        _SUPPLIED.pop(key, None)


def scenario_steps(scenario: str) -> int:
    """Requests in a scenario's whole trace."""
    from bench.world.scenarios import load_scenario

    return int(load_scenario(scenario).steps)


@lru_cache(maxsize=8)
def _collect(env_id: str, kwargs_json: str, scenarios: tuple[str, ...], seeds: tuple[int, ...],
             n_steps: int) -> tuple[EpisodeData, ...]:
    out = []
    for sc in scenarios:
        limit = n_steps or scenario_steps(sc)
        env = gym.make(env_id, scenario=sc, max_episode_steps=limit, **json.loads(kwargs_json))
        for seed in seeds:
            out.append(replay(env, seed, limit))
        env.close()
    return tuple(out)


def replay(env, seed: int, n_steps: int) -> EpisodeData:
    """Reset ``env`` with ``seed`` and let the per-request oracle act for (at most) ``n_steps`` requests.

    The oracle decides on the env's current episode (:class:`bench.policies.oracle.PlannedGreedyOracle`: the
    step-by-step oracle's actions, computed at once on a copy of the episode's kernel), so
    any state the env carries from request to request is the one the oracle's own choices left; the states
    and draws are read after the rollout, with that history in them.
    """
    from bench.policies.oracle import PlannedGreedyOracle

    oracle = PlannedGreedyOracle(env, int(n_steps))  # the oracle's decisions, computed for the episode at once
    obs, _ = env.reset(seed=int(seed))
    oracle.reset()
    rows, actions = [], []
    for _ in range(int(n_steps)):
        a = oracle.act(obs)
        rows.append(obs)
        actions.append(a)
        obs, _, term, trunc, _ = env.step(a)
        if term or trunc:
            break
    ep = env.unwrapped.episode()
    idx = np.arange(len(rows))
    return EpisodeData(env.unwrapped.scenario.name, int(seed), np.asarray(rows, dtype=np.float32),
                       ep.states.take(idx), ep.draws.take(idx), np.asarray(actions, dtype=np.int64))
