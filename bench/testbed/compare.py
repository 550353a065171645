"""Simulator vs testbed: the ``testbed`` DVC stage (``python -m bench testbed-stage``).

Runs every policy x scenario of ``params.yaml``'s ``testbed`` section live
(:func:`bench.testbed.loop.run`, one output directory each) and tabulates, per
run, measured vs predicted latency (median and 95th percentile over the same
requests), their relative errors, the per-request ``latency_mape``, and the
target mix the policy chose live vs in the simulator on the same trace.
With ``testbed.enabled: false`` it writes the table's header only and a summary
saying the stage is off, so the report renders without a testbed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["policy", "scenario", "requests", "measured_median_ms", "predicted_median_ms", "median_error",
           "measured_p95_ms", "predicted_p95_ms", "p95_error", "latency_mape", "local_mape", "transfer_mape",
           "server_mape", "local_ms_mean", "transfer_ms_mean", "server_ms_mean", "queue_ms_mean", "energy_mj_mean",
           "energy_source", "target_mix_live", "target_mix_sim"]


def _mix_text(mix: dict) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in sorted(mix.items()))


def row_from_summary(s: dict) -> dict:
    rel = lambda pred, meas: (pred - meas) / meas  # noqa: E731 - signed: > 0 when the simulator overpredicts
    return {"policy": s["policy"], "scenario": s["scenario"], "requests": s["requests"],
            "measured_median_ms": s["latency_median_ms"], "predicted_median_ms": s["pred_latency_median_ms"],
            "median_error": rel(s["pred_latency_median_ms"], s["latency_median_ms"]),
            "measured_p95_ms": s["latency_p95_ms"], "predicted_p95_ms": s["pred_latency_p95_ms"],
            "p95_error": rel(s["pred_latency_p95_ms"], s["latency_p95_ms"]), "latency_mape": s["latency_mape"],
            "local_mape": s.get("local_mape"), "transfer_mape": s.get("transfer_mape"),
            "server_mape": s.get("server_mape"),
            "local_ms_mean": s["local_ms_mean"], "transfer_ms_mean": s["transfer_ms_mean"],
            "server_ms_mean": s["server_ms_mean"], "queue_ms_mean": s["queue_ms_mean"],
            "energy_mj_mean": s["energy_mj_mean"], "energy_source": s["energy_source"],
            "target_mix_live": _mix_text(s["target_mix_live"]), "target_mix_sim": _mix_text(s["target_mix_sim"])}


def run_stage(params, out_dir: str | Path, progress: bool = False) -> pd.DataFrame:
    """Run the stage for validated ``params`` (:class:`bench.config.Params`); writes ``out_dir``."""
    from bench.seeding import derive_seed
    from bench.testbed.loop import TestbedConfig, run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tb = params.testbed
    run_dirs = []
    if tb.enabled:
        for scenario in tb.scenarios:
            seed = derive_seed(params.seed, "testbed", scenario)  # one trace per scenario, shared by every policy
            for policy in tb.policies:
                cfg = TestbedConfig(policy=policy, scenario=scenario, requests=tb.requests, seed=seed,
                                    workloads=tb.workloads, threads=tb.threads, edge_cpus=tb.edge_cpus,
                                    server_cpus=tb.server_cpus, corunners=tb.corunners,
                                    autoscale_steps=tb.autoscale_steps)
                run_dir = out / "runs" / f"{scenario}__{policy}"
                if progress:
                    print(f"testbed: {policy} on {scenario} -> {run_dir}", flush=True)
                run(cfg, run_dir)
                run_dirs.append(run_dir)
    table, requests = tabulate(run_dirs)
    write(table, requests, out, tb.enabled)
    return table


def run_summary(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """A run's summary and requests, re-derived from its files (so the table can be rebuilt without rerunning)."""
    from bench.testbed import loop

    requests = pd.read_parquet(run_dir / "requests.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    if "pred_local_ms" not in requests.columns:  # a run written before the split prediction existed
        env = loop.twin_env(next(run_dir.glob("scenario_*.yaml")), run_dir / "testbed_edge.yaml",
                            run_dir / "testbed_cloud.yaml", len(requests))
        loop.add_predicted_parts(requests, env.unwrapped.sim, requests["cpu_load_trace"].to_numpy(),
                                 requests["mem_load_trace"].to_numpy())
    summary.update(loop.part_errors(requests))
    return summary, requests


def tabulate(run_dirs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, all requests) over the given run directories."""
    rows, runs = [], []
    for run_dir in map(Path, run_dirs):
        summary, requests = run_summary(run_dir)
        rows.append(row_from_summary(summary))
        runs.append(requests)
    return pd.DataFrame(rows, columns=COLUMNS), (pd.concat(runs, ignore_index=True) if runs else pd.DataFrame())


def write(table: pd.DataFrame, requests: pd.DataFrame, out: Path, enabled: bool) -> None:
    """The stage's outputs: the table (CSV), all requests (parquet), summary.json and the figure."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sim_vs_testbed.csv", index=False, float_format="%.6g")
    if len(requests):
        requests.to_parquet(out / "requests.parquet", index=False)
    summary = {"enabled": bool(enabled), "runs": int(len(table))}
    if len(table):
        ape = np.abs(requests["pred_latency_ms"] - requests["latency_ms"]) / requests["latency_ms"]
        worst = table.loc[table["latency_mape"].idxmax()]
        summary.update({"latency_mape_all": float(ape.mean()), "latency_median_ape_all": float(ape.median()),
                        "worst_run": f"{worst['policy']} on {worst['scenario']}",
                        "worst_latency_mape": float(worst["latency_mape"])})
    else:
        summary["note"] = "testbed disabled in params.yaml (testbed.enabled: false); no live runs"
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    figure(requests, out / "sim_vs_testbed.png")


def figure(requests: pd.DataFrame, path: Path) -> None:
    """Measured vs predicted latency per request, one panel per scenario, colour = policy."""
    # pyplot-free (no backend forced, nothing kept in pyplot's global state): renders inline in a notebook too
    import seaborn as sns
    from matplotlib.figure import Figure

    if requests.empty:
        fig = Figure(figsize=(5, 2))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "testbed disabled (params.yaml testbed.enabled: false)", ha="center", va="center")
        fig.savefig(path, dpi=100)
        return
    scen = sorted(requests["scenario"].unique())
    fig = Figure(figsize=(4.2 * len(scen), 4))
    axes = fig.subplots(1, len(scen), squeeze=False)
    for ax, s in zip(axes[0], scen):
        d = requests[requests["scenario"] == s]
        sns.scatterplot(data=d, x="pred_latency_ms", y="latency_ms", hue="policy", style="target", ax=ax, s=25)
        hi = float(max(d["latency_ms"].max(), d["pred_latency_ms"].max())) * 1.05
        ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--")
        ax.set(xlim=(0, hi), ylim=(0, hi), title=s, xlabel="simulator: predicted latency (ms)",
               ylabel="testbed: measured latency (ms)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from bench.config import ParamsError, apply_world, load_params
    from bench.paths import PARAMS_FILE, RESULTS_DIR
    from bench.testbed.link import TestbedUnavailable
    from bench.testbed.loop import TestbedError

    p = argparse.ArgumentParser(prog="python -m bench testbed-stage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=str(PARAMS_FILE))
    p.add_argument("--out", default=str(RESULTS_DIR / "testbed"))
    p.add_argument("--tabulate", action="store_true",
                   help="rebuild the table and figure from OUT/runs/* without running anything live")
    args = p.parse_args(argv)
    try:
        if args.tabulate:
            runs = sorted(d for d in (Path(args.out) / "runs").glob("*") if (d / "summary.json").exists())
            table, requests = tabulate(runs)
            write(table, requests, Path(args.out), enabled=True)
        else:
            params = load_params(args.params)
            apply_world(params)  # the radio profile of params.yaml
            table = run_stage(params, args.out, progress=True)
    except (ParamsError, TestbedError, TestbedUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["target_mix_live", "target_mix_sim"]).round(3).to_string(index=False)
              if len(table) else "testbed disabled (params.yaml testbed.enabled: false)")
    return 0
