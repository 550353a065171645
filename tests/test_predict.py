"""`python -m bench predict` and `python -m bench profiles` as a user calls them."""

import json
import math

import pandas as pd
import pytest

from bench.cli import main
from bench.world.opclasses import load_op_classes
from bench.world.predict import PredictError, Predictor, predict_frame
from bench.world.profiles import Work, load_profile


def test_single_row_json_is_the_profile_model(capsys):
    assert main(["predict", "--profile", "phone_sd845", "--workload", "mobilenet_v2", "--target", "gpu",
                 "--level-mhz", "520", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    gpu = load_profile("phone_sd845").targets["gpu"]
    work = Work.from_features(load_op_classes().set_index("model").loc["mobilenet_v2"])
    assert res["latency_ms"] == pytest.approx(float(gpu.work_latency_ms(work, 520.0)))
    assert res["power_w"] == pytest.approx(float(gpu.power_w(520.0)))
    assert res["energy_mj"] == pytest.approx(res["latency_ms"] * res["power_w"])
    assert res["precision"] == "fp16" and res["runtime"] == gpu.runtime


def test_lower_clock_is_slower_and_max_is_the_default():
    p = Predictor()
    top = p.predict("jetson_xavier_nx", "resnet50", "gpu")
    low = p.predict("jetson_xavier_nx", "resnet50", "gpu", level_mhz="306")
    assert top["level_mhz"] == load_profile("jetson_xavier_nx").targets["gpu"].freq_mhz[-1]
    assert low["latency_ms"] > top["latency_ms"] and low["power_w"] < top["power_w"]


def test_profile_file_path_is_accepted(tmp_path):
    path = load_profile("cloud_rtx3080").path
    res = Predictor().predict(str(path), "resnet18", "gpu")
    assert res["profile"] == "cloud_rtx3080" and res["latency_ms"] > 0


@pytest.mark.parametrize("kwargs,needle", [
    ({"profile": "no_such"}, "no device profile"),
    ({"target": "npu"}, "has targets"),
    ({"workload": "bert_large"}, "no op-class features"),
    ({"level_mhz": "5000"}, "outside the target's range"),
    ({"level_mhz": "fast"}, "not a number"),
    ({"precision": "int8"}, "runs fp32"),
])
def test_bad_requests_say_what_is_allowed(kwargs, needle):
    req = {"profile": "phone_sd845", "workload": "resnet18", "target": "cpu", **kwargs}
    with pytest.raises(PredictError, match=needle):
        Predictor().predict(**req)


def test_csv_round_trip_keeps_bad_rows_with_their_error(tmp_path, capsys):
    src = tmp_path / "in.csv"
    pd.DataFrame([
        {"profile": "phone_sd845", "workload": "resnet18", "target": "cpu", "level_mhz": "max", "precision": "fp32"},
        {"profile": "phone_sd845", "workload": "resnet18", "target": "dsp", "level_mhz": "", "precision": ""},
        {"profile": "phone_sd845", "workload": "resnet18", "target": "tpu", "level_mhz": "", "precision": ""},
    ]).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    assert main(["predict", "--csv", str(src), "--out", str(out)]) == 0
    res = pd.read_csv(out, keep_default_na=False)
    assert len(res) == 3 and list(res.columns[:5]) == ["profile", "workload", "target", "level_mhz", "precision"]
    assert float(res.latency_ms[0]) > 0 and float(res.energy_mj[1]) > 0
    assert "tpu" in res.error[2] and res.latency_ms[2] == ""
    assert "1 failed" in capsys.readouterr().err


def test_csv_without_required_columns_exits_2(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("workload\nresnet18\n")
    assert main(["predict", "--csv", str(src), "--out", str(tmp_path / "o.csv")]) == 2
    assert "lacks column 'profile'" in capsys.readouterr().err


def test_missing_arguments_exit_2(capsys):
    assert main(["predict", "--profile", "phone_sd845"]) == 2
    assert "--workload" in capsys.readouterr().err


def test_profiles_shows_runtime_calibration_error_and_points(capsys):
    assert main(["profiles", "phone_sd845"]) == 0
    out = capsys.readouterr().out
    cpu = load_profile("phone_sd845").targets["cpu"]
    assert cpu.runtime in out and "sourced_points" in out and "loo_median_err" in out
    assert f"{100 * cpu.calibration['loo_median_abs_err']:.1f}%" in out


def test_predict_frame_counts_failures():
    rows = pd.DataFrame({"profile": ["peer_laptop", "peer_laptop"], "workload": ["vit_b_16", "nope"],
                         "target": ["cpu", "cpu"]})
    out, failed = predict_frame(rows)
    assert failed == 1 and math.isnan(out.latency_ms[1]) and out.error[0] == ""
