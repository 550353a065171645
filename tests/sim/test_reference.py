"""The kernel's paths against an independent discrete-event model of the same world (tests/sim/reference_model.py).

Random episodes with overlapping requests (short inter-arrivals), queues on every
resource, dead and capped links (timeouts), idle gaps longer than the radio tails
(promotions) and shorter ones (tails cut short): per-request latency, timeouts and
remote energy, and the episode's device energy (the integral of the reference's
power trace) agree to 1e-9 relative, for the batch sequence path
(:meth:`Simulator.run_sequence`), the lock-step path (:meth:`Simulator.rollout`)
and the scalar gym step.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sim.core import Draws, States
from bench.sim.fast import EpisodeKernel
from bench.sim.kernel import Carry
from bench.sim.system import autoscale_system, dvfo_system
from tests.sim.reference_model import ReferenceModel

N_EPISODES = 120  # per system: 240 episodes in all


def _cool(system):
    """The system's simulator without thermal throttling (the reference does not model it)."""
    sim = system.sim
    sim.thermal, sim.thermal_params = None, None
    return sim


@pytest.fixture(scope="module")
def sims(placeholder_curve):
    return {"autoscale": _cool(autoscale_system(max_levels_per_target=3)),
            "dvfo": _cool(dvfo_system(accuracy_curve=placeholder_curve, n_cpu_levels=2, n_gpu_levels=2,
                                      n_mem_levels=1, xi_levels=4))}


def random_episode(sim, rng, n=None):
    """States, draws and actions of a random episode that exercises queues, timeouts, promotions and tails."""
    n = n or int(rng.integers(4, 16))
    r = len(sim.links)
    sig = np.empty((n, r))
    for j, lk in enumerate(sim.links):
        lo, hi = float(lk.signal_dbm.min()), float(lk.signal_dbm.max())
        sig[:, j] = rng.uniform(lo - 10, hi, n)  # includes dead links (zero goodput: a timeout)
    cap = np.where(rng.random(n) < 0.4, rng.uniform(0.05, 8.0, n), np.inf)
    ia_scale = rng.choice([5.0, 50.0, 400.0, 4000.0])
    ia = rng.exponential(ia_scale, n) + 1.0
    ia = np.where(rng.random(n) < 0.15, rng.uniform(12_000, 30_000, n), ia)  # gaps past the radio tails
    f = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    states = States(rng.integers(0, sim.W, n), sig, cap, f(0, 0.8), f(0, 0.8), f(50, 3000), f(0, 0.05), ia,
                    gpu_load=f(0, 0.5))
    draws = sim.draw(n, rng)
    offload = np.flatnonzero(sim.kernel.offloads.reshape(sim.W, sim.A).any(axis=0))
    acts = np.where(rng.random(n) < 0.7, rng.choice(offload, n), rng.integers(0, sim.A, n))
    return states, draws, acts


def _rel_close(a, b, rel=1e-9, abs_=1e-9):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all((np.abs(a - b) <= rel * np.maximum(np.abs(a), np.abs(b)) + abs_) | (np.isnan(a) & np.isnan(b))))


@pytest.mark.parametrize("system", ["autoscale", "dvfo"])
def test_kernel_matches_the_discrete_event_reference(sims, system):
    sim = sims[system]
    rng = np.random.default_rng(2024 if system == "autoscale" else 7)
    seen = {"overlap": 0, "timeout": 0, "promotion": 0, "tail_cut": 0, "queued": 0}
    for _ in range(N_EPISODES):
        states, draws, acts = random_episode(sim, rng)
        out = sim.run_sequence(states, acts, draws)
        ref = ReferenceModel(sim, states, draws).run(acts)
        assert _rel_close(out.latency_ms, ref["latency_ms"]), (out.latency_ms, ref["latency_ms"])
        assert np.array_equal(out.timed_out, ref["timed_out"])
        assert _rel_close(out.remote_energy_mj, ref["remote_energy_mj"])
        # the episode's device energy above idle: sum of the per-request attribution == integral of the power trace
        assert _rel_close(out.energy_mj.sum(), ref["energy_mj"]), (out.energy_mj.sum(), ref["energy_mj"])
        arrivals = np.concatenate([[0.0], np.cumsum(states.interarrival_ms)[:-1]])
        seen["overlap"] += int(np.any(arrivals[1:] < (arrivals + out.latency_ms)[:-1]))
        seen["timeout"] += int(out.timed_out.any())
        seen["promotion"] += int((out.promo_mj > 0).sum() > 1)
        seen["queued"] += int((out.phases["queue_ms"] > 0).any())
        used = out.phases["radio"] >= 0
        seen["tail_cut"] += int(used.sum() > 1 and (out.promo_mj[used][1:] == 0).any())
        # the scalar step (the gym envs' path) is the same kernel
        k = EpisodeKernel(sim, states, draws)
        steps = [k.outcome(t, int(a)) for t, a in enumerate(acts)]
        assert _rel_close([s.energy_mj for s in steps], out.energy_mj)
        assert _rel_close([s.latency_ms for s in steps], out.latency_ms)
    assert all(v >= 5 for v in seen.values()), seen


@pytest.mark.parametrize("system", ["autoscale", "dvfo"])
def test_lockstep_episodes_match_sequences(sims, system):
    """Simulator.rollout (K episodes stepped together, the batch path with the queue) == run_sequence per episode."""
    sim = sims[system]
    rng = np.random.default_rng(11)
    T, K = 12, 6
    eps = [random_episode(sim, rng, n=T) for _ in range(K)]
    # lay the K episodes out (T, K): row t*K + k is request t of episode k
    order = np.arange(T * K).reshape(K, T).T.ravel()
    cat = lambda objs: type(objs[0])(**{f: np.concatenate([getattr(o, f) for o in objs])[order]  # noqa: E731
                                        for f in objs[0].__dataclass_fields__})
    states, draws = cat([e[0] for e in eps]), cat([e[1] for e in eps])
    acts = np.stack([e[2] for e in eps], axis=1)
    res = sim.rollout(states, draws, acts)
    for k, (st, dr, a) in enumerate(eps):
        one = sim.run_sequence(st, a, dr)
        assert _rel_close(res["energy_mj"][:, k], one.energy_mj)
        assert _rel_close(res["latency_ms"][:, k], one.latency_ms)


def _two_offloads(sim, gap_ms, cap=np.inf):
    w = sim.tables.workload_index(["vit_b_16"])[0]
    sig = np.tile([[-45.0, -80.0]], (2, 1))[:, :len(sim.links)]
    f = lambda v: np.full(2, float(v))  # noqa: E731
    states = States(np.full(2, w), sig, f(cap), f(0), f(0), f(1e9), f(1.0), np.array([gap_ms, 1000.0]))
    return states, Draws.neutral(2, len(sim.links))


def test_two_overlapping_offloads_draw_radio_power_once_and_share_the_goodput(sims):
    """Two uploads at once: the second waits for the transmitter (the goodput is shared, not doubled), the
    pair's radio energy is that of one busy period (connected power once, no second promotion), and the
    reference's power trace never exceeds one radio's transmit power."""
    sim = sims["autoscale"]
    a = int(np.flatnonzero(sim.tables.actions["name"] == "cloud_wifi")[0])
    wifi = sim.links[sim.radio_names.index("wifi")]
    states, draws = _two_offloads(sim, 0.0)  # both arrive at t = 0
    out = sim.run_sequence(states, np.array([a, a]), draws)
    alone = sim.evaluate(states.take([0]), np.array([a]), draws.take([0]))
    t_up = out.phases["up_ms"][0]
    assert t_up > 0 and out.phases["up_ms"][1] == pytest.approx(t_up)
    # shared goodput: the second upload starts when the first ends, so it finishes one upload later
    assert out.phases["radio_start_ms"][1] == pytest.approx(out.phases["radio_start_ms"][0]
                                                            + out.phases["promo_ms"][0] + t_up)
    assert out.latency_ms[1] == pytest.approx(alone.latency_ms[0] + t_up)
    assert out.phases["queue_ms"][1] == pytest.approx(out.phases["promo_ms"][0] + t_up)
    # radio power once: one promotion; the second pays its transfer and the connected time it adds, not a second tail
    assert out.promo_mj[1] == 0
    up_w = out.phases["up_w"][0]
    second = out.energy_mj[1]
    ph = out.phases
    extra_connected = ph["radio_end_ms"][1] - ph["radio_end_ms"][0]  # it pushes the tail back by this much
    assert second == pytest.approx((up_w - wifi.tail_w) * t_up + (ph["down_w"][1] - wifi.tail_w) * ph["down_ms"][1]
                                   + wifi.tail_w * extra_connected, rel=1e-9)
    assert second < alone.energy_mj[0]
    ref = ReferenceModel(sim, states, draws).run(np.array([a, a]))
    assert ref["energy_mj"] == pytest.approx(out.energy_mj.sum(), rel=1e-9)
    assert max(p for _, _, p in ref["trace"]) <= max(up_w, wifi.promotion_w) + 1e-12  # never two transmit powers


def test_a_bandwidth_cap_limits_goodput_not_the_phy_rate(sims):
    """A capped flow on a strong link takes bits/cap, but bursts at the PHY rate: between bursts the radio sits at
    its connected (tail) power, so its transfer power is far below the uncapped burst power."""
    sim = sims["autoscale"]
    a = int(np.flatnonzero(sim.tables.actions["name"] == "cloud_wifi")[0])
    wifi = sim.links[sim.radio_names.index("wifi")]
    free_s, d = _two_offloads(sim, 1000.0)
    capped_s, _ = _two_offloads(sim, 1000.0, cap=1.0)
    free = sim.evaluate(free_s.take([0]), np.array([a]), d.take([0]))
    capped = sim.evaluate(capped_s.take([0]), np.array([a]), d.take([0]))
    phy = float(wifi.uplink_goodput_mbps(-45.0))
    bits = float(sim.tables.up_bits[free_s.workload[0], a])
    assert capped.phases["up_ms"][0] == pytest.approx(bits / 1e3)  # bits at 1 Mbit/s
    burst = free.phases["up_w"][0]
    assert capped.phases["up_w"][0] == pytest.approx(wifi.tail_w + (burst - wifi.tail_w) * 1.0 / phy)
    # high-power time is bits/PHY, whatever the cap
    hi_time = (capped.phases["up_w"][0] - wifi.tail_w) / (burst - wifi.tail_w) * capped.phases["up_ms"][0]
    assert hi_time == pytest.approx(free.phases["up_ms"][0])


def test_search_api_every_action_from_a_carried_state(sims):
    """evaluate_from (every action of one request from a carried state) + advance (the state after the chosen one)
    reproduce run_sequence: the interface a schedule search (a hindsight bound) builds on."""
    sim = sims["autoscale"]
    rng = np.random.default_rng(3)
    states, draws, _ = random_episode(sim, rng, n=10)
    carry = Carry.fresh(1, sim.kernel)
    chosen, energy = [], []
    for t in range(len(states)):
        out = sim.evaluate_from(states, draws, t, carry)  # (1, A)
        a = int(np.argmin(np.where(out.qos_ok[0], out.energy_mj[0], np.inf + out.violation[0])))
        chosen.append(a)
        energy.append(out.energy_mj[0, a])
        carry = sim.advance(carry, out.take((np.array([0]), np.array([a]))), states.interarrival_ms[t])
    seq = sim.run_sequence(states, np.array(chosen), draws)
    assert _rel_close(energy, seq.energy_mj)


@settings(max_examples=60, deadline=None)
@given(wait=st.floats(0.0, 5_000.0), seed=st.integers(0, 2**31 - 1))
def test_a_queue_delays_but_draws_no_power(sims, wait, seed):
    """Property: a local request that meets a busy target waits exactly that long and pays exactly the same energy."""
    sim = sims["autoscale"]
    rng = np.random.default_rng(seed)
    states, draws, _ = random_episode(sim, rng, n=4)
    local = np.flatnonzero((sim.kernel.local_resource.reshape(sim.W, sim.A) >= 0).all(axis=0))  # local for every DNN
    acts = rng.choice(local, len(states))
    free = sim.evaluate(states, acts, draws)
    tab, n = sim.kernel, len(states)
    busy_carry = Carry(np.full((n, tab.n_resources), wait), np.zeros((n, tab.n_radios)),
                       np.full((n, tab.n_radios), np.inf), np.zeros((n, tab.n_routes)),
                       np.zeros(n, dtype=bool), np.zeros(n))
    busy = sim.evaluate(states.with_carry(busy_carry), acts, draws)
    assert _rel_close(busy.latency_ms, free.latency_ms + wait)
    assert _rel_close(busy.energy_mj, free.energy_mj)
    assert (busy.energy_mj >= 0).all() and _rel_close(busy.phases["queue_ms"], np.full(n, wait))
