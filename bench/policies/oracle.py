"""The greedy per-request oracle (``greedy_oracle``; ``oracle`` is its deprecated alias).

It is *not* a bound: it picks each request's best action given the state the previous choices
left, ignoring the radio tail, thermal and queue state its choice leaves for the next request, so
a policy can use less energy (issue 21: the distilled rule did). The yardstick is the hindsight
bound of :mod:`bench.policies.bound`; this is one of the schedules that bound's search starts from.

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

import warnings

import numpy as np

from bench.policies.base import Policy, register
from bench.policies.baselines import episode_arrays
from bench.sim.core import Outcome, best_actions


class GreedyOracle(Policy):
    """Per-request best action under the realised draw (see the module docstring)."""

    name = "greedy_oracle"
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


#: the old name, kept so saved params and plugins keep working
Oracle = GreedyOracle


@register("greedy_oracle", order=40, colour="#444444", marker="*", reference=True)
def greedy_oracle(env, wait_aware: bool = False, **_) -> GreedyOracle:
    return GreedyOracle(env, wait_aware=wait_aware)


@register("oracle", order=50, colour="#777777", marker="*", reference=True)
def oracle(env, wait_aware: bool = False, **_) -> GreedyOracle:
    """Deprecated alias of ``greedy_oracle`` (it is not a bound; see the module docstring)."""
    warnings.warn("policy 'oracle' is deprecated: it is the greedy per-request oracle, use 'greedy_oracle' "
                  "(the yardstick is the hindsight bound, bench.policies.bound)", DeprecationWarning, stacklevel=2)
    return GreedyOracle(env, wait_aware=wait_aware)
