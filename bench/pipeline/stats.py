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

from typing import Callable

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
    g = results.groupby(["policy", "scenario", "seed"], sort=True)
    cells = g.agg(n=("energy_mj", "size"), energy_sum=("energy_mj", "sum"),
                  violations=("qos_ok", lambda s: int((~s.astype(bool)).sum())),
                  accuracy_sum=("accuracy", "sum"), accuracy_n=("accuracy", "count")).reset_index()
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

    def per_request(mat: pd.DataFrame, rows: np.ndarray | None = None, denom: pd.DataFrame = count) -> pd.Series:
        m, c = mat.to_numpy(float), denom.to_numpy(float)
        if rows is not None:
            m, c = m[rows], c[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            return pd.Series(m.sum(axis=0) / c.sum(axis=0), index=policies)

    def boot(stat: Callable[[np.ndarray | None], pd.Series]) -> tuple[pd.Series, np.ndarray]:
        point = stat(None)
        reps = np.stack([stat(rows).to_numpy() for rows in idx]) if n_boot else np.empty((0, len(policies)))
        return point, reps

    e_point, e_reps = boot(lambda r: per_request(energy, r))
    v_point, v_reps = boot(lambda r: per_request(viol, r))
    a_point, a_reps = boot(lambda r: per_request(acc, r, acc_n))

    lat = results.groupby("policy")["latency_ms"]
    keys = list(energy.index)

    if oracle is None:  # the greedy per-request oracle, under its name or its deprecated alias
        oracle = next((p for p in ("greedy_oracle", "oracle") if p in policies), "greedy_oracle")
    lam = None if violation_cost_mj is None else float(violation_cost_mj)
    if lam is not None:
        obj = energy + lam * viol
        j_point, j_reps = boot(lambda r: per_request(obj, r))
        b_cols = {}
        if bounds is not None and len(bounds):
            bt = bounds.set_index(["scenario", "seed"]).reindex(energy.index)
            for col, key in (("lower_lagrangian", "gap_to_bound"), ("upper_lagrangian", "gap_to_best_found")):
                b_cols[key] = bt[col].to_numpy(float)
        om = obj.to_numpy(float)

        def gap(bvec: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
            m, b = (om, bvec) if rows is None else (om[rows], bvec[rows])
            have = np.isfinite(m) & np.isfinite(b)[:, None]  # only cells with both the policy and the bound
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(have, m, 0).sum(axis=0) / np.where(have, b[:, None], 0).sum(axis=0) - 1

        gaps = {key: (gap(b, None), np.stack([gap(b, rows) for rows in idx]) if n_boot else
                      np.empty((0, len(policies)))) for key, b in b_cols.items()}

    out: dict[str, dict] = {}
    for j, pol in enumerate(policies):
        entry = {
            "energy_mj": _ci(e_reps[:, j], e_point[pol]),
            "qos_violation_rate": _ci(v_reps[:, j], v_point[pol]),
            "accuracy": _ci(a_reps[:, j], a_point[pol]),
            "latency_p50_ms": float(lat.quantile(0.5)[pol]),
            # same shape whether or not the bootstrap below runs (no interval without it)
            "latency_p95_ms": {"mean": float(lat.quantile(0.95)[pol]), "ci_low": np.nan, "ci_high": np.nan},
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
        lat_cells = dict(iter(results.groupby(["scenario", "seed"])))
        frames = [lat_cells[k] for k in keys]
        reps = {pol: [] for pol in policies}
        for rows in idx[: min(n_boot, 200)]:
            sample = pd.concat([frames[i] for i in rows], ignore_index=True)
            q = sample.groupby("policy")["latency_ms"].quantile(0.95)
            for pol in policies:
                reps[pol].append(q.get(pol, np.nan))
        for pol in policies:
            out[pol]["latency_p95_ms"] = _ci(np.asarray(reps[pol]), out[pol]["latency_p95_ms"]["mean"])
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
