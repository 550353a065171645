"""Named observations carry the runtime signals the papers name; permutation importance finds what a policy uses."""

import numpy as np
import pytest

from bench.policies import make_policy
from bench.policies.importance import permutation_importance
from bench.sim.envs import AUTOSCALE_OBS_FIELDS, DVFO_OBS_FIELDS, obs_fields, obs_index


def test_every_observation_field_is_named_and_within_the_space(any_env):
    names = obs_fields(any_env)
    assert len(names) == any_env.observation_space.shape[0] == len(set(names))
    obs, _ = any_env.reset(seed=1)
    assert any_env.observation_space.contains(obs)
    for f in ("cpu_load", "mem_load", "gpu_load"):
        assert f in names
    with pytest.raises(ValueError, match="fields"):
        obs_index(any_env, "temperature")


def test_observations_carry_the_current_runtime_state(any_env):
    obs, _ = any_env.reset(seed=2)
    ep = any_env.unwrapped.episode()
    for t in range(5):
        assert obs[obs_index(any_env, "cpu_load")] == pytest.approx(ep.states.cpu_load[t], abs=1e-6)
        assert obs[obs_index(any_env, "mem_load")] == pytest.approx(ep.states.mem_load[t], abs=1e-6)
        obs, *_ = any_env.step(0)


def test_dvfo_observes_signal_and_thinking_while_moving_fields(dvfo_env):
    assert DVFO_OBS_FIELDS[5:11] == ("bandwidth_mbps", "prev_cpu", "prev_gpu", "prev_mem", "prev_xi", "time_to_go")
    obs, _ = dvfo_env.reset(seed=3)
    u = dvfo_env.unwrapped
    radio = u.sim.routes[0].radio
    assert obs[obs_index(dvfo_env, "signal_dbm")] == pytest.approx(u.episode().states.signal_dbm[0, radio])
    assert AUTOSCALE_OBS_FIELDS[7:9] == ("wifi_dbm", "lte_dbm")


def test_permutation_importance_finds_the_only_field_a_policy_reads(as_env):
    # cloud_only reads the Wi-Fi RSSI alone (Wi-Fi above its minimum usable level, else LTE)
    policy = make_policy("cloud_only", as_env)
    df = permutation_importance(policy, as_env, ["mobility_walk"], [1], 120, n_repeats=3, seed=0)  # Wi-Fi crosses -82 dBm
    assert df.iloc[0]["feature"] == "wifi_dbm" and df.iloc[0]["decisions_changed"] > 0.05
    assert (df.iloc[1:]["decisions_changed"] == 0).all()
    assert list(df["rank"]) == list(range(1, len(df) + 1)) and set(df["feature"]) == set(AUTOSCALE_OBS_FIELDS)
    # a constant policy uses nothing
    flat = permutation_importance(make_policy("gpu_only", as_env), as_env, ["signal_steps"], [1], 60, n_repeats=2)
    assert (flat["decisions_changed"] == 0).all() and np.allclose(flat["energy_change"], 0)


def test_dvfo_observes_the_radio_state_an_offload_meets(dvfo_env):
    """Fields 15-17: an offload's promotion (latency and energy) depends on the radio's power state, so the
    observation shows how long the radio stays connected; 0 means the next offload pays a promotion."""
    u = dvfo_env.unwrapped
    acts = u.action_table
    offload = int(acts.index[acts["xi"] == 1.0][-1])  # the whole DNN's input to the cloud
    i_conn, i_busy = obs_index(dvfo_env, "radio_connected_ms"), obs_index(dvfo_env, "radio_busy_ms")
    obs, _ = dvfo_env.reset(seed=4)
    assert obs[i_conn] == 0 and obs[i_busy] == 0 and obs[obs_index(dvfo_env, "throttled")] == 0  # radio idle at first
    obs, _r, _, _, info = dvfo_env.step(offload)
    assert info["promo_mj"] > 0  # from idle: a promotion
    tail_ms = float(u.sim.kernel.tail_ms[0])
    # connected until the transfer's end plus the tail, seen from the next arrival: the privileged episode view agrees
    ep = u.episode()
    idle_ms = float(np.asarray(ep.states.radio_idle_ms)[ep.step, u.sim.routes[0].radio])
    assert obs[i_conn] == pytest.approx(max(tail_ms - idle_ms, 0.0), rel=1e-5)
    idle, connected = [], []
    for _ in range(80):  # offload every request: whether the radio is still connected varies with each transfer
        before = float(obs[i_conn])
        obs, _r, _, _, info = dvfo_env.step(offload)
        (idle if before == 0 else connected).append((before, info["promo_mj"]))
    assert idle and connected, "the scenario must show both radio states for the check to mean anything"
    assert all(promo > 0 for _, promo in idle)  # observed idle: every offload pays a promotion
    # observed connected for longer than the head runs before the upload: no promotion
    assert all(promo == 0 for before, promo in connected if before > 100.0)
