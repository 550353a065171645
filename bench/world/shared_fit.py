"""One fit for all reference targets, with the class efficiencies shared by targets of a kind.

Why shared: a target with one or two published latencies cannot identify ten free
constants (the Snapdragon 845 GPU and DSP have one row each; the transformer and
recurrent classes appear in almost no row). So the per-class throughput relative to
dense conv is one number per *kind* of target (cpu, gpu, dsp) and class, times a
per-target ratio with a tight prior around 1 (``ratio_sigma``): a class measured on
one CPU informs every CPU, a target with many rows may still depart from its kind.
The per-target constants (conv throughput, bandwidth, launch and fixed costs) keep
their own parameters, each regularised towards the hand-set prior.

Physical bounds (``peak_gflops_per_ghz`` of the target, from its datasheet): no
class may run faster than the peak; dense conv may exceed it by at most
``conv_fast_algorithm_gain`` (Winograd/FFT convolutions do fewer multiplications
than the counted direct FLOPs — the suite counts direct FLOPs). The bound is a
stiff penalty during the fit and an exact clip of the efficiencies afterwards.

Where nothing is published for a class on a kind (attention and recurrent on every
GPU/DSP), the kind's efficiency is the priors' (``assumed:``); for CPUs, this
repository's measured per-class split of its own host (``data/calibration/
host_class_split.yaml``) enters as a soft observation of the CPU kind's ratios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.optimize import least_squares

from bench.world.profiles import OP_CLASSES, PRECISION_BYTES, Target

#: Per-target constants (log-parameters, each with its prior).
TARGET_PARAMS = ("gflops_per_ghz", "mem_gbps_per_ghz", "launch_ms", "launch_elementwise_ms", "fixed_ms")
#: Classes whose efficiency relative to dense conv is shared by a kind.
CLASSES = OP_CLASSES[1:]
KINDS = ("cpu", "gpu", "dsp")


@dataclass(frozen=True)
class JointSettings:
    measurement_sigma: float
    prior_sigma: float
    ratio_sigma: float
    host_split_sigma: float
    bound_factor: float
    conv_fast_algorithm_gain: float
    tie_below_points: int = 3


@dataclass
class PointTable:
    """Vectorised points: one row per measured latency."""

    target: np.ndarray  # index into the targets list
    flops: np.ndarray  # (n, 6)
    bytes: np.ndarray  # (n, 6) fp32 bytes
    kernels: np.ndarray  # (n, 6)
    f_ghz: np.ndarray
    fm_ghz: np.ndarray
    compute_scale: np.ndarray
    memory_scale: np.ndarray
    measured_ms: np.ndarray
    group: np.ndarray  # model name (the leave-one-out unit)

    def subset(self, mask: np.ndarray) -> "PointTable":
        return PointTable(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


class JointModel:
    """Parameter layout and the vectorised latency model over ``targets``."""

    def __init__(self, targets: Sequence[Target], host_split: Mapping[str, float], settings: JointSettings):
        self.targets = list(targets)
        self.settings = settings
        self.host_split = {c: float(v) for c, v in host_split.items() if c in CLASSES}
        nt, nc = len(self.targets), len(CLASSES)
        self.kind_index = np.array([KINDS.index(t.kind) for t in self.targets])
        self.per_byte = np.array([PRECISION_BYTES[t.precision] for t in self.targets])
        # 0 = no datasheet peak given: no bound (inf)
        self.peak = np.array([t.peak_gflops_per_ghz if t.peak_gflops_per_ghz > 0 else np.inf for t in self.targets],
                             dtype=float)
        prior_t = np.log([[max(_launch_ew(t) if k == "launch_elementwise_ms" else float(getattr(t, k)), 1e-9)
                           for k in TARGET_PARAMS] for t in self.targets])
        prior_eff = np.log([[float(getattr(t, f"eff_{c}")) for c in CLASSES] for t in self.targets])
        prior_kind = np.zeros((len(KINDS), nc))
        for k in range(len(KINDS)):
            rows = prior_eff[self.kind_index == k]
            prior_kind[k] = rows.mean(axis=0) if len(rows) else 0.0
        self.prior_eff = prior_eff
        self.n_t, self.n_c = nt, nc
        self.theta0 = np.concatenate([prior_t.ravel(), prior_kind.ravel(), prior_eff.ravel() - prior_kind[self.kind_index].ravel()])
        self.prior_center = self.theta0.copy()
        self.prior_center[len(prior_t.ravel()) + prior_kind.size:] = 0.0  # ratios centred on the kind
        span = math.log(settings.bound_factor)
        self.lo, self.hi = self.theta0 - span, self.theta0 + span
        self.n_tp = prior_t.size
        self.n_kind = prior_kind.size

    # -- unpacking
    def unpack(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(per-target log params (nt, 5), per-target log efficiencies (nt, 5 classes))."""
        tp = theta[:self.n_tp].reshape(self.n_t, len(TARGET_PARAMS))
        kind = theta[self.n_tp:self.n_tp + self.n_kind].reshape(len(KINDS), self.n_c)
        dev = theta[self.n_tp + self.n_kind:].reshape(self.n_t, self.n_c)
        return tp, kind[self.kind_index] + dev

    def predict(self, theta: np.ndarray, pts: PointTable) -> np.ndarray:
        tp, le = self.unpack(theta)
        g = np.exp(tp[pts.target, 0])
        bw = np.exp(tp[pts.target, 1])
        launch, launch_ew, fixed = (np.exp(tp[pts.target, i]) for i in (2, 3, 4))
        eff = np.concatenate([np.ones((len(pts.target), 1)), np.exp(le[pts.target])], axis=1)
        rate = (g * pts.f_ghz * pts.compute_scale * 1e9)[:, None] * eff
        t_c = pts.flops / rate * 1e3
        t_m = pts.bytes * self.per_byte[pts.target][:, None] / (bw * pts.fm_ghz * pts.memory_scale * 1e9)[:, None] * 1e3
        body = np.maximum(t_c, t_m).sum(axis=1)
        ew = OP_CLASSES.index("elementwise")
        k_other = pts.kernels.sum(axis=1) - pts.kernels[:, ew]
        return body + launch * k_other + launch_ew * pts.kernels[:, ew] + fixed

    def peak_excess(self, theta: np.ndarray) -> np.ndarray:
        """log(throughput / allowed peak), per target and class (conv first); > 0 breaks the bound."""
        tp, le = self.unpack(theta)
        lg = tp[:, 0:1]
        lpeak = np.log(np.where(np.isfinite(self.peak), self.peak, np.inf))[:, None]
        conv = lg - lpeak - math.log(self.settings.conv_fast_algorithm_gain)
        return np.concatenate([conv, lg + le - lpeak], axis=1)

    #: +1: a throughput (faster when larger), -1: a cost (faster when smaller)
    _SPEED_SIGN = np.array([1.0, 1.0, -1.0, -1.0, -1.0])

    def tie(self, theta: np.ndarray, pts: PointTable) -> np.ndarray:
        """Targets with fewer than ``tie_below_points`` rows: their five constants move as one speed factor.

        The signed log-departures from the prior (throughputs up = costs down) are held equal
        (stiff residuals), so one or two published latencies fit one number, not five.
        """
        tp = theta[:self.n_tp].reshape(self.n_t, len(TARGET_PARAMS))
        tp0 = self.theta0[:self.n_tp].reshape(self.n_t, len(TARGET_PARAMS))
        counts = np.bincount(pts.target, minlength=self.n_t)
        few = counts < self.settings.tie_below_points
        dep = (tp - tp0) * self._SPEED_SIGN
        return ((dep[few] - dep[few, :1]) / 0.01)[:, 1:].ravel()

    def residuals(self, theta: np.ndarray, pts: PointTable) -> np.ndarray:
        s = self.settings
        pred = np.log(np.maximum(self.predict(theta, pts), 1e-12))
        meas = (pred - np.log(pts.measured_ms)) / s.measurement_sigma
        sig = np.full(theta.shape, s.prior_sigma)
        sig[self.n_tp + self.n_kind:] = s.ratio_sigma
        prior = (theta - self.prior_center) / sig
        kind = theta[self.n_tp:self.n_tp + self.n_kind].reshape(len(KINDS), self.n_c)
        host = [(kind[KINDS.index("cpu"), CLASSES.index(c)] - math.log(v)) / s.host_split_sigma
                for c, v in self.host_split.items()] if (self.kind_index == KINDS.index("cpu")).any() else []
        excess = self.peak_excess(theta)
        bound = np.where(np.isfinite(excess), np.maximum(excess, 0.0), 0.0).ravel() / 0.01
        return np.concatenate([meas, prior, np.asarray(host, dtype=float), bound, self.tie(theta, pts)])

    def fit(self, pts: PointTable) -> np.ndarray:
        sol = least_squares(self.residuals, np.clip(self.theta0, self.lo + 1e-9, self.hi - 1e-9), args=(pts,),
                            bounds=(self.lo, self.hi), method="trf", x_scale=1.0, max_nfev=400)
        return sol.x

    def constants(self, theta: np.ndarray) -> list[dict[str, float]]:
        """Per target: the fitted constants, with class efficiencies clipped exactly to the peak bound."""
        tp, le = self.unpack(theta)
        out = []
        for i, t in enumerate(self.targets):
            vals = {k: float(np.exp(tp[i, j])) for j, k in enumerate(TARGET_PARAMS)}
            peak = self.peak[i]
            if np.isfinite(peak):
                vals["gflops_per_ghz"] = min(vals["gflops_per_ghz"], peak * self.settings.conv_fast_algorithm_gain)
            for j, c in enumerate(CLASSES):
                eff = float(np.exp(le[i, j]))
                if np.isfinite(peak):
                    eff = min(eff, peak / vals["gflops_per_ghz"])
                vals[f"eff_{c}"] = eff
            out.append(vals)
        return out


def _launch_ew(t: Target) -> float:
    return t.launch_ms if math.isnan(t.launch_elementwise_ms) else t.launch_elementwise_ms


def dominant_class(pts: PointTable, model: JointModel, theta: np.ndarray) -> np.ndarray:
    """Per point: the op class that carries the largest share of its modelled time."""
    tp, le = model.unpack(theta)
    g = np.exp(tp[pts.target, 0])
    bw = np.exp(tp[pts.target, 1])
    eff = np.concatenate([np.ones((len(pts.target), 1)), np.exp(le[pts.target])], axis=1)
    t_c = pts.flops / ((g * pts.f_ghz * pts.compute_scale)[:, None] * eff)
    t_m = pts.bytes * model.per_byte[pts.target][:, None] / (bw * pts.fm_ghz * pts.memory_scale)[:, None]
    return np.array(OP_CLASSES)[np.argmax(np.maximum(t_c, t_m), axis=1)]


def summary_errors(err: np.ndarray) -> dict[str, Any]:
    a = np.abs(err[np.isfinite(err)])
    return {"n_points": int(len(err)),
            "median_abs_err": float(np.median(a)) if len(a) else math.nan,
            "p90_abs_err": float(np.quantile(a, 0.9)) if len(a) else math.nan}
