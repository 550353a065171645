"""DVFO on a suite's held-out scenarios against the distilled rule, the best static action per DNN, the best
found schedule and the certified bound (issue 23: headroom captured), for one training variant.

    nice -n 10 python scripts/dvfo_heldout.py --suite dvfo_jetson --tag base [--set key=json ...] [--eval-only]
        [--curve-seed K] [--refit [distilled best_static_dnn]]   # docs/dvfo.md round 9

Trains the suite's run (params.yaml train.dvfo + ``--set`` overrides, the pipeline's seed) into
``--out``/TAG/RUN, then rolls out DVFO (and, when the training scenarios differ from the shipped run's, the
distilled rule, which is fitted on them) on the held-out scenarios with the pipeline's evaluation seeds and
whole scenarios. best_static_dnn, best_found_schedule, the shipped distilled rule and the bound do not depend on
the learner: they are read from the shipped pipeline outputs (``--shipped``: results.parquet, bound.csv).
Objective J = E + λ·misses (params.yaml objective) in mJ per inference; captured = (J_static - J) / (J_static - J_ref)
with J_ref the certified bound (lower_lagrangian) and, in brackets, the best found schedule.
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import pandas as pd

from bench.config import load_params
from bench.pipeline.evaluate import run_cells, suite_cells
from bench.pipeline.training import learner_spec, make_config

ap = argparse.ArgumentParser()
ap.add_argument("--suite", default="dvfo_jetson")
ap.add_argument("--set", nargs="*", default=[])
ap.add_argument("--tag", default="base")
ap.add_argument("--eval-only", action="store_true")
ap.add_argument("--out", default="/tmp/dvfo-exp")
ap.add_argument("--shipped", default="/work/main/results")
ap.add_argument("--refit", nargs="*", default=None,
                help="fitted baselines to refit here (default: distilled when the training scenarios differ from the "
                     "shipped run's, results/train/RUN/train.json); best_static_dnn is fitted over the suite's "
                     "evaluated + held-out scenarios (params.yaml), as the pipeline does")
ap.add_argument("--workers", type=int, default=1)
ap.add_argument("--curve-seed", type=int, default=0,
                help="k > 0: train on the pipeline's curve seed k (derive_seed(seed, 'train', RUN, 'curve', k)); "
                     "written under TAG/RUN/sK")
a = ap.parse_args()
P = load_params()
suite = P.evaluate.suites[a.suite]
run = suite.run
prof = P.train.runs[run].profile
base = {f.name: getattr(P.train.dvfo, f.name) for f in dataclasses.fields(P.train.dvfo)}
shipped_train = Path(a.shipped) / "train" / suite.run / "train.json"
shipped_scenarios = (json.loads(shipped_train.read_text())["config"]["scenarios"] if shipped_train.is_file()
                     else list(base["scenarios"]))
for kv in a.set:
    k, v = kv.split("=", 1)
    base[k] = json.loads(v)
lam = P.objective.violation_cost_mj
out = Path(a.out) / a.tag / run / (f"s{a.curve_seed}" if a.curve_seed else "")
cfg = make_config("dvfo", prof, base, P.seed, run, curve_seed=a.curve_seed)
if not a.eval_only:
    t, c = time.perf_counter(), time.process_time()
    res = learner_spec("dvfo").train(cfg)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    res.learner.save(out / "policy")
    (out / "train.json").write_text(json.dumps({"learner": "dvfo", "profile": prof, "config": cfg.to_dict()}))
    res.curve.to_csv(out / "curve.csv")
    # the same run acting on its Polyak-averaged target network (evaluated with --tag TAG_target --eval-only)
    tgt = Path(a.out) / f"{a.tag}_target" / run / (f"s{a.curve_seed}" if a.curve_seed else "")
    res.learner.q.load_state_dict(res.learner.target.state_dict())
    res.learner.save(tgt / "policy")
    (tgt / "train.json").write_text((out / "train.json").read_text())
    (out / "time.json").write_text(json.dumps({"wall_s": wall, "cpu_s": cpu}))
    print(f"# {a.tag} {run}: trained {res.env_steps} steps in {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
held = list(suite.heldout_scenarios)
refit = a.refit if a.refit is not None else [p for p in ["distilled"] if list(cfg.scenarios) != shipped_scenarios]
# the cells' scenario list is what best_static_dnn is fitted on (the pipeline: evaluated + held-out); only the
# held-out cells are run
fit_on = list(dict.fromkeys(list(suite.scenarios) + held))
cells = [c for c in suite_cells(a.suite, out, refit, fit_on, P.evaluate.seeds, 0, P.seed, lam) if c.scenario in held]
new = run_cells(cells, workers=a.workers, progress=False)
new.to_parquet(out / "heldout.parquet")
old = pd.read_parquet(Path(a.shipped) / "evaluate/results.parquet",
                      filters=[("suite", "==", a.suite), ("scenario", "in", held)])
keep = ["best_static_dnn", "best_found_schedule", "dvfo", "distilled"]
old = old[old.policy.isin(keep)].copy()
old["policy"] = old.policy.astype(str).replace({"dvfo": "dvfo_shipped", "distilled": "distilled_shipped",
                                                "best_static_dnn": "best_static_dnn_shipped"})
if "best_static_dnn" not in refit:  # the yardstick's static choice: the shipped one unless refitted here
    old["policy"] = old.policy.replace({"best_static_dnn_shipped": "best_static_dnn"})
assert set(new.seed) == set(old.seed), "evaluation seeds differ from the shipped run's"
df = pd.concat([old, new], ignore_index=True)
df["J"] = df.energy_mj + lam * (1 - df.qos_ok.astype(float))
df["miss"] = 1 - df.qos_ok.astype(float)
J = df.groupby(["scenario", "policy"]).J.mean().unstack()
miss = df.groupby(["scenario", "policy"]).miss.mean().unstack()
b = pd.read_csv(Path(a.shipped) / "evaluate/bound.csv")
b = b[(b.suite == a.suite) & b.scenario.isin(held)]
J["bound"] = b.groupby("scenario").apply(lambda x: x.lower_lagrangian.sum() / x.n.sum())
for ref in ("bound", "best_found_schedule"):
    room = J.best_static_dnn - J[ref]
    for p in [c for c in J.columns if c.startswith(("dvfo", "distilled"))]:
        J[f"cap_{p}_vs_{'bound' if ref == 'bound' else 'found'}"] = (J.best_static_dnn - J[p]) / room
J["headroom"] = 1 - J.bound / J.best_static_dnn
pd.set_option("display.width", 250)
print(f"## {a.tag} {a.suite}\n" + J.round(3).T.to_string())
print("miss rate\n" + miss.round(3).T.to_string(), flush=True)
J.to_csv(out / "summary.csv")
