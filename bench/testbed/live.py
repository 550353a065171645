"""The live side's clock and queues, shared by every live loop (:mod:`bench.testbed.loop`, :mod:`bench.testbed.dvfo_live`).

The world is the simulator's (:mod:`bench.sim.kernel`): requests arrive at the
scenario's inter-arrival time whether or not the previous one has finished;
each local resource (here: the edge's CPU) serves one request at a time in
arrival order, each radio has one transmitter (held from the upload's start
until its bytes have left the shaped link), and the server computes one request
at a time (its model lock; the wait comes back as ``x-queue-ms``). So a request
is *issued* at its arrival - on its own thread - and waits where the simulator
says it waits; its latency runs from its arrival to its answer, the waits
included, as the simulator's does.

:class:`Dispatcher` is the one piece of timing code of the live loops: it paces
the arrivals, takes each request's turn in arrival order, runs it on a worker
thread and stamps its arrival, dispatch lateness and end.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from bench.testbed.edge import FifoResource, Turn

#: worker threads: more requests in flight than this wait for a thread (a backlog no scenario here reaches)
MAX_IN_FLIGHT = 64


def support_cpus(edge_cpus, allowed) -> set[int]:
    """Where the testbed's own work runs (the dispatcher's loop, the link shaper and its ``tc`` calls, the
    probes, the co-runners' duty cycle): the ``allowed`` CPUs (the process's before it pinned itself) other
    than the edge's, so none of it takes the inference's CPU (on a 2-core host: the server's CPU, idle but for
    the server's compute); the edge's CPUs where there are no others.

    Measured: on the edge's CPU the shaper's ``tc`` calls at every arrival of a moving walk (the rate changes
    each request) ran just as the request's inference started; cpu_only/mobility_walk's local compute then
    spent 22 % of its wall time off the CPU with no co-runner at all (wifi_weak, whose rate never changes: 1 %)."""
    edge = {int(c) for c in edge_cpus}
    return {int(c) for c in allowed if int(c) not in edge} or edge


def pin_thread(cpus) -> None:
    """The calling thread (and what it starts later: its ``tc`` children, its threads) on ``cpus``."""
    os.sched_setaffinity(0, set(cpus))


class SupportCpu:
    """CPU time the testbed's own work took during a run (ms): named threads' thread CPU time, added by the
    threads themselves (:meth:`timed`), and the children it waited for (the ``tc`` calls) from ``getrusage``."""

    def __init__(self):
        self._lock = threading.Lock()
        self.ms: dict[str, float] = {}
        self._children0 = self._children_s()

    @staticmethod
    def _children_s() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self.ms[name] = self.ms.get(name, 0.0) + float(ms)

    def timed(self, name: str, fn: Callable, *args):
        """``fn(*args)``, its thread CPU time added to ``name``."""
        c0 = time.thread_time()
        try:
            return fn(*args)
        finally:
            self.add(name, (time.thread_time() - c0) * 1e3)

    def per_request(self, n: int) -> dict[str, float]:
        """Each part's CPU ms per request, ``children`` (the reaped ``tc`` calls) included."""
        out = dict(self.ms)
        out["children"] = (self._children_s() - self._children0) * 1e3
        return {k: round(v / max(n, 1), 4) for k, v in sorted(out.items())}


def radio_rates(link_model, trace, radio: str, t: int) -> tuple[float, float]:
    """(uplink, downlink) goodput in Mbit/s of ``radio`` at request ``t``: the link model at the trace's
    signal, capped by the trace's bandwidth cap (what the simulator's twin assumes)."""
    sig = float(trace.signal_dbm[radio][t])
    cap = float(trace.bandwidth_cap_mbps[t])
    return (float(min(link_model.uplink_goodput_mbps(sig), cap)),
            float(min(link_model.downlink_goodput_mbps(sig), cap)))


class Dispatcher:
    """Arrivals paced at ``interarrival_ms`` (``pace=False``: back to back, as fast as they are issued),
    each request run on a worker thread once issued; the edge's resources as FIFO queues."""

    def __init__(self, interarrival_ms: float, pace: bool = True, radios=(), workers: int = MAX_IN_FLIGHT,
                 cpus=None):
        """``cpus``: the workers run there (the edge's CPUs) wherever the dispatching thread runs."""
        self.interarrival_ms, self.pace = float(interarrival_ms), bool(pace)
        self.cpu = FifoResource("cpu")
        self.tx = {r: FifoResource(f"tx_{r}") for r in radios}
        pin = {} if cpus is None else {"initializer": pin_thread, "initargs": (set(cpus),)}
        self._pool = ThreadPoolExecutor(max_workers=max(int(workers), 1), thread_name_prefix="request", **pin)
        self._futures: list[Future] = []
        self.t0 = time.perf_counter()
        # paused stretches of the schedule (alone inferences timed between requests, loop.alone_block): request t
        # arrives ``t * interarrival`` plus every pause inserted before it after the start
        self._shift: list[tuple[int, float]] = []
        self._held, self._next_held = False, 0

    def start(self) -> None:
        """The clock starts now (request 0 arrives now)."""
        self.t0 = time.perf_counter()

    def arrival(self, t: int) -> float:
        """When request ``t`` arrives (``time.perf_counter()`` seconds); ``inf`` for a request not yet issued while
        the schedule is held (:meth:`hold`): the shaper waits for it instead of shaping it early."""
        if not self.pace:
            return time.perf_counter()
        base = self.t0 + t * self.interarrival_ms / 1e3 + sum(s for k, s in self._shift if k <= t)
        return float("inf") if self._held and t >= self._next_held else base

    def hold(self, t: int) -> None:
        """Hold the schedule from request ``t`` on (until :meth:`resume`)."""
        self._next_held, self._held = int(t), True

    def resume(self, t: int, at: float) -> float:
        """Release the hold: request ``t`` (and every later one, by as much) arrives no earlier than ``at``;
        returns the pause added before it (ms)."""
        self._held = False
        extra = max(at - self.arrival(t), 0.0)
        if extra > 0:
            self._shift.append((int(t), extra))
        return extra * 1e3

    def pause_ms(self, n: int) -> np.ndarray:
        """(n,) the pause inserted before each request (ms): its gap from the one before is the inter-arrival
        time plus this."""
        out = np.zeros(int(n))
        for k, s in self._shift:
            if 0 <= k < n:
                out[k] += s * 1e3
        return out

    def wait_for(self, t: int) -> tuple[float, float]:
        """Sleep until request ``t`` arrives; (its arrival, how late it is being issued in ms: earlier work of
        the dispatcher itself - probes, the policy - that ran past the arrival)."""
        arrival = self.arrival(t)
        wait = arrival - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        return arrival, max((time.perf_counter() - arrival) * 1e3, 0.0)

    def turn(self, radio: str = "") -> Turn:
        """The request's place in its resource's queue (taken in arrival order): the radio's transmitter for an
        offload, else the edge's CPU."""
        return self.tx[radio].turn() if radio else self.cpu.turn()

    def submit(self, fn: Callable[..., dict[str, Any]], arrival: float, late_ms: float, *args) -> None:
        """Run ``fn(*args) -> row`` on a worker; the row gets ``latency_ms`` (arrival to end) and ``late_ms``."""

        submitted = time.perf_counter()

        def timed() -> dict[str, Any]:
            begin = time.perf_counter()
            row = fn(*args)
            end = time.perf_counter()
            row["latency_ms"] = (end - arrival) * 1e3
            # issued late (the dispatcher's own work) plus the worker thread's start: the edge's scheduling delay
            row["dispatch_late_ms"] = max((begin - arrival) * 1e3, late_ms)
            row["work_ms"] = (end - begin) * 1e3
            # of the lateness: the dispatcher's own work from the arrival to the hand-off, then the worker's start
            row["issue_ms"] = max((submitted - arrival) * 1e3, 0.0)
            row["worker_start_ms"] = max((begin - submitted) * 1e3, 0.0)
            return row

        self._futures.append(self._pool.submit(timed))

    def results(self) -> list[dict[str, Any]]:
        """Every request's row, in arrival order, once all have ended (a worker's exception is raised here)."""
        try:
            return [f.result() for f in self._futures]
        finally:
            self._pool.shutdown(wait=True)
