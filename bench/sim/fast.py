"""The cheap single step: one request through the simulator in Python scalars.

:meth:`bench.sim.core.Simulator.evaluate` is built for batches: pushing one
request through it costs ~150 µs of numpy call overhead, which dominated
training time. A gym step needs one (request, action) pair, so this module
evaluates exactly the same model with plain Python floats:

* :class:`ScalarTables` - the simulator's per-(workload, action) tables and
  per-route radio constants as flat Python lists, built once per simulator
  (``index = workload * A + action``, like the batch path);
* :class:`EpisodeKernel` - at ``reset``, everything about a request that does
  not depend on the policy's earlier actions (realised link goodput and RTT
  per route with the request's draws, interference factors, jitter) is computed
  for the whole episode in a few vectorised numpy calls and kept as lists;
  :meth:`EpisodeKernel.outcome` then evaluates one (step, action) given the
  carried state (each radio's quiet time, thermal throttling) in ~50 float
  operations.

The arithmetic follows :meth:`Simulator.evaluate` operation by operation
(same order, IEEE doubles), so results agree with the batch path to rounding;
``tests/sim/test_fast.py`` checks that to 1e-9 relative over whole scenarios
with random actions, radio tails, promotions and timeouts included. A change to
the batch model must be mirrored here - that test fails otherwise.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from bench.sim.core import Draws, Simulator, States

_INF = math.inf


class ScalarOutcome(NamedTuple):
    """One request's outcome (the fields of :class:`bench.sim.core.Outcome` a step needs)."""

    energy_mj: float
    remote_energy_mj: float
    latency_ms: float
    accuracy: float
    accuracy_loss: float
    qos_ok: bool
    violation: float
    tail_mj: float
    promo_mj: float
    timed_out: bool
    local_ms: float
    local_w: float
    fallback_ms: float
    fallback_w: float
    radio: int  # -1: no offload
    radio_end_ms: float  # nan without offload
    tail_ms: float


class ScalarTables:
    """A simulator's tables as Python lists (built once per simulator; see :func:`scalar_tables`)."""

    def __init__(self, sim: Simulator):
        tl = lambda x: np.asarray(x).tolist()  # noqa: E731
        self.A = int(sim.A)
        self.pre, self.pre_cpu, self.pre_mem, self.pre_gpu = tl(sim._pre), tl(sim._pre_cpu), tl(sim._pre_mem), tl(sim._pre_gpu)
        self.par, self.par_cpu, self.par_mem, self.par_gpu = tl(sim._par), tl(sim._par_cpu), tl(sim._par_mem), tl(sim._par_gpu)
        self.p_local, self.off = tl(sim._p_local), tl(sim._off)
        self.up_bits, self.down_bits = tl(sim._up_bits), tl(sim._down_bits)
        self.remote_ms, self.remote_p = tl(sim._remote_ms), tl(sim._remote_p)
        self.acc, self.loss = tl(sim._acc), tl(sim._loss)
        self.timeout = tl(sim._timeout)
        self.has_fb, self.fb, self.throttle_to = tl(sim._has_fb), tl(sim._fb), tl(sim._throttle_to)
        self.route = tl(sim._route)
        self.route_radio = tl(sim._route_radio)
        self.tail_ms, self.tail_w = tl(sim._tail_ms), tl(sim._tail_w)
        self.promo_ms, self.promo_w = tl(sim._promo_ms), tl(sim._promo_w)
        self.base_w, self.au_w, self.ad_w, self.pmax = tl(sim._base_w), tl(sim._au_w), tl(sim._ad_w), tl(sim._pmax)
        self.fb_local = sim.on_timeout == "local"
        it = sim.interference
        self.cpu_slowdown, self.mem_slowdown = float(it.cpu_slowdown), float(it.mem_slowdown)
        self.gpu_slowdown = float(getattr(it, "gpu_slowdown", 0.0))
        self.cpu_power_w, self.mem_power_w = float(it.cpu_power_w), float(it.mem_power_w)
        th = sim.thermal
        self.thermal = None if th is None else (float(th.time_constant_s) * 1e3, float(th.trip_power_w),
                                                float(th.release_fraction) * float(th.trip_power_w))


def scalar_tables(sim: Simulator) -> ScalarTables:
    """The simulator's :class:`ScalarTables`, cached on it (the tables are immutable)."""
    st = getattr(sim, "_scalar_tables", None)
    if st is None:
        st = ScalarTables(sim)
        sim._scalar_tables = st
    return st


def route_link_arrays(sim: Simulator, states: States, draws: Draws) -> dict[str, np.ndarray]:
    """Per request and route (N, Q): realised up/down goodput, RTT (with any RTO) and weak-signal power."""
    ls = sim.link_state(states)
    radio = sim._route_radio
    cap = states.cap_mbps[:, None]
    return {"up": np.minimum(ls["up_mbps"][:, radio] * draws.up_factor[:, radio], cap),
            "down": np.minimum(ls["down_mbps"][:, radio] * draws.down_factor[:, radio], cap),
            "rtt": sim._route_rtt * draws.rtt_factor[:, radio] + sim._rto * (draws.loss_u[:, radio] < ls["loss"][:, radio]),
            "extra": ls["weak_extra_w"][:, radio]}


class EpisodeKernel:
    """One episode's policy-independent per-request quantities, and the scalar step over them."""

    #: requests converted to Python scalars at a time (an episode cut short by a TimeLimit converts few)
    CHUNK = 256

    def __init__(self, sim: Simulator, states: States, draws: Draws):
        self.tab = tab = scalar_tables(sim)
        r = route_link_arrays(sim, states, draws)
        self.Q = r["up"].shape[1]
        self._arrays = {
            "up": r["up"].ravel(), "down": r["down"].ravel(), "rtt": r["rtt"].ravel(), "extra": r["extra"].ravel(),
            "kc": tab.cpu_slowdown * states.cpu_load, "km": tab.mem_slowdown * states.mem_load,
            "kg": tab.gpu_slowdown * states.gpu_load,
            "p_add": tab.cpu_power_w * states.cpu_load + tab.mem_power_w * states.mem_load,
            "jit": draws.local_factor, "rjit": draws.remote_factor, "wA": states.workload * tab.A,
            "workload": states.workload, "qos": states.qos_ms, "bound": states.max_accuracy_loss,
            "interarrival": states.interarrival_ms}
        self.n = len(states)
        for k in self._arrays:
            setattr(self, k, [])
        self.ready = 0
        self.grow(0)

    def grow(self, t: int) -> None:
        """Convert requests up to at least ``t`` (chunks of :attr:`CHUNK`) to Python lists."""
        while self.ready <= t and self.ready < self.n:
            a, b = self.ready, min(self.ready + self.CHUNK, self.n)
            for k, arr in self._arrays.items():
                per = self.Q if k in ("up", "down", "rtt", "extra") else 1
                getattr(self, k).extend(arr[a * per:b * per].tolist())
            self.ready = b

    def _local(self, t: int, i: int, jit: float) -> tuple[float, float, float]:
        tab = self.tab
        kc, km, kg = self.kc[t], self.km[t], self.kg[t]
        t_pre = (tab.pre[i] + kc * tab.pre_cpu[i] + km * tab.pre_mem[i] + kg * tab.pre_gpu[i]) * jit
        t_par = (tab.par[i] + kc * tab.par_cpu[i] + km * tab.par_mem[i] + kg * tab.par_gpu[i]) * jit
        return t_pre, t_par, tab.p_local[i] + self.p_add[t]

    def outcome(self, t: int, a: int, idle: list, throttled: bool) -> ScalarOutcome:
        """Request ``t`` run with action ``a``; ``idle`` is each radio's quiet time (ms) when it arrives.

        (Conditional expressions stand in for ``min``/``max``: same values, a third of the cost.)
        """
        tab = self.tab
        if t >= self.ready:
            self.grow(t)
        wA = self.wA[t]
        i = wA + (tab.throttle_to[a] if throttled else a)
        jit = self.jit[t]
        kc, km, kg = self.kc[t], self.km[t], self.kg[t]
        t_pre = (tab.pre[i] + kc * tab.pre_cpu[i] + km * tab.pre_mem[i] + kg * tab.pre_gpu[i]) * jit
        t_par = (tab.par[i] + kc * tab.par_cpu[i] + km * tab.par_mem[i] + kg * tab.par_gpu[i]) * jit
        p_local = tab.p_local[i] + self.p_add[t]
        loss, acc = tab.loss[i], tab.acc[i]
        energy = p_local * (t_pre + t_par)
        if not tab.off[i]:
            remote, tail_mj, promo_mj, timed_out, t_fb, f_p = 0.0, 0.0, 0.0, False, 0.0, 0.0
            radio, radio_end, tail_ms = -1, math.nan, 0.0
            latency = t_pre + (t_par if t_par > 0.0 else 0.0)
        else:
            q = tab.route[a]
            radio = tab.route_radio[q]
            tq = t * self.Q + q
            up, down = self.up[tq], self.down[tq]
            bu, bd = tab.up_bits[i], tab.down_bits[i]
            t_up = (bu / (up * 1e3) if up > 0 else _INF) if bu > 0 else 0.0
            t_down = (bd / (down * 1e3) if down > 0 else _INF) if bd > 0 else 0.0
            gap = idle[radio] + t_pre
            if gap < 0.0:
                gap = 0.0
            tail_ms, tail_w = tab.tail_ms[q], tab.tail_w[q]
            t_promo = tab.promo_ms[q] if gap >= tail_ms else 0.0
            t_remote = tab.remote_ms[i] * self.rjit[t]
            t_wait = self.rtt[tq] + t_remote
            t_off = t_promo + t_up + t_wait + t_down
            timeout = tab.timeout[self.workload[t]]
            timed_out = t_off > timeout
            budget = timeout if timed_out else t_off
            c_promo = t_promo if t_promo < budget else budget
            rem = budget - c_promo
            c_up = t_up if t_up < rem else rem
            rem = rem - c_up
            c_wait = t_wait if t_wait < rem else rem
            rem = rem - c_wait
            c_down = t_down if t_down < rem else rem
            pmax = tab.pmax[q]
            up_c = 0.0 if up < 0.0 else (pmax if up > pmax else up)
            down_c = 0.0 if down < 0.0 else (pmax if down > pmax else down)
            up_w = tab.base_w[q] + tab.au_w[q] * up_c + self.extra[tq]
            down_w = tab.base_w[q] + tab.ad_w[q] * down_c
            cut = tail_ms - gap
            credit = tail_w * (cut if cut > 0.0 else 0.0)
            tail_mj = tail_w * tail_ms - credit
            promo_mj = tab.promo_w[q] * c_promo
            radio_mj = promo_mj + up_w * c_up + tail_w * c_wait + down_w * c_down + tail_mj
            t_fb, f_p = 0.0, 0.0
            if timed_out and tab.fb_local and tab.has_fb[a]:
                fa = tab.fb[a]
                fi = wA + (tab.throttle_to[fa] if throttled else fa)
                f_pre, f_par, f_p = self._local(t, fi, jit)
                t_fb = f_pre + f_par
                loss, acc = tab.loss[fi], tab.acc[fi]
            elif timed_out:
                acc = math.nan  # dropped
            latency = t_pre + (t_par if t_par > budget else budget) + t_fb
            energy = energy + radio_mj + f_p * t_fb
            left = budget - c_promo - c_up
            if left < 0.0:
                left = 0.0
            remote = tab.remote_p[i] * (t_remote if t_remote < left else left)
            radio_end = t_pre + budget
        qos = self.qos[t]
        bound = self.bound[t]
        ok = latency <= qos and loss <= bound + 1e-12 and not timed_out
        if ok:
            violation = 0.0
        else:
            lat_x = latency / qos - 1.0
            acc_x = loss - bound
            violation = ((lat_x if lat_x > 0.0 else 0.0) + (acc_x if acc_x > 0.0 else 0.0)
                         / (bound if bound > 1e-3 else 1e-3) + float(timed_out))
        return ScalarOutcome(energy, remote, latency, acc, loss, ok, violation, tail_mj, promo_mj, timed_out,
                             t_pre + t_par, p_local, t_fb, f_p, radio, radio_end, tail_ms)

    def thermal_step(self, heat_w: float, throttled: bool, out: ScalarOutcome, dt_ms: float) -> tuple[float, bool]:
        """:meth:`bench.sim.core.ThermalModel.step` in scalars (same formula)."""
        tau_ms, trip, release = self.tab.thermal
        k = math.exp(-dt_ms / tau_ms)
        power_w = (out.local_w * out.local_ms + out.fallback_w * out.fallback_ms) / dt_ms
        heat = heat_w * k + power_w * (1.0 - k)
        return heat, (heat >= release) if throttled else (heat > trip)


# --------------------------------------------------------------------------- the lean batch path

class BatchOutcome(NamedTuple):
    """Outcomes of N (request, action) pairs: the arrays a step and the radio/thermal state need."""

    energy_mj: np.ndarray
    remote_energy_mj: np.ndarray
    latency_ms: np.ndarray
    accuracy: np.ndarray
    accuracy_loss: np.ndarray
    qos_ok: np.ndarray
    violation: np.ndarray
    tail_mj: np.ndarray
    promo_mj: np.ndarray
    timed_out: np.ndarray
    local_ms: np.ndarray
    local_w: np.ndarray
    fallback_ms: np.ndarray
    fallback_w: np.ndarray
    radio: np.ndarray  # -1: no offload
    radio_end_ms: np.ndarray  # nan without offload


def lean_outcome(sim: Simulator, route: dict[str, np.ndarray], workload: np.ndarray, kc: np.ndarray,
                 km: np.ndarray, kg: np.ndarray, p_add: np.ndarray, jit: np.ndarray, rjit: np.ndarray,
                 qos_ms: np.ndarray, bound: np.ndarray, radio_idle_ms: np.ndarray, throttled: np.ndarray,
                 actions: np.ndarray) -> BatchOutcome:
    """:meth:`Simulator.evaluate` for one action per request, without the per-phase ledger arrays.

    ``route`` holds the per-request route arrays of :func:`route_link_arrays` (N, Q); the other
    per-request inputs are the interference factors, jitters and QoS bounds (N,) and the carried
    state. Same operations in the same order as the batch path (checked to 1e-9 by the tests).
    """
    n = len(actions)
    a = actions
    q = sim._route[a]
    a_run = np.where(throttled, sim._throttle_to[a], a)
    wA = workload * sim.A
    idx = wA + a_run
    rows = np.arange(n)
    up, down, rtt, extra = route["up"][rows, q], route["down"][rows, q], route["rtt"][rows, q], route["extra"][rows, q]
    radio = sim._route_radio[q]
    idle = radio_idle_ms[rows, radio]

    def local(i):
        t_pre = (sim._pre[i] + kc * sim._pre_cpu[i] + km * sim._pre_mem[i] + kg * sim._pre_gpu[i]) * jit
        t_par = (sim._par[i] + kc * sim._par_cpu[i] + km * sim._par_mem[i] + kg * sim._par_gpu[i]) * jit
        return t_pre, t_par, sim._p_local[i] + p_add

    t_pre, t_par, p_local = local(idx)
    off = sim._off[idx]
    bits_up, bits_down = sim._up_bits[idx], sim._down_bits[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_up = np.where(bits_up > 0, bits_up / (up * 1e3), 0.0)
        t_down = np.where(bits_down > 0, bits_down / (down * 1e3), 0.0)
    gap = np.maximum(idle + t_pre, 0.0)
    tail_ms, tail_w = sim._tail_ms[q], sim._tail_w[q]
    t_promo = sim._promo_ms[q] * (gap >= tail_ms)
    t_remote = sim._remote_ms[idx] * rjit
    t_wait = rtt + t_remote
    t_off = t_promo + t_up + t_wait + t_down
    timeout = sim._timeout[workload]
    timed_out = off & (t_off > timeout)
    budget = np.where(timed_out, timeout, t_off) * off
    c_promo = np.minimum(t_promo, budget)
    rem = budget - c_promo
    c_up = np.minimum(t_up, rem)
    rem = rem - c_up
    c_wait = np.minimum(t_wait, rem)
    rem = rem - c_wait
    c_down = np.minimum(t_down, rem)
    base, pmax = sim._base_w[q], sim._pmax[q]
    up_w = base + sim._au_w[q] * np.clip(up, 0.0, pmax) + extra
    down_w = base + sim._ad_w[q] * np.clip(down, 0.0, pmax)
    credit = tail_w * np.maximum(tail_ms - gap, 0.0) * off
    tail_mj = tail_w * tail_ms * off - credit
    promo_mj = sim._promo_w[q] * c_promo
    radio_mj = promo_mj + up_w * c_up + tail_w * c_wait + down_w * c_down + tail_mj
    fb_local = timed_out & (sim.on_timeout == "local") & sim._has_fb[a]
    fb = sim._fb[a]
    fidx = wA + np.where(throttled, sim._throttle_to[fb], fb)
    if fb_local.any():
        f_pre, f_par, f_p = local(fidx)
        t_fb = (f_pre + f_par) * fb_local
    else:
        f_p, t_fb = sim._p_local[fidx] + p_add, np.zeros(n)
    t_off_eff = budget
    latency = t_pre + np.maximum(t_par, t_off_eff) + t_fb
    energy = p_local * (t_pre + t_par) + radio_mj + f_p * t_fb
    remote = sim._remote_p[idx] * np.minimum(t_remote, np.maximum(budget - c_promo - c_up, 0.0)) * off
    loss = np.where(fb_local, sim._loss[fidx], sim._loss[idx])
    acc = np.where(fb_local, sim._acc[fidx], sim._acc[idx])
    acc = np.where(timed_out & ~fb_local, np.nan, acc)
    ok = (latency <= qos_ms) & (loss <= bound + 1e-12) & ~timed_out
    violation = np.where(ok, 0.0, np.maximum(latency / qos_ms - 1.0, 0.0)
                         + np.maximum(loss - bound, 0.0) / np.maximum(bound, 1e-3) + timed_out)
    return BatchOutcome(energy, remote, latency, acc, loss, ok, violation, tail_mj, promo_mj, timed_out,
                        t_pre + t_par, p_local, t_fb, f_p, np.where(off, radio, -1),
                        np.where(off, t_pre + budget, np.nan))


def request_inputs(sim: Simulator, states: States, draws: Draws) -> dict[str, np.ndarray]:
    """The per-request inputs of :func:`lean_outcome` (route arrays flattened to (N, Q) keys)."""
    st = scalar_tables(sim)
    r = route_link_arrays(sim, states, draws)
    return {"up": r["up"], "down": r["down"], "rtt": r["rtt"], "extra": r["extra"],
            "workload": states.workload, "kc": st.cpu_slowdown * states.cpu_load,
            "km": st.mem_slowdown * states.mem_load, "kg": st.gpu_slowdown * states.gpu_load,
            "p_add": st.cpu_power_w * states.cpu_load + st.mem_power_w * states.mem_load,
            "jit": draws.local_factor, "rjit": draws.remote_factor, "qos_ms": states.qos_ms,
            "bound": states.max_accuracy_loss, "interarrival_ms": states.interarrival_ms}


def evaluate_lean(sim: Simulator, states: States, actions: np.ndarray, draws: Draws,
                  chunk: int = 4096) -> BatchOutcome:
    """One action per request through :func:`lean_outcome`, in cache-sized chunks (the throughput path)."""
    n = len(states)
    parts = []
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        sl = slice(s, e)
        st = states.take(sl)
        d = draws.take(sl)
        x = request_inputs(sim, st, d)
        parts.append(lean_outcome(sim, {k: x[k] for k in ("up", "down", "rtt", "extra")}, x["workload"], x["kc"],
                                  x["km"], x["kg"], x["p_add"], x["jit"], x["rjit"], x["qos_ms"], x["bound"],
                                  st.radio_idle_ms, st.throttled, actions[sl]))
    if len(parts) == 1:
        return parts[0]
    return BatchOutcome(*(np.concatenate(f) for f in zip(*parts)))
