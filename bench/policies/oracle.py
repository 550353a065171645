"""The per-request oracle: the upper bound every scheduler is measured against.

*Privileged.* At every step it evaluates all actions on the env's current request
under that request's realised draw (the same common random numbers the env will
use) and picks :func:`bench.sim.core.best_actions`: least device energy among the
actions meeting the latency target and accuracy bound; where none does, the least
violation (ties: least energy). This is :meth:`Simulator.oracle` one request at a time.

Queues: every action is evaluated from the queue, radio and thermal state the
request meets (:mod:`bench.sim.kernel`), so its latency includes the wait for the
earlier requests (``wait_aware`` is kept for compatibility and changes nothing).
It is greedy: it does not plan how today's choice delays the next request.
"""

from __future__ import annotations

import numpy as np

from bench.policies.base import Policy, register
from bench.policies.baselines import episode_arrays
from bench.sim.core import Outcome, best_actions


class Oracle(Policy):
    """Per-request best action under the realised draw (see the module docstring)."""

    name = "oracle"
    privileged = True

    def __init__(self, env, wait_aware: bool = False):
        self.env = env
        self.sim = env.unwrapped.sim
        # the simulator's latency now includes the queue wait (bench.sim.kernel: one inference at a time per
        # resource), so every oracle is wait-aware; the flag is kept for compatibility and changes nothing
        self.wait_aware = False

    def outcomes(self) -> Outcome:
        """Outcomes of every action on the current request, shape (1, A)."""
        states, draws, t = episode_arrays(self.env)
        i = np.array([t])
        return self.sim.evaluate(states.take(i), None, draws.take(i))

    def act(self, obs) -> int:
        out = self.outcomes()
        if self.wait_aware:
            states, _, t = episode_arrays(self.env)
            qos = float(states.qos_ms[t])
            latency = out.latency_ms + self.env.unwrapped.episode().wait_ms
            ok = out.qos_ok & (latency <= qos)
            excess = np.maximum(latency / qos - 1.0, 0.0) - np.maximum(out.latency_ms / qos - 1.0, 0.0)
            # violation = latency excess + accuracy excess; swap in the latency excess with the wait
            out = Outcome(out.energy_mj, out.remote_energy_mj, latency, out.accuracy, out.accuracy_loss, ok,
                          np.where(ok, 0.0, out.violation + excess))
        return int(best_actions(out)[0])


@register("oracle")
def oracle(env, wait_aware: bool = False, **_) -> Oracle:
    return Oracle(env, wait_aware=wait_aware)
