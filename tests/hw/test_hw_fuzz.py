"""Property-based fuzzing (Hypothesis) of every device-layer parser and loader.

Each property feeds generated malformed inputs — mutations of the real logs and sample
sysfs trees under data/samples/, plus free-form text and bytes — to one parser and checks
that it ends in a parsed value or the layer's own error (``hw.base.MeterError`` family,
or a counted skip), never another exception, never NaN/inf in a result, and within a
time bound (Hypothesis ``deadline``, generous for a shared CI machine; a hard alarm
turns a hang into a failure instead of a stuck run).

``HW_FUZZ_SCALE`` multiplies the example counts (default 1); the number of inputs each
parser saw is printed at the end of the run (``tests/hw/conftest.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import string
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw.android import BatteryConvention, detect_convention, parse_battery_readout
from hw.base import MeterError
from hw.collect import collect, quarantine_path, scan_journal, settings_key
from hw.jetson import NOT_RAILS, Ina3221Meter, parse_tegrastats
from hw.rapl import RaplMeter
from hw.replay import load_samples, tegrastats_samples
from hw.sampler import integrate_power
from hw.traces import TRACE_COLUMNS, trace_frame

from hw_fakes import LOGS

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
SCALE = float(os.environ.get("HW_FUZZ_SCALE", "1"))
#: inputs generated per parser, and how each ended (printed by conftest.py at the end of the run)
COUNTS: dict[str, dict[str, int]] = {}
HANG_S = 20  # a single input taking this long is a hang, whatever the machine's load


def fuzz_settings(n: int) -> settings:
    return settings(max_examples=max(1, int(n * SCALE)), deadline=timedelta(seconds=5), derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], database=None)


class Hang(Exception):
    pass


@contextlib.contextmanager
def counted(parser: str, outcome_box: list):
    """Count one input for ``parser``; a hard alarm turns a hang into a failure."""
    c = COUNTS.setdefault(parser, {"inputs": 0, "parsed": 0, "own_error": 0, "skipped_lines": 0})
    c["inputs"] += 1

    def on_alarm(*_):
        raise Hang(f"{parser}: one input took more than {HANG_S} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(HANG_S)
    try:
        yield c
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    for key in outcome_box:
        c[key] += 1


def finite(*values) -> bool:
    return all(v is None or math.isfinite(v) for v in values)


# --------------------------------------------------------------------------- tegrastats lines
REAL_LINES = [l.rstrip("\n") for p in LOGS for l in p.read_text().splitlines()[:40] if l.strip()]
TOKENS = ["RAM", "SWAP", "IRAM", "CPU [", "]", "[", "@", "%", "mW", "/", "off", "VDD_IN", "GR3D_FREQ", "EMC_FREQ",
          "C", "-256C", "9" * 30, "9" * 400, "1e308", "nan", "inf", "(lfb", ")", "MB", "kB", "GB", "\x00", "é", "٣٤",
          "08-14-2025 ", "99:99:99", "13-45-2025 25:61:61 ", ",", "  ", "\t", "\r", "RAM 12579/6", "RAM 2633/7850",
          "VDD_IN 5542/", "0.5", "-", "MTS fg", "NVENC", "APE 174"]


@st.composite
def mutated_line(draw) -> str:
    line = draw(st.sampled_from(REAL_LINES))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "repeat"]))
        i = draw(st.integers(0, max(0, len(line))))
        tok = draw(st.sampled_from(TOKENS) | st.text(max_size=12))
        if op == "insert":
            line = line[:i] + tok + line[i:]
        elif op == "delete":
            line = line[:i] + line[i + draw(st.integers(1, 20)):]
        elif op == "replace":
            line = line[:i] + tok + line[i + len(tok):]
        elif op == "truncate":
            line = line[:i]
        else:
            line = line[:i] + tok * draw(st.integers(2, 4000)) + line[i:]
    return draw(st.sampled_from(["", "13-45-2025 99:99:99 ", "08-14-2025 15:00:57 ", "2025-08-14 15:00:57 ", "00-00-0000 00:00:00 "])) + line


tegra_lines = mutated_line() | st.text(max_size=400) | st.sampled_from(TOKENS).flatmap(
    lambda t: st.integers(1, 4000).map(lambda n: t * n))


def check_tegra_sample(s) -> None:
    values = [*s.rails_w.values(), *s.rails_avg_w.values(), *s.rails_extra_w.values(), *s.temps_c.values(),
              *[x for x in s.cpu_load_pct if x is not None], *[x for x in s.cpu_freq_mhz if x is not None],
              s.ram_used_mb, s.ram_total_mb, s.swap_used_mb, s.swap_total_mb, s.emc_load_pct, s.emc_freq_mhz,
              s.gpu_load_pct, s.gpu_freq_mhz, *s.gpu_gpc_freq_mhz, *[v for v in s.engines_mhz.values() if v is not None]]
    assert finite(*values), values
    assert not set(s.rails_w) & NOT_RAILS, s.rails_w  # memory tokens are never rails
    assert all(0 <= w <= 1000 for w in s.rails_w.values())  # <= 1 kW, never inf
    if not s.bad:
        sample = s.to_sample(0.0)
        assert finite(sample.total_power_w)


@fuzz_settings(600)
@given(tegra_lines)
def test_tegrastats_line_never_raises_never_nonfinite(line):
    box: list = []
    with counted("tegrastats line", box):
        s = parse_tegrastats(line)
        check_tegra_sample(s)
        box.append("skipped_lines" if s.bad else "parsed")


@fuzz_settings(60)
@given(st.lists(tegra_lines, min_size=1, max_size=30), st.sampled_from([None, 0.1, 1.0]))
def test_tegrastats_log_replay_skips_bad_lines(lines, interval_s):
    box: list = []
    with counted("tegrastats log (replay)", box), tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.log"
        path.write_text("\n".join(l.replace("\n", " ") for l in lines) + "\n", errors="surrogateescape")
        try:
            samples = tegrastats_samples(path, interval_s)
        except MeterError:
            box.append("own_error")
            return
        box.append("parsed")
        assert samples and all(finite(s.t_s, s.total_power_w) for s in samples)
        if any(s.total_power_w is not None for s in samples):
            assert math.isfinite(integrate_power(samples))


# --------------------------------------------------------------------------- power_supply readouts
NUMS = st.integers(-2**40, 2**40) | st.sampled_from([0, 3850000, -350000, 3850, 350, 15000, 4500, 2**31, -2**31])


@st.composite
def phone_readings(draw) -> list[tuple[int, int]]:
    """Mostly phone-like: one voltage scale, currents of one scale and sign, with outliers mixed in."""
    v0 = draw(st.sampled_from([3_850_000, 4_400_000, 7_700_000, 3_850, 4_400, 385, 38_500_000, 0]))
    c0 = draw(st.sampled_from([1, 5, 20, 350, 1_200, 4_500, 15_000, 350_000, 3_000_000, 20_000_000]))
    sign = draw(st.sampled_from([1, -1]))
    out = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 9)) == 0:
            out.append((draw(NUMS), draw(NUMS)))  # an outlier
        else:
            out.append((v0 + draw(st.integers(-v0 // 50 - 1, v0 // 50 + 1)),
                        sign * max(1, c0 + draw(st.integers(-c0 // 3, c0 // 3)))))
    return out
STATUS = st.sampled_from(["Discharging", "Charging", "Not charging", "Full", "Unknown", "not charging", "", "Dis charging"])


@st.composite
def battery_readout(draw) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=80))
    parts = [str(draw(NUMS)), str(draw(NUMS)), draw(STATUS)]
    if draw(st.booleans()):
        i = draw(st.integers(0, 2))
        parts[i] = draw(st.sampled_from(["", "3.85", "1e6", "nan", "0x10", "９", "3850000 mV", "-"]) | st.text(max_size=8))
    sep = draw(st.sampled_from(["\n", "\r\n", " ", "\n\n"]))
    return sep.join(parts) + draw(st.sampled_from(["", "\n", "\nextra\n"]))


@fuzz_settings(600)
@given(battery_readout())
def test_battery_readout_parsed_or_parse_error(out):
    box: list = []
    with counted("power_supply readout", box):
        try:
            v, c, status = parse_battery_readout(out)
        except MeterError:
            box.append("own_error")
            return
        box.append("parsed")
        assert isinstance(v, int) and isinstance(c, int) and abs(v) < 2**31 and abs(c) < 2**31 and status.strip() == status


@fuzz_settings(600)
@given(phone_readings() | st.lists(st.tuples(NUMS, NUMS), max_size=8))
def test_battery_convention_detected_or_refused(readings):
    box: list = []
    with counted("power_supply convention", box):
        try:
            conv = detect_convention(readings)
        except MeterError:
            box.append("own_error")
            return
        box.append("parsed")
        assert isinstance(conv, BatteryConvention) and len(readings) >= 3
        powers = [conv.power_w(v, c) for v, c in readings]
        assert all(math.isfinite(p) and 0.02 <= p <= 15.0 for p in powers), (readings, powers)  # plausible, discharging


# --------------------------------------------------------------------------- powercap / INA3221 trees
CONTENT = (st.integers(-2**70, 2**70).map(str) | st.sampled_from(["", "0", "-1", "nan", "1e9", "12ab", "\x00", " 5 ", "9" * 5000])
           | st.binary(max_size=40))
TREES = sorted(p for p in (SAMPLES / "powercap").iterdir() if p.is_dir())


def _corrupt(root: Path, draw, files: list[Path]) -> None:
    for _ in range(draw(st.integers(0, 5))):
        f = root / draw(st.sampled_from(files))
        op = draw(st.sampled_from(["write", "write", "delete", "dir", "rename_zone"]))
        with contextlib.suppress(OSError):  # a corruption the file system refuses is simply not made
            _corrupt_one(root, draw, f, op)


def _corrupt_one(root: Path, draw, f: Path, op: str) -> None:
    if True:
        if op == "write":
            value = draw(CONTENT)
            f.write_bytes(value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass"))
        elif op == "delete":
            f.unlink(missing_ok=True) if f.is_file() else None
        elif op == "dir" and f.is_file():
            f.unlink()
            f.mkdir()
        elif op == "rename_zone" and f.parent.is_dir() and f.parent != root:
            f.parent.rename(f.parent.with_name(draw(st.sampled_from(["intel-rapl:9", "intel-rapl:0:7", "amd-rapl:0",
                                                                      "intel-rapl", "x", "intel-rapl:0:0:0"]))))


@fuzz_settings(120)
@given(st.data())
def test_powercap_tree_reads_or_meter_error(data):
    box: list = []
    with counted("powercap tree", box), tempfile.TemporaryDirectory() as d:
        root = Path(d) / "pc"
        shutil.copytree(data.draw(st.sampled_from(TREES)), root)
        files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
        _corrupt(root, data.draw, files)
        try:
            meter = RaplMeter(root)
        except MeterError:
            box.append("own_error")
            return
        try:
            first = meter.read()
            _corrupt(root, data.draw, files)  # the counters move (or break) between two reads
            second = meter.read()
        except MeterError:
            box.append("own_error")
            return
        finally:
            meter.close()
        box.append("parsed")
        for s in (first, second):
            assert all(math.isfinite(v) and v >= 0 for v in s.energy_j.values()), s.energy_j
        assert meter.max_poll_interval_s > 0
        assert second.total_energy_j >= first.total_energy_j  # never decreases, no phantom from a reset either


@fuzz_settings(100)
@given(st.data())
def test_ina3221_tree_reads_or_meter_error(data):
    box: list = []
    with counted("INA3221 tree", box), tempfile.TemporaryDirectory() as d:
        root = Path(d) / "j"
        shutil.copytree(data.draw(st.sampled_from(sorted((SAMPLES / "ina3221").iterdir()))), root)
        files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
        _corrupt(root, data.draw, files)
        try:
            with Ina3221Meter(root) as meter:
                s = meter.read()
        except MeterError:
            box.append("own_error")
            return
        box.append("parsed")
        assert s.power_w and all(math.isfinite(p) for p in s.power_w.values()) and finite(s.total_power_w)


# --------------------------------------------------------------------------- journals and sample files
def _row(i):
    return {"device": "d", "adapter": "none", "workload": f"w{i}", "target": "cpu", "batch": 1, "latency_ms": 1.5,
            "n_runs": 3, "source": "measured", "meter": "none", "timestamp": "2026-01-01T00:00:00+00:00", "error": ""}


JSONISH = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=8),
                       lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                       max_leaves=8)


@st.composite
def journal_line(draw, i) -> bytes:
    kind = draw(st.sampled_from(["good", "good", "bad_value", "unknown_col", "json", "bytes", "deep", "nan"]))
    row = _row(i)
    if kind == "bad_value":
        row[draw(st.sampled_from(list(TRACE_COLUMNS)))] = draw(JSONISH)
    elif kind == "unknown_col":
        row[draw(st.text(min_size=1, max_size=10))] = draw(JSONISH)
    elif kind == "json":
        return json.dumps(draw(JSONISH)).encode()
    elif kind == "bytes":
        return draw(st.binary(max_size=60)).replace(b"\n", b" ")
    elif kind == "deep":
        return b'{"cell_id": "x", "row": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    elif kind == "nan":
        return f'{{"cell_id": "c{i}", "row": {{"device": "d", "adapter": "a", "workload": "w", "target": "cpu", ' \
               f'"source": "measured", "meter": "m", "latency_ms": {draw(st.sampled_from(["NaN", "Infinity", "1e999"]))}}}}}'.encode()
    return json.dumps({"cell_id": f"c{i}", "row": row}).encode()


@fuzz_settings(120)
@given(st.data())
def test_journal_lines_quarantined_never_block_a_rerun(data):
    box: list = []
    with counted("journal lines", box), tempfile.TemporaryDirectory() as d:
        out = Path(d) / "t.parquet"
        j = out.with_name("t.journal.jsonl")
        n = data.draw(st.integers(0, 12))
        lines = [data.draw(journal_line(i)) for i in range(n)]
        header = json.dumps({"key": settings_key({}), "settings": {}}).encode()
        torn = data.draw(st.sampled_from([b"", b'{"cell_id": "c99", "ro']))
        j.write_bytes(b"\n".join([header, *lines]) + b"\n" + torn)
        state = scan_journal(j, repair=True)
        assert len(state.done) + len(state.quarantined) <= n
        frame = trace_frame(state.done.values())  # every kept row is a valid trace row
        numeric = [c for c, t in TRACE_COLUMNS.items() if t in ("float64", "int64")]
        assert all(math.isfinite(v) for c in numeric for v in frame[c].dropna().astype(float))
        assert scan_journal(j).quarantined == [] and not scan_journal(j).torn_tail  # repaired once, clean after
        if state.quarantined:
            assert len(quarantine_path(j).read_text().splitlines()) == len(state.quarantined)
        box.append("parsed")
        COUNTS["journal lines"]["skipped_lines"] += len(state.quarantined)


@fuzz_settings(150)
@given(st.lists(st.one_of(
    st.builds(lambda t, p: json.dumps({"t_s": t, "power_w": {"x": p}, "total": ["x"]}),
              st.floats(0, 100), st.floats(0, 50)),
    JSONISH.map(json.dumps), st.text(max_size=40),
    st.sampled_from(['{"t_s": NaN}', '{"t_s": 1, "power_w": {"x": Infinity}}', '{"t_s": 1e999}',
                     '{"t_s": 1, "power_w": [1]}', '{"t_s": 1, "total": "x"}', "[" * 3000])), max_size=20))
def test_samples_file_loads_or_skips(lines):
    box: list = []
    with counted("samples .jsonl", box), tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.jsonl"
        path.write_text("\n".join(l.replace("\n", " ") for l in lines) + "\n", errors="surrogateescape")
        from hw.jetson import ParseStats

        stats = ParseStats()
        samples = load_samples(path, stats)
        COUNTS["samples .jsonl"]["skipped_lines"] += stats.n_bad
        box.append("parsed")
        for s in samples:
            assert finite(s.t_s, *s.power_w.values(), *s.energy_j.values(), *s.temp_c.values())
        assert all(a.t_s <= b.t_s for a, b in zip(samples, samples[1:]))


def test_sample_trees_load_in_every_adapter():
    """The shipped trees are valid inputs (the fuzz above starts from them)."""
    for tree in TREES:
        with RaplMeter(tree) as m:
            s = m.read()
            assert s.total and all(v == 0.0 for v in s.energy_j.values())
    xeon = RaplMeter(SAMPLES / "powercap" / "intel_xeon_2socket")
    assert set(xeon.zones) == {"package-0", "package-1", "dram-0", "dram-1"}
    assert xeon.zones["dram-1"].name == "intel-rapl:0:0"  # intel-rapl:0 is package-1: dram named by its package
    client = RaplMeter(SAMPLES / "powercap" / "intel_client_psys")
    assert client.total == ("package-0",) and "psys" in client.zones
    for tree, n in (("l4t_r35_hwmon", 3), ("l4t_r32_iio", 6)):
        with Ina3221Meter(SAMPLES / "ina3221" / tree) as m:
            s = m.read()
            assert len(s.power_w) == n and all(p >= 0 for p in s.power_w.values())
    for phone in (SAMPLES / "power_supply").iterdir():
        b = phone / "battery"
        out = "\n".join((b / f).read_text().strip() for f in ("voltage_now", "current_now", "status"))
        v, c, status = parse_battery_readout(out)
        if status == "Discharging":
            assert detect_convention([(v, c)] * 3).power_w(v, c) == pytest.approx(3.85 * 0.35)
        else:
            assert status == "Not charging"
