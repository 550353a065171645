"""A direct, small evaluation of the baselines under the simulator's physics (no training, no DVC).

``python -m bench.pipeline.energy_check [--seeds N] [--out CSV]`` rolls every baseline out on every
scenario (train and held-out) of both suites in ``params.yaml`` over whole scenarios and prints,
per suite and policy: energy per inference above idle (what policies minimise) and total (with the
device's idle baseline over the episode), p95 latency, QoS violations, timeouts, and the radio
tail / promotion share of the above-idle energy. Learned and fitted policies are not included
(they need the train and evaluate stages). Seeds derive from the top-level seed like the evaluate stage's.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from bench.config import load_params
from bench.seeding import derive_seeds

ENV_IDS = {"autoscale": "bench/AutoScale-v0", "dvfo": "bench/DVFO-v0"}
#: baselines that need no fitting or training (the fitted ones take their data from the evaluate stage)
UNFITTED = ("cpu_only", "gpu_only", "edge_gpu_max", "cloud_only", "random", "neurosurgeon", "greedy_oracle", "oracle")


def run(seeds: int = 1, suites=None) -> pd.DataFrame:
    import bench  # noqa: F401  (registers the envs)
    from bench.policies.rollout import evaluate_policy
    from bench.world.scenarios import load_scenario

    params = load_params()
    frames = []
    for suite, s in params.evaluate.suites.items():
        if suites and suite not in suites:
            continue
        learner = params.train.runs[s.run].learner
        cfg = getattr(params.train, learner)
        env_kwargs = {"autoscale": lambda: {"max_levels_per_target": cfg.max_levels_per_target},
                      "dvfo": lambda: {"n_cpu_levels": cfg.n_cpu_levels, "n_gpu_levels": cfg.n_gpu_levels,
                                       "n_mem_levels": cfg.n_mem_levels, "xi_levels": cfg.xi_levels}}[learner]()
        for split, scens in (("train", s.scenarios), ("heldout", s.heldout_scenarios)):
            for sc in scens:
                n = load_scenario(sc).steps
                for pol in [p for p in s.policies if p in UNFITTED]:
                    f = evaluate_policy(pol, ENV_IDS[learner], sc, derive_seeds(params.seed, seeds, "evaluate", suite), n,
                                        policy_kwargs={"seed": params.seed, "n_steps": n}, env_kwargs=env_kwargs)
                    f.insert(0, "split", split)
                    f.insert(0, "suite", suite)
                    frames.append(f)
    return pd.concat(frames, ignore_index=True)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    g = df.groupby(["suite", "split", "policy"])
    out = pd.DataFrame({
        "above_idle_mj": g["energy_mj"].mean(), "total_mj": g["total_energy_mj"].mean(),
        "p95_latency_ms": g["latency_ms"].quantile(0.95), "max_latency_ms": g["latency_ms"].max(),
        "qos_violation": 1 - g["qos_ok"].mean(), "timeouts": g["timed_out"].mean(),
        "tail_share": g["tail_mj"].sum() / g["energy_mj"].sum(), "promo_share": g["promo_mj"].sum() / g["energy_mj"].sum(),
    })
    return out.round(4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pipeline.energy_check", description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=1, help="episodes per (policy, scenario) (default %(default)s)")
    ap.add_argument("--out", help="also write the per-request rows here (CSV)")
    ap.add_argument("--suite", action="append", help="only this suite of params.yaml (repeatable; default: all)")
    args = ap.parse_args(argv)
    df = run(args.seeds, args.suite)
    if args.out:
        df.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 200):
        print(summarise(df))
    return 0


if __name__ == "__main__":
    sys.exit(main())
