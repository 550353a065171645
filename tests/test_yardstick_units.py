"""Headroom, headroom captured and families on hand-made tables (no simulator): the arithmetic of issue 21."""

from __future__ import annotations

import pandas as pd
import pytest

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
    assert h.loc["calm", "room"] is False or h.loc["calm", "room"] == False  # noqa: E712
    # edge: static J = (50*4 + 100 * 1 miss) / 4 = 75; bound 20 per request
    assert h.loc["edge", "j_best_static_dnn_mj"] == pytest.approx(75.0)
    assert h.loc["edge", "headroom"] == pytest.approx(1 - 20 / 75)
    assert h.loc["edge", "headroom_found"] == pytest.approx(1 - 30 / 75)
    assert h.loc["edge", "e_distilled_mj"] == pytest.approx(40.0)


def test_headroom_captured_ranks_only_scenarios_with_room(tables):
    res, bounds = tables
    h = yardstick.headroom_table(res, bounds, OBJ, threshold=0.05)
    cap = yardstick.headroom_captured(res, bounds, h, OBJ, n_boot=50, seed=0)["s"]["autoscale"]
    assert cap["scenarios_with_room"] == ["edge"]
    # (300 - 120) / (300 - 80): static J over both edge cells 200 + 100, learner 120, bound 80
    assert cap["overall"]["mean"] == pytest.approx((300 - 120) / (300 - 80))
    assert cap["overall"]["ci_low"] <= cap["overall"]["mean"] <= cap["overall"]["ci_high"]


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
               "yardstick": {"headroom": [{"scenario": "a", "room": False}, {"scenario": "b", "room": True}]}}}
    t = claims.what_learners_add(m)
    assert set(t.learner_better) == {"no room for learning"}
    assert "not ranked" in claims.learner_notes(t)[0]
    m["j"]["yardstick"]["headroom"][0]["room"] = True
    assert set(claims.what_learners_add(m).learner_better) == {"no"}
