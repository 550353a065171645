"""A real, shaped link on one machine: a network namespace, a veth pair and ``htb`` classes.

The cloud server lives in its own network namespace ``bt<tag>``, joined to the
host by a veth pair ``bt<tag>h`` (host side) / ``bt<tag>n`` (namespace side) on
a /30 of 10.213.0.0/16. Each direction is shaped by an ``htb`` qdisc on the
sending side's veth (host side: uplink, edge -> server; namespace side:
downlink) with one class per emulated radio, selected by TCP port (the radio's
proxy port), plus an unshaped default class for control traffic. Rates follow a
scenario's trace through ``tc class change``. The kernel here has no ``netem``;
delay is added by the user-space proxy (:mod:`bench.testbed.proxy`).

Everything created is recorded in a state file under ``/run/bench-testbed`` and
removed by :meth:`Link.close` (the context manager's exit, ``atexit``, SIGTERM),
or, after a hard crash, by :func:`cleanup_all` (``python -m bench
testbed-cleanup``): it deletes only namespaces and links whose names match the
testbed's pattern, and kills only processes inside those namespaces.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path("/run/bench-testbed")
NAME_RE = re.compile(r"^bt\d{1,8}$")
LINK_RE = re.compile(r"^bt\d{1,8}[hn](@.*)?$")
#: htb counts whole Ethernet frames; TCP goodput is MSS (1448 B with timestamps) per 1514 B frame
#: at the veth's 1500 B MTU, so a class that must deliver ``g`` Mbit/s of goodput gets g * 1514/1448.
FRAME_OVERHEAD = 1514.0 / 1448.0
MIN_RATE_KBIT = 8  # htb's smallest useful rate; a "dead" radio still passes a trickle
CONTROL_RATE = "1gbit"
GSO_MAX_BYTES = 1500


class TestbedUnavailable(RuntimeError):
    """This machine cannot build the testbed (no root, no ``ip``/``tc``, no network namespaces)."""


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(args, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed (exit {res.returncode}): {res.stderr.strip()}")
    return res


def unavailable_reason() -> str | None:
    """Why the testbed cannot run here (one line), or None when it can."""
    if os.geteuid() != 0:
        return "the testbed needs root (network namespaces, veth, tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the testbed needs `{tool}` (apt-get install iproute2)"
    res = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if res.returncode != 0:
        return f"network namespaces unavailable: {res.stderr.strip()}"
    return None


def _mbit(rate_mbps: float) -> str:
    kbit = max(int(round(rate_mbps * 1e3 * FRAME_OVERHEAD)), MIN_RATE_KBIT)
    return f"{kbit}kbit"


@dataclass
class Link:
    """The namespace + veth + htb link. Use as a context manager; see the module docstring.

    ``ports`` maps a radio name to the TCP port its proxy listens on inside the namespace.
    """

    ports: dict[str, int]
    tag: str = ""
    rates_mbps: dict[str, tuple[float, float]] = field(default_factory=dict)  # radio -> (up, down) goodput
    _up: bool = False

    def __post_init__(self):
        if not self.tag:
            self.tag = str(os.getpid() % 10**8)
        n = int(self.tag) % (250 * 64)
        self.netns = f"bt{self.tag}"
        self.host_if, self.ns_if = f"bt{self.tag}h", f"bt{self.tag}n"
        base = 4 * (n % 64)
        self.subnet_octet = 1 + n // 64
        self.host_ip = f"10.213.{self.subnet_octet}.{base + 1}"
        self.ns_ip = f"10.213.{self.subnet_octet}.{base + 2}"
        self.classes = {radio: 10 * (i + 1) for i, radio in enumerate(sorted(self.ports))}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Link":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        if self._up:  # already built (open() then `with link:`)
            return
        reason = unavailable_reason()
        if reason:
            raise TestbedUnavailable(reason)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self._state_file().write_text(json.dumps({"netns": self.netns, "links": [self.host_if], "pid": os.getpid()}))
        atexit.register(self.close)
        self._prev_term = signal.getsignal(signal.SIGTERM)
        if self._prev_term in (signal.SIG_DFL, None):
            # SIGTERM would end the process without atexit; turn it into SystemExit so cleanup runs
            signal.signal(signal.SIGTERM, _raise_exit)
        self._up = True
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        ns = ["ip", "netns", "exec", self.netns]
        _run(["ip", "netns", "add", self.netns])
        _run(["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if])
        _run(["ip", "link", "set", self.ns_if, "netns", self.netns])
        _run(["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if])
        _run(["ip", "link", "set", self.host_if, "up"])
        _run(["ip", "-n", self.netns, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if])
        _run(["ip", "-n", self.netns, "link", "set", self.ns_if, "up"])
        _run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        # No segmentation offload on the veth: htb would let a 64 KB GSO super-packet through on one token
        # check and pay the debt afterwards, so short transfers would beat the shaped rate.
        _run(["ip", "link", "set", "dev", self.host_if, "gso_max_size", str(GSO_MAX_BYTES), "gso_max_segs", "1"])
        _run(["ip", "-n", self.netns, "link", "set", "dev", self.ns_if, "gso_max_size", str(GSO_MAX_BYTES),
              "gso_max_segs", "1"])
        for prefix, dev, match in (([], self.host_if, "dport"), (ns, self.ns_if, "sport")):
            tc = prefix + ["tc"]
            _run(tc + ["qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "999"])
            _run(tc + ["class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", "10gbit"])
            _run(tc + ["class", "add", "dev", dev, "parent", "1:1", "classid", "1:999", "htb", "rate", CONTROL_RATE])
            for radio, cid in self.classes.items():
                _run(tc + ["class", "add", "dev", dev, "parent", "1:1", "classid", f"1:{cid}", "htb",
                           "rate", "1gbit", "ceil", "1gbit"])
                _run(tc + ["filter", "add", "dev", dev, "protocol", "ip", "parent", "1:", "prio", "1", "u32",
                           "match", "ip", match, str(self.ports[radio]), "0xffff", "flowid", f"1:{cid}"])

    def close(self) -> None:
        """Remove the namespace (its processes, its veth end and qdiscs go with it) and the host veth."""
        if not self._up:
            return
        self._up = False
        kill_namespace_processes(self.netns)
        _run(["ip", "netns", "del", self.netns], check=False)
        _run(["ip", "link", "del", self.host_if], check=False)  # normally gone with the namespace
        self._state_file().unlink(missing_ok=True)
        try:
            atexit.unregister(self.close)
            if signal.getsignal(signal.SIGTERM) is _raise_exit:
                signal.signal(signal.SIGTERM, self._prev_term or signal.SIG_DFL)
        except (ValueError, TypeError):  # not in the main thread
            pass

    def _state_file(self) -> Path:
        return STATE_DIR / f"{self.netns}.json"

    # ------------------------------------------------------------------ shaping
    def set_rate(self, radio: str, up_mbps: float, down_mbps: float) -> None:
        """Shape ``radio``'s class to ``up_mbps`` / ``down_mbps`` of TCP goodput (``tc class change``)."""
        if self.rates_mbps.get(radio) == (up_mbps, down_mbps):
            return
        cid = self.classes[radio]
        for prefix, dev, rate in (([], self.host_if, up_mbps), (["ip", "netns", "exec", self.netns], self.ns_if, down_mbps)):
            r = _mbit(rate)
            _run(prefix + ["tc", "class", "change", "dev", dev, "parent", "1:1", "classid", f"1:{cid}", "htb",
                           "rate", r, "ceil", r])
        self.rates_mbps[radio] = (up_mbps, down_mbps)

    def ns_cmd(self, args: list[str]) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.netns, *args]


def _raise_exit(signum, frame):
    raise SystemExit(128 + signum)


def kill_namespace_processes(netns: str, timeout_s: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process inside the testbed namespace ``netns`` (ours by construction)."""
    if not NAME_RE.match(netns):
        raise ValueError(f"{netns!r} is not a testbed namespace name")
    killed: set[int] = set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            # listed again each round: a process may still be entering the namespace (`ip netns exec`)
            res = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
            pids = [int(p) for p in res.stdout.split() if p.isdigit() and _alive(int(p))]
            if not pids:
                return sorted(killed)
            for p in pids:
                try:
                    os.kill(p, sig)
                    if sig == signal.SIGTERM:
                        os.kill(p, signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
                except ProcessLookupError:
                    pass
            killed.update(pids)
            time.sleep(0.05)
    return sorted(killed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def leftovers() -> dict[str, list[str]]:
    """Testbed namespaces and host links that exist now (normally none)."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    names = [line.split()[0] for line in ns if line.strip() and NAME_RE.match(line.split()[0])]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout.splitlines()
    devs = []
    for line in links:
        parts = line.split(": ")
        if len(parts) > 1 and LINK_RE.match(parts[1]):
            devs.append(parts[1].split("@")[0])
    return {"netns": names, "links": devs}


def cleanup_all(names: list[str] | None = None) -> dict[str, list[str]]:
    """Remove every testbed namespace (and the processes in it) and host link left by a crashed run
    (only those of the namespaces ``names``, e.g. ``["bt1234"]``, when given)."""
    found = leftovers()
    if names is not None:
        keep = set(names)
        found = {"netns": [n for n in found["netns"] if n in keep],
                 "links": [d for d in found["links"] if d[:-1] in keep]}
    for ns in found["netns"]:
        kill_namespace_processes(ns)
        _run(["ip", "netns", "del", ns], check=False)
    for dev in found["links"]:
        _run(["ip", "link", "del", dev], check=False)
    if STATE_DIR.exists():
        for f in STATE_DIR.glob("bt*.json"):
            if names is None or f.stem in names:
                f.unlink(missing_ok=True)
    return found
