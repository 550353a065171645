"""DVFO's per-DNN choices against the best static choice and the best found schedule (docs/dvfo.md round 8).

    python scripts/dvfo_choices.py [RESULTS_DIR]      # default results/evaluate

Reads RESULTS_DIR/results.parquet and conditions.parquet (both DVFO suites, the training scenarios of
params.yaml train.dvfo.scenarios). Prints per suite and DNN: J = E + λ·misses (mJ per request, λ from params.yaml
objective), miss rate, the distinct actions and the most frequent ones of DVFO, best_static_dnn, distilled and
best_found_schedule; DVFO's J per chosen action; and for ViT-B/16 the share of offloads (xi > 0) and J by uplink
bandwidth bin, DVFO against the best found schedule.
"""
import sys
from pathlib import Path

import pandas as pd

from bench.config import load_params

P = load_params()
lam = P.objective.violation_cost_mj
res = Path(sys.argv[1] if len(sys.argv) > 1 else "results/evaluate")
train = list(P.train.dvfo.scenarios)
suites = ["dvfo_jetson", "dvfo_phone"]
pols = ["dvfo", "best_static_dnn", "best_found_schedule", "distilled"]
df = pd.read_parquet(res / "results.parquet", filters=[("suite", "in", suites), ("policy", "in", pols)])
df = df[df.scenario.isin(train)].copy()
df["J"] = df.energy_mj + lam * (1 - df.qos_ok.astype(float))
cond = pd.read_parquet(res / "conditions.parquet", filters=[("suite", "in", suites)])
df = df.merge(cond[["suite", "scenario", "seed", "step", "uplink_mbps"]], on=["suite", "scenario", "seed", "step"])
df["offload"] = ~df.action_name.str.endswith("xi0.00")
df["uplink"] = pd.cut(df.uplink_mbps, [0, 2, 5, 10, 20, 50, 1e4])
for suite, g in df.groupby("suite"):
    print(f"===== {suite}: J per policy {g.groupby('policy').J.mean().round(1).to_dict()}")
    print(g.groupby(["workload", "policy"]).agg(J=("J", "mean"), miss=("qos_ok", lambda x: 1 - x.mean()))
          .round(3).unstack(1).to_string())
    for (w, p), h in g.groupby(["workload", "policy"]):
        top = h.action_name.value_counts(normalize=True).head(4)
        print(w, p, "distinct", h.action_name.nunique(), "|", ", ".join(f"{a} {v:.0%}" for a, v in top.items()))
    d = g[g.policy == "dvfo"]
    print("DVFO's J by its chosen action (five most frequent per DNN):")
    print(d.groupby(["workload", "action_name"]).agg(n=("J", "size"), J=("J", "mean"))
          .sort_values("n", ascending=False).groupby(level=0).head(5).round(2).to_string())
    v = g[g.workload == "vit_b_16"]
    t = v.groupby(["uplink", "policy"], observed=True).agg(n=("J", "size"), offload=("offload", "mean"), J=("J", "mean"))
    print("ViT-B/16 by uplink (Mbit/s):")
    print(t.unstack(1)[[(c, p) for c in ("n", "offload", "J") for p in ("dvfo", "best_found_schedule")]]
          .round(3).to_string())
