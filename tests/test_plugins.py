"""Plugins extend the suite without editing it: entry points of installed distributions and files
named in params.yaml fill the registries, and validation, evaluation and the CLI see them.

The example plugin (examples/edgebench-example-plugin) is made visible the way pip would:
its package on ``sys.path`` plus a ``*.dist-info`` whose ``entry_points.txt`` is generated
from the plugin's own ``pyproject.toml`` (so the test checks the entry points it declares).
``tests/test_wheel.py`` installs it for real into a fresh environment.
"""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import hw
from bench.config import load_params, params_from_dict, ParamsError
from bench.policies import LEARNERS, REGISTRY, LearnerSpec
from bench.world import scenarios
from hw import registry as hw_registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "edgebench-example-plugin"


def _forget(reg, names):
    for name in names:
        reg._items.pop(name, None)
    reg.errors.clear()
    reg._loaded = False


@pytest.fixture
def clean_registries(monkeypatch):
    """Undo every registration a test makes (registries are process-wide)."""
    monkeypatch.delenv(hw_registry.PLUGINS_ENV, raising=False)
    before = {id(r): set(r._items) for r in hw_registry.registries()}
    yield
    for reg in hw_registry.registries():
        _forget(reg, set(reg._items) - before.get(id(reg), set()))
    hw_registry._loaded_user_plugins.clear()


def _dist_info(site: Path, pyproject: Path) -> None:
    meta = tomllib.loads(pyproject.read_text())["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = []
    for group, eps in meta["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def example_plugin(tmp_path, monkeypatch, clean_registries):
    site = tmp_path / "site"
    _dist_info(site, EXAMPLE / "pyproject.toml")
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    for reg in hw_registry.registries():
        reg._loaded = False
    yield
    for mod in [m for m in sys.modules if m.startswith("edgebench_example")]:
        del sys.modules[mod]


def test_example_plugin_registers_through_entry_points(example_plugin):
    assert "race_to_idle" in REGISTRY
    assert "cpu_tdp" in hw.METERS
    assert hw.METERS["cpu_tdp"].__module__ == "edgebench_example.meter"


def test_example_policy_validates_and_evaluates(example_plugin):
    params = params_from_dict({"profile": {"adapter": "cpu_tdp"},
                               "evaluate": {"suites": {"autoscale_phone": {
                                   "run": "autoscale_phone", "policies": ["cpu_only", "race_to_idle"],
                                   "scenarios": ["wifi_strong"]}}}})
    assert "race_to_idle" in params.evaluate.suites["autoscale_phone"].policies
    from bench.policies.rollout import evaluate_policy

    for env_id in ("bench/AutoScale-v0", "bench/DVFO-v0"):
        scenario = "wifi_strong" if "Auto" in env_id else "dvfo_trickle_5mbps"
        frame = evaluate_policy("race_to_idle", env_id, scenario, [0], 20)
        assert len(frame) == 20 and (frame["policy"] == "race_to_idle").all()
        assert frame["action"].nunique() == 1  # a static policy
        assert np.isfinite(frame["energy_mj"]).all() and (frame["energy_mj"] > 0).all()


def test_without_the_plugin_its_names_are_rejected(clean_registries):
    with pytest.raises(ParamsError, match="race_to_idle"):
        params_from_dict({"evaluate": {"suites": {"s": {"run": "autoscale_phone", "policies": ["race_to_idle"]}}}})


def test_broken_entry_point_warns_and_the_suite_still_works(tmp_path, monkeypatch, clean_registries):
    info = tmp_path / "broken_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[edge_inference_bench.policies]\nbroken = no_such_module_xyz:policy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    REGISTRY._loaded = False
    with pytest.warns(RuntimeWarning, match="broken"):
        names = REGISTRY.names()
    assert "broken" not in names and "cpu_only" in names
    assert "no_such_module_xyz" in REGISTRY.errors["broken"]


def test_project_file_plugin_from_params(tmp_path, clean_registries):
    """A file of the user's project, named in params.yaml, adds a policy, a learner and a scenario kind."""
    (tmp_path / "my_plugin.py").write_text(textwrap.dedent('''
        import numpy as np
        from bench.policies import LEARNERS, LearnerSpec, register
        from bench.policies.baselines import ConstantPolicy
        from bench.world.scenarios import PROCESS_KINDS, ProcessKind

        @register("always_first")
        def always_first(env, **_):
            return ConstantPolicy(0, "always_first")

        def sawtooth(spec, ctx):
            return spec["low"] + (spec["high"] - spec["low"]) * (ctx.t % spec["period_steps"]) / spec["period_steps"]

        PROCESS_KINDS.register("sawtooth", ProcessKind(frozenset({"low", "high", "period_steps"}),
                                                       frozenset({"low", "high", "period_steps"}), sawtooth))
        LEARNERS.register("autoscale_again", LearnerSpec("autoscale_again", "bench/AutoScale-v0",
                                                         "bench.policies.autoscale", "AutoScaleConfig"))
    '''))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["plugins"] = ["my_plugin.py"]
    raw["train"]["runs"]["again"] = {"learner": "autoscale_again", "profile": "phone_sd845"}
    raw["train"]["autoscale_again"] = {"total_steps": 123}
    raw["evaluate"]["suites"]["autoscale_phone"]["policies"].append("always_first")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    assert params.train.learner_config("autoscale_again").total_steps == 123
    assert "always_first" in REGISTRY
    assert str(tmp_path / "my_plugin.py") in __import__("os").environ[hw_registry.PLUGINS_ENV]
    from bench.pipeline.evaluate import env_id

    assert env_id("autoscale_again") == "bench/AutoScale-v0"
    scen = scenarios.scenario_from_dict({
        "name": "saw", "steps": 10, "interarrival_ms": 100,
        "signal": {"wifi": {"kind": "sawtooth", "low": -80, "high": -40, "period_steps": 5}},
        "interference": {"kind": "none"},
        "workload_mix": [{"workload": "resnet18", "qos_ms": 100, "max_accuracy_loss": 0.01}]})
    wifi = scen.trace(np.random.default_rng(0)).signal_dbm["wifi"]
    assert wifi[0] == -80 and wifi[5] == -80 and wifi[4] == pytest.approx(-48)
    # a plugin section for a learner that is not registered is still an unknown key
    raw["train"]["nope"] = {}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="unknown key 'train.nope'"):
        load_params(tmp_path / "params.yaml")


def test_bad_plugin_entries_are_one_line_errors(tmp_path, clean_registries):
    with pytest.raises(ParamsError, match=r"plugins\[0\].*no such file"):
        params_from_dict({"plugins": ["missing.py"]}, base_dir=tmp_path)
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom at import')\n")
    with pytest.raises(ParamsError, match="boom at import"):
        params_from_dict({"plugins": ["boom.py"]}, base_dir=tmp_path)
    with pytest.raises(ParamsError, match="ModuleNotFoundError"):
        params_from_dict({"plugins": ["no_such_module_xyz"]})


def test_registry_rejects_clashes_and_wrong_types(clean_registries):
    with pytest.raises(hw.PluginError, match="already registered"):
        REGISTRY.register("cpu_only", lambda env, **_: None)
    with pytest.raises(hw.PluginError, match="not a subclass"):
        hw.METERS.register("not_a_meter", object)
    with pytest.raises(ValueError, match="LearnerSpec"):
        LEARNERS.register("x", "bench.policies.autoscale")
    with pytest.raises(KeyError, match="did you mean 'rapl'"):
        hw.METERS["rapll"]


def test_monitor_with_the_plugin_meter(example_plugin, tmp_path, capsys):
    from hw.measurement import main

    out = tmp_path / "m.json"
    rc = main(["--adapter", "cpu_tdp", "--meter-option", "tdp_w=10", "--rate-hz", "100", "--json", str(out), "--",
               sys.executable, "-c", "import time; time.sleep(0.2)"])
    assert rc == 0
    record = json.loads(out.read_text())
    assert record["meter"] == "cpu_tdp" and record["returncode"] == 0
    assert record["duration_s"] >= 0.2 and record["n_samples"] >= 2
    # utilisation x 10 W: never above 10 W on average
    assert 0 <= record["power_w"] <= 10 + 1e-9
    assert record["energy_mj"] == pytest.approx(record["energy_j"] * 1e3)
