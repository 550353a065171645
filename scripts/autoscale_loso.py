"""Leave-one-scenario-out validation of AutoScale's back-off feature ranking, on training scenarios only (issue 23).

The back-off (docs/autoscale-backoff.md) drops runtime features least informative first; *how* informativeness
is measured (``AutoScaleConfig.backoff_rank``) must be chosen without held-out data. This script is the
pre-registered protocol (docs/autoscale.md, "Round 8"):

1. ``log``: retrain AutoScale on a trained artefact's own config (``train.json``: same seed, so the same table,
   checked) and record every training sample (state id, action, TD target, training scenario).
2. ``validate``: for each training scenario k (a fold), rebuild the tables from the samples of the *other*
   training scenarios only (full table = their sample averages; back-off levels built with each candidate
   ranking), roll the greedy policy out on scenario k (``--seeds`` episodes, seeds derived from the artefact's
   seed and "loso"), and report the objective ``E + λ·miss`` per inference per fold and rank. Scenario k's
   contexts that the other scenarios never produced back off, which is the situation a held-out family meets.

Usage::

    PYTHONPATH=$PWD python scripts/autoscale_loso.py log results/train/autoscale_phone --out /tmp/samples.npz
    PYTHONPATH=$PWD python scripts/autoscale_loso.py validate results/train/autoscale_phone /tmp/samples.npz \
        [--ranks changed_share value_lost | --ranks orders] [--seeds 3] [--tag loso] [--csv folds.csv]

Writes only the files named by ``--out`` / ``--csv``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


def _config(train_dir: Path):
    from bench.policies.autoscale import AutoScaleConfig

    meta = json.loads((train_dir / "train.json").read_text())
    return AutoScaleConfig.from_dict(meta["config"])


def log_samples(train_dir: Path, out: Path) -> int:
    """Retrain with the artefact's config, recording (state, action, target, scenario) of every update."""
    from bench.policies import autoscale as mod

    config = _config(train_dir)
    rec: list[tuple[int, int, float]] = []
    original = mod.AutoScaleLearner.update_ids

    def recording(self, s, a, reward, s_next, terminated):  # discount 0: the target is the reward
        rec.append((int(s), int(a), float(reward)))
        return original(self, s, a, reward, s_next, terminated)

    mod.AutoScaleLearner.update_ids = recording
    try:
        t0 = time.process_time()
        result = mod.train(config)
    finally:
        mod.AutoScaleLearner.update_ids = original
    if config.discount != 0:
        raise SystemExit("autoscale_loso: needs discount 0 (the TD target is then the reward)")
    curve = result.curve
    names = list(config.scenarios)
    scen = np.empty(len(rec), dtype=np.int16)
    start = 0
    for end, sc in zip(curve["step"], curve["scenario"]):
        scen[start:end] = names.index(sc) if sc in names else [Path(n).stem for n in names].index(sc)
        start = end
    arr = np.asarray(rec, dtype=float)
    saved = train_dir / "policy" / "q_table.npz"
    same = None
    if saved.exists():
        with np.load(saved, allow_pickle=False) as d:
            same = bool(np.array_equal(d["visits"], result.learner.visits))
    np.savez_compressed(out, state=arr[:, 0].astype(np.int64), action=arr[:, 1].astype(np.int64),
                        target=arr[:, 2], scenario=scen, scenarios=np.asarray(names))
    print(f"{len(rec)} samples, {time.process_time() - t0:.0f} CPU-s; visits equal to the saved table: {same}")
    return 0


def _candidate(config, rank: str):
    """A candidate named ``changed_share`` / ``value_lost`` (a measure), ``order:a>b>c>d`` (a fixed drop order) or
    ``coverage`` (the config's own ranking and order with ``backoff_coverage``, docs/autoscale.md Round 10) or
    ``measured`` (no fixed order: every feature dropped by its measured ``changed_share``, round 8's incumbent)."""
    from dataclasses import replace

    if rank == "coverage":
        return replace(config, backoff_coverage=True)
    if rank == "measured":
        return replace(config, backoff_rank="changed_share", backoff_order=())
    if rank.startswith("order:"):
        return replace(config, backoff_order=tuple(rank.removeprefix("order:").split(">")))
    return replace(config, backoff_rank=rank)


def fold_learner(config, action_names, samples: dict, keep: np.ndarray, rank: str):
    """An AutoScale learner whose tables hold only the samples where ``keep`` (sample averages)."""
    from bench.policies.autoscale import AutoScaleLearner

    learner = AutoScaleLearner(_candidate(config, rank), action_names)
    s, a, t = samples["state"][keep], samples["action"][keep], samples["target"][keep]
    np.add.at(learner.visits, (s, a), 1)
    np.add.at(learner.target_sum, (s, a), t)
    learner.q = np.where(learner.visits > 0, learner.target_sum / np.maximum(learner.visits, 1),
                         config.optimistic_init)
    learner.rebuild_backoff()
    return learner


def episode_cost(learner, env, seed: int, lam: float, visited: list | None = None) -> tuple[float, float]:
    """(objective per inference, share of requests backed off) of one greedy episode; ``visited`` collects
    (state, action) of every request."""
    obs, _ = env.reset(seed=int(seed))
    total, n, backed = 0.0, 0, 0
    while True:
        a = learner.act(obs)
        s = learner.bins.state_id(obs)
        if visited is not None:
            visited.append((s, a))
        backed += learner.served_level(s) not in (0, None)
        obs, _, terminated, truncated, info = env.step(a)
        total += info["energy_mj"] + lam * (1.0 - float(info["qos_ok"]))
        n += 1
        if terminated or truncated:
            return total / n, backed / n


def all_orders(config) -> list[str]:
    """``order:`` candidates: every permutation of the droppable runtime features that have edges."""
    from itertools import permutations

    from bench.policies.autoscale import _DROPPABLE_NAMES

    names = [n.removesuffix("_edges") for n in _DROPPABLE_NAMES if getattr(config, n)]
    return ["order:" + ">".join(p) for p in permutations(names)]


def validate(train_dir: Path, samples_path: Path, ranks: list[str], seeds: int, csv: str,
             tag: str = "loso") -> int:
    from bench.policies.autoscale import make_envs
    from bench.seeding import derive_seeds

    config = _config(train_dir)
    with np.load(samples_path, allow_pickle=False) as d:
        samples = {k: d[k] for k in d.files}
    names = [str(x) for x in samples["scenarios"]]
    envs = make_envs(config)
    action_names = list(envs[0].unwrapped.action_table["name"])
    lam = float(config.violation_cost_mj or 0.0)
    ep_seeds = derive_seeds(config.seed, seeds, tag, "autoscale")
    if ranks == ["orders"]:
        ranks = ["changed_share"] + all_orders(config)
    rows = []
    for k, (name, env) in enumerate(zip(names, envs)):
        keep = samples["scenario"] != k
        learner = fold_learner(config, action_names, samples, keep, ranks[0])  # the fold's tables, built once
        for rank in ranks:
            learner.config = _candidate(config, rank)  # only the hierarchy differs between candidates
            learner.rebuild_backoff()
            order = [lvl.dropped.removesuffix("_edges") for lvl in learner.backoff_levels()]
            for i, sd in enumerate(ep_seeds):
                # exact shortcut: a candidate that takes an evaluated candidate's action in every state of that
                # candidate's episode replays the same episode (same seed, same actions), so the same cost
                twin = next((r for r in rows if r["fold"] == name and r["seed"] == int(sd) and all(
                    int(learner.row(st).argmax()) == at for st, at in r["_visited"])), None)
                if twin is not None:
                    rows.append({**twin, "rank": rank, "order": " > ".join(order), "replayed_from": twin["rank"]})
                    continue
                visited: list = []
                j, backed = episode_cost(learner, env, sd, lam, visited)
                rows.append({"fold": name, "rank": rank, "seed": int(sd), "j_mj": j, "backed_off": backed,
                             "order": " > ".join(order), "replayed_from": "", "_visited": sorted(set(visited))})
        f = pd.DataFrame([r for r in rows if r["fold"] == name]).groupby("rank")[["j_mj", "backed_off"]].mean()
        print(f"{name}: backed off {f.backed_off.max():.3f}; J {f.j_mj[ranks[0]]:.3f} ({ranks[0]}), "
              f"min {f.j_mj.min():.3f} ({f.j_mj.idxmin()}), max {f.j_mj.max():.3f}", flush=True)
    df = pd.DataFrame(rows).drop(columns="_visited")
    if csv:
        df.to_csv(csv, index=False)
    per = df.groupby(["fold", "rank"])[["j_mj", "backed_off"]].mean().unstack("rank")
    print(per.to_string())
    fold = df.groupby(["fold", "rank"])["j_mj"].mean().unstack("rank")
    base = ranks[0]
    d = fold.sub(fold[base], axis=0).div(fold[base], axis=0)
    summary = pd.DataFrame({"mean_d": d.mean(), "max_d": d.max(), "mean_j": fold.mean()}).sort_values("mean_d")
    print(f"d_k relative to {base}:")
    print(summary.to_string())
    return 0


def heldout(train_dir: Path, ranks: list[str], seeds: int, csv: str) -> int:
    """The saved table with each ranking, on the held-out scenarios (the evaluate stage's seeds); run only after
    the rule's outcome is written (docs/autoscale.md, Round 8). Capture uses the committed yardstick's best
    static per DNN and bound (``results/evaluate/yardstick.json`` next to ``train_dir``'s results)."""
    import bench  # noqa: F401  (registers envs and policies)
    from bench.config import apply_world, load_params
    from bench.policies.autoscale import AutoScaleLearner
    from bench.policies.rollout import make_env
    from bench.seeding import derive_seeds
    from bench.world.scenarios import load_scenario

    params = load_params()
    apply_world(params)
    lam = float(params.objective.violation_cost_mj)
    suite = params.evaluate.suites["autoscale_phone"]
    ep_seeds = derive_seeds(params.seed, seeds, "evaluate", "autoscale_phone")
    yard_path = train_dir.parent.parent / "evaluate" / "yardstick.json"
    yard = {r["scenario"]: r for r in json.loads(yard_path.read_text())["autoscale_phone"]["headroom"]}
    rows = []
    for rank in ranks:
        learner = AutoScaleLearner.load(train_dir / "policy")
        learner.config = _candidate(learner.config, rank)
        learner.rebuild_backoff()
        kw = learner.config.env_kwargs()
        for sc in suite.heldout_scenarios:
            env = make_env("bench/AutoScale-v0", sc, load_scenario(sc).steps, **kw)
            for sd in ep_seeds:
                j, backed = episode_cost(learner, env, sd, lam)
                rows.append({"scenario": sc, "rank": rank, "seed": int(sd), "j_mj": j, "backed_off": backed})
    df = pd.DataFrame(rows)
    if csv:
        df.to_csv(csv, index=False)
    per = df.groupby(["scenario", "rank"])[["j_mj", "backed_off"]].mean().reset_index()
    y = pd.DataFrame([{"scenario": sc, "j_static": yard[sc]["j_best_static_dnn_mj"], "j_bound": yard[sc]["j_bound_mj"],
                       "j_found": yard[sc]["j_best_found_mj"]} for sc in per.scenario.unique()])
    per = per.merge(y, on="scenario")
    per["captured_vs_bound"] = (per.j_static - per.j_mj) / (per.j_static - per.j_bound)
    per["captured_vs_found"] = (per.j_static - per.j_mj) / (per.j_static - per.j_found)
    pd.set_option("display.width", 200)
    print(per.round(4).to_string(index=False))
    print(per.groupby("rank")[["j_mj", "captured_vs_bound", "captured_vs_found"]].mean().round(4).to_string())
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    lg = sub.add_parser("log")
    lg.add_argument("train_dir")
    lg.add_argument("--out", required=True)
    va = sub.add_parser("validate")
    va.add_argument("train_dir")
    va.add_argument("samples")
    va.add_argument("--ranks", nargs="+", default=["changed_share", "value_lost"])
    va.add_argument("--seeds", type=int, default=3)
    va.add_argument("--csv", default="")
    va.add_argument("--tag", default="loso", help="episode seeds: derive_seeds(seed, n, TAG, 'autoscale')")
    ho = sub.add_parser("heldout")
    ho.add_argument("train_dir")
    ho.add_argument("--ranks", nargs="+", default=["changed_share", "value_lost"])
    ho.add_argument("--seeds", type=int, default=5)
    ho.add_argument("--csv", default="")
    args = ap.parse_args(argv)
    train_dir = Path(args.train_dir)
    if not (train_dir / "train.json").exists():
        print(f"autoscale_loso: {train_dir / 'train.json'} not found (a train stage's output directory)",
              file=sys.stderr)
        return 2
    if args.cmd == "log":
        return log_samples(train_dir, Path(args.out))
    if args.seeds < 1:
        print(f"autoscale_loso: --seeds {args.seeds}: need >= 1", file=sys.stderr)
        return 2
    if args.cmd == "heldout":
        return heldout(train_dir, args.ranks, args.seeds, args.csv)
    return validate(train_dir, Path(args.samples), args.ranks, args.seeds, args.csv, args.tag)


if __name__ == "__main__":
    sys.exit(main())
