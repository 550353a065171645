"""The best non-anticipative reference for AutoScale's held-out families (issue 23, round 10).

Usage (from the repository root, after the evaluate stage)::

    PYTHONPATH=$PWD python scripts/autoscale_reference.py \
        [--scenarios heldout_trace_verizon_lte heldout_trace_tmobile_lte_static] [--seeds 5] [--draws 128] \
        [--results results] [--csv reference.csv]

"Captured vs the best schedule found" measures a learner against a schedule that sees, in hindsight, every request's
own random draw (local and remote latency jitter, throughput, RTT and loss noise: ``bench.sim.core.Draws``) and the
whole future. Neither is available to an online policy. This script rolls out a policy that sees **everything the
environment could let a policy see now** and nothing of the future or of the draw:

* the request (DNN, QoS target, accuracy bound), the exact carried state it meets (each processor's and the
  transmitter's backlog in ms, each radio's quiet time / tail, thermal throttling), the current signal of every
  radio, the current **bandwidth cap** of a trace-driven link (not in AutoScale's observation), the co-runners'
  CPU / memory / GPU load: the env's own per-request ``States`` row with its carry, at full precision, no buckets;
* every action's **expected** cost ``E[E + λ·miss]`` (params.yaml ``objective``) over ``--draws`` fresh samples of
  the request's hidden draws (:meth:`bench.sim.core.Simulator.draw`, the distribution the env draws from; common
  samples across the actions of one request), and it takes the least (ties: the first action).

It is myopic (it does not plan what its choice leaves the next request): round 9 measured that, with ViT-B/16's
choices held at AutoScale's, re-optimising every other request *in hindsight* gains 0.02 mJ per inference on
``heldout_trace_verizon_lte`` (docs/autoscale.md), so planning the queues is worth little on these families; where
it is worth more, this reference is not an upper end of what an online policy could do.

On the same episodes (the evaluate stage's seeds, ``derive_seeds(seed, n, "evaluate", "autoscale_phone")``: the same
states and realised draws), it prints per scenario and seed the objective per inference of AutoScale, this
reference, the best schedule found and the certified lower end (read from ``<results>/evaluate/results.parquet`` and
``bound.csv``: the pipeline's own numbers), and the share of the headroom each captures, pooled per scenario as the
README's per-family table does (captured = (J best static per DNN − J) / (J best static per DNN − J lower end)).
The script changes nothing and writes nothing but ``--csv``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

LTE_DEFAULT = ("heldout_trace_verizon_lte", "heldout_trace_tmobile_lte_static")
SUITE = "autoscale_phone"
#: the pipeline policies read from the results table (name there -> column here)
READ = {"autoscale": "autoscale", "best_found_schedule": "best_found", "best_static_dnn": "best_static_dnn",
        "distilled": "distilled"}


def expected_costs(sim, states, t: int, k: int, rng: np.random.Generator, lam: float) -> np.ndarray:
    """Every action's mean cost ``E + λ·miss`` (mJ) for request ``t`` of an episode from the state its row of
    ``states`` carries, over ``k`` fresh samples of the request's hidden draws (the same samples for every action)."""
    rows = np.full(int(k), int(t))
    out = sim.evaluate(states.take(rows), None, sim.draw(int(k), rng), phases=False)
    cost = np.asarray(out.energy_mj, dtype=float) + lam * (1.0 - np.asarray(out.qos_ok, dtype=float))
    return cost.mean(axis=0)


def reference_rollout(env, seed: int, steps: int, k: int, lam: float, draw_seed: int) -> pd.DataFrame:
    """One episode of the expected-cost greedy reference: per request its action and realised cost."""
    u = env.unwrapped
    names = u.action_table["name"].to_numpy()
    rng = np.random.default_rng([int(draw_seed), int(seed)])
    env.reset(seed=int(seed))
    rows = []
    for t in range(int(steps)):
        ep = u.episode()
        exp = expected_costs(u.sim, ep.states, ep.step, k, rng, lam)
        a = int(np.argmin(exp))
        _obs, _r, term, trunc, info = env.step(a)
        rows.append({"seed": int(seed), "step": t, "workload": info["workload"], "ref_action": str(names[a]),
                     "ref_expected": float(exp[a]),
                     "ref_cost": float(info["energy_mj"]) + lam * (0.0 if info["qos_ok"] else 1.0)})
        if term or trunc:
            break
    return pd.DataFrame(rows)


def pipeline_rows(results: Path, scenario: str, lam: float) -> pd.DataFrame:
    """Per request: the pipeline's AutoScale, best found, best static per DNN and distilled rule (action, cost)."""
    cols = ["suite", "policy", "scenario", "seed", "step", "action_name", "energy_mj", "qos_ok"]
    df = pd.read_parquet(results / "evaluate" / "results.parquet", columns=cols,
                         filters=[("suite", "==", SUITE), ("scenario", "==", scenario)])
    df = df[df.policy.isin(list(READ))]
    df = df.assign(cost=df.energy_mj + lam * (~df.qos_ok.astype(bool)), col=df.policy.map(READ))
    wide = df.pivot_table(index=["seed", "step"], columns="col", values="cost", aggfunc="first")
    acts = df.pivot_table(index=["seed", "step"], columns="col", values="action_name", aggfunc="first")
    wide = wide.join(acts.add_suffix("_action"))
    return wide.reset_index()


def lower_end(results: Path, scenario: str) -> pd.Series:
    """Per seed: the certified lower end of the objective (``lower_lagrangian`` / requests, mJ per inference)."""
    b = pd.read_csv(results / "evaluate" / "bound.csv")
    b = b[(b.suite == SUITE) & (b.scenario == scenario)]
    return (b.lower_lagrangian / b.n).set_axis(b.seed.astype(int)).rename("lower_end")


def captured(static: float, j: float, end: float) -> float:
    """Share of the headroom (best static per DNN minus an end) that a schedule costing ``j`` captures."""
    return (static - j) / (static - end) if static != end else float("nan")


def summarise(df: pd.DataFrame, lower: pd.Series) -> pd.DataFrame:
    """Per seed, then pooled: J (mJ per inference) and captured shares against the lower end and the best found."""
    per = df.groupby("seed")[["autoscale", "reference", "best_found", "best_static_dnn", "distilled"]].mean()
    per["lower_end"] = lower.reindex(per.index).to_numpy()
    pooled = per.mean().to_frame("pooled").T
    out = pd.concat([per, pooled])
    for who in ("autoscale", "reference", "best_found"):
        out[f"{who}_vs_lower"] = [captured(r["best_static_dnn"], r[who], r["lower_end"]) for _, r in out.iterrows()]
    for who in ("autoscale", "reference"):
        out[f"{who}_vs_found"] = [captured(r["best_static_dnn"], r[who], r["best_found"]) for _, r in out.iterrows()]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", nargs="+", default=list(LTE_DEFAULT))
    ap.add_argument("--seeds", type=int, default=5, help="evaluation seeds (the evaluate stage's first N)")
    ap.add_argument("--draws", type=int, default=128, help="samples of a request's hidden draws per decision")
    ap.add_argument("--results", default="results", help="the pipeline's results directory")
    ap.add_argument("--csv", default="", help="write the per-request table here")
    args = ap.parse_args(argv)

    import bench  # noqa: F401  (registers envs and policies)
    from bench.config import apply_world, load_params
    from bench.policies.autoscale import AutoScaleLearner
    from bench.policies.rollout import make_env
    from bench.seeding import derive_seeds
    from bench.world.scenarios import load_scenario

    results = Path(args.results)
    try:  # bad input: one line naming it, exit 2 (no traceback)
        if args.seeds < 1 or args.draws < 1:
            raise ValueError(f"--seeds {args.seeds} and --draws {args.draws} must be >= 1")
        for sc in args.scenarios:
            load_scenario(sc)
        for f in ("evaluate/results.parquet", "evaluate/bound.csv", f"train/{SUITE}/policy"):
            if not (results / f).exists():
                raise FileNotFoundError(f"{results / f} not found (run the evaluate stage, or pass --results)")
        learner = AutoScaleLearner.load(results / "train" / SUITE / "policy")
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"autoscale_reference: {e}", file=sys.stderr)
        return 2

    params = load_params()
    apply_world(params)
    lam = float(params.objective.violation_cost_mj)
    seeds = derive_seeds(params.seed, args.seeds, "evaluate", SUITE)
    draw_seed = derive_seeds(params.seed, 1, "reference-draws", SUITE)[0]
    t0 = time.process_time()
    frames = []
    pd.set_option("display.width", 220, "display.max_columns", 30)
    for sc in args.scenarios:
        steps = load_scenario(sc).steps
        env = make_env("bench/AutoScale-v0", sc, steps, **learner.config.env_kwargs())
        ref = pd.concat([reference_rollout(env, s, steps, args.draws, lam, draw_seed) for s in seeds],
                        ignore_index=True)
        df = ref.merge(pipeline_rows(results, sc, lam), on=["seed", "step"], how="left")
        if df["autoscale"].isna().any():
            print(f"autoscale_reference: {sc}: the results table lacks some of these episodes' requests",
                  file=sys.stderr)
            return 2
        df = df.rename(columns={"ref_cost": "reference"}).assign(scenario=sc)
        frames.append(df)
        print(f"\n== {sc}: {len(seeds)} seeds x {steps} requests, λ = {lam:g} mJ/miss, "
              f"{args.draws} draws per decision")
        print(summarise(df, lower_end(results, sc)).round(3).to_string())
        per_dnn = df.groupby("workload").agg(
            n=("reference", "size"), autoscale=("autoscale", "mean"), reference=("reference", "mean"),
            best_found=("best_found", "mean"),
            as_action=("autoscale_action", lambda x: x.value_counts().index[0]),
            ref_action=("ref_action", lambda x: x.value_counts().index[0]),
            ref_share=("ref_action", lambda x: x.value_counts(normalize=True).iloc[0]),
            same_as_autoscale=("ref_action", lambda x: float((x == df.loc[x.index, "autoscale_action"]).mean())))
        per_dnn["ref_minus_as_mj_per_inf"] = (per_dnn.reference - per_dnn.autoscale) * per_dnn.n / len(df)
        print(per_dnn.round(3).to_string())
    if args.csv:
        pd.concat(frames, ignore_index=True).to_csv(args.csv, index=False)
    print(f"\n{time.process_time() - t0:.1f} CPU-s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
