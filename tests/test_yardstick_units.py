"""Headroom, headroom captured and families on hand-made tables (no simulator): the arithmetic of issue 21."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.pipeline import yardstick
from bench.sim.objective import Objective

OBJ = Objective(100.0)


def _results(rows):
    """rows: (policy, scenario, seed, [energy...], [ok...])."""
    out = []
    for pol, sc, seed, es, oks in rows:
        for step, (e, ok) in enumerate(zip(es, oks)):
            out.append({"suite": "s", "policy": pol, "scenario": sc, "seed": seed, "step": step, "energy_mj": e,
                        "qos_ok": ok})
    return pd.DataFrame(out)


def _bounds(cells):
    return pd.DataFrame([{"suite": "s", "scenario": sc, "seed": seed, "n": n, "lower_qos_first_mj": lo,
                          "upper_qos_first_mj": up, "lower_lagrangian": lo, "upper_lagrangian": up}
                         for sc, seed, n, lo, up in cells])


@pytest.fixture
def tables():
    res = _results([
        ("best_static_dnn", "calm", 1, [10, 10], [True, True]), ("best_static_dnn", "calm", 2, [10, 10], [True, True]),
        ("best_static_dnn", "edge", 1, [50, 50], [True, False]), ("best_static_dnn", "edge", 2, [50, 50], [True, True]),
        ("distilled", "calm", 1, [10, 10], [True, True]), ("distilled", "calm", 2, [10, 10], [True, True]),
        ("distilled", "edge", 1, [40, 40], [True, True]), ("distilled", "edge", 2, [40, 40], [True, True]),
        ("autoscale", "calm", 1, [11, 11], [True, True]), ("autoscale", "calm", 2, [11, 11], [True, True]),
        ("autoscale", "edge", 1, [30, 30], [True, True]), ("autoscale", "edge", 2, [30, 30], [True, True]),
    ])
    bounds = _bounds([("calm", 1, 2, 19.8, 20.0), ("calm", 2, 2, 19.8, 20.0),
                      ("edge", 1, 2, 40.0, 60.0), ("edge", 2, 2, 40.0, 60.0)])
    return res, bounds


def test_headroom_marks_a_scenario_without_room(tables):
    res, bounds = tables
    h = yardstick.headroom_table(res, bounds, OBJ, threshold=0.05).set_index("scenario")
    assert h.loc["calm", "headroom"] == pytest.approx(1 - 9.9 / 10)  # 1 %: no room
    assert h.loc["calm", "room"] == "none"  # even the certified bound leaves < 5 %
    assert h.loc["edge", "room"] == "room"  # the best schedule found already gains >= 5 %
    # edge: static J = (50*4 + 100 * 1 miss) / 4 = 75; bound 20 per request
    assert h.loc["edge", "j_best_static_dnn_mj"] == pytest.approx(75.0)
    assert h.loc["edge", "headroom"] == pytest.approx(1 - 20 / 75)
    assert h.loc["edge", "headroom_found"] == pytest.approx(1 - 30 / 75)
    assert h.loc["edge", "e_distilled_mj"] == pytest.approx(40.0)
    # the bracket's looseness, (found - bound) / found, on the objective and on the QoS-first energies
    assert h.loc["edge", "bracket_gap"] == pytest.approx((30 - 20) / 30)
    assert h.loc["calm", "bracket_gap_qos_first"] == pytest.approx((10 - 9.9) / 10)


def test_a_loose_bound_leaves_room_undetermined(tables):
    res, _ = tables
    # edge: static J 75 per request; the bound says 20 (73 % headroom) but the best found only 74 (1.3 %)
    bounds = _bounds([("calm", 1, 2, 19.8, 20.0), ("calm", 2, 2, 19.8, 20.0),
                      ("edge", 1, 2, 40.0, 148.0), ("edge", 2, 2, 40.0, 148.0)])
    h = yardstick.headroom_table(res, bounds, OBJ, threshold=0.05).set_index("scenario")
    assert h.loc["edge", "room"] == "undetermined"
    # still ranked (only "none" is left out), and captured is reported against both ends
    cap = yardstick.headroom_captured(res, bounds, h.reset_index(), OBJ, n_boot=50, seed=0)["s"]["autoscale"]
    assert cap["scenarios_with_room"] == ["edge"]
    assert cap["overall"]["mean"] == pytest.approx((300 - 120) / (300 - 80))
    assert cap["overall_found"]["mean"] == pytest.approx((300 - 120) / (300 - 296))


@given(st.floats(-1, 1), st.floats(0, 1), st.floats(0.001, 0.5))
def test_the_room_flag_reads_both_ends(found, extra, threshold):
    bound = found + extra  # the certified bound's headroom is never below the best found's
    flag = yardstick.room_flag(bound, found, threshold)
    assert flag in ("room", "none", "undetermined")
    assert (flag == "room") == (found >= threshold)
    assert (flag == "none") == (bound < threshold)
    assert yardstick.is_ranked(flag) == (flag != "none") and yardstick.no_room(flag) == (flag == "none")
    assert yardstick.room_flag(float("nan"), found, threshold) is None


def test_headroom_captured_ranks_only_scenarios_with_room(tables):
    res, bounds = tables
    h = yardstick.headroom_table(res, bounds, OBJ, threshold=0.05)
    cap = yardstick.headroom_captured(res, bounds, h, OBJ, n_boot=50, seed=0)["s"]["autoscale"]
    assert cap["scenarios_with_room"] == ["edge"]
    # (300 - 120) / (300 - 80): static J over both edge cells 200 + 100, learner 120, bound 80
    assert cap["overall"]["mean"] == pytest.approx((300 - 120) / (300 - 80))
    assert cap["overall"]["ci_low"] <= cap["overall"]["mean"] <= cap["overall"]["ci_high"]
    # against the best schedule found (120 over the edge cells): the optimistic end of the bracket
    assert cap["overall_found"]["mean"] == pytest.approx((300 - 120) / (300 - 120))
    assert cap["overall"]["mean"] <= cap["overall_found"]["mean"]
    assert cap["by_scenario_found"] == {"edge": pytest.approx(1.0)}


def test_unknown_room_without_the_static_reference(tables):
    res, bounds = tables
    h = yardstick.headroom_table(res[res.policy != "best_static_dnn"], bounds, OBJ)
    assert h["room"].isna().all() or all(r is None for r in h["room"])


def test_families_pool_their_scenarios(tables, monkeypatch):
    res, bounds = tables
    monkeypatch.setattr(yardstick, "_families", lambda names: {n: "all" for n in names})
    h = yardstick.headroom_table(res, bounds, OBJ, family=True)
    assert list(h["family"]) == ["all"] and h["requests"].iloc[0] == 8
    assert h["j_bound_mj"].iloc[0] == pytest.approx((19.8 * 2 + 40 * 2) / 8)


def test_a_suite_without_room_does_not_rank_its_learner():
    from bench.pipeline import claims

    ci = lambda m: {"mean": m, "ci_low": m, "ci_high": m}  # noqa: E731
    m = {"j": {"overall": {"dvfo": {"energy_mj": ci(110.0), "qos_violation_rate": ci(0.0),
                                    "efficiency_vs_distilled": ci(0.9)},
                           "distilled": {"energy_mj": ci(100.0), "qos_violation_rate": ci(0.0)}},
               "split": {"heldout": ["a"]},
               "yardstick": {"headroom": [{"scenario": "a", "room": "none"}, {"scenario": "b", "room": "room"}]}}}
    t = claims.what_learners_add(m)
    assert set(t.learner_better) == {"no room for learning"}
    assert "not ranked" in claims.learner_notes(t)[0]
    for flag in ("undetermined", "room"):
        m["j"]["yardstick"]["headroom"][0]["room"] = flag
        assert set(claims.what_learners_add(m).learner_better) == {"no"}
    # a yardstick.json written before the two-ended flag (booleans) still reads
    m["j"]["yardstick"]["headroom"][0]["room"] = False
    assert set(claims.what_learners_add(m).learner_better) == {"no room for learning"}


def test_the_report_table_reads_old_and_new_yardsticks(tables):
    from bench.pipeline import claims, report

    res, bounds = tables
    h = yardstick.headroom_table(res, bounds, OBJ, threshold=0.05)
    new = {"s": {"overall": {}, "yardstick": {"threshold": 0.05, "headroom": h.to_dict("records")}}}
    t = claims.headroom_bracket(new).set_index("scenario")
    assert t.loc["edge", "room"] == "room" and t.loc["calm", "room"] == "none"
    assert t.loc["edge", "bracket_gap"] == pytest.approx((30 - 20) / 30)
    assert t.loc["edge", "headroom_from_bound"] >= t.loc["edge", "headroom_found"]
    # a yardstick.json written before the two-ended flag: booleans, no bracket gap; read from both headrooms
    old = [{k: v for k, v in r.items() if k not in ("bracket_gap", "bracket_gap_qos_first")} for r in h.to_dict("records")]
    old[0]["room"], old[1]["room"] = False, True
    t_old = claims.headroom_bracket({"s": {"yardstick": {"threshold": 0.05, "headroom": old}}}).set_index("scenario")
    assert t_old["room"].to_dict() == t["room"].to_dict()
    assert t_old.loc["edge", "bracket_gap"] == pytest.approx(t.loc["edge", "bracket_gap"])
    titles = report.baseline_tables(new, res)
    assert any("both ends of the bracket" in k for k in titles)


def test_family_captured_gives_each_policy_its_share_with_a_ci(tables):
    res, bounds = tables  # each scenario its own family (a name no scenario file defines)
    rows = {r["family"]: r for r in yardstick.family_captured(res, bounds, OBJ, 0.05, n_boot=200, seed=0)}
    assert set(rows) == {"calm", "edge"} and rows["edge"]["scenarios"] == ["edge"] and rows["edge"]["cells"] == 2
    assert rows["calm"]["room"] == "none" and rows["edge"]["room"] == "room"
    edge = rows["edge"]
    # static 300 over the two edge cells, bound 80, best found 120; autoscale 120, distilled 160
    assert edge["headroom"]["mean"] == pytest.approx(1 - 80 / 300)
    assert edge["headroom_found"]["mean"] == pytest.approx(1 - 120 / 300)
    auto, dist = edge["captured"]["autoscale"], edge["captured"]["distilled"]
    assert auto["bound"]["mean"] == pytest.approx((300 - 120) / (300 - 80))
    assert auto["found"]["mean"] == pytest.approx(1.0)
    assert dist["bound"]["mean"] == pytest.approx((300 - 160) / (300 - 80))
    assert auto["vs_distilled"]["mean"] == pytest.approx(120 / 160 - 1)
    assert "vs_distilled" not in dist  # the rule is the reference, not compared with itself
    for o in (edge["headroom"], edge["headroom_found"], auto["bound"], dist["found"], auto["vs_distilled"]):
        assert o["ci_low"] <= o["mean"] + 1e-12 and o["mean"] <= o["ci_high"] + 1e-12
    # the same numbers as the per-scenario headroom table, pooled the same way
    h = yardstick.headroom_table(res, bounds, OBJ, threshold=0.05).set_index("scenario")
    assert edge["headroom"]["mean"] == pytest.approx(h.loc["edge", "headroom"])


def test_yardstick_metrics_carry_the_distilled_rule_and_the_families(tables):
    res, bounds = tables
    entry = {"overall": {"autoscale": {}, "distilled": {}}, "split": {"heldout": ["calm", "edge"]}}
    yardstick.yardstick_metrics(entry, res, bounds, OBJ.violation_cost_mj, 0.05, 50, 0)
    yard = entry["yardstick"]
    assert {"autoscale", "distilled"} <= set(yard["headroom_captured"]["headline"])
    assert {r["family"] for r in yard["by_family"]["headline"]} == {"calm", "edge"}
    # the learner's headline entry gets its share; the rule's stays as it was (metrics.json: learners only)
    assert "headroom_captured" in entry["overall"]["autoscale"] and "headroom_captured" not in entry["overall"]["distilled"]
