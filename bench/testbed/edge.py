"""The edge: inference on this host's CPU with a fixed thread count and CPU affinity,
real co-runner processes, and the HTTP client that offloads over the shaped link.

* :class:`EdgeRunner` pins the calling process to ``cpus`` and sets torch's
  thread count, keeps the workloads warm, and runs a request locally, fully
  offloaded, or split DVFO-style (head locally, the ``xi`` share of least
  important feature-map channels quantised and sent to the server's tail, the
  rest finished locally, the two predictions fused).
* An offload has the simulator's deadline (``data/sim/model.yaml``
  ``offload_timeout_ms`` of the workload's app class): past it the client gives up
  (the connection is dropped) and, with ``on_timeout: local``, the request runs on
  the edge instead (:meth:`EdgeRunner.offload`), as the simulator's twin does.
* :class:`CoRunners` are ``stress-ng`` processes (Debian's package) pinned to the
  edge's CPUs: a CPU stressor and a memory stressor, each duty-cycled with
  SIGSTOP/SIGCONT so it is runnable for the scenario's load fraction of every
  period. Their measured CPU demand (``/proc/<pid>/schedstat``: running or
  waiting to run) while the inference is idle is what the policy observes.
"""

from __future__ import annotations

import collections
import fcntl
import http.client
import os
import shutil
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np



@dataclass
class Timing:
    """One request as the edge measured it (ms) and what went over the link."""

    local_ms: float = 0.0
    transfer_ms: float = 0.0
    server_ms: float = 0.0
    server_queue_ms: float = 0.0
    bytes_up: int = 0
    bytes_down: int = 0
    output: np.ndarray | None = None
    timed_out: bool = False
    """The offload missed its deadline; ``transfer_ms`` is then the time spent waiting for it."""
    fallback_ms: float = 0.0
    """Local fallback compute after a timeout (included in ``local_ms``)."""
    wait_ms: float = 0.0
    """Waiting for the edge's turn: its CPU (a local request) or the radio's transmitter (an offload)."""
    local_cpu_ms: float = float("nan")
    """The local compute's CPU time (its thread's): below ``local_ms`` by the time other work held the CPU."""
    server_cpu_ms: float = float("nan")
    """The server compute's CPU time (``x-server-cpu-ms``)."""
    corunner_cpu_ms: float = float("nan")
    """What the co-runners ran on the edge's CPUs during the local compute (where asked): of ``local_ms``, the
    wait for them; the rest of ``local_ms - local_cpu_ms`` is unrelated work's."""

    @property
    def latency_ms(self) -> float:
        return self.local_ms + self.transfer_ms + self.server_ms + self.server_queue_ms + self.wait_ms


class FifoResource:
    """One request at a time, in the order the turns were taken (the simulator's FIFO queue per local
    resource and per radio transmitter, :mod:`bench.sim.kernel`). A turn is taken when the request
    arrives (:meth:`turn`, in arrival order) and waited for where the request needs the resource; a
    turn given up (a timeout) keeps no place in the queue."""

    def __init__(self, name: str = ""):
        self.name = name
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self._busy = False

    def turn(self) -> "Turn":
        ev = threading.Event()
        with self._lock:
            if not self._busy and not self._queue:
                self._busy = True
                ev.set()
            else:
                self._queue.append(ev)
        return Turn(self, ev)

    def _give_up(self, ev: threading.Event) -> bool:
        """Leave the queue; False when the turn came meanwhile (the caller then holds the resource)."""
        with self._lock:
            if ev.is_set():
                return False
            self._queue.remove(ev)
            return True

    def _release(self) -> None:
        with self._lock:
            if self._queue:
                self._queue.popleft().set()
            else:
                self._busy = False


class Turn:
    """A place in a :class:`FifoResource`'s queue: :meth:`wait` for it, :meth:`release` once (idempotent)."""

    def __init__(self, resource: FifoResource, ev: threading.Event):
        self.resource, self._ev = resource, ev
        self._held = self._done = False

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the turn (at most ``timeout_s``); False: given up, no place kept."""
        if self._ev.wait(None if timeout_s is None else max(timeout_s, 0.0)) or not self.resource._give_up(self._ev):
            self._held = True
            return True
        self._done = True
        return False

    @property
    def released(self) -> bool:
        """Given back (or given up)."""
        return self._done

    def release(self) -> None:
        if self._held and not self._done:
            self._done = True
            self.resource._release()


class OffloadTimeout(Exception):
    """An offload missed its deadline (the connection was dropped; the next request reconnects)."""

    def __init__(self, waited_ms: float):
        super().__init__(f"no answer within {waited_ms:.0f} ms")
        self.waited_ms = waited_ms


class Client:
    """A persistent HTTP/1.1 connection to the server through one radio's proxy port.

    ``timeout_s`` bounds control traffic (probes); an offload passes its own deadline."""

    def __init__(self, host: str, port: int, timeout_s: float = 60.0):
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        self.last_end = -float("inf")
        """``time.perf_counter()`` when this radio last carried anything (the end of the last exchange)."""
        self.last_server_cpu_ms = float("nan")
        """The last answer's ``x-server-cpu-ms`` (NaN: none given)."""

    def _exchange(self, path: str, body: bytes, deadline: float, on_uploaded=None):
        def remaining() -> float:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError
            return left

        self.conn.timeout = remaining()  # connect() (a new connection) and sendall() as a whole
        if self.conn.sock is not None:
            self.conn.sock.settimeout(remaining())
        self.conn.request("POST", path, body=body, headers={"content-type": "application/octet-stream"})
        if on_uploaded is not None:  # the upload has left the radio: the transmitter is free for the next one
            _wait_acknowledged(self.conn.sock, deadline)
            on_uploaded()
        self.conn.sock.settimeout(remaining())  # waiting for the answer: the rest of the budget
        resp = self.conn.getresponse()
        return resp, resp.read()

    def post(self, path: str, body: bytes, timeout_ms: float | None = None,
             on_uploaded=None) -> tuple[bytes, float, float, float]:
        """(response body, wall ms, server compute ms, server queue ms); :class:`OffloadTimeout` past ``timeout_ms``
        (counted from the call; default: the client's ``timeout_s``). ``on_uploaded()`` is called once the
        request's bytes have left the shaped link (may be called again after a reconnect: make it idempotent)."""
        budget_s = self.timeout_s if timeout_ms is None or not np.isfinite(timeout_ms) else timeout_ms / 1e3
        t0 = time.perf_counter()
        deadline = t0 + budget_s
        try:
            try:
                resp, data = self._exchange(path, body, deadline, on_uploaded)
            except TimeoutError:
                raise
            except (http.client.HTTPException, OSError):
                self.conn.close()  # a dropped keep-alive connection: reconnect once, within the same deadline
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
                resp, data = self._exchange(path, body, deadline, on_uploaded)
        except TimeoutError:
            self.last_end = time.perf_counter()
            waited = (self.last_end - t0) * 1e3
            _abort(self.conn.sock)  # the upload's unsent bytes must not keep the shaped link busy
            self.conn.close()  # the late answer must not be read as the next request's
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
            raise OffloadTimeout(waited) from None
        self.last_end = time.perf_counter()
        wall = (self.last_end - t0) * 1e3
        self.last_server_cpu_ms = float(resp.getheader("x-server-cpu-ms", "nan"))
        if resp.status != 200:
            raise RuntimeError(f"server answered {resp.status} to POST {path}: {data[:200]!r}")
        return data, wall, float(resp.getheader("x-server-ms", "nan")), float(resp.getheader("x-queue-ms", "0"))

    def close(self) -> None:
        self.conn.close()


def _abort(sock) -> None:
    """Close ``sock`` with a reset (``SO_LINGER`` 0): its send queue is dropped. A plain close keeps sending
    what the app gave up on, so a timed-out upload's remaining bytes held the shaped link for the requests
    after it (on a 0.1 Mbit/s stretch, seconds); the simulator's radio stops at the deadline."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _wait_acknowledged(sock, deadline: float, poll_s: float = 0.001) -> None:
    """Until the peer has acknowledged every byte sent (``SIOCOUTQ``: bytes in the send queue not yet
    acknowledged) or ``deadline``. The shaper sits before the proxy, whose kernel acknowledges at once, so
    this is when the upload has passed the emulated radio (the proxy's delay and promotion come after)."""
    while time.perf_counter() < deadline:
        try:
            left = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except (OSError, ValueError):
            return
        if left <= 0:
            return
        time.sleep(poll_s)


class ClientPool:
    """Persistent connections to one radio's proxy port, one per request in flight (HTTP/1.1 has one
    exchange at a time per connection); ``last_end``: when the radio last carried anything."""

    def __init__(self, host: str, port: int, radio_state: tuple[float, float] | None = None):
        self.host, self.port = host, port
        self._free: list[Client] = []
        self._lock = threading.Lock()
        self.in_flight = 0
        self.last_end = -float("inf")
        self.radio_state = radio_state
        """(promotion_ms, tail_ms) of the radio state machine the delaying proxy emulates on this port
        (:func:`bench.testbed.proxy.link_state_constants`); None: no state machine."""
        self.active = 0  # exchanges that have started sending and not yet ended (requests and probes)

    def begin_exchange(self) -> float:
        """An exchange starts sending now: the promotion (ms) the proxy will impose on it - the proxy's rule, seen
        from the edge: nothing carried for a whole tail (no exchange active, the last one ended a tail ago).

        The proxy acknowledges the bytes as the shaper passes them and shifts the burst by the promotion, so
        the upload's bytes leave the edge's socket a promotion *before* the emulated radio has sent them; the
        caller holds the transmitter that much longer (a radio cannot send while it is being promoted)."""
        with self._lock:
            promo = 0.0
            if self.radio_state is not None and self.active == 0 \
                    and (time.perf_counter() - self.last_end) * 1e3 >= self.radio_state[1]:
                promo = float(self.radio_state[0])
            self.active += 1
            return promo

    def end_exchange(self, client: Client) -> None:
        with self._lock:
            self.active -= 1
            self.last_end = max(self.last_end, client.last_end)

    def get(self) -> Client:
        with self._lock:
            self.in_flight += 1
            return self._free.pop() if self._free else Client(self.host, self.port)

    def put(self, client: Client) -> None:
        with self._lock:
            self.in_flight -= 1
            self.last_end = max(self.last_end, client.last_end)
            self._free.append(client)

    def borrow_radio(self, client: Client):
        """A context in which ``client`` (e.g. a probe's own) carries traffic on this radio: in flight meanwhile."""
        import contextlib

        @contextlib.contextmanager
        def held():
            with self._lock:
                self.in_flight += 1
            self.begin_exchange()
            try:
                yield client
            finally:
                self.end_exchange(client)
                with self._lock:
                    self.in_flight -= 1
        return held()

    def quiet_ms(self, now: float) -> float:
        """How long the radio has carried nothing (ms); NaN while a request is in flight on it."""
        with self._lock:
            return float("nan") if self.in_flight else (now - self.last_end) * 1e3

    def close(self) -> None:
        with self._lock:
            for c in self._free:
                c.close()
            self._free.clear()


class EdgeRunner:
    """Local, offloaded and split inference of warm workloads (see module docstring)."""

    def __init__(self, workloads, threads: int = 1, cpus: tuple[int, ...] = (0,), with_split: bool = False):
        import torch

        from bench.testbed import models as m

        self.cpus = tuple(int(c) for c in cpus)
        os.sched_setaffinity(0, set(self.cpus))
        torch.set_num_threads(int(threads))
        self.threads = int(threads)
        self.models = {n: m.warm(n, with_split=with_split) for n in workloads}

    def local(self, name: str, turn: Turn | None = None, corunner_ms: Callable[[], float] | None = None) -> Timing:
        """The whole DNN here; with ``turn``, once the edge's CPU is this request's (FIFO); with ``corunner_ms``
        (:meth:`CoRunners.run_ms`), what the co-runners ran meanwhile (read just inside the timed window)."""
        import torch

        w = self.models[name]
        t_wait = time.perf_counter()
        if turn is not None:
            turn.wait()
        r0 = r1 = float("nan")
        try:
            with torch.inference_mode():
                t0, c0 = time.perf_counter(), time.thread_time()
                # the co-runners' run read inside the timed window (~0.1 ms of reads): the stressors may preempt
                # this thread between a read and the clock, and a slice they run there must be in both or neither
                # (read outside, lstm_text's stressors "ran" 3 ms more than it waited)
                if corunner_ms is not None:
                    r0 = corunner_ms()
                y = w.model(w.example)
                if corunner_ms is not None:
                    r1 = corunner_ms()
                t1, c1 = time.perf_counter(), time.thread_time()
        finally:
            if turn is not None:
                turn.release()
        return Timing(local_ms=(t1 - t0) * 1e3, output=_np(y), wait_ms=(t0 - t_wait) * 1e3,
                      local_cpu_ms=(c1 - c0) * 1e3 if self.threads == 1 else float("nan"), corunner_cpu_ms=r1 - r0)

    def offload(self, name: str, client: Client, timeout_ms: float = float("inf"), fallback: bool = True,
                transmitter: Turn | None = None, radio: "ClientPool | None" = None) -> Timing:
        """The whole request on the server; past ``timeout_ms`` (from the hand-off to the network stack, the
        wait for the ``transmitter`` included, as in the simulator) the client gives up and, with ``fallback``,
        runs it here (the simulator's ``on_timeout: local``; the fallback takes no turn on the CPU, as there).
        ``transmitter``: this request's turn on the radio, held until its upload has left the link (and, where
        ``radio`` (the radio's :class:`ClientPool`) says the proxy promotes this burst, a promotion longer)."""
        from bench.testbed import models as m

        w = self.models[name]
        t0 = time.perf_counter()
        body = m.encode_input(w)
        t_ready = time.perf_counter()
        enc_ms = (t_ready - t0) * 1e3
        budget_ms = timeout_ms
        wait_ms = 0.0
        if transmitter is not None:
            got = transmitter.wait(timeout_ms / 1e3 if np.isfinite(timeout_ms) else None)
            wait_ms = (time.perf_counter() - t_ready) * 1e3
            budget_ms = timeout_ms - wait_ms
            if not got:  # gave up in the transmitter's queue: nothing went over the radio
                fb = self.local(name) if fallback else Timing()
                return Timing(local_ms=enc_ms + fb.local_ms, wait_ms=wait_ms, output=fb.output, timed_out=True,
                              fallback_ms=fb.local_ms)
        promo_ms = radio.begin_exchange() if radio is not None else 0.0
        t_send = time.perf_counter()
        def uploaded():
            # the emulated radio sends the bytes a promotion after they left the socket (proxy.py): hold it
            if promo_ms > 0 and not transmitter.released:
                time.sleep(min(promo_ms / 1e3, max(t_send + budget_ms / 1e3 - time.perf_counter(), 0.0)))
            transmitter.release()

        try:
            data, wall, srv, queue = client.post(f"/infer/{name}", body, timeout_ms=budget_ms,
                                                 on_uploaded=None if transmitter is None else uploaded)
        except OffloadTimeout as exc:
            if transmitter is not None:
                transmitter.release()
            fb = self.local(name) if fallback else Timing()
            return Timing(local_ms=enc_ms + fb.local_ms, transfer_ms=exc.waited_ms, bytes_up=len(body),
                          output=fb.output, timed_out=True, fallback_ms=fb.local_ms, wait_ms=wait_ms,
                          local_cpu_ms=fb.local_cpu_ms)
        finally:
            if transmitter is not None:
                transmitter.release()
            if radio is not None:
                radio.end_exchange(client)
        return Timing(local_ms=enc_ms, transfer_ms=max(wall - srv - queue, 0.0), server_ms=srv, server_queue_ms=queue,
                      bytes_up=len(body), bytes_down=len(data), output=np.frombuffer(data, dtype=np.float32),
                      wait_ms=wait_ms, server_cpu_ms=client.last_server_cpu_ms)

    def split(self, name: str, xi: float, client: Client, timeout_ms: float = float("inf"),
              turn: Turn | None = None) -> Timing:
        """DVFO: head locally, the xi share offloaded while the rest of the tail runs locally, fused. Past
        ``timeout_ms`` the share's answer is given up and the whole DNN runs here (the simulator's DVFO fallback:
        xi = 0). ``turn``: the edge's turn (FIFO), held for the head and the local tail (the simulator's
        composite edge resource); the share's answer may still be under way when the next request starts."""
        import torch

        from bench.testbed import models as m

        w = self.models[name]
        if w.head is None:
            raise ValueError(f"workload {name!r} has no split point")
        t_wait = time.perf_counter()
        if turn is not None:
            turn.wait()
        with torch.inference_mode():
            t0 = time.perf_counter()
            f = w.head(w.example)
            body, idx = m.encode_share(f, xi) if xi > 0 else (b"", np.array([], dtype=int))
            t_head = (time.perf_counter() - t0) * 1e3
            result: dict = {}
            thread = None
            if xi > 0:
                def remote():
                    try:
                        result["r"] = client.post(f"/tail/{name}", body, timeout_ms=timeout_ms)
                    except OffloadTimeout as exc:
                        result["timeout"] = exc
                thread = threading.Thread(target=remote)
                thread.start()
            t1 = time.perf_counter()
            local_out = None
            if xi < 1:
                f_local = f.clone()
                f_local[:, idx] = 0.0
                local_out = _np(w.tail(f_local))
            t_tail = (time.perf_counter() - t1) * 1e3
            if turn is not None:
                turn.release()
            if thread is not None:
                thread.join()
            t_end = time.perf_counter()
        tim = Timing(local_ms=t_head + t_tail, bytes_up=len(body), wait_ms=(t0 - t_wait) * 1e3)
        if "timeout" in result:
            fb = self.local(name)
            tim.timed_out, tim.fallback_ms = True, fb.local_ms
            tim.transfer_ms = max(result["timeout"].waited_ms - t_tail, 0.0)
            tim.local_ms += fb.local_ms
            tim.output = fb.output
        elif xi > 0:
            data, _wall, srv, queue = result["r"]
            remote_out = np.frombuffer(data, dtype=np.float32)
            # the offload ran beside the local tail: only the part past the local tail is on the critical path
            # (from the share's hand-off to the answer, the sending thread's start included, not the post's wall)
            exposed = max((t_end - t1) * 1e3 - t_tail, 0.0)
            tim.server_ms = min(srv, exposed)
            tim.server_queue_ms = min(queue, max(exposed - tim.server_ms, 0.0))
            tim.transfer_ms = max(exposed - tim.server_ms - tim.server_queue_ms, 0.0)
            tim.bytes_down = len(data)
            tim.output = remote_out if local_out is None else m.fuse(local_out, remote_out, xi)
        else:
            tim.output = local_out
        return tim


def _np(y) -> np.ndarray:
    t = y[0] if isinstance(y, (tuple, list)) else y
    return t.detach().float().numpy().ravel()


# --------------------------------------------------------------------------- co-runners

#: the co-runners' duty-cycle period. The twin stretches every inference by the *expected* slowdown of a load
#: fraction; a period longer than an inference makes the live slowdown all or nothing by phase (at 0.1 s, one
#: mobilenet_v2 run under a 0.9 CPU load took 21-250 ms against the twin's 47), so the period is shorter than
#: the served inferences and each one meets about the load's fraction, as the twin assumes
#: (assumed: 10 ms, the shortest a Python thread's SIGSTOP/SIGCONT cycle keeps without eating the edge's CPU)
DUTY_PERIOD_S = 0.01


@dataclass
class CoRunners:
    """Duty-cycled ``stress-ng`` CPU and memory stressors on ``cpus`` (see module docstring)."""

    cpus: tuple[int, ...] = (0,)
    period_s: float = DUTY_PERIOD_S
    vm_bytes: str = "64M"
    #: command prefix, e.g. ``["ip", "netns", "exec", "bt123"]``: started inside the testbed's namespace, the
    #: stressors are among the processes its cleanup kills, even after the testbed itself was SIGKILLed
    wrap: tuple[str, ...] = ()
    procs: dict = field(default_factory=dict)
    load: dict = field(default_factory=lambda: {"cpu": 0.0, "mem": 0.0})
    #: where the duty-cycle thread (its SIGSTOP/SIGCONT every few ms) runs: off the edge's CPUs where given
    #: (:func:`bench.testbed.live.support_cpus`), so the stressors alone compete with the inference
    cycle_cpus: tuple[int, ...] = ()

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[str, tuple[float, int]] = {}
        self._pids: dict[str, list[int]] = {}

    @staticmethod
    def available() -> bool:
        return shutil.which("stress-ng") is not None

    def __enter__(self) -> "CoRunners":
        if not self.available():
            raise RuntimeError("stress-ng is not installed (apt-get install -y stress-ng)")
        taskset = ",".join(str(c) for c in self.cpus)
        cmds = {"cpu": ["stress-ng", "--cpu", "1", "--taskset", taskset, "--quiet"],
                "mem": ["stress-ng", "--vm", "1", "--vm-bytes", self.vm_bytes, "--taskset", taskset, "--quiet"]}
        for kind, cmd in cmds.items():
            # `ip netns exec` execs the command in place, so the pid (and process group) stay stress-ng's.
            # Its own process group (for killpg) but the testbed's *session*: with sched_autogroup (Linux's
            # default on desktop/VM kernels) every session is one scheduling group that gets a fair share of a
            # CPU as a whole, so a stressor in a session of its own competed as a group with the testbed's
            # session - whose weight on the edge's CPU shrinks while its server and support threads run on the
            # other CPU - instead of as one task against the inference (bench/testbed/loop.py: niceness)
            p = subprocess.Popen([*self.wrap, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 process_group=0)
            self.procs[kind] = p
            _wait_exec(p.pid, "stress-ng")  # past `ip netns exec`: in the namespace, before it is stopped
            self._signal(kind, signal.SIGSTOP)
        self._thread = threading.Thread(target=self._cycle, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for kind, p in list(self.procs.items()):
            for sig in (signal.SIGCONT, signal.SIGTERM):
                self._signal(kind, sig)
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._signal(kind, signal.SIGKILL)
                p.wait(timeout=3)
        self.procs.clear()

    def _signal(self, kind: str, sig) -> None:
        p = self.procs.get(kind)
        if p is None:
            return
        try:
            os.killpg(p.pid, sig)  # stress-ng forks workers: the whole (own) process group
        except ProcessLookupError:
            pass

    def set_load(self, cpu: float, mem: float) -> None:
        self.load = {"cpu": float(np.clip(cpu, 0, 1)), "mem": float(np.clip(mem, 0, 1))}

    def _cycle(self) -> None:
        if self.cycle_cpus:
            os.sched_setaffinity(0, set(self.cycle_cpus))
        running = {"cpu": False, "mem": False}
        while not self._stop.is_set():
            t0 = time.monotonic()
            # on at the start of each period for load * period, then off
            for k in running:
                if self.load[k] > 0 and not running[k]:
                    self._signal(k, signal.SIGCONT)
                    running[k] = True
            for frac, k in sorted((self.load[k], k) for k in running):
                wait = t0 + frac * self.period_s - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    return
                if running[k] and frac < 1.0:
                    self._signal(k, signal.SIGSTOP)
                    running[k] = False
            rest = t0 + self.period_s - time.monotonic()
            if rest > 0 and self._stop.wait(rest):
                return

    def measured_load(self) -> dict[str, float]:
        """CPU demand of each stressor since the last call, as a share of ``cpus``: time on a CPU plus time
        runnable but waiting for one (``/proc/<pid>/schedstat``). Demand rather than utilisation because on
        a shared host other processes take CPU time the co-runner wants; utilisation would then read far
        below the scenario's load. Call it over a window in which the inference is idle."""
        self.refresh()  # the workers a stressor forked since (off the request's path: read before its arrival)
        out = {}
        now = time.monotonic()
        for kind in ("cpu", "mem"):
            ticks = self._ticks(kind)
            last = self._last.get(kind)
            self._last[kind] = (now, ticks)
            if last is None or now <= last[0]:
                out[kind] = self.load[kind]
            else:
                out[kind] = float(np.clip((ticks - last[1]) / 1e9 / (now - last[0]) / len(self.cpus), 0, 1))
        return out

    def refresh(self) -> None:
        """Find the stressors' processes again (a scan of /proc, ~1.5 ms: call it off an inference's path). A
        stressor forks its workers only once it first runs, after the scan at its start, so reading the cached
        pids alone missed them: the memory stressor's run read 0.09 ms during an inference it delayed by 1.6 ms."""
        for kind, p in self.procs.items():
            self._pids[kind] = _group_pids(p.pid)

    def run_ms(self) -> float:
        """The stressors' time on a CPU so far (ms, ``/proc/<pid>/schedstat``), every kind together: pinned to the
        edge's CPUs, what they ran while an inference there was running is the inference's wait for them."""
        return sum(self._ticks(kind, fields=1) for kind in self.procs) / 1e6

    def _ticks(self, kind: str, fields: int = 2) -> int:
        p = self.procs.get(kind)
        if p is None:
            return 0
        # the group's pids as last found by refresh() (a scan of /proc took ~1.5 ms of the dispatcher's time per
        # request, on the request's critical path), scanned here only when none are known or one of them is gone
        pids = self._pids.get(kind) or _group_pids(p.pid)
        total, gone = 0, False
        for child in pids:
            try:
                total += sum(int(v) for v in Path(f"/proc/{child}/schedstat").read_text().split()[:fields])
            except (OSError, ValueError):
                gone = True
        self._pids[kind] = [] if gone else pids
        return total


def _wait_exec(pid: int, name: str, timeout_s: float = 5.0) -> None:
    """Wait (bounded) until process ``pid`` runs ``name`` (a wrapper such as ``ip netns exec`` has exec'd)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(name.encode()):
                return
        except OSError:
            return
        time.sleep(0.01)


def _group_pids(pgid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    out.append(int(d.name))
            except (ProcessLookupError, PermissionError):
                pass
    return out
