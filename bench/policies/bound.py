"""A hindsight bound per evaluation cell: a certified lower bound and the best schedule found.

The question a reader asks of every number is "how far from the best possible?". The best possible
is the least episode energy under the *same realised draws* (common random numbers) with the state
a schedule carries from request to request (radio quiet times and tails, thermal throttling, the
DVFO edge's wait, queues). Its exact value is a shortest path over a continuous state, out of reach
at 1,000 requests x 360 actions; so this module brackets it (docs/bound.md):

* **certified lower bound** (:func:`request_bounds`): a per-request relaxation. Each request may pick
  its action *and* the most favourable state it could have been left in: the radio still busy from
  an earlier transfer (no promotion, the tail it would pay is fully credited) or idle since long
  (no tail left to cut: needed because a promotion can change a timeout), thermally cool or
  throttled (capped levels can be cheaper), empty queues (the states' defaults). Per request this
  is ``<=`` the energy it gets under any schedule, because in the simulator a request's energy
  depends on the carried state only through (a) the radio gap ``g`` since the last transfer -
  ``E(g) = E(0) + tail_w·g`` for ``g < tail`` and ``E(inf)`` for ``g >= tail`` - and (b) the
  throttle flag, both of which the relaxation minimises over; every energy term (local, radio,
  promotion, tail net of credit) is ``>= 0`` or covered by that case split. The episode energy
  is the sum of the per-request energies (the ledger's attribution sums exactly to the radio's
  draw over time), so the sum of per-request minima bounds every schedule. QoS is relaxed the
  same way: a request is *feasible* if some action meets its deadline in some favourable state
  (a superset of the truly feasible ones).
* **best schedule found** (:func:`hindsight_bound`): the greedy oracle's rollout first (where it meets the
  lower bound the bracket is closed and the search is skipped), else a beam search over the episode with a
  discretised carried state (each radio's quiet time in buckets of its tail, the DVFO wait),
  plus the hindsight-best static actions, a width-1 pass and the greedy oracle's own rollout; every candidate is then
  *replayed through a copy of the env* (the real simulator, thermal state and wait included), and
  the best replay under each variant is the upper end. The beam only proposes; the numbers are the
  simulator's, so the bracket stays valid when the kernel changes (queues, a shared radio).

Variants: **Lagrangian** ``E + λ·V`` and **QoS-first** (least energy meeting every feasible deadline);
see :mod:`bench.sim.objective`. :class:`BestFoundSchedule` (``best_found_schedule``; ``bound_schedule`` is its
deprecated alias) replays the best schedule found as a privileged policy (for the testbed and the results
table). It is the *upper* end of the bracket, not the bound: the certified lower bound is no schedule.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.policies.base import Policy, register
from bench.sim.core import Draws, States
from bench.sim.objective import Objective

VARIANTS = ("lagrangian", "qos_first")
#: "radio activity committed this far ahead" (ms) in the favourable busy state: beyond any tail
_COMMITTED_MS = 1e12
#: the cost a beam pays per missed feasible deadline in the QoS-first search (lexicographic, not a price)
_QOS_FIRST_MISS_MJ = 1e12


@dataclass(frozen=True)
class RequestBounds:
    """Per request: least energy over actions and favourable states; least among those meeting QoS."""

    lb_any_mj: np.ndarray  # (N,)
    lb_ok_mj: np.ndarray  # (N,), inf where no action meets QoS in any favourable state
    feasible: np.ndarray  # (N,) bool

    def qos_first(self) -> float:
        """Certified lower bound on the energy of any schedule meeting every feasible deadline."""
        return float(np.sum(np.where(self.feasible, self.lb_ok_mj, self.lb_any_mj)))

    def lagrangian(self, objective: Objective) -> float:
        """Certified lower bound on ``sum E + λ·V`` of any schedule."""
        return float(np.sum(np.minimum(self.lb_ok_mj, self.lb_any_mj + objective.violation_cost_mj)))

    def given_met(self, met) -> float:
        """Lower bound on the energy of any schedule that meets exactly the deadlines ``met`` (N,) bool
        (how a policy that misses feasible deadlines is compared with the QoS-first bound)."""
        met = np.asarray(met, dtype=bool)
        return float(np.sum(np.where(met, self.lb_ok_mj, self.lb_any_mj)))


def _with(states: States, **kw) -> States:
    return dataclasses.replace(states, **kw)


@dataclass(frozen=True)
class Variants:
    """Energy and QoS of every (request, action) under each favourable carried state: ``(V, N, A)`` arrays."""

    energy_mj: np.ndarray
    qos_ok: np.ndarray


def _subset(sim, states: States, draws: Draws, cols: np.ndarray, **kw):
    """Energy, QoS and local head time of actions ``cols`` on every request ((N, len(cols)) each) under
    state overrides ``kw``."""
    n, k = len(states), len(cols)
    if 4 * k > sim.A:  # many columns: one broadcast call over every action is cheaper than N x k rows
        out = sim.evaluate(_with(states, **kw), None, draws)
        pick = lambda x, dt=float: np.asarray(x, dtype=dt)[:, cols]  # noqa: E731
        return pick(out.energy_mj), pick(out.qos_ok, bool), pick(np.broadcast_to(out.phases["radio_start_ms"],
                                                                                 np.shape(out.energy_mj)))
    rows = np.repeat(np.arange(n), k)
    st = _with(states.take(rows), **{name: np.repeat(v, k, axis=0) for name, v in kw.items()})
    out = sim.evaluate(st, np.tile(cols, n), draws.take(rows))
    shape = lambda x, dt=float: np.asarray(x, dtype=dt).reshape(n, k)  # noqa: E731
    return shape(out.energy_mj), shape(out.qos_ok, bool), shape(out.phases["radio_start_ms"])


def _variants(sim, states: States, draws: Draws) -> Variants:
    """Every action under each favourable carried state (module docstring).

    States: radio idle since long (a promotion is due, no tail to cut) or busy until this transfer starts
    (no promotion, the earlier tail wholly credited), each thermally cool or throttled. An action that never
    offloads does not depend on the radio, one that throttling does not change (nor its fallback) not on
    the thermal flag: those columns are copied, not re-simulated (the same numbers, a third less work).
    """
    n, r = len(states), len(sim.links)
    t = sim.tables
    a = np.arange(sim.A)
    fb = np.asarray(t.fallback, dtype=np.int64)
    fbs = np.where(fb >= 0, fb, a)
    th = np.asarray(t.throttle_to, dtype=np.int64)
    thermal = getattr(sim, "thermal", None) is not None
    hot_cols = a[(th != a) | (th[fbs] != fbs)] if thermal else a[:0]
    radio_cols = a[np.asarray(t.offloads, dtype=bool).any(axis=0)]
    idle_inf = np.full((n, r), np.inf)
    cool, hot = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    e0, ok0, pre0 = _subset(sim, states, draws, a, radio_idle_ms=idle_inf, throttled=cool)
    es, oks = [e0], [ok0]
    t_pre = pre0.max(axis=1)

    def variant(cols, **kw):
        e, ok = e0.copy(), ok0.copy()
        pre = np.zeros((n, 0))
        if len(cols):
            e[:, cols], ok[:, cols], pre = _subset(sim, states, draws, cols, **kw)
        es.append(e)
        oks.append(ok)
        return pre

    if thermal and len(hot_cols):
        # throttled levels run longer: the busy state below must cover the longest head of either
        t_pre = np.maximum(t_pre, variant(hot_cols, radio_idle_ms=idle_inf, throttled=hot).max(axis=1, initial=0.0))
    if len(radio_cols):
        # busy: radio activity already committed far past this transfer (no promotion; the connected/tail
        # power is drawn anyway, so this request adds only its transmit power above it and no tail) while
        # its transmitter is free (no wait). The kernel draws the connected power once for all requests
        # using the radio and pushes the tail back to the last one's end, so no reachable state charges
        # a transfer less than this one.
        busy = np.full((n, r), -_COMMITTED_MS)
        variant(radio_cols, radio_idle_ms=busy, throttled=cool)
        if thermal:
            variant(np.intersect1d(radio_cols, hot_cols), radio_idle_ms=busy, throttled=hot)
    return Variants(np.stack(es), np.stack(oks))


def request_bounds(sim, states: States, draws: Draws, variants: Variants | None = None) -> RequestBounds:
    """The per-request relaxation (module docstring) of an episode's states and draws."""
    v = variants if variants is not None else _variants(sim, states, draws)
    e, ok = v.energy_mj, v.qos_ok  # (V, N, A)
    lb_any = e.min(axis=(0, 2))
    lb_ok = np.where(ok, e, np.inf).min(axis=(0, 2))
    return RequestBounds(lb_any, lb_ok, np.isfinite(lb_ok))


# --------------------------------------------------------------------------- best schedule found

def _candidates(v: Variants, feasible: np.ndarray, lam: float, k: int) -> np.ndarray:
    """(N, K) actions worth trying per request: the k cheapest under each favourable state and cost."""
    cols = []
    for e, ok in zip(v.energy_mj, v.qos_ok):
        miss = ~ok
        for cost in (e + lam * miss, e + _QOS_FIRST_MISS_MJ * (miss & feasible[:, None]), e):
            kk = min(k, cost.shape[1])
            cols.append(np.argpartition(cost, kk - 1, axis=1)[:, :kk])
    return np.concatenate(cols, axis=1)


def beam_schedules(sim, states: States, draws: Draws, candidates: np.ndarray, step_costs, widths,
                   buckets: int = 6, wait_aware: bool = False) -> list[np.ndarray]:
    """Beam searches over the episode carrying each radio's quiet time (and the DVFO edge's wait).

    One *lane* per ``(step_cost, width)`` pair, all evaluated in one simulator call per request.
    States of a lane that fall in the same bucket (per radio: quiet time in ``buckets`` slices of its
    tail, or "tail expired"; the wait in quarter inter-arrivals) are merged, keeping the cheaper; the
    ``width`` cheapest survive each step. ``step_cost(energy, ok, i)`` prices one request. Returns one
    (N,) schedule per lane. The radio bookkeeping follows :meth:`Simulator.run_sequence`; a schedule is
    only a proposal (the caller replays it through the env for its true cost).
    """
    n, r = len(states), len(sim.links)
    n_lanes = len(step_costs)
    tail = np.array([lk.tail_ms for lk in sim.links], dtype=float)
    widths = np.asarray(widths, dtype=np.int64)
    lane = np.arange(n_lanes)
    idle = np.full((n_lanes, r), np.inf)
    wait = np.zeros(n_lanes)
    cost = np.zeros(n_lanes)
    parents, chosen = [], []
    for i in range(n):
        acts = np.unique(candidates[i])
        b, k = len(cost), len(acts)
        rows = np.full(b * k, i)
        st = _with(states.take(rows), radio_idle_ms=np.repeat(idle, k, axis=0),
                   throttled=np.zeros(b * k, dtype=bool))
        all_acts = np.tile(acts, b)
        out = sim.evaluate(st, all_acts, draws.take(rows))
        e = np.asarray(out.energy_mj, dtype=float)
        ok = np.asarray(out.qos_ok, dtype=bool)
        w = np.repeat(wait, k)
        if wait_aware:
            ok = ok & (np.asarray(out.latency_ms, dtype=float) + w <= states.qos_ms[i])
        ln = np.repeat(lane, k)
        step = np.choose(ln, [f(e, ok, i) for f in step_costs]) if n_lanes > 1 else step_costs[0](e, ok, i)
        c = np.repeat(cost, k) + step
        ia = float(states.interarrival_ms[i])
        nidle = np.repeat(idle, k, axis=0) + ia
        radio = np.asarray(out.phases["radio"], dtype=np.int64)
        used = np.flatnonzero(radio >= 0)
        nidle[used, radio[used]] = ia - np.asarray(out.phases["radio_end_ms"], dtype=float)[used]
        nwait = np.maximum(0.0, w + np.asarray(out.phases["local_ms"], dtype=float) - ia) if wait_aware else w
        # merge states of a lane in the same bucket, keep the cheapest; then the lane's `width` cheapest
        qb = np.where(nidle >= tail, buckets, np.clip(np.floor(nidle / tail * buckets), -1, buckets - 1)) + 1
        key = (qb.astype(np.int64) * (buckets + 2) ** np.arange(r)).sum(axis=1)
        if wait_aware:
            key = key * 64 + np.minimum(np.floor(nwait / ia * 4), 63).astype(np.int64)
        key = key * n_lanes + ln
        order = np.lexsort((c, key))
        first = order[np.r_[True, key[order][1:] != key[order][:-1]]]
        first = first[np.lexsort((c[first], ln[first]))]
        fl = ln[first]
        rank = np.arange(len(first)) - np.searchsorted(fl, fl)
        keep = first[rank < widths[fl]]
        parents.append(keep // k)
        chosen.append(all_acts[keep])
        idle, wait, cost, lane = nidle[keep], nwait[keep], c[keep], ln[keep]
    # backtrack from each lane's cheapest survivor
    out_scheds = []
    for j in range(n_lanes):
        mine = np.flatnonzero(lane == j)
        best = int(mine[np.argmin(cost[mine])])
        sched = np.empty(n, dtype=np.int64)
        for i in range(n - 1, -1, -1):
            sched[i] = chosen[i][best]
            best = int(parents[i][best])
        out_scheds.append(sched)
    return out_scheds


def _twin(env):
    """A copy of the unwrapped env at its current step; the simulator and its tables (not changed by
    stepping) are shared: a deep copy of them is most of the cost."""
    u = env.unwrapped
    shared = [getattr(u, "system", None), getattr(u, "sim", None), getattr(getattr(u, "_kernel", None), "tab", None)]
    return copy.deepcopy(u, memo={id(x): x for x in shared if x is not None})


def greedy_schedule(env, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The greedy per-request oracle's actions over the first ``n`` requests, rolled out on a copy of ``env``,
    with their per-request (energy_mj, qos_ok) as :func:`replay` gives them."""
    from bench.policies.oracle import GreedyOracle

    twin = _twin(env)
    oracle = GreedyOracle(twin)
    acts = np.empty(n, dtype=np.int64)
    e, ok = np.empty(n), np.empty(n, dtype=bool)
    for t in range(n):
        acts[t] = oracle.act(None)
        _, _, _, _, info = twin.step(int(acts[t]))
        e[t], ok[t] = info["energy_mj"], info["qos_ok"]
    return acts, e, ok


def replay(env, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-request (energy_mj, qos_ok) of ``actions`` on a copy of ``env`` at the start of its episode.

    The copy is the real simulator (radio, thermal, wait: whatever the env carries); ``env`` itself is
    untouched. ``env`` must be freshly reset (step 0)."""
    twin = _twin(env)
    e, ok = np.empty(len(actions)), np.empty(len(actions), dtype=bool)
    for t, a in enumerate(actions):
        _, _, _, _, info = twin.step(int(a))
        e[t], ok[t] = info["energy_mj"], info["qos_ok"]
    return e, ok


@dataclass
class Bound:
    """One cell's bracket (mJ over the episode) and the schedules behind the upper ends."""

    n: int
    requests: RequestBounds
    lower_qos_first_mj: float
    lower_lagrangian: float
    upper_qos_first_mj: float
    upper_qos_first_missed_feasible: int
    upper_lagrangian: float
    schedule: dict[str, np.ndarray]  # variant -> best schedule found
    source: dict[str, str]  # variant -> which candidate it was

    def summary(self) -> dict[str, Any]:
        gap = lambda u, lo: (u / lo - 1.0) if lo > 0 else float("nan")  # noqa: E731
        # the bracket gap: the share of the best schedule found the certified bound leaves unexplained
        share = lambda u, lo: (u - lo) / u if u > 0 else float("nan")  # noqa: E731
        return {"n": self.n, "feasible": int(self.requests.feasible.sum()),
                "lower_qos_first_mj": self.lower_qos_first_mj, "upper_qos_first_mj": self.upper_qos_first_mj,
                "upper_qos_first_missed_feasible": self.upper_qos_first_missed_feasible,
                "gap_qos_first": gap(self.upper_qos_first_mj, self.lower_qos_first_mj),
                "lower_lagrangian": self.lower_lagrangian, "upper_lagrangian": self.upper_lagrangian,
                "gap_lagrangian": gap(self.upper_lagrangian, self.lower_lagrangian),
                "bracket_gap_qos_first": share(self.upper_qos_first_mj, self.lower_qos_first_mj),
                "bracket_gap_lagrangian": share(self.upper_lagrangian, self.lower_lagrangian),
                "source_qos_first": self.source["qos_first"], "source_lagrangian": self.source["lagrangian"]}


def hindsight_bound(env, objective: Objective, n_steps: int | None = None, width: int = 8, k: int = 3) -> Bound:
    """The bracket of the env's current episode (freshly reset), over its first ``n_steps`` requests."""
    from bench.policies.baselines import env_kind

    u = env.unwrapped
    sim = u.sim
    ep = u.episode()
    if ep.step != 0:
        raise ValueError(f"hindsight_bound needs an env at the start of its episode (step 0), got step {ep.step}: "
                         "call env.reset(seed=...) first")
    n = len(ep.states) if not n_steps else min(int(n_steps), len(ep.states))
    idx = np.arange(n)
    states, draws = ep.states.take(idx), ep.draws.take(idx)
    # the episode as reset left it: every later row still holds the initial carried state; make it uniform
    states = _with(states, radio_idle_ms=np.full(states.radio_idle_ms.shape, np.inf),
                   throttled=np.zeros(n, dtype=bool))
    outs = _variants(sim, states, draws)
    rb = request_bounds(sim, states, draws, outs)
    lam = objective.violation_cost_mj
    feas = rb.feasible
    # the greedy oracle first: where it already meets the certified lower bound the bracket is closed
    greedy, e_g, ok_g = greedy_schedule(env, n)  # a proposal: the best found is never worse than greedy_oracle
    proposals = {"greedy_oracle": greedy}
    closed = (objective.episode_cost(e_g, ok_g) <= rb.lagrangian(objective) * (1 + 1e-12)
              and not (~ok_g & feas).any() and float(e_g.sum()) <= rb.qos_first() * (1 + 1e-12))
    if not closed:
        cand = _candidates(outs, feas, lam, k)
        wait_aware = env_kind(env) == "dvfo"
        lag_cost = lambda e, ok, i: e + lam * ~ok  # noqa: E731
        qos_cost = lambda e, ok, i: e + _QOS_FIRST_MISS_MJ * (~ok & feas[i])  # noqa: E731
        lanes = beam_schedules(sim, states, draws, cand, [lag_cost, qos_cost, qos_cost], [width, width, 1],
                               wait_aware=wait_aware)
        proposals.update(zip(("beam_lagrangian", "beam_qos_first", "greedy_qos_first"), lanes))
        # hindsight-best static actions, ranked on the idle-radio, cool evaluation, then replayed
        e0, ok0 = outs.energy_mj[0], outs.qos_ok[0]
        proposals["static_lagrangian"] = np.full(n, int(np.argmin((e0 + lam * ~ok0).sum(axis=0))))
        miss_f = (~ok0 & feas[:, None]).sum(axis=0)
        proposals["static_qos_first"] = np.full(n, int(np.lexsort((e0.sum(axis=0), miss_f))[0]))
    scored = {}
    for name, sched in proposals.items():
        e, ok = (e_g, ok_g) if name == "greedy_oracle" else replay(env, sched)
        scored[name] = (float(e.sum()), int((~ok & feas).sum()), objective.episode_cost(e, ok))
    best_l = min(scored, key=lambda s: (scored[s][2], s))
    best_q = min(scored, key=lambda s: (scored[s][1], scored[s][0], s))
    return Bound(n, rb, rb.qos_first(), rb.lagrangian(objective), scored[best_q][0], scored[best_q][1],
                 scored[best_l][2], {"qos_first": proposals[best_q], "lagrangian": proposals[best_l]},
                 {"qos_first": best_q, "lagrangian": best_l})


class BestFoundSchedule(Policy):
    """*Privileged*: replays the best schedule :func:`hindsight_bound` found for the episode (the bracket's upper end)."""

    name = "best_found_schedule"
    privileged = True

    def __init__(self, env, violation_cost_mj: float, variant: str = "lagrangian", n_steps: int | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"{self.name} variant {variant!r}; allowed: {list(VARIANTS)}")
        self.env, self.variant, self.n_steps = env, variant, n_steps
        self.objective = Objective(violation_cost_mj)
        self.schedule = np.zeros(0, dtype=np.int64)
        self.bound: Bound | None = None
        self._t = 0

    def reset(self) -> None:
        self.bound = hindsight_bound(self.env, self.objective, self.n_steps)
        self.schedule = self.bound.schedule[self.variant]
        self._t = 0

    def act(self, obs) -> int:
        t = self._t
        self._t += 1
        if t >= len(self.schedule):
            raise RuntimeError(f"{self.name}: step {t} is past the schedule ({len(self.schedule)} requests); "
                               "pass n_steps >= the episode's length")
        return int(self.schedule[t])


#: the old name, kept so saved params and plugins keep working
BoundSchedule = BestFoundSchedule


@register("best_found_schedule")
def best_found_schedule(env, violation_cost_mj: float, variant: str = "lagrangian", n_steps: int | None = None,
                        **_) -> BestFoundSchedule:
    return BestFoundSchedule(env, violation_cost_mj, variant, n_steps)


@register("bound_schedule")
def bound_schedule(env, violation_cost_mj: float, variant: str = "lagrangian", n_steps: int | None = None,
                   **_) -> BestFoundSchedule:
    """Deprecated alias of ``best_found_schedule`` (it replays the best schedule found, not the bound)."""
    warnings.warn("policy 'bound_schedule' is deprecated: it replays the best schedule found (the bracket's upper "
                  "end), not the certified bound; use 'best_found_schedule'", DeprecationWarning, stacklevel=2)
    return BestFoundSchedule(env, violation_cost_mj, variant, n_steps)
