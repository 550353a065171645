"""DVFO performance and quality figures: ``python -m bench.perf.dvfo``.

Prints, for the default :class:`~bench.policies.dvfo.DVFOConfig` (or ``--ci``):

* training wall time and env steps;
* ``act()`` latency on CPU for a single observation (p50 / p99 µs);
* the share of decision latency hidden by thinking-while-moving;
* greedy evaluation on fresh seeds (never used in training): device energy per
  inference, QoS-met rate and latency of DVFO, of the per-request oracle over the
  DVFO action space, of everything-local at the highest frequencies and of
  maximal offload (xi = 1 at the highest frequencies); DVFO's gap to the oracle in %.

The oracle picks per request the least-energy action meeting QoS under that
request's realised random draws (:meth:`bench.sim.core.Simulator.oracle`); all
policies are then stepped through the same env episode (same seed), so the
queueing wait of thinking-while-moving applies to all of them alike.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from bench.policies.dvfo import DVFOConfig, DVFOLearner, hidden_decision_share, make_env, torch_settings, train

EVAL_SEED_BASE = 10_000  # evaluation seeds start here; training draws its env seeds from SeedSequence(config.seed)


def _rollout(env, seed: int, choose: Callable[[int, np.ndarray], int]) -> dict[str, float]:
    """One greedy episode; ``choose(t, obs)`` gives the action of request t."""
    obs, _ = env.reset(seed=seed)
    e, lat, ok, n, done = 0.0, 0.0, 0, 0, False
    while not done:
        obs, _r, term, trunc, info = env.step(choose(n, obs))
        e, lat, ok, n, done = e + info["energy_mj"], lat + info["latency_ms"], ok + info["qos_ok"], n + 1, term or trunc
    return {"energy_mj": e / n, "latency_ms": lat / n, "qos_ok": ok / n, "n_requests": n}


def reference_actions(env) -> dict[str, int]:
    """Everything local at the highest levels, and maximal offload (xi = 1) at the highest levels."""
    acts = env.unwrapped.action_table
    top = (acts["i_cpu"] == acts["i_cpu"].max()) & (acts["i_gpu"] == acts["i_gpu"].max()) & (acts["i_mem"] == acts["i_mem"].max())
    return {"local_max_freq": int(np.flatnonzero(top & (acts["xi"] == 0))[0]),
            "max_offload": int(np.flatnonzero(top & (acts["xi"] == acts["xi"].max()))[0])}


def evaluate(learner: DVFOLearner, config: DVFOConfig, scenarios: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """One row per (scenario, seed, policy): mean energy / latency per inference and QoS-met rate."""
    rows = []
    for sc in scenarios:
        env = make_env(config, sc)
        refs = reference_actions(env)
        for seed in seeds:
            env.reset(seed=int(seed))
            u = env.unwrapped
            # the oracle needs the episode's realised states and draws (the env's own episode data)
            ep = u.episode()
            best, _ = u.sim.oracle(ep.states, ep.draws)
            n_steps = env.spec.max_episode_steps or len(best)
            best = best[:n_steps]
            policies = {"dvfo": lambda t, o: learner.act(o), "oracle": lambda t, o, b=best: int(b[t])}
            policies.update({k: (lambda t, o, a=a: a) for k, a in refs.items()})
            for name, choose in policies.items():
                rows.append({"scenario": sc, "seed": int(seed), "policy": name, **_rollout(env, int(seed), choose)})
        env.close()
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and policy: means over seeds and the energy gap to the oracle (%)."""
    s = results.groupby(["scenario", "policy"], sort=False)[["energy_mj", "latency_ms", "qos_ok"]].mean().reset_index()
    oracle = s[s["policy"] == "oracle"].set_index("scenario")["energy_mj"]
    s["gap_to_oracle_pct"] = 100.0 * (s["energy_mj"] / s["scenario"].map(oracle) - 1.0)
    s["qos_violation_rate"] = 1.0 - s["qos_ok"]
    return s.drop(columns="qos_ok")


def act_latency_us(learner: DVFOLearner, env, n: int = 2000, seed: int = 0, repeats: int = 1) -> dict[str, float]:
    """Wall-clock ``act()`` time for single observations of a real episode (µs); with ``repeats`` > 1,
    the median over repeated passes of each percentile."""
    obs, _ = env.reset(seed=seed)
    observations = [obs]
    for _ in range(199):
        obs, *_ = env.step(learner.act(obs))
        observations.append(obs)
    times = np.empty(n)
    p50, p99 = [], []
    with torch_settings(learner.config.torch_threads):
        for _ in range(50):  # warm-up
            learner.act(observations[0])
        for _ in range(max(1, repeats)):
            for i in range(n):
                t = time.perf_counter()
                learner.act(observations[i % len(observations)])
                times[i] = time.perf_counter() - t
            p50.append(np.percentile(times, 50) * 1e6)
            p99.append(np.percentile(times, 99) * 1e6)
    return {"act_us_p50": float(np.median(p50)), "act_us_p99": float(np.median(p99))}


def main(argv: Sequence[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ci", action="store_true", help="use DVFOConfig.ci() (seconds) instead of the default config")
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--eval-seeds", type=int, default=5, help="number of fresh evaluation seeds per scenario")
    ap.add_argument("--eval-scenarios", nargs="*", default=None,
                    help="scenarios to evaluate on (default: the training scenarios)")
    args = ap.parse_args(argv)
    config = DVFOConfig.ci(seed=args.seed) if args.ci else DVFOConfig(seed=args.seed)
    result = train(config)
    print(f"training: {result.env_steps} env steps in {result.wall_time_s:.1f} s "
          f"(torch_threads={config.torch_threads}, scenarios={list(config.scenarios)})")
    env = make_env(config, config.scenarios[0])
    lat = act_latency_us(result.learner, env)
    print(f"act(): p50 {lat['act_us_p50']:.1f} us, p99 {lat['act_us_p99']:.1f} us (CPU, single observation)")
    hidden = hidden_decision_share(result.learner, env, n_steps=500, seed=EVAL_SEED_BASE)
    print(f"thinking-while-moving: decision mean {hidden['decision_us_mean']:.1f} us "
          f"(p50 {hidden['decision_us_p50']:.1f}, p99 {hidden['decision_us_p99']:.1f}), execution mean "
          f"{hidden['execution_ms_mean']:.1f} ms, share hidden {hidden['share_hidden']:.4f}; exposed per request "
          f"{hidden['exposed_us_sequential_mean']:.1f} us sequential -> {hidden['exposed_us_concurrent_mean']:.2f} us concurrent")
    scenarios = args.eval_scenarios or list(config.scenarios)
    seeds = [EVAL_SEED_BASE + i for i in range(args.eval_seeds)]
    summary = summarise(evaluate(result.learner, config, scenarios, seeds))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary.round(3).to_string(index=False))
    return {"train": result, "act": lat, "hidden": hidden, "summary": summary}


if __name__ == "__main__":
    main()
