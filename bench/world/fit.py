"""Fit a device profile to measured traces: the path from traces to profiles.

With latencies measured at one (or more) CPU frequency, the profile's latency
model ``t = flops/(g*f) + bytes/(m*f_mem) + fixed`` is linear in
``(1/g, 1/m, fixed)``; :func:`fit_latency_model` solves it by non-negative least
squares and reports the in-sample and leave-one-out errors per workload, so the
quality of the model on real data is visible rather than assumed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from bench.world.profiles import DeviceProfile, Target

#: Bytes a workload moves per inference in the latency model's memory term.
def memory_bytes(workloads: pd.DataFrame) -> pd.Series:
    return workloads["weight_bytes"] + workloads["activation_bytes_total"]


def _design(flops, mem_bytes) -> np.ndarray:
    # Columns scaled to O(1) so nnls is well conditioned: GFLOP, MB, 1.
    return np.column_stack([np.asarray(flops, float) / 1e9, np.asarray(mem_bytes, float) / 1e6,
                            np.ones(len(flops))])


def _solve(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    coef, _ = nnls(x, y)
    return coef


def fit_latency_model(trace: pd.DataFrame, workloads: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Fit ``latency_ms ~ a*GFLOP + b*MB + c`` (a, b, c >= 0) to the successful rows of ``trace``.

    Returns the coefficients (and the profile constants they imply at the
    trace's CPU clock) and a per-workload table of measured vs fitted latency
    with in-sample and leave-one-out relative errors.
    """
    ok = trace[(trace["error"].fillna("") == "") & trace["latency_ms"].notna()]
    data = ok.merge(workloads, on="workload", how="inner", validate="one_to_one")
    if len(data) < 3:
        raise ValueError(f"need at least 3 measured workloads to fit 3 constants, got {len(data)}")
    x = _design(data["flops"], memory_bytes(data))
    y = data["latency_ms"].to_numpy(float)
    coef = _solve(x, y)
    model = "compute+memory+fixed"
    if coef[0] * x[:, 0].mean() <= 1e-6 * y.mean():  # compute explains (numerically) nothing
        # Few or collinear workloads can push all of the time into the memory term; compute is the
        # primary term of the profile model, so refit without the memory term rather than report 0 ms/GFLOP.
        x = x * np.array([1.0, 0.0, 1.0])
        coef = _solve(x, y)
        model = "compute+fixed"
    fitted = x @ coef
    loo = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        loo[i] = x[i] @ _solve(x[keep], y[keep])
    table = pd.DataFrame({
        "workload": data["workload"], "gflops": data["flops"] / 1e9, "mem_mb": memory_bytes(data) / 1e6,
        "measured_ms": y, "fitted_ms": fitted, "rel_error": (fitted - y) / y,
        "loo_ms": loo, "loo_rel_error": (loo - y) / y,
    })
    f_ghz = float(np.nanmedian(data["cpu_mhz"])) / 1e3
    a, b, c = (float(v) for v in coef)
    result = {
        "model": model, "ms_per_gflop": a, "ms_per_mb": b, "fixed_ms": c, "cpu_ghz": f_ghz, "n_workloads": int(len(y)),
        "mape": float(np.mean(np.abs(table["rel_error"]))),
        "max_abs_rel_error": float(np.max(np.abs(table["rel_error"]))),
        "loo_mape": float(np.mean(np.abs(table["loo_rel_error"]))),
        # t[ms] = GFLOP * a  =>  effective GFLOP/s = 1000/a; per GHz of clock:
        "gflops_per_ghz": (1e3 / a) / f_ghz if a > 0 and f_ghz > 0 else float("nan"),
        "mem_gbps_per_ghz": (1e3 / b) / 1e3 if b > 0 else float("nan"),  # MB/ms == GB/s; host memory clock unknown: per "GHz" of 1
    }
    return result, table


def host_profile(trace: pd.DataFrame, workloads: pd.DataFrame, name: str = "host",
                 description: str = "") -> tuple[DeviceProfile, dict, pd.DataFrame]:
    """A profile of this host's CPU, in the reference profiles' schema, fitted from ``trace``.

    Measured latencies are attached as ``measurements`` (they override the model
    for those workloads); the fitted constants cover everything else. Power is
    the mean measured power where a meter produced one and NaN otherwise, with a
    source that says so — never an invented number.
    """
    fit, table = fit_latency_model(trace, workloads)
    ok = trace[(trace["error"].fillna("") == "") & trace["latency_ms"].notna()]
    f_mhz = fit["cpu_ghz"] * 1e3
    meter = ",".join(sorted(set(ok["meter"].dropna()))) or "none"
    power = ok["power_w"].astype(float)
    has_power = bool(power.notna().any())
    src_fit = (f"fitted: nnls over {fit['n_workloads']} workloads measured on this host "
               f"(in-sample MAPE {fit['mape']:.1%}, leave-one-out MAPE {fit['loo_mape']:.1%})")
    mem_identifiable = math.isfinite(fit["mem_gbps_per_ghz"])
    target = Target(
        name="cpu", kind="cpu", precision="fp32",
        description="this host's CPU, measured by the profile stage",
        freq_mhz=np.array([f_mhz]), voltage_v=np.array([1.0, 1.0]), mem_freq_mhz=np.array([1000.0]),
        gflops_per_ghz=fit["gflops_per_ghz"],
        mem_gbps_per_ghz=fit["mem_gbps_per_ghz"] if mem_identifiable else 1e6,
        fixed_ms=fit["fixed_ms"],
        static_power_w=0.0 if has_power else float("nan"),
        dynamic_power_w_at_max=float(power.mean()) if has_power else float("nan"),
        measurements={
            (r.workload, f_mhz, 1000.0): (float(r.latency_ms), float(r.power_w), f"measured: {r.meter}, {r.n_runs} runs")
            for r in ok.itertuples()
        },
        sources={
            "freq_mhz": "measured: the host's CPU clock during the measurement (one level: the host's governor was not changed)",
            "voltage_v": "not measured: host voltage is not readable; with one frequency level V(f) does not matter",
            "mem_freq_mhz": "not measured: a nominal 1000 MHz so that mem_gbps_per_ghz reads as GB/s",
            "gflops_per_ghz": src_fit,
            "mem_gbps_per_ghz": src_fit if mem_identifiable else
                "fitted: the memory term was not identifiable from these workloads (nnls gave 0); effectively no memory term",
            "fixed_ms": src_fit,
            "static_power_w": ("fitted: one frequency level, static and dynamic power not separable; all active power in the dynamic term"
                               if has_power else f"not measured: no energy meter on this host (meter: {meter})"),
            "dynamic_power_w_at_max": (f"measured: mean power over the timed runs (meter: {meter})"
                                       if has_power else f"not measured: no energy meter on this host (meter: {meter})"),
        },
    )
    prof = DeviceProfile(name=name, kind="host", description=description or "this host, measured by the profile stage",
                         idle_power_w=float("nan"), idle_power_source="not measured: idle power needs a meter and an idle window",
                         radios=(), targets={"cpu": target})
    return prof, fit, table
