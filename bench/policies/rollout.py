"""Roll a policy out on a simulator env and return the tidy per-step results table.

:func:`evaluate_policy` is the one loop every comparison uses: for each seed,
``env.reset(seed=seed)``, then ``policy.reset()`` (so hindsight baselines fit on
that very episode), then ``n_steps`` greedy decisions. Columns follow the results
contract of docs/architecture.md: ``policy, scenario, seed, step, workload, action,
action_name, energy_mj, remote_energy_mj, latency_ms, qos_ok, accuracy, reward``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import gymnasium as gym
import pandas as pd

from bench.policies.base import Policy, make_policy

COLUMNS = ["policy", "scenario", "seed", "step", "workload", "action", "action_name", "energy_mj",
           "remote_energy_mj", "latency_ms", "qos_ok", "accuracy", "reward",
           # energy_mj is above the device's idle baseline; total_energy_mj adds the baseline over the
           # request's slot (sums to the episode's device energy); radio tail / promotion parts; timeouts
           "total_energy_mj", "tail_mj", "promo_mj", "timed_out"]
_INFO_KEYS = ("energy_mj", "remote_energy_mj", "latency_ms", "qos_ok", "accuracy", "total_energy_mj", "tail_mj",
              "promo_mj", "timed_out")


def make_env(env_id: str, scenario: str, n_steps: int, **env_kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with an episode limit of ``n_steps`` (the registered default is 200)."""
    return gym.make(env_id, scenario=scenario, max_episode_steps=int(n_steps), **env_kwargs)


def evaluate_policy(policy: Policy | str, env_id_or_env: str | gym.Env, scenario: str | None, seeds: Iterable[int],
                    n_steps: int, policy_kwargs: Mapping[str, Any] | None = None,
                    env_kwargs: Mapping[str, Any] | None = None, label: str | None = None) -> pd.DataFrame:
    """Per-step results of ``policy`` on ``scenario`` for each seed (one episode per seed).

    ``policy`` is a :class:`Policy` (which must be bound to the env passed here when it
    is privileged) or a registry name, built on the env with ``policy_kwargs``.
    ``env_id_or_env`` is a registered id (the env is made with ``scenario``,
    ``env_kwargs`` and a limit of ``n_steps``) or an env instance, whose own
    scenario is used (``scenario`` must then be None or that scenario's name).
    An episode ends after ``n_steps`` or at the end of the scenario's trace.
    """
    if isinstance(env_id_or_env, str):
        if scenario is None:
            raise ValueError("scenario is required when an env id is given")
        env = make_env(env_id_or_env, scenario, n_steps, **dict(env_kwargs or {}))
    else:
        env = env_id_or_env
        own = env.unwrapped.scenario.name
        if scenario is not None and scenario != own:
            raise ValueError(f"scenario {scenario!r} differs from the given env's scenario {own!r}")
        if env_kwargs:
            raise ValueError("env_kwargs only apply when an env id is given")
    scen_name = env.unwrapped.scenario.name
    if isinstance(policy, str):
        name = policy
        policy = make_policy(policy, env, **dict(policy_kwargs or {}))
    else:
        name = getattr(policy, "label", None) or type(policy).name
    name = label or name
    names = env.unwrapped.action_table["name"].to_numpy()
    frames = []
    for seed in seeds:
        obs, _ = env.reset(seed=int(seed))
        policy.reset()
        rows: dict[str, list] = {k: [] for k in ("step", "workload", "action", *_INFO_KEYS, "reward")}
        for t in range(int(n_steps)):
            a = int(policy.act(obs))
            obs, reward, terminated, truncated, info = env.step(a)
            rows["step"].append(t)
            rows["workload"].append(info["workload"])
            rows["action"].append(a)
            for k in _INFO_KEYS:
                rows[k].append(info[k])
            rows["reward"].append(reward)
            if terminated or truncated:
                break
        df = pd.DataFrame(rows)
        df.insert(0, "seed", int(seed))
        df.insert(0, "scenario", scen_name)
        df.insert(0, "policy", name)
        df["action_name"] = names[df["action"].to_numpy()] if len(df) else []
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    out["qos_ok"] = out["qos_ok"].astype(bool)
    out["timed_out"] = out["timed_out"].astype(bool)
    return out[COLUMNS]
