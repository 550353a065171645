"""The testbed server as a service: bounded bodies, shapes checked before allocation, a 4xx with a
one-line reason for every malformed request, head/body timeouts, a connection cap, a token on
/control, one bound address, logs that cannot fill a pipe.

The server runs as a subprocess on 127.0.0.1 (no namespace needed), started by the same launcher
:class:`bench.testbed.server.ServerProcess` uses; one test needs a namespace and skips without one.
Loopback only, every loop bounded.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("uvicorn")
pytest.importorskip("torch")

from bench.testbed import server as srv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = "mobilenet_v2"
TOKEN = "t0k3n-for-this-test-run"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port, proxy_port = _free_port(), _free_port()
    cmd = srv.server_argv(sys.executable, "127.0.0.1", port, {"wifi": proxy_port}, [WORKLOAD], threads=1,
                          sink_max_bytes=300_000, extra=("--header-timeout-s", "1", "--body-timeout-s", "1",
                                                         "--max-connections", "20", "--limit-concurrency", "16"))
    proc, log = srv.launch(cmd, TOKEN)
    try:
        srv.wait_healthy(proc, log, "127.0.0.1", port, 300)
        yield {"port": port, "proxy_port": proxy_port, "proc": proc, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def warm():
    from bench.testbed import models as m

    return m.warm(WORKLOAD, with_split=True, runs=1)


def _post(port, path, body=b"", headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _health_ms(port) -> float:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t0 = time.perf_counter()
    c.request("GET", "/health")
    r = c.getresponse()
    ok = json.loads(r.read())["ok"]
    c.close()
    assert ok
    return (time.perf_counter() - t0) * 1e3


def _share(header: dict | bytes, payload: bytes = b"") -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<I", len(h)) + h + payload


def _one_line_4xx(status, body, allowed=(400, 403, 404, 408, 409, 413)):
    assert status in allowed, (status, body[:300])
    err = json.loads(body)["error"]
    assert err and "\n" not in err and "Traceback" not in err
    return err


# --------------------------------------------------------------------------- valid traffic still works

def test_valid_requests_are_served(server, warm):
    from bench.testbed import models as m

    port = server["port"]
    status, body = _post(port, f"/infer/{WORKLOAD}", m.encode_input(warm))
    assert status == 200 and len(body) == 4000
    share, _ = m.encode_share(warm.head(warm.example), 0.5)
    status, body = _post(port, f"/tail/{WORKLOAD}", share)
    assert status == 200 and np.isfinite(np.frombuffer(body, np.float32)).all()
    status, body = _post(port, "/sink", bytes(200_000))
    assert status == 200 and int.from_bytes(body, "little") == 200_000
    srv.control("127.0.0.1", port, TOKEN, "wifi", 30.0)
    srv.control("127.0.0.1", port, TOKEN, "wifi", 0)


# --------------------------------------------------------------------------- malformed requests: a table

def _cut(warm):
    return list(srv.tail_spec(warm))


def _malformed(warm):
    cut = _cut(warm)
    c = cut[1]
    good = {"shape": cut, "channels": [0, 1], "scale": 0.1, "zero_point": 0}
    plane = math.prod(cut) // c
    pay2 = bytes(2 * plane)
    tail = f"/tail/{WORKLOAD}"
    return {
        "infer empty": (f"/infer/{WORKLOAD}", b"", {}),
        "infer short": (f"/infer/{WORKLOAD}", b"x" * 100, {}),
        "infer too long": (f"/infer/{WORKLOAD}", bytes(3 * 224 * 224 + 1), {}),
        "infer unknown workload": ("/infer/nope", b"x", {}),
        "infer huge name": ("/infer/" + "a" * 3000, b"x", {}),
        "tail 3 bytes": (tail, b"abc", {}),
        "tail header length past body": (tail, struct.pack("<I", 10_000) + b"{}", {}),
        "tail header length 4 GiB": (tail, b"\xff\xff\xff\xff" + b"{}", {}),
        "tail header not json": (tail, _share(b"{not json"), {}),
        "tail header latin-1": (tail, _share(b'{"shape": "\xe9"}'), {}),
        "tail header a list": (tail, _share([1, 2]), {}),
        "tail missing key": (tail, _share({k: v for k, v in good.items() if k != "scale"}), {}),
        "tail extra key": (tail, _share({**good, "x": 1}), {}),
        "tail 20000x20000 claim": (tail, _share({**good, "shape": [1, 1, 20000, 20000]}), {}),
        "tail wrong rank": (tail, _share({**good, "shape": cut[:-1]}), {}),
        "tail float dims": (tail, _share({**good, "shape": [float(d) for d in cut]}), {}),
        "tail channel out of range": (tail, _share({**good, "channels": [0, c]}), {}),
        "tail negative channel": (tail, _share({**good, "channels": [-1, 0]}), {}),
        "tail repeated channel": (tail, _share({**good, "channels": [1, 1]}), {}),
        "tail bool channel": (tail, _share({**good, "channels": [True, 2]}), {}),
        "tail too many channels": (tail, _share({**good, "channels": list(range(c + 1))}), {}),
        "tail scale inf": (tail, _share({**good, "scale": float("inf")}), {}),
        "tail scale nan": (tail, _share({**good, "scale": float("nan")}), {}),
        "tail scale 0": (tail, _share({**good, "scale": 0}), {}),
        "tail scale string": (tail, _share({**good, "scale": "1"}), {}),
        "tail zero point 300": (tail, _share({**good, "zero_point": 300}, pay2), {}),
        "tail zero point float": (tail, _share({**good, "zero_point": 1.5}, pay2), {}),
        "tail payload short": (tail, _share(good, pay2[:-1]), {}),
        "tail payload long": (tail, _share(good, pay2 + b"x"), {}),
        "tail deep json": (tail, _share(b"[" * 100_000), {}),
        "sink over limit": ("/sink", bytes(300_001), {}),
        "control no token": ("/control", b'{"radio": "wifi", "rtt_ms": 1}', {}),
        "control wrong token": ("/control", b'{"radio": "wifi", "rtt_ms": 1}', {srv.TOKEN_HEADER: "guess"}),
        "control invalid json": ("/control", b"{", {srv.TOKEN_HEADER: TOKEN}),
        "control not utf-8": ("/control", b'{"radio": "\xff"}', {srv.TOKEN_HEADER: TOKEN}),
        "control a list": ("/control", b"[1]", {srv.TOKEN_HEADER: TOKEN}),
        "control Infinity": ("/control", b'{"radio": "wifi", "rtt_ms": Infinity}', {srv.TOKEN_HEADER: TOKEN}),
        "control NaN": ("/control", b'{"radio": "wifi", "rtt_ms": NaN}', {srv.TOKEN_HEADER: TOKEN}),
        "control 1e400": ("/control", b'{"radio": "wifi", "rtt_ms": 1e400}', {srv.TOKEN_HEADER: TOKEN}),
        "control negative": ("/control", b'{"radio": "wifi", "rtt_ms": -1}', {srv.TOKEN_HEADER: TOKEN}),
        "control huge": ("/control", b'{"radio": "wifi", "rtt_ms": 1e9}', {srv.TOKEN_HEADER: TOKEN}),
        "control bool": ("/control", b'{"radio": "wifi", "rtt_ms": true}', {srv.TOKEN_HEADER: TOKEN}),
        "control string rtt": ("/control", b'{"radio": "wifi", "rtt_ms": "5"}', {srv.TOKEN_HEADER: TOKEN}),
        "control unknown radio": ("/control", b'{"radio": "5g", "rtt_ms": 5}', {srv.TOKEN_HEADER: TOKEN}),
        "control radio number": ("/control", b'{"radio": 1, "rtt_ms": 5}', {srv.TOKEN_HEADER: TOKEN}),
        "control missing key": ("/control", b'{"radio": "wifi"}', {srv.TOKEN_HEADER: TOKEN}),
        "control extra key": ("/control", b'{"radio": "wifi", "rtt_ms": 1, "x": 0}', {srv.TOKEN_HEADER: TOKEN}),
        "control body over 1 KiB": ("/control", b" " * 2000, {srv.TOKEN_HEADER: TOKEN}),
        "content-length not a number": ("/sink", b"", {"content-length": "abc"}),
    }


def test_every_malformed_request_is_a_one_line_4xx(server, warm):
    port = server["port"]
    rss0 = _rss_mib(server["proc"].pid)
    results = {}
    for name, (path, body, headers) in _malformed(warm).items():
        try:
            status, raw = _post(port, path, body, headers)
        except (ConnectionError, http.client.HTTPException) as exc:
            results[name] = f"connection error {exc!r}"
            continue
        if status >= 500 or status == 200:
            results[name] = f"{status}: {raw[:200]!r}"
            continue
        if raw.startswith(b"{"):
            _one_line_4xx(status, raw)
    assert not results, results
    assert _rss_mib(server["proc"].pid) - rss0 < 200  # the 20000x20000 claim allocated nothing (was ~1.5 GiB)
    srv.control("127.0.0.1", port, TOKEN, "wifi", 0)  # /control still works after all that


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


_JSON_VALUES = st.one_of(st.integers(-10**20, 10**20), st.floats(), st.text(max_size=5),
                        st.lists(st.integers(-5, 100000), max_size=5), st.booleans(), st.none())
_JSON_BODIES = st.dictionaries(st.sampled_from(["radio", "rtt_ms", "shape", "channels", "scale", "zero_point"]),
                               _JSON_VALUES).map(lambda d: json.dumps(d).encode())
_FRAMED = st.builds(lambda h, p: struct.pack("<I", len(h)) + h + p, st.binary(max_size=200), st.binary(max_size=500))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from([f"/infer/{WORKLOAD}", f"/tail/{WORKLOAD}", "/sink", "/control"]),
       body=st.one_of(st.binary(max_size=2000), _FRAMED, _JSON_BODIES), with_token=st.booleans())
def test_fuzzed_bodies_never_get_a_5xx(server, path, body, with_token):
    headers = {srv.TOKEN_HEADER: TOKEN} if with_token else {}
    status, raw = _post(server["port"], path, body, headers)
    assert status < 500, (status, raw[:200])
    if status != 200:
        _one_line_4xx(status, raw)
    elif path == "/control":  # accepted only when valid: restore a zero delay for the other tests
        data = json.loads(body)
        assert math.isfinite(data["rtt_ms"]) and 0 <= data["rtt_ms"] <= srv.RTT_MAX_MS
        srv.control("127.0.0.1", server["port"], TOKEN, "wifi", 0)


# --------------------------------------------------------------------------- bodies: bounded before they are read

def test_declared_oversize_body_refused_before_it_is_sent(server):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        s.sendall(b"POST /sink HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head[:100]


def test_chunked_body_over_the_limit_is_cut_off(server):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        s.sendall(b"POST /control HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n"
                  + f"{srv.TOKEN_HEADER}: {TOKEN}\r\n\r\n".encode())
        chunk = b"x" * 1000
        got = b""
        for _ in range(50):  # 50 KB offered; the limit is 1 KiB
            try:
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
            except OSError:
                break
            s.settimeout(0.05)
            try:
                got += s.recv(4096)
            except (TimeoutError, socket.timeout):
                pass
            if got:
                break
        s.settimeout(10)
        if not got:
            got = s.recv(4096)
    assert got.startswith(b"HTTP/1.1 413"), got[:100]


# --------------------------------------------------------------------------- timeouts and the connection cap

def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        data = sock.recv(4096)
    except (TimeoutError, socket.timeout):
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 4")


@pytest.mark.parametrize("partial", [b"", b"GET /hea", b"POST /sink HTTP/1.1\r\nhost: x\r\n"])
def test_a_request_head_that_never_completes_is_closed(server, partial):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        if partial:
            s.sendall(partial)
        assert _closed_within(s, 15.0)  # the head timeout is 1 s here; uvicorn alone never closed it


def test_a_body_that_never_completes_gets_408(server):
    with socket.create_connection(("127.0.0.1", server["port"]), timeout=10) as s:
        s.sendall(b"POST /sink HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n" + b"x" * 10)
        s.settimeout(15)
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 408"), head[:100]


def test_half_open_connections_do_not_stop_health(server):
    socks = []
    try:
        for _ in range(60):  # thrice the cap of 20
            try:
                socks.append(socket.create_connection(("127.0.0.1", server["port"]), timeout=5))
            except OSError:
                break
        deadline = time.monotonic() + 20  # head timeout 1 s: every idle one is closed by then
        while time.monotonic() < deadline:
            try:
                _health_ms(server["port"])
                break
            except (OSError, http.client.HTTPException, KeyError, ValueError):
                time.sleep(0.2)
        else:
            pytest.fail("/health did not answer while half-open connections were held")
        closed = sum(_closed_within(s, 5.0) for s in socks)
        assert closed == len(socks)
    finally:
        for s in socks:
            s.close()


# --------------------------------------------------------------------------- floods and logs

def test_health_answers_fast_after_1000_malformed_requests(server, warm):
    port = server["port"]
    table = list(_malformed(warm).values())
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = 0
    try:
        while sent < 1000:
            path, body, headers = table[sent % len(table)]
            try:
                c.request("POST", path, body=body, headers=headers)
                r = c.getresponse()
                r.read()
                assert r.status < 500
                if r.getheader("connection", "").lower() == "close":
                    c.close()
            except (ConnectionError, http.client.HTTPException):
                c.close()
            sent += 1
    finally:
        c.close()
    assert server["proc"].poll() is None
    assert min(_health_ms(port) for _ in range(5)) < 100
    log = srv.read_tail(server["log"], 1 << 22)
    assert "Traceback" not in log
    assert len(log.splitlines()) < 400, "the log is not rate-limited"  # 1,000 rejects logged at <= 5/s + burst


def test_launcher_never_pipes_the_server_log():
    proc, log = srv.launch([sys.executable, "-c", "import sys; sys.stderr.write('x' * 300000)"], TOKEN)
    try:
        assert proc.wait(30) == 0  # 300 KB of stderr: an unread pipe would have blocked at 64 KiB
        assert proc.stderr is None and len(srv.read_tail(log, 1 << 20)) == 300_000
    finally:
        log.close()


def test_token_reaches_the_server_in_its_environment_only():
    code = f"import os, sys; sys.stderr.write(os.environ.get({srv.TOKEN_ENV!r}, '') + ' ' + ' '.join(sys.argv))"
    proc, log = srv.launch([sys.executable, "-c", code], "secret-123")
    try:
        proc.wait(30)
        out = srv.read_tail(log)
    finally:
        log.close()
    assert out.startswith("secret-123 ") and "secret-123" not in out[len("secret-123 "):]


def test_rate_limit_filter_bounds_records_and_counts_the_rest():
    f = srv.RateLimitFilter(rate=5)
    rec = lambda: logging.LogRecord("x", logging.WARNING, __file__, 1, "bad request %d", (1,), None)  # noqa: E731
    passed = sum(f.filter(rec()) for _ in range(1000))
    assert 1 <= passed <= 12 and f.suppressed["x"] >= 988
    time.sleep(0.3)
    r = rec()
    assert f.filter(r) and "suppressed" in r.getMessage()


# --------------------------------------------------------------------------- binding

def test_listens_on_the_given_address_only(server):
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", server["port"]), timeout=2).close()
    _health_ms(server["port"])


@pytest.mark.parametrize("argv", [["--port", "1", "--workloads", "x"],  # no --host: never 0.0.0.0 by default
                                  ["--host", "h", "--port", "1", "--workloads", "x", "--header-timeout-s", "inf"],
                                  ["--host", "h", "--port", "1", "--workloads", "x", "--max-connections", "0"]])
def test_server_arguments_are_checked(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        srv.parse_args(argv)
    assert exc.value.code == 2


def test_in_a_namespace_binds_the_veth_and_control_needs_the_token():
    from bench.testbed.link import Link, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(str(reason))
    import subprocess

    with Link({"wifi": 9011}) as link, srv.ServerProcess(link, [WORKLOAD], port=8011) as proc:
        proc.control("wifi", 20.0)
        status, body = _post_host(link.ns_ip, 8011, "/control", b'{"radio": "wifi", "rtt_ms": 1}', {})
        assert status == 403
        probe = ("import socket\ntry:\n    socket.create_connection(('127.0.0.1', 8011), timeout=2)\n"
                 "    print('open')\nexcept OSError:\n    print('refused')\n")
        out = subprocess.run(link.ns_cmd([sys.executable, "-c", probe]), capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "refused"  # not on the namespace's loopback: only on its veth address


def _post_host(host, port, path, body, headers):
    c = http.client.HTTPConnection(host, port, timeout=30)
    try:
        c.request("POST", path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()
