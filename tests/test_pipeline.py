"""The DVC + papermill wiring, end to end, on a copy of the repo with a tiny params.yaml.

`dvc repro` runs the profile notebook; a second `dvc repro` runs nothing; changing
a parameter marks the stage as changed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.pipeline.demo import CI_RUNS, CI_SUITES
from bench.paths import REPO_ROOT
from bench.pipeline.stages import stage_parameters

def _run(args, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo_copy(clean_repo):
    """The checkout as git knows it (no run cache, results or checkpoints of earlier runs), CI-sized params."""
    dst = clean_repo
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["profile"].update(workloads=["mobilenet_v2", "resnet18", "lstm_text"], warmup=0, repeats=2, adapter="none")
    # the CI runs only (a shipped run no CI suite evaluates, dvfo_phone, would be one more training stage and notebook
    # for nothing: the wiring is the same for every run); CI-sized learners, same code path
    params["train"]["runs"] = {}
    for run, (learner, profile, config) in CI_RUNS.items():
        params["train"]["runs"][run] = {"learner": learner, "profile": profile}
        params["train"][learner] = {k: v for k, v in config.items()}
    params["evaluate"].update(seeds=1, steps=30, n_boot=50, workers=1, suites=CI_SUITES)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


def test_stage_parameters_come_from_params_yaml():
    params = stage_parameters("profile")
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert params["seed"] == raw["seed"]
    assert params["workloads"] == raw["profile"]["workloads"]
    assert params["out_dir"].endswith(os.path.join("results", "profile"))


@pytest.mark.live
@pytest.mark.pipeline
def test_repro_runs_every_stage_then_nothing_the_second_time(repo_copy):
    first = _run([sys.executable, "-m", "dvc", "repro"], repo_copy)
    for stage in ("profile", "train@autoscale_phone", "train@dvfo_jetson", "evaluate", "testbed", "report"):
        assert f"Running stage '{stage}'" in first, first
    # the live testbed is off by default: its stage says so in an empty table
    assert json.loads((repo_copy / "results" / "testbed" / "summary.json").read_text())["enabled"] is False
    results = repo_copy / "results"
    fit = json.loads((results / "profile" / "fit_metrics.json").read_text())
    # a real, noisy measurement (2 repeats on a shared machine): check the wiring, not the physics
    # (tests/test_fit.py checks the fit itself on constructed data)
    assert fit["n_workloads"] == 3 and fit["loo_median_abs_err"] >= 0
    assert fit["gflops_per_ghz"] > 0 and fit["fixed_ms"] > 0 and "warning" in fit
    metrics = json.loads((results / "metrics.json").read_text())
    assert set(metrics) == set(CI_SUITES)
    assert "efficiency_vs_cpu_only" in metrics["autoscale_phone"]["autoscale"]
    assert (results / "report" / "papers_vs_suite.csv").exists()
    # one executed notebook per stage run: profile, evaluate, report and one per training run
    runs = yaml.safe_load((repo_copy / "params.yaml").read_text())["train"]["runs"]
    assert len(list((results / "notebooks").glob("*.ipynb"))) == 3 + len(runs)
    second = _run([sys.executable, "-m", "dvc", "repro"], repo_copy)
    assert "Running stage" not in second, second
    assert "up to date" in _run([sys.executable, "-m", "dvc", "status"], repo_copy)
    shown = _run([sys.executable, "-m", "dvc", "metrics", "show"], repo_copy)
    assert "autoscale_phone" in shown


@pytest.mark.live
@pytest.mark.pipeline
def test_an_evaluation_param_reruns_only_what_depends_on_it(repo_copy):
    # from a reproduced pipeline: nothing runs when the test above already did (same module copy); alone, all
    _run([sys.executable, "-m", "dvc", "repro"], repo_copy)
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["evaluate"]["steps"] = 25
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run([sys.executable, "-m", "dvc", "repro"], repo_copy)
    assert "Running stage 'evaluate'" in out and "Running stage 'report'" in out, out
    for stage in ("profile", "train@autoscale_phone", "train@dvfo_jetson"):
        assert f"Running stage '{stage}'" not in out
    results = pd.read_parquet(repo_copy / "results" / "evaluate" / "results.parquet")
    assert results.groupby(["policy", "scenario", "seed"]).size().eq(25).all()


def test_changing_a_profile_param_marks_the_stage_changed(repo_copy):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["profile"]["repeats"] = 3
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([sys.executable, "-m", "dvc", "status"], repo_copy)
    assert "changed deps" in status and "modified" in status and "profile" in status


def test_bad_param_stops_before_any_work(repo_copy, tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 1\nprofile:\n  repeat: 3\n")
    env = {**os.environ}
    proc = subprocess.run([sys.executable, "-m", "bench", "notebook", "profile", "--params", str(bad)],
                          cwd=repo_copy, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "unknown key 'profile.repeat'" in proc.stderr and "did you mean 'profile.repeats'" in proc.stderr
