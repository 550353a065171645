"""Per-DNN decisions on the camera co-runner family, co-runner on/off (docs/dvfo.md round 6).

    python scripts/dvfo_camera_diag.py [RESULTS_DIR]   # default results/ (evaluate/results.parquet, conditions.parquet)
"""
import pandas as pd, sys
R=(sys.argv[1] if len(sys.argv) > 1 else 'results') + '/evaluate/'
from bench.config import load_params
lam=load_params().objective.violation_cost_mj
for suite in ['dvfo_jetson','dvfo_phone']:
    pols=['dvfo','distilled','best_found_schedule','best_static_dnn']
    where=[('suite','==',suite),('scenario','==','heldout_dvfo_camera_corunner')]
    df=pd.read_parquet(R+'results.parquet',filters=where+[('policy','in',pols)])
    c=pd.read_parquet(R+'conditions.parquet',filters=where)
    df=df.merge(c[['seed','step','cpu_load','mem_load']],on=['seed','step'])
    for col in ('policy','workload','action_name'):
        df[col]=df[col].astype(str)
    df['co']=df.cpu_load>0
    df['J']=df.energy_mj+lam*(1-df.qos_ok.astype(float))
    print('##',suite)
    agg=df.groupby(['workload','co','policy']).agg(J=('J','mean'),E=('energy_mj','mean'),
                                                  miss=('qos_ok',lambda x:1-x.mean()),n=('J','size'))
    print(agg.round(1).unstack('policy').to_string())
    for (w,co),g in df.groupby(['workload','co']):
        for p in ['dvfo','distilled','best_found_schedule']:
            t=g[g.policy==p].action_name.value_counts(normalize=True).head(4).round(2)
            print(w,co,p,dict(t))
