"""Training, evaluation, claims and README refresh: determinism and derived numbers."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from bench.pipeline import claims, demo, evaluate, readme, training
from bench.seeding import derive_seed, derive_seeds


# ----------------------------------------------------------------------------- seeding
def test_seeds_fan_out_by_purpose():
    assert derive_seed(7, "train", "a") == derive_seed(7, "train", "a")
    assert derive_seed(7, "train", "a") != derive_seed(7, "train", "b") != derive_seed(8, "train", "b")
    ev = derive_seeds(7, 5, "evaluate", "suite")
    assert len(set(ev)) == 5 and derive_seed(7, "train", "suite") not in ev
    assert all(0 <= s < 2**31 for s in ev)


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return demo.ci_train(tmp_path_factory.mktemp("train"), seed=11)


def test_train_run_writes_safe_artefacts_and_derives_its_seed(trained):
    for run, (learner, profile, _) in demo.CI_RUNS.items():
        info = json.loads((trained / run / "train.json").read_text())
        assert info["learner"] == learner and info["profile"] == profile
        assert info["config"]["seed"] == derive_seed(11, "train", run)
        assert info["config"]["edge"] == profile
        files = {p.suffix for p in (trained / run / "policy").iterdir()}
        assert files <= {".npz", ".json", ".safetensors"}, files  # never pickle
    with np.load(next((trained / "autoscale_phone" / "policy").glob("*.npz")), allow_pickle=False) as z:
        assert len(z.files) > 0


def test_same_seed_same_bytes(trained, tmp_path):
    learner, profile, cfg = demo.CI_RUNS["autoscale_phone"]
    training.train_run("autoscale_phone", learner, profile, cfg, 11, tmp_path / "again")
    assert (tmp_path / "again" / "curve.csv").read_bytes() == (trained / "autoscale_phone" / "curve.csv").read_bytes()
    assert (tmp_path / "again" / "train.json").read_bytes() == (trained / "autoscale_phone" / "train.json").read_bytes()


def test_unknown_learner():
    with pytest.raises(ValueError, match="allowed"):
        training.make_config("ppo", "phone_sd845", {}, 0, "x")


# ----------------------------------------------------------------------------- evaluation
def _cells(trained, steps=40, seeds=2):
    s = demo.CI_SUITES["autoscale_phone"]
    return evaluate.suite_cells("autoscale_phone", trained / "autoscale_phone", ["cpu_only", "oracle"],
                                ["wifi_strong"], seeds, steps, root_seed=5)


def test_suite_cells_put_the_learner_first_with_its_artefact(trained):
    cells = _cells(trained)
    assert cells[0].policy == "autoscale" and cells[0].artefact.endswith("policy")
    assert {c.policy for c in cells} == {"autoscale", "cpu_only", "oracle"}
    assert all(c.artefact == "" for c in cells if c.policy != "autoscale")
    assert sorted({c.seed for c in cells}) == sorted(derive_seeds(5, 2, "evaluate", "autoscale_phone"))


def test_cells_are_pure_and_order_free(trained):
    cells = _cells(trained)
    serial = evaluate.run_cells(cells, workers=1, progress=False)
    parallel = evaluate.run_cells(cells, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial, parallel)
    assert len(serial) == len(cells) * 40


def test_feature_importance_of_the_suites_in_workers_equals_suite_by_suite(trained):
    """One task per suite on two worker processes: the table the serial loop wrote, row for row; torch's
    thread count is restored after each suite (the tasks set one thread for their forward passes)."""
    import torch

    threads = torch.get_num_threads()
    tasks = [(name, trained / s["run"], s["scenarios"][:1], 1, 20, 5) for name, s in demo.CI_SUITES.items()]
    serial = pd.concat([evaluate.feature_importance(*t) for t in tasks], ignore_index=True)
    assert torch.get_num_threads() == threads
    parallel = evaluate.feature_importances(tasks, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(dict.fromkeys(parallel["suite"])) == list(demo.CI_SUITES)
    assert (parallel.groupby("suite")["rank"].min() == 1).all()


def test_oracle_never_uses_more_energy_than_cpu_only_when_both_meet_qos(trained):
    res = evaluate.run_cells(_cells(trained), workers=1, progress=False)
    wide = res.pivot_table(index=["seed", "step"], columns="policy", values="energy_mj")
    ok = res.pivot_table(index=["seed", "step"], columns="policy", values="qos_ok")
    both = (ok["oracle"] > 0) & (ok["cpu_only"] > 0)
    assert (wide["oracle"][both] <= wide["cpu_only"][both] + 1e-9).all()


def test_metrics_report_ratios_against_the_named_baselines(trained):
    res = evaluate.run_cells(_cells(trained), workers=1, progress=False)
    m = evaluate.metrics(res, n_boot=50, seed=0)["autoscale_phone"]["overall"]
    e = res.groupby("policy").energy_mj.mean()
    assert m["autoscale"]["efficiency_vs_cpu_only"]["mean"] == pytest.approx(e["cpu_only"] / e["autoscale"], rel=1e-5)
    assert m["oracle"]["gap_to_greedy_oracle"]["mean"] == pytest.approx(0.0)


def test_fitted_baselines_are_fitted_on_the_evaluation_traces_or_the_training_scenarios(trained):
    cells = evaluate.suite_cells("autoscale_phone", trained / "autoscale_phone",
                                 ["best_static_dnn", "distilled", "cpu_only"], ["wifi_strong", "wifi_weak"], 2, 30,
                                 root_seed=5)
    kw = {c.policy: json.loads(c.policy_kwargs_json or "{}") for c in cells}
    eval_seeds = derive_seeds(5, 2, "evaluate", "autoscale_phone")
    assert kw["best_static_dnn"] == {"fit_scenarios": ["wifi_strong", "wifi_weak"], "fit_seeds": eval_seeds,
                                     "n_steps": 30}
    info = json.loads((trained / "autoscale_phone" / "train.json").read_text())
    assert kw["distilled"]["train_scenarios"] == info["config"]["scenarios"]
    assert not set(kw["distilled"]["train_seeds"]) & set(eval_seeds)  # never the evaluation's seeds
    assert kw["cpu_only"] == {}
    # one fit per suite: every cell of a fitted baseline carries the same arguments
    assert len({c.policy_kwargs_json for c in cells if c.policy == "best_static_dnn"}) == 1
    res = evaluate.run_cells([c for c in cells if c.scenario == "wifi_weak"], workers=1, progress=False)
    assert set(res.policy) == {"autoscale", "best_static_dnn", "distilled", "cpu_only"}
    static = res[res.policy == "best_static_dnn"]
    assert (static.groupby("workload")["action"].nunique() == 1).all()


# ----------------------------------------------------------------------------- claims and README
def _ci(v, lo=None, hi=None):
    return {"mean": v, "ci_low": v if lo is None else lo, "ci_high": v if hi is None else hi}


def _claim(**kw):
    base = {"id": "x", "paper": "P", "claim": "c", "value": 1.0, "unit": "x", "source": "s", "suite": "s",
            "policy": "learner", "baseline": "base", "metric": "efficiency", "why": "the reason"}
    return {**base, **kw}


def test_verdict_is_consistent_only_inside_the_ci_and_close_within_ten_percent():
    c = _claim(value=9.8)
    assert claims.verdict(c, 9.0, 8.5, 10.0) == "consistent"
    assert claims.verdict(c, 8.5, 8.0, 9.5) == "close"  # 9.8 is 0.3 above the CI, within 0.98
    assert claims.verdict(c, 5.0, 4.0, 6.0) == "differs"
    assert claims.verdict(c, 9.8, float("nan"), float("nan")) == "consistent"  # no CI: the point itself
    rng = _claim(value=[0.286, 0.591])
    assert claims.verdict(rng, 0.2, 0.1, 0.3) == "consistent" and claims.verdict(rng, 0.2, 0.1, 0.26) == "close"
    assert claims.verdict(rng, -0.1, -0.2, 0.0) == "differs"
    bound = _claim(value=0.01, bound="at most")
    assert claims.verdict(bound, 0.001, 0.0, 0.005) == "consistent"
    assert claims.verdict(bound, 0.01, 0.005, 0.02) == "close" and claims.verdict(bound, 0.05, 0.04, 0.06) == "differs"
    direction = _claim(value=None)
    assert claims.verdict(direction, 1.2, 1.1, 1.3) == "consistent"
    assert claims.verdict(direction, 1.0, 0.9, 1.1) == "close" and claims.verdict(direction, 0.8, 0.7, 0.9) == "differs"
    assert claims.verdict(c, float("nan"), float("nan"), float("nan")) == "not measured"


def test_papers_vs_suite_has_one_row_per_claim_and_baseline_never_an_average():
    m = {"s": {"overall": {"learner": {"efficiency_vs_a": _ci(2.0, 1.8, 2.2), "efficiency_vs_b": _ci(1.25, 1.2, 1.3)},
                           "a": {}, "b": {}},
               "by_scenario": {"sc": {"learner": {"efficiency_vs_a": _ci(1.5, 1.4, 1.6)}, "a": {}}}}}
    rows = [_claim(id="a", baseline="a", metric="energy_reduction", value=0.5),
            _claim(id="b", baseline="b", metric="energy_reduction", value=0.5),
            _claim(id="a_sc", baseline="a", metric="energy_reduction", value=0.33, scenario="sc"),
            _claim(id="gone", baseline="zzz", metric="efficiency", value=2.0)]
    t = claims.papers_vs_suite(m, claims=rows).set_index(pd.Index(["a", "b", "a_sc", "gone"]))
    assert t.loc["a", "suite_mean"] == pytest.approx(0.5) and t.loc["a", "verdict"] == "consistent"
    assert t.loc["a", "ci_low"] == pytest.approx(1 - 1 / 1.8) and t.loc["a", "ci_high"] == pytest.approx(1 - 1 / 2.2)
    assert t.loc["b", "suite_mean"] == pytest.approx(0.2) and t.loc["b", "verdict"] == "differs"
    assert "suite below the paper: the reason" == t.loc["b", "why they differ"]
    assert t.loc["a_sc", "suite_mean"] == pytest.approx(1 - 1 / 1.5) and t.loc["a_sc", "scenario"] == "sc"
    assert t.loc["gone", "verdict"] == "not measured" and "zzz" in t.loc["gone", "why they differ"]
    assert t.loc["a", "why they differ"] == ""


def test_latency_and_accuracy_rows_get_paired_cis_from_the_results_table():
    rows = []
    for seed in range(6):
        for pol, lat in (("learner", 60.0), ("base", 100.0)):
            for step in range(10):
                rows.append({"suite": "s", "policy": pol, "scenario": "sc", "seed": seed, "step": step,
                             "latency_ms": lat * (1 + 0.1 * seed), "accuracy": 0.7 if pol == "base" else 0.695,
                             "energy_mj": 1.0, "qos_ok": True})
    res = pd.DataFrame(rows)
    m = {"s": {"overall": {"learner": {"latency_p50_ms": 1.0}, "base": {"latency_p50_ms": 1.0}}}}
    lat = _claim(metric="latency_reduction", value=[0.286, 0.591])
    acc = _claim(metric="accuracy_loss", value=0.01, bound="at most")
    p, lo, hi, how = claims.suite_interval(m, lat, res, n_boot=200, seed=0)
    assert p == pytest.approx(0.4) and lo == pytest.approx(0.4) and hi == pytest.approx(0.4)  # paired: same ratio
    assert "paired" in how
    p, lo, hi, _ = claims.suite_interval(m, acc, res, n_boot=200, seed=0)
    assert p == pytest.approx(0.005)
    assert claims.verdict(acc, p, lo, hi) == "consistent"


def test_shipped_claims_are_per_baseline_and_include_the_reviewers_rows():
    rows = claims.load_claims()
    pairs = {(c["policy"], c["baseline"]) for c in rows}
    assert {("autoscale", "best_static_dnn"), ("dvfo", "drldo"), ("dvfo", "appealnet")} <= pairs
    assert all(c["baseline"] for c in rows)


def test_load_claims_names_the_entry_and_the_bad_key(tmp_path):
    bad = tmp_path / "claims.yaml"
    bad.write_text("- {id: a, paper: P, claim: c, value: 1, unit: x, source: s, suite: s, policy: p, baseline: b, "
                   "metric: average, why: w}\n")
    with pytest.raises(ValueError, match=r"\[0\] \(a\): metric = 'average'; allowed"):
        claims.load_claims(bad)


def test_what_learners_add_compares_with_statics_the_distilled_rule_and_the_oracle():
    m = {"s": {"overall": {
        "autoscale": {"energy_mj": _ci(100.0, 95, 105), "qos_violation_rate": _ci(0.01),
                      "efficiency_vs_best_static_dnn": _ci(1.25, 1.1, 1.4), "efficiency_vs_distilled": _ci(0.9, 0.8, 0.95),
                      "gap_to_oracle": _ci(0.05, 0.02, 0.08)},
        "best_static_dnn": {"energy_mj": _ci(125.0), "qos_violation_rate": _ci(0.0)},
        "distilled": {"energy_mj": _ci(90.0), "qos_violation_rate": _ci(0.02)},
        "oracle": {"energy_mj": _ci(95.0), "qos_violation_rate": _ci(0.0)}}}}
    t = claims.what_learners_add(m).set_index("reference")
    assert list(t.index) == ["best_static_dnn", "distilled", "oracle"]
    assert t.loc["best_static_dnn", "learner_saving"] == pytest.approx(0.2) and t.loc["best_static_dnn", "learner_better"] == "yes"
    assert t.loc["distilled", "learner_better"] == "no" and t.loc["oracle", "learner_saving"] == pytest.approx(-0.05)
    notes = claims.learner_notes(claims.what_learners_add(m))
    assert len(notes) == 1 and "uses more energy than the distilled depth-3 rule" in notes[0]
    assert "+5.0% [+2.0%, +8.0%] energy vs the greedy oracle" in notes[0]


def test_readme_refresh_splices_generated_sections(tmp_path, monkeypatch):
    results = tmp_path / "results"
    (results / "report").mkdir(parents=True)
    (results / "evaluate").mkdir(parents=True)
    metrics = {"s": {"autoscale": {"energy_mj": {"mean": 10.0, "ci_low": 9.0, "ci_high": 11.0}},
                     "cpu_only": {"energy_mj": {"mean": 50.0, "ci_low": 45.0, "ci_high": 55.0}}},
               "t": {"dvfo": {"energy_mj": {"mean": 1.0, "ci_low": 0.5, "ci_high": 1.5}}}}
    (results / "evaluate" / "metrics_overall.json").write_text(json.dumps(metrics))
    text = "head\n<!-- results:start -->\nold\n<!-- results:end -->\ntail\n"
    new, figs = readme.render(text, results)
    assert "old" not in new and "10.0 [9.0, 11.0]" in new and new.startswith("head") and new.endswith("tail\n")
    assert figs == []
    # both suites' headline figures, suite by suite, when the report produced them
    for name in ("energy_vs_signal_s.png", "energy_latency_t.png", "savings_t.png"):
        (results / "report" / name).write_bytes(b"png")
    text = "<!-- results:start -->\n<!-- results:end -->\n<!-- figures:start -->\n<!-- figures:end -->\n"
    new, figs = readme.render(text, results)
    assert [f.name for f in figs] == ["energy_vs_signal_s.png", "energy_latency_t.png", "savings_t.png"]
    shown = new.split("<!-- figures:start -->")[1]
    assert shown.index("**s**") < shown.index("energy_vs_signal_s.png") < shown.index("**t**") < shown.index("savings_t")
    with pytest.raises(ValueError, match="markers"):
        readme.splice("no markers", "results", "x")


def test_tasks_fit_each_baseline_once_and_start_with_training_fits(trained):
    cells = evaluate.suite_cells("autoscale_phone", trained / "autoscale_phone",
                                 ["cpu_only", "best_static_dnn", "best_static_dnn_signal", "distilled"],
                                 ["wifi_strong", "wifi_weak"], 2, 30, root_seed=5)
    # a DRLDO-like cell (a fit that trains), last in cell order
    drl = [dataclasses.replace(c, policy="drldo", policy_kwargs_json='{"train_seed": 1}') for c in cells[:2]]
    cells = cells + drl
    groups = evaluate.task_groups(cells)
    assert sorted(i for g in groups for i in g) == list(range(len(cells)))  # every cell once
    assert [cells[i].policy for i in groups[0]] == ["drldo", "drldo"]  # the training fit starts first
    by_policy = {p: [g for g in groups if any(cells[i].policy == p for i in g)] for p in {c.policy for c in cells}}
    # the two hindsight statics are fitted on the same episodes: one task; the distilled rule: one task
    assert by_policy["best_static_dnn"] == by_policy["best_static_dnn_signal"] and len(by_policy["distilled"]) == 1
    assert len(by_policy["cpu_only"]) == 2  # unfitted cells: one task per scenario


def test_a_reused_env_plays_the_same_episode_as_a_fresh_one(trained):
    """run_cell keeps one env per (scenario, arguments) in a process; its rows equal a fresh env's."""
    from bench.policies.rollout import evaluate_policy

    cells = _cells(trained, steps=40, seeds=2)
    for cell in cells + cells[::-1]:  # the env has played other policies' and seeds' episodes before
        fresh = evaluate_policy(cell.policy, evaluate.env_id(cell.learner), cell.scenario, [cell.seed], cell.steps,
                                policy_kwargs=evaluate._policy_kwargs(cell),
                                env_kwargs=json.loads(cell.env_kwargs_json))
        got = evaluate.run_cell(cell)
        pd.testing.assert_frame_equal(got.drop(columns=["suite", "profile"]), fresh)


def test_conditions_do_not_depend_on_what_the_cached_env_played_before(trained):
    cells = _cells(trained, steps=40, seeds=2)
    evaluate._episode_env.cache_clear()
    fresh = evaluate.conditions(cells)
    evaluate.run_cells(cells[::-1], workers=1, progress=False)  # the same envs play every policy's episodes
    again = evaluate.conditions(cells)
    pd.testing.assert_frame_equal(fresh, again)
    assert len(fresh) == 2 * 40 and fresh.groupby("seed").size().eq(40).all()
    assert {"wifi_dbm", "lte_dbm", "uplink_mbps", "qos_ms", "cpu_load", "mem_load"} <= set(fresh.columns)


def test_conditions_and_metrics_in_forked_workers_are_those_of_one_process(trained):
    """Issue 25: the evaluate stage resets the episodes for their conditions and summarises the suites in forked
    processes (``workers``); the tables must be the ones one process computes, in the same order."""
    cells = _cells(trained, steps=40, seeds=3)
    one = evaluate.conditions(cells)
    two = evaluate.conditions(cells, workers=2)
    pd.testing.assert_frame_equal(one, two)
    assert two.to_csv(index=False) == one.to_csv(index=False)
    res = evaluate.run_cells(cells, workers=1, progress=False)
    both = pd.concat([res, res.assign(suite="autoscale_copy")], ignore_index=True)  # two suites: two tasks
    both["suite"] = both["suite"].astype("string")
    serial = evaluate.metrics(both, n_boot=40, seed=3, workers=1)
    forked = evaluate.metrics(both, n_boot=40, seed=3, workers=2)
    assert list(forked) == list(serial) == ["autoscale_copy", "autoscale_phone"]
    assert json.dumps(forked, sort_keys=True) == json.dumps(serial, sort_keys=True)
    assert forked["autoscale_copy"] == forked["autoscale_phone"]  # each suite seeds its own bootstrap


def test_curve_seeds_in_worker_processes_give_the_same_bytes_as_one_after_the_other(tmp_path, monkeypatch):
    """Issue 25: the train stage runs its extra curve seeds and reference levels in worker processes; the
    files must be those of the sequential run."""
    from bench.pipeline import training

    cfg = {"total_steps": 1500, "epsilon_decay_steps": 1000, "scenarios": ["wifi_strong", "cpu_corunner"]}
    for name, workers in (("seq", "1"), ("par", "2")):
        monkeypatch.setenv("BENCH_TRAIN_WORKERS", workers)
        training.train_run("r", "autoscale", "phone_sd845", cfg, 11, tmp_path / name, curve_seeds=3)
    files = sorted(p.relative_to(tmp_path / "seq") for p in (tmp_path / "seq").rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(tmp_path / "par") for p in (tmp_path / "par").rglob("*")
                                     if p.is_file())
    for f in files:
        assert (tmp_path / "seq" / f).read_bytes() == (tmp_path / "par" / f).read_bytes(), f
    # the levels run one scenario per task: the same table as one pass over all the training envs
    from bench.seeding import derive_seeds

    whole = training.reference_levels("autoscale", training.make_config("autoscale", "phone_sd845", cfg, 11, "r"),
                                      derive_seeds(11, 1, "train-reference", "r"))
    whole.insert(0, "run", "r")
    assert whole.to_csv(index=False, float_format="%.6g") == (tmp_path / "par" / "reference_levels.csv").read_text()


def test_one_bound_search_per_episode_gives_the_tables_of_the_cells_and_the_bounds_run_apart(trained, monkeypatch):
    """run_cells_and_bounds = run_cells + yardstick.bound_cells, with each episode's bound searched once."""
    import bench.policies.bound as bound_mod
    from bench.pipeline import yardstick
    from bench.sim.objective import Objective

    obj = Objective(500.0)
    cells = evaluate.suite_cells("autoscale_phone", trained / "autoscale_phone",
                                 ["cpu_only", "greedy_oracle", "best_found_schedule"], ["wifi_weak", "heldout_cell_edge"],
                                 2, 30, root_seed=5, violation_cost_mj=obj.violation_cost_mj)
    apart = evaluate.run_cells(cells, workers=1, progress=False)
    bounds, req = yardstick.bound_cells(cells, obj)
    calls, greedy = [], []
    search, roll = bound_mod.hindsight_bound, bound_mod.greedy_schedule
    monkeypatch.setattr(bound_mod, "hindsight_bound", lambda *a, **k: calls.append(1) or search(*a, **k))
    monkeypatch.setattr(bound_mod, "greedy_schedule", lambda *a, **k: greedy.append(1) or roll(*a, **k))
    together, bounds2, req2 = evaluate.run_cells_and_bounds(cells, obj, workers=1, progress=False)
    assert len(calls) == 2 * 2  # one search per (scenario, seed), none in the best-found cells
    assert not greedy  # the search starts from the greedy oracle's cell, not a rollout of its own
    pd.testing.assert_frame_equal(together, apart, check_exact=True)
    pd.testing.assert_frame_equal(bounds2, bounds, check_exact=True)
    pd.testing.assert_frame_equal(req2, req, check_exact=True)
    assert set(together["policy"]) == {"autoscale", "cpu_only", "greedy_oracle", "best_found_schedule"}
    # without a greedy oracle among the policies, the search rolls the greedy schedule itself: same bounds
    alone, bounds3, _ = evaluate.run_cells_and_bounds([c for c in cells if c.policy != "greedy_oracle"], obj,
                                                      workers=1, progress=False)
    assert len(greedy) == 2 * 2
    pd.testing.assert_frame_equal(bounds3, bounds, check_exact=True)


def test_statics_fitted_on_the_greedy_cells_rollouts_play_as_fitted_on_their_own_replay(trained, monkeypatch):
    """Issue 25: the hindsight statics' fit replays the greedy oracle through the evaluation's episodes; with
    the greedy oracle among the policies, run_cells_and_bounds fits them on its cells' rollouts instead (no
    replay at all) and every row is the one of the statics fitted on their own replay (run_cells)."""
    import bench.policies.episodes as episodes
    from bench.sim.objective import Objective

    obj = Objective(500.0)
    cells = evaluate.suite_cells("autoscale_phone", trained / "autoscale_phone",
                                 ["greedy_oracle", "best_static_dnn", "best_static_dnn_signal"],
                                 ["wifi_weak", "heldout_cell_edge"], 2, 30, root_seed=7,
                                 violation_cost_mj=obj.violation_cost_mj)
    apart = evaluate.run_cells(cells, workers=1, progress=False)
    replays = []
    real = episodes.replay
    monkeypatch.setattr(episodes, "replay", lambda *a, **k: replays.append(1) or real(*a, **k))
    episodes._collect.cache_clear()
    from bench.policies import static

    static._FITS.clear()
    together, _, _ = evaluate.run_cells_and_bounds(cells, obj, workers=1, progress=False)
    assert not replays  # both statics fitted on the four greedy rollouts
    pd.testing.assert_frame_equal(together, apart, check_exact=True)
    # on two worker processes (one pool for both maps: the statics run where the greedy cells ran): the same rows
    parallel, _, _ = evaluate.run_cells_and_bounds(cells, obj, workers=2, progress=False)
    pd.testing.assert_frame_equal(parallel, apart, check_exact=True)
    # the supplied episodes must be the fit's, in its order
    env = evaluate._episode_env("bench/AutoScale-v0", "wifi_weak", 30, cells[0].env_kwargs_json)
    eps = episodes.collect_episodes(env, ["wifi_weak"], [1, 2], 30)
    with pytest.raises(ValueError, match="order"):
        with episodes.supplied(env, ["wifi_weak"], [2, 1], 30, eps):
            pass


def test_a_bound_for_another_episode_length_is_refused(trained):
    import bench.policies.bound as bound_mod
    from bench.policies import make_policy
    from bench.policies.rollout import make_env
    from bench.sim.objective import Objective

    env = make_env("bench/AutoScale-v0", "wifi_weak", 20)
    env.reset(seed=3)
    b = bound_mod.hindsight_bound(env, Objective(500.0), 20)
    pol = make_policy("best_found_schedule", env, violation_cost_mj=500.0, n_steps=10, bound=b)
    env.reset(seed=3)
    with pytest.raises(ValueError, match="covers 20 requests"):
        pol.reset()


def test_a_learner_loaded_once_per_process_decides_as_a_fresh_load(trained, tmp_path):
    from bench.policies.rollout import evaluate_policy

    evaluate._LEARNERS.clear()
    cells = [c for c in _cells(trained, steps=40, seeds=2) if c.policy == "autoscale"]
    got = [evaluate.run_cell(c) for c in cells + cells]  # the second pass reuses the loaded learner
    assert len(evaluate._LEARNERS) == 1
    for cell, frame in zip(cells + cells, got):
        fresh = evaluate_policy(cell.policy, evaluate.env_id(cell.learner), cell.scenario, [cell.seed], cell.steps,
                                policy_kwargs={"path": cell.artefact}, env_kwargs=json.loads(cell.env_kwargs_json))
        pd.testing.assert_frame_equal(frame.drop(columns=["suite", "profile"]), fresh, check_exact=True)
    # other bytes at the same path: another key, so the retrained learner is loaded anew
    import shutil

    copy = tmp_path / "policy"
    shutil.copytree(cells[0].artefact, copy)
    before = evaluate._files_digest(str(copy))
    meta = next(copy.glob("*.json"))
    meta.write_text(meta.read_text() + "\n")
    assert evaluate._files_digest(str(copy)) != before


def test_the_importance_reading_the_learner_cells_rollouts_gives_the_tables_run_apart(trained, monkeypatch):
    """run_evaluation runs a suite's learner cells in its importance task (one load of the learner) and the importance
    reads their rollouts instead of rolling the learner out again: the results and importance tables are those of
    run_cells and feature_importances run apart; where the cells do not play the importance's episodes (another
    length), the importance rolls its own."""
    import bench.policies.importance as importance_mod
    from bench.sim.objective import Objective

    obj = Objective(500.0)
    scenarios = ["wifi_weak", "heldout_cell_edge"]
    cells = evaluate.suite_cells("autoscale_phone", trained / "autoscale_phone", ["cpu_only"], scenarios, 2, 30,
                                 root_seed=5, violation_cost_mj=obj.violation_cost_mj)
    task = ("autoscale_phone", trained / "autoscale_phone", scenarios, 2, 30, 5)
    apart = evaluate.run_cells(cells, workers=1, progress=False)
    imp_apart = evaluate.feature_importances([task], workers=1)
    rolls = []
    roll = importance_mod.rollout
    monkeypatch.setattr(importance_mod, "rollout", lambda *a, **k: rolls.append(1) or roll(*a, **k))
    together, _, _, imp = evaluate.run_evaluation(cells, obj, [task], workers=1, progress=False)
    assert not rolls  # the learner cells' rollouts were read
    pd.testing.assert_frame_equal(together, apart, check_exact=True)
    pd.testing.assert_frame_equal(imp, imp_apart, check_exact=True)
    other = evaluate.run_evaluation(cells, obj, [task[:4] + (20,) + task[5:]], workers=1, progress=False)
    assert len(rolls) == 1  # 20-request episodes: not the cells' own, so rolled out
    pd.testing.assert_frame_equal(other[0], apart, check_exact=True)
    pooled = evaluate.run_evaluation(cells, obj, [task], workers=2, progress=False)  # the tasks in worker processes
    pd.testing.assert_frame_equal(pooled[0], apart, check_exact=True)
    pd.testing.assert_frame_equal(pooled[3], imp_apart, check_exact=True)


def test_a_stage_kernel_warms_up_on_its_notebooks_third_party_imports_only():
    """Issue 25: ``bench notebook`` starts the kernel before params.yaml is validated and has it import the
    notebook's heavy modules; never the suite's own (they read the stage's environment, set after validation)."""
    from bench.pipeline import stages

    for stage, name in stages.NOTEBOOKS.items():
        mods = stages._notebook_imports(stages.NOTEBOOKS_DIR / name)
        assert "pandas" in mods, stage
        assert not any(m.split(".")[0] in ("bench", "hw") for m in mods), (stage, mods)
    assert "seaborn" in stages._notebook_imports(stages.NOTEBOOKS_DIR / "03_evaluate.ipynb")
