"""A trained DVFO policy's Q-values against the true one-step reward of every action, per DNN (docs/dvfo.md, round 3).

    python scripts/dvfo_qvalues.py RUN_DIR [SCENARIO [SUITE]]     # RUN_DIR holds policy/ and train.json

Rolls the greedy policy out for 1,000 requests of SCENARIO (default heldout_dvfo_trace_verizon, first evaluation
seed of dvfo_jetson); at each request it records Q(s, .) and the reward -(E + λ·miss)/E_ref of every action under
the request's realised draw (Simulator.evaluate, as the greedy oracle). Per DNN: the best static action (highest
mean true reward), its rank by mean Q, the distinct greedy actions, the within-state spread of its Q and the gaps;
then per DNN and uplink bin (<= 2, 2-5, > 5 Mbit/s) the Q error (Q - true reward) of the best action and of the
most frequent greedy action (round 8: the greedy action's over-estimate). SUITE picks the evaluation seed
(default dvfo_jetson).
"""
import json
import sys

import numpy as np
import pandas as pd
import torch

from bench.config import load_params
from bench.pipeline.evaluate import _episode_env
from bench.policies.dvfo import DVFOLearner
from bench.policies.baselines import episode_arrays
from bench.seeding import derive_seeds
run_dir = sys.argv[1]; scen = sys.argv[2] if len(sys.argv) > 2 else "heldout_dvfo_trace_verizon"
P = load_params()
info = json.loads(open(f"{run_dir}/train.json").read())
from bench.policies.dvfo import DVFOConfig
cfg = DVFOConfig.from_dict(info["config"])
env = _episode_env("bench/DVFO-v0", scen, 1000, json.dumps(cfg.env_kwargs(), sort_keys=True, default=list))
L = DVFOLearner.load(f"{run_dir}/policy", env)
u = env.unwrapped
lam = P.objective.violation_cost_mj
seed = derive_seeds(P.seed, 5, "evaluate", sys.argv[3] if len(sys.argv) > 3 else "dvfo_jetson")[0]
obs, _ = env.reset(seed=seed)
from bench.sim.envs import obs_index
ib = obs_index(env, "bandwidth_mbps")
rows = []
for t in range(1000):
    with torch.no_grad():
        q = L.q(torch.from_numpy(obs.reshape(1, -1))).numpy()[0]
    st, dr, i = episode_arrays(env)
    out = u.sim.evaluate(st.take(np.array([i])), None, dr.take(np.array([i])))
    w = int(u._kernel.workload[i])
    r = -((out.energy_mj[0] + lam * (~out.qos_ok[0])) / u.e_ref_mj[w])
    a = int(q.argmax())
    rows.append(dict(w=w, a=a, q=q, r=r, bw=float(obs[ib])))
    obs = env.step(a)[0]
# per DNN: mean true reward per action; best static action; Q stats
acts = u.action_table
for w in sorted({x["w"] for x in rows}):
    R = np.array([x["r"] for x in rows if x["w"] == w]); Q = np.array([x["q"] for x in rows if x["w"] == w])
    A = np.array([x["a"] for x in rows if x["w"] == w])
    rbar, qbar = R.mean(0), Q.mean(0)
    s = int(rbar.argmax())
    ch = pd.Series(A).value_counts().index[0]
    err = qbar - rbar
    rank_s = int((qbar > qbar[s]).sum())
    top = np.argsort(-qbar)[:5]
    print(f"DNN {w}: n={len(R)} best-static a={s} true {rbar[s]:.3f} Q {qbar[s]:.3f} (Q-rank {rank_s}); "
          f"mode chosen a={ch} true {rbar[ch]:.3f} Q {qbar[ch]:.3f}; #distinct greedy {len(set(A))}")
    print("   top-5 by Q:", [(int(k), round(float(qbar[k]), 3), round(float(rbar[k]), 3)) for k in top])
    print(f"   Q error over actions: mean {err.mean():.3f} sd {err.std():.3f}; within-state sd of Q[s] {Q[:, s].std():.3f}; "
          f"Q-gap top1-top2 median {np.median(np.sort(Q,1)[:,-1]-np.sort(Q,1)[:,-2]):.4f}; true gap best-2nd {np.sort(rbar)[-1]-np.sort(rbar)[-2]:.4f}")
    print(f"   true reward of top-10 actions: {np.round(np.sort(rbar)[-10:][::-1],3)}")
for w in sorted({x["w"] for x in rows}):
    for lo, hi in [(0, 2), (2, 5), (5, float("inf"))]:
        sel = [x for x in rows if x["w"] == w and lo < x["bw"] <= hi]
        if not sel:
            continue
        R = np.array([x["r"] for x in sel]); Q = np.array([x["q"] for x in sel]); A = np.array([x["a"] for x in sel])
        rbar, qbar = R.mean(0), Q.mean(0)
        s, ch = int(rbar.argmax()), int(pd.Series(A).value_counts().index[0])
        print(f"DNN {w} uplink ({lo},{hi}] n={len(sel)}: best a={s} true {rbar[s]:.3f} Q-R {qbar[s] - rbar[s]:+.3f} | "
              f"greedy mode a={ch} ({np.mean(A == ch):.0%}) true {rbar[ch]:.3f} Q-R {qbar[ch] - rbar[ch]:+.3f}; "
              f"median Q-R over actions {np.median(qbar - rbar):+.3f}")
