import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import bench.sim  # noqa: F401
from bench.sim.envs import AUTOSCALE_ID, DVFO_ID, register_envs


def _make(env_id, curve, **kw):
    if env_id == DVFO_ID:
        kw = {"accuracy_curve": curve, "n_cpu_levels": 3, "n_gpu_levels": 3, "n_mem_levels": 2, **kw}
    return gym.make(env_id, **kw)


@pytest.mark.parametrize("env_id", [AUTOSCALE_ID, DVFO_ID])
def test_check_env_passes(env_id, placeholder_curve):
    env = _make(env_id, placeholder_curve)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.spec.max_episode_steps == 200


@pytest.mark.parametrize("env_id", [AUTOSCALE_ID, DVFO_ID])
def test_same_seed_same_rollout(env_id, placeholder_curve):
    def rollout(seed):
        env = _make(env_id, placeholder_curve)
        obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        rows = [obs]
        for _ in range(60):
            obs, r, term, trunc, info = env.step(env.action_space.sample())
            rows.append(np.r_[obs, r, info["energy_mj"], info["latency_ms"]])
        return np.concatenate(rows)
    np.testing.assert_array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5), rollout(6))


def test_episode_truncates_at_time_limit(placeholder_curve):
    env = _make(AUTOSCALE_ID, placeholder_curve)
    env.reset(seed=0)
    for i in range(200):
        _, _, term, trunc, _ = env.step(0)
        assert not term
    assert trunc


def test_autoscale_reward_is_inferences_per_joule_when_qos_met(placeholder_curve):
    env = _make(AUTOSCALE_ID, placeholder_curve, scenario="wifi_strong")
    env.reset(seed=0)
    seen_ok = seen_bad = False
    for _ in range(100):
        _, r, _, _, info = env.step(env.action_space.sample())
        if info["qos_ok"]:
            assert r == pytest.approx(1000.0 / info["energy_mj"])
            seen_ok = True
        else:
            assert r <= -env.unwrapped.violation_penalty
            seen_bad = True
    assert seen_ok and seen_bad


def test_dvfo_energy_only_reward_and_previous_action(placeholder_curve):
    env = _make(DVFO_ID, placeholder_curve, w_energy=1.0, w_time=0.0, qos_penalty=0.0)
    env.reset(seed=0)
    u = env.unwrapped
    a = u.action_space.n - 1
    obs, r, _, _, info = env.step(a)
    w = u.sim.tables.workload_index([info["workload"]])[0]
    assert r == pytest.approx(-info["energy_mj"] / u.e_ref_mj[w])
    i = np.array(u.decode(a)) / np.maximum(u._dims - 1, 1)
    np.testing.assert_allclose(obs[6:10], i)


def test_register_is_idempotent():
    register_envs()
    register_envs()
    assert AUTOSCALE_ID in gym.registry and DVFO_ID in gym.registry


def test_profile_and_scenario_by_constructor(placeholder_curve):
    env = _make(AUTOSCALE_ID, placeholder_curve, scenario="cpu_corunner", peer=None)
    assert "peer" not in set(env.unwrapped.action_table["name"])
    obs, _ = env.reset(seed=1)
    assert obs[5] == pytest.approx(0.9)  # the CPU-heavy co-runner's load is observed


def test_episode_accessor_is_privileged_and_tracks_the_step():
    import gymnasium as gym

    env = gym.make("bench/AutoScale-v0", scenario="wifi_strong")
    with pytest.raises(gym.error.ResetNeeded):
        env.unwrapped.episode()
    env.reset(seed=3)
    first = env.unwrapped.episode()
    assert first.step == 0 and first.wait_ms == 0.0 and len(first.states.workload) > 1
    env.step(0)
    assert env.unwrapped.episode().step == 1 and env.unwrapped.episode().states is first.states


def test_autoscale_observation_shows_the_queue(tmp_path):
    """Back-to-back requests on the slowest CPU level: the next request sees the CPU busy (local_busy_ms > 0), waits,
    and its latency includes the wait; a cloud upload fills the transmitter queue (radio_busy_ms)."""
    from bench.sim.envs import obs_index

    import yaml

    path = tmp_path / "busy.yaml"
    path.write_text(yaml.safe_dump({
        "name": "busy", "steps": 20, "interarrival_ms": 50,
        "signal": {"wifi": {"kind": "constant", "level": "weak"}, "lte": {"kind": "constant", "level": "weak"}},
        "bandwidth_cap_mbps": {"kind": "constant", "value": 1000.0}, "interference": {"kind": "none"},
        "workload_mix": [{"workload": "vit_b_16", "qos_ms": 200, "max_accuracy_loss": 0.01}]}))
    env = gym.make(AUTOSCALE_ID, scenario=str(path))
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    i_local, i_radio = obs_index(env, "local_busy_ms"), obs_index(env, "radio_busy_ms")
    assert obs[i_local] == 0 and obs[i_radio] == 0
    slow_cpu = int(np.flatnonzero(u.action_table["target"] == "cpu")[0])
    lats = []
    for _ in range(4):
        obs, _, _, _, info = env.step(slow_cpu)
        lats.append(info["latency_ms"])
    ia = float(u.episode().states.interarrival_ms[0])
    assert lats[0] > ia  # the slowest CPU level outlasts the slot (the test's premise) ...
    assert obs[i_local] > 0 and lats[-1] > lats[0]  # ... so the next requests queue behind it
    lte = int(np.flatnonzero(u.action_table["name"] == "cloud_lte")[0])
    for _ in range(3):
        obs, _, _, _, info = env.step(lte)
    assert obs[i_radio] > 0  # at the cell edge an upload outlasts the inter-arrival time
