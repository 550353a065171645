"""AutoScale: configuration, state discretisation, learning, determinism, persistence."""

import json

import gymnasium as gym
import numpy as np

from bench.sim.envs import AUTOSCALE_OBS_FIELDS
import pandas as pd
import pytest
import yaml

from bench.policies import Transition, make_policy
from bench.policies.autoscale import META_FILE, Q_FILE, AutoScaleConfig, AutoScaleLearner, StateBins, train
from bench.policies.baselines import episode_arrays
from bench.world.scenarios import load_scenario
from bench.world.workloads import load_workloads

TINY = dict(scenarios=("wifi_strong", "cpu_corunner"), total_steps=1500, episode_steps=100, epsilon_decay_steps=1000,
            max_levels_per_target=2)


@pytest.fixture(scope="module")
def tiny_result():
    return train(AutoScaleConfig(seed=3, **TINY))


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="wifi_dbm_edges"):
        AutoScaleConfig(wifi_dbm_edges=(-60.0, -70.0))
    with pytest.raises(ValueError, match="learning_rate"):
        AutoScaleConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match="bogus"):
        AutoScaleConfig.from_dict({"bogus": 1})
    cfg = AutoScaleConfig(seed=9)
    assert AutoScaleConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_state_ids_are_consistent_and_separate_the_shipped_dnns():
    bins = StateBins(AutoScaleConfig())
    rng = np.random.default_rng(0)
    wl = load_workloads()
    nn = np.column_stack([wl["n_conv"], wl["n_fc"], wl["n_recurrent"], wl["n_attention"], np.log10(wl["flops"])])
    runtime = np.column_stack([rng.random(len(wl)), rng.random(len(wl)), rng.uniform(-95, -40, len(wl)),
                               rng.uniform(-125, -70, len(wl)), rng.uniform(20, 500, len(wl)), np.full(len(wl), 0.01),
                               rng.random(len(wl))])  # the env's named fields after the NN's: ..., gpu_load
    obs = np.hstack([nn, runtime]).astype(np.float32)
    ids = bins.state_ids(obs)
    assert [bins.state_id(o) for o in obs] == ids.tolist()
    assert (ids >= 0).all() and (ids < bins.n_states).all()
    same_runtime = np.hstack([nn, np.tile(runtime[:1], (len(wl), 1))]).astype(np.float32)
    assert len(set(bins.state_ids(same_runtime).tolist())) == len(wl)  # each DNN its own NN bucket
    decoded = bins.decode(int(ids[0]))
    assert set(decoded) >= {"macs_log10", "cpu_load", "gpu_load", "wifi_dbm", "lte_dbm"}
    # a GPU co-runner above the bucket edge moves the request to another state
    busy = obs.copy()
    busy[:, AUTOSCALE_OBS_FIELDS.index("gpu_load")] = 0.9
    idle = obs.copy()
    idle[:, AUTOSCALE_OBS_FIELDS.index("gpu_load")] = 0.1
    assert (bins.state_ids(busy) != bins.state_ids(idle)).all()


def test_update_is_a_sample_average_then_act_is_the_row_argmax(as_env):
    learner = make_policy("autoscale", as_env, learning_rate=0.01)
    obs, _ = as_env.reset(seed=0)
    s = learner.bins.state_id(obs)
    learner.update(Transition(obs, 2, 4.0, obs, False, False))
    learner.update(Transition(obs, 2, 1.0, obs, False, False))
    assert learner.q[s, 2] == pytest.approx(2.5)  # alpha = 1/n while above the floor
    assert learner.act(obs) == 2
    learner.q[s, 0] = 10.0
    assert learner.act(obs) == 0


def _one_dnn_scenario(tmp_path):
    data = {"name": "one_dnn", "steps": 400, "interarrival_ms": 200,
            "signal": {"wifi": {"kind": "constant", "level": "strong"}, "lte": {"kind": "constant", "level": "medium"}},
            "interference": {"kind": "none"},
            "workload_mix": [{"workload": "mobilenet_v2", "qos_ms": 50, "max_accuracy_loss": 0.02}]}
    path = tmp_path / "one_dnn.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_learns_the_known_optimum_of_a_one_dnn_constant_signal_env(tmp_path):
    scen = _one_dnn_scenario(tmp_path)
    cfg = AutoScaleConfig(seed=0, scenarios=(scen,), total_steps=3000, epsilon_decay_steps=2000,
                          max_levels_per_target=2)
    env = gym.make("bench/AutoScale-v0", scenario=load_scenario(scen), max_episode_steps=400, **cfg.env_kwargs())
    env.reset(seed=12345)
    states, draws, _ = episode_arrays(env)
    best, _ = env.unwrapped.sim.oracle(states, draws)
    optimum = int(np.bincount(best).argmax())
    assert (best == optimum).all(), "test setup: the oracle's action must be constant in this env"

    learner = train(cfg).learner
    obs, _ = env.reset(seed=12345)
    greedy = []
    for _ in range(400):
        greedy.append(learner.act(obs))
        obs, *_, truncated, _ = env.step(greedy[-1])
        if truncated:
            break
    assert np.mean(np.array(greedy) == optimum) >= 0.95


def test_same_seed_same_table_and_curve_different_seed_different_table(tiny_result):
    again = train(AutoScaleConfig(seed=3, **TINY))
    assert np.array_equal(tiny_result.learner.q, again.learner.q)
    pd.testing.assert_frame_equal(tiny_result.curve, again.curve)
    other = train(AutoScaleConfig(seed=4, **TINY))
    assert not np.array_equal(tiny_result.learner.q, other.learner.q)
    assert tiny_result.env_steps == TINY["total_steps"]
    assert {"step", "episode", "reward", "energy_mj", "qos_ok"} <= set(tiny_result.curve.columns)


def test_save_load_round_trip_without_pickle(tiny_result, tmp_path):
    learner = tiny_result.learner
    path = learner.save(tmp_path / "as")
    with np.load(path / Q_FILE, allow_pickle=False) as data:
        assert np.array_equal(data["q"], learner.q)
    meta = json.loads((path / META_FILE).read_text())
    assert meta["action_names"] == learner.action_names
    env = gym.make("bench/AutoScale-v0", scenario="signal_steps", max_episode_steps=200,
                   **learner.config.env_kwargs())
    loaded = make_policy("autoscale", env, path=path)
    assert np.array_equal(loaded.q, learner.q) and loaded.config == learner.config
    obs, _ = env.reset(seed=1)
    for _ in range(200):
        a = learner.act(obs)
        assert loaded.act(obs) == a
        obs, _, _, truncated, _ = env.step(a)
        if truncated:
            break
    other = gym.make("bench/AutoScale-v0", scenario="signal_steps", max_levels_per_target=3)
    with pytest.raises(ValueError, match="actions"):
        AutoScaleLearner.load(path, other)
