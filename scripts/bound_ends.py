"""The certified lower bound before and after the window attribution, on the evaluate stage's own cells
(issue 21's closing-note table; docs/bound.md).

    python scripts/bound_ends.py SUITE [SUITE ...] [--results results] [--csv OUT.csv] [--heldout] [--search]

Per (suite, scenario), pooled over the evaluation seeds, on the declared objective E + λ·misses per inference:

* ``ledger_lower``: the per-request relaxation of the kernel's own ledger with its favourable "busy" radio
  (activity committed far ahead: an offload pays no connected power) - the bound before;
* ``window_lower``: :func:`bench.policies.bound.request_bounds` (the per-request window attribution);
* ``episode_lower``: :func:`bench.policies.bound.episode_bounds` (the DP over queues, radio windows and
  connection on top of the window attribution) - the bound now;
* ``best_found``: the best schedule found, from ``RESULTS/evaluate/bound.csv`` when it holds the cell, and each
  bracket gap ``(best_found - lower) / best_found``; with ``--search`` also ``best_found_now``: the search of
  this checkout (:func:`bench.policies.bound.hindsight_bound`, which adds the episode bound's paths to its
  proposals), its gap to ``episode_lower`` and its CPU seconds per cell.

``--heldout``: only the suites' held-out scenarios.

The cells are the evaluate stage's (params.yaml's suites, seeds derived from the root seed, the trained
run's env arguments from ``RESULTS/train/<run>/train.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def cell_bounds(suite: str, results: Path, heldout: bool = False, search: bool = False) -> pd.DataFrame:
    """One row per evaluation cell of ``suite``: both lower ends (objective, mJ over the episode) and ``n``."""
    import bench  # noqa: F401  (registers the envs)
    import bench.policies  # noqa: F401
    from bench.config import load_params
    from bench.pipeline.evaluate import suite_cells
    from bench.pipeline.training import learner_spec
    import time

    from bench.policies.bound import (RequestBounds, _next_arrival, _variants, _with, episode_bounds, hindsight_bound,
                                      request_bounds)
    from bench.policies.rollout import make_env
    from bench.sim.objective import Objective

    params = load_params()
    obj = Objective(params.objective.violation_cost_mj)
    s = params.evaluate.suites[suite]
    scenarios = (list(s.scenarios) if not heldout else []) + list(s.heldout_scenarios)
    cells = suite_cells(suite, results / "train" / s.run, [], scenarios, params.evaluate.seeds, params.evaluate.steps,
                        params.seed, obj.violation_cost_mj)
    rows = []
    for learner, sc, seed, steps, kw in sorted({(c.learner, c.scenario, int(c.seed), int(c.steps), c.env_kwargs_json)
                                                for c in cells}):
        env = make_env(learner_spec(learner).env_id, sc, steps, **json.loads(kw))
        env.reset(seed=seed)  # the same reset as the evaluate stage's bound of this cell
        u = env.unwrapped
        ep = u.episode()
        idx = np.arange(min(steps, len(ep.states)))
        st, dr = ep.states.take(idx), ep.draws.take(idx)
        st = _with(st, radio_idle_ms=np.full(st.radio_idle_ms.shape, np.inf), throttled=np.zeros(len(idx), dtype=bool))
        v = _variants(u.sim, st, dr)
        ok_mj = np.where(v.qos_ok, v.energy_mj, np.inf).min(axis=(0, 2))
        ledger = RequestBounds(v.energy_mj.min(axis=(0, 2)), ok_mj, np.isfinite(ok_mj))
        window = request_bounds(u.sim, st, dr, v)
        lag, _ = episode_bounds(v, [lk.tail_ms for lk in u.sim.links], obj.violation_cost_mj, window.feasible,
                                _next_arrival(st), st.qos_ms, u.sim.kernel.n_resources)
        row = {"suite": suite, "scenario": sc, "seed": seed, "n": len(idx), "ledger_lower": ledger.lagrangian(obj),
               "window_lower": window.lagrangian(obj), "episode_lower": max(lag.value, window.lagrangian(obj))}
        if search:
            t = time.process_time()
            b = hindsight_bound(env, obj, len(idx))
            row.update(best_found_now=b.upper_lagrangian, search_cpu_s=time.process_time() - t)
        rows.append(row)
        env.close()
    return pd.DataFrame(rows)


def table(suites: list[str], results: Path, heldout: bool = False, search: bool = False) -> pd.DataFrame:
    cells = pd.concat([cell_bounds(s, results, heldout, search) for s in suites], ignore_index=True)
    csv = results / "evaluate" / "bound.csv"
    if csv.exists():
        found = pd.read_csv(csv)[["suite", "scenario", "seed", "n", "upper_lagrangian"]]
        cells = cells.merge(found, on=["suite", "scenario", "seed", "n"], how="left")
    else:
        cells["upper_lagrangian"] = np.nan
    g = cells.groupby(["suite", "scenario"], sort=True)
    out = pd.DataFrame({"cells": g.size(), "ledger_lower": g.ledger_lower.sum() / g.n.sum(),
                        "window_lower": g.window_lower.sum() / g.n.sum(),
                        "episode_lower": g.episode_lower.sum() / g.n.sum(),
                        "best_found": g.upper_lagrangian.sum(min_count=1) / g.n.sum()})
    out["ledger_gap"] = (out.best_found - out.ledger_lower) / out.best_found
    out["window_gap"] = (out.best_found - out.window_lower) / out.best_found
    out["episode_gap"] = (out.best_found - out.episode_lower) / out.best_found
    if search:
        out["best_found_now"] = g.best_found_now.sum() / g.n.sum()
        out["gap_now"] = (out.best_found_now - out.episode_lower) / out.best_found_now
        out["search_cpu_s"] = g.search_cpu_s.mean()
    return out.reset_index()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("suites", nargs="+", metavar="SUITE")
    p.add_argument("--results", default="results", type=Path)
    p.add_argument("--csv", type=Path, help="also write the table here")
    p.add_argument("--heldout", action="store_true", help="only the held-out scenarios")
    p.add_argument("--search", action="store_true", help="also run this checkout's search for the best schedule")
    a = p.parse_args(argv)
    from bench.config import load_params

    known = sorted(load_params().evaluate.suites)
    bad = [s for s in a.suites if s not in known]
    if bad:
        print(f"bound_ends: suite {bad[0]!r} is not in params.yaml evaluate.suites; allowed: {known}", file=sys.stderr)
        return 2
    missing = [s for s in a.suites if not (a.results / "train" / load_params().evaluate.suites[s].run / "train.json").exists()]
    if missing:
        print(f"bound_ends: {a.results}/train has no trained run for suite {missing[0]!r} (run the train stage first)",
              file=sys.stderr)
        return 2
    t = table(a.suites, a.results, a.heldout, a.search)
    if a.csv:
        t.to_csv(a.csv, index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        print(t.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
