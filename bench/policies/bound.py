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
* **episode bound** (:func:`episode_bound`, both variants :func:`episode_bounds`): the relaxation above
  tightened by a dynamic program over the episode whose path picks one relaxed option per request and
  carries what a request leaves the next - queues on each local resource and transmitter (an option meeting
  QoS must meet it after them), the radio window cut at the radio's *next user's* arrival instead of the
  next arrival, and whether the radio may still be connected (a promotion-free option needs it). Grids and
  option merges round towards the cheaper side, so its minimum is still a bound; it is the lower end the
  pipeline reports (never below the per-request sum). docs/bound.md has the argument.
* **best schedule found** (:func:`hindsight_bound`): the greedy oracle's rollout first (where it is within
  :data:`SEARCH_SKIP_GAP` of the lower bound the search is skipped), else a beam search over the episode on the
  kernel's whole carried state (:func:`exact_beam_schedules`; beams merged per bucket of it), plus the
  hindsight-best static actions, a width-1 pass, the episode bound's optimal paths and a local search from the
  best of them (:func:`local_search`); every candidate is *replayed on the real simulator* (a fresh copy of the
  env's episode kernel, thermal state and queues included), and the best replay under each variant is the upper
  end. The search only proposes; the numbers are the simulator's, so the bracket stays valid when the kernel
  changes (queues, a shared radio).

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
from types import SimpleNamespace
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
    #: the radio the outcome used (-1: none) and, for an outcome meeting QoS, the *carry* of its window past
    #: the next arrival (:func:`_window_energy`): at least ``carry_w`` more on the radio's base power for every
    #: ms in ``[carry_a_ms, carry_b_ms]`` after the next arrival that passes before the radio's next user arrives
    radio: np.ndarray | None = None
    carry_a_ms: np.ndarray | None = None
    carry_b_ms: np.ndarray | None = None
    carry_w: np.ndarray | None = None
    #: the favourable outcome's timing (ms from the arrival, empty queues), what the episode bound's queues need:
    #: latency, local busy time and its resource (-1: none), the upload's start and the transmitter's release
    latency_ms: np.ndarray | None = None
    local_ms: np.ndarray | None = None
    resource: np.ndarray | None = None
    radio_start_ms: np.ndarray | None = None
    tx_release_ms: np.ndarray | None = None
    #: the radio activity's end (ms from the arrival; 0 where the radio is not used)
    radio_end_ms: np.ndarray | None = None
    #: an outcome's local and transfer-excess energy without any of the radio's base power (what a request missing
    #: QoS adds while an earlier request's window is still open on its radio: :func:`episode_bound`)
    fixed_mj: np.ndarray | None = None
    #: the radio activity + tail beyond the promotion and upload (ms): what a request missing QoS leaves connected
    #: after it when no later request uses its radio (:func:`episode_bound`'s pending tail)
    after_tx_ms: np.ndarray | None = None
    #: (V,) which favourable states have the radio already connected (no promotion): the episode bound lets an
    #: option of such a state use the radio only while an earlier request may have left it connected
    busy: np.ndarray | None = None


#: the phases :func:`_window_energy` reads from the kernel's ledger
_WINDOW_PHASES = ("local_ms", "local_w", "fallback_ms", "fallback_w", "radio_start_ms", "radio_end_ms", "promo_ms",
                  "promo_w", "up_ms", "up_w", "down_ms", "down_w", "tail_w", "tail_ms", "radio")


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


def _window_energy(ph: dict, qos_ok: np.ndarray, qos_ms: np.ndarray, next_ms: np.ndarray):
    """The certified per-request floors of one favourable state's outcomes ((N, k) phases; ``qos_ms``,
    ``next_ms`` (N,)): (any outcome, an outcome meeting QoS - ``inf`` where this one misses it, and the
    latter's carry ``(a, b, w)`` past the next arrival).

    The favourable state has empty queues, so a reachable outcome of the same action and radio/thermal case
    starts its radio no earlier and its activity lasts no shorter; a later start only shrinks the window
    (:func:`window_share`). So the floor takes the latest start a queue could cause: unbounded for any
    outcome (the window is the promotion + upload), ``qos - end`` later for one meeting QoS (a delay
    postpones the end as much).

    **The carry** (used by the episode bound, :func:`episode_bound`): the window is cut at the next arrival
    ``T`` only because the next request might use the same radio. Cut instead at the arrival ``G >= T`` of
    the radio's next user, the window length ``L(G) = min(D + tail, max(D_tx, G - off))`` (``off`` the latest
    radio start) grows past ``L(T)`` by ``clip(G - T - a, 0, b - a)`` with ``a = max(0, off + D_tx - T)``,
    ``b = a + D + tail - L(T)``, at a base power of at least ``w`` (the tail power, or the least of promotion
    and tail power while the window is still in its promotion). Every ``L`` is no longer than a reachable
    outcome's (its start no later, its activity no shorter), so the carry too is a floor. Outcomes missing
    QoS (an unbounded start) carry nothing.
    """
    shape = np.shape(qos_ok)
    qos = np.asarray(qos_ms, dtype=float)[:, None]
    nxt = np.asarray(next_ms, dtype=float)[:, None]
    end = np.asarray(ph["radio_end_ms"], dtype=float)
    with np.errstate(invalid="ignore"):
        slack = np.where(np.isfinite(end), np.maximum(qos - end, 0.0), 0.0)
    fixed, parts = _share_parts(ph)
    fixed = np.broadcast_to(fixed, shape)
    any_mj = fixed + np.broadcast_to(_window_base(parts, nxt, np.inf), shape)
    ok_mj = np.where(qos_ok, fixed + np.broadcast_to(_window_base(parts, nxt, slack), shape), np.inf)
    used, s0, c_promo, d_tx, d_all, promo_w, tail_w = parts
    with np.errstate(invalid="ignore"):
        off = np.where(used, s0 + slack, 0.0)
        length = np.where(used, np.maximum(np.minimum(d_all, np.maximum(d_tx, nxt - off)), 0.0), 0.0)
        a = np.where(used, np.maximum(0.0, off + d_tx - nxt), 0.0)
        b = a + np.maximum(d_all - length, 0.0)
        w = np.where(length >= c_promo, tail_w, np.minimum(promo_w, tail_w))
    carry = np.broadcast_to(used & np.isfinite(nxt) & np.asarray(qos_ok, dtype=bool), shape)
    a = np.where(carry, np.broadcast_to(a, shape), 0.0)
    b = np.where(carry, np.broadcast_to(b, shape), 0.0)
    w = np.where(carry, np.broadcast_to(np.nan_to_num(w), shape), 0.0)
    # (after the episode's last request the floor already holds the whole tail: nothing pending)
    after = np.broadcast_to(np.where(used & np.isfinite(nxt), np.maximum(d_all - d_tx, 0.0), 0.0), shape)
    return any_mj, ok_mj, (a, b, w), fixed, after


def _evaluate_cols(sim, states: States, x, cols: np.ndarray, radio_idle_ms, throttled) -> dict:
    """The kernel's outcome and phases of actions ``cols`` on every request ((N, len(cols)) each) from the radio and
    thermal state given: :meth:`Simulator.evaluate` over every action, restricted to ``cols`` (the same elementwise
    :func:`bench.sim.kernel.request_physics` call; ``x``: the episode's :meth:`Simulator.request_inputs`, computed
    once for all favourable states)."""
    from bench.sim.kernel import gather_route, gather_state, request_physics

    tab = sim.kernel
    a = np.asarray(cols, dtype=np.int64)[None, :]
    rows = np.arange(len(states))[:, None]
    xr = {k: getattr(x, k)[:, None] for k in ("workload", "kc", "km", "kg", "p_add", "jit", "rjit", "qos_ms", "bound")}
    hot = np.asarray(throttled, dtype=bool)[:, None]
    carry = sim.carry_of(_with(states, radio_idle_ms=radio_idle_ms, throttled=np.asarray(throttled, dtype=bool)))
    st = gather_state(tab, carry, rows, a, hot, xr["workload"])  # the local queue where each workload runs
    return request_physics(tab, xr, a, hot, gather_route(x, rows, tab.route[a]), st)


def _subset(sim, states: States, draws: Draws, cols: np.ndarray, x=None, **kw):
    """Energy, QoS, the window floors, the radio used (-1: none) and the carry (:func:`_window_energy`) of
    actions ``cols`` on every request ((N, len(cols)) each) under state overrides ``kw`` (``radio_idle_ms``,
    ``throttled``). ``x``: the episode's request inputs when the caller has them."""
    n, k = len(states), len(cols)
    x = sim.request_inputs(states, draws) if x is None else x
    res = _evaluate_cols(sim, states, x, cols, kw.get("radio_idle_ms", states.radio_idle_ms),
                         kw.get("throttled", states.throttled))
    out = SimpleNamespace(energy_mj=res["energy_mj"], qos_ok=res["qos_ok"], latency_ms=res["latency_ms"], phases=res)
    pick = lambda v, dt=float: np.broadcast_to(np.asarray(v, dtype=dt), (n, k))  # noqa: E731
    e, ok = pick(out.energy_mj), pick(out.qos_ok, bool)
    ph = {name: pick(out.phases[name]) for name in _WINDOW_PHASES}
    r_any, r_ok, (ca, cb, cw), fixed, after = _window_energy(ph, ok, states.qos_ms, _next_arrival(states))
    used = np.isfinite(ph["radio_end_ms"])
    radio = np.where(used, np.nan_to_num(ph["radio"], nan=-1.0), -1.0).astype(np.int64)
    lat = pick(out.latency_ms)
    res = np.nan_to_num(pick(out.phases["local_resource"]), nan=-1.0).astype(np.int64)
    start = np.where(used, ph["radio_start_ms"], 0.0)
    release = np.where(used, np.minimum(start + ph["promo_ms"] + ph["up_ms"], ph["radio_end_ms"]), 0.0)
    end = np.where(used, ph["radio_end_ms"], 0.0)
    return e, ok, r_any, r_ok, radio, ca, cb, cw, lat, ph["local_ms"], res, start, release, end, fixed, after


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
    n_var = 1 + bool(thermal and len(hot_cols)) + bool(len(radio_cols)) * (1 + bool(thermal))
    inputs = sim.request_inputs(states, draws)  # policy-independent: once for every favourable state
    first = _subset(sim, states, draws, a, x=inputs, radio_idle_ms=idle_inf, throttled=cool)
    # energy, ok, floor any, floor ok, radio, carry (a, b, w), timing: one (V, N, A) array each, filled in place
    arrays = []
    for x in first:
        x = np.asarray(x)
        arr = np.empty((n_var, *x.shape), dtype=x.dtype)
        arr[0] = x
        arrays.append(arr)
    filled = [1]

    def variant(cols, **kw):
        k = filled[0]
        for arr in arrays:
            arr[k] = arr[0]
        if len(cols):
            flat = (np.arange(n)[:, None] * sim.A + np.asarray(cols)[None, :]).reshape(-1)  # row-major [:, cols]
            for arr, v in zip(arrays, _subset(sim, states, draws, cols, x=inputs, **kw)):
                arr[k].reshape(-1)[flat] = np.asarray(v).reshape(-1)
        filled[0] += 1

    if thermal and len(hot_cols):
        variant(hot_cols, radio_idle_ms=idle_inf, throttled=hot)
    n_idle = filled[0]
    if len(radio_cols):
        # busy: radio activity committed far past this transfer, its transmitter free: no promotion. Under the
        # ledger's attribution such a request adds only its transmit power above the connected level; the
        # window attribution still charges it the base power on its own window (:func:`_window_energy`).
        busy = np.full((n, r), -_COMMITTED_MS)
        variant(radio_cols, radio_idle_ms=busy, throttled=cool)
        if thermal:
            variant(np.intersect1d(radio_cols, hot_cols), radio_idle_ms=busy, throttled=hot)
    busy_v = np.zeros(n_var, dtype=bool)
    busy_v[n_idle:] = True
    return Variants(*arrays, busy=busy_v)


def request_bounds(sim, states: States, draws: Draws, variants: Variants | None = None) -> RequestBounds:
    """The per-request relaxation (module docstring) of an episode's states and draws."""
    v = variants if variants is not None else _variants(sim, states, draws)
    lb_any = v.relaxed_any_mj.min(axis=(0, 2))  # (V, N, A) -> (N,)
    lb_ok = v.relaxed_ok_mj.min(axis=(0, 2))
    return RequestBounds(lb_any, lb_ok, np.isfinite(lb_ok))


# --------------------------------------------------------------------------- the episode bound

#: grid steps per radio tail of the episode bound's carried windows (finer: tighter, more states)
CARRY_STEPS = 32
#: grid steps per radio tail of the episode bound's carried connected-until (rounded up: coarser is looser, faster)
CONN_STEPS = 16
#: grid step (ms) of the episode bound's carried queues (finer: tighter, more states)
QUEUE_GRID_MS = 10.0
#: options per (local resource, radio) class the episode bound keeps per request after merging
OPTIONS_PER_CLASS = 4
#: carried states per request beyond which the episode bound coarsens its grid
MAX_STATES = 200
#: requests a local search screens a change on, and the most whole-episode checks it makes (a time budget)
LOCAL_SEARCH_WINDOW = 12
LOCAL_SEARCH_CHECKS = 300
#: the bracket (relative, both variants) within which the greedy oracle's rollout ends the search for a better
#: schedule: the search could gain at most this much (a speed/quality choice, not a world constant)
SEARCH_SKIP_GAP = 0.005
#: where the episode bound keeps a pending tail (ms since the first arrival): past any arrival, before "unknown"
_PENDING_MS = 1e11
#: grid index standing for "unknown / unbounded" (a radio a missed request may have left connected)
_UNKNOWN = 1 << 40


@dataclass(frozen=True)
class EpisodeBound:
    """The episode-level certified lower bound of one variant: its value and, per request, the optimal relaxed
    path's cost (summing to the value; a path through the relaxation, not a schedule)."""

    value: float
    step_mj: np.ndarray  # (N,)
    states: int  # the most carried states the DP held at one step (its size)
    #: (N,) per request the cheapest action of the option the optimal path took: a *proposal* for the best
    #: schedule found (replayed through the env like the others; the path itself is a relaxation)
    actions: np.ndarray | None = None
    #: (N,) bool: the path took an option missing QoS at that request
    missed: np.ndarray | None = None


#: how each number of an option is merged towards the favourable side (:func:`_options`)
_MERGE_MIN = ("cost", "cost_open", "after", "dur", "rho", "u", "kb", "t0")
_MERGE_MAX = ("sig_w", "sig_t", "ka", "conn")


def _options(v: Variants, lam: float | None, feasible: np.ndarray, qos_ms: np.ndarray, tail_ms: np.ndarray,
             per_class: int, ok_part: tuple | None = None,
             any_part: tuple | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every request's options of the episode bound, reduced safely.

    *Meeting QoS* (one per (action, favourable state) member; Lagrangian and, at feasible requests, QoS-first):
    per request and class (local resource, radio, needs a connected radio), the front on (cost, tolerated
    wait) - an option starts a group when it tolerates a longer wait than every cheaper one; the options after
    it, up to the next such, join its group (each is no cheaper and tolerates no more) - and the groups merged
    into ``per_class`` by cost rank. A merged option takes each member's most favourable number (the least cost,
    occupancy, window and upload start, the largest wait tolerated and connection left), so every member is at
    least one merged option. *Any outcome* (Lagrangian: + λ; QoS-first: infeasible requests only): nothing to
    meet, no occupancy, an unknown connection; one per (radio, needs a connected radio) with the least cost and
    upload start of its members.

    Returns (a dict of flat (O,) arrays, (N + 1,) offsets: request ``i``'s options are ``[off[i], off[i+1])``).
    Arrays: ``cost``, ``radio`` (the radio it uses: closes that radio's carried window; -1 none), ``res`` (local
    resource it occupies, -1 none), ``dur`` (local busy time), ``sig_w``/``sig_t`` (largest wait on its local
    resource / its radio's transmitter that still meets QoS), ``rho``/``u`` (the transmitter is busy until at
    least ``max(rho + w_local, w_tx + u)``; ``-inf``: it does not occupy it), ``ka``/``kb`` (carried window,
    ms), ``busy`` (it needs the radio still connected when its upload starts, at ``t0`` or later), ``conn`` (its
    radio is connected at most this long after the arrival: its activity ends by the deadline when it meets
    QoS, unknown when it does not), ``act`` (the cheapest member's action). ``ok_part``: :func:`_ok_options`
    already computed (it does not depend on the variant); ``any_part``: :func:`_any_inputs`, likewise.
    """
    n = v.radio.shape[1]
    feas = np.asarray(feasible, dtype=bool)
    ok_cols, ok_req = ok_part if ok_part is not None else _ok_options(v, qos_ms, tail_ms, per_class)
    if lam is None:  # QoS-first: options meeting QoS at feasible requests only
        keep = feas[ok_req]
        ok_cols, ok_req = {k: x[keep] for k, x in ok_cols.items()}, ok_req[keep]
    any_cols, any_req = _any_options(v, lam, feas, tail_ms, any_part)
    req = np.r_[ok_req, any_req]
    order = np.argsort(req, kind="stable")
    cols = {k: np.r_[x, any_cols[k].astype(x.dtype)][order] for k, x in ok_cols.items()}
    return cols, np.searchsorted(req[order], np.arange(n + 1))


def _timing(v: Variants):
    """(N, V*A) views of the variants' numbers the options need."""
    n_v, n, n_a = v.radio.shape
    return lambda x: np.asarray(x).transpose(1, 0, 2).reshape(n, n_v * n_a)  # noqa: E731


def _ok_options(v: Variants, qos_ms: np.ndarray, tail_ms, per_class: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The reduced options meeting QoS (:func:`_options`) and their requests."""
    n_v, n, n_a = v.radio.shape
    busy_v = v.busy if v.busy is not None else np.zeros(n_v, dtype=bool)
    has3 = (v.resource >= 0) & (v.local_ms > 0)
    cls3 = ((np.where(has3, v.resource, -1) + 1) * 64 + (v.radio + 1)) * 2 + (busy_v[:, None, None] & (v.radio >= 0))
    # per request, its options sorted by (class, cost) (a row-wise sort: cheaper than one over the flat options);
    # options missing QoS (cost inf) sort last and are dropped
    with np.errstate(invalid="ignore"):
        key = _timing(v)(np.where(np.isfinite(v.relaxed_ok_mj), cls3 * 1e9 + v.relaxed_ok_mj, np.inf))
    order = np.argsort(key, axis=1, kind="stable")
    n_live = np.isfinite(key).sum(axis=1)
    col = order[np.arange(key.shape[1])[None, :] < n_live[:, None]]  # the live options, row by row in sorted order
    req = np.repeat(np.arange(n), n_live)
    var, act = np.divmod(col, n_a)
    flat = (var * n + req) * n_a + act  # each live option's cell of a (V, N, A) array
    pick = lambda x: np.asarray(x).reshape(-1)[flat]  # noqa: E731
    radio, res, ok_c, dur = pick(v.radio), pick(v.resource), pick(v.relaxed_ok_mj), pick(v.local_ms)
    busy = busy_v[var] & (radio >= 0)
    cls = pick(cls3)
    lat, t0, rel, r_end = pick(v.latency_ms), pick(v.radio_start_ms), pick(v.tx_release_ms), pick(v.radio_end_ms)
    ca, cb, cw = pick(v.carry_a_ms), pick(v.carry_b_ms), pick(v.carry_w)
    qos = np.asarray(qos_ms, dtype=float)[req]
    has, off = (res >= 0) & (dur > 0), radio >= 0
    tails = np.asarray(tail_ms, dtype=float)
    with np.errstate(invalid="ignore"):
        # QoS met only if latency <= qos, and the latency is at least (the favourable outcome's phases shifted):
        # local wait + its latency (a local wait delays the local end and the upload start alike), and
        # transmitter wait - upload start + its radio activity's end (the upload starts no earlier than both)
        sig_w = np.where(has, qos - lat, np.inf)
        sig_t = np.where(off, qos - r_end + t0, np.inf)
    cols = {"cost": ok_c, "cost_open": ok_c, "radio": radio, "res": np.where(has, res, -1), "dur": np.where(has, dur, 0.0),
            "sig_w": sig_w, "sig_t": sig_t, "rho": np.where(off, rel, -np.inf), "u": np.where(off, rel - t0, -np.inf),
            "ka": np.where(cw > 0, ca, 0.0), "kb": np.where(cw > 0, cb, 0.0), "busy": busy,
            "t0": np.where(off, t0, 0.0), "act": act, "after": np.zeros(len(req)), "miss": np.zeros(len(req), dtype=bool),
            # connected at most until (ms from the arrival) after this request's own activity: it ends by the deadline
            "conn": np.where(off, qos + (tails[np.clip(radio, 0, len(tails) - 1)] if len(tails) else 0.0), -np.inf)}
    if not len(req):
        return cols, req
    seg_key = req.astype(np.int64) * (int(cls.max()) + 1) + cls
    seg_start = np.r_[True, seg_key[1:] != seg_key[:-1]]
    seg = np.cumsum(seg_start) - 1
    # the running largest tolerated wait within each segment (the front is a grouping choice: any grouping of
    # consecutive options is safe, so a float key's rounding cannot break the bound)
    sig = np.clip(np.minimum(cols["sig_w"], cols["sig_t"]), -1e7, 1e7)
    run = np.maximum.accumulate(seg * 4e7 + sig) - seg * 4e7
    front = seg_start | np.r_[False, sig[1:] > run[:-1]]
    gid = np.cumsum(front)
    first_of_seg = np.flatnonzero(seg_start)
    gid = gid - gid[first_of_seg][seg]  # 0-based front index within the segment
    n_front = np.maximum.reduceat(gid, first_of_seg)[seg] + 1
    bucket = (gid * np.minimum(per_class, n_front)) // n_front
    starts = np.flatnonzero(seg_start | np.r_[False, bucket[1:] != bucket[:-1]])
    out = {}
    for name, x in cols.items():
        if name in _MERGE_MIN:
            out[name] = np.minimum.reduceat(x, starts)
        elif name in _MERGE_MAX:
            out[name] = np.maximum.reduceat(x, starts)
        else:  # the class's own numbers, or the cheapest member's action
            out[name] = x[starts]
    return out, req[starts]


def _any_inputs(v: Variants, tail_ms) -> tuple:
    """What :func:`_any_options` reads of ``v``, the same for both variants: the (N, V*A) views and each (radio, needs a
    connected radio) class's cells (computed once when :func:`episode_bounds` computes both)."""
    n_v, n, n_a = v.radio.shape
    take = _timing(v)
    radio, any_c, t0 = take(v.radio), take(v.relaxed_any_mj), take(v.radio_start_ms)
    fixed = take(v.fixed_mj) if v.fixed_mj is not None else any_c
    after = take(v.after_tx_ms) if v.after_tx_ms is not None else np.zeros_like(any_c)
    busy = np.repeat(v.busy if v.busy is not None else np.zeros(n_v, dtype=bool), n_a)[None, :] & (radio >= 0)
    acts = np.tile(np.arange(n_a), n_v)
    classes = {(r_, b_): (radio == r_) & (busy == b_) for r_ in range(-1, len(tail_ms)) for b_ in (False, True)}
    return any_c, t0, fixed, after, acts, classes


def _any_options(v: Variants, lam: float | None, feas: np.ndarray, tail_ms,
                 inputs: tuple | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The any-outcome options (:func:`_options`) and their requests (``inputs``: :func:`_any_inputs` of ``v``)."""
    any_c, t0, fixed, after, acts, classes = inputs if inputs is not None else _any_inputs(v, tail_ms)
    open_cost = fixed + lam if lam is not None else np.where(feas[:, None], np.inf, fixed)
    any_cost = any_c + lam if lam is not None else np.where(feas[:, None], np.inf, any_c)
    parts, reqs = [], []
    for r_ in range(-1, len(tail_ms)):
        for b_ in (False, True):
            mask = classes[r_, b_] & np.isfinite(any_cost)
            rows = np.flatnonzero(mask.any(axis=1))
            if not len(rows):
                continue
            c = np.where(mask[rows], any_cost[rows], np.inf)
            j = np.argmin(c, axis=1)
            k_ = len(rows)
            c_open = np.where(mask[rows], open_cost[rows], np.inf).min(axis=1)
            k_after = np.where(mask[rows], after[rows], np.inf).min(axis=1)
            parts.append({"cost": c[np.arange(k_), j], "cost_open": c_open, "radio": np.full(k_, r_),
                          "res": np.full(k_, -1),
                          "dur": np.zeros(k_), "sig_w": np.full(k_, np.inf), "sig_t": np.full(k_, np.inf),
                          "rho": np.full(k_, -np.inf), "u": np.full(k_, -np.inf), "ka": np.zeros(k_),
                          "kb": np.zeros(k_), "busy": np.full(k_, b_),
                          "t0": np.where(mask[rows], t0[rows], np.inf).min(axis=1) if r_ >= 0 else np.zeros(k_),
                          "act": acts[j], "after": k_after, "conn": np.full(k_, np.inf if r_ >= 0 else -np.inf),
                          "miss": np.ones(k_, dtype=bool)})
            reqs.append(rows)
    if not parts:
        return {k: np.zeros(0) for k in ("cost", "cost_open", "radio", "res", "dur", "sig_w", "sig_t", "rho", "u", "ka", "kb",
                                         "busy", "t0", "act", "after", "conn", "miss")}, np.zeros(0, dtype=np.int64)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, np.concatenate(reqs)


def episode_bound(v: Variants, tail_ms, lam: float | None, feasible: np.ndarray | None = None,
                  next_ms: np.ndarray | None = None, qos_ms: np.ndarray | None = None, n_res: int = 0,
                  steps: int = CARRY_STEPS, queue_ms: float = QUEUE_GRID_MS, per_class: int = OPTIONS_PER_CLASS,
                  max_states: int = MAX_STATES, ok_part: tuple | None = None,
                  prune_from: int | None = None, any_part: tuple | None = None) -> EpisodeBound:
    """The per-request relaxation tightened by a dynamic program over what one request leaves the next.

    :func:`request_bounds` lets every request meet empty queues and cuts its radio window at the next arrival
    (the next request *might* use the same radio). Here a path through the episode picks, per request, one of
    the relaxation's options (action x favourable radio/thermal case, meeting QoS or not) and carries:

    * per local resource and per radio's transmitter, the least time it is still busy: an option meeting QoS
      must meet it *after* these waits (its latency grows by at least the wait; the kernel's FIFO, docs/bound.md),
      and it leaves them busy at least its own local time / upload after them. An option missing QoS leaves the
      queues as they were (a queue never shrinks: the kernel keeps the later free time) and needs nothing;
    * per radio, the window still open: the window is cut at the arrival of the radio's *next user* (any later
      request is not on the radio before it arrives; :func:`_window_energy`'s carry), charged for every
      inter-arrival that passes before an option on that radio closes it.

    Every reachable schedule's window attribution is at least one path's cost (each request's outcome is at least
    one option, with no shorter window, no longer allowed wait and no more occupancy), so the least path cost bounds
    every schedule. The carried numbers are kept on grids that round towards the cheaper side (queues and window
    ends down, window starts up; doubled where the states exceed ``max_states``), and options are merged
    towards the favourable side (:func:`_options`), so the DP stays finite and its minimum a bound.

    Where more than ``max_states`` states survive a step, the states another dominates are dropped first
    (:func:`_undominated`: the least path cost is unchanged) and the grid coarsens only if that is not enough
    (``prune_from``: the number of states above which dominated ones are dropped; default ``max_states``; tests pass
    0 to check that dropping them never changes the value).

    ``lam``: the Lagrangian variant (a miss costs ``lam``); ``None``: QoS-first (``feasible`` requests only
    through options meeting QoS, the others through any option at no price). ``ok_part``: the options meeting
    QoS (:func:`_ok_options`), when both variants are computed (:func:`episode_bounds`); ``any_part``:
    :func:`_any_inputs`, likewise.
    """
    n = v.relaxed_ok_mj.shape[1]
    r = len(tail_ms)
    if v.radio is None or next_ms is None or qos_ms is None:  # no timing known: the per-request sum
        ok = v.relaxed_ok_mj.min(axis=(0, 2))
        an = v.relaxed_any_mj.min(axis=(0, 2))
        step = np.minimum(ok, an + lam) if lam is not None else np.where(feasible, ok, an)
        return EpisodeBound(float(step.sum()), step, 1)
    nl = int(max(n_res, v.resource.max(initial=-1) + 1))
    tails = np.asarray(tail_ms, dtype=float)
    # [local free x nl][tx free x r][window start x r][window end x r][connected until x r], in ms since the
    # episode's first arrival (absolute: a number is rounded once, when it is set, never again as time passes)
    d_dims = nl + 4 * r
    # (the connected-until only gates promotion-free options: a coarser grid, rounded up, keeps the states few)
    grid = np.r_[np.full(nl + r, float(queue_ms)), np.tile(np.maximum(tails, 1e-9) / steps, 2),
                 np.maximum(tails, 1e-9) / CONN_STEPS]
    prune_at = max_states if prune_from is None else int(prune_from)
    feas = np.ones(n, dtype=bool) if feasible is None else np.asarray(feasible, dtype=bool)
    # one base power per radio: the least any carry of that radio is priced at (a floor of each)
    power = np.zeros(r)
    for j in range(r):
        w = v.carry_w[(v.radio == j) & (v.carry_w > 0)]
        power[j] = w.min() if len(w) else 0.0
    nxt = np.asarray(next_ms, dtype=float)
    arrival = np.r_[0.0, np.cumsum(nxt[:-1])] if n else np.zeros(0)
    st = np.zeros((1, d_dims), dtype=np.int64)  # 0: free / no window / not connected (every number's "past")
    cost = np.zeros(1)
    parents, costs, chosen, most = [], [], [], 1
    a_sl, b_sl = slice(nl + r, nl + 2 * r), slice(nl + 2 * r, nl + 3 * r)
    u_sl = slice(nl + 3 * r, d_dims)
    opts, offsets = _options(v, lam, feas, qos_ms, tails, per_class, ok_part, any_part)
    # every option's numbers the loop reads, flat over the episode (request i's: [offsets[i], offsets[i + 1]));
    # the waits are read from one (S, nl + r + 1) array whose last column is 0 (an option without that resource)
    res_o, rad_o = opts["res"].astype(np.int64), opts["radio"].astype(np.int64)
    miss_o = opts["miss"].astype(bool)
    w_none = nl + r
    l_col = np.where(res_o >= 0, res_o, w_none)
    t_col = np.where(rad_o >= 0, nl + rad_o, w_none)
    sig_w_o, sig_t_o = opts["sig_w"] + 1e-9, opts["sig_t"] + 1e-9
    dur_o, cost_o, cost_open_o = opts["dur"], opts["cost"], opts["cost_open"]
    # where the new state's numbers go (column ``d_dims``: a scratch column for options that set none)
    new_l = np.where(res_o >= 0, res_o, d_dims)
    closes_o = (rad_o >= 0) & ~miss_o
    if r:
        rc_o = np.clip(rad_o, 0, r - 1)
        # no promotion only if an earlier request may have left the radio connected past the upload's start
        # (an option needing no connected radio: any connected-until passes, as ``conn > -inf``)
        busy_t0 = np.where(opts["busy"].astype(bool), opts["t0"], -np.inf)
        t0_o, rho_o, u_o = opts["t0"], opts["rho"], opts["u"]
        pw_o = power[rc_o]
        open_miss_o = miss_o & (rad_o >= 0)
        pend_o = open_miss_o & (opts["after"] > 0)
        opens_o = opts["kb"] > opts["ka"]
        ka_o, kb_o, after_o, conn_o = opts["ka"], opts["kb"], opts["after"], opts["conn"]
        a_col, b_col, u_col = nl + r + rc_o, nl + 2 * r + rc_o, nl + 3 * r + rc_o
        new_t = np.where(rad_o >= 0, nl + rad_o, d_dims)
        new_u = np.where(rad_o >= 0, u_col, d_dims)
    w_cols = np.r_[np.arange(nl + r), d_dims]
    # per carried column, which way is more favourable to a path (:func:`_undominated`): +1 larger (the connected-until:
    # it only allows more), -1 smaller (queues: each only allows more and occupies less), 0 neither (a window: a longer
    # one costs more later but, open, lets a miss on its radio add no base power of its own)
    better = np.zeros(d_dims, dtype=np.int64)
    better[:nl + r] = -1
    better[u_sl] = 1
    pastable = np.ones(d_dims, dtype=bool)
    pastable[a_sl] = pastable[b_sl] = False
    up = np.zeros(d_dims, dtype=bool)  # _on_grid's rounding: up (-1) for window starts and connected-until
    up[a_sl] = up[u_sl] = True
    sgn = np.where(up, -1.0, 1.0)
    chosen_o = opts["act"] * 2 + miss_o  # what the path records per option: its action and whether it misses QoS
    with np.errstate(invalid="ignore"):
        for i in range(n):
            lo, hi = offsets[i], offsets[i + 1]
            g_n = hi - lo
            now, t = arrival[i], nxt[i]
            later = now + t  # the next arrival (inf after the last request)
            n_s = len(cost)
            ab = np.zeros((n_s, d_dims + 1))  # (S, D + scratch) ms since the first arrival
            np.multiply(st, grid, out=ab[:, :d_dims])
            ab[:, :d_dims][st >= _UNKNOWN] = np.inf
            wait = np.maximum(ab[:, w_cols] - now, 0.0)  # (S, nl + r + 1): each queue's wait, then 0
            w_l = wait[:, l_col[lo:hi]]  # (S, G)
            w_t = wait[:, t_col[lo:hi]]
            allowed = (w_l <= sig_w_o[lo:hi]) & (w_t <= sig_t_o[lo:hi])
            if r:
                allowed &= (ab[:, u_col[lo:hi]] - now) > busy_t0[lo:hi]
                # an option meeting QoS on a radio closes that radio's open window at its own radio start (no earlier
                # than its favourable start nor the transmitter's carried wait): the part before it is paid. An option
                # missing QoS (its start unknown) leaves the window open and adds no base power of its own while one
                # is open (the radio is connected from the window's owner's start to its end + tail whoever else uses it)
                a_r, b_r = ab[:, a_col[lo:hi]], ab[:, b_col[lo:hi]]
                cut = now + np.maximum(t0_o[lo:hi], w_t)
                own = np.where(closes_o[lo:hi], pw_o[lo:hi] * np.maximum(np.minimum(cut, b_r) - np.maximum(a_r, now), 0.0),
                               0.0)
                is_open = (b_r > a_r) & (a_r < _PENDING_MS)  # a window its owner's start is known for
                step_c = np.where(open_miss_o[lo:hi] & is_open, cost_open_o[lo:hi], cost_o[lo:hi])
                newc = np.where(allowed, cost[:, None] + step_c + own, np.inf)
            else:
                newc = np.where(allowed, cost[:, None] + cost_o[lo:hi], np.inf)
            newc = newc.reshape(-1)
            idx = np.flatnonzero(np.isfinite(newc))
            newc = newc[idx]
            s_k, g_k = np.divmod(idx, g_n)
            o_k = g_k + lo  # the pairs' options (flat)
            # the carried numbers after this request (ms since the first arrival), for the live (state, option) pairs
            new = ab[s_k]
            rows = np.arange(len(idx))
            w_lk = w_l.reshape(-1)[idx]
            new[rows, new_l[o_k]] = now + w_lk + dur_o[o_k]
            if r:
                w_tk = w_t.reshape(-1)[idx]
                new[rows, new_t[o_k]] = now + np.maximum(np.maximum(rho_o[o_k] + w_lk, w_tk + u_o[o_k]), w_tk)
                # a miss on a radio with no window open leaves a *pending* tail: paid only if no later request uses
                # the radio (its start is unknown, so any later user may have been right behind it); kept as a window
                # beyond any time of the episode, which only the episode's end pays. Such a miss is itself a later
                # user of the radio: it replaces an earlier miss's pending tail (by its own, or by none: the episode's
                # last request, whose floor already holds its whole tail)
                resets = open_miss_o[o_k] & ~is_open.reshape(-1)[idx]
                pend = resets & pend_o[o_k]
                sets = closes_o[o_k] | resets
                opens = opens_o[o_k] & ~resets  # (no window carried past the episode's last request)
                new[rows, np.where(sets, a_col[o_k], d_dims)] = np.where(
                    pend, _PENDING_MS, np.where(opens, later + ka_o[o_k], 0.0))
                new[rows, np.where(sets, b_col[o_k], d_dims)] = np.where(
                    pend, _PENDING_MS + after_o[o_k], np.where(opens, later + kb_o[o_k], 0.0))
                uc = new_u[o_k]
                new[rows, uc] = np.maximum(new[rows, uc], now + conn_o[o_k])
                # the part of an open window up to the next arrival is paid whatever comes next (a later closer cuts it
                # no earlier than its own arrival): paid now, exactly, and the window marked started (start 0: paid up
                # to the current arrival), so windows differing only in a start already passed are one state; one
                # ending before the next arrival is paid whole (also after the episode's last request)
                a_ab, b_ab = new[:, a_sl], new[:, b_sl]
                started = (b_ab > a_ab) & (a_ab <= later)
                pay = np.where(started, np.maximum(np.minimum(later, b_ab) - np.maximum(a_ab, now), 0.0), 0.0)
                newc = newc + (pay * power).sum(axis=1)
                done = b_ab <= later
                new[:, a_sl] = np.where(started | done, 0.0, a_ab)
                new[:, b_sl] = np.where(done, 0.0, b_ab)
            new = new[:, :d_dims]
            while True:
                k = _grid_keys(new, grid, later, a_sl, b_sl, sgn, pastable)
                first = _cheapest_per_key(k, newc)
                if len(first) > prune_at:
                    # before a coarser grid: drop the states another makes redundant (:func:`_undominated`)
                    first = first[_undominated(k[first], newc[first], better)]
                if len(first) <= max_states:
                    break
                grid = grid * 2.0  # too many states: a coarser grid (still rounding to the cheaper side)
            if not len(first):  # QoS-first only: no path meets every feasible deadline (no schedule does)
                return EpisodeBound(np.inf, np.full(n, np.nan), most)
            parents.append(s_k[first])
            chosen.append(chosen_o[o_k[first]])
            st, cost = k[first], newc[first]
            costs.append(cost)
            most = max(most, len(cost))
    best = int(np.argmin(cost))
    value = float(cost[best])
    step = np.empty(n)
    acts = np.empty(n, dtype=np.int64)
    for i in range(n - 1, -1, -1):
        prev = int(parents[i][best])
        step[i] = costs[i][best] - (costs[i - 1][prev] if i else 0.0)
        acts[i] = chosen[i][best]
        best = prev
    return EpisodeBound(value, step, most, acts // 2, (acts % 2).astype(bool))


def episode_bounds(v: Variants, tail_ms, lam: float, feasible: np.ndarray, next_ms: np.ndarray,
                   qos_ms: np.ndarray, n_res: int = 0) -> tuple[EpisodeBound, EpisodeBound]:
    """Both variants of :func:`episode_bound` (Lagrangian with ``lam``, QoS-first), sharing their options."""
    ok_part = _ok_options(v, qos_ms, tail_ms, OPTIONS_PER_CLASS) if v.radio is not None else None
    any_part = _any_inputs(v, tail_ms) if v.radio is not None else None
    kw = dict(next_ms=next_ms, qos_ms=qos_ms, n_res=n_res, ok_part=ok_part, any_part=any_part)
    lag = episode_bound(v, tail_ms, lam, feasible, **kw)
    if lag.missed is not None and np.asarray(feasible, dtype=bool).all() and not lag.missed.any():
        # every request feasible and the Lagrangian path meets them all, paying no λ: it is also the least path of
        # the QoS-first variant (the same options at the same costs, a subset of the paths)
        return lag, lag
    return lag, episode_bound(v, tail_ms, None, feasible, **kw)


def _on_grid(ab: np.ndarray, grid: np.ndarray, later: float, a_sl: slice, b_sl: slice, u_sl: slice,
             pastable: np.ndarray | None = None) -> np.ndarray:
    """Carried numbers (ms since the episode's first arrival) to grid steps, each towards the cheaper side: queues
    and window ends down, window starts and the radio's connected-until up (``inf``: :data:`_UNKNOWN`). A number
    that can no longer matter - a queue free, a radio connected only until before the next arrival ``later`` - is
    0, and an empty window (end <= start) is no window. The grid is absolute, so a number rounded once stays put:
    rounding never accumulates over the requests it is carried across. ``pastable``: (D,) the columns other than
    the window's (what is 0 once past; computed when not given)."""
    d = ab.shape[1]
    up = np.zeros(d, dtype=bool)
    up[a_sl] = up[u_sl] = True
    if pastable is None:
        pastable = np.ones(d, dtype=bool)
        pastable[a_sl] = pastable[b_sl] = False
    with np.errstate(invalid="ignore"):
        return _grid_keys(ab, grid, later, a_sl, b_sl, np.where(up, -1.0, 1.0), pastable)


def _grid_keys(ab: np.ndarray, grid: np.ndarray, later: float, a_sl: slice, b_sl: slice, sgn: np.ndarray,
               pastable: np.ndarray) -> np.ndarray:
    """:func:`_on_grid` with its rounding signs ``sgn`` ((D,): -1 where a column rounds up) given, in the caller's
    ``np.errstate(invalid="ignore")`` (the episode bound's loop enters it once for every request)."""
    # down: floor(x + 1e-9); up: ceil(x - 1e-9) = -floor(-x + 1e-9) (negation is exact): one floor for all columns
    q = ab / grid
    q *= sgn
    q += 1e-9
    np.floor(q, out=q)
    q *= sgn
    past = (ab <= later) & pastable
    k = np.where(np.isfinite(q), np.minimum(q, _UNKNOWN), _UNKNOWN).astype(np.int64)
    k[past] = 0
    empty = k[:, b_sl] <= k[:, a_sl]
    k[:, a_sl] = np.where(empty, 0, k[:, a_sl])
    k[:, b_sl] = np.where(empty, 0, k[:, b_sl])
    return k


def _undominated(k: np.ndarray, cost: np.ndarray, better: np.ndarray) -> np.ndarray:
    """Indices of the states (distinct rows of grid keys ``k``, costs ``cost``) that no other state *dominates*: in
    every column at least as favourable (``better``: +1 larger, -1 smaller, 0 equal) and no dearer. A dominated state is
    redundant in the episode bound: every continuation of it is open to its dominator at no more cost (each rule of
    :func:`episode_bound` is monotone in these columns: a queue free earlier allows more options and leaves the queues
    no later; a radio connected longer only allows more), so dropping it leaves the least
    path cost unchanged. Rows are distinct, so two states never dominate each other."""
    k = np.asarray(k)
    cost = np.asarray(cost, dtype=float)
    n = len(cost)
    if n < 2:
        return np.arange(n)
    kb = k * np.where(better < 0, -1, 1)  # every compared column: larger is more favourable
    eq, ge = better == 0, better != 0
    dominated = np.zeros(n, dtype=bool)
    step = max(1, 4_000_000 // (n * k.shape[1] + 1))
    for s in range(0, n, step):  # rows i in [s, s + step): is some j at least as favourable everywhere, no dearer?
        ki = kb[s:s + step, None, :]
        dom = (kb[None, :, ge] >= ki[:, :, ge]).all(axis=2) & (kb[None, :, eq] == ki[:, :, eq]).all(axis=2)
        dom &= cost[None, :] <= cost[s:s + step, None]
        dom[np.arange(dom.shape[0]), np.arange(s, s + dom.shape[0])] = False
        dominated[s:s + step] = dom.any(axis=1)
    return np.flatnonzero(~dominated)


def _cheapest_per_key(k: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per distinct row of ``k``, the index of its cheapest row (ties: the first), in the rows' lexicographic order."""
    order = np.lexsort((cost, *k.T[::-1]))
    ks = k[order]
    keep = np.empty(len(order), dtype=bool)
    keep[:1] = True
    keep[1:] = (ks[1:] != ks[:-1]).any(axis=1)  # (the method: np.any's Python-level wrapper costs more here)
    return order[keep]


# --------------------------------------------------------------------------- best schedule found

def _candidates(v: Variants, feasible: np.ndarray, lam: float, k: int) -> np.ndarray:
    """(N, K) actions worth trying per request: the k cheapest under each favourable state and cost, and the cheapest
    (Lagrangian, radio idle, cool) per place it runs - each (local resource, radio) pair - so that a search meeting a
    busy queue has a way around it (issue 21, round 8: on `heldout_cell_edge` the GPU busy with a 1 s ViT left a small
    CNN on the GPU queue, missing its deadline, because the CPU was never among the cheapest from empty queues)."""
    cols = []
    for e, ok in zip(v.energy_mj, v.qos_ok):
        miss = ~ok
        for cost in (e + lam * miss, e + _QOS_FIRST_MISS_MJ * (miss & feasible[:, None]), e):
            kk = min(k, cost.shape[1])
            cols.append(np.argpartition(cost, kk - 1, axis=1)[:, :kk])
    if v.resource is not None and v.radio is not None:
        cost = v.energy_mj[0] + lam * ~v.qos_ok[0]
        place = (v.resource[0] + 1) * (int(v.radio.max(initial=-1)) + 2) + (v.radio[0] + 1)
        best = np.argmin(cost, axis=1)
        for c in np.unique(place):
            mine = np.where(place == c, cost, np.inf)
            j = np.argmin(mine, axis=1)
            cols.append(np.where(np.isfinite(mine[np.arange(len(j)), j]), j, best)[:, None])
    return np.concatenate(cols, axis=1)


def _row_uniques(candidates: np.ndarray) -> list[np.ndarray]:
    """``[np.unique(row) for row in candidates]`` ((N, K) -> N sorted arrays of distinct actions), in one sort."""
    srt = np.sort(np.asarray(candidates), axis=1)
    if not len(srt):
        return []
    keep = np.ones(srt.shape, dtype=bool)
    np.not_equal(srt[:, 1:], srt[:, :-1], out=keep[:, 1:])
    return np.split(srt[keep], np.cumsum(keep.sum(axis=1))[:-1])


#: beams per lane of the exact-state beam search (:func:`exact_beam_schedules`) and the grid (ms) its local queues
#: are bucketed on when beams merge (a speed/quality choice, not a world constant)
EXACT_BEAM_WIDTH = 8
EXACT_BEAM_QUEUE_MS = 100.0


def exact_beam_schedules(sim, states: States, draws: Draws, candidates: np.ndarray, step_costs, widths,
                         buckets: int = 6, queue_ms: float = EXACT_BEAM_QUEUE_MS,
                         merge: bool = True) -> list[np.ndarray]:
    """Beam searches over the episode on the kernel's *whole* carried state (issue 21, round 8).

    Each beam holds the kernel's own carry (:class:`bench.sim.kernel.Carry`: every local queue, transmitter and
    server queue, each radio's quiet time, the thermal filter) and steps it with :func:`bench.sim.kernel.step_rows` and
    :func:`bench.sim.kernel.advance` - the kernel the env replays - so a beam's cost is its path's true cost (the
    round-7 beam it replaced carried only the radios' quiet times and ranked on outcomes from empty queues).
    One *lane* per ``(step_cost, width)`` pair (``step_cost(energy, ok, i)`` prices one request), all lanes stepped in
    one kernel call per request. Beams of a lane that fall in the same bucket (per radio: quiet time in ``buckets``
    slices of its tail or "tail expired"; per local resource: busy time in ``queue_ms`` steps, up to 20; throttled)
    are merged, keeping the cheaper, and the ``width`` cheapest survive. Returns one (N,) schedule per lane: a
    proposal, replayed through the env like the others (merging drops paths, so the result is no optimum).
    ``merge=False``: no merging, only the width cut (with a width of at least every path, an exhaustive search: what
    the brute-force test checks)."""
    from bench.sim.kernel import Carry, _advance_into, step_rows

    n, tab = len(states), sim.kernel
    n_lanes = len(step_costs)
    x = sim.request_inputs(states, draws)
    tail = np.array([lk.tail_ms for lk in sim.links], dtype=float)
    widths = np.asarray(widths, dtype=np.int64)
    carry = Carry.fresh(n_lanes, tab)
    alive = np.arange(n_lanes)  # the beams: rows of ``carry`` (the last step's, gathered once per step)
    cost, lane = np.zeros(n_lanes), np.arange(n_lanes)
    parents, chosen = [], []
    r_pow = (buckets + 2) ** np.arange(len(tail))
    q_pow = 21 ** np.arange(tab.n_resources)
    # a lane's step cost priced once per distinct function (the QoS-first lanes share theirs)
    f_of = [next(j for j, g in enumerate(step_costs) if g is f) for f in step_costs]
    for i, acts in enumerate(_row_uniques(candidates[:n])):
        b, k = len(cost), len(acts)
        src = np.repeat(np.arange(b), k)
        all_acts = acts[None, :].repeat(b, axis=0).reshape(-1)  # np.tile(acts, b)
        met = carry.rows(alive[src])
        out = step_rows(tab, x, np.full(b * k, i), all_acts, met)
        # kernel.advance in place: ``met`` is this step's own gathered copy (advance would copy it once more)
        _advance_into(met, out, np.asarray(x.interarrival_ms[i], dtype=float), None, sim.thermal_params)
        nxt = met
        e, ok = np.asarray(out["energy_mj"], dtype=float), np.asarray(out["qos_ok"], dtype=bool)
        ln = lane[src]
        if n_lanes > 1:
            priced = {}
            for j in f_of:
                if j not in priced:
                    priced[j] = step_costs[j](e, ok, i)
            step = np.choose(ln, [priced[j] for j in f_of])
        else:
            step = step_costs[0](e, ok, i)
        c = cost[src] + step
        idle = nxt.radio_idle
        # (np.clip's value, without its Python-level dispatch)
        qb = np.where(idle >= tail, buckets,
                      np.minimum(np.maximum(np.floor(idle / tail * buckets), -1), buckets - 1)) + 1
        lq = np.minimum(np.floor(np.maximum(nxt.local_free, 0.0) / queue_ms), 20).astype(np.int64)
        key = ((qb.astype(np.int64) * r_pow).sum(axis=1) * 21 ** tab.n_resources + (lq * q_pow).sum(axis=1)) * 2
        key = (key + nxt.throttled) * n_lanes + ln
        if not merge:
            key = np.arange(len(c))
        order = np.lexsort((c, key))
        ks = key[order]
        head = np.empty(len(order), dtype=bool)
        head[:1] = True
        np.not_equal(ks[1:], ks[:-1], out=head[1:])
        first = order[head]
        first = first[np.lexsort((c[first], ln[first]))]
        fl = ln[first]
        rank = np.arange(len(first)) - np.searchsorted(fl, fl)
        keep = first[rank < widths[fl]]
        parents.append(src[keep])
        chosen.append(all_acts[keep])
        carry, alive, cost, lane = nxt, keep, c[keep], ln[keep]
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


def greedy_schedule(env, n: int, neutral: tuple | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The greedy per-request oracle's actions over the first ``n`` requests, rolled out on a copy of ``env``,
    with their per-request (energy_mj, qos_ok) as :func:`replay` gives them.

    An env stepping its episode kernel (:class:`bench.sim.kernel.ScalarEpisode`: both suites) is rolled out on a
    fresh copy of that kernel: per request every action is evaluated from the state the kernel carries (one
    :func:`bench.sim.kernel.step_rows` call on the episode's inputs, computed once) and
    :func:`bench.sim.core.best_actions` picks, as :class:`~bench.policies.oracle.GreedyOracle` does through the env,
    without a deep copy of the env nor its inputs recomputed per request.

    ``neutral``: (energy_mj, qos_ok), each (n, A), of every action from empty queues, every radio idle and the device
    cool (:func:`_variants`' first state). A request meeting a carried state that acts the same (every queue free,
    every radio idle for at least its tail, not throttled: the kernel reads a free queue as ``max(free, 0)`` and
    promotes a radio idle that long) has these outcomes; where one of them meets QoS the pick is read from them."""

    from bench.sim.core import best_actions
    from bench.sim.kernel import step_rows

    u = env.unwrapped
    kernel = getattr(u, "_kernel", None)
    sim = getattr(u, "sim", None)
    if sim is None or kernel is None or not all(hasattr(kernel, f) for f in (*_KERNEL_STATE, "carry", "reset", "step")):
        return _greedy_on_twin(env, n)
    ep = u.episode()
    x = sim.request_inputs(ep.states, ep.draws)
    k = copy.copy(kernel)
    k.reset()
    every = np.arange(sim.A)
    one_row = np.zeros(sim.A, dtype=np.int64)
    acts = np.empty(n, dtype=np.int64)
    e, ok = np.empty(n), np.empty(n, dtype=bool)
    tails = [lk.tail_ms for lk in sim.links]
    for t in range(n):
        if (neutral is not None and not k.throttled and all(v <= 0.0 for v in k.local_free)
                and all(v <= 0.0 for v in k.tx_free) and all(v <= 0.0 for v in k.server_free)
                and all(v >= tl for v, tl in zip(k.radio_idle, tails)) and neutral[1][t].any()):
            # best_actions where some action meets QoS: the least energy among those
            acts[t] = int(np.argmin(np.where(neutral[1][t], neutral[0][t], np.inf)))
            step = k.step(t, int(acts[t]))
            e[t], ok[t] = step["energy_mj"], step["qos_ok"]
            continue
        out = step_rows(sim.kernel, x, np.full(sim.A, t), every, k.carry().rows(one_row))
        acts[t] = best_actions(SimpleNamespace(qos_ok=out["qos_ok"][None], energy_mj=out["energy_mj"][None],
                                               violation=out["violation"][None]))[0]
        step = k.step(t, int(acts[t]))
        e[t], ok[t] = step["energy_mj"], step["qos_ok"]
    return acts, e, ok


def _greedy_on_twin(env, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`greedy_schedule` through the policy on a deep copy of the env (an env without an episode kernel)."""
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


def _given_greedy(greedy: tuple, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    acts, e, ok = (np.asarray(x) for x in greedy)
    if not len(acts) == len(e) == len(ok) == n:
        raise ValueError(f"the given greedy schedule has {len(acts)} actions, {len(e)} energies, {len(ok)} QoS flags; "
                         f"the episode {n} requests")
    return acts.astype(np.int64), e.astype(float), ok.astype(bool)


def replay(env, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-request (energy_mj, qos_ok) of ``actions`` on a copy of ``env`` at the start of its episode.

    The copy is the real simulator (radio, thermal, wait: whatever the env carries); ``env`` itself is
    untouched. ``env`` must be freshly reset (step 0). An env whose outcomes are its episode kernel's
    (:class:`bench.sim.kernel.EpisodeKernel`: both suites' envs report its ``energy_mj`` and ``qos_ok``) is
    replayed on a fresh copy of that kernel alone: the same numbers without a deep copy of the env."""
    e, ok = np.empty(len(actions)), np.empty(len(actions), dtype=bool)
    kernel = getattr(env.unwrapped, "_kernel", None)
    if kernel is not None and callable(getattr(kernel, "reset", None)) and callable(getattr(kernel, "step", None)):
        k = copy.copy(kernel)  # shares the episode's inputs (never mutated); the carry is replaced at each step
        k.reset()
        for t, a in enumerate(actions):
            out = k.step(t, int(a))
            e[t], ok[t] = out["energy_mj"], out["qos_ok"]
        return e, ok
    twin = _twin(env)
    for t, a in enumerate(actions):
        _, _, _, _, info = twin.step(int(a))
        e[t], ok[t] = info["energy_mj"], info["qos_ok"]
    return e, ok


_KERNEL_STATE = ("local_free", "tx_free", "radio_idle", "server_free", "throttled", "heat_w")


def _same_carry(stab) -> Any:
    """``same(k, snap)``: whether the carried state of the scalar kernel ``k`` (:class:`bench.sim.kernel.ScalarEpisode`)
    and the snapshot ``snap`` (:data:`_KERNEL_STATE` order) give every later request the same outcomes and leave it
    states of which this holds again, whatever the actions, as long as their throttled flags agree (the heat itself
    is not compared: :func:`local_search` carries it apart). Per carried number, the values the scalar physics
    (:func:`bench.sim.kernel.request_physics`) and :meth:`ScalarEpisode.step` cannot tell apart:

    * a local queue is read as ``max(free, 0.0)``: every negative free time and ``+0.0`` read ``0.0`` (``-0.0`` reads
      ``-0.0`` and is compared exactly); a request that uses it sets it anew, one that does not shifts it by the
      inter-arrival, which keeps a negative negative;
    * a transmitter or server queue is read as ``max(t, free)`` with ``t >= 0`` (or ``-0.0``): every ``free <= 0``
      reads ``t``, and a request that uses it leaves ``max(free, new) - ia`` with ``new >= 0``: the new value where
      it is positive, else again a number ``<= 0``;
    * a radio idle for at least every tail of an action on it (``tail_ms`` of the action's route; a larger threshold
      only compares more exactly) is promoted by every request that uses it (``up_start >= 0 >= -idle + tail``)
      and its connected-until is not read; one that uses it leaves ``min(idle, -end) + ia = -end + ia``; one that
      does not keeps it above the threshold.

    Other values are compared exactly (``0.0`` included where its sign could matter). Conservative: a pair it
    calls different is merely stepped."""
    tails = [0.0] * stab.n_radios
    for a in range(len(stab.route)):
        r = stab.route_radio[stab.route[a]]
        t = float(stab.per_action_route[a][0])
        if not t <= tails[r]:  # (a NaN tail: no idle time is above it)
            tails[r] = t if t == t else float("inf")

    def same(k, snap) -> bool:
        if k.throttled != snap[4]:
            return False
        for x, y, tl in zip(k.radio_idle, snap[2], tails):
            if not ((x >= tl and y >= tl) or (x == y and x != 0.0)):
                return False
        for x, y in zip(k.local_free, snap[0]):
            if not ((x < 0.0 and y < 0.0) or (x == y and x != 0.0)):
                return False
        for x, y in zip(k.tx_free, snap[1]):
            if not ((x <= 0.0 and y <= 0.0) or x == y):
                return False
        for x, y in zip(k.server_free, snap[3]):
            if not ((x <= 0.0 and y <= 0.0) or x == y):
                return False
        return True

    return same


def local_search(env, actions: np.ndarray, candidates: np.ndarray, lam: float, window: int = LOCAL_SEARCH_WINDOW,
                 max_checks: int = LOCAL_SEARCH_CHECKS,
                 follow: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Improve a schedule one request at a time on the real simulator (Lagrangian objective ``E + lam·miss``).

    Per request, each candidate action (``candidates`` (N, K)) is screened on the next ``window`` requests from
    the carried state the schedule reaches there (a fresh copy of the env's episode kernel); a candidate that
    lowers that stretch's cost is then checked on the whole rest of the episode and kept only if the episode's
    cost falls. Every number is the kernel's. Returns (actions, energy, qos_ok) of the result, or ``None``
    where the env has no episode kernel to replay on.

    A run (screen or check) stops as soon as its running cost reaches what it must beat: a request's cost
    (energy + λ per miss) is not negative in the kernel's ledger, so the rest could not bring it back (a margin of
    1e-12 relative covers the summation order). Were a cost ever negative, the stop would only drop a candidate a
    full run might have kept: the result is still a schedule whose every number is the kernel's.

    ``follow`` (the scalar kernel's own step only): a trial differs from the schedule in its first action only, so
    once the state it carries is one the kernel cannot tell from the schedule's at the same request
    (:func:`_same_carry`: queues free in both, a radio idle past every tail in both, else equal; the same throttled
    flag), every later outcome is the schedule's own, for as long as the throttled flags agree: the run reads them
    from the schedule instead of stepping, and carries only the trial's heat (the thermal filter's update, with
    the schedule's power). Where the flags part it steps again. The same outcomes, costs and result
    (tests/test_bound.py compares both ways).
    """
    kernel = getattr(env.unwrapped, "_kernel", None)
    if kernel is None or not all(hasattr(kernel, f) for f in _KERNEL_STATE):
        return None
    k = copy.copy(kernel)
    acts = np.asarray(actions, dtype=np.int64).copy()
    n = len(acts)
    fields = _KERNEL_STATE
    step = k.step
    from bench.sim.kernel import ScalarEpisode

    same = (_same_carry(k.stab) if follow and getattr(type(k), "step", None) is ScalarEpisode.step
            and hasattr(k, "stab") else None)
    thermal = getattr(k, "thermal", None) if same is not None else None
    if thermal is not None:
        decay, (_, trip, release) = k._decay, thermal

    def state():
        return tuple([getattr(k, f) for f in fields])

    def restore(snap):
        for f, x in zip(fields, snap):
            setattr(k, f, x)

    # the schedule's own per-request numbers, for a trial that follows it: the state each request meets (snaps),
    # its cost as a run adds it up and the power its request feeds the thermal filter
    snaps: list = []
    costs: list = []
    powers: list = []

    def run(start, seq, snap, out_snaps=None, stop=np.inf, out_costs=None, out_powers=None, follows=False):
        """Costs of ``seq`` from request ``start`` (state ``snap``); ``None`` once their running sum reaches
        ``stop``. ``out_snaps``, ``out_costs``, ``out_powers``: lists collecting the state each request met, its
        cost and power. ``follows``: ``seq`` is the schedule's own after its first action."""
        restore(snap)
        m = len(seq)
        e, ok = np.empty(m), np.empty(m, dtype=bool)
        total = 0.0
        seq = seq.tolist()
        follows = follows and same is not None
        j = 0
        while j < m:
            t = start + j
            if follows and j and same(k, snaps[t]):
                # from here every outcome is the schedule's while the throttled flags agree
                thr, heat, j0 = k.throttled, k.heat_w, j
                while j < m:
                    s = snaps[t]
                    if s[4] != thr:
                        break
                    if out_snaps is not None:
                        out_snaps.append((s[0], s[1], s[2], s[3], thr, heat))
                        out_costs.append(costs[t])
                        out_powers.append(powers[t])
                    if thermal is not None:
                        d = decay[t]
                        heat = heat * d + powers[t] * (1.0 - d)
                        thr = (heat >= release) if thr else (heat > trip)
                    total += costs[t]
                    j += 1
                    t += 1
                    if total >= stop:
                        return None
                e[j0:j] = e_cur[start + j0:t]
                ok[j0:j] = ok_cur[start + j0:t]
                if j == m:
                    break
                restore((s[0], s[1], s[2], s[3], thr, heat))  # the flags part: step on from here
            if out_snaps is not None:
                out_snaps.append(state())
            out = step(t, seq[j])
            e_j, ok_j = out["energy_mj"], out["qos_ok"]
            e[j], ok[j] = e_j, ok_j
            c = e_j + lam * (not ok_j)
            if out_costs is not None:
                out_costs.append(c)
                out_powers.append((out["local_w"] * out["local_ms"] + out["fallback_w"] * out["fallback_ms"])
                                  / k.interarrival[t] if thermal is not None else 0.0)
            total += c
            j += 1
            if total >= stop:
                return None
        return e, ok

    def beat(ref):
        """A running cost at or above this cannot end below ``ref - 1e-9``."""
        return ref - 1e-9 + 1e-12 * (abs(ref) + 1.0)

    k.reset()
    e_cur, ok_cur = run(0, acts, state(), snaps, out_costs=costs, out_powers=powers)
    e, ok = e_cur, ok_cur
    cost = e + lam * ~ok
    checks = 0
    for i, cand_i in enumerate(_row_uniques(candidates[:n])):
        hi = min(n, i + window)
        base = cost[i:hi].sum()
        for a in cand_i:
            if a == acts[i] or checks >= max_checks:
                continue
            trial = acts[i:hi].copy()
            trial[0] = a
            got = run(i, trial, snaps[i], stop=beat(base), follows=True)
            if got is None or (got[0] + lam * ~got[1]).sum() >= base - 1e-9:
                continue
            checks += 1  # a promising change: the whole rest of the episode decides
            trial = acts[i:].copy()
            trial[0] = a
            rest = cost[i:].sum()
            tsnaps, tcosts, tpowers = [], [], []
            got = run(i, trial, snaps[i], tsnaps, stop=beat(rest), out_costs=tcosts, out_powers=tpowers,
                      follows=True)
            if got is None:
                continue
            te, tok = got
            tcost = te + lam * ~tok
            if tcost.sum() < rest - 1e-9:
                acts[i] = a
                e[i:], ok[i:], cost[i:] = te, tok, tcost
                snaps[i:], costs[i:], powers[i:] = tsnaps, tcosts, tpowers
                base = cost[i:hi].sum()
    return acts, e, ok


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
    #: variant -> the episode bound (:func:`episode_bound`; its per-request path costs sum to the lower end)
    episode: dict[str, EpisodeBound] | None = None

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


def _episode_arrays(env, n_steps: int | None) -> tuple[int, States, Draws]:
    """(n, states, draws) of the env's current episode (freshly reset) over its first ``n_steps`` requests, every
    row's carried state uniform (radios idle, cool): what the bound's favourable states start from."""
    ep = env.unwrapped.episode()
    if ep.step != 0:
        raise ValueError(f"hindsight_bound needs an env at the start of its episode (step 0), got step {ep.step}: "
                         "call env.reset(seed=...) first")
    n = len(ep.states) if not n_steps else min(int(n_steps), len(ep.states))
    idx = np.arange(n)
    states, draws = ep.states.take(idx), ep.draws.take(idx)
    # the episode as reset left it: every later row still holds the initial carried state; make it uniform
    return n, _with(states, radio_idle_ms=np.full(states.radio_idle_ms.shape, np.inf),
                    throttled=np.zeros(n, dtype=bool)), draws


def episode_variants(env, n_steps: int | None = None) -> Variants:
    """:func:`_variants` of the env's current episode (freshly reset), as :func:`hindsight_bound` computes them: for
    a caller that also needs the first favourable state's outcomes (the greedy oracle's plan,
    :func:`bench.policies.oracle.greedy_actions`) and hands them back to the bound (``variants=``)."""
    _, states, draws = _episode_arrays(env, n_steps)
    return _variants(env.unwrapped.sim, states, draws)


def hindsight_bound(env, objective: Objective, n_steps: int | None = None, width: int = EXACT_BEAM_WIDTH, k: int = 3,
                    close_within: float = SEARCH_SKIP_GAP, greedy: tuple | None = None,
                    variants: Variants | None = None) -> Bound:
    """The bracket of the env's current episode (freshly reset), over its first ``n_steps`` requests.

    ``greedy``: :func:`greedy_schedule` of this episode when the caller has it already (the evaluate stage rolls
    the ``greedy_oracle`` policy out on the same episode: the same actions, energies and QoS flags), else computed.
    ``variants``: :func:`episode_variants` of this episode when the caller has them, else computed.
    """
    sim = env.unwrapped.sim
    n, states, draws = _episode_arrays(env, n_steps)
    if variants is not None and variants.energy_mj.shape[1:] != (n, sim.A):
        raise ValueError(f"hindsight_bound: variants for {variants.energy_mj.shape[1:]} (requests, actions), the episode "
                         f"has {(n, sim.A)}")
    outs = variants if variants is not None else _variants(sim, states, draws)
    rb = request_bounds(sim, states, draws, outs)
    # the episode bound (a DP over queues, radio windows and connection; never below the per-request sum)
    dp_args = dict(next_ms=_next_arrival(states), qos_ms=states.qos_ms, n_res=sim.kernel.n_resources)
    tails = [lk.tail_ms for lk in sim.links]
    ep_lag, ep_qos = episode_bounds(outs, tails, objective.violation_cost_mj, rb.feasible, **dp_args)
    lower_lag = max(ep_lag.value, rb.lagrangian(objective))
    # QoS-first: where no path meets every relaxed-feasible deadline, no schedule does, and the variant's bound
    # (over schedules meeting them all) is vacuous: the per-request sum is kept as its number
    lower_qos = max(ep_qos.value, rb.qos_first()) if np.isfinite(ep_qos.value) else rb.qos_first()
    lam = objective.violation_cost_mj
    feas = rb.feasible
    # the greedy oracle first: where it is already within ``close_within`` of the certified lower bound in both
    # variants, no search could gain more than that and it is skipped
    # a proposal: the best found is never worse than greedy_oracle
    greedy, e_g, ok_g = (greedy_schedule(env, n, (outs.energy_mj[0], outs.qos_ok[0])) if greedy is None
                         else _given_greedy(greedy, n))
    proposals = {"greedy_oracle": greedy}
    tol = 1.0 + max(float(close_within), 1e-12)
    closed = (objective.episode_cost(e_g, ok_g) <= lower_lag * tol
              and not (~ok_g & feas).any() and float(e_g.sum()) <= lower_qos * tol)
    if not closed:
        cand = _candidates(outs, feas, lam, k)
        lag_cost = lambda e, ok, i: e + lam * ~ok  # noqa: E731
        qos_cost = lambda e, ok, i: e + _QOS_FIRST_MISS_MJ * (~ok & feas[i])  # noqa: E731
        # the beams carry the kernel's whole state (queues, quiet times, heat): their costs are their paths' own
        lanes = exact_beam_schedules(sim, states, draws, cand, [lag_cost, qos_cost, qos_cost],
                                     [width, width, 1])
        proposals.update(zip(("beam_lagrangian", "beam_qos_first", "greedy_qos_first"), lanes))
        # the episode bound's optimal paths, as actions (each option's cheapest member)
        proposals["episode_dp_lagrangian"] = ep_lag.actions
        if ep_qos.actions is not None and np.isfinite(ep_qos.value):
            proposals["episode_dp_qos_first"] = ep_qos.actions
        # hindsight-best static actions, ranked on the idle-radio, cool evaluation, then replayed
        e0, ok0 = outs.energy_mj[0], outs.qos_ok[0]
        proposals["static_lagrangian"] = np.full(n, int(np.argmin((e0 + lam * ~ok0).sum(axis=0))))
        miss_f = (~ok0 & feas[:, None]).sum(axis=0)
        proposals["static_qos_first"] = np.full(n, int(np.lexsort((e0.sum(axis=0), miss_f))[0]))
    scored = {}
    replayed: dict[bytes, tuple] = {}  # proposals that are the same schedule (often) are replayed once
    for name, sched in proposals.items():
        if name == "greedy_oracle":
            e, ok = e_g, ok_g
        else:
            key = np.asarray(sched, dtype=np.int64).tobytes()
            if key not in replayed:
                replayed[key] = replay(env, sched)
            e, ok = replayed[key]
        scored[name] = (float(e.sum()), int((~ok & feas).sum()), objective.episode_cost(e, ok))
    best_l = min(scored, key=lambda s: (scored[s][2], s))
    if not closed:
        # a local search from the best Lagrangian proposal, on the real simulator
        extra = np.stack([greedy] + [p for p in (ep_lag.actions, ep_qos.actions) if p is not None], axis=1)
        found = local_search(env, proposals[best_l], np.concatenate([cand, extra], axis=1), lam)
        if found is not None:
            proposals["local_search"] = found[0]
            e, ok = found[1], found[2]
            scored["local_search"] = (float(e.sum()), int((~ok & feas).sum()), objective.episode_cost(e, ok))
            best_l = min(scored, key=lambda s: (scored[s][2], s))
    best_q = min(scored, key=lambda s: (scored[s][1], scored[s][0], s))
    return Bound(n, rb, lower_qos, lower_lag, scored[best_q][0], scored[best_q][1],
                 scored[best_l][2], {"qos_first": proposals[best_q], "lagrangian": proposals[best_l]},
                 {"qos_first": best_q, "lagrangian": best_l}, {"lagrangian": ep_lag, "qos_first": ep_qos})


class BestFoundSchedule(Policy):
    """*Privileged*: replays the best schedule :func:`hindsight_bound` found for the episode (the bracket's upper end)."""

    name = "best_found_schedule"
    privileged = True

    def __init__(self, env, violation_cost_mj: float, variant: str = "lagrangian", n_steps: int | None = None,
                 bound: Bound | None = None):
        if variant not in VARIANTS:
            raise ValueError(f"{self.name} variant {variant!r}; allowed: {list(VARIANTS)}")
        self.env, self.variant, self.n_steps = env, variant, n_steps
        self.objective = Objective(violation_cost_mj)
        self.schedule = np.zeros(0, dtype=np.int64)
        self.bound: Bound | None = None
        # the first episode's bracket when the caller has already searched it (the evaluate stage computes each
        # episode's bound once for the yardstick and hands it here): hindsight_bound(env, objective, n_steps)
        # of the episode the env is reset to next, for this objective; used for that one episode only
        self._given = bound
        self._t = 0

    def reset(self) -> None:
        given, self._given = self._given, None
        if given is not None:  # the caller's bracket of this episode; a length it was not searched for is refused
            n = len(self.env.unwrapped.episode().states)
            if given.n != (n if not self.n_steps else min(int(self.n_steps), n)):
                raise ValueError(f"{self.name}: the given bound covers {given.n} requests, the episode {n} "
                                 f"(n_steps {self.n_steps})")
        self.bound = given if given is not None else hindsight_bound(self.env, self.objective, self.n_steps)
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
                        bound: Bound | None = None,
                        **_) -> BestFoundSchedule:
    return BestFoundSchedule(env, violation_cost_mj, variant, n_steps, bound)


# the deprecated name: results written under it still order and colour beside the new one
@register("bound_schedule", order=31, colour="#2f2f2f", marker="*", reference=True, live=True)
def bound_schedule(env, violation_cost_mj: float, variant: str = "lagrangian", n_steps: int | None = None,
                   bound: Bound | None = None,
                   **_) -> BestFoundSchedule:
    """Deprecated alias of ``best_found_schedule`` (it replays the best schedule found, not the bound)."""
    warnings.warn("policy 'bound_schedule' is deprecated: it replays the best schedule found (the bracket's upper "
                  "end), not the certified bound; use 'best_found_schedule'", DeprecationWarning, stacklevel=2)
    return BestFoundSchedule(env, violation_cost_mj, variant, n_steps, bound)
