"""AutoScale speed and quality figures (a benchmark, not a test).

``python -m bench.perf.autoscale`` trains the default config and prints
``act()`` latency (p50 / p99 microseconds over observations from real rollouts)
and the training wall time. ``--evaluate`` also measures the trained policy,
cpu_only and cloud_only greedily on every training scenario, on evaluation seeds
disjoint from the training seeds (training draws its episode seeds from
``SeedSequence(seed)``; evaluation uses ``--eval-seeds``), on the declared
objective ``J = E + λ·misses`` against the same episodes' yardstick
(:class:`bench.perf.learn.GapEvaluator`: the certified hindsight bound, the best
schedule found, the best static action per DNN), and prints per scenario and
overall: J of each reference, the headroom, AutoScale's device energy per
inference, gap to the bound and to the best found, headroom captured, QoS
violation rate and the energy-efficiency ratios ``E_cpu_only / E_autoscale`` and
``E_cloud_only / E_autoscale``. ``--train-seeds 0 1 2`` repeats for several
training seeds (the spread is part of the result).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from bench.policies.autoscale import AutoScaleConfig, AutoScaleLearner, make_envs, train
from bench.sim.envs import AUTOSCALE_ID


def collect_observations(config: AutoScaleConfig, n_obs: int = 20_000, seed: int = 0) -> list[np.ndarray]:
    """Observations of random-action rollouts on the training envs (scenarios cycled, 200 steps each)."""
    envs = make_envs(config)
    obs_list: list[np.ndarray] = []
    rng = np.random.default_rng(seed)
    while len(obs_list) < n_obs:
        env = envs[len(obs_list) % len(envs)]
        obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
        for _ in range(200):
            obs_list.append(obs)
            obs, _, _, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if truncated:
                break
    return obs_list[:n_obs]


def act_latency_us(learner: AutoScaleLearner, n_obs: int = 20_000, seed: int = 0, repeats: int = 1) -> dict[str, float]:
    """p50 / p99 of ``learner.act`` in µs of thread CPU time (net of the clock's own cost,
    :func:`bench.perf.clock.per_call_cpu_us`) over observations collected from the training envs; with ``repeats``
    > 1, the median over repeated passes of each percentile. ``wall_p50_us`` / ``wall_p99_us``: the same in wall
    time (an upper bound on a shared machine)."""
    from bench.perf.clock import per_call_cpu_us

    obs_list = collect_observations(learner.config, n_obs, seed)
    return per_call_cpu_us(learner.act, obs_list, len(obs_list), repeats)


def compare(learner: AutoScaleLearner, seeds, n_steps: int = 1000) -> pd.DataFrame:
    """Per training scenario and policy (autoscale, cpu_only, cloud_only): the figures of
    :class:`bench.perf.learn.GapEvaluator` on the scenario's evaluation episodes, with the episodes' yardstick."""
    from bench.perf.learn import GapEvaluator
    from bench.policies.base import make_policy

    kw = {k: v for k, v in learner.config.env_kwargs().items() if k != "violation_penalty"}
    rows = []
    for scen in learner.config.scenarios:
        ev = GapEvaluator(AUTOSCALE_ID, [scen], kw, seeds, n_steps)
        y = ev.yardstick()
        policies = {"autoscale": learner, **{n: make_policy(n, ev.envs[0]) for n in ("cpu_only", "cloud_only")}}
        for name, pol in policies.items():
            rows.append({"scenario": scen, "policy": name, **y, **ev(pol)})
        ev.close()
    return pd.DataFrame(rows)


def figures(results: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, plus an ``ALL`` row pooled over all requests: the yardstick (J per request of the certified
    bound, the best found and the best static per DNN; the headroom) and AutoScale's energy, objective, gaps,
    headroom captured, violations and energy ratios to cpu_only / cloud_only."""
    def one(df: pd.DataFrame) -> dict[str, float]:
        w = df.groupby("policy")["requests"].sum()
        mean = lambda col: (df[col] * df["requests"]).groupby(df["policy"]).sum() / w  # noqa: E731
        e, j, v = mean("energy_mj"), mean("objective_mj"), mean("qos_violation")
        ja = j["autoscale"]
        jb, jf, js = (mean(c)["autoscale"] for c in ("bound_objective_mj", "best_found_objective_mj",
                                                     "static_objective_mj"))
        return {"j_bound_mj": jb, "j_best_found_mj": jf, "j_static_mj": js, "headroom": 1 - jb / js,
                "autoscale_mj": e["autoscale"], "autoscale_j_mj": ja, "gap_to_bound_pct": 100 * (ja / jb - 1),
                "gap_to_best_found_pct": 100 * (ja / jf - 1),
                "captured": (js - ja) / (js - jb) if js > jb else np.nan,
                "captured_found": (js - ja) / (js - jf) if js > jf else np.nan, "viol_pct": 100 * v["autoscale"],
                "x_vs_cpu_only": e["cpu_only"] / e["autoscale"], "x_vs_cloud_only": e["cloud_only"] / e["autoscale"],
                "cpu_only_viol_pct": 100 * v["cpu_only"], "cloud_only_viol_pct": 100 * v["cloud_only"]}

    rows = {s: one(d) for s, d in results.groupby("scenario")}
    rows["ALL"] = one(results)
    return pd.DataFrame(rows).T


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--total-steps", type=int, default=None, help="override AutoScaleConfig.total_steps")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--evaluate", action="store_true",
                   help="also measure against the hindsight bound, the best found and the baselines")
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[9001, 9002, 9003])
    p.add_argument("--eval-steps", type=int, default=1000)
    args = p.parse_args(argv)
    for seed in args.train_seeds:
        steps = {} if args.total_steps is None else {"total_steps": args.total_steps}
        cfg = AutoScaleConfig(seed=seed, **steps)
        result = train(cfg)
        lat = act_latency_us(result.learner)
        visited = int((result.learner.visits.sum(axis=1) > 0).sum())
        print(f"train seed {seed}: {result.env_steps} env steps in {result.wall_time_s:.1f} s "
              f"({1e6 * result.wall_time_s / result.env_steps:.0f} us/step); states visited {visited} of "
              f"{result.learner.bins.n_states}; act p50 {lat['p50_us']:.2f} us, p99 {lat['p99_us']:.2f} us")
        if args.evaluate:
            table = figures(compare(result.learner, args.eval_seeds, args.eval_steps))
            with pd.option_context("display.width", 200, "display.max_columns", 20):
                print(table.round(2).to_string())


if __name__ == "__main__":
    main()
