"""The cheap scalar step and the vector envs reproduce the batch simulator (bench.sim.core) to 1e-9."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import bench.sim  # noqa: F401  (registers the envs)
from bench.sim.kernel import Carry
from bench.sim.envs import AUTOSCALE_ID, DVFO_ID

CASES = [
    (AUTOSCALE_ID, {"scenario": "random_walk"}),
    (AUTOSCALE_ID, {"scenario": "cellular_only"}),
    (AUTOSCALE_ID, {"scenario": "heldout_cell_edge"}),
    (DVFO_ID, {"scenario": "dvfo_bandwidth_walk"}),
    (DVFO_ID, {"scenario": "heldout_dvfo_markov_cap"}),
]
FIELDS = ("energy_mj", "latency_ms", "tail_mj", "promo_mj", "remote_energy_mj", "accuracy", "accuracy_loss")


def _close(a, b, rel=1e-9):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & (a == b)
    ok = both_nan | same_inf | (np.abs(a - b) <= rel * np.maximum(np.abs(a), np.abs(b)) + 1e-12)
    return bool(ok.all())


@pytest.mark.parametrize("env_id,kwargs", CASES)
def test_cheap_step_matches_batch_path_over_a_whole_scenario(env_id, kwargs):
    """Random actions over every request of a scenario: each step's outcome equals Simulator.evaluate's."""
    env = gym.make(env_id, max_episode_steps=None, **kwargs).unwrapped
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    infos, truncated = [], False
    while not truncated:
        _, _, _, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        infos.append(info)
    ledger = env.ledger  # built from the batch path with the radio/thermal state each step met
    assert len(infos) == len(ledger.energy_mj) == len(env.episode().states)
    assert _close([i["energy_mj"] for i in infos], ledger.energy_mj)
    assert _close([i["tail_mj"] for i in infos], ledger.tail_mj)
    assert _close([i["promo_mj"] for i in infos], ledger.promo_mj)
    # the batch outcome of the same steps, field by field
    ep = env.episode()
    idx = np.arange(len(infos))
    out = env.sim.evaluate(ep.states.take(idx), env.actions_taken(), ep.draws.take(idx))
    for f in ("energy_mj", "tail_mj", "promo_mj", "remote_energy_mj", "accuracy", "accuracy_loss"):
        assert _close([i[f] for i in infos], getattr(out, f)), f
    if env_id == AUTOSCALE_ID:  # DVFO's info adds the queueing wait to latency and QoS
        assert _close([i["latency_ms"] for i in infos], out.latency_ms)
        assert [i["qos_ok"] for i in infos] == out.qos_ok.tolist()
    else:
        assert _close([i["latency_ms"] - i["wait_ms"] for i in infos], out.latency_ms)
    assert [i["timed_out"] for i in infos] == out.timed_out.tolist()
    # the episode exercised the physics the scalar path has to get right
    assert any(i["promo_mj"] > 0 for i in infos) and any(i["tail_mj"] != 0 for i in infos)
    # whole-episode energy: the idle baseline over the last slot runs to the last tail's end
    total = sum(i["total_energy_mj"] for i in infos)
    assert _close(total, ledger.summary(env._arrival_ms(len(infos)))["total_mj"], rel=1e-9)


def test_cheap_step_hits_timeouts_and_fallbacks():
    """A dead-link scenario: offloads time out, and the scalar path agrees with the batch path on them."""
    env = gym.make(AUTOSCALE_ID, scenario="heldout_cell_edge", max_episode_steps=None).unwrapped
    env.reset(seed=0)
    names = list(env.action_table["name"])
    cloud = [i for i, n in enumerate(names) if n.startswith("cloud")]
    rng = np.random.default_rng(0)
    timed_out, truncated = 0, False
    while not truncated:
        _, _, _, truncated, info = env.step(int(rng.choice(cloud)))
        timed_out += info["timed_out"]
    ledger = env.ledger
    assert sum(p["fallback_ms"] > 0 for p in ledger.phases) == timed_out  # every timeout ran the local fallback
    if timed_out == 0:
        pytest.skip("this scenario realisation has no timeout")
    assert _close(ledger.energy_mj, env.sim.evaluate(env.episode().states.take(np.arange(len(env.actions_taken()))),
                                                     env.actions_taken(),
                                                     env.episode().draws.take(np.arange(len(env.actions_taken())))).energy_mj)


def test_bad_action_is_refused():
    env = gym.make(AUTOSCALE_ID, scenario="random_walk")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not in Discrete"):
        env.step(10_000)
    with pytest.raises(ValueError, match="not in Discrete"):
        env.step(-1)


@pytest.mark.parametrize("system", ["autoscale", "dvfo"])
def test_lean_batch_path_matches_evaluate(system):
    """The vector envs' lean path equals Simulator.evaluate, radio state and throttling drawn at random."""
    from bench.sim.fast import evaluate_lean
    from bench.sim.system import autoscale_system, dvfo_system
    from bench.world.scenarios import load_scenario

    rng = np.random.default_rng(5)
    sim = (autoscale_system() if system == "autoscale" else dvfo_system()).sim
    scenario = "heldout_cell_edge" if system == "autoscale" else "heldout_dvfo_markov_cap"
    states = sim.states_from_trace(load_scenario(scenario).trace(rng, steps=3000, model=sim.interference))
    states.radio_idle_ms[:] = rng.uniform(-2000, 20000, states.radio_idle_ms.shape)
    states.radio_idle_ms[::7] = np.inf
    states.throttled[:] = rng.random(len(states)) < 0.3
    tab, n = sim.kernel, len(states)
    states = states.with_carry(Carry(rng.uniform(-500, 3000, (n, tab.n_resources)),
                                     rng.uniform(-500, 3000, (n, tab.n_radios)), states.radio_idle_ms,
                                     rng.uniform(-500, 3000, (n, tab.n_routes)), states.throttled, np.zeros(n)))
    draws = sim.draw(len(states), rng)
    actions = rng.integers(0, sim.A, len(states))
    ref = sim.evaluate(states, actions, draws)
    out = evaluate_lean(sim, states, actions, draws, chunk=1000)
    for f in ("energy_mj", "remote_energy_mj", "latency_ms", "accuracy", "accuracy_loss", "violation", "tail_mj",
              "promo_mj"):
        assert _close(getattr(out, f), getattr(ref, f)), f
    for f in ("qos_ok", "timed_out"):
        assert np.array_equal(getattr(out, f), getattr(ref, f)), f
    assert np.array_equal(out.radio, ref.phases["radio"])
    assert _close(out.new_last_end, ref.phases["new_last_end"]) and _close(out.local_ms, ref.phases["local_ms"])
    assert ref.timed_out.any() and (ref.promo_mj > 0).any()  # the draw exercised timeouts and promotions
