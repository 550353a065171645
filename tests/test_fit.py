"""The calibration fit: recovers known constants, cross-validates honestly, reads its data strictly."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from bench.world import fit
from bench.world.opclasses import load_op_classes
from bench.world.profiles import OP_CLASSES, Work, load_profile, profile_from_dict, profile_to_dict

FEATURES = load_op_classes().set_index("model")
SETTINGS = fit.FitSettings()
TRUTH = {"gflops_per_ghz": 40.0, "mem_gbps_per_ghz": 12.0, "launch_ms": 0.02, "fixed_ms": 0.8, "eff_dwconv": 0.25,
         "eff_matmul": 0.7, "eff_attention": 0.5, "eff_recurrent": 0.2, "eff_elementwise": 0.4}
MODELS = ["mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0", "vit_b_16", "lstm_text", "transformer_text",
          "mobilenet_v1", "squeezenet1_1", "vgg11", "densenet121", "shufflenet_v2_x1_0", "mnasnet1_0", "googlenet"]


def _host_like(cpu_mhz=2000.0, **params):
    return dataclasses.replace(fit.host_prior(cpu_mhz), **params)


def _points(target, models=MODELS, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    pts = []
    for m in models:
        p = fit.Point(m, Work.from_features(FEATURES.loc[m]), 1.0)
        true = fit.predict_point(target, p)
        pts.append(dataclasses.replace(p, measured_ms=true * math.exp(noise * rng.standard_normal())))
    return pts


def test_prediction_of_a_point_is_the_target_model():
    t = _host_like(**TRUTH)
    work = Work.from_features(FEATURES.loc["resnet18"])
    p = fit.Point("resnet18", work, 1.0)
    assert fit.predict_point(t, p) == pytest.approx(float(t.work_latency_ms(work)))
    # a class-only point carries no fixed cost
    q = dataclasses.replace(p, include_fixed=False)
    assert fit.predict_point(t, q) == pytest.approx(float(t.work_latency_ms(work)) - t.fixed_ms)


def test_recovers_the_latencies_of_a_known_target_from_a_wrong_prior():
    truth = _host_like(**TRUTH)
    prior = _host_like(**{k: v * 3.0 for k, v in TRUTH.items()})  # every constant 3x off
    params, table = fit.evaluate(prior, _points(truth), SETTINGS)
    assert table["rel_error"].abs().median() < 0.03
    assert table["prior_rel_error"].abs().median() > 0.3
    # the well-identified constants come back
    assert params["gflops_per_ghz"] == pytest.approx(TRUTH["gflops_per_ghz"], rel=0.15)


def test_leave_one_workload_out_holds_each_workload_out():
    truth = _host_like(**TRUTH)
    pts = _points(truth, noise=0.1, seed=3)
    _, table = fit.evaluate(_host_like(), pts, SETTINGS)
    assert len(table) == len(pts) and table["loo_ms"].notna().all()
    # held-out predictions are worse than in-sample ones, never better on average
    assert table["loo_rel_error"].abs().mean() >= table["rel_error"].abs().mean() - 1e-9


def test_without_data_the_fit_keeps_the_prior():
    prior = _host_like(**TRUTH)
    params = fit.fit_points(prior, [], SETTINGS)
    for k, v in params.items():
        assert v == pytest.approx(getattr(prior, k), rel=1e-6)


def test_fitted_constants_stay_within_bounds():
    prior = _host_like(**TRUTH)
    truth = _host_like(**{**TRUTH, "gflops_per_ghz": TRUTH["gflops_per_ghz"] * 1e4})
    params = fit.fit_points(prior, _points(truth), SETTINGS)
    assert params["gflops_per_ghz"] <= TRUTH["gflops_per_ghz"] * SETTINGS.bound_factor * (1 + 1e-6)


def _class_table(truth, models):
    rows = []
    for m in models:
        work = Work.from_features(FEATURES.loc[m])
        row = {"workload": m, "latency_ms": float(truth.work_latency_ms(work)), "cpu_mhz": 2000.0}
        for c in OP_CLASSES:
            part = fit.restrict(work, c)
            row[f"class_ms_{c}"] = float(truth.work_latency_ms(part)) - truth.fixed_ms if float(work.flops[c]) else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def test_host_profile_from_class_timings_predicts_unseen_workloads():
    truth = _host_like(**TRUTH)
    suite = ["mobilenet_v2", "resnet18", "resnet50", "efficientnet_b0", "vit_b_16", "lstm_text", "transformer_text",
             "inception_v3"]
    prof, metrics, table = fit.host_profile(_class_table(truth, suite), load_op_classes())
    assert metrics["n_workloads"] == len(suite)
    assert metrics["loo_median_abs_err"] < 0.05
    cpu = prof.targets["cpu"]
    assert cpu.calibration["n_points"] == len(suite)
    assert math.isnan(cpu.power_w()) and "not measured" in cpu.sources["dynamic_power_w_at_max"]
    again = profile_from_dict(yaml.safe_load(yaml.safe_dump(profile_to_dict(prof))))
    w = Work.from_features(FEATURES.loc["resnet34"])
    assert float(again.targets["cpu"].work_latency_ms(w)) == pytest.approx(float(cpu.work_latency_ms(w)))


def test_host_profile_needs_two_workloads():
    truth = _host_like(**TRUTH)
    with pytest.raises(ValueError, match="at least 2 workloads"):
        fit.host_profile(_class_table(truth, ["resnet18"]), load_op_classes())


# --------------------------------------------------------------------------- shipped calibration

def test_shipped_calibration_rows_parse_and_name_their_sources():
    rows, skipped = fit.load_calibration()
    assert skipped == []
    used = rows[rows["use"].isin(["fit", "heldout"])]
    assert len(used) >= 40
    assert used["source"].str.startswith("https://").all()
    assert (used["where"].str.len() > 5).all()
    # every fitted row's model has op-class features
    assert set(used["model"]) <= set(FEATURES.index)


@pytest.fixture(scope="module")
def joint():
    """The joint fit of all shipped priors, without leave-one-out (the shipped profiles are its constants)."""
    rows, _ = fit.load_calibration()
    priors = [load_profile(fit.PRIORS_DIR / f"{n}.yaml") for n in sorted(p.stem for p in fit.PRIORS_DIR.glob("*.yaml"))]
    return rows, priors, fit.calibrate_joint(priors, rows, load_op_classes(), loo=False)


def test_shipped_profiles_are_the_fit_of_their_priors(joint):
    """data/profiles/<name>.yaml is what `python -m bench calibrate --write` produces (within fit tolerance)."""
    _, priors, res = joint
    for prior in priors:
        shipped = load_profile(prior.name)
        for name, t in res["profiles"][prior.name].targets.items():
            for key in fit.FITTABLE:
                assert getattr(shipped.targets[name], key) == pytest.approx(getattr(t, key), rel=2e-2), (prior.name, name, key)
            assert shipped.targets[name].calibration["n_points"] == t.calibration["n_points"]


def test_no_fitted_class_runs_faster_than_the_datasheet_peak(joint):
    _, _, res = joint
    gain = fit.load_settings().conv_fast_algorithm_gain
    for prof in res["profiles"].values():
        for t in prof.targets.values():
            assert t.peak_gflops_per_ghz > 0, f"{prof.name}/{t.name} has no sourced peak"
            assert t.gflops_per_ghz <= t.peak_gflops_per_ghz * gain * (1 + 1e-9)
            for c in OP_CLASSES[1:]:
                assert t.gflops_per_ghz * t.efficiency(c) <= t.peak_gflops_per_ghz * (1 + 1e-9), (prof.name, t.name, c)


def test_heldout_rows_never_enter_the_fit(joint):
    """Changing a held-out row's latency 10x leaves every fitted constant as it was."""
    rows, priors, res = joint
    assert (rows["use"] == "heldout").sum() >= 5
    changed = rows.copy()
    changed.loc[changed["use"] == "heldout", "latency_ms"] *= 10
    again = fit.calibrate_joint(priors, changed, load_op_classes(), loo=False)
    for name, prof in res["profiles"].items():
        for tname, t in prof.targets.items():
            for key in fit.FITTABLE:
                assert getattr(again["profiles"][name].targets[tname], key) == pytest.approx(getattr(t, key), rel=1e-9)
    assert np.allclose(again["heldout"]["rel_error"] + 1, (res["heldout"]["rel_error"] + 1) / 10)


def test_a_target_with_few_rows_moves_as_one_speed_factor(joint):
    """The phone DSP has two published rows (< tie_below_points): its five own constants depart from the prior by one factor."""
    _, priors, res = joint
    prior = next(p for p in priors if p.name == "phone_sd845").targets["dsp"]
    fitted = res["profiles"]["phone_sd845"].targets["dsp"]
    assert 1 <= fitted.calibration["n_points"] < fit.load_settings().tie_below_points
    up = [getattr(fitted, k) / getattr(prior, k) for k in ("gflops_per_ghz", "mem_gbps_per_ghz")]
    down = [getattr(prior, k) / getattr(fitted, k) for k in ("launch_ms", "launch_elementwise_ms", "fixed_ms")]
    assert np.allclose(up + down, up[0], rtol=0.05)


def test_the_phone_gpu_is_fitted_on_several_published_rows(joint):
    """Issue #22: the Adreno 630 is fitted on more than one published row, from more than one source and runtime."""
    rows, _, res = joint
    gpu = res["profiles"]["phone_sd845"].targets["gpu"]
    mine = rows[(rows["profile"] == "phone_sd845") & (rows["target"] == "gpu") & (rows["use"] == "fit")]
    assert gpu.calibration["n_points"] == len(mine) >= fit.load_settings().tie_below_points
    assert mine["runtime"].nunique() >= 2 and mine["source"].nunique() >= 2


def test_a_class_measured_on_one_cpu_moves_every_cpu(joint):
    """Shared efficiencies: dropping the only transformer row (MobileBERT) changes the laptop's eff_matmul."""
    rows, priors, res = joint
    without = rows[rows["model"] != "mobilebert"]
    again = fit.calibrate_joint(priors, without, load_op_classes(), loo=False)
    a = res["profiles"]["peer_laptop"].targets["cpu"].eff_matmul
    b = again["profiles"]["peer_laptop"].targets["cpu"].eff_matmul
    assert abs(math.log(a / b)) > 1e-3


def test_fit_refuses_rows_whose_precision_differs_from_the_target(joint):
    rows, priors, _ = joint
    rows = rows.copy()
    rows.loc[(rows["profile"] == "cloud_rtx3080") & (rows["use"] == "fit"), "precision"] = "int8"
    with pytest.raises(fit.CalibrationError, match="precision differs"):
        fit.calibrate_joint(priors, rows, load_op_classes(), loo=False)


_HEADER = ",".join(fit.CALIBRATION_COLUMNS)
_GOOD = ("dev,cloud_rtx3080,gpu,resnet50,ResNet-50,fp32,1,MNN,,1710,9500,1,1,3.35,mean,,,fit,"
         "https://example.org/x,table 1,ok")


@settings(max_examples=40, deadline=None)
@given(latency=st.one_of(st.text(max_size=6), st.floats(allow_nan=True, allow_infinity=True).map(str)),
       use=st.sampled_from(["fit", "none", "maybe", ""]))
def test_loader_skips_and_counts_bad_lines(tmp_path_factory, latency, use):
    bad = _GOOD.replace(",3.35,", f",{latency.replace(',', ' ').replace(chr(10), ' ').replace(chr(13), ' ')},")
    bad = bad.replace(",fit,https", f",{use},https")
    path = tmp_path_factory.mktemp("cal") / "m.csv"
    path.write_text("\n".join([_HEADER, _GOOD, bad, _GOOD]) + "\n")
    rows, skipped = fit.load_calibration(path)
    assert len(rows) + len(skipped) == 3
    assert len(rows) >= 2
    for msg in skipped:
        assert "line 3" in msg and msg.startswith("m.csv")


def test_loader_names_missing_columns(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("device,latency_ms\nx,1\n")
    with pytest.raises(fit.CalibrationError, match="missing column"):
        fit.load_calibration(path)


def test_settings_need_a_source(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("measurement_sigma: 0.1\n")
    with pytest.raises(fit.CalibrationError, match="measurement_sigma"):
        fit.load_settings(path)
