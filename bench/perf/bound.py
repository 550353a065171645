"""Time of the hindsight bound (:mod:`bench.policies.bound`) on one 1,000-request episode per suite.

Part of ``python -m bench perf`` (goal: <= 2 s per episode on one core): the certified lower bound,
the beam search and the replays of the candidate schedules through the env, for AutoScale-v0 (phone)
and DVFO-v0 (Jetson) with the pipeline's training configs' env arguments, on a held-out scenario each.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

#: (env kind, scenario): the held-out scenario of each suite with the most radio and load changes
EPISODES = (("autoscale", "heldout_gaming_commute"), ("dvfo", "heldout_dvfo_markov_cap"))


def measure(n_steps: int = 1000, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """Median seconds of :func:`bench.policies.bound.hindsight_bound` per suite, and the bracket it found."""
    import bench  # noqa: F401  (registers the envs)
    from bench.config import load_params
    from bench.perf.learn import learner_config
    from bench.policies.bound import hindsight_bound
    from bench.policies.rollout import make_env
    from bench.sim.objective import Objective

    params = load_params()
    obj = Objective(params.objective.violation_cost_mj)
    out: dict[str, Any] = {"n_steps": int(n_steps), "violation_cost_mj": obj.violation_cost_mj}
    for kind, scenario in EPISODES:
        cfg = learner_config(kind, 1, seed, params)
        env_id = "bench/AutoScale-v0" if kind == "autoscale" else "bench/DVFO-v0"
        env = make_env(env_id, scenario, n_steps, **cfg.env_kwargs())
        times, cpu, b = [], [], None
        for _ in range(max(1, repeats)):
            env.reset(seed=seed)
            t, c = time.perf_counter(), time.process_time()
            b = hindsight_bound(env, obj, n_steps)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        env.close()
        # CPU time too: on a shared machine the wall time also counts the time other jobs held the core
        out[kind] = {"scenario": scenario, "seconds": statistics.median(times), "seconds_best": min(times),
                     "cpu_seconds": statistics.median(cpu),
                     "requests": b.n, **{k: v for k, v in b.summary().items() if k != "n"}}
    return out
