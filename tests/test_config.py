"""params.yaml validation: every bad input names the key and what is allowed."""

import dataclasses

import pytest
import yaml

from bench.config import ADAPTERS, Params, ParamsError, describe, load_params, params_from_dict
from bench.paths import PARAMS_FILE


def test_shipped_params_are_valid_and_complete():
    params = load_params()
    raw = yaml.safe_load(PARAMS_FILE.read_text())
    # every key of the schema appears explicitly in params.yaml, so DVC tracks it
    assert set(raw) == {f.name for f in dataclasses.fields(Params)}
    assert set(raw["profile"]) == {f.name for f in dataclasses.fields(type(params.profile))}
    assert params.seed == raw["seed"]
    # the learner sections override the configs' defaults with what params.yaml says
    assert params.train.autoscale.total_steps == raw["train"]["autoscale"]["total_steps"]
    assert params.train.dvfo.xi_levels == raw["train"]["dvfo"]["xi_levels"]
    assert set(params.evaluate.suites) == set(raw["evaluate"]["suites"])
    for suite in params.evaluate.suites.values():
        assert suite.run in params.train.runs


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ParamsError) as err:
        params_from_dict({"profile": {"repets": 3}})
    msg = str(err.value)
    assert "'profile.repets'" in msg and "did you mean 'profile.repeats'" in msg
    assert "warmup" in msg  # lists the allowed keys


def test_unknown_top_level_key():
    with pytest.raises(ParamsError, match=r"unknown key 'sede'.*allowed keys under the top level"):
        params_from_dict({"sede": 1})


@pytest.mark.parametrize("section,key,value,needle", [
    ("profile", "repeats", 0, "must be >= 1"),
    ("profile", "repeats", "ten", "must be of type int"),
    ("profile", "warmup", True, "must be of type int"),
    ("profile", "adapter", "powermeter", "allowed values"),
    ("profile", "workloads", ["resnet18", "alexnet"], "'alexnet' is not allowed"),
    ("profile", "workloads", "resnet18", "must be a list"),
    ("profile", "reference_profiles", ["phone_x"], "'phone_x' is not allowed"),
])
def test_bad_values_name_the_key(section, key, value, needle):
    with pytest.raises(ParamsError) as err:
        params_from_dict({section: {key: value}})
    assert f"{section}.{key}" in str(err.value)
    assert needle in str(err.value)


def test_adapter_error_lists_all_adapters():
    with pytest.raises(ParamsError) as err:
        params_from_dict({"profile": {"adapter": "x"}})
    for name in ADAPTERS:
        assert name in str(err.value)


def test_negative_seed_rejected():
    with pytest.raises(ParamsError, match="seed"):
        params_from_dict({"seed": -1})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="no such file"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)


def test_section_must_be_mapping():
    with pytest.raises(ParamsError, match="profile must be a mapping"):
        params_from_dict({"profile": [1, 2]})


def test_every_key_is_documented():
    rows = describe()
    assert rows and all(r["doc"].strip() for r in rows)
    assert {"seed", "profile.repeats", "profile.adapter"} <= {r["key"] for r in rows}


def test_replay_adapter_needs_a_log_and_only_then():
    with pytest.raises(ParamsError, match="replay_log"):
        params_from_dict({"profile": {"adapter": "replay"}})
    with pytest.raises(ParamsError, match="replay_log"):
        params_from_dict({"profile": {"adapter": "none", "replay_log": "x.log"}})
    assert params_from_dict({"profile": {"adapter": "replay", "replay_log": "x.log"}}).profile.replay_log == "x.log"
