"""Baselines and the oracle: valid actions on both envs, and the properties that define them."""

import numpy as np
import pytest

from bench.world.network import load_link
from bench.policies import make_policy
from bench.policies.baselines import baselines_for, episode_arrays, local_actions, wifi_min_usable_dbm
from bench.policies.rollout import COLUMNS, evaluate_policy
from bench.sim.envs import obs_index
from bench.world.profiles import load_profile

N = 80


def _kwargs(name, env):
    if name == "distilled":  # fitted on another scenario than the one evaluated
        other = "wifi_weak" if env.unwrapped.scenario.name != "wifi_weak" else "wifi_strong"
        if "DVFO" in env.spec.id:
            other = "dvfo_bandwidth_walk"
        return {"train_scenarios": [other], "train_seeds": [1], "n_steps": N}
    return {"seed": 5, "n_steps": N}


def test_every_baseline_and_the_oracle_run_a_full_episode(any_env):
    names = [b for b in baselines_for(any_env) if b != "drldo"] + ["oracle"]  # DRLDO trains: test_fitted_baselines
    assert {"cloud_only", "random", "edge_best_static", "neurosurgeon", "best_static_dnn", "best_static_dnn_signal",
            "distilled"} <= set(names)
    for name in names:
        df = evaluate_policy(name, any_env, None, [3], N, policy_kwargs=_kwargs(name, any_env))
        assert list(df.columns) == COLUMNS
        assert len(df) == N, name
        assert all(any_env.action_space.contains(int(a)) for a in df["action"]), name
        assert np.isfinite(df["energy_mj"]).all() and (df["energy_mj"] > 0).all(), name


def test_cpu_and_gpu_only_apply_to_autoscale_only_and_edge_gpu_max_to_dvfo_only(as_env, dvfo_env):
    for name in ("cpu_only", "gpu_only"):
        assert name in baselines_for(as_env) and name not in baselines_for(dvfo_env)
        with pytest.raises(ValueError, match="edge_gpu_max"):
            make_policy(name, dvfo_env)
    assert "edge_gpu_max" in baselines_for(dvfo_env) and "edge_gpu_max" not in baselines_for(as_env)
    with pytest.raises(ValueError, match="gpu_only"):
        make_policy("edge_gpu_max", as_env)


@pytest.mark.parametrize("name,target", [("cpu_only", "cpu"), ("gpu_only", "gpu")])
def test_local_only_is_the_target_at_its_highest_level(as_env, name, target):
    row = as_env.unwrapped.action_table.loc[make_policy(name, as_env).act(None)]
    profile = load_profile("phone_sd845")
    assert row["kind"] == "local" and row["target"] == target
    assert row["freq_mhz"] == pytest.approx(float(np.max(profile.targets[target].freq_mhz)))


def test_dvfo_edge_gpu_max_and_cloud_only_are_the_xi_extremes_at_top_frequencies(dvfo_env):
    acts = dvfo_env.unwrapped.action_table
    for name, xi in (("edge_gpu_max", 0.0), ("cloud_only", float(acts["xi"].max()))):
        row = acts.loc[make_policy(name, dvfo_env).act(None)]
        assert row["xi"] == xi
        for col in ("cpu_mhz", "gpu_mhz", "mem_mhz"):
            assert row[col] == acts[col].max(), (name, col)


def test_cloud_only_switches_to_lte_below_wifis_minimum_usable_signal(as_env):
    link = load_link("wifi")
    thr = wifi_min_usable_dbm(link)
    # the threshold is the data's MCS0 sensitivity: the link still carries data there, but barely
    assert thr == link.min_usable_dbm and "802.11n" in link.sources["min_usable_dbm"]
    assert link.uplink_goodput_mbps(thr) > 0  # MIN_MBPS floor removed: a dead link is 0, bounded by the timeout
    assert link.uplink_goodput_mbps(thr) < 0.2 * link.uplink_goodput_mbps(-50.0)
    u = as_env.unwrapped
    policy = make_policy("cloud_only", as_env)
    obs, _ = as_env.reset(seed=0)
    radio_of = lambda a: u.sim.links[u.sim.routes[int(u.action_table.at[a, "route"])].radio].name  # noqa: E731
    for wifi_dbm, radio in ((thr + 1.0, "wifi"), (-50.0, "wifi"), (thr, "lte"), (thr - 10.0, "lte")):
        o = obs.copy()
        o[obs_index(as_env, "wifi_dbm")] = wifi_dbm
        a = policy.act(o)
        assert u.action_table.at[a, "target"] == "cloud"
        assert radio_of(a) == radio, wifi_dbm


def test_random_is_seeded(as_env):
    p1, p2 = make_policy("random", as_env, seed=11), make_policy("random", as_env, seed=11)
    a1, a2 = [p1.act(None) for _ in range(50)], [p2.act(None) for _ in range(50)]
    assert a1 == a2
    assert a1 != [make_policy("random", as_env, seed=12).act(None) for _ in range(50)]
    assert len(set(a1)) > 1 and all(0 <= a < as_env.action_space.n for a in a1)
    with pytest.raises(ValueError, match="seed"):
        make_policy("random", as_env)


def test_edge_best_static_is_least_energy_local_action_meeting_its_qos_criterion(any_env):
    any_env.reset(seed=21)
    policy = make_policy("edge_best_static", any_env, n_steps=N)
    a = policy.act(None)
    states, draws, _ = episode_arrays(any_env)
    idx = np.arange(N)
    out = any_env.unwrapped.sim.evaluate(states.take(idx), None, draws.take(idx))
    local = local_actions(any_env)
    assert a in local
    rate, energy = out.qos_ok.mean(axis=0), out.energy_mj.mean(axis=0)
    assert rate[a] == rate[local].max()  # tolerance 0: the best local QoS rate
    meets = local[rate[local] >= rate[a]]
    assert energy[a] <= energy[meets].min() + 1e-9
    # refits on the next episode's trace
    any_env.reset(seed=22)
    policy.reset()
    assert policy.summary is not None and len(policy.summary) == len(local)


def test_oracle_is_never_beaten_by_a_fixed_action_under_the_same_draws(as_env):
    seed = 8
    df = evaluate_policy("oracle", as_env, None, [seed], N)
    as_env.reset(seed=seed)
    states, draws, _ = episode_arrays(as_env)
    idx = np.arange(N)
    out = as_env.unwrapped.sim.evaluate(states.take(idx), None, draws.take(idx))
    any_ok = out.qos_ok.any(axis=1)
    ok_energy = np.where(out.qos_ok, out.energy_mj, np.inf).min(axis=1)
    oracle_ok, oracle_e = df["qos_ok"].to_numpy(), df["energy_mj"].to_numpy()
    assert (oracle_ok == any_ok).all()  # meets QoS whenever any action can
    assert (oracle_e[any_ok] <= ok_energy[any_ok] * (1 + 1e-12)).all()
    # and fixed actions, compared over the whole episode, never use less energy while meeting QoS as often
    for a in range(out.energy_mj.shape[1]):
        assert out.qos_ok[:, a].sum() < oracle_ok.sum() or out.energy_mj[:, a].mean() >= oracle_e.mean() - 1e-9


def test_evaluate_policy_rejects_a_scenario_other_than_the_envs(as_env):
    with pytest.raises(ValueError, match="differs"):
        evaluate_policy("cpu_only", as_env, "wifi_strong", [0], 5)
