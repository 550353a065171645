"""The simulator's one physics kernel: one request, given the queues and radio state it meets.

Every path of the suite evaluates requests through :func:`request_physics`:
:meth:`bench.sim.core.Simulator.evaluate` (a batch of independent (state, action)
pairs, or every action of each), :meth:`~bench.sim.core.Simulator.run_sequence`
(action sequences with the state carried, several side by side),
:func:`run_episodes` (many episodes stepped in lock-step: the queue makes time
sequential, so the batch runs across episodes), the vector envs and the scalar
env step. The per-(workload, action) constants are the public, named
:class:`KernelTables`; the per-request quantities that do not depend on the
policy are :class:`RequestInputs`; the state one request leaves to the next is
:class:`Carry`.

World model (suite choice; times are ms from the request's arrival):

* **One inference at a time per local resource.** Each local target (phone CPU,
  GPU, DSP; the Jetson's CPU+GPU composite) serves one request at a time, FIFO
  in arrival order. The target a request occupies is the one that runs it, per
  (workload, action) (``KernelTables.local_resource``): a DNN without an INT8
  model sent to the phone's DSP runs as a float graph on the GPU
  (:mod:`bench.world.float_path`), so it waits behind the GPU's requests and
  they behind it, and the DSP's INT8 requests never wait for it. A request with
  local work waits until its target is free
  (``queue_ms``), then runs ``t_pre`` (the whole DNN, or DVFO's head) and
  ``t_par`` (DVFO's local tail, which runs while the offload path proceeds). The
  wait draws no active power (energy is above the idle baseline).
* **One radio, one transmitter.** After ``t_pre`` the request is handed to the
  network stack; its upload waits for the radio's transmitter (FIFO: concurrent
  uploads share the radio's goodput by taking turns, which gives the same
  total busy time as sharing it fairly), then pays a promotion if the radio is
  idle (LTE RRC_IDLE, Wi-Fi PSM) and uploads. The request then reaches the
  server of its route, which has its own FIFO queue, computes, and the result
  comes back after the round trip and a (small, result-sized) download, which
  does not queue.
* **PHY rate vs goodput.** The signal sets the radio's PHY rate; a bandwidth cap
  (a trickle scenario, a trace) limits the flow's goodput, not the PHY rate. A
  transfer lasts ``bits / goodput``; the radio bursts at the PHY rate, so it is in
  its high-power transmit state (Huang et al.: base + per-Mbps power at the PHY
  rate, + the weak-signal term) for ``bits / PHY`` of it and sits in its
  connected (DRX) state at the tail power ``tail_mw`` for the rest. Bursts are
  spread evenly over the transfer, so the transfer's average power is
  ``tail + (P_burst - tail) * goodput / PHY`` (what a timeout that cuts the
  transfer pays up to the cut).
* **Radio power is drawn once.** The radio is connected (tail power) from the end
  of a promotion until ``tail_ms`` after its last activity (a request uses the
  radio from its upload's start to its download's end); overlapping requests do
  not each pay it. Transfers add their power above the connected level (Huang
  et al.'s power model is additive in uplink and downlink throughput). Per
  request, the device energy is its promotion, its transfers' power above the
  connected level and the connected time it adds beyond what earlier requests
  already hold (its tail included), so the episode's sum is the integral of
  the radio's power over time (checked against an independent event-driven
  model, ``tests/sim/reference_model.py``).
* **Timeout.** The app's offload timeout (``data/sim/model.yaml``) runs from the
  hand-off to the network stack (queueing for the transmitter counts). At the
  deadline the request gives up: its transfer stops (the transmitter is free
  again), it keeps no place in the transmitter queue, and the radio enters its
  tail; a request that had reached the server keeps that server busy for its
  compute (the server does not learn of the timeout). The request then runs
  its local fallback action, once its own local part is done (or is dropped,
  ``on_timeout``). The fallback does not queue behind other requests (suite
  choice: it is rare, and queueing it would need the future), so its power is
  drawn alongside whatever runs then.
* Interference, jitter and thermal throttling as in :mod:`bench.sim.core`.

Energy of the cloud or peer is reported separately (``remote_energy_mj``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Callable, Mapping

import numpy as np

#: outcome fields of :func:`request_physics` (besides the phases)
OUTCOME_FIELDS = ("energy_mj", "remote_energy_mj", "latency_ms", "accuracy", "accuracy_loss", "qos_ok",
                  "violation", "tail_mj", "promo_mj", "timed_out")
#: per-request timing and power of each phase (ms from the arrival; W above the idle baseline)
PHASES = ("queue_ms", "local_start_ms", "local_ms", "local_w", "fallback_start_ms", "fallback_ms", "fallback_w",
          "radio_start_ms", "promo_ms", "promo_w", "up_ms", "up_w", "wait_ms", "down_ms", "down_w", "radio_end_ms",
          "tail_w", "tail_ms", "radio", "local_resource")
#: what a request leaves on the resources it used (ms from its arrival), for :func:`advance`
CARRY_FIELDS = ("resource", "new_local_free", "radio", "new_tx_free", "new_last_end", "route", "new_server_free")


#: rows of :attr:`KernelTables.per_wa` (per (workload, action); ``timeout_ms`` is the workload's)
PER_WA_FIELDS = ("pre_ms", "pre_cpu_ms", "pre_mem_ms", "pre_gpu_ms", "par_ms", "par_cpu_ms", "par_mem_ms", "par_gpu_ms",
                 "local_power_w", "offloads", "up_bits", "down_bits", "remote_ms", "remote_power_w", "accuracy", "loss",
                 "timeout_ms")
#: rows of :attr:`KernelTables.per_action` (per action, int): its route, fallback, whether a timeout falls back
#: locally, its throttled action, its route's radio, its throttled fallback
PER_ACTION_FIELDS = ("route", "fallback", "falls_back", "throttle_to", "radio", "fallback_throttled")
#: rows of :attr:`KernelTables.per_action_route` (per action: the constants of its route's radio)
PER_ACTION_ROUTE_FIELDS = ("tail_ms", "tail_w", "promo_ms", "promo_w", "base_w", "up_w_per_mbps", "down_w_per_mbps",
                           "power_max_mbps")


@dataclass(frozen=True)
class KernelTables:
    """Everything the kernel needs that depends only on (workload, action) or the route: public, named, flat.

    Per (workload, action) arrays are flattened, ``index = workload * A + action``
    (``pre_ms`` ... ``loss``, and ``local_resource``: the index into ``resource_names`` of
    the local target the request occupies, where it really runs, -1 for none); per action
    ``(A,)``: ``route``, ``fallback``, ``has_fallback``, ``throttle_to``; per workload
    ``(W,)``: ``timeout_ms``; per route
    ``(Q,)``: ``route_radio``, the radio constants (``tail_w`` ...) of the route's radio
    and ``route_rtt_ms``/``rto_ms``. Interference coefficients are scalars.
    """

    W: int
    A: int
    pre_ms: np.ndarray
    pre_cpu_ms: np.ndarray
    pre_mem_ms: np.ndarray
    pre_gpu_ms: np.ndarray
    par_ms: np.ndarray
    par_cpu_ms: np.ndarray
    par_mem_ms: np.ndarray
    par_gpu_ms: np.ndarray
    local_power_w: np.ndarray
    offloads: np.ndarray
    up_bits: np.ndarray
    down_bits: np.ndarray
    remote_ms: np.ndarray
    remote_power_w: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray
    timeout_ms: np.ndarray
    route: np.ndarray
    fallback: np.ndarray
    has_fallback: np.ndarray
    throttle_to: np.ndarray
    local_resource: np.ndarray  # int (W * A,), flattened as the per (workload, action) arrays
    resource_names: tuple[str, ...]
    route_radio: np.ndarray
    route_rtt_ms: np.ndarray
    rto_ms: np.ndarray
    base_w: np.ndarray
    up_w_per_mbps: np.ndarray
    down_w_per_mbps: np.ndarray
    power_max_mbps: np.ndarray
    tail_w: np.ndarray
    tail_ms: np.ndarray
    promo_w: np.ndarray
    promo_ms: np.ndarray
    n_radios: int
    fallback_local: bool
    cpu_slowdown: float
    mem_slowdown: float
    gpu_slowdown: float
    cpu_power_w: float
    mem_power_w: float
    # derived (not arguments): the tables above packed, so that one gather fetches a request's constants
    per_wa: np.ndarray = field(init=False, repr=False, compare=False)
    per_action: np.ndarray = field(init=False, repr=False, compare=False)
    per_action_route: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # Why packed: the batch paths gather ~40 constants per request; one np.take of a (F, n) table
        # costs about what two separate gathers do, and the scalar step unpacks one tuple instead of
        # ~40 list look-ups. The same values, so the outcomes are unchanged.
        set_ = lambda name, v: object.__setattr__(self, name, v)  # noqa: E731  (a frozen dataclass)
        per_wa = [getattr(self, n) for n in PER_WA_FIELDS[:-1]] + [np.repeat(self.timeout_ms, self.A)]
        set_("per_wa", np.stack(per_wa).astype(float, copy=False))
        thr, fb, route = self.throttle_to, self.fallback, self.route
        per_action = [route, fb, self.has_fallback & self.fallback_local, thr, self.route_radio[route], thr[fb]]
        set_("per_action", np.stack(per_action).astype(np.int64, copy=False))
        set_("per_action_route", np.stack([getattr(self, n)[route] for n in PER_ACTION_ROUTE_FIELDS]).astype(
            float, copy=False))

    @property
    def n_resources(self) -> int:
        return len(self.resource_names)

    @property
    def n_routes(self) -> int:
        return len(self.route_radio)


@dataclass(frozen=True)
class RequestInputs:
    """Per-request quantities that do not depend on the policy (N rows; route arrays (N, Q), or (N,) when
    computed on each row's own route: ``Simulator.request_inputs(..., route=)``).

    ``up_phy``/``down_phy``: the radio's realised PHY rate on the route (signal and this
    request's throughput draw); ``up_good``/``down_good``: the flow's goodput (the PHY
    rate capped by the scenario's bandwidth cap); ``rtt`` (with any TCP RTO);
    ``extra`` the weak-signal transmit power (W).
    """

    up_phy: np.ndarray
    up_good: np.ndarray
    down_phy: np.ndarray
    down_good: np.ndarray
    rtt: np.ndarray
    extra: np.ndarray
    workload: np.ndarray
    kc: np.ndarray
    km: np.ndarray
    kg: np.ndarray
    p_add: np.ndarray
    jit: np.ndarray
    rjit: np.ndarray
    qos_ms: np.ndarray
    bound: np.ndarray
    interarrival_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.workload)

    def take(self, idx) -> "RequestInputs":
        return RequestInputs(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass
class Carry:
    """The state a request leaves to the next, for K independent sequences (ms from the *next* arrival).

    ``local_free`` (K, L): when each local resource is free (<= 0: free now);
    ``tx_free`` (K, R): when each radio's transmitter is free; ``radio_idle`` (K, R): how
    long each radio has had no activity (``inf``: never used, a promotion is due;
    negative: activity already committed into the future); ``server_free`` (K, Q):
    when each route's server queue is free; ``throttled``/``heat_w`` (K,): thermal state.
    """

    local_free: np.ndarray
    tx_free: np.ndarray
    radio_idle: np.ndarray
    server_free: np.ndarray
    throttled: np.ndarray
    heat_w: np.ndarray

    @staticmethod
    def fresh(k: int, tab: KernelTables) -> "Carry":
        """Every queue empty, every radio idle, the device cool."""
        return Carry(np.zeros((k, tab.n_resources)), np.zeros((k, tab.n_radios)), np.full((k, tab.n_radios), np.inf),
                     np.zeros((k, tab.n_routes)), np.zeros(k, dtype=bool), np.zeros(k))

    def copy(self) -> "Carry":
        return Carry(*(getattr(self, f.name).copy() for f in fields(self)))

    def rows(self, idx) -> "Carry":
        return Carry(*(getattr(self, f.name)[idx] for f in fields(self)))


def local_resources(actions, runs_on=None, n_workloads: int = 1) -> tuple[np.ndarray, tuple[str, ...]]:
    """Each (workload, action)'s local resource (index, -1: none), ``(n_workloads, A)``, and the resources' names.

    An action table with ``target`` and ``kind`` columns (AutoScale) has one resource per
    local target (offloads use none); otherwise (DVFO) every action runs its local part on one
    composite resource, ``edge``. ``runs_on`` ((W, A) target names, "" for none; the
    :class:`~bench.sim.core.ActionTables` field): where each request really runs, which can
    differ by workload (a float DNN sent to the DSP runs on the GPU: it occupies the GPU). The
    names are the local actions' targets in table order (so every target keeps its resource,
    its backlog observation, even where no workload runs on it), then any other ``runs_on`` target.
    """
    if actions is not None and {"target", "kind"} <= set(actions.columns):
        local = actions["kind"].to_numpy() == "local"
        targets = [str(t) if k else "" for t, k in zip(actions["target"], local)]
        on = (np.broadcast_to(np.array(targets, dtype=object), (n_workloads, len(targets))) if runs_on is None
              else np.asarray(runs_on, dtype=object).reshape(n_workloads, len(targets)))
        names = tuple(dict.fromkeys([t for t in targets if t] + [str(t) for t in on.ravel() if t]))
        lookup = {n: i for i, n in enumerate(names)}
        idx = np.array([[lookup[str(t)] if t else -1 for t in row] for row in on], dtype=np.int64).reshape(on.shape)
        return idx, names or ("edge",)
    n = 0 if actions is None else len(actions)
    return np.zeros((n_workloads, n), dtype=np.int64), ("edge",)


def kernel_tables(t, links, routes, interference, on_timeout: str) -> KernelTables:
    """:class:`KernelTables` of an :class:`~bench.sim.core.ActionTables` ``t`` over ``links`` and ``routes``."""
    flat = lambda v: np.ascontiguousarray(v, dtype=float).ravel()  # noqa: E731
    W, A = t.pre_ms.shape
    fb = np.asarray(t.fallback, dtype=np.int64)
    rl = [links[r.radio] for r in routes]
    res, names = local_resources(t.actions, getattr(t, "runs_on", None), W)
    if res.shape != (W, A):
        res = np.zeros((W, A), dtype=np.int64)
    res = np.ascontiguousarray(res).ravel()  # flattened as the other per (workload, action) tables
    arr = lambda f: np.array([f(lk) for lk in rl], dtype=float)  # noqa: E731
    it = interference
    return KernelTables(
        W, A, flat(t.pre_ms), flat(t.pre_cpu_ms), flat(t.pre_mem_ms), flat(t.pre_gpu_ms), flat(t.par_ms),
        flat(t.par_cpu_ms), flat(t.par_mem_ms), flat(t.par_gpu_ms), flat(t.local_power_w),
        np.ascontiguousarray(t.offloads, dtype=bool).ravel(), flat(t.up_bits), flat(t.down_bits), flat(t.remote_ms),
        flat(t.remote_power_w), flat(t.accuracy), flat(t.accuracy_loss), np.asarray(t.timeout_ms, dtype=float),
        np.where(t.route < 0, 0, t.route).astype(np.int64), np.where(fb >= 0, fb, np.arange(A)), fb >= 0,
        np.asarray(t.throttle_to, dtype=np.int64), res, names,
        np.array([r.radio for r in routes], dtype=np.int64), np.array([r.rtt_ms for r in routes], dtype=float),
        arr(lambda lk: lk.rto_ms), arr(lambda lk: lk.base_mw / 1e3), arr(lambda lk: lk.uplink_mw_per_mbps / 1e3),
        arr(lambda lk: lk.downlink_mw_per_mbps / 1e3), arr(lambda lk: lk.power_max_mbps), arr(lambda lk: lk.tail_w),
        arr(lambda lk: lk.tail_ms), arr(lambda lk: lk.promotion_w), arr(lambda lk: lk.promotion_ms), len(links),
        on_timeout == "local", float(it.cpu_slowdown), float(it.mem_slowdown),
        float(getattr(it, "gpu_slowdown", 0.0)), float(it.cpu_power_w), float(it.mem_power_w))


def _local_ms(kc, km, kg, jit, pre, pre_cpu, pre_mem, pre_gpu, par, par_cpu, par_mem, par_gpu):
    """(``t_pre``, ``t_par``): the profile's local times slowed by the co-runners' load, jittered."""
    return ((pre + kc * pre_cpu + km * pre_mem + kg * pre_gpu) * jit,
            (par + kc * par_cpu + km * par_mem + kg * par_gpu) * jit)


class _NumpyOps:
    """Array operations of the kernel for numpy batches."""

    mx, mn, where, not_ = staticmethod(np.maximum), staticmethod(np.minimum), staticmethod(np.where), \
        staticmethod(np.logical_not)
    nan = np.nan
    batch = True

    # Why not np.clip / np.any: their Python-level dispatch costs more than the operation on a lock-step
    # batch of a few thousand rows; the same values (clip = min(max(v, lo), hi) for lo <= hi, NaN kept:
    # the scalar rewrite's definition too)
    @staticmethod
    def clip(v, lo, hi):
        return np.minimum(np.maximum(v, lo), hi)

    @staticmethod
    def any(v):
        return v.any()

    @staticmethod
    def div(n, d):
        with np.errstate(divide="ignore", invalid="ignore"):
            return n / d

    @staticmethod
    def select(mask):
        """The cells where ``mask`` holds (its shape, the index arrays), for :meth:`pick` and :meth:`fill`."""
        return np.shape(mask), np.nonzero(mask)

    @staticmethod
    def pick(v, sel):
        """``v`` (broadcast to the selection's shape) at the selected cells."""
        shape, idx = sel
        return (v if np.shape(v) == shape else np.broadcast_to(v, shape))[idx]

    @staticmethod
    def fill(base, sel, v):
        """A copy of ``base`` (broadcast to the selection's shape) with ``v`` at the selected cells."""
        shape, idx = sel
        out = np.empty(shape, dtype=np.result_type(base, v))
        np.copyto(out, base)  # (a broadcasting copy; np.broadcast_to's Python wrapper costs more at these sizes)
        out[idx] = v
        return out

    @staticmethod
    def take(table, i):
        """Columns ``i`` of a packed ``(F, n)`` table, one array per field (F gathers: one ``(F,) + i.shape`` take
        is no faster and, being large, costs fresh pages at every call)."""
        return [row[i] for row in table]


def _sdiv(n, d):
    return n / d if d != 0.0 else (math.inf if n > 0 else (0.0 if n == 0 else -math.inf))


class _QuietNumpyOps(_NumpyOps):
    """:class:`_NumpyOps` whose ``div`` leaves the floating-point error state to the caller: a loop that
    calls the kernel many times (:func:`run_episodes`) ignores divide and invalid once around the loop
    instead of entering ``np.errstate`` at every division (the same values)."""

    div = staticmethod(np.true_divide)


class _ScalarOps:
    """The same operations on Python scalars (the gym step: no numpy call overhead).

    :func:`request_physics` run with these is the meaning of the scalar step; the step itself runs
    :func:`scalar_request_physics`, the same source specialised to scalars (:mod:`bench.sim.specialise`).
    """

    mx, mn = staticmethod(max), staticmethod(min)
    where = staticmethod(lambda c, a, b: a if c else b)
    clip = staticmethod(lambda v, lo, hi: lo if v < lo else (hi if v > hi else v))
    not_ = staticmethod(lambda v: not v)
    div = staticmethod(_sdiv)
    nan = math.nan
    batch = False
    any = staticmethod(lambda v: v)
    take = staticmethod(lambda rows, i: rows[i])  # packed tables as lists of row tuples (scalar_tables)
    # a selection of one scalar request is the request itself
    select = staticmethod(lambda mask: None)
    pick = staticmethod(lambda v, sel: v)
    fill = staticmethod(lambda base, sel, v: v)


NUMPY_OPS, SCALAR_OPS = _NumpyOps(), _ScalarOps()
_QUIET_NUMPY_OPS = _QuietNumpyOps()


def scalar_tables(tab: KernelTables) -> SimpleNamespace:
    """``tab`` with every array as Python lists (same names), for :data:`SCALAR_OPS`.

    The packed tables (``per_wa`` ...) become lists of row tuples: ``per_wa[i]`` is request row ``i``'s constants.
    """
    def conv(v):
        if not isinstance(v, np.ndarray):
            return v
        return list(zip(*v.tolist())) if v.ndim == 2 else v.tolist()

    stab = SimpleNamespace(**{f.name: conv(getattr(tab, f.name)) for f in fields(tab)})
    # per (workload, action), index workload * A + action: the carry cells its request meets (local resource,
    # local resource when throttled, route, radio); the local resource is the workload's (where it runs)
    A = len(stab.route)
    stab.cells = [(stab.local_resource[w * A + a], stab.local_resource[w * A + stab.throttle_to[a]], stab.route[a],
                   stab.route_radio[stab.route[a]]) for w in range(tab.W) for a in range(A)]
    return stab


def _broadcaster(shape):
    def bc(v):  # an output already of the batch's shape is returned as is (no view to build)
        return v if type(v) is np.ndarray and v.shape == shape else np.broadcast_to(v, shape)
    return bc


def request_physics(tab: KernelTables, x: Mapping, a, throttled, route: Mapping, state: Mapping,
                    phases: bool = True, ops=NUMPY_OPS) -> dict:
    """One request (or a broadcastable batch of them) with action ``a``: THE physics (see the module docstring).

    ``x``: the request's inputs (``workload``, ``kc``, ``km``, ``kg``, ``p_add``, ``jit``, ``rjit``,
    ``qos_ms``, ``bound``); ``route``: ``up_phy``, ``up_good``, ``down_phy``, ``down_good``, ``rtt``,
    ``extra`` on the action's route; ``state``: what the request meets on its own resources,
    ``local_free``, ``tx_free``, ``last_end`` (the radio's last committed activity end, ``-inf``:
    none) and ``server_free`` (ms from its arrival). Every argument broadcasts (numpy).
    Returns the outcome fields, the resources' new free times (``new_local_free`` ...,
    ``new_last_end``) and, with ``phases``, the ledger's phases. ``ops``: :data:`NUMPY_OPS`
    (arrays) or :data:`SCALAR_OPS` (Python scalars, ``tab`` from :func:`scalar_tables`):
    one source for both; :func:`scalar_request_physics` is this function specialised to scalars.
    Only ``x[...]``, ``route[...]``, ``state[...]`` with constant keys and ``ops`` attributes may
    be used here (what the specialiser rewrites).
    """
    mx, mn, where, div = ops.mx, ops.mn, ops.where, ops.div
    kc, km, kg, jit, p_add = x["kc"], x["km"], x["kg"], x["jit"], x["p_add"]
    wA = x["workload"] * tab.A
    q, fb, falls_back, thr, radio, fb_thr = ops.take(tab.per_action, a)
    a_run = where(throttled, thr, a)  # thermal throttling: capped DVFS levels
    i = wA + a_run
    (pre, pre_cpu, pre_mem, pre_gpu, par, par_cpu, par_mem, par_gpu, p_local, off, bits_up, bits_down, remote_ms,
     remote_w, acc, loss, timeout) = ops.take(tab.per_wa, i)
    t_pre, t_par = _local_ms(kc, km, kg, jit, pre, pre_cpu, pre_mem, pre_gpu, par, par_cpu, par_mem, par_gpu)
    p_local = p_local + p_add
    off = off > 0.0
    dur = t_pre + t_par
    has_local = dur > 0.0
    local_start = where(has_local, mx(state["local_free"], 0.0), 0.0)
    local_end = local_start + dur
    ready = local_start + t_pre

    if ops.batch or off:  # (a scalar local request skips the radio: every term below would be zero)
        tail_ms, tail_w, promo_ms, promo_w, base_w, up_w_mbps, down_w_mbps, pmax = ops.take(tab.per_action_route, a)
        up_phy, up_good = route["up_phy"], route["up_good"]
        down_phy, down_good = route["down_phy"], route["down_good"]
        t_up = where(bits_up > 0, div(bits_up, up_good * 1e3), 0.0)  # inf on a dead link
        t_down = where(bits_down > 0, div(bits_down, down_good * 1e3), 0.0)
        duty_up = where(up_phy > 0, div(up_good, up_phy), 1.0)  # share of the transfer bursting at the PHY rate
        duty_down = where(down_phy > 0, div(down_good, down_phy), 1.0)
        deadline = ready + timeout
        up_start = mx(ready, state["tx_free"])
        conn_until = state["last_end"] + tail_ms
        promoted = up_start >= conn_until
        t_promo = promo_ms * promoted
        promo_end = up_start + t_promo
        up_end = promo_end + t_up
        reached = off & (up_end <= deadline)
        t_remote = remote_ms * x["rjit"]
        srv_start = mx(up_end, state["server_free"])
        resp = srv_start + t_remote + route["rtt"]
        off_end = resp + t_down
        timed_out = off & (off_end > deadline)
        end = where(timed_out, deadline, off_end)  # the request's radio activity stops here
        use = off & (up_start < deadline)  # it got the transmitter before giving up
        c_promo = mx(mn(promo_end, end) - up_start, 0.0) * use
        c_up = where(use, mx(mn(up_end, end) - promo_end, 0.0), 0.0)
        c_wait = where(use, mx(mn(resp, end) - up_end, 0.0), 0.0)
        c_down = where(use, mx(end - resp, 0.0), 0.0)
        burst_up = base_w + up_w_mbps * ops.clip(up_phy, 0.0, pmax) + route["extra"]
        burst_down = base_w + down_w_mbps * ops.clip(down_phy, 0.0, pmax)
        up_w = tail_w + (burst_up - tail_w) * duty_up
        down_w = tail_w + (burst_down - tail_w) * duty_down
        # connected time this request adds: from its promotion's end (a new busy period) or from where the
        # earlier requests' connected time ends, to its own last activity + the tail
        conn_start = where(promoted, up_start + c_promo, conn_until)
        conn_end = end + tail_ms
        conn_mj = where(use, tail_w * mx(conn_end - conn_start, 0.0), 0.0)
        tail_mj = where(use, tail_w * mx(conn_end - mx(conn_start, end), 0.0), 0.0)
        promo_mj = promo_w * c_promo
        radio_mj = promo_mj + conn_mj + (up_w - tail_w) * c_up + (down_w - tail_w) * c_down
    else:
        timed_out = reached = use = False
        end = up_end = srv_start = t_remote = tail_mj = promo_mj = radio_mj = 0.0
        deadline = local_end

    # a timed-out request falls back to a local action (or is dropped); the fallback does not queue
    fb_local = timed_out & (falls_back > 0)
    fi = wA + where(throttled, fb_thr, fb)
    fb_start = mx(local_end, deadline)
    f_p = tab.local_power_w[fi] + p_add
    latency = where(off, mx(local_end, end), local_end)
    if ops.any(fb_local):  # (rare) the fallback's time, for the requests that fall back only (sel)
        sel = ops.select(fb_local)
        (f_pre, f_pre_cpu, f_pre_mem, f_pre_gpu, f_par, f_par_cpu, f_par_mem, f_par_gpu, _, _, _, _, _, _, f_acc,
         f_loss, _) = ops.take(tab.per_wa, ops.pick(fi, sel))
        f_t_pre, f_t_par = _local_ms(ops.pick(kc, sel), ops.pick(km, sel), ops.pick(kg, sel), ops.pick(jit, sel),
                                     f_pre, f_pre_cpu, f_pre_mem, f_pre_gpu, f_par, f_par_cpu, f_par_mem, f_par_gpu)
        t_fb_sel = f_t_pre + f_t_par
        t_fb = ops.fill(0.0, sel, t_fb_sel)
        latency = ops.fill(latency, sel, ops.pick(fb_start, sel) + t_fb_sel)
        loss = ops.fill(loss, sel, f_loss)
        acc = ops.fill(acc, sel, f_acc)
    else:
        t_fb = 0.0
    energy = p_local * dur + radio_mj + f_p * t_fb
    remote = remote_w * t_remote * reached

    acc = where(timed_out & ops.not_(fb_local), ops.nan, acc)
    qos, bound = x["qos_ms"], x["bound"]
    ok = (latency <= qos) & (loss <= bound + 1e-12) & ops.not_(timed_out)
    violation = where(ok, 0.0, mx(latency / qos - 1.0, 0.0) + mx(loss - bound, 0.0) / mx(bound, 1e-3) + timed_out)
    if ops.batch:
        bc = _broadcaster(np.broadcast(energy, off, i).shape)  # every broadcast dim
    else:
        bc = _same
    resource = where(has_local, tab.local_resource[i], -1)  # where the request runs (its workload's)
    out = {"energy_mj": bc(energy), "remote_energy_mj": bc(remote), "latency_ms": bc(latency), "accuracy": bc(acc),
           "accuracy_loss": bc(loss), "qos_ok": bc(ok), "violation": bc(violation), "tail_mj": bc(tail_mj),
           "promo_mj": bc(promo_mj), "timed_out": bc(timed_out),
           # the resources' new free times (ms from this arrival), for the carried state
           "resource": bc(resource), "new_local_free": bc(local_end),
           "radio": bc(where(use, radio, -1)), "new_tx_free": bc(mn(up_end, end)),
           "new_last_end": bc(end), "route": bc(where(reached, q, -1)), "new_server_free": bc(srv_start + t_remote),
           "local_ms": bc(dur), "local_w": bc(p_local), "fallback_ms": bc(t_fb), "fallback_w": bc(f_p)}
    if phases:
        with np.errstate(invalid="ignore"):
            queue = local_start + where(use, up_start - ready, 0.0) + where(reached, srv_start - up_end, 0.0)
        out.update({"queue_ms": bc(queue),
                    "local_start_ms": bc(local_start), "fallback_start_ms": bc(fb_start),
                    "radio_start_ms": bc(up_start), "promo_ms": bc(c_promo), "promo_w": bc(promo_w),
                    "up_ms": bc(c_up), "up_w": bc(up_w), "wait_ms": bc(c_wait), "down_ms": bc(c_down),
                    "down_w": bc(down_w), "radio_end_ms": bc(where(use, end, ops.nan)), "tail_w": bc(tail_w * use),
                    "tail_ms": bc(tail_ms * use), "local_resource": out["resource"]})
    return out


def _same(v):
    return v


_X_KEYS = ("workload", "kc", "km", "kg", "p_add", "jit", "rjit", "qos_ms", "bound")
_ROUTE_KEYS = ("up_phy", "up_good", "down_phy", "down_good", "rtt", "extra")
_STATE_KEYS = ("local_free", "tx_free", "last_end", "server_free")


def gather_route(x: RequestInputs, rows, q) -> dict:
    """The route arrays of ``x`` at (rows, route ``q``)."""
    return {k: getattr(x, k)[rows, q] for k in _ROUTE_KEYS}


def gather_state(tab: KernelTables, carry: Carry, rows, a, throttled, workload) -> dict:
    """What requests of ``workload`` at ``rows`` of ``carry`` meet on the resources action ``a`` uses (the local
    resource is where the workload runs under that action: :attr:`KernelTables.local_resource`)."""
    a_run = np.where(throttled, tab.throttle_to[a], a)
    res = np.maximum(tab.local_resource[np.asarray(workload) * tab.A + a_run], 0)
    q = tab.route[a]
    r = tab.route_radio[q]
    return {"local_free": carry.local_free[rows, res], "tx_free": carry.tx_free[rows, r],
            "last_end": -carry.radio_idle[rows, r], "server_free": carry.server_free[rows, q]}


def _put(flat: np.ndarray, idx, keep, new) -> None:
    """``flat[idx] = new`` where ``keep`` is False, in place (one index per row: no two rows write one cell)."""
    old = flat[idx]
    flat[idx] = np.where(keep, old, new)


def _advance_into(c: Carry, out: Mapping, ia, live, thermal, old: Mapping | None = None, idx=None,
                  decay=None) -> None:
    """:func:`advance` in place on ``c`` (C-contiguous arrays). ``old``/``idx``: what the rows' requests met
    (:func:`gather_state`) and the flat cells it came from, when the caller has them (saves the gathers).
    ``decay``: the thermal filter's ``(exp(-ia / tau), 1 - exp(-ia / tau))`` when the caller has them
    (they depend on the arrivals only: :func:`run_episodes` computes them once for all its steps)."""
    k = len(c.heat_w)
    if idx is None:
        rows = np.arange(k)
        idx = (rows * c.local_free.shape[1] + np.maximum(out["resource"], 0),
               rows * c.tx_free.shape[1] + np.maximum(out["radio"], 0),
               rows * c.server_free.shape[1] + np.maximum(out["route"], 0))
    i_lf, i_tx, i_srv = idx
    lf, tx, idle, srv = (v.reshape(-1) for v in (c.local_free, c.tx_free, c.radio_idle, c.server_free))
    m_lf, m_tx, m_srv = out["resource"] < 0, out["radio"] < 0, out["route"] < 0  # rows that leave the cell as is
    if live is not None:
        dead = ~live
        m_lf, m_tx, m_srv = m_lf | dead, m_tx | dead, m_srv | dead
    if old is None:
        _put(lf, i_lf, m_lf, out["new_local_free"])
        _put(tx, i_tx, m_tx, np.maximum(tx[i_tx], out["new_tx_free"]))
        _put(idle, i_tx, m_tx, np.minimum(idle[i_tx], -out["new_last_end"]))
        _put(srv, i_srv, m_srv, out["new_server_free"])
    else:  # the cells still hold what the request met
        lf[i_lf] = np.where(m_lf, old["local_free"], out["new_local_free"])
        tx[i_tx] = np.where(m_tx, old["tx_free"], np.maximum(old["tx_free"], out["new_tx_free"]))
        idle_old = -old["last_end"]
        idle[i_tx] = np.where(m_tx, idle_old, np.minimum(idle_old, -out["new_last_end"]))
        srv[i_srv] = np.where(m_srv, old["server_free"], out["new_server_free"])
    shift = ia if live is None else np.where(live, ia, 0.0)
    if np.ndim(shift):  # one shift per row (a scalar broadcasts as it is)
        shift = (shift if np.shape(shift) == (k,) else np.broadcast_to(shift, (k,)))[:, None]
    c.local_free -= shift
    c.tx_free -= shift
    c.radio_idle += shift
    c.server_free -= shift
    if thermal is not None:
        tau_ms, trip, release = thermal
        power = (out["local_w"] * out["local_ms"] + out["fallback_w"] * out["fallback_ms"]) / ia
        if decay is None:
            kk = np.exp(-ia / tau_ms)
            decay = kk, 1.0 - kk
        kk, rest = decay
        h = c.heat_w * kk + power * rest
        hot = np.where(c.throttled, h >= release, h > trip)
        if live is None:
            c.heat_w[:], c.throttled[:] = h, hot
        else:
            c.heat_w[:], c.throttled[:] = np.where(live, h, c.heat_w), np.where(live, hot, c.throttled)


def advance(carry: Carry, out: Mapping, ia, live=None, thermal=None) -> Carry:
    """The carry after each row's request (``out`` one request per row) and ``ia`` ms to the next arrival.

    ``live`` (K,) bool: rows that stepped (others keep their state). ``thermal``:
    (tau_ms, trip_w, release_w) or None. ``carry`` is left as it was.
    """
    c = carry.copy()
    _advance_into(c, out, np.asarray(ia, dtype=float), None if live is None else np.asarray(live, dtype=bool),
                  thermal)
    return c


def step_rows(tab: KernelTables, x: RequestInputs, t, actions, carry: Carry, phases: bool = False) -> dict:
    """Request ``t[k]`` of row k's episode (rows of ``x``) with ``actions[k]``, from ``carry``'s row k."""
    k = len(actions)
    rows = np.arange(k)
    q = tab.route[actions]
    xr = {n: getattr(x, n)[t] for n in _X_KEYS}
    rt = {n: getattr(x, n)[t, q] for n in _ROUTE_KEYS}
    st = gather_state(tab, carry, rows, actions, carry.throttled, xr["workload"])
    return request_physics(tab, xr, actions, carry.throttled, rt, st, phases=phases)


#: the outcome arrays run_episodes returns
EPISODE_KEYS = _EPISODE_KEYS = ("energy_mj", "remote_energy_mj", "latency_ms", "qos_ok", "violation", "timed_out", "accuracy",
                 "accuracy_loss", "tail_mj", "promo_mj")


def run_episodes(tab: KernelTables, x: RequestInputs, actions: np.ndarray, thermal=None,
                 carry: Carry | None = None, out: Mapping[str, np.ndarray] | None = None) -> dict:
    """K sequences of T requests in lock-step: ``actions`` (T, K); ``x`` holds T requests (shared by the
    K sequences) or T*K rows laid out (T, K) (one episode per column). Returns outcome arrays (T, K)
    (written into ``out``'s arrays when given, e.g. views of a longer run) and the final ``carry``.

    The physics is :func:`request_physics`'s, one numpy call per operation for the K requests of a
    step; what does not depend on the carried state (the route's inputs, which cells of the carry each
    action uses) is gathered once for all T steps, and the carry is updated in place.
    """
    acts = np.asarray(actions, dtype=np.int64)
    n_t, k = acts.shape
    per_col = len(x) == n_t * k
    carry = Carry.fresh(k, tab) if carry is None else carry.copy()
    res = dict(out) if out is not None else {
        key: np.empty((n_t, k), dtype=bool if key in ("qos_ok", "timed_out") else float) for key in _EPISODE_KEYS}
    cols = np.arange(k)
    n_q, n_r, n_l = tab.n_routes, tab.n_radios, tab.n_resources
    # per (step, episode): the request's row of x, its route and radio, and the flat carry cells they use
    xrow = (np.arange(n_t)[:, None] * k + cols) if per_col else np.broadcast_to(np.arange(n_t)[:, None], (n_t, k))
    q_all = tab.route[acts]
    if x.up_phy.ndim == 1:  # already on each request's route (request_inputs(..., route=)), laid out (T, K)
        if not per_col:
            raise ValueError("route inputs computed per row need one row of x per (step, episode)")
        route_all = {n: getattr(x, n).reshape(n_t, k) for n in _ROUTE_KEYS}
    else:
        route_all = {n: getattr(x, n)[xrow, q_all] for n in _ROUTE_KEYS}
    i_tx_all = cols * n_r + tab.route_radio[q_all]
    i_srv_all = cols * n_q + q_all
    wa_all = x.workload[xrow] * tab.A  # each request's row of the per (workload, action) tables
    i_lf_all = cols * n_l + np.maximum(tab.local_resource[wa_all + acts], 0)  # unthrottled; redone for throttled rows
    lf, tx, idle, srv = (v.reshape(-1) for v in (carry.local_free, carry.tx_free, carry.radio_idle, carry.server_free))
    with np.errstate(divide="ignore", invalid="ignore"):  # once for the loop (what NUMPY_OPS.div does per call)
        _lockstep_loop(tab, x, acts, thermal, carry, res, per_col, route_all, (i_lf_all, i_tx_all, i_srv_all),
                       (lf, tx, idle, srv))
    res["carry"] = carry
    return res


def _lockstep_loop(tab, x, acts, thermal, carry, res, per_col, route_all, cells, flat):
    """:func:`run_episodes`'s loop over the T steps (the carry's flat views ``flat`` updated in place)."""
    n_t, k = acts.shape
    cols = np.arange(k)
    n_l = tab.n_resources
    i_lf_all, i_tx_all, i_srv_all = cells
    lf, tx, idle, srv = flat
    if thermal is not None:  # the thermal filter's decay over each gap: arrivals only, so once for every step
        kk_all = np.exp(-x.interarrival_ms / thermal[0])
        rest_all = 1.0 - kk_all
    for s in range(n_t):
        t = slice(s * k, (s + 1) * k) if per_col else s
        a = acts[s]
        hot = carry.throttled
        i_lf, i_tx, i_srv = i_lf_all[s], i_tx_all[s], i_srv_all[s]
        if hot.any():
            i_lf = cols * n_l + np.maximum(tab.local_resource[x.workload[t] * tab.A
                                                              + np.where(hot, tab.throttle_to[a], a)], 0)
        state = {"local_free": lf[i_lf], "tx_free": tx[i_tx], "last_end": -idle[i_tx], "server_free": srv[i_srv]}
        xr = {n: getattr(x, n)[t] for n in _X_KEYS}
        o = request_physics(tab, xr, a, hot, {n: v[s] for n, v in route_all.items()}, state, phases=False,
                            ops=_QUIET_NUMPY_OPS)
        for key in _EPISODE_KEYS:
            res[key][s] = o[key]
        _advance_into(carry, o, x.interarrival_ms[t], None, thermal, old=state, idx=(i_lf, i_tx, i_srv),
                      decay=None if thermal is None else (kk_all[t], rest_all[t]))


# --------------------------------------------------------------------------- the scalar step (gym envs)

@functools.cache
def scalar_request_physics() -> Callable:
    """:func:`request_physics` specialised to Python scalars (:mod:`bench.sim.specialise`; built at first use).

    Signature ``(tab, a, throttled, x_workload, ..., x_bound, route_up_phy, ..., route_extra,
    state_local_free, ..., state_server_free)`` (keys in the order of ``_X_KEYS``, ``_ROUTE_KEYS``,
    ``_STATE_KEYS``), ``tab`` from :func:`scalar_tables`; returns the outcome dict without the phases.
    """
    from bench.sim.specialise import specialise_scalar

    return specialise_scalar(request_physics, {"x": _X_KEYS, "route": _ROUTE_KEYS, "state": _STATE_KEYS},
                             {**globals(), "mx": max, "mn": min, "div": _sdiv}, constants={"phases": False})


@functools.cache
def _carry_shift(n_local: int, n_radios: int, n_routes: int) -> Callable:
    """``(local_free, tx_free, radio_idle, server_free, ia)`` -> new lists, every free time ``v - ia`` and every radio's
    idle time ``v + ia`` (:func:`advance`'s shift to the next arrival), written out for these lengths: one call
    instead of four list comprehensions, each of which costs a frame more than its one to three subtractions (the
    scalar step's largest cost after the physics; the same operations, so the same numbers)."""
    def items(name, n, op):
        return "[" + ", ".join(f"{name}[{i}] {op} ia" for i in range(n)) + "]"

    src = (f"def shift(lf, tx, idle, srv, ia):\n    return ({items('lf', n_local, '-')}, {items('tx', n_radios, '-')}, "
           f"{items('idle', n_radios, '+')}, {items('srv', n_routes, '-')})\n")
    space: dict = {}
    exec(compile(src, f"<carry shift {n_local}/{n_radios}/{n_routes}>", "exec"), space)  # noqa: S102 (our own source)
    return space["shift"]


class ScalarEpisode:
    """One episode's :class:`RequestInputs` as Python lists and the carried state as lists (one sequence).

    :meth:`step` runs :func:`request_physics` specialised to scalars (:func:`scalar_request_physics`:
    the same source as the batch paths) and moves the carry on exactly as :func:`advance` does. The
    carry's lists are replaced, never mutated, at each step, so :meth:`snapshot`'s are safe to keep.
    """

    def __init__(self, tab: KernelTables, stab: SimpleNamespace, x: RequestInputs, thermal=None):
        self.tab, self.stab, self.thermal = tab, stab, thermal
        self.x = {k: getattr(x, k).tolist() for k in _X_KEYS}
        self._x_rows = list(zip(*self.x.values()))  # per request: its inputs, in the specialised signature's order
        self._route_rows = np.stack([getattr(x, k) for k in _ROUTE_KEYS], axis=-1).tolist()  # [t][route][key]
        self.interarrival = x.interarrival_ms.tolist()
        self._physics = scalar_request_physics()
        self._cells = stab.cells  # per workload * A + action
        self._wA = [w * tab.A for w in self.x["workload"]]  # per request: its row of the cells
        st = stab
        self._shift = _carry_shift(len(st.resource_names), st.n_radios, len(st.route_radio))
        if thermal is not None:  # the thermal filter's decay over each gap depends on the arrivals only
            tau_ms = thermal[0]
            self._decay = [math.exp(-ia / tau_ms) for ia in self.interarrival]
        self.reset()

    def reset(self) -> None:
        st = self.stab
        self.local_free = [0.0] * len(st.resource_names)
        self.tx_free = [0.0] * st.n_radios
        self.radio_idle = [math.inf] * st.n_radios
        self.server_free = [0.0] * len(st.route_radio)
        self.throttled, self.heat_w = False, 0.0

    def carry(self) -> Carry:
        """The carried state as a one-row :class:`Carry`."""
        return Carry(np.array([self.local_free]), np.array([self.tx_free]), np.array([self.radio_idle]),
                     np.array([self.server_free]), np.array([self.throttled]), np.array([self.heat_w]))

    def snapshot(self) -> tuple:
        """The carried state now: (local_free, tx_free, radio_idle, server_free, throttled); lists never mutated."""
        return self.local_free, self.tx_free, self.radio_idle, self.server_free, self.throttled

    def step(self, t: int, a: int) -> dict:
        """Request ``t`` with action ``a`` from the carried state (the outcome dict, no phases); the carry moves on."""
        hot = self.throttled
        res, res_hot, q, r = self._cells[self._wA[t] + a]
        if hot:
            res = res_hot
        lf, tx, idle, srv = self.local_free, self.tx_free, self.radio_idle, self.server_free
        out = self._physics(self.stab, a, hot, *self._x_rows[t], *self._route_rows[t][q], lf[res if res >= 0 else 0],
                            tx[r], -idle[r], srv[q])
        # advance() in scalars, into new lists: the resources this request used, everything shifted to the next
        # arrival (v - ia, as advance() computes it)
        ia = self.interarrival[t]
        new_lf, new_tx, new_idle, new_srv = self._shift(lf, tx, idle, srv, ia)
        used = out["resource"]
        if used >= 0:
            new_lf[used] = out["new_local_free"] - ia
        used = out["radio"]
        if used >= 0:
            new_tx[used] = max(tx[used], out["new_tx_free"]) - ia
            new_idle[used] = min(idle[used], -out["new_last_end"]) + ia
        used = out["route"]
        if used >= 0:
            new_srv[used] = out["new_server_free"] - ia
        self.local_free, self.tx_free, self.radio_idle, self.server_free = new_lf, new_tx, new_idle, new_srv
        if self.thermal is not None:
            _, trip, release = self.thermal
            power = (out["local_w"] * out["local_ms"] + out["fallback_w"] * out["fallback_ms"]) / ia
            k = self._decay[t]
            self.heat_w = self.heat_w * k + power * (1.0 - k)
            self.throttled = (self.heat_w >= release) if hot else (self.heat_w > trip)
        return out
