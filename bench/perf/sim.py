"""Benchmark of the simulator (not a test): ``python -m bench.perf.sim``.

Prints, on one core:

* batch decisions per second (one decision = one (state, action) pair evaluated:
  latency, device and remote energy, accuracy, QoS flag) of the full batch path
  (:meth:`Simulator.evaluate`: independent rows, with the per-phase ledger arrays)
  and of the batch path with the queue (:meth:`Simulator.rollout`: K episodes of
  T requests stepped in lock-step through the one kernel, the queue, radio and
  thermal state carried; by default 2,500 episodes of 200 requests, the envs'
  episode length), end to end and with the per-request inputs precomputed (what
  the vector envs do at reset, so their steps run the kernel only); the bytes
  one decision moves through numpy (counted by instrumenting one call: inputs and
  output of every elementwise operation, gather and reduction) and the fraction
  of the core's measured streaming bandwidth (a numpy triad on arrays far larger
  than the caches) that the throughput implies;
* the wall time of one gym ``step`` of each env (the cheap scalar step,
  ``TimeLimit`` and gymnasium's other default wrappers included; resets timed apart);
* env steps per second of the vector envs (``gymnasium.make_vec``) for N copies,
  autoresets included;
* the oracle's rate and peak memory.

Throughput and step times are process CPU time, the best of ``repeats`` (the
machine this runs on is shared: CPU time leaves out the time other processes
hold the core, the best repeat the one least disturbed by them); the gym step
also reports the median repeat. :func:`measure` returns the numbers for
``python -m bench perf``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc
from typing import Any, Callable, Sequence

import numpy as np


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (s)."""
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _best_cpu_time(fn: Callable[[], object], repeats: int) -> float:
    """Least process CPU time of ``fn()`` over ``repeats`` calls (s): the least disturbed run on a shared core."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def gym_step_timings(env_id: str, scenario: str, n_steps: int = 2000, repeats: int = 3, seed: int = 0,
                     **env_kwargs) -> dict[str, float]:
    """One ``env.step`` with random actions through ``gym.make``'s wrappers (TimeLimit included).

    Process CPU time. Returns ``step_us`` (median over repeats of the mean step time, resets excluded:
    each episode's steps are timed and the resets between them are not), ``step_us_best`` (the fastest
    repeat: on a shared machine the least disturbed), ``reset_ms`` (median reset) and
    ``step_us_with_resets`` (reset time spread over the episode's steps).
    """
    import gymnasium as gym

    import bench.sim  # noqa: F401  (registers the envs)

    env = gym.make(env_id, scenario=scenario, **env_kwargs)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    actions = [int(env.action_space.sample()) for _ in range(n_steps)]
    for a in actions[:10]:  # warm-up: gymnasium's passive checker inspects the first step only
        env.step(a)
    clock = time.process_time
    per_step, resets = [], []
    for _ in range(max(1, repeats)):
        env.reset(seed=seed)
        stepping, done_steps = 0.0, 0
        t0 = clock()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            done_steps += 1
            if term or trunc:
                t1 = clock()
                stepping += t1 - t0
                env.reset()
                t0 = clock()
                resets.append(t0 - t1)
        stepping += clock() - t0
        per_step.append(stepping / done_steps)
    env.close()
    step_us = float(np.median(per_step)) * 1e6
    reset_ms = float(np.median(resets)) * 1e3 if resets else float("nan")
    horizon = env.spec.max_episode_steps or n_steps
    return {"step_us": step_us, "step_us_best": float(np.min(per_step)) * 1e6, "reset_ms": reset_ms,
            "step_us_with_resets": step_us + reset_ms * 1e3 / horizon}


def gym_step_us(env_id: str, scenario: str, n_steps: int = 2000, repeats: int = 3, seed: int = 0,
                **env_kwargs) -> float:
    """Median wall time of one ``env.step`` (µs, incl. TimeLimit; resets excluded)."""
    return gym_step_timings(env_id, scenario, n_steps, repeats, seed, **env_kwargs)["step_us"]


def vector_steps_per_s(env_id: str, scenario: str, n_envs: int, n_steps: int, repeats: int = 3,
                       seed: int = 0) -> float:
    """Env steps per second of ``gymnasium.make_vec(env_id, n_envs)`` (the vector entry point), autoresets included.

    ``n_steps`` vector steps (each N env steps) with random actions after one reset; process CPU time, best
    of repeats.
    """
    import gymnasium as gym

    import bench.sim  # noqa: F401

    venv = gym.make_vec(env_id, num_envs=n_envs, scenario=scenario)
    venv.action_space.seed(seed)
    actions = [venv.action_space.sample() for _ in range(n_steps)]
    times = []
    for r in range(max(1, repeats)):
        venv.reset(seed=seed + r)
        t0 = time.process_time()
        for a in actions:
            venv.step(a)
        times.append(time.process_time() - t0)
    venv.close()
    return n_envs * n_steps / float(np.min(times))


# --------------------------------------------------------------------------- bytes and bandwidth

class _Counting(np.ndarray):
    """An ndarray view that adds the bytes each numpy operation reads and writes to :attr:`moved`."""

    moved = 0

    @staticmethod
    def _plain(x):
        if isinstance(x, _Counting):
            return x.view(np.ndarray)
        if isinstance(x, (list, tuple)):
            return type(x)(_Counting._plain(v) for v in x)
        return x

    @staticmethod
    def _nbytes(xs) -> int:
        total = 0
        for x in xs:
            if isinstance(x, np.ndarray):
                total += x.nbytes
            elif isinstance(x, (list, tuple)):
                total += _Counting._nbytes(x)
        return total

    @classmethod
    def _wrap(cls, res):
        if isinstance(res, np.ndarray):
            cls.moved += res.nbytes
            return res.view(cls)
        if isinstance(res, tuple):
            return tuple(cls._wrap(r) for r in res)
        return res

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _Counting.moved += self._nbytes(inputs)
        return self._wrap(getattr(ufunc, method)(*self._plain(inputs), **{k: self._plain(v) for k, v in kwargs.items()}))

    def __array_function__(self, func, types, args, kwargs):
        _Counting.moved += self._nbytes(args)
        return self._wrap(func(*self._plain(args), **{k: self._plain(v) for k, v in kwargs.items()}))

    def __getitem__(self, key):
        res = np.ndarray.__getitem__(self.view(np.ndarray), self._plain(key))
        if isinstance(res, np.ndarray) and res.ndim:
            _Counting.moved += self._nbytes([self._plain(key)] if not isinstance(key, tuple) else key)
            _Counting.moved += res.nbytes  # the gathered elements are read (the write is counted by _wrap)
            return self._wrap(res)
        return res


def bytes_per_decision(sim, states, actions, draws, episodes: int = 1) -> float:
    """Bytes the batch path with the queue moves per decision: every numpy operation's inputs + output, counted once.

    ``episodes`` sequences side by side (``states`` laid out (T, episodes), ``actions`` (T, episodes)), stepped
    by :func:`bench.sim.kernel.run_episodes` over counting views of the kernel's tables and inputs.
    """
    from dataclasses import fields, replace

    from bench.sim.kernel import RequestInputs, run_episodes

    c = lambda x: x.view(_Counting) if isinstance(x, np.ndarray) else x  # noqa: E731
    tab = sim.kernel
    tab_c = replace(tab, **{f.name: c(getattr(tab, f.name)) for f in fields(tab)
                            if f.init and isinstance(getattr(tab, f.name), np.ndarray)})
    x = sim.request_inputs(states, draws)
    x_c = RequestInputs(**{f.name: c(getattr(x, f.name)) for f in fields(x)})
    acts = np.asarray(actions).reshape(-1, episodes)
    _Counting.moved = 0
    run_episodes(tab_c, x_c, acts)
    return _Counting.moved / acts.size


def stream_bandwidth_gb_s(n: int = 1 << 23, repeats: int = 5) -> float:
    """One core's streaming bandwidth (GB/s): numpy triad ``a = b + c`` on float64 arrays far larger than the caches."""
    b, c = np.random.default_rng(0).random((2, n))
    a = np.empty(n)
    np.add(b, c, out=a)
    t = _best_cpu_time(lambda: np.add(b, c, out=a), repeats)
    return 3 * 8 * n / t / 1e9


def measure(batch: int = 50_000, scenario: str = "random_walk", repeats: int = 3, seed: int = 0,
            gym_steps: int = 2000, vec_sizes: Sequence[int] = (1, 16, 256), vec_steps: int = 20_000,
            queue_episodes: int = 2_500, queue_steps: int = 200) -> dict[str, Any]:
    """Simulator throughput on the AutoScale system (process CPU time, best of ``repeats``; one thread).

    Returns ``decisions_per_s`` (independent rows, one random action per request, ``batch`` rows),
    ``decisions_per_s_all_actions`` (every action of every request), ``lean_decisions_per_s`` (the batch
    path with the queue, end to end: ``queue_episodes`` episodes of ``queue_steps`` requests in
    lock-step, their per-request inputs computed in the call), ``kernel_decisions_per_s`` (the same with
    the inputs precomputed: the kernel's loop alone), ``oracle_requests_per_s``, ``gym_step_us``
    (AutoScale-v0), ``dvfo_gym_step_us`` (DVFO-v0), ``peak_traced_mib`` (numpy allocations during the
    batch runs), ``max_rss_mib`` (process), ``batch`` and ``n_actions``.
    """
    from bench.world.scenarios import load_scenario
    from bench.sim.envs import AUTOSCALE_ID, DVFO_ID
    from bench.sim.kernel import run_episodes
    from bench.sim.system import autoscale_system

    rng = np.random.default_rng(seed)
    sim = autoscale_system().sim
    n_queue = queue_steps * queue_episodes
    trace = load_scenario(scenario).trace(rng, steps=max(batch, n_queue))
    states_all = sim.states_from_trace(trace)
    draws_all = sim.draw(len(states_all), rng)
    actions_all = rng.integers(0, sim.A, size=len(states_all))
    rows = np.arange(batch)
    states, draws, actions = states_all.take(rows), draws_all.take(rows), actions_all[:batch]
    n = len(states)

    # the batch path with the queue: K episodes of T requests stepped in lock-step (time is sequential within
    # an episode), rows laid out (T, K)
    lock = np.arange(n_queue)
    st_q, dr_q = states_all.take(lock), draws_all.take(lock)
    acts_q = actions_all[:n_queue].reshape(queue_steps, queue_episodes)
    x_q = sim.request_inputs(st_q, dr_q)

    t_one = _best_cpu_time(lambda: sim.evaluate(states, actions, draws), repeats)
    t_lean = _best_cpu_time(lambda: sim.rollout(st_q, dr_q, acts_q), repeats)
    t_kernel = _best_cpu_time(lambda: run_episodes(sim.kernel, x_q, acts_q, thermal=sim.thermal_params), repeats)
    t_all = _best_cpu_time(lambda: sim.evaluate(states, None, draws), repeats)
    t_oracle = _best_cpu_time(lambda: sim.oracle(states, draws), repeats)
    del x_q
    # peak memory in a separate pass: tracemalloc slows allocation-heavy code down
    tracemalloc.start()
    sim.evaluate(states, None, draws)
    sim.oracle(states, draws)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    small_eps = min(queue_episodes, 2_500)
    small = np.arange(small_eps * min(queue_steps, 8))
    moved = bytes_per_decision(sim, states_all.take(small), actions_all[:len(small)], draws_all.take(small),
                               episodes=small_eps)
    bw = stream_bandwidth_gb_s(repeats=repeats)
    gyms = {k: gym_step_timings(env_id, sc, gym_steps, repeats, seed)
            for k, env_id, sc in (("autoscale", AUTOSCALE_ID, scenario), ("dvfo", DVFO_ID, "dvfo_bandwidth_walk"))}
    vec = {f"{k}_{nv}": vector_steps_per_s(env_id, sc, nv, max(vec_steps // nv, 20), repeats, seed)
           for k, env_id, sc in (("autoscale", AUTOSCALE_ID, scenario), ("dvfo", DVFO_ID, "dvfo_bandwidth_walk"))
           for nv in vec_sizes}
    return {"batch": n, "n_actions": int(sim.A), "decisions_per_s": n / t_one,
            "lean_decisions_per_s": n_queue / t_lean, "kernel_decisions_per_s": n_queue / t_kernel,
            "queue_episodes": queue_episodes, "queue_steps": queue_steps,
            "timing": f"process CPU time, best of {max(1, repeats)} repeats",
            "bytes_per_decision": moved, "stream_bandwidth_gb_s": bw,
            "bandwidth_fraction": n_queue / t_kernel * moved / (bw * 1e9),
            "gym": gyms, "vector_steps_per_s": vec, "vector_sizes": list(vec_sizes),
            "decisions_per_s_all_actions": n * sim.A / t_all, "oracle_requests_per_s": n / t_oracle,
            "gym_step_us": gyms["autoscale"]["step_us"], "dvfo_gym_step_us": gyms["dvfo"]["step_us"],
            "peak_traced_mib": peak / 2**20,
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=50_000, help="requests per vectorised call (independent rows)")
    ap.add_argument("--queue-episodes", type=int, default=2_500, help="episodes stepped in lock-step (with the queue)")
    ap.add_argument("--queue-steps", type=int, default=200, help="requests per lock-step episode")
    ap.add_argument("--scenario", default="random_walk")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: numpy elementwise ops are single-threaded anyway
    r = measure(args.batch, args.scenario, args.repeats, args.seed, queue_episodes=args.queue_episodes,
                queue_steps=args.queue_steps)
    print(f"AutoScale system: {r['n_actions']} actions, batch of {r['batch']} requests ({args.scenario}); "
          f"{r['timing']}")
    print(f"decisions/s, one action per request : {r['decisions_per_s']:,.0f}")
    print(f"decisions/s, all actions per request: {r['decisions_per_s_all_actions']:,.0f}")
    print(f"oracle requests/s (argmin over all) : {r['oracle_requests_per_s']:,.0f}")
    print(f"batch path with the queue, decisions/s ({r['queue_episodes']:,} episodes x {r['queue_steps']} steps in "
          f"lock-step): {r['lean_decisions_per_s']:,.0f} end to end, {r['kernel_decisions_per_s']:,.0f} with the "
          f"per-request inputs precomputed; {r['bytes_per_decision']:,.0f} bytes moved per decision; "
          f"{r['bandwidth_fraction']:.0%} of the {r['stream_bandwidth_gb_s']:.1f} GB/s triad bandwidth")
    for k, g in r["gym"].items():
        print(f"gym step {k} (incl. TimeLimit): {g['step_us']:.1f} us (best repeat {g['step_us_best']:.1f}); "
              f"reset {g['reset_ms']:.1f} ms "
              f"({g['step_us_with_resets']:.1f} us per step with resets)")
    for k, v in r["vector_steps_per_s"].items():
        print(f"vector env {k}: {v:,.0f} env steps/s")
    print(f"peak traced numpy memory during the batch runs: {r['peak_traced_mib']:.1f} MiB; "
          f"process max RSS: {r['max_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
