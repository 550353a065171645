"""Radio state machine, offload timeout, energy accounting and DVFO curve: tests that can fail."""

import numpy as np
import pandas as pd
import pytest

from bench.sim.core import Draws, EnergyLedger, States, load_sim_constants
from bench.sim.system import dvfo_system, load_accuracy_curve
from bench.world.network import load_link


def _states(sim, n, workload="mobilenet_v2", wifi=-45.0, lte=-80.0, interarrival=200.0, idle=None):
    w = sim.tables.workload_index([workload])[0]
    sig = np.empty((n, len(sim.links)))
    for j, name in enumerate(sim.radio_names):
        sig[:, j] = {"wifi": wifi, "lte": lte}[name]
    f = lambda v: np.full(n, float(v))  # noqa: E731
    ridle = None if idle is None else np.broadcast_to(np.asarray(idle, dtype=float), sig.shape).copy()
    return States(np.full(n, w), sig, f(np.inf), f(0), f(0), f(1e9), f(1.0), f(interarrival), ridle)


def _action(sim, name):
    return int(np.flatnonzero(sim.tables.actions["name"] == name)[0])


def _lte(sim):
    return sim.links[sim.radio_names.index("lte")]


def test_dead_link_request_is_bounded_by_the_timeout(autoscale):
    """A cloud offload over a link with no goodput gives up at the timeout and runs the CPU fallback."""
    sim = autoscale.sim
    a, cpu_top = _action(sim, "cloud_lte"), int(sim.tables.fallback[_action(sim, "cloud_lte")])
    d = Draws.neutral(1, len(sim.links))
    dead = sim.evaluate(_states(sim, 1, lte=-140.0), np.array([a]), d)
    local = sim.evaluate(_states(sim, 1, lte=-140.0), np.array([cpu_top]), d)
    timeout = sim.tables.timeout_ms[sim.tables.workload_index(["mobilenet_v2"])[0]]
    assert np.isfinite(timeout) and dead.timed_out[0] and not dead.qos_ok[0]
    assert dead.latency_ms[0] == pytest.approx(timeout + local.latency_ms[0])
    lte = _lte(sim)
    # energy: at most promotion + transfer power for the whole timeout, the CPU fallback and one full tail
    bound = lte.max_power_w * timeout + local.energy_mj[0] + lte.tail_w * lte.tail_ms
    assert np.isfinite(dead.energy_mj[0]) and local.energy_mj[0] < dead.energy_mj[0] <= bound


def test_dropped_request_on_timeout_when_configured(autoscale):
    from bench.sim.core import Simulator
    s = autoscale.sim
    sim = Simulator(s.tables, s.links, s.routes, s.interference, s.idle_power_w, on_timeout="drop")
    a = _action(sim, "cloud_lte")
    out = sim.evaluate(_states(sim, 1, lte=-140.0), np.array([a]), Draws.neutral(1, len(sim.links)))
    w = sim.tables.workload_index(["mobilenet_v2"])[0]
    assert out.timed_out[0] and out.latency_ms[0] == pytest.approx(sim.tables.timeout_ms[w]) and np.isnan(out.accuracy[0])


def test_isolated_lte_offload_pays_promotion_and_full_tail(autoscale):
    sim = autoscale.sim
    lte, a = _lte(sim), _action(sim, "cloud_lte")
    out = sim.evaluate(_states(sim, 1), np.array([a]), Draws.neutral(1, len(sim.links)))
    assert out.promo_mj[0] == pytest.approx(lte.promotion_w * lte.promotion_ms)
    assert out.tail_mj[0] == pytest.approx(lte.tail_w * lte.tail_ms)  # about 12 J, not cut at the next arrival
    assert out.phases["promo_ms"][0] == pytest.approx(lte.promotion_ms)


def test_back_to_back_lte_offloads_pay_one_promotion_and_one_tail(autoscale):
    sim = autoscale.sim
    lte, a = _lte(sim), _action(sim, "cloud_lte")
    st = _states(sim, 2, interarrival=2000.0)
    out = sim.run_sequence(st, np.array([a, a]), Draws.neutral(2, len(sim.links)))
    assert out.promo_mj[0] > 0 and out.promo_mj[1] == 0
    end0, end1 = out.phases["radio_end_ms"][0], 2000.0 + out.phases["radio_end_ms"][1]
    gap = 2000.0 - end0  # the radio's quiet time between the two transfers
    assert 0 < gap < lte.tail_ms
    # one tail, pushed back from the first request's end to the second's: tail_ms after the second, plus the
    # connected time between the two ends (the first's tail covered the second's transfer)
    assert out.tail_mj.sum() == pytest.approx(lte.tail_w * (lte.tail_ms + end1 - end0))
    # versus two isolated offloads: the second saves its promotion and most of a tail
    iso = sim.evaluate(_states(sim, 1), np.array([a]), Draws.neutral(1, len(sim.links)))
    assert out.energy_mj[1] < iso.energy_mj[0] - lte.tail_w * (lte.tail_ms - gap) * 0.999


def test_overlapping_lte_offloads_pay_one_tail(autoscale):
    """The second transfer starts while the first still runs: no promotion, no tail in between."""
    sim = autoscale.sim
    lte, a = _lte(sim), _action(sim, "cloud_lte")
    out = sim.run_sequence(_states(sim, 2, interarrival=50.0), np.array([a, a]), Draws.neutral(2, len(sim.links)))
    assert out.phases["radio_end_ms"][0] > 50.0 and out.promo_mj[1] == 0
    end0, end1 = out.phases["radio_end_ms"][0], 50.0 + out.phases["radio_end_ms"][1]
    assert out.tail_mj.sum() == pytest.approx(lte.tail_w * (lte.tail_ms + end1 - end0))
    assert out.phases["queue_ms"][1] > 0  # the second waited for the transmitter


def test_local_request_between_offloads_does_not_reset_the_tail(autoscale):
    sim = autoscale.sim
    a, loc = _action(sim, "cloud_lte"), int(sim.tables.fallback[_action(sim, "cloud_lte")])
    out = sim.run_sequence(_states(sim, 3), np.array([a, loc, a]), Draws.neutral(3, len(sim.links)))
    assert out.promo_mj[2] == 0 and out.tail_mj[1] == 0  # 400 ms later the LTE tail (11.6 s) still runs


@pytest.mark.parametrize("name", ["wifi", "lte"])
def test_radio_power_never_leaves_the_sources_measured_range(name):
    link = load_link(name)
    assert link.sources["power_max_mbps"].strip()
    top = link.uplink_power_w(link.power_max_mbps, link.weak_ref_dbm)
    for mbps in (link.power_max_mbps, 2 * link.power_max_mbps, 1e3):
        assert link.uplink_power_w(mbps, link.weak_ref_dbm) == pytest.approx(top)
    for mbps in np.linspace(0, float(link.uplink_mbps.max()), 7):
        assert link.uplink_power_w(mbps, link.weak_ref_dbm) <= top + 1e-12
        assert link.downlink_power_w(mbps) <= (link.base_mw + link.downlink_mw_per_mbps * link.power_max_mbps) / 1e3 + 1e-12


def test_wifi_transfer_power_in_simulation_stays_within_range(autoscale):
    sim = autoscale.sim
    wifi = sim.links[sim.radio_names.index("wifi")]
    a = _action(sim, "cloud_wifi")
    out = sim.evaluate(_states(sim, 1, wifi=-30.0, workload="vit_b_16"), np.array([a]), Draws.neutral(1, len(sim.links)))
    assert out.phases["up_w"][0] <= wifi.max_power_w + 1e-12
    assert out.phases["up_w"][0] == pytest.approx((wifi.base_mw + wifi.uplink_mw_per_mbps * wifi.power_max_mbps) / 1e3)


@pytest.mark.parametrize("scenario", ["signal_steps", "wifi_weak", "heldout_cell_edge"])
def test_energy_conservation_against_the_power_trace(scenario):
    """The env's episode energy (per-step info and ledger) == the integral of the independent reference model's
    power trace (tests/sim/reference_model.py) + the idle baseline, to 1e-9 relative."""
    import gymnasium as gym

    from bench.sim.envs import AUTOSCALE_ID
    from tests.sim.reference_model import ReferenceModel

    env = gym.make(AUTOSCALE_ID, scenario=scenario, max_episode_steps=300, max_levels_per_target=3).unwrapped
    env.sim.thermal, env.sim.thermal_params = None, None  # the reference does not model throttling
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    offload = np.flatnonzero(env.action_table["kind"] == "offload")
    totals = []
    for t in range(300):
        a = int(rng.choice(offload)) if rng.random() < 0.6 else int(rng.integers(env.action_space.n))
        _, _, _, trunc, info = env.step(a)
        totals.append(info["total_energy_mj"])
    ledger: EnergyLedger = env.ledger
    ep = env.episode()
    ref = ReferenceModel(env.sim, ep.states, ep.draws).run(env.actions_taken())
    integral = sum((e - s) * w for s, e, w in ref["trace"])
    assert integral == pytest.approx(ref["energy_mj"], rel=1e-12)
    slot_end = 300 * float(ep.states.interarrival_ms[0])
    summary = ledger.summary(slot_end)
    assert summary["tail_mj"] > 0 and summary["promo_mj"] > 0
    assert summary["above_idle_mj"] == pytest.approx(integral, rel=1e-9)
    end = max(slot_end, ref["end_ms"])
    assert ledger.end_ms(slot_end) == pytest.approx(end, rel=1e-12)
    per_request = ledger.per_request_total_mj(slot_end)
    assert float(per_request.sum()) == pytest.approx(integral + env.sim.idle_power_w * end, rel=1e-9)
    # the per-step totals reported in info are that accounting (the episode's last step carries the overhang)
    np.testing.assert_allclose(totals[:-1], per_request[:-1], rtol=1e-12)


def test_dvfo_uses_the_attention_ranking_of_the_shipped_curve():
    shipped = pd.read_csv(load_sim_constants.__globals__["DATA_DIR"] / "dvfo" / "accuracy_vs_xi.csv")
    att = shipped[shipped["ranking"] == "attention"].sort_values("xi")
    rnd = shipped[shipped["ranking"] == "random"].sort_values("xi")
    assert not np.allclose(att["accuracy_loss"].to_numpy(), rnd["accuracy_loss"].to_numpy())
    sys = dvfo_system(n_cpu_levels=2, n_gpu_levels=2, n_mem_levels=1, xi_levels=list(att["xi"]))
    assert sys.extras["accuracy_ranking"] == "attention"
    np.testing.assert_allclose(sys.extras["curve"]["accuracy_loss"].to_numpy(), att["accuracy_loss"].to_numpy())
    acts = sys.sim.tables.actions
    row = acts.index[(acts.i_cpu == 0) & (acts.i_gpu == 0) & (acts.i_mem == 0)].to_numpy()
    np.testing.assert_allclose(sys.sim.tables.accuracy_loss[0, row], att["accuracy_loss"].to_numpy())
    ablation = dvfo_system(n_cpu_levels=2, n_gpu_levels=2, n_mem_levels=1, xi_levels=list(att["xi"]),
                           accuracy_ranking="random")
    np.testing.assert_allclose(ablation.sim.tables.accuracy_loss[0, row], rnd["accuracy_loss"].to_numpy())


def test_a_curve_with_two_rankings_is_never_interpolated_mixed():
    both = pd.DataFrame({"xi": [0, 0, 1, 1], "ranking": ["attention", "random"] * 2, "accuracy_loss": [0, 0, .01, .02]})
    assert load_accuracy_curve(both, "random")["accuracy_loss"].tolist() == [0, .02]
    with pytest.raises(ValueError, match="duplicate xi"):
        load_accuracy_curve(both.drop(columns="ranking"))


def test_gpu_corunner_slows_the_gpu_not_the_cpu(autoscale):
    sim = autoscale.sim
    acts = sim.tables.actions
    gpu, cpu = int(acts.index[acts.target == "gpu"][-1]), int(acts.index[acts.target == "cpu"][-1])
    d = Draws.neutral(1, len(sim.links))

    def lat(a, g):
        st = _states(sim, 1, workload="resnet50")
        st = States(**{**st.__dict__, "gpu_load": np.array([g])})
        return sim.evaluate(st, np.array([a]), d).latency_ms[0]

    assert lat(gpu, 0.9) > lat(gpu, 0.0) * 1.2
    assert lat(cpu, 0.9) == pytest.approx(lat(cpu, 0.0))


def test_thermal_model_trips_and_releases_with_hysteresis():
    from bench.sim.core import load_thermal_model

    th = load_thermal_model("phone")
    heat, hot, steps = 0.0, False, 0
    while not hot:  # sustained power 2x the trip: trips after a fraction of the time constant
        heat, hot = th.step(heat, hot, 2 * th.trip_power_w, 200.0)
        steps += 1
    assert 0 < steps * 0.2 < th.time_constant_s
    heat, hot = th.step(heat, hot, 0.0, 1.0)  # a moment of idle does not release it (hysteresis)
    assert hot
    while hot:
        heat, hot = th.step(heat, hot, 0.0, 200.0)
    assert heat < th.release_fraction * th.trip_power_w


def test_sustained_load_throttles_as_its_heat_passes_the_trip(autoscale):
    """Each target runs one inference at a time (the queue), so the heat a saturated target builds is its energy
    per arrival interval, not a sum over overlapping requests; the throttle flag follows that heat through the
    thermal model's trip and release thresholds (recomputed here from the requests' own energies)."""
    import math

    import gymnasium as gym
    from bench.sim.envs import AUTOSCALE_ID

    env = gym.make(AUTOSCALE_ID, scenario="cpu_corunner", max_episode_steps=500, max_levels_per_target=6).unwrapped
    env.reset(seed=0)
    acts = env.action_table
    top = int(acts.index[acts.target == "cpu"][-1])
    capped = int(env.sim.tables.throttle_to[top])
    assert acts.loc[capped, "freq_mhz"] < acts.loc[top, "freq_mhz"]
    th = env.sim.thermal
    flags, local_mj = [], []
    for _ in range(500):
        _, _, _, trunc, info = env.step(top)
        flags.append(bool(info["throttled"]))
        local_mj.append(info["energy_mj"])
        if trunc:
            break
    ia = env.episode().states.interarrival_ms if hasattr(env.episode().states, "interarrival_ms") else None
    ia = np.asarray(env._kernel.interarrival[: len(flags)], dtype=float) if ia is None else np.asarray(ia)[: len(flags)]
    heat, hot, expected = 0.0, False, []
    for e, dt in zip(local_mj, ia):
        expected.append(hot)
        k = math.exp(-dt / (th.time_constant_s * 1e3))
        heat = heat * k + e / dt * (1.0 - k)
        hot = heat >= th.release_fraction * th.trip_power_w if hot else heat > th.trip_power_w
    assert not flags[0]
    assert flags == expected


def test_dvfo_latency_stays_bounded_when_offloads_time_out(dvfo):
    """Cloud-only at 0.5 Mbit/s times ViT offloads out; the queue must not grow without bound."""
    import gymnasium as gym
    from bench.sim.envs import DVFO_ID
    from bench.policies import make_policy

    env = gym.make(DVFO_ID, scenario="dvfo_bandwidth_sweep", max_episode_steps=200, n_cpu_levels=2, n_gpu_levels=2,
                   n_mem_levels=1, xi_levels=(0.0, 0.5, 1.0))
    pol = make_policy("cloud_only", env)
    obs, _ = env.reset(seed=0)
    lat, timed = [], []
    for _ in range(200):
        obs, _, _, trunc, info = env.step(pol.act(obs))
        lat.append(info["latency_ms"])
        timed.append(info["timed_out"])
        if trunc:
            break
    sim = env.unwrapped.sim
    t = sim.tables
    worst_local = float((t.pre_ms + t.par_ms).max()) * 1.5  # the slowest local fallback, with jitter headroom
    assert any(timed)
    assert max(lat) <= float(t.timeout_ms.max()) + 2 * worst_local


def test_params_refuse_a_heldout_scenario_the_learner_trains_on(tmp_path):
    import yaml
    from bench.config import ParamsError, load_params
    from bench.paths import PARAMS_FILE

    raw = yaml.safe_load(PARAMS_FILE.read_text())
    held = raw["evaluate"]["suites"]["autoscale_phone"]["heldout_scenarios"]
    assert len(held) >= 4
    raw["train"]["autoscale"]["scenarios"] = list(raw["train"]["autoscale"]["scenarios"]) + [held[0]]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="heldout_scenarios"):
        load_params(tmp_path / "params.yaml")
