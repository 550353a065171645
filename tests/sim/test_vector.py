"""Vector envs (gymnasium.make_vec's vector_entry_point) behave like SyncVectorEnv over the single env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import bench.sim  # noqa: F401  (registers the envs)
from bench.sim.envs import AUTOSCALE_ID, DVFO_ID
from bench.sim.vector import AutoScaleVectorEnv, DVFOVectorEnv, SB3VecEnv

CASES = [(AUTOSCALE_ID, "random_walk", AutoScaleVectorEnv), (AUTOSCALE_ID, "heldout_cell_edge", AutoScaleVectorEnv),
         (DVFO_ID, "dvfo_bandwidth_walk", DVFOVectorEnv)]


@pytest.mark.parametrize("env_id,scenario,cls", CASES)
def test_vector_env_matches_sync_vector_env(env_id, scenario, cls):
    """Same seeds and actions: same observations, rewards, truncations (autoreset included), outcomes to 1e-9."""
    sync = gym.make_vec(env_id, num_envs=3, vectorization_mode="sync", scenario=scenario, max_episode_steps=60)
    vec = gym.make_vec(env_id, num_envs=3, scenario=scenario, max_episode_steps=60)
    assert isinstance(vec, cls)
    assert vec.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"]
    assert vec.observation_space == sync.observation_space and vec.action_space == sync.action_space
    oa, _ = sync.reset(seed=11)
    ob, _ = vec.reset(seed=11)
    assert data_equivalence(oa, ob)
    rng = np.random.default_rng(11)
    resets = 0
    for _ in range(150):  # two and a half episodes: truncation and NEXT_STEP autoreset
        act = rng.integers(0, vec.single_action_space.n, 3)
        ra, rb = sync.step(act), vec.step(act)
        for x, y in zip(ra[:4], rb[:4]):
            assert data_equivalence(x, y)
        assert vec.observation_space.contains(rb[0])
        resets += int(rb[3].sum())
        m = rb[4]["_energy_mj"]
        if "energy_mj" in ra[4]:
            assert np.allclose(ra[4]["energy_mj"][m], rb[4]["energy_mj"][m], rtol=1e-9, atol=0)
            assert np.array_equal(ra[4]["timed_out"][m], rb[4]["timed_out"][m])
    assert resets == 6


def test_vector_env_refuses_bad_actions_and_counts():
    with pytest.raises(ValueError, match="num_envs"):
        AutoScaleVectorEnv(num_envs=0, scenario="random_walk")
    vec = gym.make_vec(AUTOSCALE_ID, num_envs=2, scenario="random_walk")
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="integers in"):
        vec.step(np.array([0, 10_000]))


def test_sb3_trains_on_the_vector_env():
    """Stable-Baselines3 learns on the batch-stepped env through the VecEnv adapter."""
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env  # noqa: F401  (SB3 is importable)

    venv = SB3VecEnv(gym.make_vec(AUTOSCALE_ID, num_envs=4, scenario="random_walk", max_episode_steps=20))
    model = sb3.PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    obs = venv.reset()
    assert obs.shape == (4,) + venv.observation_space.shape
    actions, _ = model.predict(obs)
    obs, rew, done, infos = venv.step(actions)
    assert rew.shape == (4,) and len(infos) == 4


def test_autoscale_observes_each_processors_own_backlog():
    """Fields cpu/gpu/dsp_busy_ms are each local target's wait; local_busy_ms is their maximum."""
    from bench.sim.envs import AUTOSCALE_OBS_FIELDS as F

    env = gym.make(AUTOSCALE_ID, scenario="random_walk", max_episode_steps=50)
    obs, _ = env.reset(seed=3)
    names = list(env.unwrapped.action_table["name"])
    gpu = next(i for i, n in enumerate(names) if n.startswith("gpu@"))
    seen_gpu_busy = False
    for _ in range(49):  # everything on the slowest GPU level: the GPU queues, the CPU and DSP stay idle
        obs, *_ = env.step(gpu)
        per = [obs[F.index(f"{r}_busy_ms")] for r in ("cpu", "gpu", "dsp")]
        assert per[0] == 0.0 and per[2] == 0.0
        assert obs[F.index("local_busy_ms")] == pytest.approx(max(per))
        seen_gpu_busy |= per[1] > 0.0
    assert seen_gpu_busy
