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
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from hw.atomic import atomic_write_text

PARTS = ("local", "transfer", "server", "queue", "dispatch")
COLUMNS = ["policy", "scenario", "requests", "measured_median_ms", "predicted_median_ms", "median_error",
           "measured_p95_ms", "predicted_p95_ms", "p95_error", "latency_mape", "local_mape", "transfer_mape",
           "server_mape", "queue_mae_ms", "dispatch_mae_ms", "dispatch_before_ms", "dispatch_samples",
           *[f"{p}_{w}_{q}_ms" for p in PARTS for w in ("measured", "predicted") for q in ("median", "p95")],
           "local_ms_mean", "transfer_ms_mean", "server_ms_mean", "queue_ms_mean", "timeouts", "pred_timeouts",
           "parts_skipped_timed_out", "energy_mj_mean", "pred_energy_mj_mean", "energy_source", "energy_check", "target_mix_live",
           "target_mix_sim", "loadavg_start_1min", "loadavg_end_1min", "nice", "edge_base_drift",
           "base_factor_min", "base_factor_max"]


def base_drift(s: dict) -> float | None:
    """The run's edge-base drift (after the requests over before them, :func:`bench.testbed.loop.bracket_base`)
    farthest from 1 over its workloads; None for a run from before the bracket or without a timed base."""
    drift = [float(v) for v in (s.get("profile_edge_base_drift") or {}).values() if v is not None and np.isfinite(v)]
    return max(drift, key=lambda v: abs(v - 1.0)) if drift else None


def base_factor_span(s: dict) -> tuple[float | None, float | None]:
    """The least and most of the run's per-request base over the pooled one (``pred_base_factor``, the time-local
    base of :mod:`bench.testbed.localbase`) over its workloads: how far the host moved within the requests' window;
    (None, None) for a run without alone inferences between its requests."""
    got = [float(x) for lo_hi in (s.get("pred_base_factor_range") or {}).values() for x in lo_hi
           if x is not None and np.isfinite(x)]
    return (min(got), max(got)) if got else (None, None)


def _mix_text(mix: dict | None) -> str:
    if not mix:
        return ""
    return ", ".join(f"{k} {v:.0%}" for k, v in sorted(mix.items()))


def _check_text(check) -> str:
    if not check:
        return ""
    if "skipped" in check:
        return f"skipped: {check['skipped']}"
    return f"RAPL vs twin on {check['requests']} local requests: MAPE {check['mape']:.1%}"


def row_from_summary(s: dict) -> dict:
    def rel(pred, meas):  # signed: > 0 when the simulator overpredicts; None without a twin (DVFO's split)
        return None if pred is None or meas is None else (pred - meas) / meas

    return {"policy": s["policy"], "scenario": s["scenario"], "requests": s["requests"],
            "measured_median_ms": s["latency_median_ms"], "predicted_median_ms": s.get("pred_latency_median_ms"),
            "median_error": rel(s.get("pred_latency_median_ms"), s["latency_median_ms"]),
            "measured_p95_ms": s["latency_p95_ms"], "predicted_p95_ms": s.get("pred_latency_p95_ms"),
            "p95_error": rel(s.get("pred_latency_p95_ms"), s["latency_p95_ms"]), "latency_mape": s.get("latency_mape"),
            "local_mape": s.get("local_mape"), "transfer_mape": s.get("transfer_mape"),
            "server_mape": s.get("server_mape"), "queue_mae_ms": s.get("queue_mae_ms"),
            "dispatch_mae_ms": s.get("dispatch_mae_ms"),
            # the overhead measured before the requests and added by the twin (bench.testbed.dispatch); None for a
            # run written before it (its twin added nothing)
            "dispatch_before_ms": (s.get("dispatch_overhead") or {}).get("dispatch_ms"),
            "dispatch_samples": (s.get("dispatch_overhead") or {}).get("samples"),
            **{f"{p}_{w}_{q}_ms": s.get(f"{p}_{w}_{q}_ms") for p in PARTS for w in ("measured", "predicted")
               for q in ("median", "p95")},
            "timeouts": s.get("timeouts"), "pred_timeouts": s.get("pred_timeouts"),
            "parts_skipped_timed_out": s.get("parts_skipped_timed_out"),
            "pred_energy_mj_mean": s.get("pred_energy_mj_mean"),
            "energy_check": _check_text(s.get("energy_check")),
            "loadavg_start_1min": (s.get("loadavg_start") or [None])[0],
            "loadavg_end_1min": (s.get("loadavg_end") or [None])[0], "nice": s.get("nice", 0),
            "edge_base_drift": base_drift(s),
            **dict(zip(("base_factor_min", "base_factor_max"), base_factor_span(s))),
            "local_ms_mean": s.get("local_ms_mean"), "transfer_ms_mean": s.get("transfer_ms_mean"),
            "server_ms_mean": s.get("server_ms_mean"), "queue_ms_mean": s.get("queue_ms_mean"),
            "energy_mj_mean": s.get("energy_mj_mean"), "energy_source": s.get("energy_source"),
            "target_mix_live": _mix_text(s.get("target_mix_live")), "target_mix_sim": _mix_text(s.get("target_mix_sim"))}


def run_stage(params, out_dir: str | Path, progress: bool = False, nice: int = 0,
              base_every: int | None = None) -> pd.DataFrame:
    """Run the stage for validated ``params`` (:class:`bench.config.Params`); writes ``out_dir``. ``base_every``:
    every run's :attr:`~bench.testbed.loop.TestbedConfig.base_every` (None: its default)."""
    from bench.seeding import derive_seed
    from bench.testbed import dvfo_live
    from bench.testbed.loop import TestbedConfig, is_dvfo, run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tb = params.testbed
    run_dirs = []
    if tb.enabled:
        policies = runnable_policies(tb.policies, progress)
        for scenario in tb.scenarios:
            seed = derive_seed(params.seed, "testbed", scenario)  # one trace per scenario, shared by every policy
            for policy in policies:
                cfg = TestbedConfig(policy=policy, scenario=scenario, requests=tb.requests, seed=seed,
                                    workloads=tb.workloads, threads=tb.threads, edge_cpus=tb.edge_cpus,
                                    server_cpus=tb.server_cpus, corunners=tb.corunners,
                                    autoscale_steps=tb.autoscale_steps, nice=nice,
                                    **({} if base_every is None else {"base_every": int(base_every)}))
                run_dir = out / "runs" / f"{scenario}__{policy}"
                if progress:
                    print(f"testbed: {policy} on {scenario} -> {run_dir}", flush=True)
                (dvfo_live.run if is_dvfo(policy) else run)(cfg, run_dir)
                run_dirs.append(run_dir)
    table, requests = tabulate(run_dirs)
    write(table, requests, out, tb.enabled)
    return table


def campaign_params(params, policies=None, scenarios=None, requests=None):
    """``params`` with its testbed section overridden for a campaign (and turned on); scenarios are checked."""
    import dataclasses

    from bench.config import ParamsError
    from bench.world.scenarios import list_scenarios

    tb = params.testbed
    if scenarios:
        known = list_scenarios()
        bad = [s for s in scenarios if s not in known and not Path(s).is_file()]
        if bad:
            raise ParamsError(f"--scenarios: unknown {bad}; allowed: {', '.join(known)} or a scenario YAML path")
    if requests is not None and requests < 1:
        raise ParamsError(f"--requests: {requests}; allowed: >= 1")
    from bench.policies import live_excluded

    excluded = live_excluded()  # registered with each policy (PolicyInfo.live); a campaign runs dvfo only via dvfo_live
    bad = [p for p in policies or () if p in excluded]
    if bad:
        raise ParamsError(f"--policies: {bad} cannot run live on this host; excluded: {excluded}")
    # object.__setattr__: TestbedParams validates registry names; a campaign may name policies still to land
    new = dataclasses.replace(tb, enabled=True)
    for name, value in (("policies", policies), ("scenarios", scenarios), ("requests", requests)):
        if value:
            object.__setattr__(new, name, tuple(value) if name != "requests" else int(value))
    return dataclasses.replace(params, testbed=new)


def runnable_policies(policies, say: bool = True) -> list[str]:
    """The configured policies this branch can run live; each one it cannot is skipped with a one-line reason
    (e.g. ``best_found_schedule`` before the hindsight bound exists)."""
    from bench.policies.base import REGISTRY
    from bench.testbed.loop import registered_name

    keep = []
    for policy in policies:
        name = registered_name(policy.split(":", 1)[0])  # the best found schedule under either of its names
        if name in REGISTRY:
            keep.append(policy)
        elif say:
            print(f"testbed: skipping policy {policy!r}: not registered in this build "
                  f"(registered: {', '.join(sorted(REGISTRY))})", flush=True)
    return keep


def run_summary(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """A run's summary and requests, re-derived from its files (so the table can be rebuilt without rerunning)."""
    from bench.testbed import loop

    requests = pd.read_parquet(run_dir / "requests.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary.update(loop.part_errors(requests))  # a run written before the per-part prediction has none
    return summary, requests


def tabulate(run_dirs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(table, all requests) over the given run directories."""
    rows, runs, skipped = [], [], []
    run_dirs = [Path(d) for d in run_dirs]
    for run_dir in run_dirs:
        try:
            summary, requests = run_summary(run_dir)
            row = row_from_summary(summary)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # a crashed or hand-edited run folder: skipped and counted (one line each), the others still tabulate
            skipped.append(run_dir.name)
            print(f"testbed --tabulate: skipped run {run_dir}: unreadable ({type(exc).__name__}: "
                  f"{' '.join(str(exc).split())[:120]})", file=sys.stderr)
            continue
        rows.append(row)
        runs.append(requests)
    if skipped:
        print(f"testbed --tabulate: skipped {len(skipped)} of {len(run_dirs)} run folders", file=sys.stderr)
    return pd.DataFrame(rows, columns=COLUMNS), (pd.concat(runs, ignore_index=True) if runs else pd.DataFrame())


def write(table: pd.DataFrame, requests: pd.DataFrame, out: Path, enabled: bool) -> None:
    """The stage's outputs: the table (CSV), all requests (parquet), summary.json and the figure."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sim_vs_testbed.csv", index=False, float_format="%.6g")
    if len(requests):
        requests.to_parquet(out / "requests.parquet", index=False)
        requests.to_csv(out / "requests.csv", index=False, float_format="%.6g")  # the same, diffable and small
    summary = {"enabled": bool(enabled), "runs": int(len(table))}
    if len(table):
        pred = requests["pred_latency_ms"] if "pred_latency_ms" in requests.columns else np.nan
        ape = np.abs(pred - requests["latency_ms"]) / requests["latency_ms"]
        mape = pd.to_numeric(table["latency_mape"], errors="coerce")  # null for a run without a twin (DVFO)
        worst = table.loc[mape.idxmax()] if mape.notna().any() else table.iloc[0]
        loads = table[["loadavg_start_1min", "loadavg_end_1min"]].to_numpy(dtype=float)
        summary["loadavg_1min_min_max"] = ([float(np.nanmin(loads)), float(np.nanmax(loads))]
                                           if np.isfinite(loads).any() else None)
        summary["cpu_count"] = os.cpu_count()
        summary.update({"latency_mape_all": float(ape.mean()), "latency_median_ape_all": float(ape.median()),
                        "worst_run": f"{worst['policy']} on {worst['scenario']}",
                        "worst_latency_mape": float(mape.max()) if mape.notna().any() else None})
    else:
        summary["note"] = ("testbed disabled in params.yaml (testbed.enabled: false); no live runs" if not enabled
                           else "no readable live run (every run folder was skipped; see the stage's log)")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    figure(requests, out / "sim_vs_testbed.png")


DOCS_START = "<!-- testbed-campaign:start (python -m bench testbed-stage --tabulate --out DIR --docs FILE) -->"
DOCS_END = "<!-- testbed-campaign:end -->"


def _ms(v, digits: int = 0) -> str:
    v = pd.to_numeric(v, errors="coerce")
    return "" if pd.isna(v) else f"{float(v):.{digits}f}"


def _pair(row, part: str) -> str:
    """``live / twin`` median of ``part`` to 0.1 ms; empty for a run written before the part was compared."""
    live, twin = (_ms(row.get(f"{part}_{w}_median_ms"), 1) for w in ("measured", "predicted"))
    return f"{live} / {twin}" if live or twin else ""


def _pct(v) -> str:
    v = pd.to_numeric(v, errors="coerce")
    return "" if pd.isna(v) else f"{float(v):.0%}"


def _skipped(row) -> str:
    """`` (N out of parts)`` where N requests timed out on either side (left out of the per-part errors)."""
    k = pd.to_numeric(row.get("parts_skipped_timed_out"), errors="coerce")
    return f" ({int(k)} out of parts)" if pd.notna(k) and k > 0 else ""


def markdown_table(table: pd.DataFrame, summary: dict, out: Path) -> str:
    """The campaign's table for docs/testbed.md: measured vs predicted median and p95 latency, the per-request
    and per-part errors, timeouts and the host's load - every number read from the campaign's own files."""
    loads = summary.get("loadavg_1min_min_max") or [float("nan")] * 2
    nice = sorted({int(n) for n in pd.to_numeric(table["nice"], errors="coerce").dropna()})
    head = (f"Campaign `{out.as_posix()}`: {int(table['requests'].sum())} live requests in {len(table)} runs on a "
            f"{summary.get('cpu_count')}-CPU host at 1-min load {loads[0]:.1f}-{loads[1]:.1f} (shared with other "
            f"work), niceness {', '.join(map(str, nice)) or '0'}; per-request latency MAPE over all runs "
            f"{_pct(summary.get('latency_mape_all'))}. Latency runs from the request's arrival (waits included) "
            "on both sides. Parts: MAPE over the requests that have the part and timed out on neither side (the "
            "count left out follows the timeouts); queue: mean absolute error; dispatch: the testbed's own "
            "per-request overhead (latency less every modelled part), live median / the twin's, measured before "
            "the requests (bench/testbed/dispatch.py).")
    cols = ("policy / scenario | median ms (live / twin) | p95 ms (live / twin) | latency MAPE | local | transfer "
            "| server | queue MAE ms | dispatch ms (live / twin) | timeouts (live / twin) | load 1-min")
    lines = [head, "", f"| {cols} |", "|" + " --- |" * (cols.count("|") + 1)]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['policy']} / {r['scenario']} | {_ms(r['measured_median_ms'])} / {_ms(r['predicted_median_ms'])} "
            f"| {_ms(r['measured_p95_ms'])} / {_ms(r['predicted_p95_ms'])} | {_pct(r['latency_mape'])} "
            f"| {_pct(r['local_mape'])} | {_pct(r['transfer_mape'])} | {_pct(r['server_mape'])} "
            f"| {_ms(r['queue_mae_ms'])} | {_pair(r, 'dispatch')} | {r['timeouts']} / {r['pred_timeouts']}{_skipped(r)} "
            f"| {float(r['loadavg_start_1min']):.1f}-{float(r['loadavg_end_1min']):.1f} |")
    return "\n".join(lines)


def update_docs(path: Path, block: str) -> None:
    """Replace the block between :data:`DOCS_START` and :data:`DOCS_END` in ``path`` (appended if absent)."""
    text = path.read_text(encoding="utf-8")
    new = f"{DOCS_START}\n{block}\n{DOCS_END}"
    if DOCS_START in text and DOCS_END in text:
        before, rest = text.split(DOCS_START, 1)
        text = before + new + rest.split(DOCS_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    atomic_write_text(path, text)  # the user's document stays whole if the write fails


def figure(requests: pd.DataFrame, path: Path) -> None:
    """Measured vs predicted latency per request, one panel per scenario, colour = policy."""
    # pyplot-free (no backend forced, nothing kept in pyplot's global state): renders inline in a notebook too
    import seaborn as sns
    from matplotlib.figure import Figure

    if "pred_latency_ms" in requests.columns:
        requests = requests[requests["pred_latency_ms"].notna()]  # runs without a twin (DVFO's split) have none
    else:
        requests = requests.iloc[0:0]
    if requests.empty:
        fig = Figure(figsize=(5, 2))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no run with a simulator twin (testbed disabled, or DVFO's split only)", ha="center",
                va="center")
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
    p.add_argument("--policies", nargs="+", metavar="POLICY",
                   help="a campaign: these policies instead of params.yaml's (turns the stage on); a policy this "
                        "build does not register (e.g. best_found_schedule before the hindsight bound lands) is skipped "
                        "with a one-line reason")
    p.add_argument("--scenarios", nargs="+", metavar="SCENARIO", help="a campaign: these scenarios instead")
    p.add_argument("--requests", type=int, help="a campaign: requests per (policy, scenario) instead")
    p.add_argument("--nice", type=int, default=0, help="niceness of every run (see python -m bench testbed --help)")
    p.add_argument("--base-every", type=int, default=None,
                   help="alone inferences between the requests every this many (see python -m bench testbed --help; "
                        "default: TestbedConfig's, 10; 0 = the before/after bracket only)")
    p.add_argument("--docs", metavar="FILE", help="with --tabulate: write the campaign's table into FILE's "
                                                  "testbed-campaign block (e.g. docs/testbed.md)")
    args = p.parse_args(argv)
    try:
        if args.tabulate:
            if args.docs is not None and not Path(args.docs).is_file():  # checked before anything is read or written
                raise TestbedError(f"--docs {args.docs}: no such file; allowed: an existing Markdown file")
            runs_dir = Path(args.out) / "runs"
            folders = sorted(d for d in runs_dir.glob("*") if d.is_dir()) if runs_dir.is_dir() else []
            runs = [d for d in folders if (d / "summary.json").is_file()]
            table, requests = tabulate(runs)
            if not len(table):  # nothing to tabulate: say what was looked for and found (outputs left as they are)
                raise TestbedError(f"--tabulate: no readable run under {runs_dir}: looked for {runs_dir}/*/summary.json"
                                   + (f"; found {len(folders)} run folder(s), {len(runs)} with summary.json"
                                      + (f", {len(runs)} unreadable (see above)" if runs else "")
                                      if runs_dir.is_dir() else " (no such folder)")
                                   + "; allowed: --out naming a folder whose runs/ holds `testbed-stage` runs")
            write(table, requests, Path(args.out), enabled=True)
            if args.docs:
                docs = Path(args.docs)
                summary = json.loads((Path(args.out) / "summary.json").read_text())
                update_docs(docs, markdown_table(table, summary, Path(args.out)))
        else:
            if args.base_every is not None and not 0 <= args.base_every <= 10**6:
                raise TestbedError(f"--base-every must be >= 0 (0 = no alone inferences between requests), "
                                   f"got {args.base_every}")
            params = load_params(args.params)
            apply_world(params)  # the radio profile of params.yaml
            if args.policies or args.scenarios or args.requests is not None:  # --requests 0 is refused, not ignored
                params = campaign_params(params, args.policies, args.scenarios, args.requests)
            table = run_stage(params, args.out, progress=True, nice=args.nice, base_every=args.base_every)
    except (ParamsError, TestbedError, TestbedUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.drop(columns=["target_mix_live", "target_mix_sim"]).round(3).to_string(index=False)
              if len(table) else "testbed disabled (params.yaml testbed.enabled: false)")
    return 0
