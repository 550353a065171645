"""Training, evaluation, claims and README refresh: determinism and derived numbers."""

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
    assert m["oracle"]["gap_to_oracle"]["mean"] == pytest.approx(0.0)


# ----------------------------------------------------------------------------- claims and README
def _metrics(eff_cpu, eff_cloud, e_dvfo, e_cpu, e_cloud, lat=(50.0, 60.0, 90.0), acc=(0.70, 0.695)):
    ci = lambda v: {"mean": v, "ci_low": v, "ci_high": v}  # noqa: E731
    return {
        "autoscale_phone": {"overall": {"autoscale": {"efficiency_vs_cpu_only": ci(eff_cpu),
                                                      "efficiency_vs_cloud_only": ci(eff_cloud)}}},
        "dvfo_jetson": {"overall": {
            "dvfo": {"energy_mj": ci(e_dvfo), "latency_p50_ms": lat[0], "accuracy": ci(acc[1])},
            "cpu_only": {"energy_mj": ci(e_cpu), "latency_p50_ms": lat[1], "accuracy": ci(acc[0])},
            "cloud_only": {"energy_mj": ci(e_cloud), "latency_p50_ms": lat[2], "accuracy": ci(acc[0])}}},
    }


def test_papers_vs_suite_computes_the_suite_side():
    table = claims.papers_vs_suite(_metrics(9.0, 3.0, 60.0, 100.0, 200.0)).set_index("claim")
    rows = {r["paper"] + ":" + str(r["paper_value"]): r for r in table.reset_index().to_dict("records")}
    assert rows["AutoScale:9.8"]["suite_value"] == 9.0 and rows["AutoScale:9.8"]["verdict"] == "consistent"
    assert rows["AutoScale:1.6"]["verdict"] == "differs" and rows["AutoScale:1.6"]["why they differ"]
    # energy reduction = mean(1 - 60/100, 1 - 60/200) = mean(0.4, 0.7)
    assert rows["DVFO:0.33"]["suite_value"] == pytest.approx(0.55)
    assert rows["DVFO:0.33"]["verdict"] == "differs on average only"  # 0.55 is outside 0.33 +- 25% and rows["DVFO:0.33"]["why they differ"]
    # latency reduction = mean(1 - 50/60, 1 - 50/90)
    assert rows["DVFO:0.286–0.591"]["suite_value"] == pytest.approx(np.mean([1 - 50 / 60, 1 - 50 / 90]), abs=1e-4)
    assert rows["DVFO:0.01"]["suite_value"] == pytest.approx(0.005) and rows["DVFO:0.01"]["verdict"] == "consistent"


def test_readme_refresh_splices_generated_sections(tmp_path, monkeypatch):
    results = tmp_path / "results"
    (results / "report").mkdir(parents=True)
    metrics = {"s": {"autoscale": {"energy_mj": {"mean": 10.0, "ci_low": 9.0, "ci_high": 11.0}},
                     "cpu_only": {"energy_mj": {"mean": 50.0, "ci_low": 45.0, "ci_high": 55.0}}}}
    (results / "metrics.json").write_text(json.dumps(metrics))
    text = "head\n<!-- results:start -->\nold\n<!-- results:end -->\ntail\n"
    new, figs = readme.render(text, results)
    assert "old" not in new and "10.0 [9.0, 11.0]" in new and new.startswith("head") and new.endswith("tail\n")
    assert figs == []
    with pytest.raises(ValueError, match="markers"):
        readme.splice("no markers", "results", "x")
