"""The traces -> profile fit recovers known constants and reports honest errors."""

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.world.fit import fit_latency_model, host_profile
from bench.world.profiles import profile_from_dict, profile_to_dict
from bench.world.workloads import WORKLOADS
from hw.traces import trace_frame


# real workload names: a profile refuses measurements of workloads that do not exist
NAMES = sorted(WORKLOADS)


def _workloads(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "workload": NAMES[:n],
        "flops": rng.uniform(0.2e9, 10e9, n),
        "weight_bytes": rng.uniform(5e6, 100e6, n),
        "activation_bytes_total": rng.uniform(5e6, 50e6, n),
    })


def _trace(wl, ms_per_gflop, ms_per_mb, fixed, mhz=2000.0, noise=0.0, seed=1, power=None):
    rng = np.random.default_rng(seed)
    lat = wl.flops / 1e9 * ms_per_gflop + (wl.weight_bytes + wl.activation_bytes_total) / 1e6 * ms_per_mb + fixed
    lat = lat * (1 + noise * rng.standard_normal(len(wl)))
    return trace_frame([
        {"device": "host:test", "adapter": "none", "workload": w, "target": "cpu", "cpu_mhz": mhz, "batch": 1,
         "latency_ms": l, "latency_p95_ms": l * 1.05, "n_runs": 5, "source": "measured",
         "meter": "none" if power is None else "rapl", "power_w": power}
        for w, l in zip(wl.workload, lat)])


def test_recovers_exact_constants():
    wl = _workloads()
    result, table = fit_latency_model(_trace(wl, 20.0, 0.05, 1.5), wl)
    assert result["ms_per_gflop"] == pytest.approx(20.0, rel=1e-6)
    assert result["ms_per_mb"] == pytest.approx(0.05, rel=1e-5)
    assert result["fixed_ms"] == pytest.approx(1.5, rel=1e-5)
    assert result["mape"] < 1e-6 and result["loo_mape"] < 1e-5
    # 20 ms per GFLOP at 2 GHz = 50 GFLOP/s = 25 GFLOP/s per GHz
    assert result["gflops_per_ghz"] == pytest.approx(25.0, rel=1e-6)


def test_noise_shows_up_in_the_errors():
    wl = _workloads(8)
    result, table = fit_latency_model(_trace(wl, 20.0, 0.05, 1.5, noise=0.1), wl)
    assert result["mape"] > 0.01
    assert result["loo_mape"] >= result["mape"]  # out-of-sample is never better here
    assert len(table) == 8


def test_failed_rows_are_excluded_not_fatal():
    wl = _workloads()
    tr = _trace(wl, 20.0, 0.05, 1.5)
    tr.loc[0, "error"] = "RuntimeError: out of memory"
    result, table = fit_latency_model(tr, wl)
    assert result["n_workloads"] == len(wl) - 1 and NAMES[0] not in set(table.workload)


def test_too_few_workloads():
    wl = _workloads(2)
    with pytest.raises(ValueError, match="at least 3"):
        fit_latency_model(_trace(wl, 20.0, 0.05, 1.5), wl)


def test_host_profile_is_a_valid_profile_without_invented_power():
    wl = _workloads()
    prof, result, _ = host_profile(_trace(wl, 20.0, 0.05, 1.5), wl)
    again = profile_from_dict(yaml.safe_load(yaml.safe_dump(profile_to_dict(prof))))
    cpu = again.targets["cpu"]
    assert np.isnan(cpu.dynamic_power_w_at_max) and "not measured" in cpu.sources["dynamic_power_w_at_max"]
    # measured workloads come back measured; an unseen one from the fitted model
    lat, _, src = cpu.cost(NAMES[0], 0, 0)
    assert src.startswith("measured") and lat == pytest.approx(float(_trace(wl, 20, 0.05, 1.5).latency_ms[0]))
    unseen = cpu.latency_ms(4e9, 30e6)
    assert unseen == pytest.approx(4 * 20.0 + 30 * 0.05 + 1.5, rel=1e-4)


def test_host_profile_uses_measured_power_when_a_meter_exists():
    wl = _workloads()
    prof, _, _ = host_profile(_trace(wl, 20.0, 0.05, 1.5, power=35.0), wl)
    cpu = prof.targets["cpu"]
    assert cpu.power_w() == pytest.approx(35.0)
    assert "rapl" in cpu.sources["dynamic_power_w_at_max"]


def test_falls_back_to_compute_when_memory_absorbs_everything():
    # latency driven by bytes that happen to track FLOPs poorly: nnls puts it all in the memory term
    wl = _workloads(4, seed=3)
    wl["flops"] = [1e9, 2e9, 3e9, 4e9]
    wl["weight_bytes"] = [10e6, 60e6, 80e6, 130e6]
    wl["activation_bytes_total"] = 0.0
    tr = _trace(wl, 0.0, 0.05, 1.0)
    result, _ = fit_latency_model(tr, wl)
    assert result["model"] == "compute+fixed" and result["ms_per_gflop"] > 0 and result["ms_per_mb"] == 0
    full, _ = fit_latency_model(_trace(_workloads(), 20.0, 0.05, 1.5), _workloads())
    assert full["model"] == "compute+memory+fixed"
