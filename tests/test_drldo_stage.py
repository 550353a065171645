"""The train_drldo stage (bench/pipeline/drldo_stage.py): DRLDO trained once per suite in its own stage, then
played by the evaluate stage, gives the rows the evaluation's own in-worker training gave."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.pipeline import drldo_stage, evaluate
from bench.pipeline.training import train_run

# a DVFO run small enough for a unit test (the CI-sized DVFO run of bench/pipeline/demo.py, shorter)
RUN = ("dvfo", "jetson_xavier_nx", {"total_steps": 600, "learning_starts": 100, "buffer_size": 600, "batch_size": 16,
                                    "hidden_sizes": [16, 16], "scenarios": ["dvfo_trickle_5mbps"],
                                    "max_episode_steps": 100})
SEED = 7


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "dvfo_jetson"
    train_run("dvfo_jetson", *RUN, SEED, out, curve_seeds=1)
    return out


def _cells(run_dir: Path, drldo_dir=None):
    return evaluate.suite_cells("dvfo_jetson", run_dir, ["drldo"], ["dvfo_trickle_5mbps"], 2, 40, SEED,
                                drldo_dir=drldo_dir)


def _job(run_dir: Path) -> dict:
    info = json.loads((run_dir / "train.json").read_text())
    return {"suite": "dvfo_jetson", "run": "dvfo_jetson",
            "fit": drldo_stage.fit_arguments("dvfo_jetson", info["config"], SEED)}


def test_saved_drldo_plays_the_rows_of_the_in_stage_training(run_dir, tmp_path):
    from bench.policies.drldo import _trained

    in_stage = [c for c in _cells(run_dir) if c.policy == "drldo"]
    assert json.loads(in_stage[0].policy_kwargs_json)["train_seed"]  # trains in the worker
    _trained.cache_clear()
    before = evaluate.run_cells(in_stage, workers=1, progress=False)
    _trained.cache_clear()  # the stage trains anew, as in its own process
    drldo_stage.train_all([_job(run_dir)], tmp_path, workers=1)
    _trained.cache_clear()
    saved = [c for c in _cells(run_dir, tmp_path) if c.policy == "drldo"]
    assert json.loads(saved[0].policy_kwargs_json) == {"path": str(tmp_path / "dvfo_jetson" / "policy")}
    after = evaluate.run_cells(saved, workers=1, progress=False)
    assert len(before) == 80 and before["action"].tolist() == after["action"].tolist()  # the same decisions
    pd.testing.assert_frame_equal(before, after)


def test_a_learner_fitted_on_other_arguments_is_refused(run_dir, tmp_path):
    job = _job(run_dir)
    drldo_stage.train_all([job], tmp_path, workers=1)
    record = tmp_path / "dvfo_jetson" / drldo_stage.FIT_FILE
    data = json.loads(record.read_text())
    data["fit"]["train_seed"] += 1
    record.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="trained on other arguments"):
        _cells(run_dir, tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        _cells(run_dir, tmp_path / "nowhere")


def test_the_stage_trains_each_suite_that_evaluates_drldo_with_the_evaluations_arguments():
    """The jobs of the shipped params: the suites listing drldo, each fitted on what suite_cells would pass
    (the run's config as the train stage writes it to train.json)."""
    import dataclasses

    from bench.config import as_dict, load_params
    from bench.pipeline.training import make_config

    params = load_params()
    jobs = drldo_stage.suite_jobs(params)
    assert [j["suite"] for j in jobs] == [s for s, spec in params.evaluate.suites.items() if "drldo" in spec.policies]
    for job in jobs:
        run = params.train.runs[job["run"]]
        config = make_config(run.learner, run.profile, as_dict(params.train.learner_config(run.learner)), params.seed,
                             job["run"])
        train_json = json.loads(json.dumps(dataclasses.asdict(config), default=list))  # as train_run writes it
        expected = json.dumps(evaluate.fitted_policy_kwargs("drldo", job["suite"], train_json, [], [], 0, params.seed),
                              sort_keys=True, default=list)
        assert job["fit"] == expected
