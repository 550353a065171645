"""The second DVFO suite: the same learner on the phone profile (params.yaml train.runs.dvfo_phone)."""

from __future__ import annotations

import numpy as np
import yaml

from bench.config import load_params
from bench.pipeline.training import make_config
from bench.policies.dvfo import make_env, train
from bench.paths import PARAMS_FILE as PARAMS


def test_params_declare_a_phone_dvfo_run_and_suite_with_the_jetson_suites_scenarios():
    params = load_params(PARAMS)
    run = params.train.runs["dvfo_phone"]
    assert (run.learner, run.profile) == ("dvfo", "phone_sd845")
    phone, jetson = params.evaluate.suites["dvfo_phone"], params.evaluate.suites["dvfo_jetson"]
    assert phone.run == "dvfo_phone"
    assert list(phone.scenarios) == list(jetson.scenarios)
    assert list(phone.heldout_scenarios) == list(jetson.heldout_scenarios)


def test_the_shipped_dvfo_config_trains_on_the_phone_and_acts_in_its_action_space():
    raw = yaml.safe_load(open(PARAMS))["train"]["dvfo"]
    small = dict(raw, total_steps=600, learning_starts=200, buffer_size=600, batch_size=32, hidden_sizes=[32, 32],
                 max_episode_steps=150, scenarios=["dvfo_bandwidth_sweep"])
    config = make_config("dvfo", "phone_sd845", small, root_seed=7, run="dvfo_phone")
    assert config.edge == "phone_sd845"
    learner = train(config).learner
    env = make_env(config, "dvfo_bandwidth_sweep")
    assert env.action_space.n == 4 * 5 * 1 * 6  # the phone's GPU has one memory level: fewer actions than the Jetson
    obs, _ = env.reset(seed=3)
    actions = [learner.act(obs)]
    for _ in range(20):
        obs, *_ = env.step(actions[-1])
        actions.append(learner.act(obs))
    assert all(0 <= a < env.action_space.n for a in actions)
    assert np.isfinite(obs).all()
