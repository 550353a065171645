"""Scenario, profile and link loaders: a bad number or name is refused with where, value and what is allowed."""

import copy

import numpy as np
import pytest
import yaml

from bench.paths import PROFILES_DIR
from bench.world.network import NetworkError, link_from_dict, profile_dir
from bench.world.profiles import ProfileError, profile_from_dict
from bench.world.scenarios import SCENARIO_DIR, ScenarioError, load_scenario, scenario_from_dict


def _raw(directory, name):
    return yaml.safe_load((directory / f"{name}.yaml").read_text())


def _set(doc, path, value):
    doc = copy.deepcopy(doc)
    obj = doc
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value
    return doc


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name,path,value,needle", [
    ("wifi_strong", ("signal", "wifi"), {"kind": "constant", "value": NAN}, "signal.wifi.value: must be finite (got nan)"),
    ("wifi_strong", ("signal", "wifi"), {"kind": "constant", "value": -1e9}, "allowed: a finite number >= -200"),
    ("wifi_strong", ("signal", "wifi"), {"kind": "constant", "value": "-60"}, "value: unknown level (got '-60'); allowed: ['medium', 'strong', 'weak'] or a number"),
    ("wifi_strong", ("interference",), {"kind": "constant", "cpu": 1.5, "mem": 0}, "interference.cpu: out of range (got 1.5)"),
    ("wifi_strong", ("interference",), {"kind": "constant", "cpu": NAN, "mem": 0}, "interference.cpu: must be finite"),
    ("wifi_strong", ("interference",), {"kind": "cpu_heavy", "intensity": -0.1}, "interference.intensity: out of range"),
    ("wifi_strong", ("steps",), 0, "steps: out of range (got 0)"),
    ("wifi_strong", ("steps",), 2.5, "steps: expected an integer"),
    ("wifi_strong", ("interarrival_ms",), INF, "interarrival_ms: must be finite"),
    ("wifi_strong", ("workload_mix", 0, "workload"), "alexnet", "workload_mix[0].workload: unknown workload (got 'alexnet')"),
    ("wifi_strong", ("workload_mix", 0, "qos_ms"), -5, "workload_mix[0].qos_ms: out of range"),
    ("wifi_strong", ("workload_mix", 0, "weight"), NAN, "workload_mix[0].weight: must be finite"),
    ("wifi_strong", ("workload_mix", 0, "max_accuracy_loss"), 2, "max_accuracy_loss: out of range"),
    ("mobility_walk", ("signal", "wifi", "max_m"), 1, "max_m: must exceed min_m"),
    ("mobility_walk", ("signal", "wifi", "shadowing_corr"), 1.5, "shadowing_corr: out of range"),
    ("signal_steps", ("signal", "wifi", "at"), [0, 5, 5], "at[2]: values must be strictly ascending"),
    ("random_walk", ("signal", "wifi", "step_std"), -1, "step_std: out of range"),
    ("periodic_fading", ("signal", "wifi", "period_steps"), 0, "period_steps: out of range"),
    ("app_mix_commute", ("interference", "apps"), ["game", "fortnite"], "apps[1]: unknown app (got 'fortnite')"),
    ("bursty_corunner", ("interference", "p_on"), 1.2, "p_on: out of range"),
])
def test_scenario_numbers_and_names(name, path, value, needle):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(_set(_raw(SCENARIO_DIR, name), path, value), where=f"{name}.yaml")
    assert needle in str(err.value), str(err.value)
    assert str(err.value).startswith(f"{name}.yaml")


def test_shipped_scenarios_realise_to_finite_traces():
    from bench.world.scenarios import list_scenarios

    for name in list_scenarios():
        tr = load_scenario(name).trace(np.random.default_rng(1), steps=100)
        assert all(np.all(np.isfinite(v)) for v in tr.signal_dbm.values())
        assert np.all(np.isfinite(tr.cpu_load)) and np.all(np.isfinite(tr.qos_ms))


def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match=r"unknown scenario \(got 'wifi_on_mars'\); allowed: .*wifi_strong"):
        load_scenario("wifi_on_mars")


@pytest.mark.parametrize("path,value,needle", [
    (("targets", "cpu", "freq_mhz", "value"), [0, 500], "freq_mhz.value[0]: out of range (got 0)"),
    (("targets", "cpu", "voltage_v", "value"), [-0.5, 1.0], "voltage_v.value[0]: out of range"),
    (("targets", "cpu", "voltage_v", "value"), [NAN, 1.0], "voltage_v.value[0]: must be finite"),
    (("targets", "cpu", "fixed_ms", "value"), INF, "fixed_ms.value: must be finite"),
    (("targets", "cpu", "static_power_w", "value"), -1, "static_power_w.value: out of range"),
    (("targets", "cpu", "gflops_per_ghz", "value"), 0, "gflops_per_ghz.value: out of range"),
    (("idle_power_w", "value"), NAN, "idle_power_w.value: must be finite"),
    (("radios",), ["wifi", "5g"], "radios[1]: unknown radio (data/network) (got '5g')"),
    (("targets", "cpu", "measurements"), [{"workload": "alexnet", "freq_mhz": 1000, "latency_ms": 1, "source": "x"}],
     "measurements[0].workload: unknown workload"),
    (("targets", "cpu", "measurements"), [{"workload": "resnet18", "freq_mhz": 1000, "latency_ms": NAN, "source": "x"}],
     "measurements[0].latency_ms: must be finite"),
])
def test_profile_numbers_and_names(path, value, needle):
    with pytest.raises(ProfileError) as err:
        profile_from_dict(_set(_raw(PROFILES_DIR, "phone_sd845"), path, value), where="phone_sd845.yaml")
    assert needle in str(err.value), str(err.value)


def test_profile_nan_only_when_declared_not_measured():
    doc = _set(_raw(PROFILES_DIR, "phone_sd845"), ("idle_power_w",), {"value": NAN, "source": "not measured: no meter"})
    assert np.isnan(profile_from_dict(doc).idle_power_w)


@pytest.mark.parametrize("path,value,needle", [
    (("signal_dbm", "value"), [-90, NAN, -50], "signal_dbm.value[1]: must be finite"),
    (("uplink_mbps", "value"), [-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], "uplink_mbps.value[0]: out of range"),
    (("loss_slope_db", "value"), 0, "loss_slope_db.value: out of range (got 0)"),
    (("tail_ms", "value"), -5, "tail_ms.value: out of range"),
    (("rtt_ms", "value"), "fast", "rtt_ms.value: expected a number"),
    (("levels_dbm", "value", "weak"), NAN, "levels_dbm.weak: must be finite"),
])
def test_link_numbers(path, value, needle):
    with pytest.raises(NetworkError) as err:
        link_from_dict(_set(_raw(profile_dir(), "wifi"), path, value), where="wifi.yaml")
    assert needle in str(err.value), str(err.value)


def test_unknown_workload_is_the_layer_error():
    from bench.errors import WorkloadError
    from bench.world.workloads import get_spec

    for bad in ("alexnet", ["resnet18"], None, "../../x"):
        with pytest.raises(WorkloadError, match=r"workload: unknown workload \(got .*\); allowed: .*resnet18"):
            get_spec(bad)
