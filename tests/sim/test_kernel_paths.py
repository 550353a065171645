"""The kernel's fast paths are the kernel: the scalar specialisation and the in-place lock-step loop.

* :func:`bench.sim.kernel.scalar_request_physics` (the source of ``request_physics`` rewritten for
  Python scalars) returns what ``request_physics`` run with the scalar ``ops`` returns, and what the
  numpy batch returns row by row, on random requests from random carried states (dead links,
  throttling, timeouts and fallbacks included);
* :func:`bench.sim.kernel.run_episodes` (gathers hoisted out of the loop, the carry updated in place)
  equals stepping the same episodes with ``step_rows`` + ``advance``, thermal throttling included;
* the rewrite refuses source it does not understand instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.sim.kernel import (_ROUTE_KEYS, _STATE_KEYS, _X_KEYS, NUMPY_OPS, SCALAR_OPS, Carry, advance,
                              request_physics, run_episodes, scalar_request_physics, scalar_tables, step_rows)
from bench.sim.specialise import SpecialiseError, specialise_scalar
from bench.sim.system import autoscale_system, dvfo_system
from bench.world.scenarios import load_scenario

KEYS = ("energy_mj", "remote_energy_mj", "latency_ms", "accuracy", "accuracy_loss", "qos_ok", "violation", "tail_mj",
        "promo_mj", "timed_out", "resource", "new_local_free", "radio", "new_tx_free", "new_last_end", "route",
        "new_server_free", "local_ms", "local_w", "fallback_ms", "fallback_w")
#: new free times that mean something only where the request used the resource (the scalar step skips the
#: radio's arithmetic for a local request; the carry update ignores them there)
USED_BY = {"new_tx_free": "radio", "new_last_end": "radio", "new_server_free": "route", "new_local_free": "resource"}


def _keys(out):
    return [k for k in KEYS if k not in USED_BY or out[USED_BY[k]] >= 0]


def _close(a, b, rel=1e-9):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return bool(np.all(same | (np.abs(a - b) <= rel * np.maximum(np.abs(a), np.abs(b)) + 1e-12)))


@pytest.fixture(scope="module", params=["autoscale", "dvfo"])
def world(request, placeholder_curve):
    if request.param == "autoscale":
        sim = autoscale_system().sim
        scenario = "heldout_cell_edge"
    else:
        sim = dvfo_system(accuracy_curve=placeholder_curve, n_cpu_levels=2, n_gpu_levels=2, n_mem_levels=2,
                          xi_levels=4).sim
        scenario = "heldout_dvfo_markov_cap"
    rng = np.random.default_rng(17)
    states = sim.states_from_trace(load_scenario(scenario).trace(rng, steps=600, model=sim.interference))
    draws = sim.draw(len(states), rng)
    return sim, states, draws


def _random_requests(sim, states, draws, rng):
    """Every request of ``states`` with a random action, carried state and throttling; some links dead."""
    tab = sim.kernel
    n = len(states)
    x = sim.request_inputs(states, draws)
    dead = rng.random(n) < 0.1  # a dead link: zero goodput and PHY rate, the offload times out
    for k in ("up_phy", "up_good", "down_phy", "down_good"):
        getattr(x, k)[dead] = 0.0
    acts = rng.integers(0, sim.A, n)
    hot = rng.random(n) < 0.3
    carry = Carry(rng.uniform(-500, 3000, (n, tab.n_resources)), rng.uniform(-500, 3000, (n, tab.n_radios)),
                  np.where(rng.random((n, tab.n_radios)) < 0.2, np.inf, rng.uniform(-2000, 20000, (n, tab.n_radios))),
                  rng.uniform(-500, 3000, (n, tab.n_routes)), hot, np.zeros(n))
    return x, acts, hot, carry


def _scalar_args(sim, x, acts, hot, carry, j):
    tab = sim.kernel
    a = int(acts[j])
    a_run = int(tab.throttle_to[a]) if hot[j] else a
    res = max(int(tab.local_resource[int(x.workload[j]) * tab.A + a_run]), 0)  # where this DNN runs
    q = int(tab.route[a])
    r = int(tab.route_radio[q])
    xr = {k: getattr(x, k)[j].item() for k in _X_KEYS}
    rt = {k: getattr(x, k)[j, q].item() for k in _ROUTE_KEYS}
    state = {"local_free": float(carry.local_free[j, res]), "tx_free": float(carry.tx_free[j, r]),
             "last_end": float(-carry.radio_idle[j, r]), "server_free": float(carry.server_free[j, q])}
    return a, bool(hot[j]), xr, rt, state


def test_specialised_step_equals_the_source_and_the_batch(world):
    sim, states, draws = world
    rng = np.random.default_rng(3)
    x, acts, hot, carry = _random_requests(sim, states, draws, rng)
    stab = scalar_tables(sim.kernel)
    fast = scalar_request_physics()
    batch = step_rows(sim.kernel, x, np.arange(len(acts)), acts, carry)
    seen = {"offload": 0, "timeout": 0, "fallback": 0, "throttled": 0, "local": 0}
    for j in range(len(acts)):
        a, h, xr, rt, state = _scalar_args(sim, x, acts, hot, carry, j)
        ref = request_physics(stab, xr, a, h, rt, state, phases=False, ops=SCALAR_OPS)
        got = fast(stab, a, h, *(xr[k] for k in _X_KEYS), *(rt[k] for k in _ROUTE_KEYS),
                   *(state[k] for k in _STATE_KEYS))
        assert set(got) == set(ref)
        for k in _keys(got):
            assert _close(got[k], ref[k], rel=1e-12), (j, k, got[k], ref[k])
            assert _close(got[k], batch[k][j]), (j, k, got[k], batch[k][j])
        seen["offload"] += got["radio"] >= 0
        seen["timeout"] += bool(got["timed_out"])
        seen["fallback"] += got["fallback_ms"] > 0
        seen["throttled"] += h
        seen["local"] += got["radio"] < 0
    assert all(v > 0 for v in seen.values()), seen  # the draw exercised every branch of the physics


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), tx=st.floats(-1e4, 1e4), idle=st.one_of(st.just(math.inf), st.floats(-1e4, 1e5)),
       up=st.one_of(st.just(0.0), st.floats(1e-3, 1e3)), cap=st.one_of(st.just(math.inf), st.floats(1e-3, 50.0)))
def test_specialised_step_matches_batch_on_any_state(world, seed, tx, idle, up, cap):
    """Property: for any carried radio state and link rate, the scalar step is the batch kernel's row."""
    sim, states, draws = world
    rng = np.random.default_rng(seed)
    j = int(rng.integers(len(states)))
    x, acts, hot, carry = _random_requests(sim, states.take(np.array([j])), draws.take(np.array([j])), rng)
    carry.tx_free[:] = tx
    carry.radio_idle[:] = idle
    x.up_phy[:] = up
    x.up_good[:] = min(up, cap)
    stab = scalar_tables(sim.kernel)
    a, h, xr, rt, state = _scalar_args(sim, x, acts, hot, carry, 0)
    got = scalar_request_physics()(stab, a, h, *(xr[k] for k in _X_KEYS), *(rt[k] for k in _ROUTE_KEYS),
                                   *(state[k] for k in _STATE_KEYS))
    batch = step_rows(sim.kernel, x, np.arange(1), acts, carry)
    for k in _keys(got):
        assert _close(got[k], batch[k][0]), (k, got[k], batch[k][0])


@pytest.mark.parametrize("per_col,cross_throttle", [(True, False), (False, False), (True, True)])
def test_lockstep_loop_equals_step_and_advance(world, per_col, cross_throttle):
    """run_episodes (gathers hoisted, carry in place) == step_rows + advance, with thermal throttling.

    ``cross_throttle``: a table whose throttled actions run on other local resources (the shipped systems
    throttle to a lower level of the same target), so the loop's re-gather for throttled rows is exercised.
    """
    sim, states, draws = world
    rng = np.random.default_rng(9)
    tab = sim.kernel
    if cross_throttle:
        tab = replace(tab, throttle_to=np.roll(np.arange(sim.A), 7))
    n_t, k = 12, 40
    rows = np.arange(n_t * k if per_col else n_t)
    x = sim.request_inputs(states.take(rows), draws.take(rows))
    acts = rng.integers(0, sim.A, (n_t, k))
    # a short time constant and trip points at the requests' typical power: rows throttle and recover
    first = step_rows(tab, x, np.arange(k) if per_col else np.zeros(k, dtype=int), acts[0], Carry.fresh(k, tab))
    power = first["local_w"] * first["local_ms"] / np.broadcast_to(x.interarrival_ms[:k] if per_col else x.interarrival_ms[0], (k,))
    power = power[power > 0]
    thermal = (0.2 * float(np.median(x.interarrival_ms)), float(np.quantile(power, 0.5)), float(np.quantile(power, 0.2)))
    start = Carry.fresh(k, tab)
    start.radio_idle[:, :] = rng.uniform(-100, 20000, start.radio_idle.shape)
    start0 = start.copy()
    got = run_episodes(tab, x, acts, thermal=thermal, carry=start)
    for f in ("local_free", "tx_free", "radio_idle", "server_free", "throttled", "heat_w"):
        assert np.array_equal(getattr(start, f), getattr(start0, f)), f  # the caller's carry is left as it was
    carry, hot_seen = start, 0
    for s in range(n_t):
        t = s * k + np.arange(k) if per_col else np.full(k, s)
        out = step_rows(tab, x, t, acts[s], carry)
        for key in ("energy_mj", "latency_ms", "tail_mj", "promo_mj", "remote_energy_mj", "accuracy", "violation"):
            assert _close(got[key][s], out[key]), (s, key)
        assert np.array_equal(got["timed_out"][s], out["timed_out"]) and np.array_equal(got["qos_ok"][s], out["qos_ok"])
        carry = advance(carry, out, x.interarrival_ms[t], thermal=thermal)
        hot_seen += int(carry.throttled.sum())
    for f in ("local_free", "tx_free", "radio_idle", "server_free", "heat_w"):
        assert _close(getattr(got["carry"], f), getattr(carry, f)), f
    assert np.array_equal(got["carry"].throttled, carry.throttled)
    assert hot_seen > 0  # throttling happened (the throttled actions' resources were gathered)


def test_advance_leaves_its_input_alone(world):
    sim, states, draws = world
    rng = np.random.default_rng(1)
    x, acts, hot, carry = _random_requests(sim, states, draws, rng)
    before = carry.copy()
    out = step_rows(sim.kernel, x, np.arange(len(acts)), acts, carry)
    live = rng.random(len(acts)) < 0.5
    after = advance(carry, out, x.interarrival_ms, live=live, thermal=sim.thermal_params)
    for f in ("local_free", "tx_free", "radio_idle", "server_free", "throttled", "heat_w"):
        assert np.array_equal(getattr(carry, f), getattr(before, f)), f
        # rows that did not step keep their state exactly
        assert np.array_equal(getattr(after, f)[~live], getattr(before, f)[~live]), f


# --------------------------------------------------------------------------- the rewrite's limits

def _uses_unknown_op(tab, x, a, throttled, route, state, phases=True, ops=NUMPY_OPS):
    return {"v": ops.cumsum(x["kc"])}


def _uses_dict_whole(tab, x, a, throttled, route, state, phases=True, ops=NUMPY_OPS):
    return {"v": len(x)}


def _uses_variable_key(tab, x, a, throttled, route, state, phases=True, ops=NUMPY_OPS):
    key = "kc"
    return {"v": x[key]}


@pytest.mark.parametrize("fn,match", [(_uses_unknown_op, "ops.cumsum"), (_uses_dict_whole, "other than"),
                                      (_uses_variable_key, "constant key")])
def test_rewrite_refuses_what_it_does_not_understand(fn, match):
    with pytest.raises(SpecialiseError, match=match):
        specialise_scalar(fn, {"x": _X_KEYS, "route": _ROUTE_KEYS, "state": _STATE_KEYS}, {},
                          constants={"phases": False})


def test_specialised_source_has_no_ops_left():
    """The generated step calls nothing of the array ops: where/bc/ops are gone, max/min are inlined."""
    src = scalar_request_physics().__doc__
    for token in ("where(", "bc(", "ops.", "np.", " max(", " min(", "mx(", "mn("):
        assert token not in src, token


@pytest.mark.parametrize("routes", ["random", "first", "last"])
def test_route_inputs_on_each_rows_route_equal_the_gathered_ones(world, routes):
    """request_inputs(..., route=q) (what rollout computes: each row's route only, each radio's model on its own
    rows) == request_inputs() gathered at [row, q]; every row on one route included (one radio takes all rows)."""
    sim, states, draws = world
    rng = np.random.default_rng(5)
    n, n_q = len(states), sim.kernel.n_routes
    q = {"random": rng.integers(0, n_q, n), "first": np.zeros(n, dtype=int), "last": np.full(n, n_q - 1)}[routes]
    full = sim.request_inputs(states, draws)
    mine = sim.request_inputs(states, draws, route=q)
    rows = np.arange(n)
    for k in _ROUTE_KEYS:
        assert _close(getattr(mine, k), getattr(full, k)[rows, q]), k
    for k in _X_KEYS:
        assert np.array_equal(getattr(mine, k), getattr(full, k)), k


@pytest.mark.parametrize("block_steps", [1, 7, 32])
def test_rollout_in_blocks_equals_one_pass_of_the_loop(world, block_steps):
    """Simulator.rollout (inputs computed a block of steps at a time, on each request's route only, the carry run
    on from block to block) == run_episodes over the whole run's per-route inputs, thermal state included."""
    sim, states, draws = world
    n_t, k = 30, 20
    acts = np.random.default_rng(3).integers(0, sim.A, (n_t, k))
    got = sim.rollout(states, draws, acts, block_steps=block_steps)
    want = run_episodes(sim.kernel, sim.request_inputs(states, draws), acts, thermal=sim.thermal_params)
    for key in ("energy_mj", "latency_ms", "tail_mj", "promo_mj", "remote_energy_mj", "accuracy", "violation"):
        assert _close(got[key], want[key]), key
    assert np.array_equal(got["timed_out"], want["timed_out"]) and np.array_equal(got["qos_ok"], want["qos_ok"])
    with np.errstate(invalid="ignore"):  # radios never used stay idle for ever (inf - inf in the tolerance)
        for f in ("local_free", "tx_free", "radio_idle", "server_free", "heat_w"):
            assert _close(getattr(got["carry"], f), getattr(want["carry"], f)), f


_times = st.lists(st.floats(-1e6, 1e6, allow_nan=False) | st.just(math.inf) | st.just(-math.inf), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None)
@given(lf=_times, tx=_times, srv=_times, ia=st.floats(0.0, 1e5, allow_nan=False))
def test_the_scalar_steps_generated_carry_shift_is_the_per_list_shift(lf, tx, srv, ia):
    """The scalar step's shift to the next arrival, written out per list length, is advance()'s: every free time
    minus the gap, every radio's idle time plus it (same operations: equal floats, infinities kept), new lists."""
    from bench.sim.kernel import _carry_shift

    idle = [-v for v in tx]  # as many radios as transmitters
    got = _carry_shift(len(lf), len(tx), len(srv))(lf, tx, idle, srv, ia)
    want = ([v - ia for v in lf], [v - ia for v in tx], [v + ia for v in idle], [v - ia for v in srv])
    assert [list(map(repr, g)) for g in got] == [list(map(repr, w)) for w in want]
    assert all(g is not v for g, v in zip(got, (lf, tx, idle, srv)))
