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
from bench.sim.kernel import OUTCOME_FIELDS, ScalarEpisode, scalar_tables



class EpisodeKernel(ScalarEpisode):
    """One episode's inputs and carried state (Python scalars); :meth:`outcome` steps one request."""

    def __init__(self, sim: Simulator, states: States, draws: Draws):
        tab = sim.kernel
        stab = getattr(sim, "kernel_scalar", None)
        if stab is None:  # cached on the simulator: the tables are immutable
            stab = sim.kernel_scalar = scalar_tables(tab)
        super().__init__(tab, stab, sim.request_inputs(states, draws), thermal=sim.thermal_params)
        self.sim = sim
        self.n = len(states)
        self.workload = self.x["workload"]
        self.qos = self.x["qos_ms"]

    def outcome(self, t: int, a: int) -> SimpleNamespace:
        """Request ``t`` run with action ``a`` from the carried state; the carry moves on to request ``t + 1``."""
        return SimpleNamespace(**self.step(t, a))


def evaluate_lean(sim: Simulator, states: States, actions: np.ndarray, draws: Draws,
                  chunk: int = 4096) -> SimpleNamespace:
    """One action per request (each from the state its row carries), without the phases, in chunks."""
    n = len(states)
    parts = []
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        parts.append(sim.evaluate(states.take(sl), np.asarray(actions)[sl], draws.take(sl), phases=False))
    cols = {f: np.concatenate([getattr(p, f) for p in parts]) for f in OUTCOME_FIELDS}
    cols.update({f: np.concatenate([p.phases[f] for p in parts]) for f in parts[0].phases} if parts else {})
    return SimpleNamespace(**cols)
