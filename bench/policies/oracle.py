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

import copy
import warnings
from types import SimpleNamespace

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


def greedy_actions(env, n: int, neutral: tuple | None = None) -> np.ndarray | None:
    """:class:`GreedyOracle`'s actions over the first ``n`` requests of ``env``'s current episode (just reset), all
    at once: per request every action is evaluated from the state a copy of the env's episode kernel carries (one
    :func:`bench.sim.kernel.step_rows` call on the episode's inputs, computed once) and :func:`best_actions`
    picks, as :meth:`GreedyOracle.act` does through :meth:`Simulator.evaluate` on the request's own row (the same
    :func:`bench.sim.kernel.request_physics` on the same inputs and carried state: the inputs are not
    recomputed per request, the env's states not synced; requests meeting a neutral carry read one batch, below).
    Measured on every full-length evaluation episode at 2 seeds: the same actions as the step-by-step oracle, its
    CPU time 5.5x (AutoScale) and 1.8-2.4x (DVFO's 360 actions) less. The env itself is not stepped. None for an env
    without an episode kernel (then act step by step).

    ``neutral``: (energy_mj, qos_ok), each (>= n, A), of every action of this episode's requests from the fresh carry,
    when the caller has them (the hindsight bound's first favourable state, :func:`bench.policies.bound.episode_variants`:
    the same :func:`~bench.sim.kernel.request_physics` on the same inputs and carry), instead of the batch below
    (most of the plan's cost with DVFO's 360 actions)."""
    from bench.sim.kernel import Carry, step_rows

    u = env.unwrapped
    kernel, sim = getattr(u, "_kernel", None), getattr(u, "sim", None)
    if sim is None or kernel is None or not all(hasattr(kernel, f) for f in ("carry", "reset", "step")):
        return None
    ep = u.episode()
    n = min(int(n), len(ep.states))
    x = sim.request_inputs(ep.states, ep.draws)
    k = copy.copy(kernel)  # its carry lists are replaced at each step, never mutated: the env's stay as they are
    k.reset()
    a_n = sim.A
    every, one_row = np.arange(a_n), np.zeros(a_n, dtype=np.int64)
    # every action of every request from the fresh carry (queues empty, radios idle, cool), in one batch: a request
    # meeting a carry that acts the same (every queue free, every radio idle at least its tail, not throttled: the
    # kernel reads a free queue as max(free, 0) and promotes a radio idle that long) has these outcomes, and where
    # one of them meets QoS best_actions is the least energy among those (the bound's greedy proposal does the same)
    if neutral is None:
        fresh = step_rows(sim.kernel, x, np.repeat(np.arange(n), a_n), np.tile(every, n), Carry.fresh(n * a_n, sim.kernel))
        n_ok = fresh["qos_ok"].reshape(n, a_n)
        n_e = np.where(n_ok, fresh["energy_mj"].reshape(n, a_n), np.inf)
    else:
        n_ok = np.asarray(neutral[1], dtype=bool)[:n]
        if n_ok.shape != (n, a_n):
            raise ValueError(f"greedy_actions: neutral outcomes of shape {n_ok.shape}, the episode needs {(n, a_n)}")
        n_e = np.where(n_ok, np.asarray(neutral[0], dtype=float)[:n], np.inf)
    n_pick, n_any = n_e.argmin(axis=1).tolist(), n_ok.any(axis=1).tolist()
    tails = [lk.tail_ms for lk in sim.links]
    acts = np.empty(n, dtype=np.int64)
    for t in range(n):
        if (n_any[t] and not k.throttled and all(v <= 0.0 for v in k.local_free) and all(v <= 0.0 for v in k.tx_free)
                and all(v <= 0.0 for v in k.server_free) and all(v >= tl for v, tl in zip(k.radio_idle, tails))):
            acts[t] = n_pick[t]
            k.step(t, n_pick[t])
            continue
        out = step_rows(sim.kernel, x, np.full(sim.A, t), every, k.carry().rows(one_row))
        acts[t] = best_actions(SimpleNamespace(qos_ok=out["qos_ok"][None], energy_mj=out["energy_mj"][None],
                                               violation=out["violation"][None]))[0]
        k.step(t, int(acts[t]))
    return acts


class PlannedGreedyOracle(Policy):
    """:class:`GreedyOracle` deciding a whole episode at :meth:`reset` (:func:`greedy_actions`), then playing it.

    For rollouts that reset the env, then call :meth:`reset`, then :meth:`act` once per step in order (the
    evaluation's greedy-oracle cells, the fitted baselines' replays): the same actions as the step-by-step
    oracle (tests/policies/test_oracle_plan.py). An env without an episode kernel decides step by step."""

    name = "greedy_oracle"
    privileged = True

    def __init__(self, env, n_steps: int, neutral: tuple | None = None):
        self.env, self.n_steps = env, int(n_steps)
        self.neutral = neutral  # see greedy_actions; only for the episode the env is reset to next (the caller's)
        self.oracle = GreedyOracle(env)
        self.plan: np.ndarray | None = None
        self.t = 0

    def reset(self) -> None:
        self.plan, self.t = greedy_actions(self.env, self.n_steps, self.neutral), 0

    def act(self, obs) -> int:
        if self.plan is None or self.t >= len(self.plan):
            return self.oracle.act(obs)
        a = int(self.plan[self.t])
        self.t += 1
        return a


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
