"""Neurosurgeon (Kang et al., ASPLOS 2017), re-deciding per query from current estimates.

**Confirmed (paper).** Per query, Neurosurgeon predicts each layer's latency and
energy on the mobile device and in the cloud (per-layer-type regression models),
takes the *current* wireless bandwidth and datacenter load, and picks the
partition point minimising its objective (end-to-end latency, or mobile energy).
It adapts per query; it does not learn.

**Suite choices.**

* Prediction models: the simulator's own expected outcome of each candidate
  (no noise draws) - perfect regression models, which favours Neurosurgeon.
* Current conditions: an exponentially weighted moving average (``alpha``: the
  weight of the newest observation) of what the policy observes, updated with
  each query's observation and reset per episode - never the realised future.
  AutoScale env: Wi-Fi RSSI, LTE RSRP and the co-runner loads (the env observes
  signal strength, not bandwidth: goodput is predicted from the estimated
  signal). DVFO env: the uplink bandwidth (used as the cap), the signal and the
  co-runner loads.
* Objective: the energy mode (least predicted mobile-device energy) among the
  candidates predicted to meet the request's latency target and accuracy bound;
  when none is, the fastest (the paper optimises one objective without a
  constraint; unconstrained energy mode would ignore the QoS every policy here is
  held to). Latency target: the AutoScale observation carries it; on the DVFO env
  the application's target for the DNN from the scenario's mix.
* Partition points. AutoScale's action set has no partitions, so the choice is
  each local target at its top DVFS level vs the cloud over each radio - local or
  offload per query. DVFO's: the offloaded share xi at the top frequencies
  (Neurosurgeon does not scale frequencies).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from bench.policies.base import Policy, register
from bench.policies.baselines import (WorkloadFromObs, _cloud_actions, _dvfo_top, _highest_local, env_kind)
from bench.sim.core import Draws, States


def neurosurgeon_candidates(env) -> np.ndarray:
    """AutoScale: each local target at its top level + the cloud over each radio; DVFO: xi levels at top frequencies."""
    acts = env.unwrapped.action_table
    if env_kind(env) == "dvfo":
        return np.asarray(_dvfo_top(acts), dtype=np.int64)
    local = [_highest_local(acts, t) for t in acts.loc[acts["kind"] == "local", "target"].unique()]
    return np.array(sorted(local + list(_cloud_actions(env).values())), dtype=np.int64)


def make_states(n: int, **columns) -> States:
    """A States batch of ``n`` rows; a field not given takes its default where States has one, else zeros
    (e.g. a co-runner load the estimate does not track)."""
    out = {}
    for f in dataclasses.fields(States):
        v = columns.get(f.name)
        if v is not None:
            out[f.name] = np.asarray(v)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            out[f.name] = np.zeros(n)
    return States(**out)


class Neurosurgeon(Policy):
    """Per-query partition choice from EWMA estimates of the current conditions (module docstring)."""

    name = "neurosurgeon"

    def __init__(self, env, alpha: float = 0.5):
        from bench.sim.envs import obs_fields

        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError(f"neurosurgeon: alpha must be in (0, 1], got {alpha}")
        u = env.unwrapped
        self.alpha = float(alpha)
        self.kind = env_kind(env)
        self.sim = u.sim
        self.candidates = neurosurgeon_candidates(env)
        self._workload = WorkloadFromObs(env)
        fields = obs_fields(env)
        self.radios = self.sim.radio_names
        # the observation fields the estimate tracks, by name
        if self.kind == "autoscale":
            tracked = [f"{r}_dbm" for r in self.radios if f"{r}_dbm" in fields]
        else:
            tracked = ["bandwidth_mbps", "signal_dbm"]
        self.tracked = tracked + [f for f in ("cpu_load", "mem_load", "gpu_load") if f in fields]
        self._idx = np.array([fields.index(f) for f in self.tracked])
        self._qos_idx = fields.index("qos_ms") if "qos_ms" in fields else None
        self._acc_idx = fields.index("max_accuracy_loss") if "max_accuracy_loss" in fields else None
        scen, w = u.scenario, self.sim.W
        self.qos_ms, self.max_loss = np.full(w, np.inf), np.ones(w)
        for m in scen.workload_mix:  # the application's requirements per DNN (known before any query)
            i = self.sim.tables.workload_index([m["workload"]])[0]
            self.qos_ms[i], self.max_loss[i] = float(m["qos_ms"]), float(m["max_accuracy_loss"])
        self.interarrival_ms = float(scen.interarrival_ms)
        self.offload_radio = self.sim.routes[0].radio if self.kind == "dvfo" else None
        self._draws = Draws.neutral(len(self.candidates), len(self.radios))
        self.estimate: np.ndarray | None = None

    def reset(self) -> None:
        self.estimate = None

    def observe(self, obs) -> dict[str, float]:
        """Fold one observation into the EWMA; returns the current estimate by field name."""
        x = np.asarray(obs, dtype=float)[self._idx]
        self.estimate = x if self.estimate is None else self.alpha * x + (1.0 - self.alpha) * self.estimate
        return dict(zip(self.tracked, self.estimate.tolist()))

    def predict(self, workload: int, est: dict[str, float], qos_ms: float, max_loss: float):
        """Predicted outcome of every candidate for one query under the estimate (no noise)."""
        n = len(self.candidates)
        sig = np.full(len(self.radios), -150.0)
        cap = np.inf
        if self.kind == "autoscale":
            for j, r in enumerate(self.radios):
                sig[j] = est.get(f"{r}_dbm", -150.0)
        else:
            sig[self.offload_radio] = est["signal_dbm"]
            cap = max(est["bandwidth_mbps"], 1e-3)
        cols = dict(workload=np.full(n, workload), signal_dbm=np.repeat(sig[None, :], n, axis=0),
                    cap_mbps=np.full(n, cap), qos_ms=np.full(n, qos_ms), max_accuracy_loss=np.full(n, max_loss),
                    interarrival_ms=np.full(n, self.interarrival_ms))
        for f in ("cpu_load", "mem_load", "gpu_load"):
            if f in est:
                cols[f] = np.full(n, est[f])
        return self.sim.evaluate(make_states(n, **cols), self.candidates, self._draws)

    def act(self, obs) -> int:
        est = self.observe(obs)
        w = self._workload(obs)
        qos = float(obs[self._qos_idx]) if self._qos_idx is not None else float(self.qos_ms[w])
        loss = float(obs[self._acc_idx]) if self._acc_idx is not None else float(self.max_loss[w])
        out = self.predict(w, est, qos, loss)
        if out.qos_ok.any():
            k = int(np.argmin(np.where(out.qos_ok, out.energy_mj, np.inf)))
        else:
            k = int(np.argmin(out.latency_ms))
        return int(self.candidates[k])

    def candidates_table(self, env) -> pd.DataFrame:
        return env.unwrapped.action_table.loc[self.candidates]


@register("neurosurgeon", order=140, colour="#ff7f0e", marker="h", label="Neurosurgeon")
def neurosurgeon(env, alpha: float = 0.5, **_) -> Neurosurgeon:
    return Neurosurgeon(env, alpha=alpha)
