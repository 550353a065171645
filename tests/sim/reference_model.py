"""An independent, slow, obviously-correct discrete-event model of the simulator's world (tests only).

A plain ``heapq`` event loop over arrivals, local starts and ends, hand-offs to the
network stack, transmitter starts, promotion ends, upload ends, server starts and
ends, responses, download ends, timeouts and radio tail expiries. Resources are
objects with FIFO queues; the radio is a state machine (idle -> promoting ->
connected -> idle after ``tail_ms`` without a user). The device's power is a
function of the state at each instant (running local jobs and fallbacks; per
radio: promotion power, or the connected power plus the power of each active
transfer above it); energy is its integral over time. It shares nothing with
:mod:`bench.sim.kernel` but the inputs: the action tables (:class:`ActionTables`),
the link constants and the realised per-request draws
(:meth:`Simulator.request_inputs`). Thermal throttling is not modelled (run it on
simulators built with ``thermal=None``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Req:
    k: int
    arrival: float
    action: int
    local_end: float = math.nan
    local_done: bool = False
    handoff: float = math.nan
    deadline: float = math.inf
    phase: str = "none"  # txq, promo, up, server_q, server, flight, down, done
    offload_done: bool = False
    timed_out: bool = False
    completion: float = math.nan
    remote_mj: float = 0.0
    used_radio: bool = False
    fallback_pending: bool = False


@dataclass
class Radio:
    tail_w: float
    tail_ms: float
    promo_w: float
    promo_ms: float
    state: str = "idle"  # idle, promo, connected
    users: set = field(default_factory=set)
    tx: int | None = None
    txq: deque = field(default_factory=deque)
    transfers: dict = field(default_factory=dict)  # (k, kind) -> watts above the connected power
    timer: int = 0  # version of the pending tail expiry

    def power(self) -> float:
        if self.state == "idle":
            return 0.0
        if self.state == "promo":
            return self.promo_w
        return self.tail_w + sum(self.transfers.values())


class ReferenceModel:
    """Run one episode: ``run(actions)`` -> per-request latency, timed_out, remote energy, and the power trace."""

    def __init__(self, sim, states, draws):
        self.sim, self.t = sim, sim.tables
        self.x = sim.request_inputs(states, draws)  # realised link rates, RTTs, loads, jitters (inputs, not physics)
        self.states = states
        self.arrivals = np.concatenate([[0.0], np.cumsum(states.interarrival_ms)[:-1]])
        acts = self.t.actions
        # per (workload, action): the local target whose queue the request joins, the one that runs it (the
        # tables' runs_on: a float DNN sent to the DSP runs on the GPU), else the action's target
        n_w = len(self.t.workloads)
        if {"target", "kind"} <= set(acts.columns):
            own = [str(tg) if kd == "local" else None for tg, kd in zip(acts["target"], acts["kind"])]
            on = getattr(self.t, "runs_on", None)
            self.resource = [[(str(on[w][a]) or None) if on is not None else own[a] for a in range(len(acts))]
                             for w in range(n_w)]
        else:
            self.resource = [["edge"] * len(acts) for _ in range(n_w)]

    # ------------------------------------------------------------------ per-request quantities from the tables
    def _local(self, k: int, a: int) -> tuple[float, float, float]:
        t, x, w = self.t, self.x, int(self.x.workload[k])
        kc, km, kg, j = x.kc[k], x.km[k], x.kg[k], x.jit[k]
        pre = (t.pre_ms[w, a] + kc * t.pre_cpu_ms[w, a] + km * t.pre_mem_ms[w, a] + kg * t.pre_gpu_ms[w, a]) * j
        par = (t.par_ms[w, a] + kc * t.par_cpu_ms[w, a] + km * t.par_mem_ms[w, a] + kg * t.par_gpu_ms[w, a]) * j
        return pre, par, t.local_power_w[w, a] + x.p_add[k]

    def run(self, actions) -> dict:
        sim, t, x = self.sim, self.t, self.x
        links = sim.links
        routes = sim.routes
        radios = [Radio(lk.tail_w, lk.tail_ms, lk.promotion_w, lk.promotion_ms) for lk in links]
        local_busy: dict[str, int | None] = {}
        local_q: dict[str, deque] = {}
        server_busy: dict[int, int | None] = {}
        server_q: dict[int, deque] = {}
        running: dict[tuple, float] = {}  # (k, what) -> watts of local jobs and fallbacks
        reqs = [Req(k, float(self.arrivals[k]), int(actions[k])) for k in range(len(actions))]
        events: list = []
        seq = itertools.count()
        now, energy = 0.0, 0.0
        trace: list[tuple[float, float, float]] = []

        def at(time, kind, *args):
            heapq.heappush(events, (time, next(seq), kind, args))

        def route_of(a):
            return int(t.route[a])

        def w_of(k):
            return int(x.workload[k])

        def finish(r: Req, time: float):
            r.completion = time if math.isnan(r.completion) else max(r.completion, time)

        def start_local(res: str):
            if local_busy.get(res) is not None or not local_q.get(res):
                return
            k = local_q[res].popleft()
            local_busy[res] = k
            r = reqs[k]
            pre, par, p = self._local(k, r.action)
            running[(k, "local")] = p
            at(now + pre + par, "local_end", k, res)
            if t.offloads[w_of(k), r.action]:
                at(now + pre, "handoff", k)

        def user_leaves(radio: Radio, k: int):
            radio.users.discard(k)
            if not radio.users:
                radio.timer += 1
                at(now + radio.tail_ms, "tail_expire", radio, radio.timer)

        def start_tx(ri: int):
            radio = radios[ri]
            if radio.tx is not None or not radio.txq:
                return
            k = radio.txq.popleft()
            r = reqs[k]
            radio.tx = k
            radio.users.add(k)
            radio.timer += 1  # any pending tail expiry is void
            r.used_radio = True
            if radio.state == "idle":
                radio.state = "promo"
                r.phase = "promo"
                at(now + radio.promo_ms, "promo_end", k, ri)
            else:
                begin_upload(k, ri)

        def rates(k, q, kind):
            phy = getattr(x, f"{kind}_phy")[k, q]
            good = getattr(x, f"{kind}_good")[k, q]
            return phy, good

        def transfer_power(k, q, kind) -> float:
            """Average power above the connected level of a transfer: bursts at the PHY rate, DRX between."""
            lk = links[routes[q].radio]
            phy, good = rates(k, q, kind)
            per = lk.uplink_mw_per_mbps if kind == "up" else lk.downlink_mw_per_mbps
            burst = (lk.base_mw + per * min(max(phy, 0.0), lk.power_max_mbps)) / 1e3
            if kind == "up":
                burst += x.extra[k, q]
            share = good / phy if phy > 0 else 1.0  # fraction of the transfer time spent bursting
            return (burst - lk.tail_w) * share

        def bits(k, kind):
            return (t.up_bits if kind == "up" else t.down_bits)[w_of(k), reqs[k].action]

        def duration(k, q, kind):
            b = bits(k, kind)
            if b <= 0:
                return 0.0
            _, good = rates(k, q, kind)
            return b / (good * 1e3) if good > 0 else math.inf

        def begin_upload(k, ri):
            r = reqs[k]
            q = route_of(r.action)
            r.phase = "up"
            radios[ri].transfers[(k, "up")] = transfer_power(k, q, "up")
            d = duration(k, q, "up")
            if math.isfinite(d):  # a dead link never finishes: the timeout ends it
                at(now + d, "up_end", k, ri)

        def start_server(q):
            if server_busy.get(q) is not None or not server_q.get(q):
                return
            k = server_q[q].popleft()
            server_busy[q] = k
            r = reqs[k]
            rt = t.remote_ms[w_of(k), r.action] * x.rjit[k]
            r.remote_mj += t.remote_power_w[w_of(k), r.action] * rt
            if r.phase == "server_q":
                r.phase = "server"
            at(now + rt, "server_end", k, q)

        def start_fallback(r: Req):
            a = r.action
            fb = int(t.fallback[a])
            pre, par, p = self._local(r.k, fb)
            running[(r.k, "fallback")] = p
            at(now + pre + par, "fallback_end", r.k)

        for r in reqs:
            at(r.arrival, "arrival", r.k)
        while events:
            time, _, kind, args = heapq.heappop(events)
            if time > now and math.isfinite(time):  # integrate the power since the last event
                p = sum(running.values()) + sum(rd.power() for rd in radios)
                energy += p * (time - now)
                if p != 0.0:
                    trace.append((now, time, p))
                now = time
            if kind == "arrival":
                (k,) = args
                r = reqs[k]
                pre, par, _ = self._local(k, r.action)
                if pre + par > 0:
                    res = self.resource[w_of(k)][r.action]
                    local_q.setdefault(res, deque()).append(k)
                    start_local(res)
                else:
                    r.local_done, r.local_end = True, now
                    if t.offloads[w_of(k), r.action]:
                        at(now, "handoff", k)
                if not t.offloads[w_of(k), r.action]:
                    r.offload_done = True
            elif kind == "local_end":
                k, res = args
                r = reqs[k]
                running.pop((k, "local"))
                r.local_done, r.local_end = True, now
                local_busy[res] = None
                start_local(res)
                if r.fallback_pending and r.timed_out and "fallback_started" not in r.phase:
                    r.phase = "done+fallback_started"
                    start_fallback(r)
                elif r.offload_done and not r.fallback_pending:
                    finish(r, now)
            elif kind == "handoff":
                (k,) = args
                r = reqs[k]
                r.handoff = now
                r.deadline = now + t.timeout_ms[w_of(k)]
                at(r.deadline, "timeout", k)
                ri = routes[route_of(r.action)].radio
                r.phase = "txq"
                radios[ri].txq.append(k)
                start_tx(ri)
            elif kind == "promo_end":
                k, ri = args
                r = reqs[k]
                radio = radios[ri]
                if radio.state == "promo" and radio.tx == k and r.phase == "promo":
                    radio.state = "connected"
                    begin_upload(k, ri)
            elif kind == "up_end":
                k, ri = args
                r = reqs[k]
                if r.phase != "up":
                    continue
                radio = radios[ri]
                radio.transfers.pop((k, "up"))
                radio.tx = None
                start_tx(ri)
                q = route_of(r.action)
                r.phase = "server_q"
                server_q.setdefault(q, deque()).append(k)
                start_server(q)
            elif kind == "server_end":
                k, q = args
                server_busy[q] = None
                start_server(q)
                r = reqs[k]
                if r.phase == "server":
                    r.phase = "flight"
                    at(now + x.rtt[k, q], "response", k)
            elif kind == "response":
                (k,) = args
                r = reqs[k]
                if r.phase != "flight":
                    continue
                q = route_of(r.action)
                ri = routes[q].radio
                r.phase = "down"
                radios[ri].transfers[(k, "down")] = transfer_power(k, q, "down")
                d = duration(k, q, "down")
                if math.isfinite(d):
                    at(now + d, "down_end", k, ri)
            elif kind == "down_end":
                k, ri = args
                r = reqs[k]
                if r.phase != "down":
                    continue
                radios[ri].transfers.pop((k, "down"))
                r.phase = "done"
                r.offload_done = True
                user_leaves(radios[ri], k)
                if r.local_done:
                    finish(r, max(r.local_end, now))
            elif kind == "timeout":
                (k,) = args
                r = reqs[k]
                if r.offload_done:
                    continue
                r.timed_out = True
                ri = routes[route_of(r.action)].radio
                radio = radios[ri]
                if r.phase == "txq":
                    radio.txq.remove(k)
                elif r.phase in ("promo", "up"):
                    radio.transfers.pop((k, "up"), None)
                    if radio.state == "promo":
                        radio.state = "connected"  # the promotion is cut: the radio's tail starts now
                    radio.tx = None
                elif r.phase == "down":
                    radio.transfers.pop((k, "down"))
                # a request already at the server keeps it busy (the server does not learn of the timeout)
                if r.used_radio:
                    user_leaves(radio, k)
                r.phase = "done"
                r.offload_done = True
                start_tx(ri)
                fb_ok = sim.on_timeout == "local" and t.fallback[r.action] >= 0
                if fb_ok:
                    r.fallback_pending = True
                    if r.local_done:
                        r.phase = "done+fallback_started"
                        start_fallback(r)
                elif r.local_done:
                    finish(r, max(r.local_end, now))
            elif kind == "fallback_end":
                (k,) = args
                r = reqs[k]
                running.pop((k, "fallback"))
                r.fallback_pending = False
                finish(r, now)
            elif kind == "tail_expire":
                radio, version = args
                if version == radio.timer and not radio.users and radio.state == "connected":
                    radio.state = "idle"
            else:  # pragma: no cover
                raise AssertionError(kind)
        return {"latency_ms": np.array([r.completion - r.arrival for r in reqs]),
                "timed_out": np.array([r.timed_out for r in reqs]),
                "remote_energy_mj": np.array([r.remote_mj for r in reqs]),
                "energy_mj": energy, "trace": trace,
                "end_ms": max(([trace[-1][1]] if trace else []) + [r.completion for r in reqs])}
