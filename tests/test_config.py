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
    ("profile", "repeats", 0, ">= 1"),
    ("profile", "repeats", "ten", "must be of type int"),
    ("profile", "warmup", True, "must be of type int"),
    ("profile", "adapter", "powermeter", "allowed: auto"),
    ("profile", "workloads", ["resnet18", "alexnet"], "not allowed (got 'alexnet')"),
    ("profile", "workloads", "resnet18", "must be a list"),
    ("profile", "reference_profiles", ["phone_x"], "not allowed (got 'phone_x')"),
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
    with pytest.raises(ParamsError, match="profile: must be a mapping"):
        params_from_dict({"profile": [1, 2]})


def test_every_key_is_documented():
    rows = describe()
    assert rows and all(r["doc"].strip() for r in rows)
    assert {"seed", "profile.repeats", "profile.adapter"} <= {r["key"] for r in rows}


def test_replay_adapter_needs_an_existing_log_and_only_then(tmp_path):
    with pytest.raises(ParamsError, match="replay_log"):
        params_from_dict({"profile": {"adapter": "replay"}})
    with pytest.raises(ParamsError, match="replay_log"):
        params_from_dict({"profile": {"adapter": "none", "replay_log": "x.log"}})
    with pytest.raises(ParamsError, match=r"profile.replay_log: no such file.*got 'x.log'"):
        params_from_dict({"profile": {"adapter": "replay", "replay_log": "x.log"}}, base_dir=tmp_path)
    (tmp_path / "x.log").write_text("")
    got = params_from_dict({"profile": {"adapter": "replay", "replay_log": "x.log"}}, base_dir=tmp_path).profile
    assert got.replay_log == str((tmp_path / "x.log").resolve())


# --------------------------------------------------------------------------- numbers, names, paths, YAML


def _numeric_fields():
    """(dotted section, field, type) of every int/float field in the schema, learner configs included."""
    import typing

    from bench import config

    out = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = f.metadata["type"]() if "type" in f.metadata else hints[f.name]
            if dataclasses.is_dataclass(tp):
                walk(tp, f"{prefix}{f.name}.")
                continue
            text = str(tp)
            if "int" in text or "float" in text:
                out.append((cls, f, prefix + f.name))
    walk(config.Params, "")
    walk(config.EvalSuite, "evaluate.suites.x.")
    walk(config.TrainRun, "train.runs.x.")
    return out


def test_every_numeric_field_has_a_range():
    # the range lives in the field's own metadata (bench.validate.bounded), learner configs and Engine included
    for cls, f, key in _numeric_fields():
        lim = f.metadata
        assert lim.get("ge") is not None or lim.get("gt") is not None, key
        assert lim.get("le") is not None or lim.get("lt") is not None, key


def test_a_field_limit_with_an_unknown_key_is_a_schema_bug():
    from bench.validate import bounded

    with pytest.raises(TypeError, match="unknown field limit"):
        bounded(1, minimum=0)
    with pytest.raises(TypeError, match="tuples"):
        bounded([1, 2])


def test_a_new_learner_field_needs_only_its_own_limits():
    """A learner config declared with bounded() fields is validated by params.yaml without any table in config."""
    from dataclasses import dataclass

    from bench.config import _build
    from bench.validate import bounded

    @dataclass
    class Toy:
        rate: float = bounded(0.5, gt=0, le=1)
        """A rate."""

    assert _build(Toy, {"rate": 1.0}).rate == 1.0
    with pytest.raises(ParamsError, match=r"^params.yaml: toy.rate: out of range.*got 0.0.*> 0 and <= 1"):
        _build(Toy, {"rate": 0.0}, "toy.")


def test_describe_shows_each_fields_limits():
    rows = {r["key"]: r for r in describe()}
    assert rows["train.dvfo.gamma"]["allowed"] == ">= 0 and < 1"
    assert rows["engine.workers"]["allowed"] == ">= 0 and <= 100000"
    assert "list_scenarios" in rows["train.autoscale.scenarios"]["allowed"]
    assert rows["profile.fit_on_cpu_time"]["allowed"] == ""


def _nest(key: str, value):
    out = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), -1e300, 1e300])
def test_non_finite_or_absurd_numbers_are_refused_everywhere(bad):
    for cls, f, key in _numeric_fields():
        if key.startswith(("evaluate.suites.", "train.runs.")):
            continue
        if key == "train.dvfo.hidden_sizes":
            value = [bad]
        elif "edges" in key:
            value = [bad]
        else:
            value = bad
        with pytest.raises(ParamsError) as err:
            params_from_dict(_nest(key, value))
        assert key.rsplit(".", 1)[-1] in str(err.value), (key, str(err.value))


@pytest.mark.parametrize("key,value,needle", [
    ("train.dvfo.w_energy", -1.0, "out of range"),
    ("train.dvfo.qos_penalty", -0.5, "out of range"),
    ("train.autoscale.violation_penalty", -1, "out of range"),
    ("train.dvfo.n_cpu_levels", 0, "out of range"),
    ("train.dvfo.n_gpu_levels", -3, "out of range"),
    ("train.dvfo.xi_levels", 1, "out of range"),
    ("train.dvfo.xi_levels", [0.0, 1.5], "out of range"),
    ("train.dvfo.learning_rate", 50.0, "out of range"),
    ("train.autoscale.learning_rate", 0.0, "out of range"),
    ("train.dvfo.buffer_size", 10**12, "out of range"),
    ("train.dvfo.hidden_sizes", [], "at least 1"),
    ("train.autoscale.max_levels_per_target", 0, "out of range"),
    ("train.autoscale.scenarios", [], "at least 1"),
    ("train.autoscale.scenarios", ["no_such_scenario"], "not allowed"),
    ("train.dvfo.edge", "no_such_profile", "not allowed"),
    ("evaluate.seeds", 0, "out of range"),
])
def test_learner_and_section_ranges(key, value, needle):
    with pytest.raises(ParamsError) as err:
        params_from_dict(_nest(key, value))
    assert key in str(err.value) and needle in str(err.value)


def test_empty_lists_and_unknown_names_in_suites():
    base = {"run": "autoscale_phone", "policies": ["cpu_only"], "scenarios": ["wifi_strong"]}
    for field, value, needle in [("policies", [], "at least 1"), ("scenarios", [], "at least 1"),
                                 ("policies", ["best_ever"], "not allowed"),
                                 ("scenarios", ["wifi_on_mars"], "not allowed"),
                                 ("run", "nope", "not a training run")]:
        with pytest.raises(ParamsError, match=needle) as err:
            params_from_dict({"evaluate": {"suites": {"s": {**base, field: value}}}})
        assert f"evaluate.suites.s.{field}" in str(err.value)
    with pytest.raises(ParamsError, match="at least 1"):
        params_from_dict({"train": {"runs": {}}})
    with pytest.raises(ParamsError, match="not allowed"):
        params_from_dict({"train": {"runs": {"r": {"learner": "autoscale", "profile": "phone_mars"}}}})


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "a/b", ".hidden", "x" * 65, "", "a b", "ü", "..", "1run"])
def test_run_and_suite_names_cannot_escape_results(name):
    with pytest.raises(ParamsError, match="not a safe name"):
        params_from_dict({"train": {"runs": {name: {"learner": "autoscale", "profile": "phone_sd845"}}}})
    with pytest.raises(ParamsError, match="not a safe name"):
        params_from_dict({"evaluate": {"suites": {name: {"run": "autoscale_phone"}}}})


@pytest.mark.parametrize("text,needle", [
    ("seed: 1\nseed: 2\n", "line 2: not valid YAML: duplicate key 'seed' (first at line 1)"),
    ("- 1\n- 2\n", "expected a mapping (key: value lines) at the top level, got a list"),
    ("seed: " + "[" * 200 + "\n", "nested deeper than"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
     "too large once YAML aliases are expanded"),
    ("profile: &p {warmup: *p}\n", "recursive YAML alias"),
    ("seed: 2020-13-45\n", "not valid YAML"),
    ("profile: [unclosed\n", "not valid YAML"),
    ("seed: !!python/object/apply:os.system ['echo hi']\n", "not valid YAML"),
])
def test_yaml_traps_give_one_line_errors(tmp_path, text, needle):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as err:
        load_params(path)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and len(msg) < 400


def test_non_utf8_and_oversized_files(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes(b"seed: 1\nprofile:\n  adapter: \xe9t\xe9\n")
    with pytest.raises(ParamsError, match=r"params.yaml line 3: not UTF-8 text"):
        load_params(path)
    path.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ParamsError, match="file too large"):
        load_params(path)


def test_utf8_bom_and_empty_file_are_fine(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_bytes("\ufeffseed: 7\n".encode())
    assert load_params(path).seed == 7
    path.write_text("")
    assert load_params(path) == Params()


def test_sweep_names_and_overrides_are_validated_like_train():
    grid = {"learner": "dvfo", "profiles": ["jetson_xavier_nx"], "policies": ["cpu_only"], "scenarios": ["wifi_strong"]}
    with pytest.raises(ParamsError, match="not a safe name"):
        params_from_dict({"sweep": {"grids": {"../g": grid}}})
    with pytest.raises(ParamsError, match="not a safe name"):
        params_from_dict({"sweep": {"grids": {"g": {**grid, "configs": {"/abs": {}}}}}})
    with pytest.raises(ParamsError, match=r"sweep.grids.g.configs.v.w_energy: must be finite"):
        params_from_dict({"sweep": {"grids": {"g": {**grid, "configs": {"v": {"w_energy": float("nan")}}}}}})
    with pytest.raises(ParamsError, match=r"sweep.grids.g.configs.v: unknown DVFOConfig field\(s\) \['w_enrgy'\]"):
        params_from_dict({"sweep": {"grids": {"g": {**grid, "configs": {"v": {"w_enrgy": 1.0}}}}}})
    with pytest.raises(ParamsError, match=r"sweep.grids.g.profiles: needs at least 1"):
        params_from_dict({"sweep": {"grids": {"g": {**grid, "profiles": []}}}})
    with pytest.raises(ParamsError, match=r"engine.workers: out of range"):
        params_from_dict({"engine": {"workers": -1}})
