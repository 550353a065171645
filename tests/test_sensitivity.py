"""The sensitivity stage (bench/pipeline/sensitivity.py): what it perturbs, that a perturbation reaches the
simulator, that its sample is seeded, that it detects a flipped verdict, and that the disabled stage is empty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config import params_from_dict
from bench.paths import DATA_DIR, REPO_ROOT
from bench.pipeline import sensitivity as S
from bench.pipeline.claims import papers_vs_suite, with_robustness


# --------------------------------------------------------------------------- enumeration

def test_enumeration_finds_assumed_constants_and_no_sourced_ones():
    found = S.assumed_constants("era2018")
    keys = {c.key for c in found}
    assert "network/era2018/lte.yaml:tail_mw" in keys
    assert "network/era2018/wifi.yaml:tail_mw" in keys
    assert "sim/model.yaml:local_jitter_sigma" in keys
    # sourced constants of the same files are never perturbed
    assert "network/era2018/lte.yaml:uplink_mw_per_mbps" not in keys
    assert "network/era2018/lte.yaml:tail_ms" not in keys
    # the inactive radio profile is not part of the world under test
    assert not any(k.startswith("network/huang2012/") for k in keys)
    assert all(c.source.startswith("assumed:") and c.perturbed for c in found)
    # every leaf it reports really is an assumed number (re-read from the file)
    for c in found:
        node = yaml.safe_load((DATA_DIR / c.file).read_text())
        for p in c.path:
            node = node[p]
        assert node["value"] == c.value and str(node["source"]).startswith("assumed:")


def test_enumeration_on_a_synthetic_data_tree(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "model.yaml").write_text(yaml.safe_dump({
        "a": {"value": 2.0, "source": "assumed: a guess"},
        "b": {"value": 3.0, "source": "a datasheet, table 1"},
        "nested": {"c": {"value": [1.0, 2.0], "source": "assumed: a curve"},
                   "level_dbm": {"value": -90.0, "source": "assumed: a level"},
                   "name": {"value": "x", "source": "assumed: text"}}}))
    found = S.assumed_constants("none", tmp_path)
    assert [c.key for c in found] == ["sim/model.yaml:a", "sim/model.yaml:nested.c"]
    skipped = {c.key: c.why_not for c in S.assumed_constants("none", tmp_path, include_skipped=True)
               if not c.perturbed}
    assert set(skipped) == {"sim/model.yaml:nested.level_dbm", "sim/model.yaml:nested.name"}
    assert "dB" in skipped["sim/model.yaml:nested.level_dbm"]


# --------------------------------------------------------------------------- perturbing

@settings(max_examples=30, deadline=None)
@given(factor=st.floats(0.05, 20.0), scalar=st.floats(0.001, 1e4), curve=st.lists(st.floats(0, 1e3), min_size=1,
                                                                                    max_size=5))
def test_perturb_tree_scales_exactly_the_leaf(factor, scalar, curve):
    tree = {"x": {"value": scalar, "source": "assumed: s"}, "y": {"value": 7.0, "source": "assumed: t"},
            "z": [{"value": curve, "source": "assumed: c"}]}
    out = S.perturb_tree(tree, ("x",), factor)
    assert out["x"]["value"] == pytest.approx(scalar * factor, rel=1e-12)
    assert out["y"] == tree["y"] and out["z"] == tree["z"] and tree["x"]["value"] == scalar  # input untouched
    out = S.perturb_tree(tree, ("z", 0), factor)
    assert out["z"][0]["value"] == pytest.approx([v * factor for v in curve], rel=1e-12, abs=1e-12)


def test_write_perturbed_data_leaves_data_untouched(tmp_path):
    before = (DATA_DIR / "sim" / "model.yaml").read_bytes()
    dest = S.write_perturbed_data(tmp_path / "data", {"sim/model.yaml:local_jitter_sigma": 2.0})
    assert (DATA_DIR / "sim" / "model.yaml").read_bytes() == before
    orig = yaml.safe_load(before)["local_jitter_sigma"]["value"]
    assert yaml.safe_load((dest / "sim" / "model.yaml").read_text())["local_jitter_sigma"]["value"] == \
        pytest.approx(2 * orig)
    # every other file is a byte copy
    assert (dest / "claims.yaml").read_bytes() == (DATA_DIR / "claims.yaml").read_bytes()


_CLOUD_ENERGY = """
import json, bench, bench.policies
from bench.pipeline.evaluate import env_id
from bench.policies.rollout import evaluate_policy
f = evaluate_policy("cloud_only", env_id("autoscale"), "cellular_only", [3], 40)
print(json.dumps(float(f["energy_mj"].mean())))
"""


def _cloud_only_energy(data_dir: Path) -> float:
    # the perturbed file is era2018's: name that profile (an inherited BENCH_RADIO_PROFILE would load another)
    env = {**os.environ, "BENCH_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO_ROOT), "BENCH_RADIO_PROFILE": "era2018"}
    out = subprocess.run([sys.executable, "-c", _CLOUD_ENERGY], env=env, capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def test_doubling_the_lte_tail_power_raises_cloud_only_energy(tmp_path):
    """A perturbed copy of data/ reaches the simulator (through BENCH_DATA_DIR), in the expected direction."""
    base = _cloud_only_energy(S.write_perturbed_data(tmp_path / "base", {}))
    hot = _cloud_only_energy(S.write_perturbed_data(tmp_path / "hot", {"network/era2018/lte.yaml:tail_mw": 2.0}))
    assert hot > base * 1.001


# --------------------------------------------------------------------------- the joint sample

def test_lhs_sample_is_reproducible_log_uniform_and_latin():
    a = S.lhs_factors(5, 8, root_seed=123)
    assert np.array_equal(a, S.lhs_factors(5, 8, root_seed=123))
    assert not np.allclose(a, S.lhs_factors(5, 8, root_seed=124))
    assert a.shape == (8, 5) and (a >= 0.5).all() and (a <= 2.0).all()
    strata = np.floor((np.log(a) - np.log(0.5)) / (np.log(4.0) / 8)).astype(int)
    for col in strata.T:  # one sample per stratum of every constant
        assert sorted(col) == list(range(8))


def test_worlds_baseline_then_one_at_a_time_then_joint():
    cs = [S.Constant("sim/model.yaml", ("a",), 1.0, "assumed: x"), S.Constant("sim/model.yaml", ("b",), 2.0,
                                                                               "assumed: y")]
    ws = S.worlds(cs, (0.5, 2.0), 3, root_seed=1)
    assert [w.kind for w in ws] == ["baseline"] + ["oat"] * 4 + ["lhs"] * 3
    assert json.loads(ws[2].factors_json) == {"sim/model.yaml:a": 2.0}
    assert len({w.name for w in ws}) == len(ws)


# --------------------------------------------------------------------------- flips

CLAIM = {"id": "synthetic", "paper": "P", "claim": "policy beats base", "value": None, "unit": "x", "source": "s",
         "suite": "s1", "policy": "pol", "baseline": "cpu_only", "metric": "efficiency", "why": "w"}


def _metrics(mean: float, lo: float, hi: float) -> dict:
    eff = {"mean": mean, "ci_low": lo, "ci_high": hi}
    return {"s1": {"overall": {"pol": {"efficiency_vs_cpu_only": eff, "energy_mj": {"mean": 1.0}},
                               "cpu_only": {"efficiency_vs_cpu_only": {"mean": 1.0, "ci_low": 1.0, "ci_high": 1.0},
                                            "energy_mj": {"mean": mean}}}, "by_scenario": {}}}


def test_flip_detection_on_a_synthetic_claim(tmp_path):
    base = S.quantities(_metrics(1.5, 1.2, 1.8), None, [CLAIM], n_boot=0, seed=0)
    same = S.quantities(_metrics(1.4, 1.1, 1.7), None, [CLAIM], n_boot=0, seed=0)
    flip = S.quantities(_metrics(0.8, 0.7, 0.9), None, [CLAIM], n_boot=0, seed=0)
    q = {x["quantity"]: x for x in base}
    assert q["claim:synthetic"]["verdict"] == "consistent"
    assert q["headline:s1:pol:efficiency_vs_cpu_only"]["verdict"] == "beats baseline"
    up = S.World("oat:k1:x2", "oat", "{}", "k1", 2.0)
    down = S.World("oat:k2:x0.5", "oat", "{}", "k2", 0.5)
    table = S.flip_table(base, [(up, {"status": "ok", "quantities": same}),
                                (down, {"status": "ok", "quantities": flip}),
                                (S.World("oat:k3:x2", "oat", "{}", "k3", 2.0), {"status": "invalid: too big"})])
    row = table[(table.world == down.name) & (table.quantity == "claim:synthetic")].iloc[0]
    assert bool(row.flipped) and row.verdict == "differs" and row.baseline_verdict == "consistent"
    assert row.baseline_value == pytest.approx(1.5) and row.value == pytest.approx(0.8)
    assert not table[table.world == up.name].flipped.any()
    assert (table[table.world == "oat:k3:x2"].status == "invalid: too big").all()
    rob = S.robustness(table)
    assert rob["claim:synthetic"] == "sensitive (to: k2)"
    assert rob["headline:s1:pol:efficiency_vs_cpu_only"] == "sensitive (to: k2)"
    # the claims table gets the column; every other column is unchanged
    claims_table = papers_vs_suite(_metrics(1.5, 1.2, 1.8), claims=[CLAIM], n_boot=0)
    merged = with_robustness(claims_table, {"enabled": True, "robustness": rob}, claims=[CLAIM])
    assert list(merged["robustness"]) == ["sensitive (to: k2)"]
    pd.testing.assert_frame_equal(merged.drop(columns="robustness"), claims_table)
    assert "robustness" not in with_robustness(claims_table, tmp_path / "absent.json", claims=[CLAIM])
    assert "robustness" not in with_robustness(claims_table, {"enabled": False}, claims=[CLAIM])
    fig = S.tornado(table, "claim:synthetic")
    assert len(fig.axes[0].patches) >= 2  # one bar per (constant, factor) with a value


def test_only_the_joint_sample_flips_is_said_so():
    base = [{"quantity": "claim:c", "value": 1.0, "verdict": "consistent"}]
    moved = [{"quantity": "claim:c", "value": 0.5, "verdict": "differs"}]
    table = S.flip_table(base, [(S.World("lhs:000", "lhs", "{}"), {"status": "ok", "quantities": moved})])
    assert S.robustness(table) == {"claim:c": "sensitive (to: joint sample)"}
    unmeasured = [{"quantity": "claim:c", "value": float("nan"), "verdict": "not measured"}]
    table = S.flip_table(unmeasured, [(S.World("oat:k:x2", "oat", "{}", "k", 2.0),
                                       {"status": "ok", "quantities": unmeasured})])
    assert S.robustness(table) == {"claim:c": "not assessed"}


# --------------------------------------------------------------------------- the stage

def test_disabled_stage_writes_the_empty_table(tmp_path):
    params = params_from_dict({})
    assert params.sensitivity.enabled is False
    summary = S.run_sensitivity(params, tmp_path)
    assert summary == {"enabled": False}
    table = pd.read_csv(tmp_path / "sensitivity.csv")
    assert list(table.columns) == list(S.COLUMNS) and table.empty
    assert json.loads((tmp_path / "summary.json").read_text())["enabled"] is False
    assert (tmp_path / "figures" / "index.md").is_file()


def test_sensitivity_params_are_validated():
    from bench.config import ParamsError

    with pytest.raises(ParamsError, match="sensitivity.factors"):
        params_from_dict({"sensitivity": {"factors": [0.0]}})
    with pytest.raises(ParamsError, match="sensitivity.policies"):
        params_from_dict({"sensitivity": {"policies": ["no_such_policy"]}})


@pytest.mark.parametrize("argv, needle", [(["sensitivity", "--no-such-option"], "unrecognized arguments"),
                                          (["sensitivity", "--limit", "many"], "invalid int value")])
def test_cli_mistakes_are_one_line_exit_2(capsys, argv, needle):
    from bench.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_bad_only_pattern_is_one_line(tmp_path):
    from bench.errors import ConfigError

    params = params_from_dict({"sensitivity": {"enabled": True}})
    with pytest.raises(ConfigError, match=r"--only '\(': not a regular expression"):
        S.run_sensitivity(params, tmp_path, only="(")


def test_missing_learners_are_said_before_the_run(tmp_path, monkeypatch, capsys):
    # a checkout without results/train (no dvc pull, a fresh worktree) must not spend the whole budget silently
    def stop(*args, **kwargs):
        raise RuntimeError("stop before evaluating")

    import dataclasses

    from bench.config import load_params

    monkeypatch.setattr(S, "_map_worlds", stop)
    params = load_params()  # the shipped suites (params_from_dict({}) has none)
    params = dataclasses.replace(params, sensitivity=dataclasses.replace(params.sensitivity, enabled=True))
    assert params.evaluate.suites
    with pytest.raises(RuntimeError, match="stop before"):
        S.run_sensitivity(params, tmp_path / "out", train_dir=tmp_path / "no_learners", limit=1)
    err = capsys.readouterr().err
    assert "no trained learner" in err and str(tmp_path / "no_learners") in err
    assert all(suite in err for suite in params.evaluate.suites)


# --------------------------------------------------------------------------- the local runner

def test_local_runner_reruns_only_the_suites_that_read_a_changed_file(tmp_path, monkeypatch):
    """A world re-runs the suites whose unperturbed evaluation read a file it rewrites; one that rewrites no file
    any suite read is the unperturbed world (no process)."""
    spec = {"suites": [{"suite": "a"}, {"suite": "b"}], "data_dir": str(tmp_path / "data")}
    (tmp_path / "data" / "profiles").mkdir(parents=True)
    for f in ("profiles/pa.yaml", "profiles/pb.yaml", "profiles/unread.yaml"):
        (tmp_path / "data" / f).write_text("x: {value: 1.0, source: 'assumed: test'}\n")
    runner = S._LocalRunner(spec, 1)
    calls = []

    def fake_run(data_dir, run_spec, reads=False):
        calls.append(run_spec.get("run_suites"))
        if run_spec.get("cells_only"):
            suite = run_spec["run_suites"][0]
            return 0, "", "", 1.0, [f"profiles/p{suite}.yaml"]
        return 0, json.dumps([{"quantity": "q", "value": 2.0, "verdict": "v"}]) + "\n", "", 1.0, []

    monkeypatch.setattr(runner, "_run", fake_run)
    try:
        def world(file):
            return S.World(f"oat:{file}:x:x2", "oat", json.dumps({f"{file}:x": 2.0}), f"{file}:x", 2.0)

        assert runner.run_world(world("profiles/pb.yaml"))["status"] == "ok"
        assert calls[-1] == ["b"]
        assert calls[:3] == [["a"], ["b"], []]  # the plan: one process per suite, then the quantities
        n = len(calls)
        res = runner.run_world(world("profiles/unread.yaml"))
        assert len(calls) == n and res["quantities"] == runner.plan()["baseline"]  # nothing re-run
        runner.run_world(S.World("lhs:000", "lhs", json.dumps({"profiles/pa.yaml:x": 0.7,
                                                               "profiles/pb.yaml:x": 1.3})))
        assert calls[-1] == ["a", "b"]
        assert runner.setup_cpu_s == 3.0
    finally:
        runner.close()
    assert not runner.tmp.exists()
