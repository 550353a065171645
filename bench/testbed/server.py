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
``POST /control``              ``{"radio": "wifi", "rtt_ms": 30}``: the proxy's delay
=============================  ===================================================

Inference responses carry ``x-server-ms`` (compute) and ``x-queue-ms`` (time
waiting for the model lock: batch 1, one request computes at a time). The
process pins itself to ``--cpus`` and uses ``--threads`` torch threads. The
delaying proxy (:mod:`bench.testbed.proxy`) runs in the same event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time


def make_app(warm_models: dict, proxy=None):
    """The Starlette app over ``warm_models`` (name -> :class:`bench.testbed.models.Warm`)."""
    import torch
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from bench.testbed import models as m

    lock = threading.Lock()

    def _run(request_workload: str, fn):
        t_in = time.perf_counter()
        with lock:
            t0 = time.perf_counter()
            with torch.inference_mode():
                y = fn()
            t1 = time.perf_counter()
        body = m.encode_output(y)
        return Response(body, media_type="application/octet-stream",
                        headers={"x-server-ms": f"{(t1 - t0) * 1e3:.4f}", "x-queue-ms": f"{(t0 - t_in) * 1e3:.4f}"})

    def _model(request):
        name = request.path_params["workload"]
        w = warm_models.get(name)
        if w is None:
            return None, JSONResponse({"error": f"workload {name!r} not served; served: {sorted(warm_models)}"}, 404)
        return w, None

    # sync endpoints: Starlette runs them in its thread pool, so the proxy's event loop keeps moving
    async def infer(request):
        w, err = _model(request)
        if err:
            return err
        body = await request.body()
        x = m.decode_input(w, body)
        return await asyncio.to_thread(_run, w.name, lambda: w.model(x))

    async def tail(request):
        w, err = _model(request)
        if err:
            return err
        if w.tail is None:
            return JSONResponse({"error": f"workload {w.name!r} has no split tail"}, 404)
        f = m.decode_share(await request.body())
        return await asyncio.to_thread(_run, w.name, lambda: w.tail(f))

    async def sink(request):
        body = await request.body()  # a transfer probe: no compute, 8 bytes back
        return Response(len(body).to_bytes(8, "little"), media_type="application/octet-stream",
                        headers={"x-server-ms": "0", "x-queue-ms": "0"})

    async def health(request):
        return JSONResponse({"ok": True, "workloads": sorted(warm_models), "pid": os.getpid()})

    async def control(request):
        data = await request.json()
        try:
            proxy.set_rtt(str(data["radio"]), float(data["rtt_ms"]))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/health", health), Route("/infer/{workload}", infer, methods=["POST"]),
                             Route("/tail/{workload}", tail, methods=["POST"]),
                             Route("/sink", sink, methods=["POST"]), Route("/control", control, methods=["POST"])])


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m bench.testbed.server", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, required=True, help="server port (control and unshaped access)")
    p.add_argument("--proxy", action="append", default=[], metavar="RADIO:PORT",
                   help="a delaying proxy listener for RADIO on PORT (repeatable)")
    p.add_argument("--workloads", nargs="+", required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cpus", default="", help="comma-separated CPU ids to pin to (default: no pinning)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    import torch
    import uvicorn

    from bench.testbed import models as m
    from bench.testbed.proxy import DelayProxy

    torch.set_num_threads(args.threads)
    warm_models = {n: m.warm(n, with_split=True) for n in args.workloads}
    listen = {}
    for spec in args.proxy:
        radio, _, port = spec.partition(":")
        listen[radio] = (args.host, int(port))
    proxy = DelayProxy(listen, ("127.0.0.1", args.port))
    app = make_app(warm_models, proxy)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)

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
    """The server started inside ``link``'s namespace; stopped on exit (and with the namespace, always)."""

    def __init__(self, link, workloads, port: int = 8000, threads: int = 1, cpus: tuple[int, ...] = (),
                 start_timeout_s: float = 300.0, python: str = sys.executable):
        self.link, self.port = link, port
        self.url_host = link.ns_ip
        self.start_timeout_s = start_timeout_s
        self.cmd = link.ns_cmd([python, "-m", "bench.testbed.server", "--port", str(port),
                                *[a for r, p in sorted(link.ports.items()) for a in ("--proxy", f"{r}:{p}")],
                                "--workloads", *workloads, "--threads", str(threads)]
                               + (["--cpus", ",".join(map(str, cpus))] if cpus else []))
        self.proc = None

    def __enter__(self) -> "ServerProcess":
        import http.client
        import json
        import subprocess

        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:  # bounded wait for warm models
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"the testbed server exited with {self.proc.returncode}: {err}")
            try:
                c = http.client.HTTPConnection(self.url_host, self.port, timeout=2)
                c.request("GET", "/health")
                if json.loads(c.getresponse().read()).get("ok"):
                    c.close()
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        self.close()
        raise RuntimeError(f"the testbed server did not become healthy within {self.start_timeout_s:.0f} s")

    def __exit__(self, *exc) -> None:
        self.close()

    def control(self, radio: str, rtt_ms: float) -> None:
        import http.client
        import json

        c = http.client.HTTPConnection(self.url_host, self.port, timeout=10)
        c.request("POST", "/control", body=json.dumps({"radio": radio, "rtt_ms": rtt_ms}),
                  headers={"content-type": "application/json"})
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status != 200:
            raise RuntimeError(f"proxy control failed: {body!r}")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except Exception:  # noqa: BLE001 - last resort below
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
