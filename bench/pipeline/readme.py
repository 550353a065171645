"""Refresh README.md's generated sections from the pipeline's outputs.

``python -m bench readme`` replaces the text between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` markers (in README.md, docs/performance.md and docs/calibration.md) with tables rendered from
``results/evaluate/metrics_overall.json`` (the headline with 95% CIs),
``results/report/papers_vs_suite.csv`` and ``results/perf.json``, and copies each
suite's headline figures into ``docs/figures/``. README numbers are therefore
always computed by the pipeline, never typed by hand. ``--check`` exits 1 when
the README is out of date with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from bench.paths import REPO_ROOT, RESULTS_DIR
from bench.pipeline.breakdown import is_ranked, no_room
from hw.atomic import atomic_write_text

README = REPO_ROOT / "README.md"
#: other documents with generated blocks (the perf table and the calibration summary live in docs/)
GENERATED_DOCS = (REPO_ROOT / "docs" / "performance.md", REPO_ROOT / "docs" / "calibration.md")
FIGURES = REPO_ROOT / "docs" / "figures"
#: each suite's headline figures (files of results/report/, NAME_SUITE.png) and what they show
SHOWN_FIGURES = {
    "energy_vs_signal": "energy per inference and QoS violations against {link}",  # {link}: per suite, see caption()
    "energy_latency": "energy vs p95 latency relative to the QoS deadline, with the Pareto front",
    "savings": "energy saved against edge-only (and DRLDO / AppealNet when evaluated)",
}
#: what the baselines mean in each suite's action space (bench/policies/baselines.py)
SUITE_NOTES = {
    "autoscale_phone": "Phone (Snapdragon-845-class reference profile), AutoScale's action space: CPU-only = the CPU "
                       "at its top DVFS level; cloud-only = offload every input (Wi-Fi above -82 dBm, else LTE).",
    "dvfo_jetson": "Jetson Xavier NX reference profile, DVFO's action space: edge-only = everything on the "
                   "Jetson's GPU at the top CPU/GPU/memory frequencies (edge_gpu_max); cloud-only = the largest "
                   "offloaded share of feature maps DVFO can choose.",
}



def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    def cell(v) -> str:
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def results_section(metrics: Mapping[str, Mapping], splits: Mapping[str, Mapping] | None = None,
                    yardstick: Mapping[str, Mapping] | None = None) -> str:
    from bench.pipeline.report import headline_rows, is_learner

    parts = []
    for suite in sorted(metrics):
        rows = [{**r, "policy": f"**{r['policy']}**" if is_learner(r["policy"]) else r["policy"]}
                for r in headline_rows(metrics[suite])]
        note = SUITE_NOTES.get(suite, "")
        split = (splits or {}).get(suite, {})
        where = (f"over the **held-out** scenarios no learner trained on ({', '.join(split['heldout'])})"
                 if split.get("heldout") else "over every evaluated scenario")
        parts.append(f"**{suite}** (mean {where} × seeds; 95% bootstrap CI). {note}\n\n"
                     + markdown_table(rows, list(rows[0])))
        yard = (yardstick or {}).get(suite)
        if yard:
            parts.append(headroom_section(suite, yard))
            flags = single_scenario_flags(yard)
            if flags:
                parts.append(flags)
    return "\n\n".join(parts)


def headroom_section(suite: str, yard: Mapping) -> str:
    """Per scenario: the room a learner has before any learner is trained (results/evaluate/yardstick.json)."""
    def mj(x) -> str:
        return "—" if x is None or pd.isna(x) else f"{x:.1f}"

    def pct(x) -> str:
        return "—" if x is None or pd.isna(x) else f"{100 * x:.1f}%"

    from bench.pipeline.breakdown import room_flag

    def flag(r: Mapping) -> str:
        room = r.get("room")
        if isinstance(room, bool):  # a yardstick.json of before the two-ended flag: read it from both headrooms
            room = room_flag(r.get("headroom"), r.get("headroom_found"), yard.get("threshold", 0.05))
        return {"room": "yes", "none": "**no room for learning**",
                "undetermined": "undetermined (bound too loose)"}.get(room, "unknown (no best_static_dnn)")

    rows = [{"scenario": r["scenario"], "bound (mJ)": mj(r.get("j_bound_mj")),
             "best found (mJ)": mj(r.get("j_best_found_mj")), "bracket gap": pct(bracket_gap(r)),
             "best static per DNN (mJ)": mj(r.get("j_best_static_dnn_mj")),
             "distilled (mJ)": mj(r.get("j_distilled_mj")), "headroom from bound": pct(r.get("headroom")),
             "headroom found": pct(r.get("headroom_found")),
             "room for learning?": flag(r)}
            for r in yard.get("headroom", [])]
    if not rows:
        return ""

    def pc(o) -> str:
        if not o or o.get("mean") is None:
            return "—"
        ci = f" [{100 * o['ci_low']:.0f}, {100 * o['ci_high']:.0f}]" if o.get("ci_low") is not None else ""
        return f"{100 * o['mean']:.0f}%{ci}"

    cap = []
    shares = (yard.get("headroom_captured", {}).get("headline") or {}).items()
    for learner, c in sorted(shares, key=lambda kv: kv[0] == "distilled"):  # the learners, then the distilled rule
        if c.get("overall"):
            found = f", {pc(c.get('overall_found'))} of that to the best schedule found" if "overall_found" in c else ""
            cap.append(f"{learner}: {pc(c['overall'])} of the headroom to the certified bound captured (conservative)"
                       f"{found}, over {', '.join(c['scenarios_with_room']) or 'no scenario'}")
    head = (f"Headroom on **{suite}** (objective E + {yard.get('violation_cost_mj', 0):g} mJ × misses per inference, "
            f"pooled over seeds; headroom = 1 − J / best static per DNN from both ends of the bracket: the certified "
            f"lower bound (an upper estimate of the room) and the best schedule found (room a real schedule achieves); "
            f"bracket gap = (best found − bound) / best found. Room for learning: yes when the best found gains "
            f"≥ {100 * yard.get('threshold', 0):.0f}%, no when even the bound gains less (not used to rank learners), "
            f"else undetermined; docs/bound.md)")
    return head + ("; " + "; ".join(cap) if cap else "") + ".\n\n" + markdown_table(rows, list(rows[0]))


def bracket_gap(row: Mapping) -> float | None:
    """``(J_best_found - J_bound) / J_best_found`` of a headroom row (computed here for a yardstick.json of before)."""
    if row.get("bracket_gap") is not None:
        return row["bracket_gap"]
    found, bound = row.get("j_best_found_mj"), row.get("j_bound_mj")
    return (found - bound) / found if found and bound is not None and found > 0 else None


def single_scenario_flags(yard: Mapping, policies: Sequence[str] = ("autoscale", "dvfo", "distilled")) -> str:
    """One line per reported difference that a single scenario decides (more than half of it), with the value
    without that scenario (results/evaluate/yardstick.json's breakdowns)."""
    lines = []
    for pol, refs in sorted((yard.get("breakdown") or {}).items()):
        if pol not in policies:
            continue
        for ref, bd in sorted(refs.items()):
            if bd and bd.get("dominated"):
                share = bd.get("top_share")
                share_txt = "all" if share is None else f"{100 * abs(share):.0f}%"
                lines.append(f"- {pol} vs {ref}: energy {100 * bd['relative']:+.1f}%, of which {bd['top_scenario']} "
                             f"supplies {share_txt}; without it: {100 * bd.get('relative_without_top', float('nan')):+.1f}%")
    return ("Differences one scenario decides (it supplies more than half):\n\n" + "\n".join(lines)) if lines else ""


def learners_section(adds: pd.DataFrame, notes: str, yardstick: Mapping[str, Mapping] | None = None,
                     splits: Mapping[str, Mapping] | None = None, target: tuple[float, float] | None = None) -> str:
    """What the learners add over the strongest non-learning baselines (results/report/what_learners_add.csv) and,
    per suite with a yardstick, the same per family of its headline scenarios (:func:`family_section`)."""
    body = _learners_table(adds, notes)
    fams = [family_section(suite, yard, (splits or {}).get(suite, {}), target)
            for suite, yard in sorted((yardstick or {}).items())]
    return "\n\n".join(p for p in (body, *fams) if p)


def _pct(o: Mapping | None, signed: bool = False, decimals: int = 0) -> str:
    """``47% [40, 55]`` of a ``{mean, ci_low, ci_high}`` share (``—`` when undefined); one decimal more while the
    mean is below 1% (a difference of 0.05% is not printed as "+0%")."""
    if not isinstance(o, Mapping) or o.get("mean") is None:
        return "—"
    decimals += abs(100 * o["mean"]) < 1
    f = ("{:+." if signed else "{:.") + f"{decimals}f}}"

    def num(x: float) -> str:
        return f.format(round(100 * x, decimals) + 0.0)  # + 0.0: no "-0"

    ci = (f" [{num(o['ci_low'])}, {num(o['ci_high'])}]"
          if o.get("ci_low") is not None and o.get("ci_high") is not None else "")
    return f"{num(o['mean'])}%{ci}"


#: what a family's row says instead of a ranking when its headroom is below the threshold
NO_ROOM_TEXT = "no room to learn"


def family_label(row: Mapping) -> str:
    return f"{row['family']} ({', '.join(row.get('scenarios') or [])})"


def family_verdicts(rows: Sequence[Mapping], learner: str, target: tuple[float, float] | None,
                    distilled: str = "distilled") -> dict[str, list[Mapping]]:
    """The families of ``rows`` (yardstick.json's ``by_family``) sorted by what they say about ``learner``:
    ``no_room`` (flagged "none": not ranked, whatever the numbers), ``misses`` (ranked, headroom from the lower end
    >= ``target[1]`` and less than ``target[0]`` of it captured), ``meets`` (the same, at least ``target[0]``),
    ``worse`` (ranked, the learner's objective above the distilled rule's with the whole 95% CI above 0)."""
    out: dict[str, list[Mapping]] = {"no_room": [], "misses": [], "meets": [], "worse": []}
    for r in rows:
        if no_room(r.get("room")):
            out["no_room"].append(r)
            continue
        if not is_ranked(r.get("room")):
            continue  # unknown (no static reference): nothing to say
        cap = (r.get("captured") or {}).get(learner) or {}
        share, head = (cap.get("bound") or {}).get("mean"), (r.get("headroom") or {}).get("mean")
        if target is not None and share is not None and head is not None and head >= target[1]:
            out["meets" if share >= target[0] else "misses"].append(r)
        vs = cap.get("vs_distilled") or {}
        if vs.get("ci_low") is not None and vs["ci_low"] > 0:
            out["worse"].append(r)
    return out


def family_section(suite: str, yard: Mapping, split: Mapping, target: tuple[float, float] | None,
                   distilled: str = "distilled") -> str:
    """Per family of the suite's headline scenarios (yardstick.json's ``by_family``): the headroom from both ends
    of the bracket and what each learner and the distilled rule capture of it (95% CIs); a family without room
    says so instead of a ranking; then a line naming the families where the learner misses the target or is
    worse than the distilled rule beyond the CI."""
    rows = (yard.get("by_family") or {}).get("headline") or []
    if not rows:
        return ""
    threshold = yard.get("threshold", 0.05)
    pols = list(dict.fromkeys(p for r in rows for p in (r.get("captured") or {})))
    learners = [p for p in pols if p != distilled]
    shown = learners + ([distilled] if distilled in pols else [])
    table = []
    for r in rows:
        none = no_room(r.get("room"))
        room_note = {"undetermined": " (undetermined)", "none": f" (< {100 * threshold:.0f}%)"}.get(r.get("room"), "")
        t = {"family (scenarios)": family_label(r), "headroom from lower end": _pct(r.get("headroom")) + room_note,
             "headroom from best found": _pct(r.get("headroom_found"))}
        for p in shown:
            c = (r.get("captured") or {}).get(p) or {}
            t[f"{p} captured: vs lower end / vs found"] = (NO_ROOM_TEXT if none else
                                                            f"{_pct(c.get('bound'))} / {_pct(c.get('found'))}")
        for p in learners if distilled in pols else ():
            c = (r.get("captured") or {}).get(p) or {}
            t[f"{p} vs {distilled} (objective)"] = NO_ROOM_TEXT if none else _pct(c.get("vs_distilled"), True, 1)
        table.append(t)
    which = "held-out family" if split.get("heldout") else "family"
    head = (f"**{suite}, per {which}** (objective per inference over the family's scenarios × seeds; headroom = "
            f"1 − J / best static per DNN from the certified lower end and from the best schedule found; captured = "
            f"(J best static − J policy) / (J best static − J end); 95% bootstrap CI over the family's cells; a "
            f"family whose headroom from the lower end is below {100 * threshold:.0f}% has "
            f"{NO_ROOM_TEXT} and is not ranked).")
    lines = [head, markdown_table(table, list(table[0]))]
    for learner in learners:
        v = family_verdicts(rows, learner, target, distilled)
        parts = []
        if target is not None:
            def miss(r, learner=learner) -> str:
                h, hf = (r.get("headroom") or {}).get("mean"), (r.get("headroom_found") or {}).get("mean")
                share = r["captured"][learner]["bound"]["mean"]
                best = f" (the best schedule found: {_pct({'mean': hf / h})})" if h and hf is not None else ""
                return f"{family_label(r)}: {_pct({'mean': share})}{best}"
            parts.append(f"{learner} misses the target (≥ {100 * target[0]:.0f}% of the headroom from the certified "
                         f"lower end, where it is ≥ {100 * target[1]:.0f}%) on "
                         + ("; ".join(miss(r) for r in v["misses"]) if v["misses"] else "no family")
                         + (f" (meets it on {', '.join(family_label(r) for r in v['meets'])})" if v["meets"] else ""))
        if distilled in pols:
            parts.append(f"worse than the {distilled} rule beyond the 95% CI on "
                         + ("; ".join(f"{family_label(r)}: {_pct(r['captured'][learner]['vs_distilled'], True, 1)}"
                                      for r in v["worse"]) if v["worse"] else "no family"))
        if v["no_room"]:
            parts.append(f"{NO_ROOM_TEXT} (not ranked): {', '.join(family_label(r) for r in v['no_room'])}")
        lines.append(f"**{suite}**: " + "; ".join(parts) + ".")
    return "\n\n".join(lines)


def _learners_table(adds: pd.DataFrame, notes: str) -> str:
    def ci(x) -> str:
        import ast

        lo, hi = ast.literal_eval(x) if isinstance(x, str) else x  # a "(lo, hi)" pair as the CSV holds it
        return f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"

    rows = [{"suite": r["suite"], "learner": r["learner"], "reference": r["reference"],
             "learner energy (mJ)": f"{r['learner_energy_mj']:.1f}", "reference energy (mJ)": f"{r['reference_energy_mj']:.1f}",
             "learner saving (%)": f"{100 * r['learner_saving']:+.1f} {ci(r['learner_saving_ci'])}",
             "learner better?": r["learner_better"],
             "one scenario decides?": r.get("single_scenario") if isinstance(r.get("single_scenario"), str)
             and r.get("single_scenario", "").startswith("FLAG") else ""} for r in adds.to_dict("records")]
    table = markdown_table(rows, list(rows[0])) if rows else ""
    return (notes.strip() + "\n\n" + table).strip()


def claims_section(table: pd.DataFrame) -> str:
    cols = ["paper", "claim", "paper_value", "suite_value", "verdict", "how measured", "why they differ"]
    if "single-scenario check" in table.columns:
        cols.append("single-scenario check")
    if "robustness" in table.columns:  # the sensitivity run's verdict on the verdict (claims.with_robustness)
        cols.append("robustness")
    rows = table.fillna("").to_dict("records")
    return markdown_table(rows, cols)


def _scaled_word(factor: float) -> str:
    return {0.5: "halved", 2.0: "doubled"}.get(float(factor), f"scaled x{float(factor):g}")


def robust_means(summary: Mapping) -> str:
    """What 'robust' and 'sensitive' mean for this run, from its own factors and joint sample (a run with other
    factors, or none, says so)."""
    factors = [float(f) for f in summary.get("factors") or []]
    moved = " or ".join(_scaled_word(f) for f in factors) or "changed"
    joint = ", and no joint sample," if int(summary.get("lhs_samples") or 0) > 0 else ""
    legend = ", ".join(f"x{f:g}: {_scaled_word(f)}" for f in factors)
    return (f"Robust: no assumed constant {moved} one at a time{joint} flips the verdict; sensitive: the constants "
            f"whose change flips it" + (f" ({legend}) and the verdict it then gets" if legend else "")
            + " (docs/sensitivity.md).")


def robustness_section(summary: Mapping, run_text: str, claims: Sequence[Mapping] = (),
                       kinds: Sequence[str] = ("claim", "learner", "headline")) -> str:
    """Which verdicts survive their assumptions (the sensitivity run's summary.json): per kind of verdict (the
    papers-vs-suite claims, what the learners add, each policy against the on-device baseline), the robust ones in
    one line and each sensitive one with the constants that flip it, the direction (x0.5 / x2) and the verdict it
    then gets; the verdicts the run did not measure are counted."""
    from bench.pipeline.robustness import robustness_table

    table = robustness_table(summary, claims)
    titles = {"claim": "Papers-vs-suite claims", "learner": "What the learners add",
              "headline": "Each policy against the on-device baseline (beats it or not)"}
    parts = [f"From the sensitivity run ({run_text.strip()}) {robust_means(summary)}"]
    for kind in kinds:
        g = table[(table["kind"] == kind) & (table["verdict"] != "")]
        if g.empty:
            continue
        assessed = g[g["robustness"] != "not assessed"]
        robust = assessed[assessed["robustness"] == "robust"]
        sensitive = assessed[assessed["robustness"] != "robust"]
        lines = [f"**{titles.get(kind, kind)}**: {len(robust)} of {len(assessed)} robust, {len(sensitive)} sensitive"
                 + (f", {len(g) - len(assessed)} not assessed (not measured by the run)" if len(g) > len(assessed)
                    else "") + "."]
        for r in sensitive.to_dict("records"):
            flips = r["flips (one at a time)"] or "only the joint sample"
            rate = r["joint-sample flip rate"]
            joint = f"; the joint sample flips it in {100 * rate:.0f}% of its worlds" if pd.notna(rate) else ""
            lines.append(f"- sensitive: {r['what']} ({r['verdict']}): {flips}{joint}")
        if len(robust):
            lines.append("- robust: " + "; ".join(f"{r['what']} ({r['verdict']})" for r in robust.to_dict("records")))
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def shown_figures(results_dir: Path, suites: Iterable[str]) -> list[tuple[str, Path, str]]:
    """(suite, figure file, caption) of every headline figure the report produced, suite by suite: its SVG when
    the report wrote one (print quality at a fraction of a 300 dpi PNG's size), else its PNG."""
    out = []
    for suite in sorted(suites):
        for stem in SHOWN_FIGURES:
            path = results_dir / "report" / f"{stem}_{suite}.png"
            if path.exists():  # README shows the SVG beside it: a 300 dpi PNG would weigh ~0.5 MB on every clone
                svg = path.with_suffix(".svg")
                out.append((suite, svg if svg.exists() else path, caption(stem, suite)))
    return out


def caption(stem: str, suite: str) -> str:
    """A headline figure's caption for one suite: the signal figure names what its x-axis shows (Wi-Fi signal
    strength for AutoScale's suites, uplink bandwidth for DVFO's; the report's SIGNAL_AXES knows which)."""
    from bench.pipeline.report import SIGNAL_AXES

    learner = next((name for name in SIGNAL_AXES if suite == name or suite.startswith(f"{name}_")), None)
    link = SIGNAL_AXES[learner][1].split(" (")[0] if learner else "the link condition"
    return SHOWN_FIGURES[stem].format(link=link)


def figures_section(shown: Sequence[tuple[str, Path, str]]) -> str:
    parts, last = [], None
    for suite, path, caption in shown:
        if suite != last:
            parts.append(f"**{suite}**")
            last = suite
        parts.append(f"![{suite}: {caption}](docs/figures/{path.name})")
    return "\n\n".join(parts)


def perf_section(perf: Mapping) -> str:
    rows = perf.get("table", [])
    if not rows:
        return "_run `python -m bench perf` to fill this section_"
    cols = list(rows[0])
    machine = perf.get("machine", {})
    load = [machine.get(k) for k in ("load_average_at_start", "load_average_at_end")]
    load_txt = "" if not all(load) else (
        f"; load average {load[0][0]:.1f} at the start and {load[1][0]:.1f} at the end"
        + (" (a machine shared with other jobs: timings are upper bounds)" if max(load[0][0], load[1][0])
           > machine.get("cores", 1) * 0.5 else ""))
    micro = perf.get("raw", {}).get("micro", {})
    cpu_timed = "timing" in micro.get("sim", {})  # runs since the CPU-time switch
    all_cpu = "clock_cost_us" in micro.get("autoscale_act", {})  # runs since act and training moved to CPU time
    timing = ("every row in CPU time where it can be (as each row states: simulator, gym steps, vector envs, act, "
              "training, sampler, bound); the rows where wall time is the point (the share of DVFO's decision "
              "hidden, the sweep engine's scaling) in wall time, upper bounds under load") if all_cpu else (
        "simulator, gym-step and vector-env rows in process CPU time (as each row states), the others "
        "median wall time over repeats") if cpu_timed else "median over repeats"
    again = machine.get("remeasured") or {}
    if again:  # entries measured again on later code (python -m bench perf --remeasure): say which, when, at what load
        by_when: dict[tuple, list[str]] = {}
        for name, w in again.items():
            load_w = [x[0] for x in (w.get("load_average_at_start"), w.get("load_average_at_end")) if x]
            # named only where it differs from the run's machine (records before round 9 carry no CPU)
            other = (w.get("cpu"), w.get("vector_isa")) != (machine.get("cpu"), machine.get("vector_isa"))
            on = f" on {w['cpu']} ({w.get('vector_isa') or '?'})" if w.get("cpu") and other else ""
            by_when.setdefault((w.get("date"), str(w.get("git_revision", "?"))[:12],
                                f"{min(load_w):.1f}-{max(load_w):.1f}" if load_w else "?", on), []).append(name)
        labels = {"sim": "simulator, gym-step and vector-env", "sampler": "sampler", "bound": "hindsight-bound",
                  "engine": "sweep-engine"}
        timing += "; " + "; ".join(f"the {', '.join(labels.get(n, n) for n in names)} rows measured again{on} on {d} at revision {rev} (load {ld}), "
                                   f"the other rows are the run's" for (d, rev, ld, on), names in by_when.items())
    isa = f"{machine['vector_isa']}, " if machine.get("vector_isa") else ""  # read from the machine at run time
    head = f"Measured on {machine.get('cpu', 'unknown CPU')} ({isa}{machine.get('cores', '?')} cores), " \
           f"{machine.get('date', '')}{load_txt}; {timing}; SB3 trained in the same run.\n\n"
    return head + markdown_table(rows, cols)


def calibration_section(summary: pd.DataFrame, orderings: pd.DataFrame) -> str:
    """The reference profiles' calibration error (``data/calibration/fit_summary.csv``) and target orderings."""
    def pct(x) -> str:
        return "—" if pd.isna(x) else f"{100 * float(x):.1f}%"

    rows = []
    for r in summary.itertuples():
        single = int(r.n_points) <= 1
        rows.append({"profile / target": f"{r.profile} {r.target}", "runtime": r.runtime, "points": int(r.n_points),
                     "in-sample": pct(r.in_sample_median_abs_err),
                     "LOO": pct(r.loo_median_abs_err) + (" (prior)" if single and int(r.n_points) else ""),
                     "LOO p90": "—" if single else pct(r.loo_p90_abs_err), "prior": pct(r.prior_median_abs_err)})
    matched = int(orderings["match"].sum()) if len(orderings) else 0
    tail = (f"\n\nTarget order per DNN measured on two or more targets of one device: the fitted profiles match "
            f"the measurements for {matched} of {len(orderings)} DNNs (`data/calibration/fit_orderings.csv`).")
    return markdown_table(rows, list(rows[0])) + tail if rows else "_run `python -m bench calibrate --write`_"


def robustness_block(results_dir: Path) -> str:
    """The README's robustness block from the sensitivity results the report shows (the stage's or the committed
    run's), or one line saying there are none."""
    from bench.pipeline.claims import load_claims
    from bench.pipeline.report import sensitivity_results

    folder, summary, text = sensitivity_results(results_dir)
    if folder is None:
        return f"_{text}_"
    return robustness_section(summary, text, load_claims())


def _family_inputs(results_dir: Path) -> tuple[dict, dict, tuple[float, float]]:
    """(yardstick per suite, split per suite, issue 23's target from params.yaml) for the per-family tables."""
    from bench.config import load_params

    yard_path, seen_path = results_dir / "evaluate" / "yardstick.json", results_dir / "evaluate" / "metrics_seen.json"
    yard = json.loads(yard_path.read_text()) if yard_path.exists() else {}
    splits = ({s: v.get("split", {}) for s, v in json.loads(seen_path.read_text()).items()}
              if seen_path.exists() else {})
    ev = load_params().evaluate
    return yard, splits, (float(ev.capture_target), float(ev.capture_target_headroom))


def splice(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"README.md lacks the markers {start} ... {end}")
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{body}\n{end}{after}"


def metrics_file(results_dir: Path) -> Path:
    """The headline with confidence intervals, written by the evaluate stage."""
    return results_dir / "evaluate" / "metrics_overall.json"


def render(text: str, results_dir: Path = RESULTS_DIR) -> tuple[str, list[Path]]:
    metrics_path = metrics_file(results_dir)
    claims_path = results_dir / "report" / "papers_vs_suite.csv"
    perf_path = results_dir / "perf.json"
    figs, suites = [], []
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        suites = list(metrics)
        seen_path = results_dir / "evaluate" / "metrics_seen.json"
        splits = {s: v.get("split", {}) for s, v in json.loads(seen_path.read_text()).items()} \
            if seen_path.exists() else {}
        yard_path = results_dir / "evaluate" / "yardstick.json"
        yard = json.loads(yard_path.read_text()) if yard_path.exists() else {}
        if "<!-- results:start -->" in text:
            text = splice(text, "results", results_section(metrics, splits, yard))
    adds_path, notes_path = results_dir / "report" / "what_learners_add.csv", results_dir / "report" / "learner_notes.md"
    if adds_path.exists() and notes_path.exists() and "<!-- learners:start -->" in text:
        text = splice(text, "learners", learners_section(pd.read_csv(adds_path), notes_path.read_text(),
                                                         *_family_inputs(results_dir)))
    if claims_path.exists() and "<!-- claims:start -->" in text:
        text = splice(text, "claims", claims_section(pd.read_csv(claims_path)))
    if "<!-- robustness:start -->" in text:
        text = splice(text, "robustness", robustness_block(results_dir))
    shown = shown_figures(results_dir, suites)
    if shown and "<!-- figures:start -->" in text:
        text = splice(text, "figures", figures_section(shown))
        figs = [path for _, path, _ in shown]
    if perf_path.exists() and "<!-- perf:start -->" in text:
        text = splice(text, "perf", perf_section(json.loads(perf_path.read_text())))
    cal = REPO_ROOT / "data" / "calibration"
    if (cal / "fit_summary.csv").exists() and "<!-- calibration:start -->" in text:
        text = splice(text, "calibration", calibration_section(pd.read_csv(cal / "fit_summary.csv"),
                                                                pd.read_csv(cal / "fit_orderings.csv")))
    return text, figs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench readme", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    parser.add_argument("--results", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    results = Path(args.results)
    if not metrics_file(results).exists():
        print(f"error: no {metrics_file(results)}: run `make repro` (dvc repro) first", file=sys.stderr)
        return 2
    old = README.read_text()
    docs = {path: path.read_text() for path in GENERATED_DOCS if path.exists()}
    try:
        new, figs = render(old, results)
        new_docs = {path: render(text, results)[0] for path, text in docs.items()}
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        # --results names a folder whose files are not what the pipeline writes (hand-edited, truncated, another
        # tool's): one line, nothing written; BENCH_TRACEBACK=1 shows where the rendering stopped
        if os.environ.get("BENCH_TRACEBACK") == "1":
            raise
        print(f"error: --results {results}: its files are not the pipeline's outputs ({type(exc).__name__}: "
              f"{' '.join(str(exc).split())[:160]}); allowed: a results/ folder `make repro` wrote", file=sys.stderr)
        return 2
    stale = [f for f in figs if not (FIGURES / f.name).exists() or (FIGURES / f.name).read_bytes() != f.read_bytes()]
    if args.check:
        if new != old or stale or any(new_docs[p] != docs[p] for p in docs):
            print("README.md (or docs/performance.md, docs/calibration.md) is out of date with results/: "
                  "run `python -m bench readme`", file=sys.stderr)
            return 1
        print("README.md is up to date")
        return 0
    for path, text in new_docs.items():
        if text != docs[path]:
            atomic_write_text(path, text)  # a crash mid-write keeps the old file whole
    FIGURES.mkdir(parents=True, exist_ok=True)
    for f in figs:
        shutil.copyfile(f, FIGURES / f.name)
    for old_fig in [*FIGURES.glob("*.png"), *FIGURES.glob("*.svg")]:  # figures the README no longer shows
        if figs and old_fig.name not in {f.name for f in figs}:
            old_fig.unlink()
    atomic_write_text(README, new)
    print(f"refreshed README.md ({len(figs)} figures in {FIGURES.relative_to(REPO_ROOT)})")
    return 0
