"""Sweep and engine settings fail at validation, in one line, not late: the scheduler address is
probed, repeated grid names and oversized grids are refused, and sweep seeds never collide."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config import MAX_SWEEP_CELLS, ParamsError, params_from_dict
from bench.paths import PARAMS_FILE, REPO_ROOT
from bench.pipeline.engine import Engine, EngineAddressError, probe_scheduler, split_address
from bench.seeding import derive_seeds


def _data(**grid_over):
    data = yaml.safe_load(PARAMS_FILE.read_text())
    grid = {"learner": "autoscale", "profiles": ["phone_sd845"], "configs": {"default": {}},
            "policies": ["cpu_only", "cloud_only"], "scenarios": ["wifi_strong"], **grid_over}
    data["sweep"] = {"enabled": True, "seeds": 2, "steps": 20, "grids": {"g1": grid}}
    return data


# --------------------------------------------------------------------------- engine.address

@pytest.mark.parametrize("address", ["nope", "tcp://host", "tcp://host:0", "tcp://host:70000", "http://h:1",
                                     "tcp://h:1 2", "tcp://:8786", "tcp://h:port", "x" * 400])
def test_malformed_address_refused_at_validation(address):
    with pytest.raises(ParamsError) as exc:
        params_from_dict({**_data(), "engine": {"backend": "dask", "address": address}})
    msg = str(exc.value)
    assert "\n" not in msg and "engine" in msg and "allowed" in msg


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://[::1]:8786",
                                     "tls://sched.example:8786", "inproc://10.0.0.1/1/1"])
def test_well_formed_addresses_parse(address):
    scheme, host, port = split_address(address)
    assert scheme in ("tcp", "tls", "inproc") and host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Service:
    """A loopback TCP service that greets with ``banner`` (None: says nothing) - not a Dask scheduler."""

    def __init__(self, banner: bytes | None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.banner, self.stop = banner, threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                if self.banner is not None:
                    conn.sendall(self.banner)
                self.stop.wait(1.5)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("banner", [b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\xff" * 8,
                                    b"\x00" * 8, b"hi", None])
def test_a_service_that_is_not_dask_is_named_in_one_line(banner):
    svc = _Service(banner)
    try:
        t0 = time.monotonic()
        with pytest.raises(EngineAddressError) as exc:
            probe_scheduler(f"tcp://127.0.0.1:{svc.port}", timeout_s=0.5)
        assert time.monotonic() - t0 < 10  # bounded by the probe's timeout, not Dask's 30 s
    finally:
        svc.close()
    assert "\n" not in str(exc.value) and "Dask" in str(exc.value)


def test_nothing_listening_is_one_line():
    with pytest.raises(EngineAddressError, match="no Dask scheduler reachable"):
        probe_scheduler(f"tcp://127.0.0.1:{_free_port()}", timeout_s=1.0)


def test_a_real_scheduler_passes_the_probe():
    pytest.importorskip("distributed")
    code = ("import asyncio\nfrom distributed import Scheduler\nasync def main():\n"
            "    async with Scheduler(host='127.0.0.1', port=0, dashboard_address=None) as s:\n"
            "        print(s.address, flush=True)\n        await asyncio.sleep(60)\nasyncio.run(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        probe_scheduler(address)
        probe_scheduler(address[len("tcp://"):])
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("banner", [b"SSH-2.0-OpenSSH_9.6\r\n", None])
def test_sweep_cli_with_a_bad_address_exits_2_in_one_line(tmp_path, banner):
    svc = _Service(banner) if banner is not None else None
    port = svc.port if svc else _free_port()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_data()))
    try:
        res = subprocess.run([sys.executable, "-m", "bench", "sweep", "--params", str(params), "--out",
                              str(tmp_path / "out"), "--backend", "dask", "--address", f"tcp://127.0.0.1:{port}",
                              "--no-progress"], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    finally:
        if svc:
            svc.close()
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --address") and "Traceback" not in res.stderr
    assert not (tmp_path / "out" / "store" / "train").exists() or not any((tmp_path / "out" / "store" / "train").iterdir())


def test_engine_dataclass_checks_the_form_too():
    with pytest.raises(ValueError, match="engine.address"):
        Engine("dask", address="tcp://nohostport")


# --------------------------------------------------------------------------- grid names and size

@pytest.mark.parametrize("key, value", [
    ("profiles", ["phone_sd845", "phone_sd845"]),
    ("policies", ["cpu_only", "cloud_only", "cpu_only"]),
    ("scenarios", ["wifi_strong", "wifi_strong"]),
])
def test_repeated_grid_names_refused(key, value):
    with pytest.raises(ParamsError) as exc:
        params_from_dict(_data(**{key: value}))
    msg = str(exc.value)
    assert "\n" not in msg and "sweep.grids.g1" in msg and key in msg and "at most once" in msg


def test_the_learner_listed_among_policies_is_not_a_repeat():
    p = params_from_dict(_data(policies=["autoscale", "cpu_only"]))
    assert p.sweep.grids["g1"].n_cells_per_seed == 2


@pytest.mark.parametrize("seeds, n_configs, ok", [(10_000, 1, True), (10_000, 7, False), (1, 60_000, False)])
def test_grid_size_bounded_before_anything_is_built(seeds, n_configs, ok):
    data = _data(configs={f"c{i}": {} for i in range(n_configs)}, scenarios=["wifi_strong", "wifi_weak"])
    data["sweep"]["seeds"] = seeds
    cells = seeds * n_configs * 3 * 2
    assert (cells <= MAX_SWEEP_CELLS) == ok
    if ok:
        params_from_dict(data)
        return
    with pytest.raises(ParamsError) as exc:
        params_from_dict(data)
    msg = str(exc.value)
    assert "\n" not in msg and f"{cells:,}" in msg and f"{MAX_SWEEP_CELLS:,}" in msg


# --------------------------------------------------------------------------- seeds

def test_sweep_seeds_never_collide_for_many_config_names():
    """10,000 seeds each for 300 config names: the old derivation raised for 91 of them."""
    for i in range(300):
        seeds = derive_seeds(20261123, 10_000, "sweep", "g", "phone_sd845", f"c{i}")
        assert len(set(seeds)) == 10_000 and all(0 <= s < 2**31 for s in seeds)


@settings(max_examples=60, deadline=None)
@given(root=st.integers(0, 2**63 - 1), n=st.integers(0, 3000), extra=st.integers(1, 50),
       name=st.text(min_size=0, max_size=12))
def test_derived_seeds_are_distinct_and_prefix_stable(root, n, extra, name):
    a = derive_seeds(root, n, "sweep", name)
    b = derive_seeds(root, n + extra, "sweep", name)
    assert len(a) == n and len(set(b)) == n + extra
    assert b[:n] == a  # more seeds never change the first ones (a grown sweep reuses its cells)


def test_collision_free_lists_are_unchanged():
    """Lists that never collided keep their bytes: the first words of the same stream."""
    import numpy as np

    from bench.seeding import seed_sequence

    words = seed_sequence(7, "evaluate", "suite").generate_state(50, dtype=np.uint32)
    assert derive_seeds(7, 50, "evaluate", "suite") == [int(w >> 1) for w in words]


@pytest.mark.parametrize("workers", [-1, 10**9, 2.5, True])
def test_engine_workers_checked_on_the_command_line_path_too(workers):
    """``python -m bench sweep --workers N`` builds the Engine directly (dataclasses.replace), not via params.yaml."""
    with pytest.raises(ValueError, match="engine.workers"):
        Engine("local-processes", workers=workers)
