"""Benchmark of the simulator (not a test): ``python -m bench.perf_sim``.

Prints vectorised decisions per second on one core (one decision = one
(state, action) pair evaluated: latency, device and remote energy, accuracy,
QoS flag), the oracle's rate, the wall time of one gym step, and peak memory.
Goal: at least 1,000,000 decisions per second.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

import numpy as np


def _best_of(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=50_000, help="requests per vectorised call")
    ap.add_argument("--scenario", default="random_walk")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy elementwise ops are single-threaded anyway

    import gymnasium as gym

    import bench.sim  # noqa: F401  (registers the envs)
    from bench.scenarios import load_scenario
    from bench.sim.system import autoscale_system

    rng = np.random.default_rng(args.seed)
    system = autoscale_system()
    sim = system.sim
    trace = load_scenario(args.scenario).trace(rng, steps=args.batch)
    states = sim.states_from_trace(trace)
    draws = sim.draw(len(states), rng)
    actions = rng.integers(0, sim.A, size=len(states))

    tracemalloc.start()
    t_one = _best_of(lambda: sim.evaluate(states, actions, draws), args.repeats)
    t_all = _best_of(lambda: sim.evaluate(states, None, draws), args.repeats)
    t_oracle = _best_of(lambda: sim.oracle(states, draws), args.repeats)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    env = gym.make("bench/AutoScale-v0", scenario=args.scenario)
    env.reset(seed=args.seed)
    n_steps, t0 = 0, time.perf_counter()
    while n_steps < 2000:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        n_steps += 1
        if term or trunc:
            env.reset()
    step_us = (time.perf_counter() - t0) / n_steps * 1e6

    n = len(states)
    print(f"AutoScale system: {sim.A} actions, {sim.W} workloads, batch of {n} requests ({args.scenario})")
    print(f"decisions/s, one action per request : {n / t_one:,.0f}")
    print(f"decisions/s, all actions per request: {n * sim.A / t_all:,.0f}  ({n / t_all:,.0f} requests/s)")
    print(f"oracle requests/s (argmin over all) : {n / t_oracle:,.0f}")
    print(f"gym step (AutoScale-v0, incl. TimeLimit): {step_us:.1f} us")
    print(f"peak traced numpy memory during the batch runs: {peak / 2**20:.1f} MiB; "
          f"process max RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
