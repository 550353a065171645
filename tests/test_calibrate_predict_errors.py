"""Bad input to `python -m bench calibrate` and `python -m bench predict`: one line, exit 2, never a traceback.

Table-driven (each known-bad input of issue 27 item 5) plus Hypothesis over the cell that is
corrupted and its value: whatever lands in a numeric column, the loader either reads a finite
positive number or names the file, line and column.
"""

import csv
import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.world import fit
from bench.world.fit import CalibrationError, load_calibration, load_settings
from bench.world.predict import read_rows

MEAS = fit.MEASUREMENTS_CSV


def _rows():
    with open(MEAS, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def _first_fit_row(rows):
    h = rows[0]
    return next(i for i, r in enumerate(rows) if i and r[h.index("use")] == "fit")


def _set(rows, col, value):
    rows = [list(r) for r in rows]
    i = _first_fit_row(rows)
    rows[i][rows[0].index(col)] = value
    return rows, i + 1  # the file line of that row


def _calibrate(capsys, *args):
    rc = main(["calibrate", *args])
    err = capsys.readouterr().err.strip()
    return rc, err


@pytest.mark.parametrize("col,value", [
    ("latency_ms", "inf"), ("latency_ms", "nan"), ("latency_ms", "-3"), ("latency_ms", "fast"),
    ("freq_mhz", "inf"), ("compute_scale", "inf"), ("memory_scale", "0"), ("mem_freq_mhz", "1e400"),
])
def test_calibrate_refuses_a_bad_number_naming_file_line_column(tmp_path, capsys, col, value):
    rows, line = _set(_rows(), col, value)
    path = _write(tmp_path / "m.csv", rows)
    rc, err = _calibrate(capsys, "--measurements", str(path))
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert f"m.csv: line {line}, column {col}" in err and value in err and "allowed" in err


@pytest.mark.parametrize("mutate,needle", [
    (lambda r: r[1].append("extra"), "cells but the header has"),
    (lambda r: r.__setitem__(1, r[1][:4]), "cells but the header has"),
    (lambda r: r.__setitem__(slice(1, None), []), "no usable row"),
])
def test_calibrate_refuses_ragged_and_header_only_files(tmp_path, capsys, mutate, needle):
    rows = [list(r) for r in _rows()]
    mutate(rows)
    rc, err = _calibrate(capsys, "--measurements", str(_write(tmp_path / "m.csv", rows)))
    assert rc == 2 and needle in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("encode", [lambda t: t.encode("utf-16"), lambda t: t.replace("Xiaomi", "Xiaom\xef").encode("latin-1", "replace")])
def test_calibrate_refuses_non_utf8(tmp_path, capsys, encode):
    path = tmp_path / "m.csv"
    path.write_bytes(encode(MEAS.read_text(encoding="utf-8")))
    rc, err = _calibrate(capsys, "--measurements", str(path))
    assert rc == 2 and "not UTF-8" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("text,needle", [
    ("measurement_sigma: {value: abc, source: x}", "measurement_sigma.value"),
    ("bound_factor: {value: 1, source: x}", "bound_factor.value"),
    ("bound_factor: {value: 0.5, source: x}", "bound_factor.value"),
    ("prior_sigma: {value: .inf, source: x}", "prior_sigma.value"),
    ("prior_sigma: {value: .nan, source: x}", "prior_sigma.value"),
    ("measurement_sigma: 0.2", "expected {value"),
    ("fitted_parameters: {value: 3, source: x}", "fitted_parameters.value"),
    ("fitted_parameters: {value: [name], source: x}", "fitted_parameters.value"),
    ("nonsense: {value: 1, source: x}", "unknown setting"),
    ("[1, 2]", "expected a mapping"),
])
def test_calibrate_refuses_bad_settings(tmp_path, capsys, text, needle):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    rc, err = _calibrate(capsys, "--settings", str(path))
    assert rc == 2 and needle in err and "s.yaml" in err and len(err.splitlines()) == 1


_NUMERIC = ["latency_ms", "freq_mhz", "mem_freq_mhz", "compute_scale", "memory_scale", "power_w"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(col=st.sampled_from(_NUMERIC),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                       st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                               max_size=8)))
def test_loader_reads_a_finite_positive_number_or_names_the_cell(tmp_path_factory, col, value):
    rows, line = _set(_rows(), col, value)
    path = _write(tmp_path_factory.mktemp("h") / "m.csv", rows)
    frame, skipped = load_calibration(path)
    bad = [s for s in skipped if f"line {line}" in s]
    if bad:
        assert f"column {col}" in bad[0] or "cells but" in bad[0] or "not CSV" in bad[0]
    else:
        got = frame.loc[frame["line"] == line, col].iloc[0]
        assert (col == "power_w" and math.isnan(got)) or (math.isfinite(got) and got > 0)


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from(["measurement_sigma", "prior_sigma", "bound_factor"]),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.text(max_size=5),
                       st.booleans(), st.none()))
def test_settings_are_finite_and_in_range_or_refused(tmp_path_factory, key, value):
    path = tmp_path_factory.mktemp("s") / "s.yaml"
    path.write_text(yaml.safe_dump({key: {"value": value, "source": "assumed: test"}}))
    try:
        s = load_settings(path)
    except CalibrationError as exc:
        assert key in str(exc) and "\n" not in str(exc)
        return
    got = getattr(s, key)
    assert math.isfinite(got) and got > (1 if key == "bound_factor" else 0)


# --------------------------------------------------------------------------- predict

def _predict(capsys, *args):
    rc = main(["predict", *args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip()


@pytest.mark.parametrize("data,needle", [
    ("profile,workload,target\nphone_sd845,resnet18,cpu\n".encode("utf-16"), "not UTF-8"),
    ("profile,workload,target\nphone_sd845,resnet18,cpu\xe9\n".encode("latin-1"), "not UTF-8"),
    (b"profile,workload,target\nphone_sd845,resnet18,cpu,1,2\n", "line 2: 5 cells"),
    (b"profile,workload,target\nphone_sd845,resnet18\n", "line 2: 2 cells"),
    (b"", "empty file"),
    (b"profile,workload,target\nphone\x00,resnet18,cpu\n", "NUL"),
    (b"profile,profile,target\nphone_sd845,resnet18,cpu\n", "duplicate column"),
])
def test_predict_refuses_unreadable_csv(tmp_path, capsys, data, needle):
    src = tmp_path / "in.csv"
    src.write_bytes(data)
    rc, _, err = _predict(capsys, "--csv", str(src), "--out", str(tmp_path / "out.csv"))
    assert rc == 2 and needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


def test_predict_out_in_a_missing_directory_is_one_line(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text("profile,workload,target\nphone_sd845,resnet18,cpu\n")
    rc, _, err = _predict(capsys, "--csv", str(src), "--out", str(tmp_path / "nope" / "out.csv"))
    assert rc == 2 and "does not exist" in err and len(err.splitlines()) == 1


@pytest.fixture
def unmetered_profile(tmp_path):
    data = yaml.safe_load(fit.PROFILES_DIR.joinpath("cloud_rtx3080.yaml").read_text())
    gpu = data["targets"]["gpu"]
    for key in ("static_power_w", "dynamic_power_w_at_max"):
        gpu[key] = {"value": float("nan"), "source": "not measured: no energy meter on this host"}
    path = tmp_path / "unmetered.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unmeasured_power_gives_nan_with_the_reason_and_valid_json(capsys, unmetered_profile):
    rc, out, _ = _predict(capsys, "--profile", str(unmetered_profile), "--workload", "resnet18", "--target", "gpu",
                          "--json")
    assert rc == 0
    res = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in --json output"))
    assert res["power_w"] is None and res["energy_mj"] is None and res["latency_ms"] > 0
    assert "not measured" in res["error"] and "static_power_w" in res["error"]


def test_unmeasured_power_csv_row_says_why(tmp_path, capsys, unmetered_profile):
    src = tmp_path / "in.csv"
    src.write_text(f"profile,workload,target\nphone_sd845,resnet18,cpu\n{unmetered_profile},resnet18,gpu\n")
    rc, _, _ = _predict(capsys, "--csv", str(src), "--out", str(tmp_path / "out.csv"))
    out = read_rows(tmp_path / "out.csv")
    assert rc == 0
    assert out.loc[0, "error"] == "" and float(out.loc[0, "energy_mj"]) > 0
    assert out.loc[1, "power_w"] == "" and "not measured" in out.loc[1, "error"]


def test_json_of_a_finite_prediction_is_strict_json(capsys):
    rc, out, _ = _predict(capsys, "--profile", "phone_sd845", "--workload", "vit_b_16", "--target", "gpu", "--json")
    assert rc == 0 and json.loads(out)["error"] == ""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(level=st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6)))
def test_any_level_is_predicted_in_range_or_named(tmp_path_factory, level):
    d = tmp_path_factory.mktemp("p")
    src = d / "in.csv"
    with open(src, "w", newline="") as fh:
        csv.writer(fh).writerows([["profile", "workload", "target", "level_mhz"], ["phone_sd845", "resnet18", "gpu", level]])
    rc = main(["predict", "--csv", str(src), "--out", str(d / "out.csv")])
    if "\x00" in level:  # a NUL character: the whole file is refused
        assert rc == 2
        return
    assert rc == 0
    row = read_rows(d / "out.csv").iloc[0]
    if row["error"]:
        assert row["error"].startswith("row 2:") and row["latency_ms"] == ""
    else:
        assert math.isfinite(float(row["latency_ms"])) and float(row["latency_ms"]) > 0
