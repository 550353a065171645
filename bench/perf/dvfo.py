"""DVFO performance and quality figures: ``python -m bench.perf.dvfo``.

Prints, for the default :class:`~bench.policies.dvfo.DVFOConfig` (or ``--ci``):

* training wall time and env steps;
* ``act()`` latency on CPU for a single observation (p50 / p99 µs);
* the share of decision latency hidden by thinking-while-moving;
* greedy evaluation on fresh seeds (never used in training), on the declared objective
  ``J = E + λ·misses`` against the same episodes' yardstick
  (:class:`bench.perf.learn.GapEvaluator`: the certified hindsight bound, the best schedule
  found, the best static action per DNN): device energy per inference, J, QoS violation rate
  and latency of DVFO, of everything-local at the highest frequencies and of maximal offload
  (xi = 1 at the highest frequencies); each one's gap to the bound and to the best found and
  its headroom captured (None where the best static choice leaves no headroom).

All policies are stepped through the same env episodes (same seeds), so the queueing wait of
thinking-while-moving applies to all of them alike.
"""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np
import pandas as pd

from bench.policies.base import Policy
from bench.policies.dvfo import DVFOConfig, DVFOLearner, hidden_decision_share, make_env, torch_settings, train

EVAL_SEED_BASE = 10_000  # evaluation seeds start here; training draws its env seeds from SeedSequence(config.seed)


class _Fixed(Policy):
    """One action for every request (the reference actions below)."""

    name = "fixed"

    def __init__(self, action: int):
        self.action = int(action)

    def act(self, obs) -> int:
        return self.action


def reference_actions(env) -> dict[str, int]:
    """Everything local at the highest levels, and maximal offload (xi = 1) at the highest levels."""
    acts = env.unwrapped.action_table
    top = (acts["i_cpu"] == acts["i_cpu"].max()) & (acts["i_gpu"] == acts["i_gpu"].max()) & (acts["i_mem"] == acts["i_mem"].max())
    return {"local_max_freq": int(np.flatnonzero(top & (acts["xi"] == 0))[0]),
            "max_offload": int(np.flatnonzero(top & (acts["xi"] == acts["xi"].max()))[0])}


def evaluate(learner: DVFOLearner, config: DVFOConfig, scenarios: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """One row per (scenario, policy): the figures of :class:`bench.perf.learn.GapEvaluator` on the scenario's
    evaluation episodes (``seeds``), with the episodes' yardstick."""
    from bench.perf.learn import GapEvaluator
    from bench.sim.envs import DVFO_ID
    from bench.world.scenarios import load_scenario

    rows = []
    for sc in scenarios:
        steps = config.max_episode_steps or load_scenario(sc).steps  # as make_env
        ev = GapEvaluator(DVFO_ID, [sc], config.env_kwargs(), seeds, steps)
        y = ev.yardstick()
        policies = {"dvfo": learner, **{k: _Fixed(a) for k, a in reference_actions(ev.envs[0]).items()}}
        for name, pol in policies.items():
            rows.append({"scenario": sc, "policy": name, **y, **ev(pol)})
        ev.close()
    return pd.DataFrame(rows)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and policy: energy, objective, latency, violations, gaps (%) and headroom captured."""
    s = results[["scenario", "policy", "energy_mj", "objective_mj", "latency_ms", "qos_violation"]].copy()
    s["gap_to_bound_pct"] = 100.0 * results["gap_to_bound"]
    s["gap_to_best_found_pct"] = 100.0 * results["gap_to_best_found"]
    s["headroom"] = results["headroom"]
    s["captured"] = results["headroom_captured"]
    return s


def act_latency_us(learner: DVFOLearner, env, n: int = 2000, seed: int = 0, repeats: int = 1) -> dict[str, float]:
    """``act()`` time for single observations of a real episode, p50 / p99 µs of thread CPU time (net of the clock's
    own cost, :func:`bench.perf.clock.per_call_cpu_us`; torch runs ``act`` on the calling thread with
    ``torch_threads`` = 1); with ``repeats`` > 1, the median over repeated passes of each percentile.
    ``act_us_wall_p50`` / ``act_us_wall_p99``: the same in wall time (an upper bound on a shared machine)."""
    from bench.perf.clock import per_call_cpu_us

    obs, _ = env.reset(seed=seed)
    observations = [obs]
    for _ in range(199):
        obs, *_ = env.step(learner.act(obs))
        observations.append(obs)
    with torch_settings(learner.config.torch_threads):
        r = per_call_cpu_us(learner.act, observations, n, repeats)
    return {"act_us_p50": r["p50_us"], "act_us_p99": r["p99_us"], "act_us_wall_p50": r["wall_p50_us"],
            "act_us_wall_p99": r["wall_p99_us"], "clock_cost_us": r["clock_cost_us"],
            "torch_threads": learner.config.torch_threads}


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
