"""Where a trained AutoScale loses to the best schedule found, request by request (issue 23).

Usage (from the repository root, a trained artefact as the train stage writes it)::

    PYTHONPATH=$PWD python scripts/autoscale_gap.py results/train/autoscale_phone/policy \
        [--scenarios heldout_trace_verizon_lte heldout_trace_tmobile_lte_static] [--seeds 5] \
        [--reference-seeds 2] [--steps 0] [--csv per_request.csv]

For every evaluation episode (the evaluate stage's seeds, ``derive_seeds(seed, n, "evaluate", "autoscale_phone")``)
it rolls AutoScale out and, at every request, also evaluates *every* action on the state that request meets
(:meth:`bench.policies.oracle.GreedyOracle.outcomes`: the same draw, queues and radio the env uses), so each
request carries the cost (``E + λ·miss``, params.yaml ``objective``) of the chosen action and of every other one.
It then searches the episode's bound (:func:`bench.policies.bound.hindsight_bound`) and replays the best schedule
found (``best_found_schedule``) on the same episode. It prints:

1. **Per DNN x LTE-signal bucket** (the state's ``lte_dbm`` bucket): requests, AutoScale's and the best found's
   cost per request, AutoScale's most frequent action and the best found's, the share of AutoScale's requests
   decided from the full table (``level 0``) or a coarser back-off table, and the share whose chosen action had
   fewer than ``backoff_min_visits`` samples.
2. **The gap decomposed** (mJ per inference), each step a policy that knows a little more:

   * ``AutoScale`` - realised;
   * ``state-best (train)`` - in each Q-table state, the action whose mean one-step cost was least on the
     *training* scenarios along AutoScale's own greedy rollouts (``--reference-seeds`` episodes per scenario),
     evaluated on the held-out requests (one-step costs). AutoScale minus this is what the Q-learning missed on
     the data it trained on: **(b) a learner defect** (if the table had learned that argmin it would take it);
   * ``state-best (held-out)`` - the same argmin on the held-out requests themselves (hindsight per state).
     ``state-best (train)`` minus this is a shift between training and held-out that the state does not see:
     **(c) the observation lacks what decides it**;
   * ``request-best`` - each request's own cheapest action on the state AutoScale's earlier choices left
     (the greedy oracle on AutoScale's trajectory). ``state-best (held-out)`` minus this needs information
     no state bucket carries (the request's jitter draw, the exact backlog): **(c)**;
   * ``best found`` - the bound search's schedule (hindsight over the whole episode, planning the queues).
     ``request-best`` minus this is planning (what one choice does to later requests' queues).

   One-step costs of the counterfactual actions hold AutoScale's trajectory fixed (the queue a different
   choice would leave for the next request is not replayed), so the middle rungs are estimates; the two ends
   are realised rollouts.
3. **Back-off**: the share of requests (and of the gap to ``state-best (held-out)``) in states decided by a
   coarser table or with a chosen action below the confidence threshold: **(a) never visited in training**.

``--csv`` writes the per-request table (AutoScale's and the best found's action and cost, the state's buckets,
back-off level, visits, one-step cost of every action). The script changes nothing and writes nothing else.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

LTE_DEFAULT = ("heldout_trace_verizon_lte", "heldout_trace_tmobile_lte_static")


def _cost(lam: float, energy, qos_ok):
    return np.asarray(energy, dtype=float) + lam * (1.0 - np.asarray(qos_ok, dtype=float))


def rollout(learner, env, seed: int, steps: int, lam: float) -> pd.DataFrame:
    """AutoScale's greedy episode with every action's one-step cost at every request."""
    from bench.policies.oracle import GreedyOracle
    from bench.sim.envs import obs_index

    probe = GreedyOracle(env)
    names = env.unwrapped.action_table["name"].to_numpy()
    fields = {f: obs_index(env, f) for f in ("lte_dbm", "wifi_dbm", "cpu_busy_ms", "gpu_busy_ms", "dsp_busy_ms")}
    obs, _ = env.reset(seed=int(seed))
    rows, costs = [], []
    for t in range(int(steps)):
        s = learner.bins.state_id(obs)
        a = int(learner.act(obs))
        out = probe.outcomes()
        c = _cost(lam, out.energy_mj[0], out.qos_ok[0])
        level = learner.served_level(s)
        rec = {"seed": int(seed), "step": t, "state": s, "action": a, "action_name": str(names[a]),
               "level": -1 if level is None else (level if isinstance(level, int) else 99),
               "visits": int(learner.visits[s, a]), **{f: float(obs[i]) for f, i in fields.items()},
               **{f"b_{k}": v for k, v in learner.bins.decode(s).items()}}
        obs, _r, term, trunc, info = env.step(a)
        rec.update(workload=info["workload"], cost=float(_cost(lam, info["energy_mj"], info["qos_ok"])),
                   one_step_cost=float(c[a]))
        rows.append(rec)
        costs.append(c)
        if term or trunc:
            break
    df = pd.DataFrame(rows)
    cost = np.vstack(costs)
    for j, n in enumerate(names):
        df[f"c:{n}"] = cost[:, j]
    return df


def best_found(env, seed: int, steps: int, lam: float) -> pd.DataFrame:
    """The best schedule the bound search finds on the episode, replayed (its actions and realised costs)."""
    from bench.policies.bound import hindsight_bound
    from bench.policies.rollout import evaluate_policy
    from bench.sim.objective import Objective

    env.reset(seed=int(seed))
    b = hindsight_bound(env, Objective(lam), int(steps))
    fr = evaluate_policy("best_found_schedule", env, None, [int(seed)], int(steps),
                         policy_kwargs={"violation_cost_mj": lam, "bound": b, "n_steps": int(steps)})
    fr["cost"] = _cost(lam, fr["energy_mj"], fr["qos_ok"])
    fr["bound_lower"] = float(b.lower_lagrangian) / max(b.n, 1)  # the certified lower end, mJ per inference
    return fr[["seed", "step", "action_name", "cost", "bound_lower"]].rename(
        columns={"action_name": "bf_action", "cost": "bf_cost"})


def state_best(ref: pd.DataFrame, names) -> pd.Series:
    """Per Q-table state: the action with the least mean one-step cost over ``ref``'s requests in that state."""
    cols = [f"c:{n}" for n in names]
    means = ref.groupby("state")[cols].mean()
    return pd.Series(np.asarray(names)[np.nanargmin(means.to_numpy(), axis=1)], index=means.index)


def _pick(df: pd.DataFrame, choice: pd.Series) -> np.ndarray:
    """One-step cost of ``choice[state]`` per request (AutoScale's own where the state has no choice)."""
    act = df["state"].map(choice)
    out = df["one_step_cost"].to_numpy(dtype=float).copy()
    for i, a in enumerate(act.to_numpy()):
        if isinstance(a, str):
            out[i] = df[f"c:{a}"].iat[i]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("policy", help="trained AutoScale artefact directory (…/policy)")
    ap.add_argument("--scenarios", nargs="+", default=list(LTE_DEFAULT))
    ap.add_argument("--seeds", type=int, default=5, help="evaluation seeds (the evaluate stage's first N)")
    ap.add_argument("--reference-seeds", type=int, default=2,
                    help="episodes per training scenario for the 'state-best (train)' rung (0: skip)")
    ap.add_argument("--steps", type=int, default=0, help="requests per episode (0: the scenario's own length)")
    ap.add_argument("--csv", default="", help="write the per-request table here")
    args = ap.parse_args(argv)

    import bench  # noqa: F401  (registers envs and policies)
    from bench.config import apply_world, load_params
    from bench.policies.autoscale import AutoScaleLearner
    from bench.policies.rollout import make_env
    from bench.seeding import derive_seeds
    from bench.world.scenarios import load_scenario

    params = load_params()
    apply_world(params)
    lam = float(params.objective.violation_cost_mj)
    t0 = time.process_time()
    try:  # bad input: one line naming it, exit 2 (no traceback)
        learner = AutoScaleLearner.load(args.policy)
        for sc in args.scenarios:
            load_scenario(sc)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"autoscale_gap: {e}", file=sys.stderr)
        return 2
    if args.seeds < 1 or args.reference_seeds < 0 or args.steps < 0:
        print(f"autoscale_gap: --seeds {args.seeds} (>= 1), --reference-seeds {args.reference_seeds} (>= 0), "
              f"--steps {args.steps} (>= 0)", file=sys.stderr)
        return 2
    kw = learner.config.env_kwargs()
    length = lambda sc: load_scenario(sc).steps if args.steps <= 0 else min(args.steps, load_scenario(sc).steps)  # noqa: E731
    seeds = derive_seeds(params.seed, max(args.seeds, 1), "evaluate", "autoscale_phone")[: args.seeds]

    ref = []
    if args.reference_seeds > 0:
        rseeds = derive_seeds(params.seed, args.reference_seeds, "gap-reference", "autoscale_phone")
        for sc in learner.config.scenarios:
            env = make_env("bench/AutoScale-v0", sc, length(sc), **kw)
            ref += [rollout(learner, env, s, length(sc), lam).assign(scenario=sc) for s in rseeds]
    ref = pd.concat(ref, ignore_index=True) if ref else None

    frames = []
    for sc in args.scenarios:
        env = make_env("bench/AutoScale-v0", sc, length(sc), **kw)
        names = list(env.unwrapped.action_table["name"])
        for s in seeds:
            df = rollout(learner, env, s, length(sc), lam)
            df = df.merge(best_found(env, s, length(sc), lam), on=["seed", "step"], how="left")
            frames.append(df.assign(scenario=sc))
    df = pd.concat(frames, ignore_index=True)
    min_visits = learner.config.backoff_min_visits

    df["req_best"] = df[[f"c:{n}" for n in names]].min(axis=1)
    df["held_best"] = _pick(df, state_best(df, names))
    df["train_best"] = _pick(df, state_best(ref, names)) if ref is not None else np.nan
    df["backed_off"] = (df["level"] != 0) | (df["visits"] < min_visits)
    df["lte_bucket"] = df["b_lte_dbm"]

    pd.set_option("display.width", 200, "display.max_columns", 30, "display.max_rows", 200)
    for sc, g in df.groupby("scenario", sort=False):
        print(f"\n== {sc}: {g.seed.nunique()} seeds x {len(g) // g.seed.nunique()} requests, λ = {lam:g} mJ/miss")
        rung = {"AutoScale": g.cost.mean(), "state-best (train)": g.train_best.mean(),
                "state-best (held-out)": g.held_best.mean(), "request-best": g.req_best.mean(),
                "best found": g.bf_cost.mean(), "bound (lower end)": g.bound_lower.mean()}
        gap = rung["AutoScale"] - rung["bound (lower end)"]
        print("gap ladder (mJ per inference; each step's share of AutoScale - the bound's lower end):")
        prev = None
        for k, v in rung.items():
            if not np.isfinite(v):  # a rung not computed (--reference-seeds 0)
                continue
            share = "" if prev is None or gap == 0 else f"  step {prev - v:+7.2f} ({(prev - v) / gap:6.1%})"
            print(f"  {k:24s} {v:8.2f}{share}")
            prev = v
        bo = g.backed_off
        print(f"back-off (a): {bo.mean():.1%} of requests decided by a coarser table or an entry < {min_visits} "
              f"samples; their excess over state-best (held-out): {(g.cost - g.held_best)[bo].sum() / len(g):.2f} "
              f"mJ/inf (visited states: {(g.cost - g.held_best)[~bo].sum() / len(g):.2f})")
        t = g.groupby(["workload", "lte_bucket"]).agg(
            n=("cost", "size"), autoscale=("cost", "mean"), best_found=("bf_cost", "mean"),
            state_best_train=("train_best", "mean"), request_best=("req_best", "mean"),
            as_action=("action_name", lambda x: x.value_counts().index[0]),
            as_share=("action_name", lambda x: x.value_counts(normalize=True).iloc[0]),
            bf_action=("bf_action", lambda x: x.value_counts().index[0]),
            bf_share=("bf_action", lambda x: x.value_counts(normalize=True).iloc[0]),
            level0=("level", lambda x: (x == 0).mean()), low_visits=("visits", lambda x: (x < min_visits).mean()))
        t["gap_mj_per_inf"] = (t.autoscale - t.best_found) * t.n / len(g)
        print(t.sort_values("gap_mj_per_inf", ascending=False).round(3).to_string())
        busy = g.groupby(["workload", "b_cpu_busy_ms", "b_gpu_busy_ms", "b_dsp_busy_ms"]).agg(
            n=("cost", "size"), autoscale=("cost", "mean"), best_found=("bf_cost", "mean"),
            as_action=("action_name", lambda x: x.value_counts().index[0]),
            bf_action=("bf_action", lambda x: x.value_counts().index[0]))
        busy["gap_mj_per_inf"] = (busy.autoscale - busy.best_found) * busy.n / len(g)
        print("by backlog buckets (cpu, gpu, dsp busy >= edge):")
        print(busy.sort_values("gap_mj_per_inf", ascending=False).head(12).round(3).to_string())
    if args.csv:
        df.to_csv(args.csv, index=False)
    print(f"\n{time.process_time() - t0:.1f} CPU-s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
