"""The yardstick of the evaluate stage: the hindsight bound per cell, its check, headroom, per-scenario breakdowns.

* :func:`bound_cells` - per evaluation cell (suite, scenario, seed): the certified lower bound and the
  best schedule found, both variants (:mod:`bench.policies.bound`), plus the per-request bounds the
  check needs;
* :func:`check_bound` / :func:`enforce_bound` - no policy (privileged or not) beats the bound in any
  cell: Lagrangian ``E + λ·V >= lower``; QoS-first ``E >= the bound given the deadlines it met``
  (so a policy meeting every feasible deadline uses at least the QoS-first bound). The evaluate stage
  fails (:class:`BoundViolation`) otherwise;
* :func:`headroom_table` - per scenario (and family), from non-learner policies only: E_bound,
  E_best_found, E_best_static_dnn, E_distilled, the headroom from both ends of the bracket
  (``1 - J_bound / J_static``: an upper estimate; ``1 - J_best_found / J_static``: achieved) and the
  room flag from both (:func:`room_flag`: "room", "none" = no room for learning, "undetermined");
* :func:`headroom_captured` - learners as ``(J_static - J_learner) / (J_static - J_ref)`` against both ends
  (``J_ref`` = the certified lower bound: conservative; the best schedule found: optimistic), each with a
  paired cluster-bootstrap CI over the ranked scenarios (every scenario not flagged "none");
* :func:`family_captured` - per scenario family: the headroom from both ends and what each learner and the
  distilled rule capture of it, with CIs (a family flagged "none" is not ranked: README says so);
* :func:`breakdown` - a difference between two policies split by scenario; flags a scenario that
  supplies more than half of it and gives the value without it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.pipeline.breakdown import DOMINANT_SHARE, breakdown  # noqa: F401  (part of this module's API)
from bench.pipeline.breakdown import (NO_ROOM, ROOM, UNDETERMINED, bracket_gap, headroom_report,  # noqa: F401
                                      is_ranked, no_room, room_flag)
from bench.sim.objective import Objective

#: the reference a learner's headroom is measured from (the issue's "best static per DNN")
STATIC_REFERENCE = "best_static_dnn"
class BoundViolation(RuntimeError):
    """A policy beat the certified bound in some cell: the bound (or the simulator) is wrong."""


# --------------------------------------------------------------------------- bound per cell

def _bound_cell(key: tuple) -> tuple[dict[str, Any], pd.DataFrame]:
    suite, learner, scenario, seed, steps, env_kwargs_json, lam = key
    import bench  # noqa: F401  (registers the envs in a fresh worker)
    from bench.pipeline.training import learner_spec
    from bench.policies.bound import hindsight_bound
    from bench.policies.rollout import make_env

    env = make_env(learner_spec(learner).env_id, scenario, steps, **json.loads(env_kwargs_json))
    env.reset(seed=int(seed))  # the same reset as every policy's episode of this cell
    b = hindsight_bound(env, Objective(lam), int(steps))
    env.close()
    return bound_rows(key, b)


def bound_rows(key: tuple, b) -> tuple[dict[str, Any], pd.DataFrame]:
    """The bound table's row and the per-request bounds of one episode's :class:`~bench.policies.bound.Bound`."""
    suite, _, scenario, seed = key[:4]
    row = {"suite": suite, "scenario": scenario, "seed": int(seed), **b.summary()}
    rb = b.requests
    req = pd.DataFrame({"suite": suite, "scenario": scenario, "seed": int(seed), "step": np.arange(b.n),
                        "lb_any_mj": rb.lb_any_mj, "lb_ok_mj": rb.lb_ok_mj, "feasible": rb.feasible,
                        **episode_columns(b)})
    return row, req


def episode_columns(b) -> dict[str, np.ndarray]:
    """Per request, the episode bound's optimal path costs (:func:`bench.policies.bound.episode_bound`):
    ``lb_lag_mj`` (Lagrangian) and ``lb_qos_mj`` (QoS-first; NaN where no path meets every feasible deadline).
    Only their sum over a whole cell is a bound (the path is a relaxation's, not a schedule's)."""
    ep = getattr(b, "episode", None) or {}
    out = {}
    for col, variant in (("lb_lag_mj", "lagrangian"), ("lb_qos_mj", "qos_first")):
        e = ep.get(variant)
        out[col] = np.asarray(e.step_mj, dtype=float) if e is not None else np.full(b.n, np.nan)
    return out


def bound_cells(cells: Sequence, objective: Objective, engine=None, progress: bool = False
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per (suite, scenario, seed) with both variants' bracket, per-request bounds) of ``cells``
    (:class:`bench.pipeline.evaluate.Cell`; one bound per distinct episode, whatever the policies)."""
    from bench.pipeline.engine import Engine, map_ordered

    keys = list(dict.fromkeys(bound_key(c, objective) for c in cells))
    if engine is None or isinstance(engine, Mapping):
        engine = Engine.from_dict(engine or {})
    names = [f"bound-{hashlib.sha256(json.dumps(k).encode()).hexdigest()[:20]}" for k in keys]
    outs = map_ordered(_bound_cell, keys, engine, keys=names, progress=progress, desc="bound")
    return bound_tables(outs)


def bound_key(cell, objective: Objective) -> tuple:
    """The episode a cell plays and the objective its bound is searched for: one bound per distinct key."""
    return (cell.suite, cell.learner, cell.scenario, int(cell.seed), int(cell.steps), cell.env_kwargs_json,
            objective.violation_cost_mj)


def bound_tables(outs: Sequence[tuple[dict[str, Any], pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bound table, per-request bounds) from :func:`bound_rows` of each episode, in the given order."""
    table = pd.DataFrame([o[0] for o in outs])
    req = pd.concat([o[1] for o in outs], ignore_index=True) if outs else pd.DataFrame()
    for col in ("suite", "scenario"):
        if col in table:
            table[col] = table[col].astype("string")
        if col in req:
            req[col] = req[col].astype("string")
    return table, req


# --------------------------------------------------------------------------- the check

def check_bound(results: pd.DataFrame, requests: pd.DataFrame, objective: Objective,
                rel_tol: float = 1e-9, abs_tol_mj: float = 1e-6) -> pd.DataFrame:
    """One row per (suite, policy, scenario, seed) cell whose policy beats the bound (empty: none does).

    Columns: the cell, ``variant`` (lagrangian / qos_first), the policy's value and the bound's. A
    small tolerance absorbs float summation order only.
    """
    keys = ["suite", "scenario", "seed", "step"]
    res = results.copy()
    if "suite" not in res:
        res["suite"] = requests["suite"].iloc[0] if len(requests) else ""
    for c in ("suite", "scenario"):
        res[c] = res[c].astype(str)
    req = requests.copy()
    for c in ("suite", "scenario"):
        req[c] = req[c].astype(str)
    m = res.merge(req, on=keys, how="inner", validate="many_to_one")
    ok = m["qos_ok"].astype(bool).to_numpy()
    lam = objective.violation_cost_mj
    m["_j"] = m["energy_mj"].to_numpy(float) + lam * ~ok
    m["_lb_lag"] = np.minimum(m["lb_ok_mj"].to_numpy(float), m["lb_any_mj"].to_numpy(float) + lam)
    m["_lb_met"] = np.where(ok, m["lb_ok_mj"].to_numpy(float), m["lb_any_mj"].to_numpy(float))
    # the episode bound's path costs (sum over a whole cell only; absent in tables written before it)
    m["_ep_lag"] = m["lb_lag_mj"].to_numpy(float) if "lb_lag_mj" in m else np.nan
    m["_ep_qos"] = m["lb_qos_mj"].to_numpy(float) if "lb_qos_mj" in m else np.nan
    m["_miss_feasible"] = ~ok & m["feasible"].astype(bool).to_numpy()
    g = m.groupby(["suite", "policy", "scenario", "seed"], sort=True, observed=True)
    cell = g.agg(energy=("energy_mj", "sum"), j=("_j", "sum"), lb_lag=("_lb_lag", "sum"),
                 lb_met=("_lb_met", "sum"), ep_lag=("_ep_lag", lambda x: x.sum(min_count=len(x))),
                 ep_qos=("_ep_qos", lambda x: x.sum(min_count=len(x))),
                 missed=("_miss_feasible", "sum")).reset_index()
    # the episode bound: every schedule (Lagrangian); every schedule meeting all feasible deadlines (QoS-first)
    cell["lb_lag"] = np.fmax(cell["lb_lag"], cell["ep_lag"])
    cell["lb_met"] = np.where(cell["missed"] == 0, np.fmax(cell["lb_met"], cell["ep_qos"]), cell["lb_met"])
    rows = []
    for variant, value, bound in (("lagrangian", "j", "lb_lag"), ("qos_first", "energy", "lb_met")):
        tol = rel_tol * cell[bound].abs() + abs_tol_mj
        bad = cell[cell[value] < cell[bound] - tol]
        for r in bad.itertuples(index=False):
            rows.append({"suite": r.suite, "policy": r.policy, "scenario": r.scenario, "seed": int(r.seed),
                         "variant": variant, "policy_value_mj": float(getattr(r, value)),
                         "bound_mj": float(getattr(r, bound))})
    return pd.DataFrame(rows, columns=["suite", "policy", "scenario", "seed", "variant", "policy_value_mj",
                                       "bound_mj"])


def enforce_bound(results: pd.DataFrame, requests: pd.DataFrame, objective: Objective) -> None:
    """Raise :class:`BoundViolation` naming the cells where a policy beats the bound (the evaluate stage's check)."""
    bad = check_bound(results, requests, objective)
    if len(bad):
        first = bad.head(5).to_dict("records")
        raise BoundViolation(f"{len(bad)} cell(s) where a policy beats the hindsight bound (the bound or the "
                             f"simulator is wrong; docs/bound.md), e.g. {first}")


# --------------------------------------------------------------------------- headroom

def _cell_sums(results: pd.DataFrame, lam: float) -> pd.DataFrame:
    r = results.assign(_miss=~results["qos_ok"].astype(bool))
    g = r.groupby(["suite", "policy", "scenario", "seed"], sort=True, observed=True)
    c = g.agg(n=("energy_mj", "size"), energy=("energy_mj", "sum"), misses=("_miss", "sum")).reset_index()
    c["j"] = c["energy"] + lam * c["misses"]
    for col in ("suite", "policy", "scenario"):
        c[col] = c[col].astype(str)
    return c


def _families(scenarios) -> dict[str, str]:
    from bench.world.scenarios import load_scenario

    out = {}
    for sc in scenarios:
        try:
            obj = load_scenario(sc)
            out[sc] = str(getattr(obj, "family", None) or obj.name)
        except Exception:  # a scenario the table names but this checkout cannot load: its own family
            out[sc] = str(sc)
    return out


def headroom_table(results: pd.DataFrame, bounds: pd.DataFrame, objective: Objective,
                   threshold: float = 0.05, static: str = STATIC_REFERENCE, distilled: str = "distilled",
                   family: bool = False) -> pd.DataFrame:
    """Per (suite, scenario) - or (suite, family) with ``family`` - the room a learner has, before any learner.

    Uses only the bound and non-learner policies. Columns (per inference, pooled over seeds):
    ``e_bound_mj`` (certified lower bound, QoS-first), ``e_best_found_mj`` (best schedule found),
    ``e_best_static_dnn_mj``, ``e_distilled_mj``, the same on the objective (``j_*``), ``headroom`` =
    ``1 - j_bound / j_best_static_dnn`` (from the certified bound: an upper estimate, the bound is a
    relaxation), ``headroom_found`` = ``1 - j_best_found / j_best_static_dnn`` (achieved by a real schedule),
    ``room`` (:func:`room_flag` of both: "room" / "none" / "undetermined"; None when the suite did not evaluate
    the best static per DNN), ``bracket_gap`` = ``(j_best_found - j_bound) / j_best_found`` (objective) and
    ``bracket_gap_qos_first`` (the same on the QoS-first energies): how loose the bracket is.
    """
    lam = objective.violation_cost_mj
    c = _cell_sums(results, lam)
    b = bounds.copy()
    for col in ("suite", "scenario"):
        b[col] = b[col].astype(str)
    b["j_lower"], b["j_upper"] = b["lower_lagrangian"], b["upper_lagrangian"]
    fam = _families(sorted(set(b["scenario"])))
    group = "family" if family else "scenario"
    b["family"] = b["scenario"].map(fam)
    c["family"] = c["scenario"].map(fam)
    rows = []
    for (suite, key), gb in b.groupby(["suite", group], sort=True):
        n = gb["n"].sum()
        row = {"suite": suite, group: key, "cells": len(gb), "requests": int(n),
               "e_bound_mj": gb["lower_qos_first_mj"].sum() / n, "e_best_found_mj": gb["upper_qos_first_mj"].sum() / n,
               "j_bound_mj": gb["j_lower"].sum() / n, "j_best_found_mj": gb["j_upper"].sum() / n}
        cells = set(zip(gb["scenario"], gb["seed"]))
        for label, pol in (("best_static_dnn", static), ("distilled", distilled)):
            cp = c[(c["suite"] == suite) & (c["policy"] == pol)]
            cp = cp[[(s, d) in cells for s, d in zip(cp["scenario"], cp["seed"])]]
            ok = len(cp) == len(gb)
            row[f"e_{label}_mj"] = cp["energy"].sum() / cp["n"].sum() if ok else np.nan
            row[f"j_{label}_mj"] = cp["j"].sum() / cp["n"].sum() if ok else np.nan
        js = row["j_best_static_dnn_mj"]
        row["headroom"] = 1 - row["j_bound_mj"] / js if np.isfinite(js) and js > 0 else np.nan
        row["headroom_found"] = 1 - row["j_best_found_mj"] / js if np.isfinite(js) and js > 0 else np.nan
        # None: unknown (the suite did not evaluate best_static_dnn): neither ranked on nor marked "no room"
        row["room"] = room_flag(row["headroom"], row["headroom_found"], threshold)
        row["bracket_gap"] = bracket_gap(row["j_best_found_mj"], row["j_bound_mj"])
        row["bracket_gap_qos_first"] = bracket_gap(row["e_best_found_mj"], row["e_bound_mj"])
        rows.append(row)
    return pd.DataFrame(rows)


def headroom_captured(results: pd.DataFrame, bounds: pd.DataFrame, headroom: pd.DataFrame, objective: Objective,
                      learners: Sequence[str] = ("autoscale", "dvfo"), static: str = STATIC_REFERENCE,
                      n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per suite and learner: the headroom captured ``(J_static - J_learner) / (J_static - J_ref)`` over the ranked
    scenarios (:func:`is_ranked`: all but "no room for learning"), ratio of sums over their cells with a paired
    cluster-bootstrap 95% CI, and the same per scenario, against both ends of the bracket:

    * ``overall`` / ``by_scenario``: ``J_ref`` = the **certified lower bound** (conservative: the true optimum
      is at least as hard to reach, so the learner captures at least this share of its headroom);
    * ``overall_found`` / ``by_scenario_found``: ``J_ref`` = the **best schedule found** (optimistic; above 1
      when the learner beats the search; NaN where the best found does not beat the static reference).

    With ``J_learner < J_static`` the share of the exact optimum's headroom lies between the two.
    1 = the learner reaches the reference; 0 = no better than the best static per DNN; negative = worse.
    """
    from bench.pipeline.stats import _ci

    lam = objective.violation_cost_mj
    c = _cell_sums(results, lam)
    b = bounds.copy()
    for col in ("suite", "scenario"):
        b[col] = b[col].astype(str)
    out: dict[str, dict[str, Any]] = {}
    for suite, hs in headroom.groupby("suite", sort=True):
        room = set(hs.loc[[is_ranked(r) for r in hs["room"]], "scenario"]) if "scenario" in hs else set()
        bs = b[(b["suite"] == suite) & b["scenario"].isin(room)].set_index(["scenario", "seed"])
        cs = c[c["suite"] == suite]
        st = cs[cs["policy"] == static].set_index(["scenario", "seed"])["j"]
        for learner in (p for p in learners if p in set(cs["policy"])):
            lj = cs[cs["policy"] == learner].set_index(["scenario", "seed"])["j"]
            idx = bs.index.intersection(st.index).intersection(lj.index)
            entry: dict[str, Any] = {"scenarios_with_room": sorted(room), "cells": int(len(idx))}
            if len(idx):
                s_, l_ = st.loc[idx].to_numpy(float), lj.loc[idx].to_numpy(float)
                scen = np.array([k[0] for k in idx])
                allr = np.arange(len(idx))
                for suffix, col in (("", "lower_lagrangian"), ("_found", "upper_lagrangian")):
                    ref = bs.loc[idx, col].to_numpy(float)

                    def stat(r, ref=ref):
                        den = s_[r].sum() - ref[r].sum()
                        return (s_[r].sum() - l_[r].sum()) / den if den > 0 else float("nan")

                    rng = np.random.default_rng(seed)  # the same resamples for both ends: a paired bracket
                    reps = np.array([stat(rng.integers(0, len(idx), len(idx))) for _ in range(n_boot)])
                    point, reps = stat(allr), reps[np.isfinite(reps)]
                    ci = _ci(reps, point) if np.isfinite(point) and len(reps) else {"mean": point}
                    # JSON has no NaN: an undefined end (no headroom against that reference) is null
                    entry[f"overall{suffix}"] = {k: ci.get(k) if np.isfinite(ci.get(k, np.nan)) else None
                                                 for k in ("mean", "ci_low", "ci_high")}
                    entry[f"by_scenario{suffix}"] = {
                        sc: (v if np.isfinite(v := float(stat(np.flatnonzero(scen == sc)))) else None)
                        for sc in sorted(set(scen))}
            out.setdefault(str(suite), {})[learner] = entry
    return out


def _interval(point: float, reps: np.ndarray) -> dict[str, float | None]:
    """``{mean, ci_low, ci_high}`` (95% percentile interval of the finite replicates); None for what is undefined
    (JSON has no NaN)."""
    from bench.pipeline.stats import _ci

    reps = reps[np.isfinite(reps)]
    ci = _ci(reps, point) if np.isfinite(point) and len(reps) else {"mean": point}
    out = {}
    for k in ("mean", "ci_low", "ci_high"):
        v = ci.get(k)
        out[k] = float(v) if v is not None and np.isfinite(v) else None
    return out


def family_captured(results: pd.DataFrame, bounds: pd.DataFrame, objective: Objective, threshold: float,
                    learners: Sequence[str] = ("autoscale", "dvfo"), distilled: str = "distilled",
                    static: str = STATIC_REFERENCE, n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Per scenario family of one suite's ``results``: the headroom from both ends of the bracket and what each
    learner and the distilled rule capture of it, each with a 95% bootstrap CI over the family's (scenario, seed)
    cells (one set of resamples per family for every number: paired).

    Each row: ``family``, ``scenarios``, ``cells``, ``headroom`` = ``1 - ΣJ_bound / ΣJ_static`` (from the certified
    lower end), ``headroom_found`` = ``1 - ΣJ_best_found / ΣJ_static``, ``room`` (:func:`room_flag` of the two
    point values: a family flagged "none" has no room to learn and is not ranked), and per policy in ``captured``:
    ``bound`` / ``found`` = ``(ΣJ_static - ΣJ_policy) / (ΣJ_static - ΣJ_end)`` against each end (None where that
    end does not beat the static reference) and, for a learner, ``vs_distilled`` = ``ΣJ_learner / ΣJ_distilled - 1``
    (objective; > 0: the learner is worse). A policy missing from a cell of the family is left out."""
    lam = objective.violation_cost_mj
    c = _cell_sums(results, lam)
    b = bounds.copy()
    for col in ("suite", "scenario"):
        b[col] = b[col].astype(str)
    if b.empty or c.empty:
        return []
    fam = _families(sorted(set(b["scenario"])))
    st = c[c["policy"] == static].set_index(["scenario", "seed"])["j"]
    pols = [p for p in (*learners, distilled) if p in set(c["policy"])]
    pj = {p: c[c["policy"] == p].set_index(["scenario", "seed"])["j"] for p in pols}
    b = b.set_index(["scenario", "seed"])
    rows = []
    for family in sorted(set(fam.values())):
        idx = b.index[np.array([fam.get(sc) == family for sc, _ in b.index], dtype=bool)].intersection(st.index)
        if not len(idx):
            continue
        s_ = st.loc[idx].to_numpy(float)
        lo, up = b.loc[idx, "lower_lagrangian"].to_numpy(float), b.loc[idx, "upper_lagrangian"].to_numpy(float)
        draws = np.random.default_rng(seed).integers(0, len(idx), size=(n_boot, len(idx)))
        S, L, U = s_.sum(), lo.sum(), up.sum()
        Sb, Lb, Ub = s_[draws].sum(1), lo[draws].sum(1), up[draws].sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            h, hb = (1 - L / S if S > 0 else np.nan), np.where(Sb > 0, 1 - Lb / Sb, np.nan)
            hf, hfb = (1 - U / S if S > 0 else np.nan), np.where(Sb > 0, 1 - Ub / Sb, np.nan)
        row: dict[str, Any] = {"family": family, "scenarios": sorted({sc for sc, _ in idx}), "cells": int(len(idx)),
                               "headroom": _interval(h, hb), "headroom_found": _interval(hf, hfb),
                               "room": room_flag(h, hf, threshold), "captured": {}}
        sums = {}
        for p in pols:
            if not idx.isin(pj[p].index).all():
                continue
            v = pj[p].loc[idx].to_numpy(float)
            sums[p] = (v.sum(), v[draws].sum(1))
            entry = {}
            for end, (R, Rb) in (("bound", (L, Lb)), ("found", (U, Ub))):
                with np.errstate(divide="ignore", invalid="ignore"):
                    point = (S - sums[p][0]) / (S - R) if S - R > 0 else np.nan
                    reps = np.where(Sb - Rb > 0, (Sb - sums[p][1]) / (Sb - Rb), np.nan)
                entry[end] = _interval(point, reps)
            row["captured"][p] = entry
        if distilled in sums:
            D, Db = sums[distilled]
            for p in learners:
                if p in sums and D > 0:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        row["captured"][p]["vs_distilled"] = _interval(sums[p][0] / D - 1,
                                                                        np.where(Db > 0, sums[p][1] / Db - 1, np.nan))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- into the metrics

def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in df.to_dict("records")]


def yardstick_metrics(entry: dict[str, Any], frame: pd.DataFrame, bounds: pd.DataFrame, violation_cost_mj: float,
                      threshold: float, n_boot: int, seed: int, baselines: Mapping[str, str] | None = None,
                      learners: Sequence[str] = ("autoscale", "dvfo"), distilled: str = "distilled") -> None:
    """Add one suite's yardstick to its metrics ``entry`` (as :func:`bench.pipeline.evaluate.metrics` builds it):
    ``entry["yardstick"]`` = headroom per scenario (and per family), headroom captured per learner (headline
    split and seen scenarios; the distilled rule's too), per family of each split (``by_family``:
    :func:`family_captured`, the headroom and each policy's share of it with CIs) and, for every policy against
    every ratio baseline, the per-scenario breakdown of the energy difference over the headline split
    (``baselines``: label -> policy, as the efficiency ratios); each learner's headline entry gets
    ``headroom_captured``."""
    obj = Objective(violation_cost_mj)
    head = headroom_table(frame, bounds, obj, threshold)
    fam = headroom_table(frame, bounds, obj, threshold, family=True)
    split = entry.get("split", {})
    headline_sc = set(split.get("heldout") or split.get("seen") or head.get("scenario", pd.Series(dtype=str)))
    yard: dict[str, Any] = {"threshold": threshold, "violation_cost_mj": obj.violation_cost_mj,
                            "headroom": _records(head),
                            "no_room": sorted(head.loc[[no_room(r) for r in head["room"]], "scenario"]) if len(head) else [],
                            "undetermined": sorted(head.loc[head["room"].eq(UNDETERMINED), "scenario"]) if len(head) else []}
    if len(fam) and (fam["family"].tolist() != head["scenario"].tolist()):
        yard["headroom_by_family"] = _records(fam)
    captured: dict[str, Any] = {}
    families: dict[str, list] = {}
    for name, scen in (("headline", headline_sc), ("seen", set(split.get("seen") or ()) if split.get("heldout") else set())):
        if not scen:
            continue
        part = head[head["scenario"].isin(scen)]
        res_s, bounds_s = frame[frame["scenario"].isin(scen)], bounds[bounds["scenario"].isin(scen)]
        # the distilled rule too: the README sets each learner's share beside the rule's (issue 23)
        cap = headroom_captured(res_s, bounds_s, part, obj, (*learners, distilled), n_boot=n_boot, seed=seed)
        captured[name] = next(iter(cap.values()), {})
        families[name] = family_captured(res_s, bounds_s, obj, threshold, learners, distilled, n_boot=n_boot,
                                         seed=seed)
    yard["headroom_captured"] = captured
    yard["by_family"] = families
    for learner, c in captured.get("headline", {}).items():
        if "overall" in c and learner in entry["overall"] and learner in learners:
            entry["overall"][learner]["headroom_captured"] = c["overall"]  # against the certified bound
            entry["overall"][learner]["headroom_captured_found"] = c["overall_found"]  # against the best found
    by_sc = {sc: m for sc, m in entry.get("by_scenario", {}).items() if sc in headline_sc}
    pols = sorted(entry["overall"])
    yard["breakdown"] = {p: {label: bd for label, base in (baselines or {}).items()
                             if base in entry["overall"] and base != p
                             and (bd := breakdown(by_sc, p, base)) is not None}
                         for p in pols}
    entry["yardstick"] = yard
