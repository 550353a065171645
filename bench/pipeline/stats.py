"""Statistics over the tidy results table: summaries with bootstrap 95% intervals.

The independent unit is a *cell* (scenario, seed): requests inside one episode
share signal and interference processes, so resampling requests would overstate
confidence. Every interval here is a cluster bootstrap over cells. Because all
policies of a cell see the same scenario realisation and the same random draws
(common random numbers), ratios between policies are *paired*: each bootstrap
replicate resamples cells once and compares every policy on the same cells.

All functions are pure and seeded: same table + same seed -> same numbers.
"""

from __future__ import annotations


import numpy as np
import pandas as pd

REQUIRED = ("policy", "scenario", "seed", "step", "energy_mj", "latency_ms", "qos_ok", "accuracy")


def check_results(results: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in results.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {missing}; required: {list(REQUIRED)}")


def cell_table(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (policy, scenario, seed): sums and counts that bootstrap replicates add up."""
    check_results(results)
    # the misses as a column of their own: a built-in sum, not a Python function per group
    frame = results.assign(_violations=~results["qos_ok"].astype(bool))
    g = frame.groupby(["policy", "scenario", "seed"], sort=True)
    cells = g.agg(n=("energy_mj", "size"), energy_sum=("energy_mj", "sum"), violations=("_violations", "sum"),
                  accuracy_sum=("accuracy", "sum"), accuracy_n=("accuracy", "count")).reset_index()
    cells["violations"] = cells["violations"].astype("int64")
    return cells


def _wide(cells: pd.DataFrame, column: str) -> pd.DataFrame:
    """(scenario, seed) x policy matrix of a cell column."""
    return cells.pivot_table(index=["scenario", "seed"], columns="policy", values=column, aggfunc="sum")


def _ci(replicates: np.ndarray, point: float, level: float = 0.95) -> dict[str, float]:
    lo, hi = np.nanpercentile(replicates, [(1 - level) / 2 * 100, (1 + level) / 2 * 100]) if len(replicates) else (np.nan, np.nan)
    return {"mean": float(point), "ci_low": float(lo), "ci_high": float(hi)}


def _bootstrap_index(n_cells: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n_cells, size=(n_boot, n_cells))


def summarise(results: pd.DataFrame, baselines: dict[str, str] | None = None, oracle: str | None = None,
              n_boot: int = 1000, seed: int = 0, bounds: pd.DataFrame | None = None,
              violation_cost_mj: float | None = None) -> dict:
    """Per-policy metrics with paired cluster-bootstrap 95% CIs.

    ``baselines`` maps a label to a policy name, e.g. ``{"cpu_only": "cpu_only",
    "cloud_only": "cloud_only"}``: for each, the energy-efficiency ratio
    ``E_baseline / E_policy`` (>1: the policy uses less energy per inference).
    With ``violation_cost_mj`` (λ, params ``objective``), ``objective_mj`` is the declared
    objective per inference, ``(E + λ·misses) / n``; with ``bounds`` too (one row per
    (scenario, seed) with ``lower_lagrangian`` and ``upper_lagrangian``, mJ over the cell:
    :mod:`bench.pipeline.yardstick`), ``gap_to_bound`` is ``J_policy / J_lower - 1`` (>= 0 by
    construction: the bound is certified) and ``gap_to_best_found`` ``J_policy / J_upper - 1``
    (negative: the policy beat the best schedule the search found). The greedy per-request
    oracle's ratio stays as ``gap_to_greedy_oracle`` (``E_policy / E_greedy - 1``; not a bound).
    Latency percentiles are over all requests (with a bootstrap over cells).
    """
    baselines = baselines or {}
    cells = cell_table(results)
    energy = _wide(cells, "energy_sum")
    count = _wide(cells, "n")
    viol = _wide(cells, "violations")
    acc = _wide(cells, "accuracy_sum")
    policies = list(energy.columns)
    rng = np.random.default_rng(seed)
    idx = _bootstrap_index(len(energy), n_boot, rng)

    acc_n = _wide(cells, "accuracy_n")  # requests with a known accuracy (text DNNs have none published)

    def per_request(mat: pd.DataFrame, denom: pd.DataFrame = count) -> tuple[pd.Series, np.ndarray]:
        """The point estimate and the ``n_boot`` replicates (rows: replicates, columns: policies) of a ratio
        of sums over cells. All replicates at once: ``m[idx]`` is (replicate, cell, policy) and its sum over
        cells adds the same cells in the same order as one replicate at a time (the same bytes)."""
        m, c = mat.to_numpy(float), denom.to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            point = pd.Series(m.sum(axis=0) / c.sum(axis=0), index=policies)
            reps = (m[idx].sum(axis=1) / c[idx].sum(axis=1) if n_boot else np.empty((0, len(policies))))
        return point, reps

    e_point, e_reps = per_request(energy)
    v_point, v_reps = per_request(viol)
    a_point, a_reps = per_request(acc, acc_n)

    lat = results.groupby("policy")["latency_ms"]
    lat_p50, lat_p95 = lat.quantile(0.5), lat.quantile(0.95)  # once, not once per policy
    keys = list(energy.index)

    if oracle is None:  # the greedy per-request oracle, under its name or its deprecated alias
        oracle = next((p for p in ("greedy_oracle", "oracle") if p in policies), "greedy_oracle")
    lam = None if violation_cost_mj is None else float(violation_cost_mj)
    if lam is not None:
        obj = energy + lam * viol
        j_point, j_reps = per_request(obj)
        b_cols = {}
        if bounds is not None and len(bounds):
            bt = bounds.set_index(["scenario", "seed"]).reindex(energy.index)
            for col, key in (("lower_lagrangian", "gap_to_bound"), ("upper_lagrangian", "gap_to_best_found")):
                b_cols[key] = bt[col].to_numpy(float)
        om = obj.to_numpy(float)

        def gap(m: np.ndarray, b: np.ndarray) -> np.ndarray:
            """J_policy / J_bound - 1 over the cells (axis -2) with both; ``m`` (..., cell, policy), ``b`` (..., cell)."""
            have = np.isfinite(m) & np.isfinite(b)[..., None]  # only cells with both the policy and the bound
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(have, m, 0).sum(axis=-2) / np.where(have, b[..., None], 0).sum(axis=-2) - 1

        # every replicate at once, as per_request above (same cells, same order of addition)
        gaps = {key: (gap(om, b), gap(om[idx], b[idx]) if n_boot else np.empty((0, len(policies))))
                for key, b in b_cols.items()}

    out: dict[str, dict] = {}
    for j, pol in enumerate(policies):
        entry = {
            "energy_mj": _ci(e_reps[:, j], e_point[pol]),
            "qos_violation_rate": _ci(v_reps[:, j], v_point[pol]),
            "accuracy": _ci(a_reps[:, j], a_point[pol]),
            "latency_p50_ms": float(lat_p50[pol]),
            # same shape whether or not the bootstrap below runs (no interval without it)
            "latency_p95_ms": {"mean": float(lat_p95[pol]), "ci_low": np.nan, "ci_high": np.nan},
            "n_requests": int(count[pol].sum()),
            "n_cells": int(count[pol].notna().sum()),
        }
        for label, base in baselines.items():
            if base in energy.columns:
                k = policies.index(base)
                entry[f"efficiency_vs_{label}"] = _ci(e_reps[:, k] / e_reps[:, j], e_point[base] / e_point[pol])
        if oracle in energy.columns:
            k = policies.index(oracle)
            entry["gap_to_greedy_oracle"] = _ci(e_reps[:, j] / e_reps[:, k] - 1, e_point[pol] / e_point[oracle] - 1)
        if lam is not None:
            entry["objective_mj"] = _ci(j_reps[:, j], j_point[pol])
            for key, (point, reps) in gaps.items():
                entry[key] = _ci(reps[:, j], point[j])
        out[pol] = entry
    # p95 latency CIs need per-request data: resample cells and recompute (small tables only)
    if n_boot and len(keys) <= 2000:
        reps = _resampled_quantiles(results, keys, policies, idx[: min(n_boot, 200)], 0.95)
        for j, pol in enumerate(policies):
            out[pol]["latency_p95_ms"] = _ci(reps[:, j], out[pol]["latency_p95_ms"]["mean"])
    return out


def _resampled_quantiles(results: pd.DataFrame, keys: list, policies: list[str], idx: np.ndarray,
                         q: float) -> np.ndarray:
    """(replicate, policy) quantile ``q`` of the latency of every request in each replicate's resampled cells.

    Equal to concatenating the drawn cells' requests and taking ``groupby("policy").quantile(q)`` (what this
    computed before), without building the table: a replicate is a multiset of cells, so its sorted latencies
    are each policy's sorted latencies with every request repeated as often as its cell was drawn, and the
    order statistics the quantile needs are found from the cumulative repeat counts.
    """
    frame = results[["policy", "scenario", "seed", "latency_ms"]].dropna(subset=["latency_ms"])
    cell_of = pd.Series(np.arange(len(keys)), index=pd.MultiIndex.from_tuples(keys, names=["scenario", "seed"]))
    cell = cell_of.reindex(pd.MultiIndex.from_frame(frame[["scenario", "seed"]])).to_numpy()
    out = np.full((len(idx), len(policies)), np.nan)
    draws = np.stack([np.bincount(rows, minlength=len(keys)) for rows in idx]) if len(idx) else np.empty((0, len(keys)))
    pol = frame["policy"].astype(str).to_numpy()
    lat = frame["latency_ms"].to_numpy(float)
    for j, name in enumerate(policies):
        mine = (pol == str(name)) & ~np.isnan(cell.astype(float))
        order = np.argsort(lat[mine], kind="stable")
        values, cells = lat[mine][order], cell[mine][order].astype(np.int64)
        for r in range(len(idx)):
            reps = draws[r][cells]  # how often each request (in sorted order) appears in this replicate
            cum = np.cumsum(reps)
            n = int(cum[-1]) if len(cum) else 0
            if n == 0:
                continue
            q_idx = q * float(n - 1)
            i = int(q_idx)
            # the i-th and (i+1)-th order statistics of the replicate (0-based): the first positions whose
            # cumulative count exceeds them
            lo, hi = np.searchsorted(cum, [i, min(i + 1, n - 1)], side="right")
            val, frac = values[lo], q_idx % 1
            out[r, j] = float(val) if frac == 0.0 else float(val + (values[hi] - val) * frac)
    return out


def summarise_by_scenario(results: pd.DataFrame, **kwargs) -> dict[str, dict]:
    """:func:`summarise` for each scenario separately."""
    return {sc: summarise(frame, **kwargs) for sc, frame in results.groupby("scenario", sort=True)}


def round_floats(obj, digits: int = 6):
    """Round every float in a nested structure (stable, diff-friendly metrics files)."""
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [round_floats(v, digits) for v in obj]
    if isinstance(obj, float):
        return None if not np.isfinite(obj) else round(obj, digits)
    return obj
