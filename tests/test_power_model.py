"""Power model: Vmin floor below the knee, host-CPU-bound launch cost, and what they imply."""

import dataclasses

import numpy as np
import pytest

from bench.cli import main
from bench.world.opclasses import load_op_classes
from bench.world.predict import PredictError, Predictor
from bench.world.profiles import Work, load_profile

FEATURES = load_op_classes().set_index("model")


@pytest.mark.parametrize("profile,target", [("phone_sd845", "cpu"), ("phone_sd845", "gpu"),
                                            ("jetson_xavier_nx", "cpu"), ("jetson_xavier_nx", "gpu")])
def test_voltage_holds_vmin_below_the_knee_and_rises_above(profile, target):
    t = load_profile(profile).targets[target]
    assert t.vmin_knee_mhz > t.freq_mhz[0] and "assumed" in t.sources["vmin_knee_mhz"]
    below = t.freq_mhz[t.freq_mhz <= t.vmin_knee_mhz]
    above = t.freq_mhz[t.freq_mhz > t.vmin_knee_mhz]
    assert np.allclose(t.voltage(below), t.voltage_v[0])
    assert np.all(np.diff(t.voltage(above)) > 0) and t.voltage(t.freq_mhz[-1]) == pytest.approx(t.voltage_v[-1])


def test_without_a_knee_the_table_is_linear_from_f_min():
    t = load_profile("jetson_xavier_nx").targets["gpu"]
    flat = dataclasses.replace(t, vmin_knee_mhz=0.0)
    mid = (t.freq_mhz[0] + t.freq_mhz[-1]) / 2
    assert flat.voltage(mid) == pytest.approx(np.mean(t.voltage_v))


def test_the_lowest_clock_is_not_the_cheapest_for_a_compute_bound_dnn():
    """Below the knee power falls only linearly while static power accrues over a longer run."""
    t = load_profile("jetson_xavier_nx").targets["gpu"]
    work = Work.from_features(FEATURES.loc["resnet50"])
    energy = [float(t.work_latency_ms(work, f)) * float(t.power_w(f)) for f in t.freq_mhz]
    assert int(np.argmin(energy)) > 0
    assert energy[0] > min(energy) * 1.05


def test_host_cpu_clock_slows_only_the_launch_part():
    t = load_profile("jetson_xavier_nx").targets["gpu"]
    work = Work.from_features(FEATURES.loc["mobilenet_v2"])
    ref = t.launch_cpu_freq_mhz
    c0, m0, o0 = t.parts_ms(work)
    c1, m1, o1 = t.parts_ms(work, cpu_freq_mhz=ref / 2)
    assert c1 == pytest.approx(c0) and m1 == pytest.approx(m0) and o1 == pytest.approx(2 * o0)
    p = Predictor()
    slow = p.predict("jetson_xavier_nx", "mobilenet_v2", "gpu", cpu_level_mhz="806.4")
    fast = p.predict("jetson_xavier_nx", "mobilenet_v2", "gpu", cpu_level_mhz="max")
    assert slow["latency_ms"] > fast["latency_ms"]


@pytest.mark.parametrize("kwargs,needle", [
    ({"target": "cpu", "cpu_level_mhz": "1000"}, "only for an accelerator"),
    ({"cpu_level_mhz": "99999"}, "outside the target's range"),
    ({"profile": "cloud_rtx3080", "cpu_level_mhz": "1000"}, "only for an accelerator"),
])
def test_cpu_level_is_checked(kwargs, needle):
    req = {"profile": "jetson_xavier_nx", "workload": "resnet18", "target": "gpu", **kwargs}
    with pytest.raises(PredictError, match=needle):
        Predictor().predict(**req)


def test_cpu_level_flag_on_the_command_line(capsys):
    assert main(["predict", "--profile", "jetson_xavier_nx", "--workload", "resnet18", "--target", "gpu",
                 "--cpu-level-mhz", "1000", "--json"]) == 0
