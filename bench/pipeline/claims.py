"""What the papers report vs what this suite measures, and what the learners add over simple references.

:func:`papers_vs_suite` - the strict claims table. The papers' numbers come from
``data/claims.yaml``, one entry per (claim, baseline): a claim made against
several baselines is never averaged. The suite's side is a number with a 95 %
interval (paired cluster bootstrap over (scenario, seed) cells, from the
evaluation's metrics or, for latency and accuracy, from the results table).
Verdicts:

* ``consistent`` - the paper's number lies inside the suite's 95 % CI (a published
  range: the range and the CI overlap; an upper bound: the whole CI is at or below
  it; a claim without a number - the policy beats the baseline - the whole CI of
  the efficiency ratio lies above 1);
* ``close`` - not consistent, but within 10 % of the paper's number of the CI
  (the CI widened by 10 % of the paper's value on each side would contain it; for
  a claim without a number: the CI contains 1);
* ``differs`` - otherwise, with the modelling reason from the claim's entry;
* ``not measured`` - the suite did not evaluate the policy, baseline or scenario.

:func:`what_learners_add` - per suite, energy and QoS of each learner against the
best static per DNN (and per signal bucket), the distilled rule, DVFO's published
baselines, the greedy oracle and the hindsight bound (with the headroom captured), on the evaluated (held-out)
scenarios, with CIs and a single-scenario check (a scenario supplying more than half of a difference is
flagged and the value without it given); and
:func:`learner_notes`, the plain sentences README needs (including when a
learner does not beat the distilled rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from bench.errors import DataFileError
from bench.paths import DATA_DIR

CLAIMS_FILE = DATA_DIR / "claims.yaml"
METRICS = ("efficiency", "energy_reduction", "latency_reduction", "accuracy_loss")
_REQUIRED = ("id", "paper", "claim", "value", "unit", "source", "suite", "policy", "baseline", "metric", "why")
_OPTIONAL = ("bound", "scenario")
CLOSE = 0.10  # "close": within 10 % of the paper's number (the definition)


# --------------------------------------------------------------------------- loading

def load_claims(path: str | Path = CLAIMS_FILE) -> list[dict[str, Any]]:
    """The claims file, validated (strict YAML, finite numbers, known keys, one baseline and metric per entry);
    an error names the entry, the key, the bad value and what is allowed."""
    import bench.validate as V

    path = Path(path)
    name = path.name
    data = V.read_yaml(path, DataFileError, name, top="any")
    if not isinstance(data, list):
        raise DataFileError.at(name, "expected a list of claims", data)
    seen = set()
    for i, c in enumerate(data):
        where = f"{name}[{i}]" + (f" ({c.get('id')})" if isinstance(c, dict) and "id" in c else "")
        V.mapping(where, c, DataFileError, allowed=_REQUIRED + _OPTIONAL, required=_REQUIRED)
        for key in ("id", "paper", "claim", "source", "suite", "policy", "baseline", "why"):
            V.text(f"{where}.{key}", c[key], DataFileError, empty=False)
        if c["metric"] not in METRICS:
            raise DataFileError(f"{where}: metric = {c['metric']!r}; allowed: {list(METRICS)}")
        v = c["value"]  # a number, a [low, high] range, or null (direction only)
        if isinstance(v, list):
            V.numbers(f"{where}.value", v, DataFileError, min_len=2, max_len=2, ascending="weak")
        elif v is not None:
            V.number(f"{where}.value", v, DataFileError)
        if c.get("bound") not in (None, "at most"):
            raise DataFileError(f"{where}: bound = {c['bound']!r}; allowed: 'at most'")
        if c["id"] in seen:
            raise DataFileError(f"{where}: duplicate id {c['id']!r}")
        seen.add(c["id"])
    return data


# --------------------------------------------------------------------------- the suite's side

def _entry(metrics: Mapping, suite: str, scenario: str | None) -> Mapping | None:
    s = metrics.get(suite)
    if s is None:
        return None
    return s.get("overall") if scenario is None else s.get("by_scenario", {}).get(scenario)


def _paired(results: pd.DataFrame, suite: str, scenario: str | None, policy: str, baseline: str, column: str,
            stat, n_boot: int, seed: int) -> tuple[float, float, float] | None:
    """stat(policy cell sums / counts, baseline's) with a paired cluster bootstrap over (scenario, seed)."""
    r = results[results["suite"] == suite] if "suite" in results.columns else results
    if scenario is not None:
        r = r[r["scenario"] == scenario]
    r = r[r["policy"].isin([policy, baseline])]
    r = r[r[column].notna()]
    if r.empty or set(r["policy"].unique()) != {policy, baseline}:  # unique first: a column of ~1e5 rows
        return None
    g = r.groupby(["policy", "scenario", "seed"])[column].agg(["sum", "count"]).reset_index()
    s = g.pivot_table(index=["scenario", "seed"], columns="policy", values="sum").dropna()
    n = g.pivot_table(index=["scenario", "seed"], columns="policy", values="count").loc[s.index]
    sp, sb, np_, nb = (x.to_numpy(float) for x in (s[policy], s[baseline], n[policy], n[baseline]))
    point = stat(sp.sum() / np_.sum(), sb.sum() / nb.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(s), size=(n_boot, len(s)))
    reps = np.array([stat(sp[i].sum() / np_[i].sum(), sb[i].sum() / nb[i].sum()) for i in idx])
    lo, hi = np.nanpercentile(reps, [2.5, 97.5]) if n_boot else (point, point)
    return float(point), float(lo), float(hi)


def suite_interval(metrics: Mapping, claim: Mapping, results: pd.DataFrame | None = None, n_boot: int = 1000,
                   seed: int = 0) -> tuple[float, float, float, str]:
    """(point, ci_low, ci_high, how measured) of a claim's suite metric; NaNs and the reason when not measured."""
    suite, pol, base, scen = claim["suite"], claim["policy"], claim["baseline"], claim.get("scenario")
    nan = (float("nan"),) * 3
    where = f"suite {suite}" + (f", scenario {scen}" if scen else "")
    m = _entry(metrics, suite, scen)
    if m is None:
        return (*nan, f"{where} not evaluated")
    for p in (pol, base):
        if p not in m:
            return (*nan, f"{p} not evaluated in {where}")
    metric = claim["metric"]
    if metric in ("efficiency", "energy_reduction"):
        eff = m[pol].get(f"efficiency_vs_{base}")
        if not isinstance(eff, Mapping) or eff.get("mean") is None:
            return (*nan, f"no efficiency_vs_{base} in the metrics of {where}")
        p, lo, hi = (float(eff[k]) if eff.get(k) is not None else float("nan") for k in ("mean", "ci_low", "ci_high"))
        if metric == "efficiency":
            return p, lo, hi, f"E_{base} / E_{pol}, paired 95% CI over cells; {where}"
        return 1 - 1 / p, 1 - 1 / lo, 1 - 1 / hi, f"1 - E_{pol} / E_{base}, paired 95% CI over cells; {where}"
    if metric == "latency_reduction":
        if results is not None:
            v = _paired(results, suite, scen, pol, base, "latency_ms", lambda a, b: 1 - a / b, n_boot, seed)
            if v is not None:
                return (*v, f"1 - mean latency of {pol} / {base}, paired 95% CI over cells; {where}")
        a, b = m[pol].get("latency_p50_ms"), m[base].get("latency_p50_ms")
        a = a.get("mean") if isinstance(a, Mapping) else a
        b = b.get("mean") if isinstance(b, Mapping) else b
        if a is None or b is None:
            return (*nan, f"no latency in the metrics of {where}")
        v = 1 - a / b
        return v, v, v, f"1 - median latency of {pol} / {base} (no CI without the results table); {where}"
    # accuracy_loss: top-1 of the baseline (everything on the edge) minus the policy's
    if results is not None:
        v = _paired(results, suite, scen, pol, base, "accuracy", lambda a, b: b - a, n_boot, seed)
        if v is not None:
            return (*v, f"top-1 of {base} minus {pol}'s over requests with a published accuracy, paired 95% CI; "
                        f"{where}")
    a, b = m[pol].get("accuracy", {}), m[base].get("accuracy", {})
    if a.get("mean") is None or b.get("mean") is None:
        return (*nan, f"no accuracy in the metrics of {where}")
    v = b["mean"] - a["mean"]
    return v, v, v, f"top-1 of {base} minus {pol}'s (no CI without the results table); {where}"


# --------------------------------------------------------------------------- verdicts

def verdict(claim: Mapping, point: float, lo: float, hi: float) -> str:
    """consistent / close / differs / not measured (definitions in the module docstring)."""
    if not np.isfinite(point):
        return "not measured"
    lo, hi = (lo, hi) if np.isfinite(lo) and np.isfinite(hi) else (point, point)
    lo, hi = min(lo, hi), max(lo, hi)
    v = claim["value"]
    if v is None:  # direction only: the policy beats the baseline (efficiency ratio > 1)
        return "consistent" if lo > 1 else ("differs" if hi < 1 else "close")
    if claim.get("bound") == "at most":
        return "consistent" if hi <= v else ("close" if lo <= v + CLOSE * abs(v) else "differs")
    a, b = (v[0], v[1]) if isinstance(v, list) else (v, v)
    if lo <= b and hi >= a:
        return "consistent"
    tol = CLOSE * max(abs(a), abs(b))
    return "close" if lo - tol <= b and hi + tol >= a else "differs"


def _fmt(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def papers_vs_suite(metrics: Mapping[str, Any], accuracy_curve: pd.DataFrame | None = None,
                    results: pd.DataFrame | None = None, n_boot: int = 1000, seed: int = 0,
                    claims: Sequence[Mapping] | None = None) -> pd.DataFrame:
    """One row per (paper claim, baseline): the paper's number and source, the suite's with its 95% CI, a verdict
    and, unless consistent, the reason. ``metrics``: per suite ``{"overall": ..., "by_scenario": ...}``;
    ``results`` (the tidy table), when given, adds paired CIs to latency and accuracy rows."""
    rows = []
    for claim in claims if claims is not None else load_claims():
        point, lo, hi, how = suite_interval(metrics, claim, results, n_boot, seed)
        single = single_scenario_flag(metrics, claim["suite"], claim["policy"], claim["baseline"],
                                      claim.get("scenario"), claim["metric"])
        ver = verdict(claim, point, lo, hi)
        if claim["metric"] == "accuracy_loss" and accuracy_curve is not None and "ranking" in accuracy_curve:
            att = accuracy_curve[accuracy_curve.ranking == "attention"]
            how += f"; measured curve: at most {att.accuracy_loss.max():.2%} loss over xi"
        v = claim["value"]
        paper = "—" if v is None else (f"{v[0]:g}–{v[1]:g}" if isinstance(v, list) else f"{v:g}")
        if claim.get("bound"):
            paper = f"{claim['bound']} {paper}"
        if ver == "consistent":
            why = ""
        elif ver == "not measured":
            why = how
        else:
            ref = 1.0 if v is None else (float(np.mean(v)) if isinstance(v, list) else float(v))
            side = "above" if point > ref else "below"
            why = f"suite {side} {'1 (no gain)' if v is None else 'the paper'}: {claim['why']}"
        rows.append({"paper": claim["paper"], "claim": claim["claim"], "baseline": claim["baseline"],
                     "scenario": claim.get("scenario") or "all", "paper_value": paper, "unit": claim["unit"],
                     "suite_value": f"{_fmt(point)} [{_fmt(lo)}, {_fmt(hi)}]" if np.isfinite(point) else "n/a",
                     "suite_mean": point if np.isfinite(point) else None,
                     "ci_low": lo if np.isfinite(lo) else None, "ci_high": hi if np.isfinite(hi) else None,
                     "verdict": ver, "how measured": how, "why they differ": why,
                     "single-scenario check": single, "source": claim["source"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- no single cell decides a verdict

def headline_breakdown(metrics: Mapping[str, Any], suite: str, policy: str, baseline: str) -> dict[str, Any] | None:
    """The energy difference ``policy - baseline`` over the suite's headline scenarios, split by scenario
    (:func:`bench.pipeline.yardstick.breakdown`); None when the metrics lack the per-scenario numbers."""
    from bench.pipeline.breakdown import breakdown

    s = metrics.get(suite) or {}
    by_sc = s.get("by_scenario") or {}
    split = s.get("split") or {}
    keep = set(split.get("heldout") or ()) or set(by_sc)
    return breakdown({sc: m for sc, m in by_sc.items() if sc in keep}, policy, baseline)


def _flag_text(bd: Mapping[str, Any] | None, metric: str = "energy_reduction") -> str:
    if not bd:
        return ""
    if not bd["dominated"]:
        return f"ok: no scenario supplies more than half (largest: {bd['top_scenario']}, {bd['top_share']:.0%})"
    share = bd["top_share"]
    share_txt = f"{share:.0%}" if np.isfinite(share) else "all"
    rel = bd.get("relative_without_top", float("nan"))
    # relative = E_policy / E_baseline - 1; the efficiency ratio E_baseline / E_policy = 1 / (1 + relative)
    value = (f"efficiency {1 / (1 + rel):.3g}x" if metric == "efficiency" else f"energy {rel:+.1%}") \
        if np.isfinite(rel) else "n/a"
    return f"FLAG: {bd['top_scenario']} supplies {share_txt} of the difference; without it: {value}"


def single_scenario_flag(metrics: Mapping[str, Any], suite: str, policy: str, baseline: str,
                         scenario: str | None, metric: str) -> str:
    """A claim's single-scenario check: '' (a one-scenario claim, or not an energy metric), 'ok: ...' or
    'FLAG: <scenario> supplies N% of the difference; without it: <value>' (issue 21: no single cell decides)."""
    if scenario or metric not in ("efficiency", "energy_reduction"):
        return ""
    return _flag_text(headline_breakdown(metrics, suite, policy, baseline), metric)


# --------------------------------------------------------------------------- what the learners add

#: the references a learner is compared with, in table order (those a suite lacks are skipped)
REFERENCES = ("best_static_dnn", "best_static_dnn_signal", "distilled", "neurosurgeon", "drldo", "appealnet",
              "edge_gpu_max", "greedy_oracle", "oracle", "bound")


def _learners() -> list[str]:
    from bench.policies import LEARNERS  # lazy: the registry imports every policy

    return LEARNERS.names()


def _ci(entry: Mapping | None) -> tuple[float, float, float]:
    if not isinstance(entry, Mapping) or entry.get("mean") is None:
        return (float("nan"),) * 3
    return tuple(float(entry[k]) if entry.get(k) is not None else float("nan") for k in ("mean", "ci_low", "ci_high"))


def what_learners_add(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Per suite and reference: energy and QoS violations of the learner and the reference (95% CIs), and the
    learner's energy saving against it (``1 - E_learner / E_reference``, paired CI; negative = the learner uses
    more), with ``learner_better``: yes (whole CI above 0), no (whole CI below 0) or tie - or "no room for
    learning" when no headline scenario of the suite has headroom (docs/bound.md): a learner is not ranked there."""
    rows = []
    for suite, s in metrics.items():
        m = s.get("overall", s)
        learners = [p for p in _learners() if p in m]
        no_room = _no_room(s)
        for learner in learners:
            le, le_lo, le_hi = _ci(m[learner].get("energy_mj"))
            lv, lv_lo, lv_hi = _ci(m[learner].get("qos_violation_rate"))
            for ref in (r for r in REFERENCES if r in m or (r == "bound" and "gap_to_bound" in m[learner])):
                if ref == "bound":  # the certified lower bound on the objective: gap_to_bound = J_learner / J_lower - 1
                    g, g_lo, g_hi = _ci(m[learner].get("gap_to_bound"))
                    sav, s_lo, s_hi = -g, -g_hi, -g_lo
                    jl = _ci(m[learner].get("objective_mj"))[0]
                    e, e_lo, e_hi = (jl / (1 + g),) * 3 if np.isfinite(g) else (float("nan"),) * 3
                    v = v_lo = v_hi = float("nan")
                    cap = m[learner].get("headroom_captured")
                    rows.append({"suite": suite, "learner": learner, "reference": "bound (objective)",
                                 "learner_energy_mj": jl, "learner_energy_ci": _ci(m[learner].get("objective_mj"))[1:],
                                 "learner_qos_violations": lv, "learner_qos_violations_ci": (lv_lo, lv_hi),
                                 "reference_energy_mj": e, "reference_energy_ci": (e_lo, e_hi),
                                 "reference_qos_violations": v, "reference_qos_violations_ci": (v_lo, v_hi),
                                 "learner_saving": sav, "learner_saving_ci": (s_lo, s_hi),
                                 "learner_better": "no" if np.isfinite(sav) else "n/a",
                                 "headroom_captured": _ci(cap)[0], "headroom_captured_ci": _ci(cap)[1:],
                                 "headroom_captured_found": _ci(m[learner].get("headroom_captured_found"))[0],
                                 "single_scenario": ""})
                    continue
                e, e_lo, e_hi = _ci(m[ref].get("energy_mj"))
                v, v_lo, v_hi = _ci(m[ref].get("qos_violation_rate"))
                if ref in ("greedy_oracle", "oracle"):  # gap_to_greedy_oracle = E_learner / E_greedy - 1
                    g, g_lo, g_hi = _ci(m[learner].get("gap_to_greedy_oracle", m[learner].get("gap_to_oracle")))
                    sav, s_lo, s_hi = -g, -g_hi, -g_lo
                else:
                    eff, f_lo, f_hi = _ci(m[learner].get(f"efficiency_vs_{ref}"))
                    sav, s_lo, s_hi = 1 - 1 / eff, 1 - 1 / f_lo, 1 - 1 / f_hi
                better = ("n/a" if not np.isfinite(sav) else "yes" if s_lo > 0 else "no" if s_hi < 0 else "tie")
                better = "no room for learning" if no_room else better
                rows.append({"suite": suite, "learner": learner, "reference": ref,
                             "learner_energy_mj": le, "learner_energy_ci": (le_lo, le_hi),
                             "learner_qos_violations": lv, "learner_qos_violations_ci": (lv_lo, lv_hi),
                             "reference_energy_mj": e, "reference_energy_ci": (e_lo, e_hi),
                             "reference_qos_violations": v, "reference_qos_violations_ci": (v_lo, v_hi),
                             "learner_saving": sav, "learner_saving_ci": (s_lo, s_hi), "learner_better": better,
                             "headroom_captured": float("nan"), "headroom_captured_ci": (float("nan"),) * 2,
                             "headroom_captured_found": float("nan"),
                             "single_scenario": _flag_text(headline_breakdown(metrics, suite, learner, ref))})
    return pd.DataFrame(rows)


def headroom_bracket(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Headroom per scenario from both ends of the bracket (certified bound, best schedule found) and the room
    flag (:func:`bench.pipeline.breakdown.headroom_report`; the report's table)."""
    from bench.pipeline.breakdown import headroom_report

    return headroom_report(metrics)


def _no_room(suite_metrics: Mapping[str, Any]) -> bool:
    """True when the suite's yardstick says no headline scenario leaves room for learning (headroom below the
    threshold everywhere); False when it has room somewhere or no yardstick (nothing to say)."""
    yard = suite_metrics.get("yardstick") if isinstance(suite_metrics, Mapping) else None
    if not yard or not yard.get("headroom"):
        return False
    split = suite_metrics.get("split") or {}
    headline = set(split.get("heldout") or ()) or {r["scenario"] for r in yard["headroom"]}
    from bench.pipeline.breakdown import no_room

    rooms = [r.get("room") for r in yard["headroom"] if r["scenario"] in headline]
    return bool(rooms) and all(no_room(r) for r in rooms)


def learner_notes(table: pd.DataFrame) -> list[str]:
    """Plain sentences per learner: its gap to the oracle, to the best static per DNN, to the distilled rule and
    (DVFO) to DRLDO / AppealNet / edge-only; says plainly when it does not beat the distilled rule."""
    from bench.policies import policy_info

    def label(name: str) -> str:  # its name in prose, registered with the policy
        return policy_info(name).label or name

    out = []
    for (suite, learner), g in table.groupby(["suite", "learner"], sort=True):
        g = g.set_index("reference")
        parts = []
        if "bound (objective)" in g.index:
            r = g.loc["bound (objective)"]
            lo, hi = r.learner_saving_ci
            parts.append(f"{-r.learner_saving:+.1%} [{-hi:+.1%}, {-lo:+.1%}] above the hindsight bound (objective)")
            if np.isfinite(r.headroom_captured):
                clo, chi = r.headroom_captured_ci
                found = getattr(r, "headroom_captured_found", float("nan"))
                found = f"; {found:.0%} against the best schedule found" if np.isfinite(found) else ""
                parts.append(f"{r.headroom_captured:.0%} [{clo:.0%}, {chi:.0%}] of the headroom captured against the "
                             f"certified bound (conservative){found}")
        for ref in ("greedy_oracle", "oracle"):
            if ref in g.index:
                r = g.loc[ref]
                lo, hi = r.learner_saving_ci
                parts.append(f"{-r.learner_saving:+.1%} [{-hi:+.1%}, {-lo:+.1%}] energy vs the greedy oracle")
                break
        for ref in ("best_static_dnn", "best_static_dnn_signal", "distilled", "drldo", "appealnet", "edge_gpu_max"):
            if ref in g.index:
                r = g.loc[ref]
                lo, hi = r.learner_saving_ci
                parts.append(f"{-r.learner_saving:+.1%} [{-hi:+.1%}, {-lo:+.1%}] vs {label(ref)}")
        text = f"{suite}: {learner} uses " + "; ".join(parts) + " (energy per inference, 95% CI)."
        flags = [f"vs {ref}: {f}" for ref, f in g["single_scenario"].items()
                 if isinstance(f, str) and f.startswith("FLAG")] if "single_scenario" in g else []
        if flags:
            text += " One scenario decides: " + "; ".join(flags) + "."
        if (g["learner_better"] == "no room for learning").any():
            text += (f" No headline scenario of {suite} leaves room for learning (headroom below the threshold: the "
                     f"best static choice per DNN is within it of the hindsight bound), so {learner} is not ranked.")
        elif "distilled" in g.index and g.loc["distilled"].learner_better != "yes":
            verdict_ = "uses more energy than" if g.loc["distilled"].learner_better == "no" else "does not beat"
            text += f" {learner} {verdict_} the distilled depth-3 rule fitted to the oracle on the training scenarios."
        out.append(text)
    return out


# --------------------------------------------------------------------------- robustness (the sensitivity stage)

def with_robustness(table: pd.DataFrame, sensitivity_summary: str | Path | Mapping | None,
                    claims: Sequence[Mapping] | None = None) -> pd.DataFrame:
    """:func:`papers_vs_suite`'s table with a ``robustness`` column from the sensitivity stage
    (``results/sensitivity/summary.json``, :mod:`bench.pipeline.sensitivity`): ``robust``, ``sensitive (to:
    lte.yaml: tail_mw x2 (-> differs); ...)`` (the assumed constants whose halving or doubling flips the verdict,
    the direction and the verdict it then gets, and the share of joint worlds that flip it) or ``not assessed`` (the
    stage did not measure the claim). Without sensitivity results (no file, or the stage disabled) the table is
    returned unchanged; the other columns are never touched."""
    import json

    summary = sensitivity_summary
    if summary is None or isinstance(summary, (str, Path)):
        if summary is None or not Path(summary).is_file():
            return table
        summary = json.loads(Path(summary).read_text())
    if not summary.get("enabled") or "robustness" not in summary:
        return table
    ids = {(c["paper"], c["claim"], c["baseline"], c.get("scenario") or "all"): c["id"]
           for c in (claims if claims is not None else load_claims())}
    from bench.pipeline.robustness import flip_text, flips_by_quantity

    rob, flips, joint = summary["robustness"], flips_by_quantity(summary), summary.get("lhs_flip_rate") or {}

    def label(quantity: str) -> str:
        # a sensitive claim names each constant with the direction that flips it and the verdict it then gets
        # (x0.5 / x2 -> verdict), and the share of joint worlds that flip it
        verdict = rob.get(quantity, "not assessed")
        if not verdict.startswith("sensitive") or not flips.get(quantity):
            return verdict
        rate = joint.get(quantity)
        return (f"sensitive (to: {flip_text(flips[quantity])}"
                + (f"; {100 * float(rate):.0f}% of joint worlds" if rate else "") + ")")

    out = table.copy()
    out["robustness"] = [label(f"claim:{ids.get((r.paper, r.claim, r.baseline, r.scenario))}")
                         for r in table.itertuples(index=False)]
    return out
