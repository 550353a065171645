"""README's per-family headroom tables (issue 23): every number read from yardstick.json's ``by_family``; a family
without room to learn is never ranked; the families where the learner misses the target or loses to the distilled
rule beyond the CI are named (hand-made yardsticks, no simulator)."""

from __future__ import annotations

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pipeline import readme
from bench.pipeline.breakdown import room_flag

TARGET = (0.70, 0.10)


def ci(mean, half=0.02):
    return {"mean": mean, "ci_low": None if mean is None else mean - half,
            "ci_high": None if mean is None else mean + half}


def family(name, headroom, found, learner_share, rule_share, vs_rule, threshold=0.05):
    """A by_family row as yardstick.family_captured writes it (shares vs the best found: undefined at or below 0)."""
    vs_found = lambda share: share * headroom / found if found > 0 else None  # noqa: E731
    return {"family": name, "scenarios": [f"heldout_{name}"], "cells": 5, "headroom": ci(headroom),
            "headroom_found": ci(found), "room": room_flag(headroom, found, threshold),
            "captured": {"dvfo": {"bound": ci(learner_share), "found": ci(vs_found(learner_share)),
                                  "vs_distilled": ci(vs_rule)},
                         "distilled": {"bound": ci(rule_share), "found": ci(vs_found(rule_share))}}}


def yard(rows, threshold=0.05):
    return {"threshold": threshold, "by_family": {"headline": rows}}


def test_a_family_without_room_says_so_instead_of_a_ranking():
    rows = [family("camera", 0.30, 0.25, 0.40, 0.80, 0.20),  # room; misses 70 %, worse than the rule
            family("flat", 0.03, 0.02, -5.0, 0.10, 0.50),  # no room: a bad share and a worse objective, not ranked
            family("trace", 0.20, 0.18, 0.90, 0.50, -0.10)]  # room; meets the target, better than the rule
    text = readme.family_section("dvfo_phone", yard(rows), {"heldout": ["x"]}, TARGET)
    table = [line for line in text.splitlines() if line.startswith("| flat")]
    assert len(table) == 1 and table[0].count(readme.NO_ROOM_TEXT) == 3  # dvfo, distilled, dvfo vs distilled
    assert "-500%" not in text and "+50.0%" not in text  # the no-room family's numbers are not shown as a ranking
    verdict = text.split("\n\n")[-1]
    misses, worse = verdict.split("misses the target")[1].split("worse than")
    assert "camera" in misses and "flat" not in misses and "meets it on trace" in misses
    assert "camera" in worse.split("no room")[0] and "flat" not in worse.split("no room")[0]
    assert f"{readme.NO_ROOM_TEXT} (not ranked): flat (heldout_flat)" in verdict
    assert "per held-out family" in text and "40% [38, 42] / 48% [46, 50]" in text  # share vs lower end / found


def test_the_target_applies_only_where_the_headroom_reaches_it():
    rows = [family("small", 0.08, 0.06, 0.30, 0.30, 0.0)]  # room (>= 5 %) but headroom below 10 %
    v = readme.family_verdicts(rows, "dvfo", TARGET)
    assert v["misses"] == [] and v["meets"] == [] and v["no_room"] == []
    text = readme.family_section("s", yard(rows), {}, TARGET)
    assert "misses the target" in text and "on no family" in text and "per family" in text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.5, 0.9), st.floats(0, 0.5), st.floats(-3, 2), st.floats(-3, 2),
                          st.floats(-0.5, 0.5)), min_size=1, max_size=6),
       st.floats(0.01, 0.3))
def test_no_room_family_is_never_ranked(specs, threshold):
    """Whatever the numbers: a family flagged "none" (headroom from the certified lower end below the threshold)
    shows "no room to learn" in every ranking column and is named in no verdict but "no room"."""
    rows = [family(f"f{i}", h + extra, h, share, rule, vs, threshold)
            for i, (h, extra, share, rule, vs) in enumerate(specs)]
    v = readme.family_verdicts(rows, "dvfo", TARGET)
    none = {r["family"] for r in rows if r["room"] == "none"}
    assert {r["family"] for r in v["no_room"]} == none
    for key in ("misses", "meets", "worse"):
        assert not none & {r["family"] for r in v[key]}, key
    text = readme.family_section("s", yard(rows, threshold), {"heldout": ["x"]}, TARGET)
    for r in rows:
        line = next(line for line in text.splitlines() if line.startswith(f"| {readme.family_label(r)} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert (cells[3:] == [readme.NO_ROOM_TEXT] * 3) == (r["room"] == "none"), line


def test_learners_section_appends_a_table_per_suite():
    adds = pd.DataFrame([{"suite": "s", "learner": "dvfo", "reference": "distilled", "learner_energy_mj": 1.0,
                          "reference_energy_mj": 2.0, "learner_saving": 0.5, "learner_saving_ci": "(0.4, 0.6)",
                          "learner_better": "yes", "single_scenario": ""}])
    rows = [family("camera", 0.30, 0.25, 0.40, 0.80, 0.20)]
    text = readme.learners_section(adds, "notes", {"s": yard(rows), "t": {}}, {"s": {"heldout": ["a"]}}, TARGET)
    assert text.startswith("notes") and text.index("| suite |") < text.index("**s, per held-out family**")
    assert "**t, per" not in text  # a suite without families adds nothing
    assert readme.learners_section(adds, "notes") == readme.learners_section(adds, "notes", {}, {}, TARGET)
