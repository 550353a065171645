"""Resumable sweeps: journal, torn lines, kill -9 + resume, failed cells, DVFS restore, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from hw.traces import read_trace
from hw import best_available_meter
from hw.base import Availability, DeviceGoneError, Meter, Sample
from hw.cli import main
from hw.collect import (JournalError, cell_id, collect, journal_path, quarantine_path, read_journal, scan_journal,
                        sweep)
from hw.dvfs import LocalFS, SysfsDvfs
from hw.replay import ReplayMeter

from hw_fakes import LOGS, RampMeter, make_cpufreq, make_powercap

REPO = Path(__file__).resolve().parents[2]


def fake_runner(calls):
    def run(cell):
        calls.append(cell["workload"])
        if cell["workload"] == "broken":
            raise RuntimeError("model failed to load")
        return {"latency_ms": 2.0, "latency_p95_ms": 3.0, "n_runs": 4}
    return run


def ConstMeter(watts=5.0, fail_after=None):  # noqa: N802 - reads like the class it stands for
    return RampMeter(a=watts, b=0.0, fail_after=fail_after)


def test_collect_rows_energy_and_failed_cells(tmp_path):
    out = tmp_path / "t.parquet"
    cells = sweep(["a", "broken", "b"], targets=["cpu", "gpu"], frequencies=[{"cpu_mhz": 1000.0}])
    calls = []
    frame = collect(cells, fake_runner(calls), out, ConstMeter(5.0), rate_hz=100, device="box", progress=False)
    assert len(frame) == 6 and list(frame["workload"]) == ["a", "a", "broken", "broken", "b", "b"]
    ok = frame[frame["error"] == ""]
    bad = frame[frame["error"] != ""]
    assert len(bad) == 2 and bad["error"].str.contains("model failed to load").all()
    # constant 5 W: mean power is 5 W and energy per inference = 5 W * window / n_runs
    assert ok["power_w"].tolist() == pytest.approx([5.0] * 4)
    window_s = ok["energy_mj"] * 4 / 1e3 / 5.0
    assert ((window_s > 0) & (window_s < 5)).all() and (ok["meter"] == "ramp").all() and (ok["cpu_mhz"] == 1000.0).all()
    frame2, meta = read_trace(out)
    pd.testing.assert_frame_equal(frame, frame2)
    assert meta["adapter"] == "ramp" and len(meta["cell_ids"]) == 6
    calls.clear()
    same = dict(rate_hz=100, device="box", progress=False)
    collect(cells, fake_runner(calls), out, ConstMeter(5.0), **same)  # rerun: everything already done
    assert calls == []
    collect(cells, fake_runner(calls), out, ConstMeter(5.0), retry_failed=True, **same)
    assert calls == ["broken", "broken"]
    assert len(read_trace(out)[0]) == 6
    with pytest.raises(ValueError, match="duplicate"):
        collect(cells + cells[:1], fake_runner(calls), out, ConstMeter(5.0), **same)
    with pytest.raises(ValueError, match="unknown key"):
        sweep(["a"], frequencies=[{"cpu_ghz": 1}])


def test_runner_with_unknown_column_becomes_error_row(tmp_path):
    frame = collect([{"workload": "a", "target": "cpu"}], lambda c: {"latency_s": 1}, tmp_path / "x.parquet", progress=False)
    assert "latency_s" in frame.loc[0, "error"] and "allowed" in frame.loc[0, "error"]


def test_torn_last_line_tolerated_and_repaired(tmp_path):
    out = tmp_path / "t.parquet"
    cells = sweep(["a", "b", "c"])
    collect(cells[:2], fake_runner([]), out, progress=False)
    j = journal_path(out)
    with open(j, "ab") as fh:
        fh.write(b'{"cell_id": "' + cell_id(cells[2]).encode() + b'", "row": {"workl')  # crash mid-write
    assert set(read_journal(j)) == {cell_id(c) for c in cells[:2]}
    calls = []
    frame = collect(cells, fake_runner(calls), out, progress=False)
    assert calls == ["c"] and len(frame) == 3
    assert all(json.loads(l) for l in j.read_text().splitlines())

    # a corrupt line in the middle and a row with an unknown column: quarantined, the rest goes on
    lines = j.read_text().splitlines()  # header, a, b, c
    lines[1] = lines[1].replace('"cell_id"', "garbage", 1)
    lines[2] = lines[2].replace('"latency_ms"', '"latency_s"', 1)
    j.write_text("\n".join(lines) + "\n")
    assert set(read_journal(j)) == {cell_id(cells[2])}  # reading alone changes nothing
    calls.clear()
    frame = collect(cells, fake_runner(calls), out, progress=False)
    assert calls == ["a", "b"] and list(frame["workload"]) == ["a", "b", "c"]
    side = [json.loads(l) for l in quarantine_path(j).read_text().splitlines()]
    assert [q["line"] for q in side] == [2, 3] and "latency_s" in side[1]["reason"] and "garbage" in side[0]["raw"]
    assert len(j.read_text().splitlines()) == 4 and not scan_journal(j).quarantined


CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    from hw.collect import collect, sweep
    def run(cell):
        time.sleep(0.01 + 0.002 * (int(cell["workload"][1:]) % 7))
        return {{"latency_ms": float(len(cell["workload"])), "n_runs": 1}}
    collect(sweep([f"w{{i}}" for i in range({n})]), run, {out!r}, progress=False)
""")
N_CELLS = 40
KILLS = 12


def test_kill9_at_random_points_loses_and_duplicates_nothing(tmp_path):
    """SIGKILL a collection 12 times at random points (mid-cell, mid-append, mid-fsync, mid-compaction),
    resuming each time; then finish. Every journaled row survives every kill, and the final trace
    holds each cell exactly once."""
    import random

    rng = random.Random(20261124)
    out = tmp_path / "sweep.parquet"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), out=str(out), n=N_CELLS))
    j = journal_path(out)
    kills, seen = 0, set()
    for _ in range(KILLS):
        proc = subprocess.Popen([sys.executable, str(script)])
        lines_now = j.read_bytes().count(b"\n") if j.exists() else 0
        target = lines_now + rng.randrange(0, 5)  # kill once the journal holds this many lines (header included)...
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if j.exists() and j.read_bytes().count(b"\n") >= target:
                break
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))  # ...plus a random fraction of a cell
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        done = set(read_journal(j))
        assert seen <= done, f"rows lost by a kill: {sorted(seen - done)}"
        seen = done
    calls = []

    def run(cell):
        calls.append(cell["workload"])
        return {"latency_ms": float(len(cell["workload"])), "n_runs": 1}

    cells = sweep([f"w{i}" for i in range(N_CELLS)])
    frame = collect(cells, run, out, progress=False)
    assert not set(calls) & {c["workload"] for c in cells if cell_id(c) in seen}  # finished cells never rerun
    lost = N_CELLS - frame["workload"].nunique()
    duplicated = len(frame) - frame["workload"].nunique()
    ids = [json.loads(l).get("cell_id") for l in j.read_text().splitlines()[1:]]
    print(f"\nkill -9: {kills} kills, {len(frame)} rows, {lost} lost, {duplicated} duplicated, "
          f"{len(ids) - len(set(ids))} duplicate journal lines, {len(calls)} cells left for the final run")
    assert kills >= 10 and lost == 0 and duplicated == 0 and len(ids) == len(set(ids)) == N_CELLS
    assert list(frame["workload"]) == [c["workload"] for c in cells]


def test_device_gone_mid_sweep_keeps_rows(tmp_path):
    out = tmp_path / "t.parquet"

    def slow(cell):
        time.sleep(0.1)
        return {"latency_ms": 1.0, "n_runs": 1}

    with pytest.raises(DeviceGoneError):
        collect(sweep(["a", "b", "c", "d", "e"]), slow, out, ConstMeter(fail_after=12), rate_hz=50, progress=False)
    frame, _ = read_trace(out)
    assert 1 <= len(frame) < 5
    assert (frame["error"].iloc[:-1] == "").all() and "DeviceGoneError" in frame["error"].iloc[-1]


def test_collect_sets_frequencies_and_restores_on_interrupt(tmp_path):
    make_cpufreq(tmp_path, {"policy0": [500000, 1000000, 2000000]})
    pol = tmp_path / "sys/devices/system/cpu/cpufreq/policy0"
    seen = []

    def run(cell):
        seen.append(int((pol / "scaling_max_freq").read_text()))
        if cell["cpu_mhz"] == 1000.0:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the sweep
        return {"latency_ms": 1.0, "n_runs": 1}

    cells = sweep(["a"], frequencies=[{"cpu_mhz": 500.0}, {"cpu_mhz": 1000.0}, {"cpu_mhz": 2000.0}])
    with pytest.raises(KeyboardInterrupt):
        collect(cells, run, tmp_path / "t.parquet", dvfs=SysfsDvfs(LocalFS(tmp_path)),
                freq_domains={"cpu_mhz": "cpu_policy0"}, progress=False)
    assert seen == [500000, 1000000]
    assert (pol / "scaling_min_freq").read_text().strip() == "500000"
    assert (pol / "scaling_max_freq").read_text().strip() == "2000000"
    assert len(read_trace(tmp_path / "t.parquet")[0]) == 1  # the finished cell was compacted on Ctrl-C


def fake_time_fn(calls):
    def time_workload(name, warmup, repeats, threads):
        calls.append((name, warmup, repeats, threads))
        return {"latency_ms": 1.5, "latency_p95_ms": 2.5, "n_runs": repeats}
    return time_workload


def test_cli_replay_adapter(tmp_path):
    out = tmp_path / "cli.parquet"
    calls = []
    rc = main(["collect", "--adapter", "replay", "--replay", str(LOGS[0]), "--replay-speed", "50", "--out", str(out),
               "--workloads", "w1", "w2", "--repeats", "5", "--warmup", "2", "--threads", "2", "--no-progress",
               "--device", "jetson-log"], time_fn=fake_time_fn(calls))
    assert rc == 0
    assert calls == [("w1", 2, 1, 2), ("w1", 0, 5, 2), ("w2", 2, 1, 2), ("w2", 0, 5, 2)]  # warm-up outside the window
    frame, meta = read_trace(out)
    assert list(frame["workload"]) == ["w1", "w2"] and (frame["adapter"] == "replay").all()
    assert (frame["device"] == "jetson-log").all() and frame["power_w"].notna().all()
    assert meta["meter_settings"]["source"] == str(LOGS[0])
    assert main(["collect", "--adapter", "replay", "--out", str(out), "--workloads", "w"], time_fn=fake_time_fn([])) == 2


def test_cli_auto_picks_best_meter(tmp_path, monkeypatch):
    import types
    nvml = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def no_driver():
        raise NVMLError("Driver Not Loaded")

    nvml.NVMLError, nvml.nvmlInit = NVMLError, no_driver
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("PATH", str(tmp_path))  # no tegrastats
    reasons = {}
    assert best_available_meter(reasons, rapl={"root": tmp_path / "none"}, **{"jetson-ina3221": {"root": tmp_path}}) is None
    assert set(reasons) == {"nvml", "rapl", "jetson-ina3221", "jetson"}
    out = tmp_path / "auto.parquet"
    rc = main(["--adapter", "auto", "--rapl-root", str(tmp_path / "none"), "--sysfs-root", str(tmp_path),
               "--out", str(out), "--workloads", "w", "--no-progress"], time_fn=fake_time_fn([]))
    assert rc == 0 and read_trace(out)[0]["meter"].tolist() == ["none"]
    root = make_powercap(tmp_path / "pc", {"intel-rapl:0": ("package-0", 0, 2**40)})
    out2 = tmp_path / "auto2.parquet"
    rc = main(["--adapter", "auto", "--rapl-root", str(root), "--sysfs-root", str(tmp_path), "--out", str(out2),
               "--workloads", "w", "--no-progress"], time_fn=fake_time_fn([]))
    frame = read_trace(out2)[0]
    assert rc == 0 and frame["meter"].tolist() == ["rapl"] and frame["adapter"].tolist() == ["rapl"]
    assert frame["energy_mj"].tolist() == [0.0]  # the fake counter never moves
    assert main(["--adapter", "rapl", "--rapl-root", str(tmp_path / "none"), "--out", str(out2), "--workloads", "w"]) == 2


# --------------------------------------------------------------------------- robustness (issue 13)
def test_resume_with_other_settings_refused_or_fresh(tmp_path):
    out = tmp_path / "t.parquet"
    base = ["collect", "--adapter", "none", "--out", str(out), "--workloads", "w1", "--no-progress"]
    calls = []
    assert main(base + ["--repeats", "2"], time_fn=fake_time_fn(calls)) == 0
    assert main(base + ["--repeats", "2"], time_fn=fake_time_fn(calls)) == 0  # same settings: resumes, runs nothing
    assert len(calls) == 2  # warm + measured, once
    with pytest.raises(JournalError, match="repeats: 2 -> 5"):
        collect(sweep(["w1"]), lambda c: {"n_runs": 5}, out, progress=False, device=os.uname().nodename,
                settings={"workloads_run_with": {"runner": "host-time_fn"}, "repeats": 5, "warmup": 3, "threads": 1,
                          "cpu_domain": None})
    assert main(base + ["--repeats", "5"], time_fn=fake_time_fn(calls)) == 2  # refused: would mix rows
    assert read_trace(out)[0]["n_runs"].tolist() == [2]
    assert main(base + ["--repeats", "5", "--fresh"], time_fn=fake_time_fn(calls)) == 0
    frame, meta = read_trace(out)
    assert frame["n_runs"].tolist() == [5] and meta["settings"]["repeats"] == 5
    assert len(list(tmp_path.glob("t.journal.jsonl.*.old"))) == 1  # the old rows are kept aside


def test_cli_user_mistakes_exit_2_with_one_line(tmp_path, capsys):
    fn = fake_time_fn([])
    known = ["resnet18", "lstm_text"]
    out = str(tmp_path / "t.parquet")
    cases = {
        "unknown workload(s) ['resnt18']": ["--workloads", "resnt18", "--out", out],
        "label CPU measurements wrongly": ["--workloads", "resnet18", "--targets", "gpu", "--out", out],
        "is a directory": ["--workloads", "resnet18", "--out", str(tmp_path)],
        "--rate-hz=nan": ["--workloads", "resnet18", "--out", out, "--rate-hz", "nan"],
        "--batch=0": ["--workloads", "resnet18", "--out", out, "--batch", "0"],
        "--cpu-mhz inf": ["--workloads", "resnet18", "--out", out, "--cpu-mhz", "inf"],
    }
    for msg, argv in cases.items():
        assert main(["--adapter", "none", "--no-progress", *argv], time_fn=fn, known_workloads=known) == 2, msg
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not list(tmp_path.glob("*.journal.jsonl"))  # nothing ran


@pytest.mark.parametrize("fault", ["disk full", "read-only"])
def test_disk_faults_are_one_line_errors(tmp_path, monkeypatch, capsys, fault):
    import errno

    import hw.collect as hc

    out = tmp_path / "sub" / "t.parquet"
    if fault == "disk full":
        def boom(self, entry):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        monkeypatch.setattr(hc.Journal, "_write", boom)
    else:
        real_mkdir = Path.mkdir

        def ro(self, *a, **k):
            if self == out.parent:
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real_mkdir(self, *a, **k)
        monkeypatch.setattr(Path, "mkdir", ro)
    rc = main(["--adapter", "none", "--out", str(out), "--workloads", "w", "--no-progress"], time_fn=fake_time_fn([]))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert ("No space left" in err) if fault == "disk full" else ("Read-only" in err)


def test_dvfs_restored_even_when_closing_the_journal_fails(tmp_path, monkeypatch):
    import hw.collect as hc

    make_cpufreq(tmp_path, {"policy0": [500000, 1000000, 2000000]})
    pol = tmp_path / "sys/devices/system/cpu/cpufreq/policy0"

    def bad_close(self):
        self._fh.close()
        raise OSError(5, "Input/output error", str(self.path))

    monkeypatch.setattr(hc.Journal, "close", bad_close)
    with pytest.raises(OSError, match="Input/output"):
        collect(sweep(["a"], frequencies=[{"cpu_mhz": 500.0}]), lambda c: {"n_runs": 1}, tmp_path / "t.parquet",
                dvfs=SysfsDvfs(LocalFS(tmp_path)), freq_domains={"cpu_mhz": "cpu_policy0"}, progress=False)
    assert (pol / "scaling_max_freq").read_text().strip() == "2000000"
    assert (pol / "scaling_min_freq").read_text().strip() == "500000"


def test_model_construction_never_in_the_energy_window(tmp_path):
    """--warmup 0: building the model (0.4 s here) happens before the window; only the timed runs are in it."""
    events = []

    def prepare(name, threads):
        events.append(("build", name))
        time.sleep(0.4)
        return lambda warmup, repeats: (events.append(("run", warmup, repeats)),
                                        {"latency_ms": 1.0, "n_runs": repeats})[1]

    out = tmp_path / "t.parquet"
    import hw.cli as cli

    meter = ConstMeter(5.0)
    orig = cli.make_meter
    cli.make_meter = lambda args: meter
    try:
        rc = main(["--adapter", "none", "--out", str(out), "--workloads", "a", "b", "--warmup", "0", "--repeats", "3",
                   "--no-progress"], prepare_fn=prepare, known_workloads=["a", "b"])
    finally:
        cli.make_meter = orig
    assert rc == 0 and events == [("build", "a"), ("run", 0, 3), ("build", "b"), ("run", 0, 3)]
    frame = read_trace(out)[0]
    window_s = frame["energy_mj"] * 3 / 1e3 / 5.0  # 5 W constant: energy says how long each window was open
    assert (window_s < 0.3).all(), window_s.tolist()


def test_phone_command_braces_that_are_not_placeholders():
    from hw.cli import phone_argv

    cell = {"workload": "mobilenet", "target": "cpu", "batch": 1, "cpu_mhz": 1800.0}
    assert phone_argv("bm --graph=/d/{workload}.tflite --cpu={cpu_mhz} --x={x} {} {{", cell) == \
        ["bm", "--graph=/d/mobilenet.tflite", "--cpu=1800", "--x={x}", "{}", "{{"]
    assert phone_argv("sh -c 'awk \"{print $1}\" /d/{workload}'", cell) == ["sh", "-c", 'awk "{print $1}" /d/mobilenet']
