"""Held-out J and headroom captured of DVFO runs from scripts/dvfo_seeds.py --also-last (docs/dvfo.md round 8).

    python scripts/dvfo_heldout_pairs.py RUNS TAG [RESULTS_DIR]   # RUNS/TAG{,-last}/SUITE/sK/eval.parquet

Per held-out scenario: each training seed's J (E + λ·misses, mJ per request) for the averaged policy and its last
weights, beside best_static_dnn, distilled, best_found_schedule, the shipped DVFO and the bound (lower_lagrangian /
n) on the same evaluation seeds (RESULTS_DIR, default results/evaluate); captured = (J_static - J) / (J_static - J_bound).
"""
import sys
runs, tag = sys.argv[1], sys.argv[2]
res = sys.argv[3] if len(sys.argv) > 3 else "results/evaluate"
import pandas as pd
lam=1000.0
H=['heldout_dvfo_camera_corunner','heldout_dvfo_trace_tmobile','heldout_dvfo_trace_verizon']
R=pd.read_parquet(f'{res}/results.parquet', filters=[('suite','in',['dvfo_jetson','dvfo_phone']),('policy','in',['best_static_dnn','distilled','best_found_schedule','dvfo'])])
R=R[R.scenario.isin(H)]; R['J']=R.energy_mj+lam*(1-R.qos_ok.astype(float))
B=pd.read_csv(f'{res}/bound.csv'); B['jb']=B.lower_lagrangian/B.n
out=[]
for suite in ['dvfo_jetson','dvfo_phone']:
  for s in (0,1,2):
    try:
      d=pd.read_parquet(f'{runs}/{tag}/{suite}/s{s}/eval.parquet'); l=pd.read_parquet(f'{runs}/{tag}-last/{suite}/s{s}/eval.parquet')
    except FileNotFoundError: print(suite, s, "missing"); continue
    seeds=sorted(set(d.seed))
    for name,df in (('averaged',d),('last',l)):
      df=df[df.scenario.isin(H)&(df.policy=='dvfo')].copy(); df['J']=df.energy_mj+lam*(1-df.qos_ok.astype(float))
      for sc,g in df.groupby('scenario'): out.append(dict(suite=suite,train_seed=s,policy=name,scenario=sc,J=g.J.mean()))
  r=R[(R.suite==suite)&R.seed.isin(seeds)]
  for p,g in r.groupby('policy'):
    for sc,h in g.groupby('scenario'): out.append(dict(suite=suite,train_seed=-1,policy=p+('_shipped' if p=='dvfo' else ''),scenario=sc,J=h.J.mean()))
  b=B[(B.suite==suite)&B.seed.isin(seeds)&B.scenario.isin(H)]
  for sc,h in b.groupby('scenario'): out.append(dict(suite=suite,train_seed=-1,policy='bound',scenario=sc,J=h.jb.mean()))
O=pd.DataFrame(out)
T=O.groupby(['suite','scenario','policy']).J.mean().unstack(2)
print('eval seeds used:',seeds)
print(T.round(1).to_string())
for col in ['averaged','last','dvfo_shipped','distilled','best_found_schedule']:
  if col in T: T['cap_'+col]=(T.best_static_dnn-T[col])/(T.best_static_dnn-T.bound)
print(T[[c for c in T if c.startswith('cap_')]].round(3).to_string())
print(O[O.train_seed>=0].pivot_table(index=['suite','scenario','train_seed'],columns='policy',values='J').round(1).to_string())
