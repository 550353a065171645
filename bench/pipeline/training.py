"""Train one run of params.yaml's ``train.runs``: a learner on a device profile.

The stage notebook calls :func:`train_run`; it builds the learner's config from
params (seed fanned out from the top-level seed, the run's profile as the edge
device), trains, and writes the policy artefact (safe formats only) and the
learning curve (CSV, a DVC plot).

A learning curve from one seed says little about the algorithm, so the stage also
trains ``curve_seeds - 1`` further seeds of the same config, keeping only their
curves (``curves.csv``), and rolls out the oracle and the static baselines on the
training scenarios (``reference_levels.csv``) so the report can draw their reward
levels beside the curves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from bench.pipeline.robustness import write_learner_digest
from bench.seeding import derive_seed, derive_seeds

#: static baselines whose reward level the learning-curve figure draws (the best of those registered)
#: (edge_best_static is the best local static in hindsight, so cpu_only/gpu_only cannot beat it)
STATIC_REFERENCES = ("edge_best_static", "best_static_dnn", "cloud_only")


def learner_spec(learner: str):
    """The :class:`bench.policies.LearnerSpec` registered as ``learner`` (plugins included)."""
    from bench.policies import LEARNERS

    if learner not in LEARNERS:
        raise ValueError(LEARNERS.unknown_message(learner))
    return LEARNERS[learner]


def learner_module(learner: str):
    return learner_spec(learner).load_module()


def config_class(learner: str):
    return learner_spec(learner).config_class()


def make_config(learner: str, profile: str, overrides: dict[str, Any], root_seed: int, run: str,
                curve_seed: int = 0):
    """The learner's config: params overrides + the run's profile + a seed derived for this run.

    ``curve_seed`` > 0 gives the seed of an extra training run kept only for its learning curve
    (seed 0 is the run itself, so adding curve seeds never changes the trained policy).
    """
    fields = dict(overrides)
    fields.pop("seed", None)
    fields["edge"] = profile
    names = ("train", run) if curve_seed == 0 else ("train", run, "curve", str(curve_seed))
    fields["seed"] = derive_seed(root_seed, *names)
    return config_class(learner).from_dict(fields)


def _labelled(curve: pd.DataFrame, run: str, learner: str, curve_seed: int) -> pd.DataFrame:
    curve = curve.copy()
    curve.insert(0, "curve_seed", curve_seed)
    curve.insert(0, "learner", learner)
    curve.insert(0, "run", run)
    return curve


def train_run(run: str, learner: str, profile: str, overrides: dict[str, Any], root_seed: int,
              out_dir: str | Path, progress: bool = False, curve_seeds: int = 1) -> dict[str, Any]:
    """Train and write ``out_dir/policy/`` (the artefact), ``curve.csv`` and ``train.json``; returns the summary.

    With ``curve_seeds`` > 1 it also writes ``curves.csv`` (every seed's curve, column
    ``curve_seed``; 0 is the run itself) and ``reference_levels.csv`` (see
    :func:`reference_levels`). One progress bar per training run.
    """
    if curve_seeds < 1:
        raise ValueError(f"curve_seeds must be >= 1, got {curve_seeds}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = make_config(learner, profile, overrides, root_seed, run)
    # The extra curve seeds and the reference levels do not depend on the run's own training (each seed is
    # derived from the params alone), so they run in worker processes while this one trains the policy:
    # the same bytes as one after the other, in about a third of the time on 2 cores.
    with _side_work(learner, profile, overrides, root_seed, run, curve_seeds, config) as side:
        result = learner_spec(learner).train(config, progress=progress)
        result.learner.save(out_dir / "policy")
        # what the learner acts on, hashed once here rather than by every reader (report, readme): no decisions
        # depend on it; a reader recomputes it when the files no longer have these bytes
        write_learner_digest(out_dir / "policy")
        curve = _labelled(result.curve, run, learner, 0)
        curve.drop(columns="curve_seed").to_csv(out_dir / "curve.csv", index=False, float_format="%.6g")
        curves = [curve] + [_labelled(side.result(("curve", k)), run, learner, k) for k in range(1, curve_seeds)]
        levels = _levels_frame([row for s in _level_scenarios(config) for row in side.result(("levels", s))])
    pd.concat(curves, ignore_index=True).to_csv(out_dir / "curves.csv", index=False, float_format="%.6g")
    levels.insert(0, "run", run)
    levels.to_csv(out_dir / "reference_levels.csv", index=False, float_format="%.6g")
    summary = {"run": run, "learner": learner, "profile": profile, "env_steps": int(result.env_steps),
               "episodes": int(len(result.curve)), "config": json.loads(json.dumps(dataclasses.asdict(config), default=list))}
    # wall time is a measurement of this machine: reported, but kept out of the reproducible files
    (out_dir / "train.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return {**summary, "wall_time_s": result.wall_time_s}


def _curve_of_seed(job: tuple) -> pd.DataFrame:
    """The learning curve of extra curve seed ``k`` (a worker's task; the policy itself is not kept)."""
    learner, profile, overrides, root_seed, run, k = job
    extra = make_config(learner, profile, overrides, root_seed, run, curve_seed=k)
    return learner_spec(learner).train(extra, progress=False).curve


def _levels_of_run(job: tuple) -> list[dict[str, Any]]:
    """The reference-level rows of a run on one training scenario (a worker's task): one episode per policy,
    a level being a mean over a whole episode of requests."""
    learner, profile, overrides, root_seed, run, scenario = job
    config = make_config(learner, profile, overrides, root_seed, run)
    return _reference_rows(learner, _with_scenarios(config, [scenario]),
                           derive_seeds(root_seed, 1, "train-reference", run))


def _level_scenarios(config) -> list[str]:
    """The training scenarios in the order :func:`training_envs` builds their envs (duplicates once)."""
    return list(dict.fromkeys(config.scenarios))


def _with_scenarios(config, scenarios: list[str]):
    """``config`` training on ``scenarios`` only (an env depends on its own scenario and the config's settings,
    not on the other scenarios, so one scenario's env is the same as in the full list)."""
    return dataclasses.replace(config, scenarios=list(scenarios))


class _SideWork:
    """Results of the side tasks of a run by name, from worker processes or computed here when asked."""

    def __init__(self, futures: dict, inline: dict):
        self._futures, self._inline = futures, inline

    def result(self, name: tuple) -> pd.DataFrame:
        if name in self._futures:
            return self._futures[name].result()
        fn, job = self._inline[name]
        return fn(job)


@contextlib.contextmanager
def _side_work(learner: str, profile: str, overrides: dict[str, Any], root_seed: int, run: str, curve_seeds: int,
               config) -> Iterator[_SideWork]:
    """Start the extra curve seeds and the reference levels in ``local_cores()`` worker processes.

    One core (or ``BENCH_TRAIN_WORKERS=1``): nothing is started and each result is computed here when asked,
    one after the other, as before. Worker processes are forked (like the evaluation engine's local pool), so
    plugin learners registered in this process are registered there too.
    """
    from bench.pipeline.engine import local_cores

    # the long tasks (whole training runs) first, then the reference levels one scenario per task: the short
    # tasks fill both cores at the end instead of one core running all the levels while the other idles
    # (issue 25: on 2 cores the autoscale_phone stage spent ~a third of its time so)
    tasks = {("curve", k): (_curve_of_seed, (learner, profile, dict(overrides), root_seed, run, k))
             for k in range(1, curve_seeds)}
    for s in _level_scenarios(config):
        tasks[("levels", s)] = (_levels_of_run, (learner, profile, dict(overrides), root_seed, run, s))
    workers = min(int(os.environ.get("BENCH_TRAIN_WORKERS", "0") or 0) or local_cores(), len(tasks))
    # inside a daemonic worker (a Dask or process-pool worker running a sweep's training) no child process may be
    # started: compute here, one after the other (split into several tasks, the levels made this reachable)
    import multiprocessing

    if workers <= 1 or multiprocessing.current_process().daemon:
        yield _SideWork({}, tasks)
        return
    # the pool's processes start at the first submit, before this process trains (no torch thread pool is forked)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(fn, job) for name, (fn, job) in tasks.items()}
        try:
            yield _SideWork(futures, tasks)
        except BaseException:
            for f in futures.values():
                f.cancel()
            raise


def training_envs(learner: str, config) -> list:
    """The learner's own training envs, one per training scenario (same limits and devices).

    Uses the learner module's ``make_envs(config)`` or ``make_env(config, scenario)``; a plugin learner
    without either gets its registered env with the default episode limit."""
    mod = learner_module(learner)
    if hasattr(mod, "make_envs"):
        return mod.make_envs(config)
    if hasattr(mod, "make_env"):
        return [mod.make_env(config, s) for s in dict.fromkeys(config.scenarios)]
    import gymnasium as gym

    from bench.sim.envs import EPISODE_STEPS

    return [gym.make(learner_spec(learner).env_id, scenario=s, max_episode_steps=EPISODE_STEPS, **config.env_kwargs())
            for s in dict.fromkeys(config.scenarios)]


def reference_levels(learner: str, config, seeds: list[int]) -> pd.DataFrame:
    """Mean reward per request of the oracle and the static baselines on the training scenarios.

    One episode per (policy, scenario, seed) on the learner's own training envs, so the levels
    are in the units of its learning curve. Columns: ``policy, scenario, reward, energy_mj, qos_ok``.
    """
    return _levels_frame(_reference_rows(learner, config, seeds))


def _levels_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["policy", "scenario", "reward", "energy_mj", "qos_ok"])


def _reference_rows(learner: str, config, seeds: list[int]) -> list[dict[str, Any]]:
    """The rows of :func:`reference_levels`, scenario by scenario in the config's order."""
    from bench.policies import REGISTRY
    from bench.policies.rollout import evaluate_policy

    rows = []
    for env in training_envs(learner, config):
        steps = int(env.spec.max_episode_steps)
        for pol in ("greedy_oracle", *STATIC_REFERENCES):
            if pol not in REGISTRY:
                continue
            try:
                kwargs = {"n_steps": steps, "seed": 0} if pol != "greedy_oracle" else {}
                frame = evaluate_policy(pol, env, None, seeds, steps, policy_kwargs=kwargs)
            except (ValueError, KeyError, TypeError) as err:  # a baseline without an action in this space
                logging.getLogger(__name__).info("reference level of %s skipped: %s", pol, err)
                continue
            rows.append({"policy": pol, "scenario": env.unwrapped.scenario.name, "reward": frame.reward.mean(),
                         "energy_mj": frame.energy_mj.mean(), "qos_ok": frame.qos_ok.mean()})
        env.close()
    return rows


def load_curve(out_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(out_dir) / "curve.csv")


def load_curves(out_dir: str | Path) -> pd.DataFrame:
    """Every seed's curve (``curves.csv``); falls back to the run's own ``curve.csv`` as seed 0."""
    out_dir = Path(out_dir)
    if (out_dir / "curves.csv").exists():
        return pd.read_csv(out_dir / "curves.csv")
    return load_curve(out_dir).assign(curve_seed=0)


def load_reference_levels(out_dir: str | Path) -> pd.DataFrame:
    path = Path(out_dir) / "reference_levels.csv"
    return pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["run", "policy", "scenario", "reward"])
