"""AutoScale's back-off to coarser tables for unvisited states (bench/policies/autoscale_backoff.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.policies.autoscale import _PROTECTED, AutoScaleConfig, AutoScaleLearner, train
from bench.policies.autoscale_backoff import NEIGHBOUR
from bench.sim.envs import AUTOSCALE_OBS_FIELDS as FIELDS

ACTIONS = ["cpu", "gpu", "cloud"]


def _explore(learner, env, rng, obs, steps: int, epsilon: float = 0.3):
    """``steps`` epsilon-greedy Q-learning updates of ``learner`` on ``env`` from ``obs``; the last observation."""
    for _ in range(steps):
        a = int(rng.integers(len(ACTIONS))) if rng.random() < epsilon else learner.act(obs)
        nxt, r, *_ = env.step(a)
        learner.update_ids(learner.bins.state_id(obs), a, r, learner.bins.state_id(nxt), False)
        obs = nxt
    return obs
CPU, GPU, CLOUD = range(3)


def _obs(**values) -> np.ndarray:
    base = dict(n_conv=50, n_fc=1, n_recurrent=0, n_attention=0, log10_flops=9.0, cpu_load=0.0, mem_load=0.0,
                gpu_load=0.0, wifi_dbm=-50, lte_dbm=-80, qos_ms=100, max_accuracy_loss=0.02, local_busy_ms=0.0,
                radio_busy_ms=0.0, cpu_busy_ms=0.0, gpu_busy_ms=0.0, dsp_busy_ms=0.0)
    base.update(values)
    return np.array([base[f] for f in FIELDS], dtype=np.float32)


def _learner(**kw) -> AutoScaleLearner:
    return AutoScaleLearner(AutoScaleConfig(scenarios=("random_walk",), backoff=True, **kw), ACTIONS)


def _feed(learner, obs, rewards, times=1):
    s = learner.bins.state_id(obs)
    for _ in range(times):
        for a, r in rewards.items():
            learner.update_ids(s, a, reward=r, s_next=s, terminated=False)


STRONG_QUIET = _obs(wifi_dbm=-50, cpu_load=0.0, gpu_load=0.0)
WEAK_BUSY = _obs(wifi_dbm=-84, cpu_load=0.9, gpu_load=0.9)
WEAK_QUIET = _obs(wifi_dbm=-84, cpu_load=0.0, gpu_load=0.0)  # held out: weak signal never met a quiet phone


def test_held_out_combination_reads_the_coarser_table_that_saw_it_never_the_signal_blind_pool():
    learner = _learner(share_dnn=True)
    _feed(learner, STRONG_QUIET, {CPU: 1.0, GPU: 3.0, CLOUD: 10.0}, times=5)  # strong signal: offload
    _feed(learner, WEAK_BUSY, {CPU: 1.0, GPU: 4.0, CLOUD: -5.0})  # weak signal: stay on the GPU
    s = learner.bins.state_id(WEAK_QUIET)
    assert learner.visits[s].sum() == 0
    # the per-DNN pool (no signal) would offload: that is the failure the back-off removes
    d = s // learner._n_runtime
    assert int(np.where(learner.visits_dnn[d] > 0, learner.q_dnn[d], -np.inf).argmax()) == CLOUD
    # the finest coarser table that has the held-out state decides, and it chose the GPU
    buckets = learner.bins.buckets(s)
    first = next(lvl for lvl in learner.backoff_levels() if lvl.row(lvl.state_id(buckets))[1].any())
    values, seen = first.row(first.state_id(buckets))
    row = np.where(seen, values, -np.inf)
    assert learner.act(WEAK_QUIET) == int(row.argmax()) == GPU
    assert learner.served_level(s) not in (0, None, NEIGHBOUR)
    assert learner.act_batch(np.stack([WEAK_QUIET, STRONG_QUIET])).tolist() == [GPU, CLOUD]


def test_the_hierarchy_keeps_dnn_and_signal_and_drops_the_informative_feature_last():
    learner = _learner()
    for wifi in (-50, -84):
        for cpu_load, best in ((0.0, GPU), (0.9, CLOUD)):  # the CPU co-runner decides; the rest is noise
            for gpu_load in (0.0, 0.9):
                for qos in (50, 400):
                    rewards = {a: (5.0 if a == best else 1.0) for a in range(3)}
                    _feed(learner, _obs(wifi_dbm=wifi, cpu_load=cpu_load, gpu_load=gpu_load, qos_ms=qos), rewards)
    levels = learner.backoff_levels()
    assert levels[-1].kept == _PROTECTED
    assert levels[-1].dropped == "cpu_load_edges" and levels[-1].informativeness > 0
    assert all(lvl.informativeness == 0 for lvl in levels[:-1])
    # an unseen memory bucket backs off to the table without memory, which still knows the CPU load
    assert learner.act(_obs(wifi_dbm=-84, cpu_load=0.9, mem_load=0.9)) == CLOUD
    assert learner.act(_obs(wifi_dbm=-84, cpu_load=0.0, mem_load=0.9)) == GPU


def test_a_signal_cell_never_seen_for_the_dnn_reads_the_nearest_signal_cell_weaker_first():
    learner = _learner()
    _feed(learner, _obs(wifi_dbm=-84), {GPU: 4.0, CLOUD: 1.0})  # bucket 1 of Wi-Fi
    _feed(learner, _obs(wifi_dbm=-76), {GPU: 1.0, CLOUD: 4.0})  # bucket 3
    s = learner.bins.state_id(_obs(wifi_dbm=-80))  # bucket 2: one step from both; the weaker side wins
    assert learner.served_level(s) == NEIGHBOUR
    assert learner.act(_obs(wifi_dbm=-80)) == GPU
    # a DNN never seen anywhere: no estimate at any level, the table's initial row (as without back-off)
    assert learner.served_level(learner.bins.state_id(_obs(n_conv=0, n_attention=12, log10_flops=10.2))) is None


def test_backoff_survives_save_and_load(tmp_path):
    learner = _learner()
    _feed(learner, STRONG_QUIET, {CPU: 1.0, CLOUD: 10.0})
    _feed(learner, WEAK_BUSY, {GPU: 4.0, CLOUD: -5.0})
    loaded = AutoScaleLearner.load(learner.save(tmp_path / "as"))
    assert np.array_equal(loaded.target_sum, learner.target_sum)
    for obs in (STRONG_QUIET, WEAK_BUSY, WEAK_QUIET):
        assert loaded.act(obs) == learner.act(obs)


@settings(max_examples=30, deadline=None)
@given(wifi=st.floats(-120, -30), cpu=st.floats(0, 1), gpu=st.floats(0, 1), qos=st.floats(10, 1000))
def test_any_observation_gets_an_action_with_an_estimate_once_the_dnn_was_seen(wifi, cpu, gpu, qos):
    learner = _BACKOFF_FED
    obs = _obs(wifi_dbm=wifi, cpu_load=cpu, gpu_load=gpu, qos_ms=qos)
    assert learner.served_level(learner.bins.state_id(obs)) is not None
    assert 0 <= learner.act(obs) < len(ACTIONS)


_BACKOFF_FED = _learner()
_feed(_BACKOFF_FED, STRONG_QUIET, {CPU: 1.0, GPU: 2.0, CLOUD: 3.0})


class SignalEnv(gym.Env):
    """Known optimum (SB3's IdentityEnv, in AutoScale's observation): offload iff Wi-Fi > -75 dBm.

    The CPU and GPU co-runner loads are drawn independently and do not matter. The reward is 1 for the
    optimum, 0 otherwise; training only ever shows strong Wi-Fi with a quiet GPU, so a busy GPU at strong
    Wi-Fi is a held-out combination of seen values.
    """

    def __init__(self, hold_out: bool):
        self.observation_space = spaces.Box(-200, 1e4, shape=(len(FIELDS),), dtype=np.float32)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.hold_out = hold_out

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self._draw(), {}

    def _draw(self):
        r = self.np_random
        wifi = float(r.uniform(-90, -55))
        gpu = 0.0 if self.hold_out and wifi > -75 else float(r.choice([0.0, 0.9]))
        self._obs = _obs(wifi_dbm=wifi, cpu_load=float(r.uniform(0, 1)), gpu_load=gpu)
        return self._obs

    def optimum(self, obs) -> int:
        return CLOUD if obs[FIELDS.index("wifi_dbm")] > -75 else GPU

    def step(self, action):
        reward = float(action == self.optimum(self._obs))
        return self._draw(), reward, False, False, {}


@pytest.mark.parametrize("seed", [0, 1])
def test_learns_the_known_optimum_and_generalises_to_held_out_combinations(seed):
    learner = _learner(seed=seed)
    env, rng = SignalEnv(hold_out=True), np.random.default_rng(seed)
    _explore(learner, env, rng, env.reset(seed=seed)[0], 4000)
    learner.rebuild_backoff()  # what train() does at the end: measure the drop order on everything learned
    test_env = SignalEnv(hold_out=False)
    obs, _ = test_env.reset(seed=seed + 100)
    held_out = hits = 0
    for _ in range(500):
        s = learner.bins.state_id(obs)
        held_out += learner.visits[s].sum() == 0
        hits += learner.act(obs) == test_env.optimum(obs)
        obs, *_ = test_env.step(0)
    assert held_out > 50  # the test does exercise unvisited states
    assert hits / 500 >= 0.95


@pytest.mark.parametrize("order", [(), ("cpu_load", "gpu_load", "mem_load", "qos_ms")])
def test_same_seed_same_backoff_tables_and_choices(order):
    cfg = AutoScaleConfig(scenarios=("random_walk",), total_steps=600, episode_steps=200, backoff=True,
                          share_dnn=True, epsilon_decay_steps=300, backoff_order=order)
    a, b = train(cfg).learner, train(cfg).learner
    assert np.array_equal(a.target_sum, b.target_sum) and np.array_equal(a.q, b.q)
    la, lb = a.backoff_levels(), b.backoff_levels()
    assert [lvl.dropped for lvl in la] == [lvl.dropped for lvl in lb]
    assert all(np.array_equal(x.sums, y.sums) and np.array_equal(x.counts, y.counts) for x, y in zip(la, lb))
    assert a.visits.sum() == 600


def test_config_limits_the_backoff_visits():
    with pytest.raises(ValueError, match="backoff_min_visits"):
        AutoScaleConfig(scenarios=("random_walk",), backoff_min_visits=0)


def _dense_levels(target_sum, visits, sizes, names, protected, min_visits):
    """The back-off hierarchy by axis sums over the whole dense table (the definition; build_levels computes it on
    the visited states only): [(kept, dropped, informativeness, sums, counts)], finest first."""
    from bench.policies.autoscale_backoff import _greedy

    shape = (*sizes, visits.shape[1])
    sums, cnt = target_sum.reshape(shape), visits.reshape(shape).astype(np.int64)
    kept = list(range(len(sizes)))
    for p in [p for p in kept if p not in protected and sizes[p] == 1]:
        ax = kept.index(p)
        cnt, sums = cnt.sum(axis=ax), sums.sum(axis=ax)
        kept.remove(p)
    droppable, out = [p for p in kept if p not in protected], []
    while droppable:
        weight = cnt.sum(axis=-1)
        g_parent = _greedy(sums, cnt, min_visits)
        scores = {}
        for p in droppable:
            ax = kept.index(p)
            changed = g_parent != _greedy(sums.sum(axis=ax, keepdims=True), cnt.sum(axis=ax, keepdims=True), min_visits)
            scores[p] = float((weight * changed).sum() / weight.sum()) if weight.sum() else 0.0
        p = min(droppable, key=lambda q: (scores[q], -q))
        ax = kept.index(p)
        cnt, sums = cnt.sum(axis=ax), sums.sum(axis=ax)
        kept.remove(p)
        droppable.remove(p)
        out.append((tuple(kept), names[p], scores[p], sums.reshape(-1, shape[-1]), cnt.reshape(-1, shape[-1])))
    return out


def _random_table(data, sizes, n_actions: int, density: float):
    """(target_sum, visits, protected, names) of a random sparse Q-table over ``sizes`` features: about ``density``
    of the (state, action) cells visited 1-8 times, their target sums drawn with the visits; up to two features
    protected from dropping."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    n = int(np.prod(sizes))
    visits = ((rng.random((n, n_actions)) < density) * rng.integers(1, 9, (n, n_actions))).astype(np.int32)
    target_sum = np.where(visits > 0, rng.normal(size=(n, n_actions)) * visits, 0.0)
    protected = tuple(data.draw(st.sets(st.integers(0, len(sizes) - 1), max_size=2), label="protected"))
    return target_sum, visits, protected, tuple(f"f{i}" for i in range(len(sizes)))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), sizes=st.lists(st.sampled_from([1, 2, 3, 7, 13]), min_size=1, max_size=5),
       n_actions=st.integers(1, 5), density=st.sampled_from([0.0, 0.02, 0.3, 1.0]), min_visits=st.integers(1, 4))
def test_levels_from_the_visited_states_equal_the_dense_axis_sums(data, sizes, n_actions, density, min_visits):
    """Skipping the unvisited states (speed, issue 25) changes no level: same drop order, informativeness, counts
    and sums as summing the whole dense table over each dropped feature."""
    from bench.policies.autoscale_backoff import build_levels

    target_sum, visits, protected, names = _random_table(data, sizes, n_actions, density)
    got = build_levels(target_sum, visits, tuple(sizes), names, protected, min_visits)
    want = _dense_levels(target_sum, visits, tuple(sizes), names, protected, min_visits)
    assert [(lv.kept, lv.dropped) for lv in got] == [w[:2] for w in want]
    for lv, (kept, _, score, sums, counts) in zip(got, want):
        assert lv.informativeness == pytest.approx(score, abs=1e-12)
        assert lv.counts.dtype == counts.dtype and np.array_equal(lv.counts, counts)
        assert lv.sums.shape == sums.shape and np.allclose(lv.sums, sums, rtol=1e-12, atol=1e-12)
        assert lv.strides == tuple(int(np.prod([sizes[k] for k in kept[i + 1:]], dtype=np.int64))
                                   for i in range(len(kept)))


def _rare_costly_bucket(rank: str) -> AutoScaleLearner:
    """The CPU co-runner flips the greedy action often for little value; the GPU co-runner (a rare bucket) flips
    it seldom, at a large cost (round 6's gaming_commute failure: the game on the GPU)."""
    learner = _learner(backoff_rank=rank)
    _feed(learner, _obs(cpu_load=0.0), {CPU: -1.5, GPU: -1.0}, times=100)
    _feed(learner, _obs(cpu_load=0.3), {CPU: -1.0, GPU: -1.05}, times=200)
    _feed(learner, _obs(cpu_load=0.5), {CPU: -1.05, GPU: -1.0}, times=100)
    _feed(learner, _obs(cpu_load=0.0, gpu_load=0.9), {CPU: -1.0, GPU: -4.0}, times=5)
    return learner


def test_value_lost_keeps_a_rare_but_costly_feature_that_the_changed_share_merges_away():
    held_out = _obs(cpu_load=0.5, gpu_load=0.9)  # the GPU co-runner never met this CPU load in training
    share, value = _rare_costly_bucket("changed_share"), _rare_costly_bucket("value_lost")
    assert share.visits[share.bins.state_id(held_out)].sum() == 0
    order = {r: [lvl.dropped for lvl in lr.backoff_levels()] for r, lr in (("share", share), ("value", value))}
    assert order["share"].index("gpu_load_edges") < order["share"].index("cpu_load_edges")
    assert order["value"].index("cpu_load_edges") < order["value"].index("gpu_load_edges")
    assert all(lvl.informativeness >= 0 for lvl in value.backoff_levels())
    assert share.act(held_out) == GPU  # read from a table blind to the game on the GPU
    assert value.act(held_out) == CPU  # read from the table that still knows it
    # a visited state keeps its own samples under either ranking
    for obs in (_obs(cpu_load=0.0), _obs(cpu_load=0.3), _obs(cpu_load=0.0, gpu_load=0.9)):
        assert share.act(obs) == value.act(obs)


def test_backoff_rank_is_validated_and_old_artefacts_keep_the_changed_share(tmp_path):
    import json

    with pytest.raises(ValueError, match="backoff_rank"):
        AutoScaleConfig(scenarios=("random_walk",), backoff_rank="entropy")
    learner = _rare_costly_bucket("changed_share")
    path = learner.save(tmp_path / "as")
    meta = json.loads((path / "autoscale.json").read_text())
    del meta["config"]["backoff_rank"]  # an artefact saved before the field existed
    (path / "autoscale.json").write_text(json.dumps(meta))
    loaded = AutoScaleLearner.load(path)
    assert loaded.config.backoff_rank == "changed_share"
    assert loaded.act(_obs(cpu_load=0.5, gpu_load=0.9)) == GPU
    assert AutoScaleLearner.load(_rare_costly_bucket("value_lost").save(tmp_path / "v")).act(
        _obs(cpu_load=0.5, gpu_load=0.9)) == CPU


@settings(max_examples=40, deadline=None)
@given(data=st.data(), sizes=st.lists(st.sampled_from([1, 2, 3, 7]), min_size=1, max_size=5),
       n_actions=st.integers(1, 5), density=st.sampled_from([0.0, 0.02, 0.3, 1.0]), min_visits=st.integers(1, 4))
def test_either_rank_drops_every_droppable_feature_once_and_ends_on_the_same_coarsest_table(
        data, sizes, n_actions, density, min_visits):
    """The ranking changes only the order: every level is a valid merge, the coarsest table is the same, and the
    value-lost informativeness is a non-negative mean reward."""
    from bench.policies.autoscale_backoff import RANKS, build_levels

    target_sum, visits, protected, names = _random_table(data, sizes, n_actions, density)
    built = {r: build_levels(target_sum, visits, tuple(sizes), names, protected, min_visits, r) for r in RANKS}
    droppable = {names[p] for p in range(len(sizes)) if p not in protected and sizes[p] > 1}
    for levels in built.values():
        assert sorted(lvl.dropped for lvl in levels) == sorted(droppable)
        for lvl in levels:
            assert lvl.counts.sum() == visits.sum() and lvl.sums.sum() == pytest.approx(target_sum.sum(), abs=1e-9)
    assert all(lvl.informativeness >= 0 for lvl in built["value_lost"])
    if droppable:
        a, b = built["changed_share"][-1], built["value_lost"][-1]
        assert a.kept == b.kept and np.array_equal(a.counts, b.counts) and np.allclose(a.sums, b.sums, atol=1e-9)
    with pytest.raises(ValueError, match="rank"):
        build_levels(target_sum, visits, tuple(sizes), names, protected, min_visits, "nope")


def test_a_fixed_backoff_order_overrides_the_measured_one_and_refuses_protected_features():
    held_out = _obs(cpu_load=0.5, gpu_load=0.9)
    learner = _learner(backoff_order=("cpu_load",))  # dropped first; the rest follow measured
    for obs, rewards, times in ((_obs(cpu_load=0.0), {CPU: -1.5, GPU: -1.0}, 100),
                                (_obs(cpu_load=0.3), {CPU: -1.0, GPU: -1.05}, 200),
                                (_obs(cpu_load=0.5), {CPU: -1.05, GPU: -1.0}, 100),
                                (_obs(cpu_load=0.0, gpu_load=0.9), {CPU: -1.0, GPU: -4.0}, 5)):
        _feed(learner, obs, rewards, times=times)
    dropped = [lvl.dropped for lvl in learner.backoff_levels()]
    assert dropped[0] == "cpu_load_edges" and sorted(dropped[1:]) == ["gpu_load_edges", "mem_load_edges",
                                                                      "qos_ms_edges"]
    assert learner.act(held_out) == CPU  # the table that still knows the game on the GPU decides
    for bad in (("wifi_dbm",), ("gpu_busy_ms",), ("cpu_load", "cpu_load"), ("n_conv",)):
        with pytest.raises(ValueError, match="backoff_order"):
            AutoScaleConfig(scenarios=("random_walk",), backoff_order=bad)


def test_coverage_skips_a_coarser_cell_whose_samples_never_had_the_requests_merged_bucket():
    """docs/autoscale.md, Round 10 (heldout_office_mixed in miniature): the request (moderate CPU load, memory load,
    idle GPU) was never seen. Dropping ``cpu_load`` then ``gpu_load`` keeps ``mem_load``; that cell's memory-loaded
    samples all come from a game (CPU and GPU busy, where the CPU is right), so without the rule the request reads
    the game's choice. With ``backoff_coverage`` that cell never saw the request's CPU or GPU bucket, so a coarser
    cell decides, whose samples include the request's buckets (moderate CPU load, idle GPU: the GPU is right)."""
    held_out = _obs(cpu_load=0.3, mem_load=0.8, gpu_load=0.0)
    order = ("cpu_load", "gpu_load", "mem_load", "qos_ms")
    train = ((_obs(cpu_load=0.0), {CPU: -1.5, GPU: -1.0}, 100),
             (_obs(cpu_load=0.3), {CPU: -1.4, GPU: -1.0}, 100),
             (_obs(cpu_load=0.9, mem_load=0.8, gpu_load=0.9), {CPU: -1.0, GPU: -4.0}, 20))
    choices = {}
    for coverage in (False, True):
        learner = _learner(backoff_order=order, backoff_coverage=coverage, backoff_min_visits=5)
        for obs, rewards, times in train:
            _feed(learner, obs, rewards, times=times)
        s = learner.bins.state_id(held_out)
        assert learner.visits[s].sum() == 0
        choices[coverage] = (learner.act(held_out), learner.served_level(s))
    assert choices[False] == (CPU, 2)  # the mem_load-only cell: the game's samples
    assert choices[True][0] == GPU and choices[True][1] > 2  # a coarser cell that saw a moderate CPU, an idle GPU


def test_coverage_falls_back_to_the_finest_cell_that_saw_the_state_and_changes_nothing_on_visited_states():
    learner = _learner(backoff_coverage=True, backoff_order=("cpu_load", "gpu_load", "mem_load", "qos_ms"))
    _feed(learner, _obs(cpu_load=0.9, gpu_load=0.9), {CPU: -1.0, GPU: -4.0}, times=5)
    _feed(learner, STRONG_QUIET, {CPU: -2.0, GPU: -1.0}, times=5)
    assert learner.act(STRONG_QUIET) == GPU and learner.served_level(learner.bins.state_id(STRONG_QUIET)) == 0
    held_out = _obs(cpu_load=0.3, gpu_load=0.9, wifi_dbm=-50)  # moderate CPU load: no sample anywhere has it
    without = _learner(backoff_order=("cpu_load", "gpu_load", "mem_load", "qos_ms"))
    _feed(without, _obs(cpu_load=0.9, gpu_load=0.9), {CPU: -1.0, GPU: -4.0}, times=5)
    _feed(without, STRONG_QUIET, {CPU: -2.0, GPU: -1.0}, times=5)
    s = learner.bins.state_id(held_out)
    assert (learner.act(held_out), learner.served_level(s)) == (without.act(held_out), without.served_level(s))
