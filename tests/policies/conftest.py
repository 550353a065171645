"""Shared fixtures: small, fast envs (few DVFS levels) built once per session."""

import gymnasium as gym
import pytest

import bench.sim  # noqa: F401  (registers the envs)
import bench.policies  # noqa: F401  (registers the policies)


@pytest.fixture(scope="session")
def as_env():
    """AutoScale env on a scenario with varying Wi-Fi, two DVFS levels per target."""
    return gym.make("bench/AutoScale-v0", scenario="signal_steps", max_levels_per_target=3, max_episode_steps=120)


@pytest.fixture(scope="session")
def dvfo_env():
    """DVFO env on the poster's 5 Mbit/s setting, a coarse frequency grid."""
    return gym.make("bench/DVFO-v0", scenario="dvfo_trickle_5mbps", n_cpu_levels=2, n_gpu_levels=3, n_mem_levels=2,
                    xi_levels=4, max_episode_steps=120)


@pytest.fixture(params=["autoscale", "dvfo"])
def any_env(request, as_env, dvfo_env):
    return as_env if request.param == "autoscale" else dvfo_env
