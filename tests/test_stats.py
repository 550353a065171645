"""Bootstrap summaries: exact on constructed tables, paired, seeded."""

import numpy as np
import pandas as pd
import pytest

from bench.pipeline.stats import cell_table, summarise, summarise_by_scenario


def _results(n_scen=3, n_seeds=4, n_steps=50, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_scen):
        for k in range(n_seeds):
            base = rng.uniform(50, 150, n_steps)  # a shared realisation per cell (common random numbers)
            for name, factor, qos in (("oracle", 1.0, 1.0), ("learner", 1.1, 0.96), ("cpu_only", 8.0, 0.5),
                                      ("cloud_only", 3.0, 0.7)):
                ok = np.arange(n_steps) < int(qos * n_steps)
                for t in range(n_steps):
                    rows.append({"policy": name, "scenario": f"s{s}", "seed": k, "step": t,
                                 "energy_mj": base[t] * factor, "latency_ms": 10.0 * factor + t,
                                 "qos_ok": bool(ok[t]), "accuracy": 0.7})
    return pd.DataFrame(rows)


def test_ratios_are_exact_when_policies_scale_the_same_draws():
    res = summarise(_results(), baselines={"cpu_only": "cpu_only", "cloud_only": "cloud_only"}, n_boot=200)
    learner = res["learner"]
    assert learner["efficiency_vs_cpu_only"]["mean"] == pytest.approx(8.0 / 1.1)
    # paired bootstrap: the same cells for both policies -> a zero-width interval
    assert learner["efficiency_vs_cpu_only"]["ci_low"] == pytest.approx(8.0 / 1.1)
    assert learner["efficiency_vs_cpu_only"]["ci_high"] == pytest.approx(8.0 / 1.1)
    assert learner["gap_to_greedy_oracle"]["mean"] == pytest.approx(0.1)
    assert res["oracle"]["gap_to_greedy_oracle"]["mean"] == pytest.approx(0.0)
    assert learner["qos_violation_rate"]["mean"] == pytest.approx(2 / 50)
    assert res["cpu_only"]["qos_violation_rate"]["mean"] == pytest.approx(0.5)


def test_energy_interval_contains_the_point_and_has_width():
    res = summarise(_results(), n_boot=300)
    e = res["learner"]["energy_mj"]
    assert e["ci_low"] < e["mean"] < e["ci_high"]
    assert res["learner"]["n_cells"] == 12 and res["learner"]["n_requests"] == 600


def test_same_seed_same_numbers_other_seed_other_intervals():
    r = _results()
    assert summarise(r, seed=3, n_boot=100) == summarise(r, seed=3, n_boot=100)
    a = summarise(r, seed=3, n_boot=100)["learner"]["energy_mj"]
    b = summarise(r, seed=4, n_boot=100)["learner"]["energy_mj"]
    assert a["mean"] == b["mean"] and (a["ci_low"], a["ci_high"]) != (b["ci_low"], b["ci_high"])


def test_by_scenario_and_cells():
    r = _results()
    by = summarise_by_scenario(r, n_boot=50)
    assert set(by) == {"s0", "s1", "s2"}
    cells = cell_table(r)
    assert len(cells) == 4 * 3 * 4 and (cells["n"] == 50).all()


def test_accuracy_averages_only_requests_with_a_known_accuracy():
    r = _results()
    r.loc[r.step % 2 == 0, "accuracy"] = float("nan")  # e.g. text DNNs: no published accuracy
    res = summarise(r, n_boot=20)
    assert res["learner"]["accuracy"]["mean"] == pytest.approx(0.7)


def test_every_interval_metric_has_the_same_shape_with_or_without_bootstrap():
    for n_boot in (0, 30):
        entry = summarise(_results(), n_boot=n_boot)["learner"]
        for key in ("energy_mj", "qos_violation_rate", "accuracy", "latency_p95_ms"):
            assert set(entry[key]) == {"mean", "ci_low", "ci_high"}, (n_boot, key)


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="qos_ok"):
        summarise(_results().drop(columns="qos_ok"))


def test_resampled_p95_equals_the_quantile_of_the_concatenated_cells():
    """The p95-latency bootstrap (issue 25: computed from per-cell draw counts, no table per replicate) gives
    what concatenating each replicate's drawn cells and taking pandas' quantile gives, NaN latencies and
    policies missing from some cells included."""
    import numpy as np
    import pandas as pd

    from bench.pipeline.stats import _bootstrap_index, _resampled_quantiles

    rng = np.random.default_rng(7)
    rows = []
    for pol in ("a", "b", "c"):
        for sc in ("s1", "s2"):
            for seed in (1, 2, 3):
                if pol == "c" and seed == 2:
                    continue  # a policy absent from some cells
                k = int(rng.integers(1, 30))
                lat = np.round(rng.gamma(2.0, 30.0, k), 1)  # rounded: ties between cells
                lat[rng.random(k) < 0.1] = np.nan
                rows.append(pd.DataFrame({"policy": pol, "scenario": sc, "seed": seed, "latency_ms": lat}))
    results = pd.concat(rows, ignore_index=True)
    keys = sorted(set(zip(results["scenario"], results["seed"])))
    idx = _bootstrap_index(len(keys), 40, np.random.default_rng(0))
    got = _resampled_quantiles(results, keys, ["a", "b", "c"], idx, 0.95)
    cells = dict(iter(results.groupby(["scenario", "seed"])))
    for r, draw in enumerate(idx):
        q = pd.concat([cells[keys[i]] for i in draw]).groupby("policy")["latency_ms"].quantile(0.95)
        want = np.array([q.get(p, np.nan) for p in ("a", "b", "c")], dtype=float)
        np.testing.assert_allclose(got[r], want, rtol=1e-12, equal_nan=True)
