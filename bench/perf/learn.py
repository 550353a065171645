"""Training cost of the learners, side by side with Stable-Baselines3 (part of ``python -m bench perf``).

For each env (``bench/AutoScale-v0`` with AutoScale, ``bench/DVFO-v0`` with DVFO)
our learner and SB3's DQN and PPO (``MlpPolicy``, CPU, one torch thread) train on
the same training envs (same devices, levels, reward settings, scenarios and
episode lengths as the learner's config), with the same env-step budget and the
same root seed. Every ``eval_every`` env steps the greedy policy is evaluated by
a :class:`GapEvaluator`, and a :class:`LearningTracker` records

* the first env step and training wall time (evaluation time excluded) at which
  the policy is *within the target of the greedy oracle*: energy gap
  ``E_policy / E_oracle - 1 <= target_gap`` **and** QoS violation rate at most
  ``max_extra_violation`` above the oracle's (a policy that saves energy by
  missing deadlines has not matched the oracle);
* the final gap and violation rate after the whole budget, the final gap to the hindsight bound on the
  declared objective (``J_policy / J_bound - 1``, J = E + λ·misses; docs/bound.md), and the training wall time.

SB3 settings (documented in the JSON "settings"): SB3 defaults for everything
except (a) ``gamma`` = our learner's discount, because the discount is part of
the problem formulation (requests are near-independent; 0.99 would ask SB3 to
solve a harder, different problem), and (b) observations standardised with
``VecNormalize`` (running mean/std, as the SB3 zoo does for envs with raw,
differently-scaled features; our DVFO standardises too, AutoScale buckets).
Rewards are not normalised.

Scenarios: :class:`ScenarioCycle` is a small gymnasium env over one env per
training scenario; each reset moves to the next scenario (episode ``k`` uses
``scenarios[k % n]``, as our learners do) and seeds it from the same episode-seed
stream our learner draws from the same root seed, so both see the same episodes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import gymnasium as gym
import numpy as np
import pandas as pd

from bench.policies.base import Policy
from bench.policies.rollout import evaluate_policy, make_env

ENVS = ("autoscale", "dvfo")
SB3_ALGOS = ("dqn", "ppo")


# --------------------------------------------------------------------------- gap to the oracle

class GapEvaluator:
    """Greedy energy gap to the per-request (greedy) oracle on fixed scenarios x seeds (oracle computed once),
    and the gap to the hindsight bound on the declared objective (:mod:`bench.policies.bound`, computed once)."""

    def __init__(self, env_id: str, scenarios: Sequence[str], env_kwargs: dict[str, Any], seeds: Sequence[int],
                 n_steps: int, violation_cost_mj: float | None = None):
        if not scenarios or not seeds or n_steps < 1:
            raise ValueError(f"GapEvaluator needs scenarios, seeds and n_steps >= 1; got {list(scenarios)}, "
                             f"{list(seeds)}, {n_steps}")
        self.seeds, self.n_steps = [int(s) for s in seeds], int(n_steps)
        self.envs = [make_env(env_id, s, n_steps, **env_kwargs) for s in scenarios]
        oracle = pd.concat([evaluate_policy("greedy_oracle", e, None, self.seeds, n_steps) for e in self.envs])
        self.oracle_energy_mj = float(oracle["energy_mj"].mean())
        self.oracle_violation = float(1.0 - oracle["qos_ok"].mean())
        from bench.policies.bound import hindsight_bound
        from bench.sim.objective import Objective

        if violation_cost_mj is None:
            from bench.config import load_params

            violation_cost_mj = load_params().objective.violation_cost_mj
        self.objective = Objective(violation_cost_mj)
        total, n = 0.0, 0
        for e in self.envs:
            for seed in self.seeds:
                e.reset(seed=seed)  # the episode evaluate_policy plays with this seed
                b = hindsight_bound(e, self.objective, n_steps)
                total, n = total + b.lower_lagrangian, n + b.n
        self.bound_objective_mj = total / n  # certified lower bound on E + λ·misses per request

    def __call__(self, policy: Policy) -> dict[str, float]:
        """Mean device energy per request, gap to the oracle and QoS violation rate of ``policy``."""
        df = pd.concat([evaluate_policy(policy, e, None, self.seeds, self.n_steps) for e in self.envs])
        energy = float(df["energy_mj"].mean())
        objective = float(self.objective.cost(df["energy_mj"], df["qos_ok"]).mean())
        return {"energy_mj": energy, "gap": energy / self.oracle_energy_mj - 1.0,
                "gap_to_bound": objective / self.bound_objective_mj - 1.0,
                "qos_violation": float(1.0 - df["qos_ok"].mean()), "oracle_qos_violation": self.oracle_violation}

    def close(self) -> None:
        for e in self.envs:
            e.close()


class LearningTracker:
    """Training callback: evaluates, keeps the curve, notes when the target is first met.

    Its clock starts at construction; time spent evaluating is subtracted, so
    ``train_s`` is the training wall time alone.
    """

    def __init__(self, evaluator: GapEvaluator, target_gap: float = 0.10, max_extra_violation: float = 0.05):
        self.evaluator, self.target_gap, self.max_extra_violation = evaluator, float(target_gap), float(max_extra_violation)
        self.t0, self.eval_s = time.perf_counter(), 0.0
        self.curve: list[dict[str, float]] = []
        self.reached: dict[str, float] | None = None

    def meets_target(self, r: dict[str, float]) -> bool:
        return r["gap"] <= self.target_gap and r["qos_violation"] <= r["oracle_qos_violation"] + self.max_extra_violation

    def __call__(self, step: int, policy: Policy) -> bool:
        t = time.perf_counter()
        train_s = t - self.t0 - self.eval_s
        r = self.evaluator(policy)
        self.eval_s += time.perf_counter() - t
        row = {"step": int(step), "train_s": train_s, **r}
        self.curve.append(row)
        if self.reached is None and self.meets_target(r):
            self.reached = row
        return False  # never stop early: the final gap after the whole budget is reported too

    def summary(self, env_steps: int) -> dict[str, Any]:
        """Steps / seconds to the target (None if never met), final gap, violations, training wall time."""
        train_s = time.perf_counter() - self.t0 - self.eval_s
        last = self.curve[-1] if self.curve else {}
        return {"env_steps": int(env_steps), "train_wall_s": train_s, "eval_wall_s": self.eval_s,
                "steps_to_target": None if self.reached is None else self.reached["step"],
                "wall_s_to_target": None if self.reached is None else self.reached["train_s"],
                "final_gap": last.get("gap"), "final_gap_to_bound": last.get("gap_to_bound"),
                "final_qos_violation": last.get("qos_violation"),
                "oracle_qos_violation": last.get("oracle_qos_violation"), "curve": self.curve}


# --------------------------------------------------------------------------- the learners' settings

def learner_config(name: str, budget: int, seed: int, params=None):
    """params.yaml's config of learner ``name`` (and its run's edge device) with ``total_steps = budget``
    and ``seed``; every other setting as the pipeline trains it."""
    from bench.config import load_params

    if name not in ENVS:
        raise ValueError(f"unknown learner {name!r}; allowed: {list(ENVS)}")
    params = params or load_params()
    cfg = getattr(params.train, name)
    profile = next((r.profile for r in params.train.runs.values() if r.learner == name), cfg.edge)
    return dataclasses.replace(cfg, seed=int(seed), total_steps=int(budget), edge=profile)


def training_envs(name: str, config) -> list[gym.Env]:
    """The exact envs our learner trains on, one per scenario, in cycling order."""
    if name == "autoscale":
        from bench.policies.autoscale import make_envs

        return make_envs(config)
    from bench.policies.dvfo import make_env as dvfo_env

    return [dvfo_env(config, s) for s in config.scenarios]


def episode_seeds(name: str, seed: int) -> Iterator[int]:
    """The per-episode env seeds our learner's ``train`` draws from root ``seed`` (same streams, same order)."""
    if name == "autoscale":  # autoscale.train: SeedSequence(seed).spawn(2)[0], integers(2**31 - 1)
        rng, high = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0]), 2**31 - 1
    else:  # dvfo.Seeds.from_seed: SeedSequence(seed).spawn(4)[1], integers(2**31)
        rng, high = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[1]), 2**31
    while True:
        yield int(rng.integers(high))


class ScenarioCycle(gym.Env):
    """One env per scenario behind one gymnasium env; each reset moves to the next scenario.

    ``reset(seed=s)`` restarts the episode-seed stream from ``s`` (``seeds_from(s)``);
    every reset then seeds the next scenario's env from that stream.
    """

    metadata = {"render_modes": []}

    def __init__(self, envs: Sequence[gym.Env], seeds_from: Callable[[int], Iterator[int]], seed: int = 0):
        if not envs:
            raise ValueError("ScenarioCycle needs at least one env")
        first = envs[0]
        for e in envs[1:]:
            if e.observation_space != first.observation_space or e.action_space != first.action_space:
                raise ValueError(f"scenario env {e.unwrapped.scenario.name!r} has other spaces than the first")
        self.envs, self.seeds_from = list(envs), seeds_from
        self.observation_space, self.action_space = first.observation_space, first.action_space
        self._seeds, self._episode, self._env = seeds_from(seed), 0, first

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._seeds, self._episode = self.seeds_from(seed), 0
        self._env = self.envs[self._episode % len(self.envs)]
        self._episode += 1
        return self._env.reset(seed=next(self._seeds))

    def step(self, action):
        return self._env.step(action)

    def close(self):
        for e in self.envs:
            e.close()


# --------------------------------------------------------------------------- our learners

def train_ours(name: str, config, tracker_factory: Callable[[], LearningTracker], eval_every: int) -> dict[str, Any]:
    """Train our learner ``name`` with the tracker as its callback; returns the tracker's summary."""
    from bench.policies import autoscale, dvfo

    mod = autoscale if name == "autoscale" else dvfo
    tracker = tracker_factory()
    result = mod.train(config, callback=tracker, callback_every=eval_every)
    return {**tracker.summary(result.env_steps), "learner": result.learner}


# --------------------------------------------------------------------------- Stable-Baselines3

def sb3_available() -> str | None:
    """SB3's version, or None when the optional ``perf`` dependency group is not installed."""
    try:
        import stable_baselines3
    except ImportError:
        return None
    return stable_baselines3.__version__


class SB3Policy(Policy):
    """A trained SB3 DQN / PPO model as a suite policy: its greedy action on (VecNormalize-standardised)
    observations.

    Same action as ``model.predict(obs, deterministic=True)`` (tests check it) via the networks'
    public modules (DQN ``q_net``, PPO ``policy.get_distribution(...).mode()``), without ``predict``'s
    per-call conversions, which made evaluation several times slower than training steps.
    """

    name = "sb3"

    def __init__(self, model, vecnorm=None, label: str = "sb3"):
        self.model, self.vecnorm, self.label = model, vecnorm, label

    def act(self, obs) -> int:
        import torch

        obs = np.asarray(obs, dtype=np.float32)
        if self.vecnorm is not None:
            obs = self.vecnorm.normalize_obs(obs)
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
            if hasattr(self.model, "q_net"):  # DQN: argmax of the online Q-network
                a = self.model.q_net(x).argmax(dim=1)
            else:  # PPO (actor-critic): mode of the action distribution
                a = self.model.policy.get_distribution(x).mode()
        return int(a[0])


def sb3_hyperparameters(algo: str, gamma: float) -> dict[str, Any]:
    """SB3 defaults except the problem's discount (see the module docstring)."""
    if algo not in SB3_ALGOS:
        raise ValueError(f"unknown SB3 algorithm {algo!r}; allowed: {list(SB3_ALGOS)}")
    return {"gamma": float(gamma)}


def train_sb3(algo: str, name: str, config, tracker_factory: Callable[[], LearningTracker], eval_every: int,
              torch_threads: int = 1) -> dict[str, Any]:
    """Train SB3 ``algo`` on the training envs of our learner ``name`` for ``config.total_steps`` env steps."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from bench.policies.dvfo import torch_settings

    gamma = config.discount if name == "autoscale" else config.gamma
    hyper = sb3_hyperparameters(algo, gamma)
    tracker = tracker_factory()  # clock starts before the envs and the model are built, as for ours

    class _Eval(BaseCallback):
        def __init__(self, policy: SB3Policy):
            super().__init__()
            self.policy_adapter = policy

        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every == 0:
                tracker(self.num_timesteps, self.policy_adapter)
            return True

    with torch_settings(torch_threads):
        envs = training_envs(name, config)
        venv = DummyVecEnv([lambda: Monitor(ScenarioCycle(envs, lambda s: episode_seeds(name, s), config.seed))])
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False, gamma=gamma)
        cls = DQN if algo == "dqn" else PPO
        model = cls("MlpPolicy", venv, seed=int(config.seed), device="cpu", verbose=0, **hyper)
        adapter = SB3Policy(model, venv, label=f"sb3_{algo}")
        model.learn(total_timesteps=int(config.total_steps), callback=_Eval(adapter), progress_bar=False)
        steps = int(model.num_timesteps)
        venv.close()
    return {**tracker.summary(steps), "hyperparameters": hyper}


# --------------------------------------------------------------------------- one job (a process-pool cell)

@dataclass(frozen=True)
class Job:
    """One training run of the comparison: ``learner`` (ours / dqn / ppo) on env ``env``."""

    env: str
    learner: str
    budget: int
    seed: int
    eval_every: int
    eval_seeds: tuple[int, ...]
    eval_steps: int
    target_gap: float = 0.10
    max_extra_violation: float = 0.05
    save_dir: str | None = None  # ours: where the trained learner is saved (npz / safetensors) for timing act()


def run_job(job: Job) -> dict[str, Any]:
    """Train, track the gap to the oracle, return the summary (JSON-able) plus this process's peak RSS.

    Run in a fresh process per job (``max_tasks_per_child=1``), ``max_rss_mib`` is the job's peak memory.
    """
    import resource

    import bench.policies  # noqa: F401  (registers the policies, incl. the oracle)
    from bench.sim.envs import AUTOSCALE_ID, DVFO_ID

    config = learner_config(job.env, job.budget, job.seed)
    evaluator = GapEvaluator(AUTOSCALE_ID if job.env == "autoscale" else DVFO_ID, config.scenarios,
                             config.env_kwargs(), job.eval_seeds, job.eval_steps)
    make_tracker = lambda: LearningTracker(evaluator, job.target_gap, job.max_extra_violation)  # noqa: E731
    if job.learner == "ours":
        out = train_ours(job.env, config, make_tracker, job.eval_every)
        learner = out.pop("learner")
        if job.save_dir:
            learner.save(job.save_dir)
    elif job.learner in SB3_ALGOS:
        out = train_sb3(job.learner, job.env, config, make_tracker, job.eval_every)
    else:
        raise ValueError(f"unknown learner {job.learner!r}; allowed: ['ours', *{list(SB3_ALGOS)}]")
    evaluator.close()
    out["oracle_energy_mj"] = evaluator.oracle_energy_mj
    out["bound_objective_mj"] = evaluator.bound_objective_mj
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"env": job.env, "learner": job.learner, "seed": job.seed, "budget": job.budget, **out}
