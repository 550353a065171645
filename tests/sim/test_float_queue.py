"""The queue a request joins is the processor that runs it (issue #21's FIFO per local target).

A DNN without an INT8 model sent to the phone's DSP action runs as a float graph on the Adreno GPU
(bench/world/float_path.py): it must wait behind the GPU's requests and they behind it, while the DSP's
INT8 requests never wait for it. Checked on every path that holds the physics: the batch kernel
(run_sequence, the lock-step rollout), the scalar step (EpisodeKernel), the independent reference
model, the AutoScale env's per-processor backlog fields and the vector env.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from bench.sim.core import Draws, States
from bench.sim.fast import EpisodeKernel
from bench.sim.kernel import local_resources
from bench.sim.system import autoscale_system, has_int8_model
from tests.sim.reference_model import ReferenceModel

GAP_MS = 1.0  # requests 1 ms apart: each overlaps the one before


@pytest.fixture(scope="module")
def world():
    system = autoscale_system(max_levels_per_target=1)
    sim = system.sim
    sim.thermal, sim.thermal_params = None, None  # (the reference does not model throttling)
    t, wl = sim.tables, system.workloads
    acts = t.actions
    top = lambda target: int(acts.index[(acts["kind"] == "local") & (acts["target"] == target)][-1])  # noqa: E731
    dsp, gpu = top("dsp"), top("gpu")
    int8 = [i for i, (_, r) in enumerate(wl.iterrows()) if has_int8_model(r)]
    flt = [i for i, (_, r) in enumerate(wl.iterrows()) if not has_int8_model(r)]
    return sim, {"dsp": dsp, "gpu": gpu, "float": flt[0], "float2": flt[1], "int8": int8[0]}


def _episode(sim, workloads):
    n, r = len(workloads), len(sim.links)
    ia = np.r_[np.full(n - 1, GAP_MS), 60_000.0]
    zero = np.zeros(n)
    states = States(np.asarray(workloads, dtype=np.int64), np.full((n, r), -60.0), np.full(n, np.inf), zero, zero,
                    np.full(n, 1e6), np.ones(n), ia)
    return states, Draws.neutral(n, r)


def _every_path(sim, states, draws, acts):
    """(run_sequence's outcome with phases, and each other path's latency and energy: they must all agree)."""
    acts = np.asarray(acts, dtype=np.int64)
    seq = sim.run_sequence(states, acts, draws)
    lock = sim.rollout(states, draws, acts[:, None])
    k = EpisodeKernel(sim, states, draws)
    steps = [k.outcome(t, int(a)) for t, a in enumerate(acts)]
    ref = ReferenceModel(sim, states, draws).run(acts)
    for lat, e in ((lock["latency_ms"][:, 0], lock["energy_mj"][:, 0]),
                   ([s.latency_ms for s in steps], [s.energy_mj for s in steps])):
        np.testing.assert_allclose(lat, seq.latency_ms, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(e, seq.energy_mj, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ref["latency_ms"], seq.latency_ms, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ref["energy_mj"], seq.energy_mj.sum(), rtol=1e-9, atol=1e-9)
    return seq


def test_the_float_dsp_request_runs_on_the_gpus_queue(world):
    sim, ix = world
    names = sim.kernel.resource_names
    res = sim.kernel.local_resource.reshape(sim.W, sim.A)
    assert {"cpu", "gpu", "dsp"} <= set(names)
    assert res[ix["float"], ix["dsp"]] == names.index("gpu")  # where it runs
    assert res[ix["int8"], ix["dsp"]] == names.index("dsp")
    assert res[ix["float"], ix["gpu"]] == names.index("gpu")
    # no workload is queued on an offload action; every local action has a resource for every DNN
    offload = (sim.tables.actions["kind"] == "offload").to_numpy()
    assert (res[:, offload] == -1).all() and (res[:, ~offload] >= 0).all()


@pytest.mark.parametrize("first", ["float_dsp", "gpu"])
def test_a_float_dsp_and_a_gpu_request_take_turns_while_the_int8_dsp_request_does_not_wait(world, first):
    """FIFO on the GPU in arrival order, whichever comes first; the INT8 DSP request meets a free DSP."""
    sim, ix = world
    pair = [(ix["float"], ix["dsp"]), (ix["float2"], ix["gpu"])]
    if first == "gpu":
        pair = pair[::-1]
    (w0, a0), (w1, a1) = pair
    states, draws = _episode(sim, [w0, w1, ix["int8"]])
    out = _every_path(sim, states, draws, [a0, a1, ix["dsp"]])
    ph = out.phases
    gpu, dsp = sim.kernel.resource_names.index("gpu"), sim.kernel.resource_names.index("dsp")
    assert list(ph["local_resource"]) == [gpu, gpu, dsp]
    assert ph["queue_ms"][0] == 0.0
    # the second waits for the first to finish on the GPU: it starts where the first ends
    assert ph["local_ms"][0] > GAP_MS
    assert ph["queue_ms"][1] == pytest.approx(ph["local_ms"][0] - GAP_MS, rel=1e-12)
    assert out.latency_ms[1] == pytest.approx(ph["queue_ms"][1] + ph["local_ms"][1], rel=1e-12)
    # the INT8 DNN on the DSP overlaps both and does not wait
    assert ph["queue_ms"][2] == 0.0
    assert out.latency_ms[2] == pytest.approx(ph["local_ms"][2], rel=1e-12)


def test_two_float_dsp_requests_queue_on_the_gpu_and_leave_the_dsp_free(world):
    sim, ix = world
    states, draws = _episode(sim, [ix["float"], ix["float2"], ix["int8"]])
    out = _every_path(sim, states, draws, [ix["dsp"], ix["dsp"], ix["dsp"]])
    ph = out.phases
    assert ph["queue_ms"][1] == pytest.approx(ph["local_ms"][0] - GAP_MS, rel=1e-12)
    assert ph["queue_ms"][2] == 0.0


def test_the_env_shows_a_float_dsp_request_as_gpu_backlog(world):
    """Every request sent to the DSP action, in the AutoScale env (scalar step) and its vector env: each waits
    for the processor that runs it (FIFO), and the per-processor fields show that processor's backlog, a float
    DNN's on ``gpu_busy_ms``, an INT8 one's on ``dsp_busy_ms``; checked against a FIFO recurrence of its own."""
    import gymnasium as gym

    import bench.sim  # noqa: F401  (registers the envs)
    from bench.sim.envs import AUTOSCALE_ID, AUTOSCALE_OBS_FIELDS

    kw = dict(scenario="random_walk", max_levels_per_target=1)
    env = gym.make(AUTOSCALE_ID, **kw).unwrapped
    venv = gym.make_vec(AUTOSCALE_ID, num_envs=1, **kw)
    acts = env.sim.tables.actions
    dsp = int(acts.index[(acts["kind"] == "local") & (acts["target"] == "dsp")][-1])
    field = {r: AUTOSCALE_OBS_FIELDS.index(f"{r}_busy_ms") for r in ("cpu", "gpu", "dsp")}
    env.reset(seed=3)
    venv.reset(seed=3)
    states = env.episode().states
    n = min(120, len(states) - 1)
    float_dnn = [not has_int8_model(env.system.workloads.iloc[int(w)]) for w in states.workload[:n]]
    obs = []
    for _ in range(n):
        o, *_ = env.step(dsp)
        vo, *_ = venv.step(np.array([dsp]))
        np.testing.assert_allclose(vo[0], o, rtol=1e-6, atol=1e-6)  # the vector env's batch step agrees
        obs.append(o)
    ph = env.ledger.phases
    ia = float(states.interarrival_ms[0])
    free = {"cpu": 0.0, "gpu": 0.0, "dsp": 0.0}  # when each processor is free (ms since the first arrival)
    backlog_seen = {"gpu": 0, "dsp": 0}
    for t in range(n):
        runs = "gpu" if float_dnn[t] else "dsp"
        arrival = t * ia
        assert ph[t]["local_start_ms"] == pytest.approx(max(free[runs] - arrival, 0.0), rel=1e-9, abs=1e-9)
        free[runs] = arrival + ph[t]["local_start_ms"] + ph[t]["local_ms"]
        for r, i in field.items():  # what the next request sees
            want = max(free[r] - (t + 1) * ia, 0.0)
            assert obs[t][i] == pytest.approx(want, rel=1e-5, abs=1e-3), (t, r)
            backlog_seen[r] = backlog_seen.get(r, 0) + (want > 0)
    assert any(float_dnn) and not all(float_dnn)  # both kinds of DNN were sent to the DSP
    assert backlog_seen["gpu"] > 0  # a float DNN sent to the DSP left a GPU backlog


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_w=st.integers(1, 4), n_local=st.integers(1, 5), n_off=st.integers(0, 2))
def test_local_resources_name_every_target_once_and_index_where_each_request_runs(data, n_w, n_local, n_off):
    """Property: each (workload, action) indexes the name of the target that runs it (-1: none); every local
    action's own target keeps a resource (and so its backlog field) even where no workload runs there."""
    pool = ["cpu", "gpu", "dsp", "npu"]
    targets = [data.draw(st.sampled_from(pool)) for _ in range(n_local)]
    actions = pd.DataFrame({"target": targets + ["cloud"] * n_off, "kind": ["local"] * n_local + ["offload"] * n_off})
    runs_on = np.array([[data.draw(st.sampled_from(pool)) for _ in range(n_local)] + [""] * n_off
                        for _ in range(n_w)], dtype=object)
    idx, names = local_resources(actions, runs_on, n_w)
    assert idx.shape == (n_w, n_local + n_off) and len(set(names)) == len(names)
    assert set(targets) <= set(names) and set(names) <= set(targets) | set(runs_on.ravel()) - {""}
    assert (idx[:, n_local:] == -1).all()
    assert [[names[i] for i in row[:n_local]] for row in idx] == runs_on[:, :n_local].tolist()
    # without runs_on: the action's own target
    own, own_names = local_resources(actions, None, n_w)
    assert set(own_names) == set(targets)
    assert [[own_names[i] for i in row[:n_local]] for row in own] == [targets] * n_w
