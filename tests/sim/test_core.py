"""Physical sanity and oracle properties of the simulator core, on the shipped profiles."""

import numpy as np
import pytest

from bench.world.opclasses import load_op_classes
from bench.world.profiles import Work

from bench.world.scenarios import load_scenario
from bench.sim.core import Draws, States


def _states(sim, n, workload="resnet50", wifi=-45.0, lte=-80.0, cpu=0.0, mem=0.0, cap=np.inf, qos=1e9, acc=1.0):
    w = sim.tables.workload_index([workload])[0]
    sig = np.empty((n, len(sim.links)))
    for j, name in enumerate(sim.radio_names):
        sig[:, j] = {"wifi": wifi, "lte": lte}[name]
    f = lambda v: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy()  # noqa: E731
    return States(np.full(n, w), sig, f(cap), f(cpu), f(mem), f(qos), f(acc), f(200.0))


def _action(sim, name):
    return int(np.flatnonzero(sim.tables.actions["name"] == name)[0])


def test_offload_energy_and_latency_rise_as_signal_weakens(autoscale):
    sim = autoscale.sim
    for radio, levels in (("wifi", [-45, -67, -80]), ("lte", [-80, -97, -112])):
        a = _action(sim, f"cloud_{radio}")
        sts = [_states(sim, 1, **{radio: s}) for s in levels]
        outs = [sim.evaluate(s, np.array([a]), Draws.neutral(1, len(sim.links))) for s in sts]
        e = [o.energy_mj[0] for o in outs]
        lat = [o.latency_ms[0] for o in outs]
        assert e[0] < e[1] < e[2] and lat[0] < lat[1] < lat[2], radio


def test_higher_cpu_frequency_lowers_latency_raises_power(autoscale):
    sim = autoscale.sim
    cpu = sim.tables.actions[sim.tables.actions["target"] == "cpu"]
    idx = cpu.sort_values("freq_mhz").index.to_numpy()
    st = _states(sim, len(idx))
    out = sim.evaluate(st, idx, Draws.neutral(len(idx), len(sim.links)))
    w = st.workload[0]
    power = sim.tables.local_power_w[w, idx]
    assert np.all(np.diff(out.latency_ms) < 0)
    assert np.all(np.diff(power) > 0)


@pytest.mark.parametrize("target", ["cpu", "gpu", "dsp"])
def test_interference_raises_local_latency(autoscale, target):
    sim = autoscale.sim
    a = int(sim.tables.actions.index[sim.tables.actions["target"] == target][-1])
    d = Draws.neutral(1, len(sim.links))
    base = sim.evaluate(_states(sim, 1), np.array([a]), d)
    cpu = sim.evaluate(_states(sim, 1, cpu=0.9), np.array([a]), d)
    mem = sim.evaluate(_states(sim, 1, mem=0.9), np.array([a]), d)
    assert cpu.latency_ms[0] > base.latency_ms[0] and mem.latency_ms[0] > base.latency_ms[0]
    assert cpu.energy_mj[0] > base.energy_mj[0]
    # offloading is not slowed by a co-runner
    c = _action(sim, "cloud_wifi")
    assert sim.evaluate(_states(sim, 1, cpu=0.9, mem=0.9), np.array([c]), d).latency_ms[0] == pytest.approx(
        sim.evaluate(_states(sim, 1), np.array([c]), d).latency_ms[0])


def test_dvfo_xi_zero_is_local_only(dvfo):
    """With xi = 0 nothing is sent: latency and energy are the profile's local execution."""
    sim, edge = dvfo.sim, dvfo.edge
    cpu, gpu, c = edge.targets["cpu"], edge.targets["gpu"], dvfo.extras["host_flop_share"]
    acts = sim.tables.actions
    zero = acts.index[acts["xi"] == 0].to_numpy()
    wl = dvfo.workloads.set_index("workload").loc["efficientnet_b0"]
    st = _states(sim, len(zero), workload="efficientnet_b0")
    out = sim.evaluate(st, zero, Draws.neutral(len(zero), len(sim.links)))
    fc, fg, fm = (acts.loc[zero, k].to_numpy() for k in ("cpu_mhz", "gpu_mhz", "mem_mhz"))
    # the GPU runs the DNN's op-class work (its layer-aware model), the CPU the host share of the FLOPs
    work = Work.from_features(load_op_classes().set_index("model").loc["efficientnet_b0"])
    t_gpu = gpu.work_latency_ms(work.scaled(1 - c), fg, fm)
    t_cpu = cpu.latency_ms(wl["flops"] * c, 0.0, fc)
    # energy above the idle baseline: the idle power is not charged per unit of a request's latency
    # (it is drawn over the whole episode whatever the policy does; EnergyLedger accounts it once)
    expected_e = gpu.power_w(fg, fm) * t_gpu + cpu.power_w(fc) * t_cpu
    np.testing.assert_allclose(out.latency_ms, t_gpu + t_cpu, rtol=1e-9)
    np.testing.assert_allclose(out.energy_mj, expected_e, rtol=1e-9)
    assert np.all(out.remote_energy_mj == 0) and np.all(out.accuracy_loss == 0)


def test_dvfo_offloading_more_sends_more_under_a_cap(dvfo):
    sim = dvfo.sim
    acts = sim.tables.actions
    top = acts[(acts.i_cpu == acts.i_cpu.max()) & (acts.i_gpu == acts.i_gpu.max()) & (acts.i_mem == acts.i_mem.max())]
    idx = top.sort_values("xi").index.to_numpy()[1:]  # xi > 0
    d = Draws.neutral(len(idx), len(sim.links))
    slow = sim.evaluate(_states(sim, len(idx), workload="efficientnet_b0", cap=0.5), idx, d)
    fast = sim.evaluate(_states(sim, len(idx), workload="efficientnet_b0", cap=8.0), idx, d)
    assert np.all(slow.latency_ms > fast.latency_ms) and np.all(slow.energy_mj > fast.energy_mj)
    assert np.all(np.diff(sim.tables.up_bits[0, idx]) > 0)


@pytest.mark.parametrize("scenario", ["random_walk", "app_mix_commute", "wifi_weak"])
def test_oracle_never_worse_than_any_fixed_action(autoscale, scenario):
    sim = autoscale.sim
    rng = np.random.default_rng(7)
    st = sim.states_from_trace(load_scenario(scenario).trace(rng, steps=400))
    d = sim.draw(len(st), rng)
    best, o = sim.oracle(st, d)
    for a in range(sim.A):
        f = sim.evaluate(st, np.full(len(st), a), d)
        assert np.all(o.qos_ok >= f.qos_ok)
        both = o.qos_ok & f.qos_ok
        assert np.all(o.energy_mj[both] <= f.energy_mj[both] + 1e-9)
        none = ~o.qos_ok
        assert np.all(o.violation[none] <= f.violation[none] + 1e-12)
    static, summary = sim.best_static(st, d)
    assert summary["qos_rate"][static] == summary["qos_rate"].max()


def test_common_random_numbers_make_evaluation_reproducible(autoscale):
    sim = autoscale.sim
    st = sim.states_from_trace(load_scenario("random_walk").trace(np.random.default_rng(0), steps=50))
    d1, d2 = sim.draw(50, np.random.default_rng(1)), sim.draw(50, np.random.default_rng(1))
    a = sim.evaluate(st, None, d1)
    b = sim.evaluate(st, None, d2)
    np.testing.assert_array_equal(a.energy_mj, b.energy_mj)
    # per-action evaluation equals the matching column of the all-actions evaluation
    one = sim.evaluate(st, np.full(50, 3), d1)
    np.testing.assert_allclose(one.latency_ms, a.latency_ms[:, 3])
    np.testing.assert_allclose(one.energy_mj, a.energy_mj[:, 3])


def test_int8_dsp_costs_accuracy(autoscale):
    t = autoscale.sim.tables
    dsp = t.actions.index[t.actions["target"] == "dsp"][0]
    cpu = t.actions.index[t.actions["target"] == "cpu"][0]
    wl = autoscale.workloads
    i = wl.index[wl.workload == "resnet50"][0]
    assert t.accuracy_loss[i, dsp] == pytest.approx((wl.acc_fp32[i] - wl.acc_int8[i]) / 100)
    assert t.accuracy_loss[i, cpu] == 0



def test_dsp_without_int8_model_runs_the_float_path(autoscale):
    """No INT8 model: the phone's NNAPI runs the float graph on the Adreno in fp32 (data/calibration/
    float_path.yaml) at its top level -- the GPU's power, slower than the GPU's own fp16 run."""
    t = autoscale.sim.tables
    acts = t.actions
    dsp = acts.index[acts["target"] == "dsp"][0]
    gpu_top = acts.index[acts["target"] == "gpu"][-1]
    cpu_top = acts.index[acts["target"] == "cpu"][-1]
    wl = autoscale.workloads
    j = wl.index[wl.workload == "vit_b_16"][0]  # torchvision publishes no INT8 ViT
    assert t.accuracy_loss[j, dsp] == 0
    assert t.local_power_w[j, dsp] == t.local_power_w[j, gpu_top] and t.pre_ms[j, dsp] > t.pre_ms[j, gpu_top]
    assert t.pre_ms[j, dsp] != t.pre_ms[j, cpu_top]
    i = wl.index[wl.workload == "resnet50"][0]  # an INT8 ResNet-50 exists: the DSP really runs it
    assert t.pre_ms[i, dsp] != t.pre_ms[i, cpu_top] and t.local_power_w[i, dsp] != t.local_power_w[i, gpu_top]
