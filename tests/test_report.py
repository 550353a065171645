"""Report figures, styles, the HTML page and the headline metrics, on small constructed tables."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bench.pipeline import evaluate, report, report_html

POLICIES = ["autoscale", "oracle", "cpu_only", "cloud_only", "mystery_baseline"]
ACTIONS = {"autoscale": ["dsp@1000", "cloud_wifi"], "oracle": ["dsp@1000", "gpu@700", "cloud_wifi"],
           "cpu_only": ["cpu@2800"], "cloud_only": ["cloud_wifi", "cloud_lte"], "mystery_baseline": ["peer"]}


@pytest.fixture(scope="module")
def tables():
    """A fake AutoScale suite: 2 scenarios x 2 seeds x 80 requests; cloud_only has one far-off latency."""
    rng = np.random.default_rng(0)
    rows, cond = [], []
    for scen in ("wifi_strong", "mobility_walk"):
        for seed in (1, 2):
            n = 80
            wifi = np.linspace(-40, -90, n) if scen == "mobility_walk" else np.full(n, -45.0)
            qos = rng.choice([50.0, 100.0, 400.0], n)
            cond.append(pd.DataFrame({"suite": "s", "scenario": scen, "seed": seed, "step": np.arange(n),
                                      "wifi_dbm": wifi, "lte_dbm": -90.0, "uplink_mbps": 30 + wifi / 3, "qos_ms": qos,
                                      "cpu_load": 0.0, "mem_load": 0.0}))
            for pol in POLICIES:
                base = {"oracle": 80, "autoscale": 90, "cpu_only": 900, "cloud_only": 400, "mystery_baseline": 300}[pol]
                lat = qos * rng.uniform(0.3, 0.9, n) * (1000.0 if pol == "cloud_only" and scen == "mobility_walk" else 1)
                rows.append(pd.DataFrame({
                    "suite": "s", "profile": "phone", "policy": pol, "scenario": scen, "seed": seed, "step": np.arange(n),
                    "workload": rng.choice(["resnet18", "vit_b_16"], n), "action": 0,
                    "action_name": rng.choice(ACTIONS[pol], n), "energy_mj": base * rng.uniform(0.8, 1.2, n),
                    "remote_energy_mj": 20.0 if pol in ("cloud_only", "oracle") else 0.0, "latency_ms": lat,
                    "qos_ok": lat <= qos, "accuracy": 0.7, "reward": 1000 / base}))
    return pd.concat(rows, ignore_index=True), pd.concat(cond, ignore_index=True)


def _labels(fig):
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes if ax.get_visible()]


def test_every_registered_policy_and_the_new_baselines_have_their_own_style():
    from bench.policies import REGISTRY

    # the suite's own policies (plugins and tests may register more; those get the fallback style below)
    own = {n for n, f in REGISTRY.items() if getattr(f, "__module__", "").startswith("bench.")}
    names = own | {"best_static_dnn", "drldo", "appealnet", "edge_gpu_max"}
    assert names <= set(report.POLICY_STYLES), names - set(report.POLICY_STYLES)
    styles = [tuple(report.policy_style(n).values()) for n in report.POLICY_STYLES]
    assert len(set(s[0] for s in styles)) == len(styles)  # one colour per policy
    # an unknown policy: a stable style, different from every known one
    assert report.policy_style("mystery_baseline") == report.policy_style("mystery_baseline")
    assert report.policy_style("mystery_baseline")["color"] not in {s[0] for s in styles}
    assert report.ordered(["random", "mystery_baseline", "dvfo", "oracle"]) == ["dvfo", "oracle", "random",
                                                                                 "mystery_baseline"]


def test_policy_order_style_and_role_come_from_the_registration():
    """The shipped order is the registered one; a plugin policy gets its row, style and role by registering."""
    from bench.policies import REGISTRY, register
    from bench.policies.base import _INFO

    shipped = ["autoscale", "dvfo", "bound_schedule", "greedy_oracle", "oracle", "edge_best_static",
               "best_static_dnn", "best_static_dnn_signal", "distilled", "drldo", "appealnet", "edge_gpu_max",
               "neurosurgeon", "gpu_only", "cpu_only", "cloud_only", "random"]
    assert report.ordered(reversed(shipped)) == shipped
    assert [p for p in shipped if report.is_learner(p)] == ["autoscale", "dvfo"]
    assert [p for p in shipped if report.is_reference(p)] == ["bound_schedule", "greedy_oracle", "oracle"]
    try:
        register("tidy_plugin_star", order=35, colour="#123456", marker="*", reference=True)(lambda env, **_: None)
        assert report.ordered(["random", "tidy_plugin_star", "autoscale"]) == ["autoscale", "tidy_plugin_star",
                                                                               "random"]
        assert report.policy_style("tidy_plugin_star") == {"color": "#123456", "marker": "*"}
        assert report.is_reference("tidy_plugin_star") and "tidy_plugin_star" in report.POLICY_STYLES
    finally:
        del REGISTRY["tidy_plugin_star"]
        _INFO.pop("tidy_plugin_star", None)
    with pytest.raises(TypeError):
        register("tidy_typo", colour_="#000000")


def test_targets_are_named_and_coloured_the_same_everywhere():
    assert report.target_of("cpu@1804.8") == "cpu" and report.target_of("cloud_lte") == "cloud"
    assert report.target_of("cpu115.2_gpu114.75_mem204_xi0.00") == "ξ=0 (edge only)"
    assert report.target_of("cpu115.2_gpu114.75_mem204_xi0.40") == "ξ=0.4"
    a = report.target_colours(["ξ=0.4", "ξ=0 (edge only)"])
    b = report.target_colours(["ξ=0.4", "ξ=1.0", "cloud"])
    assert a["ξ=0.4"] == b["ξ=0.4"] and b["cloud"] == report.TARGET_COLOURS["cloud"]


def test_targets_of_a_column_are_target_of_each_row():
    names = ["cpu@1804.8", "cloud_lte", "cpu115.2_gpu114.75_mem204_xi0.40", "cpu@1804.8", "dsp@500"]
    for column in (pd.Series(names, index=[5, 3, 9, 1, 0]), pd.Series(names, dtype="category")):
        got = report.targets_of(column)
        assert list(got) == [report.target_of(n) for n in names]
        assert got.index.equals(column.index)


def test_figures_have_units_on_their_axes_and_need_no_pyplot(tables):
    import matplotlib.pyplot as plt

    res, cond = tables
    before = plt.get_fignums()
    figs = {"signal": report.energy_vs_signal(res, cond), "latency": report.energy_latency(res, cond),
            "mix": report.target_mix(res), "heatmap": report.best_target_heatmap(res, cond),
            "split": report.energy_split(res)}
    assert plt.get_fignums() == before  # nothing left in pyplot's global state
    signal_x = _labels(figs["signal"])[-1][0]
    assert "dBm" in signal_x
    assert all("(" in y for _, y in _labels(figs["signal"]))
    x, y = _labels(figs["latency"])[0]
    assert "deadline" in x and "mJ" in y
    assert "mJ" in _labels(figs["split"])[0][0]
    assert "dBm" in _labels(figs["heatmap"])[0][0]
    assert all("%" in xl for xl, _ in _labels(figs["mix"]) if xl)


def test_energy_latency_clips_an_outlier_and_says_so(tables):
    res, cond = tables
    per, overall = report.latency_energy_points(res, cond)
    far = overall.set_index("policy").latency_rel_p95["cloud_only"]
    fig = report.energy_latency(res, cond)
    ax = fig.axes[0]
    assert ax.get_xlim()[1] < far  # the axis is not stretched to the outlier ...
    texts = [t.get_text() for t in ax.texts]
    assert any(t.startswith("cloud_only:") and "deadline" in t for t in texts)  # ... which is written down instead
    assert any(line.get_xdata()[0] == 1.0 for line in ax.lines if len(line.get_xdata()) == 2)  # the deadline
    labels = [h.get_label() for h in ax.get_legend().legend_handles]
    assert "Pareto front (policy means)" in labels and "QoS deadline" in labels
    assert {"autoscale", "oracle"} <= set(texts)  # learner and oracle each named on the plot


def test_pareto_front_keeps_only_undominated_points():
    pts = pd.DataFrame({"x": [1, 2, 3, 2.5, 0.5], "y": [5, 3, 1, 4, 9]})
    front = report.pareto_front(pts, "x", "y")
    assert list(zip(front.x, front.y)) == [(0.5, 9), (1, 5), (2, 3), (3, 1)]


def test_by_signal_bins_and_drops_thin_bins(tables):
    res, cond = tables
    t = report.by_signal(res, cond, "wifi_dbm")
    assert (t.n >= report.MIN_BIN_REQUESTS).all()
    assert set(np.unique(t.signal) % 5) == {2.5}  # 5 dB bins, labelled by their centre
    # cpu_only never offloads: its violation rate is computed, between 0 and 1
    assert t.qos_violation_rate.between(0, 1).all()


def test_learning_curves_average_seeds_and_draw_reference_levels():
    rows = []
    for seed in range(3):
        for ep in range(30):
            rows.append({"run": "r", "learner": "autoscale", "curve_seed": seed, "step": 100 * (ep + 1),
                         "scenario": ["a", "b"][ep % 2], "reward": ep / 3 + seed + (5 if ep % 2 else 0)})
    curves = pd.DataFrame(rows)
    levels = pd.DataFrame({"run": "r", "policy": ["oracle", "oracle", "edge_best_static", "edge_best_static",
                                                  "cloud_only", "cloud_only"],
                           "scenario": ["a", "b"] * 3, "reward": [20, 30, 10, 12, 1, 50]})
    smooth = report.smoothed_curves(curves)
    assert (smooth.window % 2 == 0).all()  # whole cycles of the two scenarios
    assert (smooth.low <= smooth["mean"]).all() and (smooth["mean"] <= smooth.high).all()
    assert smooth.n_seeds.iloc[0] == 3
    refs = report.reference_lines(levels).set_index("kind")
    assert refs.loc["oracle", "reward"] == 25
    assert refs.loc["best static", "policy"] == "cloud_only" and refs.loc["best static", "reward"] == 25.5
    fig = report.learning_curves(curves, levels)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "greedy oracle" in labels and any("best static" in t for t in labels) and any("3 seeds" in t for t in labels)


def test_savings_panel_keeps_the_learner_on_scale():
    ci = lambda m, lo, hi: {"mean": m, "ci_low": lo, "ci_high": hi}  # noqa: E731
    overall = {"dvfo": {"efficiency_vs_cpu_only": ci(0.5, 0.45, 0.55)},  # 100% more energy than edge-only
               "oracle": {"efficiency_vs_cpu_only": ci(1.1, 1.05, 1.15)},
               "cloud_only": {"efficiency_vs_cpu_only": ci(0.1, 0.05, 0.2)},
               "cpu_only": {"efficiency_vs_cpu_only": ci(1.0, 1.0, 1.0)}}
    fig = report.savings_vs(overall, {"sc": overall})
    ax = fig.axes[0]
    assert ax.get_xlim()[0] <= -100 < ax.get_xlim()[0] + 10  # the learner's -100% is shown ...
    assert any(t.get_text().startswith("cloud_only −900 %") for t in ax.texts)  # ... cloud-only's -900% is written


def test_importing_the_report_chooses_no_backend():
    code = ("import matplotlib; import bench.pipeline.report, bench.pipeline.report_html; "
            "print(matplotlib.rcParams['backend'])")
    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "module://matplotlib_inline.backend_inline"


def test_html_page_is_self_contained(tables, tmp_path):
    res, cond = tables
    paths = [report.save(report.energy_split(res), tmp_path / "a.png"),
             report.save(report.target_mix(res), tmp_path / "b.png")]
    meta = report_html.run_metadata({"seed": 1, "evaluate": {"seeds": 2}})
    page = report_html.write(tmp_path / "index.html", "t <x>", [
        report_html.Section("figs", "text & more", figures=[(p, f"caption {p.stem}") for p in paths],
                            tables=[("headline", pd.DataFrame({"a": [1]}))])], meta)
    html = page.read_text()
    assert html.count('<img class="figure"') == 2 and html.count('src="data:image/png;base64,') == 2
    assert "http://" not in html and "https://" not in html  # loads nothing from the network
    assert "t &lt;x&gt;" in html and "text &amp; more" in html
    for key in ("host", "git_revision", "python", "version: numpy", "seeds: 2"):
        assert key in html
    assert str(tmp_path) not in html


def test_headline_metrics_are_a_few_means_per_policy(tmp_path, tables):
    res, _ = tables
    m = evaluate.metrics(res[res.policy != "mystery_baseline"], n_boot=20, seed=0)
    paths = evaluate.write_metrics(m, tmp_path / "metrics.json", tmp_path)
    head = json.loads(paths["headline"].read_text())
    assert set(head["s"]) == {"autoscale", "oracle", "cpu_only", "cloud_only"}
    # without the bound (no objective given) the objective, its gap and headroom captured are left out
    assert all(set(v) == {"energy_mj", "qos_violation_rate", "efficiency_vs_cpu_only"} for v in head["s"].values())
    assert all(isinstance(x, float) for v in head["s"].values() for x in v.values())
    assert head["s"]["cpu_only"]["efficiency_vs_cpu_only"] == 1.0
    # DVFO's space has no CPU-only: the headline ratio is then against edge-only on the Jetson GPU
    edge = res[res.policy.isin(["dvfo", "oracle", "cpu_only"])].replace({"policy": {"cpu_only": "edge_gpu_max"}})
    dvfo = evaluate.headline(evaluate.metrics(edge, n_boot=0, seed=0))["s"]
    assert dvfo["edge_gpu_max"]["efficiency_vs_edge_gpu_max"] == 1.0 and "efficiency_vs_cpu_only" not in dvfo["oracle"]
    back = evaluate.load_metrics(tmp_path)
    assert back["s"]["overall"]["autoscale"]["energy_mj"]["ci_low"] is not None
    assert set(back["s"]["by_scenario"]) == {"wifi_strong", "mobility_walk"}


def test_the_report_shows_the_testbed_stage_when_it_ran_else_the_committed_campaign(tmp_path):
    """testbed_results: the stage's own table wins; an empty one (the stage off) falls back to COMMITTED_CAMPAIGN with
    its size and load; neither gives None and says where it looked; an unreadable table is named, not raised."""
    import json

    import pandas as pd

    from bench.pipeline import report

    stage = tmp_path / "testbed"
    stage.mkdir()
    (stage / "sim_vs_testbed.csv").write_text("")  # what the stage writes when it is off: no runs
    folder, table, text = report.testbed_results(tmp_path)
    assert folder is None and table.empty and report.COMMITTED_CAMPAIGN in text

    committed = tmp_path / report.COMMITTED_CAMPAIGN
    committed.mkdir(parents=True)
    pd.DataFrame({"policy": ["cpu_only", "autoscale"], "requests": [100, 100]}).to_csv(
        committed / "sim_vs_testbed.csv", index=False)
    (committed / "summary.json").write_text(json.dumps({"loadavg_1min_min_max": [0.1, 1.3]}))
    folder, table, text = report.testbed_results(tmp_path)
    assert folder == committed and len(table) == 2
    assert "2 runs, 200 live requests" in text and "0.1-1.3" in text

    pd.DataFrame({"policy": ["random"], "requests": [40]}).to_csv(stage / "sim_vs_testbed.csv", index=False)
    folder, table, text = report.testbed_results(tmp_path)
    assert folder == stage and list(table["policy"]) == ["random"] and "this run's" in text

    (stage / "sim_vs_testbed.csv").write_bytes(b'"unclosed\n')
    folder, table, text = report.testbed_results(tmp_path)
    assert folder is None and "unreadable" in text and str(stage / "sim_vs_testbed.csv") in text
