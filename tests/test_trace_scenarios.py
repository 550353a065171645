"""Trace-driven scenarios (kind ``trace``), scenario families and the shipped traces (data/traces)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from fuzz_support import FUZZ
from hypothesis import given
from hypothesis import strategies as st

import bench.validate as V
from bench.paths import DATA_DIR
from bench.world.scenarios import SCENARIO_DIR, ScenarioError, list_scenarios, load_scenario, scenario_from_dict

TRACES = DATA_DIR / "traces"
BASE = yaml.safe_load((SCENARIO_DIR / "trace_lte_driving.yaml").read_text())


def _write(path, text):
    path.write_text(text)
    return path


def _scenario(tmp_path, cap: dict | None = None, lte: dict | None = None, **top):
    doc = copy.deepcopy(BASE)
    if cap is not None:
        doc["bandwidth_cap_mbps"] = cap
    if lte is not None:
        doc["signal"]["lte"] = lte
    doc.update(top)
    return scenario_from_dict(doc, where="t.yaml", path=tmp_path / "t.yaml")


# --------------------------------------------------------------------------- the trace kind

def test_trace_is_sampled_and_held_at_the_step_times(tmp_path):
    _write(tmp_path / "tr.csv", "time_s,mbps\n0,1\n1,2\n2,3\n3,4\n")
    spec = {"kind": "trace", "path": "tr.csv", "random_offset": False}
    scen = _scenario(tmp_path, cap=spec, interarrival_ms=500)
    cap = scen.trace(np.random.default_rng(0), steps=10).bandwidth_cap_mbps
    # steps every 0.5 s: each 1 s sample holds for two steps; the 4 s trace loops
    assert np.allclose(cap, [1, 1, 2, 2, 3, 3, 4, 4, 1, 1])
    scaled = _scenario(tmp_path, cap={**spec, "time_scale": 2.0}, interarrival_ms=500)
    assert np.allclose(scaled.trace(np.random.default_rng(0), steps=5).bandwidth_cap_mbps, [1, 2, 3, 4, 1])
    held = _scenario(tmp_path, cap={**spec, "loop": False}, interarrival_ms=1000)
    assert np.allclose(held.trace(np.random.default_rng(0), steps=6).bandwidth_cap_mbps, [1, 2, 3, 4, 4, 4])


def test_start_offset_comes_from_the_seed(tmp_path):
    scen = load_scenario("trace_lte_driving")
    a, b = (scen.trace(np.random.default_rng(s), steps=200) for s in (1, 1))
    assert np.array_equal(a.bandwidth_cap_mbps, b.bandwidth_cap_mbps)
    offsets = {tuple(scen.trace(np.random.default_rng(s), steps=50).bandwidth_cap_mbps) for s in range(6)}
    assert len(offsets) > 1  # different seeds start at different points of the trace
    # the cap has its own child stream: changing the interference process does not move it
    other = scenario_from_dict({**copy.deepcopy(BASE), "interference": {"kind": "cpu_heavy"}}, where="o.yaml",
                               path=SCENARIO_DIR / "o.yaml")
    assert np.array_equal(other.trace(np.random.default_rng(1), steps=200).bandwidth_cap_mbps, a.bandwidth_cap_mbps)


def test_trace_values_are_the_files_values():
    scen = load_scenario("trace_lte_stationary")
    lte = scen.trace(np.random.default_rng(3), steps=500).signal_dbm["lte"]
    rsrp = V.read_csv_column(TRACES / "ucc_lte_static_download.csv", "rsrp_dbm", ScenarioError)
    assert set(np.unique(lte)) <= set(np.unique(rsrp))


@pytest.mark.parametrize("text,needle", [
    ("time_s,mbps\n0,1\n0,2\n", r"line 3: time_s does not increase"),
    ("time_s,mbps\n0,1\n1,1,5\n", r"line 3: row has 3 cells but the header has 2"),
    ("time_s,mbps\n0,1\n1,fast\n", r"line 3: mbps: not a number"),
    ("time_s,mbps\n0,1\n1,-2\n", r"line 3"),
    ("time_s,rate\n0,1\n", r"no column 'mbps'"),
    ("mbps\n1\n", r"no column 'time_s'"),
    ("", r"empty CSV"),
])
def test_bad_trace_file_is_one_line_naming_file_and_line(tmp_path, text, needle):
    _write(tmp_path / "bad.csv", text)
    with pytest.raises(ScenarioError, match=needle) as exc:  # refused when the scenario is loaded
        _scenario(tmp_path, cap={"kind": "trace", "path": "bad.csv"})
    assert "bad.csv" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("field,value,needle", [
    ("time_scale", 0, "time_scale"), ("time_scale", "fast", "time_scale"), ("random_offset", "yes", "random_offset"),
    ("loop", 1, "loop"), ("path", "nowhere.csv", "file not found"), ("columns", "mbps", "unknown field"),
])
def test_bad_trace_fields_are_named(tmp_path, field, value, needle):
    spec = {"kind": "trace", "path": str(TRACES / "mahimahi_verizon_lte_short_up.csv"), field: value}
    with pytest.raises(ScenarioError, match=needle):
        _scenario(tmp_path, cap=spec)


def test_bad_trace_file_exits_2_through_the_cli(tmp_path, monkeypatch, capsys):
    """params validation loads the training scenarios (families), so a bad shipped trace stops it: exit 2, one line."""
    import bench.world.scenarios as S
    from bench.cli import main

    (tmp_path / "traces").mkdir()
    for f in TRACES.glob("*.csv"):
        _write(tmp_path / "traces" / f.name, f.read_text())
    _write(tmp_path / "traces" / "mahimahi_att_lte_driving_up.csv", "time_s,mbps\n0,1\n1,1,5\n")
    monkeypatch.setattr(S, "DATA_DIR", tmp_path)
    assert main(["params"]) == 2
    err = capsys.readouterr().err.strip()
    assert "mahimahi_att_lte_driving_up.csv line 3" in err and len(err.splitlines()) == 1


@FUZZ
@given(scale=st.one_of(st.floats(allow_nan=True), st.integers(-5, 10**7), st.text(max_size=5), st.none()),
       offset=st.one_of(st.booleans(), st.integers(), st.none()), loop=st.one_of(st.booleans(), st.text(max_size=3)),
       column=st.sampled_from(["mbps", "time_s", "rsrp_dbm", "", "MBPS"]), seed=st.integers(0, 2**32 - 1))
def test_fuzz_trace_fields(scale, offset, loop, column, seed):
    spec = {"kind": "trace", "path": str(TRACES / "mahimahi_tmobile_lte_short_up.csv"), "time_scale": scale,
            "random_offset": offset, "loop": loop, "column": column}
    try:
        scen = scenario_from_dict({**copy.deepcopy(BASE), "bandwidth_cap_mbps": spec}, where="f.yaml",
                                  path=SCENARIO_DIR / "f.yaml")
    except ScenarioError as exc:
        assert "\n" not in str(exc)
        return
    cap = scen.trace(np.random.default_rng(seed), steps=30).bandwidth_cap_mbps
    assert np.all(np.isfinite(cap)) and np.all(cap > 0)


# --------------------------------------------------------------------------- CSV rows with extra cells

@FUZZ
@given(rows=st.lists(st.tuples(st.integers(-120, -40), st.integers(-140, -44)), min_size=1, max_size=20),
       bad=st.integers(0, 19), frac=st.integers(0, 9))
def test_decimal_comma_rows_are_refused_never_shifted(tmp_path_factory, rows, bad, frac):
    """A row with more cells than the header (``1,5,-62`` for ``1.5,-62``) is refused naming its line."""
    bad = bad % len(rows)
    lines = ["time_s,wifi_dbm,lte_dbm"] + [f"{i},{w},{l}" for i, (w, l) in enumerate(rows)]
    lines[bad + 1] = f"{bad},{frac},{rows[bad][0]},{rows[bad][1]}"  # "bad,frac" was meant as one decimal
    path = tmp_path_factory.mktemp("csv") / "sig.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ScenarioError, match=rf"sig.csv line {bad + 2}: row has 4 cells but the header has 3"):
        V.read_csv_column(path, "wifi_dbm", ScenarioError, ge=-200, le=50)


# --------------------------------------------------------------------------- families

@FUZZ
@given(st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2),
                 st.from_regex(r"[a-z0-9][a-z0-9+-]{0,8}(/[a-z0-9][a-z0-9+-]{0,8}){0,3}", fullmatch=True)))
def test_fuzz_family_field(value):
    doc = {**copy.deepcopy(BASE), "family": value}
    try:
        scen = scenario_from_dict(doc, where="f.yaml")
    except ScenarioError as exc:
        assert "f.yaml.family" in str(exc) and "\n" not in str(exc)
        return
    assert scen.family == value and isinstance(scen.family, str)


def test_family_defaults_to_the_name():
    doc = copy.deepcopy(BASE)
    doc.pop("family")
    assert scenario_from_dict(doc).family == doc["name"]


def test_every_shipped_scenario_has_a_pre_registered_family():
    for name in list_scenarios():
        raw = yaml.safe_load((SCENARIO_DIR / f"{name}.yaml").read_text())
        assert raw.get("family", "").count("/") == 2, name  # signal process / co-runner mix / DNN mix


def test_held_out_family_in_training_is_refused():
    from bench.config import ParamsError, params_from_dict
    from bench.paths import PARAMS_FILE

    raw = yaml.safe_load(PARAMS_FILE.read_text())
    params_from_dict(raw)  # the shipped split is valid
    raw["evaluate"]["suites"]["dvfo_jetson"]["heldout_scenarios"].append("heldout_dvfo_markov_cap")
    with pytest.raises(ParamsError, match=r"heldout_dvfo_markov_cap.*cap-randomwalk.*share a family") as exc:
        params_from_dict(raw)
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- the shipped traces

def test_shipped_traces_are_small_sourced_and_valid():
    files = sorted(TRACES.glob("*.csv"))
    assert len(files) >= 6
    assert sum(f.stat().st_size for f in TRACES.iterdir()) < 2e6
    readme = (TRACES / "README.md").read_text()
    assert (TRACES / "COPYING-GPL-3.0").is_file() and "GPL" in readme
    for f in files:
        assert f.name in readme, f.name
        times = V.read_csv_column(f, "time_s", ScenarioError, ge=0)
        mbps = V.read_csv_column(f, "mbps", ScenarioError, ge=0, le=1e4)
        assert np.all(np.diff(times) > 0) and len(times) == len(mbps) > 100


def test_trace_scenarios_are_in_both_suites_and_mostly_held_out():
    from bench.config import load_params

    p = load_params()
    trace_scen = {n for n in list_scenarios() if "trace" in n}
    assert len(trace_scen) >= 6
    held = {s for suite in p.evaluate.suites.values() for s in suite.heldout_scenarios} & trace_scen
    assert len(held) >= 4
    for suite in p.evaluate.suites.values():
        assert trace_scen & set(suite.scenarios + suite.heldout_scenarios)


def _factors(family: str) -> tuple[str, str, str]:
    signal, corunner, dnns = family.split("/")
    return signal, corunner, dnns


@pytest.mark.parametrize("suite", ["dvfo_jetson", "dvfo_phone"])
def test_dvfo_held_out_families_are_held_out_combinations_of_seen_levels(suite):
    """Issue 23 item 1/3: a held-out family is an unseen combination of a co-runner mix and a DNN mix the learner
    trained on, never an unseen level (a learner cannot act on a condition its training never varied; before
    dvfo_camera_bandwidth_sweep the camera co-runner was such a level). Signal processes: the trace families
    differ by trace source, so only the co-runner and DNN factors are checked level by level."""
    from bench.config import load_params

    p = load_params()
    trained = {load_scenario(s).family for s in p.train.dvfo.scenarios}
    seen = [set(level) for level in zip(*map(_factors, trained))]
    for name in p.evaluate.suites[suite].heldout_scenarios:
        family = load_scenario(name).family
        assert family not in trained, name
        _, corunner, dnns = _factors(family)
        assert corunner in seen[1], (name, corunner, seen[1])
        assert dnns in seen[2], (name, dnns, seen[2])


def test_dvfo_training_conditions_vary_the_corunner_loads():
    """The DVFO learner standardises the condition fields over one episode of every training scenario and
    ignores a field that never varies (obs_std = inf): with the camera co-runner in training its loads vary."""
    import dataclasses

    from bench.config import load_params
    from bench.pipeline.training import make_config
    from bench.policies.dvfo import condition_stats, make_env
    from bench.sim.envs import DVFO_CONDITION_FIELDS

    p = load_params()
    shipped = {f.name: getattr(p.train.dvfo, f.name) for f in dataclasses.fields(p.train.dvfo)}
    config = make_config("dvfo", "jetson_xavier_nx", shipped, root_seed=7, run="dvfo_jetson")
    envs = [make_env(config, s) for s in config.scenarios]
    _, _, std = condition_stats(envs, np.random.default_rng(0))
    for field in ("cpu_load", "mem_load", "gpu_load"):
        assert np.isfinite(std[DVFO_CONDITION_FIELDS.index(field)]), field
