"""The cloud inference server: warm models behind Starlette on uvicorn, batch 1.

Run inside the testbed's namespace (``python -m bench.testbed.server ...``,
started by :class:`bench.testbed.loop.Testbed`). Endpoints:

=============================  ===================================================
``GET /health``                ``{"ok": true, "workloads": [...]}`` once every model is warm
``POST /infer/{workload}``     body: the encoded input (uint8 pixels / int64 tokens);
                               response body: the fp32 output
``POST /tail/{workload}``      body: a quantised feature-map share; response: the
                               tail's fp32 output on it (zeros elsewhere)
``POST /sink``                  body: anything; response: its length (a transfer probe)
``POST /control``              ``{"radio": "wifi", "rtt_ms": 30}``: the proxy's delay;
                               needs the run's token in ``x-control-token``
=============================  ===================================================

Hardened like a service, because it runs as root on an address any local process can
reach: it binds the namespace's veth address only (``--host``, no default); ``/control``
needs the per-run token that :class:`ServerProcess` hands it in ``$BENCH_TESTBED_TOKEN``
(never on the command line, which every local user can read); every body is bounded
per endpoint from the largest legitimate payload (``/infer``: exactly the model's input;
``/tail``: a header and at most every channel of the cut; ``/sink``: ``--sink-max-bytes``)
and a ``/tail`` header is checked against the model's cut before anything is allocated;
a malformed request gets a 4xx with a one-line JSON ``error`` (never a 500 with a
traceback); a request head must arrive within ``--header-timeout-s`` and a body within
``--body-timeout-s``; connections beyond ``--max-connections`` are closed at once and
requests beyond ``--limit-concurrency`` get a 503; and logging is rate-limited.

Inference responses carry ``x-server-ms`` (compute), ``x-server-cpu-ms`` (its thread's CPU time) and ``x-queue-ms`` (time
waiting for the model lock: batch 1, one request computes at a time). The
process pins itself to ``--cpus`` and uses ``--threads`` torch threads. The
delaying proxy (:mod:`bench.testbed.proxy`) runs in the same event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import secrets
import struct
import sys
import threading
import time

#: the environment variable that carries /control's per-run token (environ is private to root; argv is not)
TOKEN_ENV = "BENCH_TESTBED_TOKEN"
TOKEN_HEADER = "x-control-token"
# Service limits (assumed: sized from the testbed's own traffic, not from any paper):
#: a request head (request line + headers) must arrive within this after the connection opens or the
#: previous response ends; the edge sends its head in one write, so seconds are generous
HEADER_TIMEOUT_S = 10.0
#: a whole body must arrive within this; the slowest shaped link (0.1 Mbit/s) moves a 150 KB image in ~12 s
BODY_TIMEOUT_S = 60.0
#: idle keep-alive connections close after this (the edge reconnects once on a dropped connection)
KEEP_ALIVE_S = 15
#: open connections beyond this are closed as they arrive (the edge holds one per radio, plus probes)
MAX_CONNECTIONS = 128
#: concurrent requests beyond this get 503 (batch 1: more would only queue for the model lock)
LIMIT_CONCURRENCY = 64
#: largest request head h11 buffers (the edge's heads are ~200 bytes)
MAX_HEAD_BYTES = 16 * 1024
#: /sink's bound: the edge's probes are 32 KiB, the live test's transfers 200 KB
SINK_MAX_BYTES = 1 << 20
#: /control's bound: ``{"radio": ..., "rtt_ms": ...}`` is ~40 bytes
CONTROL_MAX_BYTES = 1024
#: /control's rtt_ms range: a one-way delay of up to 5 s already stalls every request
RTT_MAX_MS = 10_000.0
#: a /tail header lists at most every channel of the cut (a few thousand ints)
TAIL_HEADER_MAX_BYTES = 64 * 1024
#: log records per second (burst twice that) per logger; the rest are counted and reported
LOG_RATE_PER_S = 5.0


class Reject(Exception):
    """A malformed request: answered with ``status`` and ``{"error": message}`` (one line)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = " ".join(str(message).split())[:300]


class RateLimitFilter(logging.Filter):
    """At most ``rate`` records per second per logger (a token bucket, burst ``2 * rate``); suppressed
    records are counted and the count is appended to the next record let through. A flood of bad
    requests therefore writes a few lines a second, whatever reads (or does not read) the log."""

    def __init__(self, rate: float = LOG_RATE_PER_S):
        super().__init__()
        self.rate, self.burst = float(rate), 2.0 * float(rate)
        self._tokens: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self.suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            name = record.name
            tokens = min(self.burst, self._tokens.get(name, self.burst) + (now - self._last.get(name, now)) * self.rate)
            self._last[name] = now
            if tokens < 1.0:
                self._tokens[name] = tokens
                self.suppressed[name] = self.suppressed.get(name, 0) + 1
                return False
            self._tokens[name] = tokens - 1.0
            dropped = self.suppressed.pop(name, 0)
        if dropped:
            record.msg = f"{record.getMessage()} [{dropped} similar message(s) suppressed]"
            record.args = ()
        record.exc_info = None  # one line per record: a traceback is never what the operator needs here
        record.exc_text = None
        return True


def install_log_limits(rate: float = LOG_RATE_PER_S) -> RateLimitFilter:
    """Rate-limit (and keep to one line) every record of the server's loggers."""
    filt = RateLimitFilter(rate)
    handlers = {h for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "bench.testbed.server")
                for h in logging.getLogger(name).handlers}
    for handler in handlers:  # every record passes a handler once (a logger's filter misses its children's)
        handler.addFilter(filt)
    return filt


log = logging.getLogger("bench.testbed.server")


def _json_error(status: int, message: str, close: bool = False):
    from starlette.responses import JSONResponse

    headers = {"connection": "close"} if close else None
    return JSONResponse({"error": " ".join(str(message).split())[:300]}, status, headers=headers)


async def read_body(request, limit: int, timeout_s: float) -> bytes:
    """The request's body, at most ``limit`` bytes within ``timeout_s``; 413 / 408 / 400 otherwise.
    A declared length over the limit is refused before a byte of the body is read."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or len(declared) > 19:
            raise Reject(400, f"content-length {declared[:40]!r} is not a byte count")
        if int(declared) > limit:
            raise Reject(413, f"body of {int(declared)} bytes; {request.url.path} takes at most {limit}")
    buf = bytearray()

    async def pull() -> None:
        async for chunk in request.stream():
            buf.extend(chunk)
            if len(buf) > limit:
                raise Reject(413, f"body over {limit} bytes; {request.url.path} takes at most {limit}")

    try:
        await asyncio.wait_for(pull(), timeout_s)
    except asyncio.TimeoutError:
        raise Reject(408, f"body not received within {timeout_s:g} s") from None
    return bytes(buf)


def tail_spec(w) -> tuple[int, ...]:
    """The shape of the feature map at ``w``'s cut (what a /tail header must claim)."""
    import torch

    with torch.inference_mode():
        return tuple(int(d) for d in w.head(w.example).shape)


def check_share(body: bytes, cut_shape: tuple[int, ...]) -> None:
    """Validate a /tail body against the cut's shape before anything is allocated (see models.encode_share)."""
    if len(body) < 4:
        raise Reject(400, f"/tail body of {len(body)} bytes; it starts with a 4-byte header length")
    (n,) = struct.unpack("<I", body[:4])
    if n > TAIL_HEADER_MAX_BYTES or 4 + n > len(body):
        raise Reject(400, f"/tail header length {n} does not fit the {len(body)}-byte body "
                          f"(allowed: at most {TAIL_HEADER_MAX_BYTES})")
    try:
        h = json.loads(body[4:4 + n].decode("utf-8"), parse_constant=float)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Reject(400, "/tail header is not UTF-8 JSON") from None
    if not isinstance(h, dict) or set(h) != {"shape", "channels", "scale", "zero_point"}:
        raise Reject(400, "/tail header must be an object with exactly shape, channels, scale, zero_point")
    shape, idx, scale, zp = h["shape"], h["channels"], h["scale"], h["zero_point"]
    if not isinstance(shape, list) or [type(d) for d in shape] != [int] * len(shape) or tuple(shape) != cut_shape:
        raise Reject(400, f"/tail shape {str(shape)[:80]} is not the cut's {list(cut_shape)}")
    channels = cut_shape[1]
    if (not isinstance(idx, list) or any(type(c) is not int for c in idx) or len(idx) > channels
            or any(not 0 <= c < channels for c in idx) or any(a >= b for a, b in zip(idx, idx[1:]))):
        raise Reject(400, f"/tail channels must be increasing channel ids in [0, {channels}) (got {str(idx)[:80]})")
    if type(scale) not in (int, float) or not (math.isfinite(scale) and 0 < scale <= 1e30):
        raise Reject(400, f"/tail scale {str(scale)[:40]} must be a finite number in (0, 1e30]")
    if type(zp) is not int or not 0 <= zp <= 255:
        raise Reject(400, f"/tail zero_point {str(zp)[:40]} must be an integer in [0, 255]")
    want = len(idx) * math.prod(cut_shape) // channels
    got = len(body) - 4 - n
    if got != want:
        raise Reject(400, f"/tail payload of {got} bytes; {len(idx)} channel(s) of the cut take {want}")


def check_control(data) -> tuple[str, float]:
    """``(radio, rtt_ms)`` of a /control body, or :class:`Reject`."""
    if not isinstance(data, dict) or set(data) != {"radio", "rtt_ms"}:
        raise Reject(400, 'control body must be {"radio": NAME, "rtt_ms": NUMBER} (exactly these keys)')
    radio, rtt = data["radio"], data["rtt_ms"]
    if not isinstance(radio, str):
        raise Reject(400, f"radio must be a string (got {str(radio)[:40]})")
    if type(rtt) not in (int, float) or not (math.isfinite(rtt) and 0 <= rtt <= RTT_MAX_MS):
        raise Reject(400, f"rtt_ms = {str(rtt)[:40]}: allowed: a finite number in [0, {RTT_MAX_MS:g}]")
    return radio, float(rtt)


def make_app(warm_models: dict, proxy=None, token: str | None = None, sink_max_bytes: int = SINK_MAX_BYTES,
             body_timeout_s: float = BODY_TIMEOUT_S):
    """The Starlette app over ``warm_models`` (name -> :class:`bench.testbed.models.Warm`).

    ``token``: what /control's ``x-control-token`` must be (None: /control refuses everything)."""
    import torch
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from bench.testbed import models as m

    lock = threading.Lock()
    # bounds from the largest legitimate payload, computed once from the models themselves
    input_bytes = {n: math.prod(w.example.shape) * (1 if w.domain == "vision" else 8) for n, w in warm_models.items()}
    cut_shapes = {n: tail_spec(w) for n, w in warm_models.items() if w.tail is not None}
    tail_max = {n: 4 + TAIL_HEADER_MAX_BYTES + math.prod(s) for n, s in cut_shapes.items()}

    def _run(request_workload: str, fn):
        t_in = time.perf_counter()
        with lock:
            t0, c0 = time.perf_counter(), time.thread_time()
            with torch.inference_mode():
                y = fn()
            t1, c1 = time.perf_counter(), time.thread_time()
        body = m.encode_output(y)
        # the compute's CPU time beside its wall time: the difference is time other work held the CPU
        return Response(body, media_type="application/octet-stream",
                        headers={"x-server-ms": f"{(t1 - t0) * 1e3:.4f}", "x-queue-ms": f"{(t0 - t_in) * 1e3:.4f}",
                                 "x-server-cpu-ms": f"{(c1 - c0) * 1e3:.4f}"})

    def guarded(handler):
        async def endpoint(request):
            try:
                return await handler(request)
            except Reject as exc:
                log.warning("%s %s: %d %s", request.method, request.url.path[:80], exc.status, exc.message)
                return _json_error(exc.status, exc.message, close=exc.status in (408, 413))
            except Exception as exc:  # noqa: BLE001 - a server fault: one line, never a traceback
                log.error("%s %s: 500 %s: %s", request.method, request.url.path[:80], type(exc).__name__, exc)
                return _json_error(500, f"internal error: {type(exc).__name__}")
        return endpoint

    def _model(request):
        name = request.path_params["workload"]
        w = warm_models.get(name)
        if w is None:
            raise Reject(404, f"workload {name[:60]!r} not served; served: {sorted(warm_models)}")
        return w

    # sync model calls run in a worker thread, so the proxy's event loop keeps moving
    async def infer(request):
        w = _model(request)
        want = input_bytes[w.name]
        body = await read_body(request, want, body_timeout_s)
        if len(body) != want:
            raise Reject(400, f"body of {len(body)} bytes; /infer/{w.name} takes exactly {want} "
                              f"({'uint8 pixels' if w.domain == 'vision' else 'int64 tokens'} of shape "
                              f"{list(w.example.shape)})")
        x = m.decode_input(w, body)
        return await asyncio.to_thread(_run, w.name, lambda: w.model(x))

    async def tail(request):
        w = _model(request)
        if w.tail is None:
            raise Reject(404, f"workload {w.name!r} has no split tail")
        body = await read_body(request, tail_max[w.name], body_timeout_s)
        check_share(body, cut_shapes[w.name])
        f = m.decode_share(body)
        return await asyncio.to_thread(_run, w.name, lambda: w.tail(f))

    async def sink(request):
        body = await read_body(request, sink_max_bytes, body_timeout_s)  # a transfer probe: no compute
        return Response(len(body).to_bytes(8, "little"), media_type="application/octet-stream",
                        headers={"x-server-ms": "0", "x-queue-ms": "0"})

    async def health(request):
        return JSONResponse({"ok": True, "workloads": sorted(warm_models), "pid": os.getpid()})

    async def control(request):
        given = request.headers.get(TOKEN_HEADER, "")
        if not token or not secrets.compare_digest(given.encode(), token.encode()):
            raise Reject(403, f"/control needs this run's token in {TOKEN_HEADER}")
        body = await read_body(request, CONTROL_MAX_BYTES, body_timeout_s)
        try:
            data = json.loads(body.decode("utf-8"), parse_constant=float)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise Reject(400, "control body is not UTF-8 JSON") from None
        radio, rtt = check_control(data)
        if proxy is None:
            raise Reject(409, "this server runs no delaying proxy")
        try:
            proxy.set_rtt(radio, rtt)
        except (KeyError, ValueError) as exc:
            raise Reject(400, str(exc).strip("'\"")) from None
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/health", health),
                             Route("/infer/{workload}", guarded(infer), methods=["POST"]),
                             Route("/tail/{workload}", guarded(tail), methods=["POST"]),
                             Route("/sink", guarded(sink), methods=["POST"]),
                             Route("/control", guarded(control), methods=["POST"])])


def guarded_protocol(header_timeout_s: float = HEADER_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS):
    """uvicorn's h11 protocol with a request-head timeout and a connection cap.

    uvicorn times out idle keep-alive connections but not a connection that never
    completes its first request head: 1,100 such half-open connections used to starve
    /health for good. Here a head must be complete within ``header_timeout_s`` of the
    connection opening (or of the previous response), and connections beyond
    ``max_connections`` are closed as they arrive."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_timer = None
            if len(self.connections) > max_connections:
                transport.close()
                return
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            if getattr(self, "_head_timer", None) is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timeout)

        def _head_timeout(self) -> None:
            self._head_timer = None
            # their_state stays IDLE until a complete request head has been parsed
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()  # the next request's head gets the same deadline

        def connection_lost(self, exc) -> None:
            if getattr(self, "_head_timer", None) is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

    return GuardedH11Protocol


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.testbed.server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True, help="the one address to listen on (the namespace's veth address)")
    p.add_argument("--port", type=int, required=True, help="server port (control and unshaped access)")
    p.add_argument("--proxy", action="append", default=[], metavar="RADIO:PORT",
                   help="a delaying proxy listener for RADIO on PORT (repeatable)")
    p.add_argument("--workloads", nargs="+", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cpus", default="", help="comma-separated CPU ids to pin to (default: no pinning)")
    p.add_argument("--sink-max-bytes", type=int, default=SINK_MAX_BYTES)
    p.add_argument("--header-timeout-s", type=float, default=HEADER_TIMEOUT_S)
    p.add_argument("--body-timeout-s", type=float, default=BODY_TIMEOUT_S)
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS)
    p.add_argument("--limit-concurrency", type=int, default=LIMIT_CONCURRENCY)
    args = p.parse_args(argv)
    for name in ("header_timeout_s", "body_timeout_s"):
        v = getattr(args, name)
        if not (math.isfinite(v) and 0 < v <= 3600):
            p.error(f"--{name.replace('_', '-')} {v}: allowed: a number in (0, 3600]")
    for name in ("sink_max_bytes", "max_connections", "limit_concurrency", "port"):
        if getattr(args, name) < (0 if name == "port" else 1):
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: allowed: a positive integer")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    import torch
    import uvicorn

    from bench.testbed import models as m
    from bench.testbed.proxy import DelayProxy

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    warm_models = {n: m.warm(n, with_split=True) for n in args.workloads}
    listen = {}
    for spec in args.proxy:
        radio, _, port = spec.partition(":")
        listen[radio] = (args.host, int(port))
    proxy = DelayProxy(listen, (args.host, args.port))
    token = os.environ.pop(TOKEN_ENV, "") or None  # not inherited by anything this process starts
    app = make_app(warm_models, proxy, token=token, sink_max_bytes=args.sink_max_bytes,
                   body_timeout_s=args.body_timeout_s)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                            http=guarded_protocol(args.header_timeout_s, args.max_connections),
                            limit_concurrency=args.limit_concurrency, timeout_keep_alive=KEEP_ALIVE_S,
                            h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    server = uvicorn.Server(config)
    install_log_limits()  # after uvicorn.Config, which installs its handlers

    async def serve():
        await proxy.start()
        try:
            await server.serve()
        finally:
            await proxy.close()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())


class ServerProcess:
    """The server started inside ``link``'s namespace; stopped on exit (and with the namespace, always).

    It listens on the namespace's veth address only. Its stderr goes to an unlinked temporary
    file, never a pipe: a pipe nobody reads fills after ~64 KiB of log and then blocks the
    server (that froze it after ~17 logged errors). /control needs a token made here per run
    and passed in the environment (:data:`TOKEN_ENV`)."""

    def __init__(self, link, workloads, port: int = 8000, threads: int = 1, cpus: tuple[int, ...] = (),
                 start_timeout_s: float = 300.0, python: str = sys.executable, sink_max_bytes: int = SINK_MAX_BYTES):
        self.link, self.port = link, port
        self.url_host = link.ns_ip
        self.start_timeout_s = start_timeout_s
        self.token = secrets.token_hex(16)
        self.cmd = link.ns_cmd(server_argv(python, link.ns_ip, port, link.ports, workloads, threads, cpus,
                                           sink_max_bytes))
        self.proc = None
        self.log = None

    def __enter__(self) -> "ServerProcess":
        self.proc, self.log = launch(self.cmd, self.token)
        try:
            wait_healthy(self.proc, self.log, self.url_host, self.port, self.start_timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def control(self, radio: str, rtt_ms: float) -> None:
        control(self.url_host, self.port, self.token, radio, rtt_ms)

    def log_tail(self, nbytes: int = 4000) -> str:
        return read_tail(self.log, nbytes)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - last resort below
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None


def server_argv(python: str, host: str, port: int, ports: dict, workloads, threads: int = 1,
                cpus: tuple[int, ...] = (), sink_max_bytes: int = SINK_MAX_BYTES, extra: tuple[str, ...] = ()) -> list[str]:
    """The server's command line (``ports``: radio -> its proxy port)."""
    return ([python, "-m", "bench.testbed.server", "--host", host, "--port", str(port),
             *[a for r, p in sorted(ports.items()) for a in ("--proxy", f"{r}:{p}")],
             "--workloads", *workloads, "--threads", str(threads), "--sink-max-bytes", str(int(sink_max_bytes))]
            + (["--cpus", ",".join(map(str, cpus))] if cpus else []) + list(extra))


def launch(cmd: list[str], token: str):
    """Start the server: stdout discarded, stderr to an unlinked temporary file (it can never fill
    and block the server the way an unread pipe does), the token in its environment only."""
    import subprocess
    import tempfile

    log = tempfile.TemporaryFile(prefix="bench-testbed-server-")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), TOKEN_ENV: token}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL, env=env)
    return proc, log


def read_tail(log, nbytes: int = 2000) -> str:
    if log is None:
        return ""
    log.flush()
    size = log.seek(0, 2)
    log.seek(max(size - nbytes, 0))
    return log.read().decode(errors="replace")


def wait_healthy(proc, log, host: str, port: int, timeout_s: float) -> None:
    """Bounded wait for warm models (``/health`` ok); the server's last log lines if it dies first."""
    import http.client

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the testbed server exited with {proc.returncode}: {read_tail(log)}")
        try:
            c = http.client.HTTPConnection(host, port, timeout=2)
            c.request("GET", "/health")
            ok = json.loads(c.getresponse().read()).get("ok")
            c.close()
            if ok:
                return
        except (OSError, ValueError, http.client.HTTPException):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the testbed server did not become healthy within {timeout_s:.0f} s")


def control(host: str, port: int, token: str, radio: str, rtt_ms: float) -> None:
    """Set the proxy's delay for ``radio`` (the server checks the token and the value)."""
    import http.client

    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("POST", "/control", body=json.dumps({"radio": radio, "rtt_ms": rtt_ms}),
              headers={"content-type": "application/json", TOKEN_HEADER: token})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"proxy control failed ({r.status}): {body[:300]!r}")
