"""RaplMeter.poll's lean common case agrees with the careful read path on every counter history."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.base import MeterError
from hw.rapl import RaplMeter

from hw_fakes import make_powercap, write

RANGE = 1_000_000_000  # 1 kJ: small enough that the histories below wrap


def _tree(root, pkg, dram):
    return make_powercap(root, {"intel-rapl:0": ("package-0", pkg, RANGE), "intel-rapl:0:0": ("core", 1, RANGE),
                                "intel-rapl:0:1": ("dram", dram, RANGE)})


# one step of the hardware: each total counter advances (within one wrap), or is overwritten with garbage/a reset
_advance = st.integers(0, 50_000_000)
_step = st.one_of(st.tuples(_advance, _advance),
                  st.tuples(st.sampled_from(["garbage", "-5", "reset"]), _advance))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.tuples(st.integers(0, RANGE - 1), st.integers(0, RANGE - 1)), steps=st.lists(_step, max_size=12))
def test_poll_agrees_with_read(tmp_path_factory, start, steps):
    """Two meters on one tree: one polled (the sampler's path), one read (the window edges' path). After every
    step they report the same cumulative energy of the total's zones, or fail with the same error class."""
    root = _tree(tmp_path_factory.mktemp("rapl"), *start)
    polled, read = RaplMeter(root), RaplMeter(root)
    files = [root / "intel-rapl:0/energy_uj", root / "intel-rapl:0:1/energy_uj"]
    values = list(start)
    try:
        for step in steps:
            for i, (f, adv) in enumerate(zip(files, step)):
                if adv == "garbage" or adv == "-5":
                    write(f, adv)
                elif adv == "reset":  # a decrease no wrap explains: the counter restarts low
                    values[i] = 0 if values[i] > RANGE // 2 else RANGE // 2
                    write(f, values[i])
                else:
                    values[i] = (values[i] + adv) % RANGE
                    write(f, values[i])
            outcomes = []
            for m, fn in ((polled, polled.poll), (read, read.read)):
                try:
                    s = fn()
                    outcomes.append({r: s.energy_j[r] for r in m.total})
                except MeterError as exc:
                    outcomes.append(type(exc))
            assert outcomes[0] == pytest.approx(outcomes[1]) if isinstance(outcomes[0], dict) else \
                outcomes[0] == outcomes[1]
            for i, f in enumerate(files):  # repair garbage so that the next step starts from a counter again
                if f.read_text().strip() in ("garbage", "-5"):
                    write(f, values[i])
    finally:
        polled.close()
        read.close()


def test_poll_of_a_closed_meter_never_reads_a_reused_descriptor(tmp_path):
    root = _tree(tmp_path / "rapl", 1_000, 2_000)
    m = RaplMeter(root)
    m.poll()
    m.close()
    other = tmp_path / "other"
    other.write_text("999999999\n")
    fds = [os.open(other, os.O_RDONLY) for _ in range(4)]  # take the numbers the meter's descriptors had
    try:
        with pytest.raises(MeterError, match="closed"):
            m.poll()
    finally:
        for fd in fds:
            os.close(fd)


def test_sampler_thread_clock_counts_the_thread_only(tmp_path):
    """The sampling thread's CPU clock advances while it samples and does not count the caller's work."""
    import time

    from hw.sampler import Sampler

    m = RaplMeter(_tree(tmp_path / "rapl", 1_000, 2_000))
    s = Sampler(m, rate_hz=100)
    assert s.thread_cpu_clock() is None  # not started
    with s:
        clock = s.thread_cpu_clock()
        if clock is None:
            pytest.skip("no per-thread CPU clock on this platform")
        t0, c0 = time.clock_gettime(clock), time.thread_time()
        end = time.thread_time() + 0.2
        while time.thread_time() < end:  # the caller burns 0.2 CPU-s
            pass
        while s.n_reads < 5:
            time.sleep(0.01)
        thread_s = time.clock_gettime(clock) - t0
        caller_s = time.thread_time() - c0
    m.close()
    assert 0 < thread_s < caller_s  # the sampler's reads cost something, and not the caller's 0.2 s
