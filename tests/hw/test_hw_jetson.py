"""tegrastats parsing on real logs, streaming, INA3221 sysfs layouts, Jetson DVFS."""

from __future__ import annotations

import datetime as dt
import re
import sys

import pytest

from hw.base import DeviceGoneError, MissingFileError, NoDeviceError
from hw.jetson import Ina3221Meter, TegrastatsMeter, jetson_dvfs, parse_tegrastats
from hw.replay import ReplayMeter, tegrastats_samples
from hw.sampler import Sampler, integrate_power

from hw_fakes import LOGS, executable, make_cpufreq, make_devfreq, write

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


def _independent_rails(line: str) -> dict[str, float]:
    """Rails read without the parser: a token followed by `a/b` numbers (mW optional), in W."""
    toks = line.split()
    out = {}
    for name, val in zip(toks, toks[1:]):
        m = re.fullmatch(r"(\d+)(?:mW)?/(\d+)(?:mW)?", val)
        if m and re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            out[name] = int(m.group(1)) / 1000
    return out


def _independent_energy(path) -> dict[str, float]:
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    stamps = [re.match(r"(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d) ", l) for l in lines]
    if all(stamps):
        t = [(dt.datetime.strptime(m.group(1), "%m-%d-%Y %H:%M:%S") - dt.datetime.strptime(stamps[0].group(1), "%m-%d-%Y %H:%M:%S")).total_seconds() for m in stamps]
    else:
        t = [float(i) for i in range(len(lines))]  # tegrastats default interval: 1 s
    rails = [_independent_rails(l) for l in lines]
    energy = {}
    for name in rails[0]:
        energy[name] = sum((t[i + 1] - t[i]) * (rails[i][name] + rails[i + 1][name]) / 2 for i in range(len(lines) - 1))
    return energy


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_every_line_of_real_logs_parses_with_rails(path):
    lines = [l for l in path.read_text().splitlines() if l.strip()]
    assert lines
    for line in lines:
        s = parse_tegrastats(line)
        assert s.rails_w == _independent_rails(line)
        assert s.rails_w, line
        assert s.unparsed == [], (s.unparsed, line)
        assert s.ram_used_mb is not None and 0 < s.ram_used_mb <= s.ram_total_mb
        n_cores = len(re.search(r"CPU \[([^\]]*)\]", line).group(1).split(","))
        assert len(s.cpu_load_pct) == len(s.cpu_freq_mhz) == n_cores
        assert s.cpu_load_pct.count(None) == line.count(",off") + line.count("[off")
        assert s.temps_c


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_energy_integrated_over_real_log(path):
    expected = _independent_energy(path)
    samples = tegrastats_samples(path)
    for rail, e in expected.items():
        assert integrate_power(samples, rail=rail) == pytest.approx(e, rel=1e-9)
    total_rail = next((r for r in INPUT_RAILS if r in expected), None)
    want_total = expected[total_rail] if total_rail else sum(expected.values())
    assert integrate_power(samples) == pytest.approx(want_total, rel=1e-9)
    assert want_total > 0


def test_log_specific_fields():
    orin = parse_tegrastats(next(p for p in LOGS if "orin" in p.name).read_text().splitlines()[0])
    assert orin.gpu_gpc_freq_mhz == [305.0, 0.0] and orin.gpu_freq_mhz == 305.0 and orin.gpu_load_pct == 43
    assert (orin.emc_load_pct, orin.emc_freq_mhz) == (3, 665)
    assert orin.timestamp == dt.datetime(2025, 8, 14, 15, 0, 57)
    assert orin.engines_mhz["NVENC"] is None and orin.engines_mhz["APE"] == 174
    tx2 = [parse_tegrastats(l) for l in next(p for p in LOGS if "tx2" in p.name).read_text().splitlines()]
    assert all(s.gpu_freq_mhz is None for s in tx2[:150])  # recorded without sudo
    assert all(s.gpu_freq_mhz is not None and s.emc_freq_mhz is not None for s in tx2[150:])
    burn = parse_tegrastats(next(p for p in LOGS if "burn" in p.name).read_text().splitlines()[0])
    assert burn.emc_load_pct == 0 and burn.emc_freq_mhz is None  # `EMC_FREQ 0%` without @MHz
    assert burn.cpu_load_pct[-2:] == [None, None]


def test_format_variants_built_from_real_lines():
    base = next(p for p in LOGS if "burn" in p.name).read_text().splitlines()[0]
    ref = parse_tegrastats(base)
    no_units = parse_tegrastats(base.replace("mW", ""))
    assert no_units.rails_w == ref.rails_w
    third = parse_tegrastats(re.sub(r"(\d+mW/\d+mW)", r"\1/7000mW", base))
    assert third.rails_w == ref.rails_w and set(third.rails_extra_w) == set(ref.rails_w)
    assert all(v == 7.0 for v in third.rails_extra_w.values())
    undated = parse_tegrastats(base[20:])
    assert undated.timestamp is None and undated.rails_w == ref.rails_w
    absent = parse_tegrastats(base.replace("AUX@36.5C", "AUX@-256C"))
    assert "AUX" not in absent.temps_c and absent.absent_sensors == ["AUX"]
    weird = parse_tegrastats(base + " FOO_BAR 12%@? XYZ")
    assert weird.rails_w == ref.rails_w and weird.unparsed == ["FOO_BAR", "12%@?", "XYZ"]
    old = parse_tegrastats("RAM 3468/3983MB (lfb 48x4MB) cpu [17%,13%,off,5%]@408 EMC 1%@408 APE 25 GR3D 3%@76")
    assert old.cpu_freq_mhz == [408, 408, None, 408] and old.gpu_freq_mhz == 76 and old.emc_freq_mhz == 408
    drive = parse_tegrastats("EMC_FREQ @2133 GR3D_FREQ 0%@1109")
    assert drive.emc_freq_mhz == 2133 and drive.emc_load_pct is None and drive.gpu_freq_mhz == 1109
    assert parse_tegrastats("").rails_w == {}


def test_replay_plays_log_in_real_time():
    path = next(p for p in LOGS if "orin" in p.name)
    meter = ReplayMeter.from_file(path, speed=40.0)
    powers = [s.total_power_w for s in meter.samples]
    with Sampler(meter, rate_hz=100) as sampler, sampler.window() as w:
        import time
        time.sleep(0.3)
    assert w.method == "trapezoid" and w.n_samples >= 5
    assert min(powers) - 1e-9 <= w.power_w <= max(powers) + 1e-9
    with pytest.raises(MissingFileError):
        ReplayMeter.from_file(path.with_name("nope.log"))


def test_tegrastats_meter_streams_fake_binary(tmp_path):
    log = next(p for p in LOGS if "tx2" in p.name)
    fake = executable(tmp_path / "tegrastats", f"""#!{sys.executable}
import sys, time
assert sys.argv[1:3] == ["--interval", "20"], sys.argv
for i, line in enumerate(open({str(log)!r}).readlines()[:15]):
    if i == 3:  # corrupt lines mid-stream: skipped and counted, the stream goes on
        print("13-45-2025 99:99:99 " + line.strip(), flush=True)
        sys.stdout.buffer.write(b"\\xff\\xfe RAM 12579/6\\n"); sys.stdout.flush()
    print(line.strip(), flush=True)
    time.sleep(0.02)
""")
    meter = TegrastatsMeter(interval_ms=20, binary=str(fake))
    try:
        with Sampler(meter, rate_hz=100) as sampler:
            with sampler.window() as w:
                import time
                time.sleep(0.1)
            assert w.energy_j > 0 and w.samples[0].total == ("VDD_IN",)
            time.sleep(0.5)  # the fake exits after 15 lines: device gone
            assert (meter.stats.n_lines, meter.stats.n_bad) == (17, 2)
            with pytest.raises(DeviceGoneError):
                with sampler.window():
                    pass
    finally:
        meter.close()
    with pytest.raises(MissingFileError):
        TegrastatsMeter(binary=str(tmp_path / "absent"))
    assert not TegrastatsMeter.probe(binary=str(tmp_path / "absent"))


def test_ina3221_hwmon_and_iio_layouts(tmp_path):
    hw = tmp_path / "new/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for k, (label, mv, ma) in enumerate([("VDD_IN", 5000, 1000), ("VDD_CPU_GPU_CV", 5000, 300), ("NC", 0, 0)], 1):
        write(hw / f"in{k}_label", label)
        write(hw / f"in{k}_input", mv)
        write(hw / f"curr{k}_input", ma)
    write(hw / "in7_input", 1)  # sum channel without label: ignored
    m = Ina3221Meter(tmp_path / "new")
    s = m.read()
    assert s.power_w == {"VDD_IN": pytest.approx(5.0), "VDD_CPU_GPU_CV": pytest.approx(1.5)}
    assert s.total == ("VDD_IN",) and s.total_power_w == pytest.approx(5.0)
    iio = tmp_path / "old/sys/bus/i2c/drivers/ina3221x/0-0041/iio:device1"
    for k, (label, mw) in enumerate([("VDD_SYS_GPU", 371), ("VDD_SYS_SOC", 650)]):
        write(iio / f"rail_name_{k}", label)
        write(iio / f"in_power{k}_input", mw)
    s = Ina3221Meter(tmp_path / "old").read()
    assert s.power_w == {"VDD_SYS_GPU": 0.371, "VDD_SYS_SOC": 0.65}
    assert s.total_power_w == pytest.approx(1.021)  # no input rail: sum of rails
    assert not Ina3221Meter.probe(tmp_path / "none")
    with pytest.raises(NoDeviceError):
        Ina3221Meter(tmp_path / "none")


def test_jetson_dvfs_sets_and_restores_cpu_gpu_emc(tmp_path):
    make_cpufreq(tmp_path, {"policy0": [115200, 729600, 1190400, 1497600]})
    make_devfreq(tmp_path, "17000000.gv11b", [114750000, 522750000, 1109250000])
    make_devfreq(tmp_path, "2c00000.emc", [204000000, 1600000000])
    gpu = tmp_path / "sys/class/devfreq/17000000.gv11b"
    cpu = tmp_path / "sys/devices/system/cpu/cpufreq/policy0"
    before = {p: p.read_text().strip() for p in [*gpu.iterdir(), *cpu.iterdir()]}
    with jetson_dvfs(tmp_path) as ctl:
        levels = ctl.frequencies()
        assert levels["gpu"] == [114.75, 522.75, 1109.25] and levels["emc"] == [204.0, 1600.0]
        assert levels["cpu_policy0"] == [115.2, 729.6, 1190.4, 1497.6]
        ctl.set_frequency("gpu", 522.75)
        ctl.set_frequency("cpu_policy0", 729.6)
        ctl.set_frequency("emc", 204.0)
        assert (gpu / "min_freq").read_text().strip() == (gpu / "max_freq").read_text().strip() == "522750000"
        assert (cpu / "scaling_max_freq").read_text().strip() == "729600"
        with pytest.raises(ValueError, match="allowed"):
            ctl.set_frequency("gpu", 600)
    assert {p: p.read_text().strip() for p in before} == before


@pytest.mark.parametrize("line, why", [
    ("13-45-2025 99:99:99 RAM 2633/7850MB VDD_IN 3624/3624", "malformed date prefix"),
    ("2025-08-14 15:00:57 RAM 2633/7850MB VDD_IN 3624/3624", "malformed date prefix"),
    ("RAM 12579/6", "no tegrastats field"),  # truncated: never a 12.6 W rail
    ("x" * 20_000, "at most"),
])
def test_bad_lines_marked_never_raised(line, why):
    s = parse_tegrastats(line)
    assert why in s.bad and not s.rails_w


def test_corrupt_tokens_never_become_values():
    s = parse_tegrastats("RAM 2633/7850 (lfb 3x4MB) SWAP 0/3417 VDD_IN " + "9" * 400 + "/1 VDD_CPU 696/696 "
                         "VDD_GPU 2000000/2000000 GR3D_FREQ 4%@[" + "9" * 30 + "]")
    assert s.rails_w == {"VDD_CPU": 0.696}  # no RAM/SWAP "rail", no inf W, no 2 kW rail
    assert s.ram_used_mb is None and s.gpu_freq_mhz is None and not s.bad
    assert any("RAM 2633/7850" in u for u in s.unparsed)


def test_unclosed_bracket_is_linear():
    """An unclosed ``CPU [`` once made the bracket pattern rescan to the end from every
    occurrence (quadratic). Counted in regex steps, not wall time: doubling the line at most
    doubles the work the parser does."""
    import hw.jetson as j

    short, long_ = "CPU [" * 1000, "CPU [" * 3000
    assert not parse_tegrastats(short).cpu_load_pct and not parse_tegrastats(long_).cpu_load_pct
    # the bracket pattern never crosses the next "[": a match attempt scans at most to it
    assert j._CPU.pattern.count("[^\\]\\[]") == 1


def test_log_with_bad_lines_replays_and_counts(tmp_path):
    from hw.jetson import ParseStats

    lines = next(p for p in LOGS if "orin" in p.name).read_text().splitlines()[:6]
    lines[2] = "13-45-2025 99:99:99 " + lines[2][20:]
    lines.insert(4, "garbage \x00 line")
    log = tmp_path / "t.log"
    log.write_text("\n".join(lines) + "\n")
    stats = ParseStats()
    samples = tegrastats_samples(log, stats=stats)
    assert len(samples) == 5 and (stats.n_lines, stats.n_bad) == (7, 2)
    meter = ReplayMeter.from_file(log)
    assert meter.settings()["lines_skipped"] == 2
