"""Benchmark of the simulator (not a test): ``python -m bench.perf.sim``.

Prints vectorised decisions per second on one core (one decision = one
(state, action) pair evaluated: latency, device and remote energy, accuracy,
QoS flag), the oracle's rate, the wall time of one gym step, and peak memory.
Goal: at least 1,000,000 decisions per second. :func:`measure` returns the
numbers (medians over ``repeats``) for ``python -m bench perf``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc
from typing import Callable

import numpy as np


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (s)."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def gym_step_us(env_id: str, scenario: str, n_steps: int = 2000, repeats: int = 3, seed: int = 0,
                **env_kwargs) -> float:
    """Median over repeats of the mean wall time of one ``env.step`` with random actions (µs, incl. TimeLimit)."""
    import gymnasium as gym

    import bench.sim  # noqa: F401  (registers the envs)

    env = gym.make(env_id, scenario=scenario, **env_kwargs)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    actions = [int(env.action_space.sample()) for _ in range(n_steps)]

    def run():
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()

    us = _median_time(run, repeats) / n_steps * 1e6
    env.close()
    return us


def measure(batch: int = 50_000, scenario: str = "random_walk", repeats: int = 3, seed: int = 0,
            gym_steps: int = 2000) -> dict[str, float]:
    """Simulator throughput on the AutoScale system (medians over ``repeats``; one thread).

    Returns ``decisions_per_s`` (one random action per request), ``decisions_per_s_all_actions``
    (every action of every request), ``oracle_requests_per_s``, ``gym_step_us`` (AutoScale-v0),
    ``dvfo_gym_step_us`` (DVFO-v0), ``peak_traced_mib`` (numpy allocations during the batch runs),
    ``max_rss_mib`` (process), ``batch`` and ``n_actions``.
    """
    from bench.world.scenarios import load_scenario
    from bench.sim.envs import AUTOSCALE_ID, DVFO_ID
    from bench.sim.system import autoscale_system

    rng = np.random.default_rng(seed)
    sim = autoscale_system().sim
    trace = load_scenario(scenario).trace(rng, steps=batch)
    states = sim.states_from_trace(trace)
    draws = sim.draw(len(states), rng)
    actions = rng.integers(0, sim.A, size=len(states))
    n = len(states)

    t_one = _median_time(lambda: sim.evaluate(states, actions, draws), repeats)
    t_all = _median_time(lambda: sim.evaluate(states, None, draws), repeats)
    t_oracle = _median_time(lambda: sim.oracle(states, draws), repeats)
    # peak memory in a separate pass: tracemalloc slows allocation-heavy code down
    tracemalloc.start()
    sim.evaluate(states, None, draws)
    sim.oracle(states, draws)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"batch": n, "n_actions": int(sim.A), "decisions_per_s": n / t_one,
            "decisions_per_s_all_actions": n * sim.A / t_all, "oracle_requests_per_s": n / t_oracle,
            "gym_step_us": gym_step_us(AUTOSCALE_ID, scenario, gym_steps, repeats, seed),
            "dvfo_gym_step_us": gym_step_us(DVFO_ID, "dvfo_bandwidth_walk", gym_steps, repeats, seed),
            "peak_traced_mib": peak / 2**20,
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=50_000, help="requests per vectorised call")
    ap.add_argument("--scenario", default="random_walk")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy elementwise ops are single-threaded anyway
    r = measure(args.batch, args.scenario, args.repeats, args.seed)
    print(f"AutoScale system: {r['n_actions']} actions, batch of {r['batch']} requests ({args.scenario}); "
          f"medians over {args.repeats} repeats")
    print(f"decisions/s, one action per request : {r['decisions_per_s']:,.0f}")
    print(f"decisions/s, all actions per request: {r['decisions_per_s_all_actions']:,.0f}")
    print(f"oracle requests/s (argmin over all) : {r['oracle_requests_per_s']:,.0f}")
    print(f"gym step (AutoScale-v0, incl. TimeLimit): {r['gym_step_us']:.1f} us; DVFO-v0: {r['dvfo_gym_step_us']:.1f} us")
    print(f"peak traced numpy memory during the batch runs: {r['peak_traced_mib']:.1f} MiB; "
          f"process max RSS: {r['max_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
