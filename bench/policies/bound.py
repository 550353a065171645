"""A hindsight bound per evaluation cell: a certified lower bound and the best schedule found.

The question a reader asks of every number is "how far from the best possible?". The best possible
is the least episode energy under the *same realised draws* (common random numbers) with the state
a schedule carries from request to request (radio quiet times and tails, thermal throttling, the
DVFO edge's wait, queues). Its exact value is a shortest path over a continuous state, out of reach
at 1,000 requests x 360 actions; so this module brackets it (docs/bound.md):

* **certified lower bound** (:func:`request_bounds`): a per-request relaxation of the episode energy under
  the *window attribution* (:func:`window_share`): each request is charged its local energy, its transfers'
  power above the radio's connected level, and the radio's base power (promotion, connected) on its own
  window - from its radio start until the later of its transmitter release and the next arrival, capped
  at its activity's end + tail (the whole tail after the episode's last request). The transmitter is FIFO,
  so no later request is on the radio in that window and the windows are disjoint: over any schedule the
  shares sum to at most the episode energy. Each request then picks its action *and* the most favourable
  state it could have been left in: radio idle since long (a promotion is due) or busy (no promotion),
  thermally cool or throttled, empty queues - with the radio start taken as late as a queue could make
  it (a later start only shortens the window): unbounded for any outcome, ``qos - end`` later for one
  meeting QoS. The sum of these per-request minima bounds every schedule. QoS is relaxed the same way: a
  request is *feasible* if some action meets its deadline in some favourable state (a superset of the
  truly feasible ones). (Before: the ledger's own attribution with a "busy" state of radio activity
  committed far ahead, under which an offload paid no connected power at all: certified, but 9-21 % below
  the best schedule found on the Jetson.)
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
    """Every (request, action) under each favourable carried state: ``(V, N, A)`` arrays.

    ``energy_mj``/``qos_ok``: the simulator's outcome (the ledger's per-request attribution; what the search
    ranks proposals by). ``relaxed_any_mj``/``relaxed_ok_mj``: the request's share under the *window*
    attribution (:func:`_window_energy`), the certified per-request floors: any outcome / one meeting QoS.
    """

    energy_mj: np.ndarray
    qos_ok: np.ndarray
    relaxed_any_mj: np.ndarray
    relaxed_ok_mj: np.ndarray


#: the phases :func:`_window_energy` reads from the kernel's ledger
_WINDOW_PHASES = ("local_ms", "local_w", "fallback_ms", "fallback_w", "radio_start_ms", "radio_end_ms", "promo_ms",
                  "promo_w", "up_ms", "up_w", "down_ms", "down_w", "tail_w", "tail_ms")


def window_share(ph: dict, next_ms, delay_ms=0.0) -> np.ndarray:
    """Each request's share of the episode energy under the *window attribution* (docs/bound.md).

    The episode energy is the local energy (own part and fallback) + each transfer's power above the radio's
    connected level + the radio's *base* power (promotion, then connected) integrated over time. The
    transmitter is FIFO, so the next request to use the same radio starts after this one releases the
    transmitter and after the next arrival: the base power on ``[s, s + L]`` - ``s`` the request's radio
    start, ``L = min(D + tail, max(D_tx, T - s))`` with ``D`` its radio activity, ``D_tx`` its promotion +
    upload, ``T`` the next arrival (``inf`` after the episode's last request) - is drawn for it while no later
    request is on the radio, and these windows are disjoint. The request's local and transfer-excess energy
    plus the base power on its window therefore sum, over any schedule, to at most the episode energy.

    ``ph``: the kernel's phases (any shape; ``next_ms`` and ``delay_ms`` broadcast against them, ms from the
    arrival). ``delay_ms``: the radio start taken that much later (what a queue does: ``L`` only shrinks).
    """
    fixed, parts = _share_parts(ph)
    return fixed + _window_base(parts, next_ms, delay_ms)


def _share_parts(ph: dict):
    """(local + transfer-excess energy, what the window's base power needs) of :func:`window_share`."""
    g = lambda k: np.asarray(ph[k], dtype=float)  # noqa: E731
    tail_w, end = g("tail_w"), g("radio_end_ms")
    used = np.isfinite(end)  # NaN where the request never got the transmitter
    up_ms = np.where(used, g("up_ms"), 0.0)
    s0 = g("radio_start_ms")
    with np.errstate(invalid="ignore"):
        fixed = g("local_w") * g("local_ms") + g("fallback_w") * g("fallback_ms") + np.where(
            used, (g("up_w") - tail_w) * up_ms + (g("down_w") - tail_w) * g("down_ms"), 0.0)
        c_promo = np.where(used, g("promo_ms"), 0.0)
        d_all = np.where(used, end - s0 + g("tail_ms"), 0.0)
    return fixed, (used, s0, c_promo, c_promo + up_ms, d_all, g("promo_w"), tail_w)


def _window_base(parts, next_ms, delay_ms) -> np.ndarray:
    """The radio's base power on each request's window (:func:`window_share`)."""
    used, s0, c_promo, d_tx, d_all, promo_w, tail_w = parts
    nxt = np.asarray(next_ms, dtype=float)
    with np.errstate(invalid="ignore"):
        # after the episode's last request nothing shares the radio: the whole tail, however late the start
        room = np.where(np.isinf(nxt), np.inf, nxt - (s0 + delay_ms))
        win = np.where(used, np.maximum(np.minimum(d_all, np.maximum(d_tx, room)), 0.0), 0.0)
    return promo_w * np.minimum(c_promo, win) + tail_w * np.maximum(win - c_promo, 0.0)


def _window_energy(ph: dict, qos_ok: np.ndarray, qos_ms: np.ndarray, next_ms: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The certified per-request floors of one favourable state's outcomes ((N, k) phases; ``qos_ms``,
    ``next_ms`` (N,)): (any outcome, an outcome meeting QoS - ``inf`` where this one misses it).

    The favourable state has empty queues, so a reachable outcome of the same action and radio/thermal case
    starts its radio no earlier and its activity lasts no shorter; a later start only shrinks the window
    (:func:`window_share`). So the floor takes the latest start a queue could cause: unbounded for any
    outcome (the window is the promotion + upload), ``qos - end`` later for one meeting QoS (a delay
    postpones the end as much).
    """
    shape = np.shape(qos_ok)
    qos = np.asarray(qos_ms, dtype=float)[:, None]
    nxt = np.asarray(next_ms, dtype=float)[:, None]
    with np.errstate(invalid="ignore"):
        slack = np.where(np.isfinite(np.asarray(ph["radio_end_ms"], dtype=float)),
                         np.maximum(qos - np.asarray(ph["radio_end_ms"], dtype=float), 0.0), 0.0)
    fixed, parts = _share_parts(ph)
    any_mj = np.broadcast_to(fixed + _window_base(parts, nxt, np.inf), shape)
    ok_mj = np.where(qos_ok, np.broadcast_to(fixed + _window_base(parts, nxt, slack), shape), np.inf)
    return any_mj, ok_mj


def _subset(sim, states: States, draws: Draws, cols: np.ndarray, **kw):
    """Energy, QoS, radio start and the window floors (:func:`_window_energy`) of actions ``cols`` on every
    request ((N, len(cols)) each) under state overrides ``kw``."""
    n, k = len(states), len(cols)
    if 4 * k > sim.A:  # many columns: one broadcast call over every action is cheaper than N x k rows
        out = sim.evaluate(_with(states, **kw), None, draws)
        shape = np.shape(out.energy_mj)
        pick = lambda x, dt=float: np.broadcast_to(np.asarray(x, dtype=dt), shape)[:, cols]  # noqa: E731
    else:
        rows = np.repeat(np.arange(n), k)
        st = _with(states.take(rows), **{name: np.repeat(v, k, axis=0) for name, v in kw.items()})
        out = sim.evaluate(st, np.tile(cols, n), draws.take(rows))
        pick = lambda x, dt=float: np.asarray(x, dtype=dt).reshape(n, k)  # noqa: E731
    e, ok = pick(out.energy_mj), pick(out.qos_ok, bool)
    ph = {name: pick(out.phases[name]) for name in _WINDOW_PHASES}
    r_any, r_ok = _window_energy(ph, ok, states.qos_ms, _next_arrival(states))
    return e, ok, ph["radio_start_ms"], r_any, r_ok


def _next_arrival(states: States) -> np.ndarray:
    """(N,) ms from each request's arrival to the next one's; ``inf`` after the last (no later request of the
    episode can share its radio window)."""
    nxt = np.asarray(states.interarrival_ms, dtype=float).copy()
    if len(nxt):
        nxt[-1] = np.inf
    return nxt


def _variants(sim, states: States, draws: Draws) -> Variants:
    """Every action under each favourable carried state (module docstring).

    States: radio idle since long (a promotion is due) or busy (radio activity committed far past this
    transfer: no promotion), each thermally cool or throttled; empty queues. An action that never
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
    first = _subset(sim, states, draws, a, radio_idle_ms=idle_inf, throttled=cool)
    arrays = [[x] for x in (first[0], first[1], first[3], first[4])]  # energy, ok, floor any, floor ok

    def variant(cols, **kw):
        new = [x[0].copy() for x in arrays]
        if len(cols):
            e, ok, _, r_any, r_ok = _subset(sim, states, draws, cols, **kw)
            for arr, v in zip(new, (e, ok, r_any, r_ok)):
                arr[:, cols] = v
        for lst, arr in zip(arrays, new):
            lst.append(arr)

    if thermal and len(hot_cols):
        variant(hot_cols, radio_idle_ms=idle_inf, throttled=hot)
    if len(radio_cols):
        # busy: radio activity committed far past this transfer, its transmitter free: no promotion. Under the
        # ledger's attribution such a request adds only its transmit power above the connected level; the
        # window attribution still charges it the base power on its own window (:func:`_window_energy`).
        busy = np.full((n, r), -_COMMITTED_MS)
        variant(radio_cols, radio_idle_ms=busy, throttled=cool)
        if thermal:
            variant(np.intersect1d(radio_cols, hot_cols), radio_idle_ms=busy, throttled=hot)
    return Variants(*(np.stack(x) for x in arrays))


def request_bounds(sim, states: States, draws: Draws, variants: Variants | None = None) -> RequestBounds:
    """The per-request relaxation (module docstring) of an episode's states and draws."""
    v = variants if variants is not None else _variants(sim, states, draws)
    lb_any = v.relaxed_any_mj.min(axis=(0, 2))  # (V, N, A) -> (N,)
    lb_ok = v.relaxed_ok_mj.min(axis=(0, 2))
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


# live although privileged: the testbed replays the schedule found on its simulated twin (docs/testbed.md)
@register("best_found_schedule", order=30, colour="#000000", marker="*", reference=True, live=True)
def best_found_schedule(env, violation_cost_mj: float, variant: str = "lagrangian", n_steps: int | None = None,
                        **_) -> BestFoundSchedule:
    return BestFoundSchedule(env, violation_cost_mj, variant, n_steps)


# the deprecated name: results written under it still order and colour beside the new one
@register("bound_schedule", order=31, colour="#2f2f2f", marker="*", reference=True, live=True)
def bound_schedule(env, violation_cost_mj: float, variant: str = "lagrangian", n_steps: int | None = None,
                   **_) -> BestFoundSchedule:
    """Deprecated alias of ``best_found_schedule`` (it replays the best schedule found, not the bound)."""
    warnings.warn("policy 'bound_schedule' is deprecated: it replays the best schedule found (the bracket's upper "
                  "end), not the certified bound; use 'best_found_schedule'", DeprecationWarning, stacklevel=2)
    return BestFoundSchedule(env, violation_cost_mj, variant, n_steps)
