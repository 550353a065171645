import numpy as np
import pytest
import yaml

from bench.world.scenarios import (SCENARIO_DIR, ScenarioError, list_scenarios, load_scenario, scenario_from_dict,
                             scenario_traces_frame)


def _raw(name):
    with open(SCENARIO_DIR / f"{name}.yaml") as fh:
        return yaml.safe_load(fh)


def test_at_least_eight_scenarios_cover_required_conditions():
    names = list_scenarios()
    assert len(names) >= 8
    kinds = {load_scenario(n).interference["kind"] for n in names}
    assert {"none", "cpu_heavy", "memory_heavy", "bursty", "app_mix"} <= kinds
    sig = {s["kind"] for n in names for s in load_scenario(n).signal.values()}
    assert {"constant", "step", "random_walk", "periodic", "mobility"} <= sig
    frame = scenario_traces_frame(steps=300)
    caps = frame[(frame.variable == "bandwidth_cap_mbps") & np.isfinite(frame.value)].value
    assert caps.min() <= 0.5 + 1e-9 and caps.max() >= 8.0 - 0.1  # DVFO's 0.5-8 Mbps range


def test_same_seed_same_trace_and_tidy_frame():
    a = scenario_traces_frame(["random_walk", "bursty_corunner"], seed=3, steps=100)
    b = scenario_traces_frame(["random_walk", "bursty_corunner"], seed=3, steps=100)
    assert a.equals(b)
    assert list(a.columns) == ["scenario", "step", "time_s", "variable", "value"]
    c = scenario_traces_frame(["random_walk"], seed=4, steps=100)
    assert not np.array_equal(a[a.scenario == "random_walk"].value, c.value)


def test_random_walk_stays_in_bounds():
    scen = load_scenario("random_walk")
    tr = scen.trace(np.random.default_rng(0), steps=2000)
    spec = scen.signal["wifi"]
    assert tr.signal_dbm["wifi"].min() >= spec["min"] and tr.signal_dbm["wifi"].max() <= spec["max"]


def test_bursty_is_on_off():
    tr = load_scenario("bursty_corunner").trace(np.random.default_rng(0), steps=2000)
    vals = np.unique(tr.cpu_load)
    assert len(vals) == 2 and vals[0] == 0.0
    on = tr.cpu_load > 0
    switches = np.count_nonzero(on[1:] != on[:-1])
    assert 0 < switches < 1000  # Markov persistence, not i.i.d. flipping


def test_mobility_signal_falls_with_distance():
    tr = load_scenario("mobility_walk").trace(np.random.default_rng(0))
    s = tr.signal_dbm["wifi"]
    # walking away for the first ~210 steps: the first tenth is stronger than the tenth before the turn
    assert s[:20].mean() > s[190:210].mean() + 20


def test_replay_reads_csv(tmp_path):
    (tmp_path / "rssi.csv").write_text("t,rssi\n0,-50\n1,-60\n2,-70\n")
    raw = _raw("wifi_strong")
    raw["signal"]["wifi"] = {"kind": "replay", "path": str(tmp_path / "rssi.csv"), "column": "rssi"}
    tr = scenario_from_dict(raw).trace(np.random.default_rng(0), steps=7)
    assert list(tr.signal_dbm["wifi"]) == [-50, -60, -70, -50, -60, -70, -50]


@pytest.mark.parametrize("mutate,pattern", [
    (lambda r: r.update(signl={}), r"unknown field\(s\) \['signl'\].*allowed fields"),
    (lambda r: r["signal"].update(wifi={"kind": "constant", "lvl": "strong"}), r"\['lvl'\].*allowed fields"),
    (lambda r: r["signal"].update(wifi={"kind": "sinus"}), r"signal.wifi.kind: unknown kind \(got 'sinus'\); allowed: constant"),
    (lambda r: r["workload_mix"][0].update(qos=5), r"workload_mix\[0\].*\['qos'\].*allowed fields"),
    (lambda r: r.update(interference={"kind": "bursty", "app": "fortnite", "p_on": .1, "p_off": .1}),
     r"interference.app: unknown app \(got 'fortnite'\); allowed: .*cpu_heavy"),
])
def test_bad_field_stops_with_its_name(mutate, pattern):
    raw = _raw("wifi_strong")
    mutate(raw)
    with pytest.raises(ScenarioError, match=pattern):
        scenario_from_dict(raw)
