"""Thin views of the one kernel (:mod:`bench.sim.kernel`) for the hot paths.

* :func:`evaluate_lean` - one action per request without the per-phase ledger
  arrays, in cache-sized chunks (the throughput path of ``python -m bench perf``);
* :class:`EpisodeKernel` - one episode's policy-independent inputs
  (:class:`~bench.sim.kernel.RequestInputs`, computed once at ``reset``) and the
  step of one request from the carried state (:class:`~bench.sim.kernel.Carry`),
  what the gym envs call.

Neither holds physics of its own: both call
:func:`bench.sim.kernel.request_physics`, as :meth:`Simulator.evaluate` does.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from bench.sim.core import Draws, Simulator, States
from bench.sim.kernel import OUTCOME_FIELDS, Carry, advance, step_rows

#: the outcome fields a step reports (besides the carry fields)
STEP_FIELDS = OUTCOME_FIELDS + ("local_ms", "local_w", "fallback_ms", "fallback_w", "radio", "new_last_end")


class EpisodeKernel:
    """One episode's inputs and carried state; :meth:`outcome` steps one request (see the module docstring)."""

    def __init__(self, sim: Simulator, states: States, draws: Draws):
        self.sim = sim
        self.tab = sim.kernel
        self.x = sim.request_inputs(states, draws)
        self.n = len(states)
        self.interarrival = self.x.interarrival_ms.tolist()
        self.workload = self.x.workload.tolist()
        self.qos = self.x.qos_ms.tolist()
        self.carry = Carry.fresh(1, self.tab)

    def outcome(self, t: int, a: int) -> SimpleNamespace:
        """Request ``t`` run with action ``a`` from the carried state; the carry moves on to request ``t + 1``."""
        out = step_rows(self.tab, self.x, np.array([t]), np.array([a], dtype=np.int64), self.carry)
        self.carry = advance(self.carry, out, self.interarrival[t], thermal=self.sim.thermal_params)
        return SimpleNamespace(**{k: out[k][0].item() for k in STEP_FIELDS})


def evaluate_lean(sim: Simulator, states: States, actions: np.ndarray, draws: Draws,
                  chunk: int = 4096) -> SimpleNamespace:
    """One action per request (each from the state its row carries), without the phases, in chunks."""
    n = len(states)
    parts = []
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        parts.append(sim.evaluate(states.take(sl), np.asarray(actions)[sl], draws.take(sl), phases=False))
    return SimpleNamespace(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in OUTCOME_FIELDS})
