"""DVFO over training seeds: train the suite's run (params.yaml's train.dvfo, a seed per curve seed) and roll the
greedy policy and best_static_dnn out on the suite's held-out and seen scenarios (docs/dvfo.md, issue 23 tables).

    python scripts/dvfo_seeds.py --suite dvfo_jetson --seeds 0 1 2 --tag uniform [--set prioritized_replay=true]
    python scripts/dvfo_seeds.py --suite dvfo_phone --seeds 1 --tag lrdecay --set learning_rate_end=5e-5 \
        --training-scenarios-only      # score on train.dvfo.scenarios only (a decision's evidence)
    ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE python scripts/dvfo_seeds.py --seeds 0 --tag other_isa
    python scripts/dvfo_seeds.py --suite dvfo_phone --seeds 0 --tag avg --set act_average_fraction=0.1 --also-last \
        --training-scenarios-only  # also saves and scores the last online weights (run TAG-last): the same
                                   # training without the averaging, a paired baseline (docs/dvfo.md round 8)
    python scripts/dvfo_seeds.py --suite dvfo_jetson --seeds 0 --tag sel --set select_snapshots=3 --train-only
        # also saves the last window's average before the choice among the snapshots as run TAG-nosel (round 10)

Seed k is the pipeline's own run for k = 0 and its curve seed k otherwise (bench.pipeline.training.make_config);
evaluation: ``--eval-seeds`` seeds of the suite (derive_seeds(seed, n, "evaluate", suite)), whole scenarios.
Objective E + λ·misses (params.yaml objective) in mJ per inference; runs are written under ``--out``/TAG/RUN/sK.
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path
import pandas as pd
from bench.config import load_params
from bench.pipeline.training import make_config, learner_spec
from bench.pipeline.evaluate import suite_cells, run_cells
ap = argparse.ArgumentParser()
ap.add_argument("--suite", default="dvfo_jetson")
ap.add_argument("--seeds", type=int, nargs="+", default=[0])
ap.add_argument("--eval-seeds", type=int, default=2)
ap.add_argument("--set", nargs="*", default=[])
ap.add_argument("--tag", default="base")
ap.add_argument("--train-only", action="store_true")
ap.add_argument("--eval-only", action="store_true")
ap.add_argument("--workers", type=int, default=1)
ap.add_argument("--baselines", nargs="*", default=["best_static_dnn"],
                help="policies scored beside DVFO (none: DVFO only, the cheapest check)")
ap.add_argument("--also-last", action="store_true",
                help="with act_average_fraction > 0: also save and score the last online weights as run TAG-last")
ap.add_argument("--out", default="dvfo-seeds")
ap.add_argument("--training-scenarios-only", action="store_true",
                help="evaluate on the run's training scenarios only (train.dvfo.scenarios: what a decision may use)")
a = ap.parse_args()
P = load_params()
suite = P.evaluate.suites[a.suite]
run = suite.run; prof = P.train.runs[run].profile
base = {f.name: getattr(P.train.dvfo, f.name) for f in dataclasses.fields(P.train.dvfo)}
for kv in a.set:
    k, v = kv.split("="); base[k] = json.loads(v)
lam = P.objective.violation_cost_mj
rows = []
for k in a.seeds:
    cfg = make_config("dvfo", prof, base, P.seed, run, curve_seed=k)
    out = Path(a.out) / a.tag / run / f"s{k}"
    t, cpu = time.perf_counter(), time.process_time()
    last = Path(a.out) / f"{a.tag}-last" / run / f"s{k}"
    if a.also_last and not a.eval_only:
        from bench.policies.dvfo import DVFOLearner
        swap = DVFOLearner._act_on_average

        def save_last_then_swap(self, _swap=swap, _last=last):
            self.save(_last / "policy")  # the online weights before the average replaces them
            _swap(self)
        DVFOLearner._act_on_average = save_last_then_swap
    unsel = Path(a.out) / f"{a.tag}-nosel" / run / f"s{k}"
    sel_cpu = []
    if cfg.select_snapshots > 1 and not a.eval_only:
        import bench.policies.dvfo as dvfo_mod
        select = dvfo_mod.select_snapshot

        def save_then_select(learner, envs, rng, _select=select, _unsel=unsel):
            learner.save(_unsel / "policy")  # the last window's average: what select_snapshots 1 acts on
            c0 = time.process_time()
            out = _select(learner, envs, rng)
            sel_cpu.append(time.process_time() - c0)
            return out
        dvfo_mod.select_snapshot = save_then_select
    if not a.eval_only:
        res = learner_spec("dvfo").train(cfg)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        res.learner.save(out / "policy")
        (out / "train.json").write_text(json.dumps({"learner": "dvfo", "profile": prof, "config": cfg.to_dict()}))
        res.curve.to_csv(out / "curve.csv")
        if a.also_last:
            (last / "train.json").write_text((out / "train.json").read_text())
        if sel_cpu:  # --set select_snapshots=K: the run TAG-nosel is the same training without the choice
            (unsel / "train.json").write_text((out / "train.json").read_text())
            (out / "selection.json").write_text(json.dumps({**res.learner.selection, "cpu_s": sel_cpu[0],
                                                            "train_cpu_s": cpu}))
            print(f"# selection {res.learner.selection} in {sel_cpu[0]:.1f}s process CPU (of {cpu:.1f})", flush=True)
        print(f"# {a.tag} seed {k}: trained {res.env_steps} steps in {wall:.1f}s wall, {cpu:.1f}s process CPU", flush=True)
    else: wall = 0
    if a.train_only: continue
    scen = list(suite.heldout_scenarios) + list(suite.scenarios)
    if a.training_scenarios_only:
        scen = list(dict.fromkeys(cfg.scenarios))
    cells = suite_cells(a.suite, out, a.baselines, scen, a.eval_seeds, 0, P.seed, lam)
    df = run_cells(cells, workers=a.workers, progress=False)
    if a.also_last:  # the last online weights, the same cells: policy "dvfo_last"
        lcells = [c for c in suite_cells(a.suite, last, [], scen, a.eval_seeds, 0, P.seed, lam)]
        ldf = run_cells(lcells, workers=a.workers, progress=False)
        ldf.to_parquet(last / "eval.parquet")
        df = pd.concat([df, ldf[ldf.policy == "dvfo"].assign(policy="dvfo_last")], ignore_index=True)
    df.to_parquet(out / "eval.parquet")
    df["objv"] = df.energy_mj + lam * (1 - df.qos_ok)
    g = df.groupby(["policy", "scenario"]).objv.mean().unstack(0)
    g["held"] = g.index.isin(suite.heldout_scenarios)
    print(g.round(1).to_string(), flush=True)
    for h in (True, False):
        sub = df[df.scenario.isin(suite.heldout_scenarios) == h]
        if sub.empty:
            continue
        m = sub.groupby("policy").agg(obj=("objv", "mean"), miss=("qos_ok", lambda x: 1 - x.mean()))
        print("heldout" if h else "seen", m.round(3).to_dict(), flush=True)
        rows.append({"tag": a.tag, "seed": k, "set": "heldout" if h else "seen", "dvfo": m.obj["dvfo"],
                     **({"dvfo_last": m.obj["dvfo_last"]} if a.also_last else {}),
                     "static": m.obj.get("best_static_dnn", float("nan")), "dvfo_miss": m.miss["dvfo"], "wall": wall})
    noroom = df[df.scenario != "heldout_dvfo_camera_corunner"]
    m = noroom.groupby(["policy", "workload"]).objv.mean().unstack(0)
    print("no-room per DNN\n", m.round(1).to_string())
    top = noroom.groupby(["policy", "workload", "action_name"]).size().groupby(level=[0, 1]).nlargest(3)
    print(top.to_string(), flush=True)
print(pd.DataFrame(rows).round(3).to_string())
