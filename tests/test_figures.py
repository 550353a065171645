"""Figures fit for a paper: print resolution, SVG beside the PNG, no colliding labels, ties drawn once,
axes named for what they show (issue 26, item 7). Small constructed tables, as in tests/test_report.py."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

from bench.pipeline import report


def _small_figure():
    fig, axes = report.new_figure(3.0, 2.0)
    axes[0, 0].plot([1, 2, 3], [3, 1, 2], label="a")
    axes[0, 0].set(xlabel="x (s)", ylabel="y (mJ)")
    return fig


def test_save_writes_a_300_dpi_png_and_a_reproducible_svg(tmp_path):
    from PIL import Image

    png = report.save(_small_figure(), tmp_path / "one" / "fig.png")
    svg = png.with_suffix(".svg")
    assert png.exists() and svg.exists()
    with Image.open(png) as im:
        assert im.info["dpi"][0] == pytest.approx(300, abs=1)
        assert im.size[0] > 3.0 * 300 * 0.8  # 3 inches wide at 300 dpi (tight bbox trims a little)
    text = svg.read_text()
    assert "<dc:date>" not in text  # no date: reproducible
    again = report.save(_small_figure(), tmp_path / "two" / "fig.png")
    assert again.read_bytes() == png.read_bytes()
    assert again.with_suffix(".svg").read_bytes() == svg.read_bytes()  # ids from the fixed hashsalt


def test_tie_groups_group_equal_values_within_a_relative_tolerance():
    groups = report.tie_groups({"drldo": 10.0, "edge_gpu_max": 10.0 * (1 + 1e-9), "dvfo": 8.0, "random": 10.01,
                                "x": float("nan"), "y": float("nan")})
    assert groups == [["dvfo"], ["drldo", "edge_gpu_max"], ["random"], ["x"], ["y"]]  # in ordered() order
    assert report.tie_groups({"a": 1.0, "b": 1.001}, rel=1e-2) == [["a", "b"]]
    # vectors tie only when every element does; a missing element matches only a missing one
    assert report.tie_groups({"a": [1.0, np.nan], "b": [1.0, np.nan], "c": [1.0, 2.0]}) == [["a", "b"], ["c"]]
    assert report.tie_label(["edge_gpu_max", "drldo"], {"edge_gpu_max": "edge-only"}) == "edge-only = drldo"


def _ci(m):
    return {"mean": m, "ci_low": m * 0.95, "ci_high": m * 1.05}


def dvfo_metrics(energies: dict[str, float], comparators=("edge_gpu_max", "drldo", "appealnet")):
    """overall/by-scenario metrics as evaluate writes them: efficiency_vs_C = energy of C / energy of the policy."""
    def table(scale):
        return {p: {f"efficiency_vs_{c}": _ci(energies[c] / e) for c in comparators} | {"energy_mj": _ci(e * scale)}
                for p, e in energies.items()}
    return table(1.0), {"static": table(1.0), "walk": table(1.0)}


DVFO_ENERGIES = {"dvfo": 90.0, "oracle": 85.0, "edge_best_static": 95.0, "best_static_dnn": 95.0,
                 "edge_gpu_max": 100.0, "drldo": 100.0, "appealnet": 97.0, "cloud_only": 350.0, "random": 1000.0}


def _boxes(fig, artists):
    fig.draw_without_rendering()  # a pyplot-free Figure's canvas is the base one: the Figure lays itself out
    # the text's own box (an Annotation's get_window_extent adds its leader line)
    return [Text.get_window_extent(a) for a in artists if a.get_visible() and a.get_text()]


def _overlapping(boxes):
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


def test_savings_merge_identical_panels_draw_ties_once_and_write_off_scale_values_once_per_row():
    overall, by_scenario = dvfo_metrics(DVFO_ENERGIES)
    fig = report.savings_vs(overall, by_scenario)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    titles = [ax.get_title() for ax in axes]
    assert len(axes) == 2 and titles[0] == "vs edge-only (GPU, top clocks) = DRLDO" and titles[1] == "vs AppealNet"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "edge_best_static = best_static_dnn" in legend and "best_static_dnn" not in legend
    assert all(ax.get_legend() is None for ax in axes)  # the legend is outside the axes
    ax = axes[0]
    notes = [t.get_text() for t in ax.texts]
    assert len(notes) == 3  # one note per row (all scenarios + 2 scenarios), naming both clipped policies
    assert all("cloud_only −250 %" in n and "random −900 %" in n and n.endswith("(off scale)") for n in notes)
    for ax in axes:
        assert not _overlapping(_boxes(fig, ax.texts))
        # and the legend overlaps no panel
        assert not any(fig.legends[0].get_window_extent().overlaps(ax.get_window_extent()) for ax in axes)


def crowded_tables(means: dict[str, tuple[float, float]], n: int = 80):
    """results + conditions of one suite whose policies have the given (latency ÷ deadline, energy mJ), constant
    per request (so the p95 and the mean are those values), in two scenarios."""
    rows, cond = [], []
    for scen in ("a", "b"):
        cond.append(pd.DataFrame({"suite": "s", "scenario": scen, "seed": 1, "step": np.arange(n), "qos_ms": 100.0,
                                  "wifi_dbm": np.linspace(-40, -90, n), "uplink_mbps": np.geomspace(50, 2, n)}))
        for pol, (lat, energy) in means.items():
            rows.append(pd.DataFrame({"suite": "s", "policy": pol, "scenario": scen, "seed": 1, "step": np.arange(n),
                                      "action_name": "cloud_wifi", "energy_mj": energy, "latency_ms": 100.0 * lat,
                                      "qos_ok": lat <= 1, "reward": 1.0}))
    return pd.concat(rows, ignore_index=True), pd.concat(cond, ignore_index=True)


CROWD = {"autoscale": (0.50, 100.0), "oracle": (0.50, 100.5), "edge_best_static": (0.505, 101.0),
         "best_static_dnn": (0.51, 99.5), "cpu_only": (0.495, 100.2), "distilled": (0.502, 99.8),
         "mystery_baseline": (0.3, 400.0), "cloud_only": (0.8, 60.0)}


def test_energy_latency_labels_collide_with_no_label_and_no_policy_mark():
    res, cond = crowded_tables(CROWD)
    fig = report.energy_latency(res, cond)
    ax = fig.axes[0]
    names = {t.get_text() for t in ax.texts}
    assert set(CROWD) <= names
    boxes = _boxes(fig, ax.texts)
    assert not _overlapping(boxes)
    # the big marks (one per policy: the last scatters) are not covered by a label either
    marks = [c for c in ax.collections if len(c.get_offsets()) == 1]
    assert len(marks) == len(CROWD)
    for c in marks:
        (px, py), = c.get_offset_transform().transform(c.get_offsets())
        assert not any(b.contains(px, py) for b in boxes)
    assert all(ax.get_window_extent().contains(b.x0, b.y0) and ax.get_window_extent().contains(b.x1, b.y1)
               for b in boxes)  # labels inside the axes


def test_energy_latency_draws_tied_policies_once_and_a_front_not_a_box():
    tied = {**CROWD, "drldo": CROWD["cpu_only"]}
    res, cond = crowded_tables(tied)
    fig = report.energy_latency(res, cond)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "drldo = cpu_only" in texts and "drldo" not in texts and "cpu_only" not in texts  # ordered() order
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "drldo = cpu_only" in legend and "dominated by the front (shaded)" in legend
    per, overall = report.latency_energy_points(res, cond)
    front = report.pareto_front(overall, "latency_rel_p95", "energy_mj")
    line = next(l for l in ax.lines if l.get_label() == "Pareto front (policy means)")
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    # the line runs from the first front point to the last, nowhere beyond (no edges to the axis corners)
    assert x.min() == pytest.approx(front.latency_rel_p95.min())
    assert x.max() == pytest.approx(front.latency_rel_p95.max())
    assert y.max() == pytest.approx(front.energy_mj.max()) and y.min() == pytest.approx(front.energy_mj.min())


def test_signal_figure_and_readme_caption_name_what_the_x_axis_shows():
    from bench.pipeline import readme

    dvfo_res, cond = crowded_tables({"dvfo": (0.5, 100.0), "edge_gpu_max": (0.2, 150.0)})
    auto_res, _ = crowded_tables({"autoscale": (0.5, 100.0), "cpu_only": (0.2, 150.0)})
    dvfo, auto = report.energy_vs_signal(dvfo_res, cond), report.energy_vs_signal(auto_res, cond)
    dvfo_top, dvfo_bottom = dvfo.axes[:2]
    assert "uplink bandwidth" in dvfo_top.get_title() and "signal" not in dvfo_top.get_title()
    assert dvfo_bottom.get_xlabel().startswith("uplink bandwidth (Mbit/s") and "narrower" in dvfo_bottom.get_xlabel()
    assert "Wi-Fi signal strength" in auto.axes[0].get_title() and "dBm" in auto.axes[1].get_xlabel()
    assert report.signal_name(dvfo_res) == "uplink bandwidth"
    assert readme.caption("energy_vs_signal", "dvfo_jetson").endswith("against uplink bandwidth")
    assert readme.caption("energy_vs_signal", "autoscale_phone").endswith("against Wi-Fi signal strength")
    assert readme.caption("savings", "dvfo_jetson") == readme.SHOWN_FIGURES["savings"]


def test_readme_shows_the_svg_beside_a_figure_and_falls_back_to_its_png(tmp_path):
    from bench.pipeline import readme

    report.save(_small_figure(), tmp_path / "report" / "savings_dvfo_jetson.png")
    report.save(_small_figure(), tmp_path / "report" / "energy_latency_dvfo_jetson.png").with_suffix(".svg").unlink()
    shown = readme.shown_figures(tmp_path, ["dvfo_jetson"])
    assert [p.name for _, p, _ in shown] == ["energy_latency_dvfo_jetson.png", "savings_dvfo_jetson.svg"]
    assert "](docs/figures/savings_dvfo_jetson.svg)" in readme.figures_section(shown)
