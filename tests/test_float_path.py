"""The float path of an int8 target (bench/world/float_path.py): data file, predict and simulator agree."""

import copy
import math

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from bench.errors import BenchError
from bench.world.float_path import (FLOAT_PATH_YAML, FloatPathError, float_target, load_float_paths,
                                    parse_float_paths, resolve)
from bench.world.opclasses import load_op_classes
from bench.world.predict import PredictError, Predictor
from bench.world.profiles import Work, load_profile

RAW = yaml.safe_load(FLOAT_PATH_YAML.read_text(encoding="utf-8"))


def test_int8_list_is_the_workload_tables_rule():
    """The list extends workloads.csv's acc_int8 (torchvision's quantised weights) to the reference models:
    on every suite workload the two agree."""
    paths = load_float_paths()
    wl = pd.read_csv(FLOAT_PATH_YAML.parents[1] / "workloads" / "workloads.csv")
    for w, acc in zip(wl["workload"], wl["acc_int8"]):
        assert (w in paths.int8_models) == math.isfinite(acc), w
    feats = set(load_op_classes()["model"])
    assert paths.int8_models <= feats  # every listed model can be predicted


def test_every_entry_names_real_targets_and_sources():
    paths = load_float_paths()
    for (prof, tgt), fp in paths.paths.items():
        p = load_profile(prof)
        assert p.targets[tgt].precision == "int8" and fp.runs_on in p.targets and fp.runs_on != tgt
        assert fp.source.count("http") >= 3  # runs_on, precision and compute_ratio each cite a source


def test_float_dnn_on_the_phone_dsp_is_the_gpu_computing_in_fp32():
    phone = load_profile("phone_sd845")
    work = Work.from_features(load_op_classes().set_index("model").loc["squeezenet1_0"])
    t, why = resolve(phone, "dsp", "squeezenet1_0")
    gpu = phone.targets["gpu"]
    assert why and t.kind == "gpu" and t.precision == "fp32"
    assert t.gflops_per_ghz == pytest.approx(gpu.gflops_per_ghz * load_float_paths().paths[("phone_sd845", "dsp")].compute_ratio)
    # fp32 moves twice the bytes of fp16 and computes at most as fast: never faster than the fp16 GPU
    assert float(t.work_latency_ms(work)) > float(gpu.work_latency_ms(work))
    # a DNN with an int8 model stays on the Hexagon
    t8, why8 = resolve(phone, "dsp", "inception_v3")
    assert t8 is phone.targets["dsp"] and why8 == ""
    # other targets are never redirected
    assert resolve(phone, "gpu", "squeezenet1_0") == (gpu, "")


def test_predict_ranks_the_gpu_ahead_of_the_dsp_for_a_float_only_dnn():
    p = Predictor()
    for model in ("mobilenet_v1", "squeezenet1_0", "squeezenet1_1", "vit_b_16"):
        gpu = p.predict("phone_sd845", model, "gpu")
        dsp = p.predict("phone_sd845", model, "dsp")
        assert dsp["latency_ms"] > gpu["latency_ms"], model
        assert dsp["precision"] == "fp32" and "float path" in dsp["runtime"] and "no int8 model" in dsp["source"]
        assert dsp["energy_mj"] == pytest.approx(dsp["latency_ms"] * dsp["power_w"])
    q = p.predict("phone_sd845", "mobilenet_v2", "dsp")
    assert q["precision"] == "int8" and "float path" not in q["runtime"]


def test_predict_precision_must_be_what_actually_runs():
    p = Predictor()
    assert p.predict("phone_sd845", "mobilenet_v1", "dsp", precision="fp32")["precision"] == "fp32"
    with pytest.raises(PredictError, match="no int8 model"):
        p.predict("phone_sd845", "mobilenet_v1", "dsp", precision="int8")


def test_a_profile_without_a_float_path_falls_back_to_its_cpu():
    phone = load_profile("phone_sd845")
    empty = parse_float_paths({**RAW, "paths": []})
    t, why = float_target(phone, "dsp", empty)
    assert t is phone.targets["cpu"] and "CPU" in why


def test_simulator_charges_what_predict_answers():
    """A DSP action of the AutoScale world costs what `predict` says for the same DNN: the float path for
    a DNN with no int8 model, the Hexagon for one with."""
    from bench.sim.system import autoscale_system
    system = autoscale_system(max_levels_per_target=1)
    tables = system.sim.tables
    actions = tables.actions
    dsp = int(actions.index[(actions["kind"] == "local") & (actions["target"] == "dsp")][0])
    p = Predictor()
    checked = set()
    for wi, w in enumerate(tables.workloads):
        if w not in p.features.index:
            continue
        res = p.predict("phone_sd845", w, "dsp")
        assert tables.pre_ms[wi, dsp] == pytest.approx(res["latency_ms"], rel=1e-9), w
        checked.add(res["precision"])
    assert checked == {"int8", "fp32"}  # both paths exercised


@pytest.mark.parametrize("mutate,needle", [
    (lambda r: r.pop("paths"), "missing field"),
    (lambda r: r["paths"][0]["compute_ratio"].update(value=2.0), "out of range"),
    (lambda r: r["paths"][0]["compute_ratio"].update(value="half"), "expected a number"),
    (lambda r: r["paths"][0]["precision"].update(value="fp8"), "unknown precision"),
    (lambda r: r["paths"][0]["runs_on"].update(source=""), "non-empty string"),
    (lambda r: r["paths"].append(copy.deepcopy(r["paths"][0])), "duplicate"),
    (lambda r: r["int8_models"].update(value="resnet18"), "list of model names"),
    (lambda r: r.update(extra=1), "unknown field"),
])
def test_bad_file_is_one_clean_error(mutate, needle):
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(FloatPathError, match=needle) as exc:
        parse_float_paths(raw)
    assert "\n" not in str(exc.value) and "float_path.yaml" in str(exc.value)


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8))
_tree = st.recursive(_leaf, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                   st.dictionaries(st.text(max_size=12), kids, max_size=4)),
                     max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(st.one_of(_tree, st.fixed_dictionaries({"int8_models": _tree, "paths": _tree}),
                 st.fixed_dictionaries({"int8_models": st.just(RAW["int8_models"]),
                                        "paths": st.lists(st.dictionaries(
                                            st.sampled_from(["profile", "target", "runs_on", "precision",
                                                             "compute_ratio"]), _tree), max_size=2)})))
def test_any_parsed_yaml_loads_or_fails_cleanly(raw):
    """Whatever a YAML file parses to, the loader returns a valid table or raises its own one-line error."""
    try:
        paths = parse_float_paths(raw)
    except BenchError as exc:
        assert isinstance(exc, FloatPathError) and "\n" not in str(exc)
        return
    for fp in paths.paths.values():
        assert 0 < fp.compute_ratio <= 1 and fp.precision in ("fp32", "fp16", "int8")


@settings(max_examples=30, deadline=None)
@given(ratio=st.floats(min_value=1e-3, max_value=1.0), model=st.sampled_from(["mobilenet_v1", "squeezenet1_1",
                                                                             "alexnet", "vit_b_16"]))
def test_a_slower_float_rate_never_predicts_faster(ratio, model):
    """Latency of the float path falls monotonically as compute_ratio rises, and never beats the fp16 GPU."""
    phone = load_profile("phone_sd845")
    work = Work.from_features(load_op_classes().set_index("model").loc[model])
    raw = copy.deepcopy(RAW)
    raw["paths"][0]["compute_ratio"]["value"] = ratio
    t, _ = float_target(phone, "dsp", parse_float_paths(raw))
    t_hi, _ = float_target(phone, "dsp", parse_float_paths(RAW))
    lat = float(t.work_latency_ms(work))
    assert lat >= float(phone.targets["gpu"].work_latency_ms(work)) * (1 - 1e-9)
    if ratio <= 0.5:
        assert lat >= float(t_hi.work_latency_ms(work)) * (1 - 1e-9)


def test_calibration_predicts_a_float_row_of_the_dsp_through_its_float_path():
    """The Pixel 3's float MobileNet V1 through NNAPI is held out on phone_sd845/dsp at fp32: calibrate predicts
    it on the float path of the fitted profile (never fitted); as a fitted row it is refused."""
    from bench.world import fit
    rows, _ = fit.load_calibration()
    prior = load_profile(fit.PRIORS_DIR / "phone_sd845.yaml")
    res = fit.calibrate_joint([prior], rows, load_op_classes(), loo=False)
    held = res["heldout"]
    row = held[(held["target"] == "dsp") & (held["model"] == "mobilenet_v1")]
    assert len(row) == 1 and row["precision"].iloc[0] == "fp32"
    run_on, _ = float_target(res["profiles"]["phone_sd845"], "dsp", load_float_paths())
    work = Work.from_features(load_op_classes().set_index("model").loc["mobilenet_v1"])
    assert row["predicted_ms"].iloc[0] == pytest.approx(float(run_on.work_latency_ms(work, 710.0)))
    order = fit.target_orderings(rows, res["profiles"])
    mv1 = order[(order["profile"] == "phone_sd845") & (order["model"] == "mobilenet_v1")].iloc[0]
    assert mv1["measured_order"].index("gpu") < mv1["measured_order"].index("dsp") and mv1["match"]
    bad = rows.copy()
    bad.loc[(bad["target"] == "dsp") & (bad["precision"] == "fp32"), "use"] = "fit"
    with pytest.raises(fit.CalibrationError, match="precision differs"):
        fit.calibrate_joint([prior], bad, load_op_classes(), loo=False)


def test_a_float_path_request_takes_either_processors_clock():
    p = Predictor()
    top = p.predict("phone_sd845", "mobilenet_v1", "dsp")
    assert p.predict("phone_sd845", "mobilenet_v1", "dsp", level_mhz="1000")["latency_ms"] == top["latency_ms"]
    low = p.predict("phone_sd845", "mobilenet_v1", "dsp", level_mhz="342")
    assert low["level_mhz"] == 342 and low["latency_ms"] > top["latency_ms"]
    with pytest.raises(PredictError, match="outside the target's range"):
        p.predict("phone_sd845", "mobilenet_v1", "dsp", level_mhz="5000")
