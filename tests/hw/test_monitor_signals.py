"""``monitor`` and the sampler stop promptly, report a killed command as a shell does, forward signals.

No timing is asserted to the millisecond (speed goals live in ``python -m bench perf``): each test
bounds a wait far below what the old behaviour took (a whole sampling period: 100 s at 0.01 Hz).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hw.base import Availability, Meter, Sample
from hw.measurement import main, shell_returncode
from hw.sampler import Sampler

REPO = Path(__file__).resolve().parents[2]


class Counter(Meter):
    """A 3 W energy counter."""

    name = "counter_sig"

    def __init__(self):
        self.t0 = time.monotonic()

    @classmethod
    def probe(cls, **_):
        return Availability(True)

    def read(self) -> Sample:
        t = time.monotonic()
        return Sample(t_s=t, energy_j={"pkg": 3.0 * (t - self.t0)})


PLUGIN = '''
import time
import hw
from hw.base import Availability, Meter, Sample

class Counter(Meter):
    name = "counter_sig"
    def __init__(self):
        self.t0 = time.monotonic()
    @classmethod
    def probe(cls, **_):
        return Availability(True)
    def read(self):
        t = time.monotonic()
        return Sample(t_s=t, energy_j={"pkg": 3.0 * (t - self.t0)})

hw.METERS.register("counter_sig", Counter)
'''


@pytest.mark.parametrize("rate_hz", [0.01, 0.1, 1.0, 50.0, 1000.0])
@pytest.mark.parametrize("with_window", [False, True])
def test_sampler_stop_wakes_the_thread_at_any_rate(rate_hz, with_window):
    s = Sampler(Counter(), rate_hz).start()
    if with_window:
        with s.window():
            time.sleep(0.01)
    time.sleep(0.02)  # the thread is now waiting for its next read (100 s away at 0.01 Hz)
    stopper = threading.Thread(target=s.stop, daemon=True)
    stopper.start()
    stopper.join(timeout=5.0)  # the old sliced sleep finished its remaining period: 100 s at 0.01 Hz
    assert not stopper.is_alive(), f"stop() did not return at {rate_hz} Hz"


@pytest.mark.parametrize("raw, shell", [(0, 0), (3, 3), (255, 255), (-9, 137), (-15, 143), (-2, 130), (-1, 129)])
def test_shell_returncode(raw, shell):
    assert shell_returncode(raw) == shell


@pytest.fixture
def counter_meter():
    import hw

    hw.METERS.register("counter_sig", Counter)
    yield
    del hw.METERS["counter_sig"]


@pytest.mark.parametrize("sig, code", [("KILL", 137), ("TERM", 143), ("INT", 130)])
def test_killed_command_reported_as_the_shell_does(counter_meter, sigint_not_ignored, capsys, tmp_path, sig, code):
    out = tmp_path / "m.json"
    rc = main(["--adapter", "counter_sig", "--allow-short", "--json", str(out), "--", "sh", "-c", f"kill -{sig} $$"])
    assert rc == code
    assert f"exit code {code}" in capsys.readouterr().err
    import json

    assert json.loads(out.read_text())["returncode"] == code


def test_slow_rate_monitor_ends_with_its_command(counter_meter):
    done = threading.Event()
    result = {}

    def run():
        result["rc"] = main(["--adapter", "counter_sig", "--rate-hz", "0.01", "--", sys.executable, "-c",
                             "import time; time.sleep(0.1)"])
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(30.0), "monitor outlived its 0.1 s command (it waited for the sampler's 100 s period)"
    assert result["rc"] == 0


def _monitor_proc(tmp_path: Path, child_code: str) -> tuple[subprocess.Popen, Path]:
    plugin = tmp_path / "counter_plugin.py"
    plugin.write_text(PLUGIN)
    pidfile = tmp_path / "child.pid"
    env = {**os.environ, "EDGEBENCH_PLUGINS": str(plugin), "PYTHONPATH": str(REPO)}
    code = f"import os, pathlib, time; pathlib.Path({str(pidfile)!r}).write_text(str(os.getpid())); {child_code}"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "monitor", "--adapter", "counter_sig", "--allow-short",
                             "--", sys.executable, "-c", code], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert pidfile.exists(), proc.communicate(timeout=10)
    return proc, pidfile


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_to_monitor_reach_the_command(tmp_path, sigint_not_ignored, sig, code):
    proc, pidfile = _monitor_proc(tmp_path, "time.sleep(120)")
    child = int(pidfile.read_text())
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:  # reaped by monitor before it exits
        time.sleep(0.05)
    assert not _alive(child), "the command kept running after monitor was signalled"
    assert proc.returncode == code, err.decode()
    assert b"hw/measurement.py" not in err and b"bench/cli.py" not in err  # (the child's own KeyboardInterrupt may print)
