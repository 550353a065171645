"""Bad input on the surfaces an adversarial audit (issue-wide reliability round) found unguarded.

Each surface gets the suite's contract: a user's mistake is one ``error:`` line naming the file, key or
option, the bad value and what is allowed; exit status 2; no traceback; nothing written. The properties
feed each loader arbitrary bytes or documents and accept only a parsed value or the layer's own error.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.errors import BenchError, ConfigError, WorkloadError
from cli_checks import one_line_exit_2 as _one_line_exit_2

#: every property here reads a small file per example: a few seconds each
FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --------------------------------------------------------------------------- workloads cache (--out DIR)

def test_workloads_missing_cache_is_one_line(tmp_path, capsys):
    # was: a FileNotFoundError traceback (raised without an errno, so the CLI's OSError guard re-raised it)
    _one_line_exit_2(capsys, ["workloads", "--out", str(tmp_path / "nowhere")], "workloads.csv", "--write")


@pytest.mark.parametrize("content,needle", [
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"", "not a workload cache CSV"),
    (b"a,b\n1,2\n", "lacks column 'workload'"),
    (b'workload,flops\n"unterminated,1\n', "not a workload cache CSV"),
])
def test_workloads_bad_cache_is_one_line(tmp_path, capsys, content, needle):
    (tmp_path / "workloads.csv").write_bytes(content)
    _one_line_exit_2(capsys, ["workloads", "--out", str(tmp_path)], needle)


@FAST
@given(st.binary(max_size=300) | st.text(alphabet=string.printable + "é\x00", max_size=300).map(str.encode))
def test_workload_cache_loader_parses_or_refuses(tmp_path_factory, raw):
    from bench.world.workloads import load_workloads

    d = tmp_path_factory.mktemp("wl")
    (d / "workloads.csv").write_bytes(b"workload,flops\n" + raw if raw[:1] == b"#" else raw)
    try:
        df = load_workloads(d)
    except WorkloadError as exc:
        assert "\n" not in str(exc) and "workloads.csv" in str(exc)
    else:
        assert "workload" in df.columns


# --------------------------------------------------------------------------- dvc-deps --file

@pytest.mark.parametrize("content,needle", [
    (b"\x80\x81", "not UTF-8"),
    (b"- a\n- b\n", "expected a mapping"),
    (b"", "stages: must be a non-empty mapping"),
    (b"stages: {a: 1}\n", "stages.a: needs a `cmd` string"),
    (b"stages: {a: {cmd: [1]}}\n", "stages.a: needs a `cmd` string"),
])
def test_dvc_deps_bad_file_is_one_line(tmp_path, capsys, content, needle):
    f = tmp_path / "my dvc ü.yaml"  # a path with a space and a non-ASCII letter is named as given
    f.write_bytes(content)
    _one_line_exit_2(capsys, ["dvc-deps", "--check", "--file", str(f)], needle)


@FAST
@given(st.recursive(st.none() | st.integers() | st.text(max_size=5) | st.floats(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=12))
def test_dvc_file_check_accepts_or_refuses_any_document(tmp_path_factory, doc):
    from bench.pipeline.codedeps import _check_dvc_file

    f = tmp_path_factory.mktemp("dvc") / "dvc.yaml"
    f.write_text(json.dumps({"stages": doc}, allow_nan=True))  # JSON is YAML
    try:
        _check_dvc_file(f)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(doc, dict) and doc and all(isinstance(s, dict) for s in doc.values())


# --------------------------------------------------------------------------- params --file names the file given

@FAST
@given(st.text(alphabet=string.ascii_letters + " üé-_", min_size=1, max_size=12))
def test_params_errors_name_the_file_given(tmp_path_factory, stem):
    from bench.config import ParamsError, load_params

    f = tmp_path_factory.mktemp("p") / f"{stem.strip() or 'x'}.yaml"
    f.write_text("seed: -1\n")
    with pytest.raises(ParamsError) as info:
        load_params(f)
    msg = str(info.value)
    assert msg.startswith(f"{f}: seed") if f.name != "params.yaml" else msg.startswith("params.yaml: seed")


# --------------------------------------------------------------------------- predict --csv names the file

def test_predict_csv_without_columns_names_the_file(tmp_path, capsys):
    src = tmp_path / "in put.csv"
    src.write_text("a,b\n1,2\n")
    _one_line_exit_2(capsys, ["predict", "--csv", str(src), "--out", str(tmp_path / "o.csv")], str(src),
                     "lacks column 'profile'")
    assert not (tmp_path / "o.csv").exists()  # nothing written on a refused input


# --------------------------------------------------------------------------- perf / sensitivity options

@pytest.mark.parametrize("argv,needle", [
    (["perf", "--quick", "--seed", "-1"], "--seed must be in [0, 2**63)"),
    (["sensitivity", "--limit", "-1"], "--limit must be >= 1"),
    (["sensitivity", "--limit", "0"], "--limit must be >= 1"),
    (["sensitivity", "--workers", "-2"], "--workers must be >= 0"),
    (["sensitivity", "--cached-only"], "--cached-only needs --cache"),
])
def test_options_out_of_range_are_refused_up_front(capsys, argv, needle):
    _one_line_exit_2(capsys, argv, needle)


def test_perf_out_directory_is_refused_before_measuring(tmp_path, capsys):
    _one_line_exit_2(capsys, ["perf", "--quick", "--out", str(tmp_path)], "is a directory")


def test_sensitivity_cached_only_on_an_empty_cache_is_a_user_error(tmp_path, monkeypatch):
    # was: a RuntimeError traceback after the worlds were built
    from bench.pipeline import sensitivity

    monkeypatch.setattr(sensitivity, "world_cache_key", lambda *a: "k")
    with pytest.raises(ConfigError, match="--cached-only: the unperturbed world is not in the cache"):
        sensitivity._map_worlds([object()], {}, None, False, tmp_path, cached_only=True)


# --------------------------------------------------------------------------- replay meter: logs without power

_SAMPLE_FIELDS = st.fixed_dictionaries({"t_s": st.integers(0, 5)}, optional={
    "power_w": st.dictionaries(st.sampled_from(["VDD_IN", "cpu"]), st.floats(0, 20), max_size=2),
    "freq_mhz": st.dictionaries(st.just("cpu"), st.floats(1, 3000), max_size=1),
})


@FAST
@given(st.lists(_SAMPLE_FIELDS, min_size=1, max_size=6))
def test_replay_file_has_power_or_is_refused(tmp_path_factory, entries):
    from hw.base import MeterError
    from hw.replay import ReplayMeter

    entries = sorted(entries, key=lambda e: e["t_s"])
    f = tmp_path_factory.mktemp("rp") / "s.jsonl"
    f.write_text("".join(json.dumps(e) + "\n" for e in entries))
    try:
        meter = ReplayMeter.from_file(f)
    except MeterError as exc:
        assert "\n" not in str(exc)
        assert not any(e.get("power_w") for e in entries)
    else:
        assert any(s.power_w or s.energy_j for s in meter.samples)


def test_monitor_replay_without_power_is_one_line(tmp_path, capsys):
    log = tmp_path / "teg.log"
    log.write_text("RAM 1/2MB garbage\n")  # a tegrastats line with no power rail
    _one_line_exit_2(capsys, ["monitor", "--adapter", "replay", "--replay", str(log), "--", "true"],
                     "power or energy")


# --------------------------------------------------------------------------- --meter-option KEY=VALUE

@FAST
@given(st.lists(st.text(alphabet=string.printable, max_size=12), min_size=1, max_size=3))
def test_meter_options_parse_or_refuse(pairs):
    # was: a YAML parser traceback for a value like 'k=[1,'
    from hw.base import MeterError
    from hw.cli import meter_options

    try:
        out = meter_options(pairs)
    except MeterError as exc:
        assert "--meter-option" in str(exc)
    else:
        assert set(out) <= {p.partition("=")[0] for p in pairs}


@pytest.mark.parametrize("argv,needle", [
    (["monitor", "--adapter", "replay", "--replay", "x.log", "--meter-option", "foo", "--", "true"], "expected KEY=VALUE"),
    (["monitor", "--adapter", "rapl", "--meter-option", "root=/x", "--", "true"], "takes no --meter-option"),
])
def test_meter_option_misuse_is_one_line(capsys, argv, needle):
    # was: silently dropped with a built-in adapter (the run went ahead without the user's setting)
    _one_line_exit_2(capsys, argv, needle)


# --------------------------------------------------------------------------- testbed: nothing written on a refused input

@pytest.mark.parametrize("case", ["bad trace cell", "no shared workload", "garbage host profile"])
def test_testbed_refuses_bad_inputs_before_creating_out(tmp_path, capsys, case):
    # was: --out (and a restricted scenario copy in it) created before the scenario or host profile was read
    from bench.paths import DATA_DIR

    src = (DATA_DIR / "scenarios" / "dvfo_trace_att_driving.yaml").read_text()
    (tmp_path / "t.csv").write_text("time_s,mbps\n0,1\n1,nan\n")
    (tmp_path / "s.yaml").write_text(src.replace("path: traces/mahimahi_att_lte_driving_up.csv", "path: t.csv"))
    (tmp_path / "hp.yaml").write_bytes(b"\xff\xfe")
    out = tmp_path / "out dir ü"
    argv = ["testbed", "--policy", "static_local", "--out", str(out), "--requests", "1"]
    argv += {"bad trace cell": ["--scenario", str(tmp_path / "s.yaml")],
             "no shared workload": ["--scenario", "cellular_only", "--workloads", "nope"],
             "garbage host profile": ["--scenario", "cellular_only", "--host-profile", str(tmp_path / "hp.yaml")]}[case]
    _one_line_exit_2(capsys, argv, {"bad trace cell": "must be finite", "no shared workload": "--workloads",
                                    "garbage host profile": "not UTF-8"}[case])
    assert not out.exists()


# --------------------------------------------------------------------------- readme --results

@pytest.mark.parametrize("content", [b"\xe2[j garbage", b'{"a": NaN}', b'{"x": {"y": 1}}'])
def test_readme_with_foreign_results_is_one_line_and_writes_nothing(tmp_path, capsys, content):
    # was: UnicodeDecodeError / AttributeError tracebacks from the renderer
    from bench.pipeline import readme

    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "metrics_overall.json").write_bytes(content)
    before = readme.README.read_bytes()
    code = main(["readme", "--check", "--results", str(tmp_path)])  # --check: never writes, whatever happens
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--results" in err, (code, err)
    assert readme.README.read_bytes() == before


# --------------------------------------------------------------------------- testbed-stage --tabulate

@FAST
@given(st.binary(max_size=64), st.binary(max_size=64) | st.sampled_from([b"{}", b"[]", b'{"policy": 1}', b"null"]))
def test_tabulate_skips_and_counts_unreadable_runs(tmp_path_factory, parquet, summary):
    # was: a pyarrow ArrowInvalid traceback for one crashed run folder, losing the whole table
    import contextlib
    import io

    from bench.testbed.compare import COLUMNS, tabulate

    run = tmp_path_factory.mktemp("runs") / "a"
    run.mkdir()
    (run / "requests.parquet").write_bytes(parquet)
    (run / "summary.json").write_bytes(summary)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        table, requests = tabulate([run, run.parent / "missing"])
    assert list(table.columns) == list(COLUMNS) and len(table) == 0
    assert "skipped 2 of 2 run folders" in err.getvalue()


# --------------------------------------------------------------------------- INA3221 under an odd --sysfs-root

@pytest.mark.parametrize("root_name", ["run[1]", "a*b?c", "sp ace ü"])
def test_ina3221_root_with_glob_characters_is_a_path(tmp_path, root_name):
    # was: the root was used as a glob pattern, so /tmp/run[1] found no rails (and the error said 'run[1]sys/...')
    from hw.base import NoDeviceError
    from hw.jetson import Ina3221Meter

    hw = tmp_path / root_name / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    hw.mkdir(parents=True)
    (hw / "in1_label").write_text("VDD_IN\n")
    (hw / "in1_input").write_text("5000\n")
    (hw / "curr1_input").write_text("1000\n")
    assert Ina3221Meter(tmp_path / root_name).read().power_w == {"VDD_IN": pytest.approx(5.0)}
    with pytest.raises(NoDeviceError, match=r"/sys/bus/i2c/drivers/ina3221"):
        Ina3221Meter(tmp_path / root_name / "empty")


# --------------------------------------------------------------------------- cpufreq/devfreq files

class _FakeFS:
    def __init__(self, files):
        self.files = files

    def read(self, path):
        return self.files[path]

    def write(self, path, value):
        self.files[path] = value

    def listdir(self, path):
        return ["policy0"] if path.endswith("cpufreq") else []

    def exists(self, path):
        return path in self.files


@FAST
@given(st.text(max_size=40), st.text(max_size=12))
def test_dvfs_clock_files_parse_or_refuse(avail, cur):
    # was: int() ValueError tracebacks on a stray token ('1190400*', '²', 'N/A') in a clock file
    from hw.base import ParseError
    from hw.dvfs import CPUFREQ_DIR, SysfsDvfs

    d = f"{CPUFREQ_DIR}/policy0"
    ctl = SysfsDvfs(_FakeFS({f"{d}/scaling_available_frequencies": avail, f"{d}/scaling_cur_freq": cur}))
    for read in (ctl.frequencies, ctl.current):
        try:
            out = read()
        except ParseError as exc:
            assert "\n" not in str(exc) and d in str(exc)
        else:
            assert all(v >= 0 for vals in out.values() for v in (vals if isinstance(vals, list) else [vals]))


# --------------------------------------------------------------------------- adb: power_supply listing

@FAST
@given(st.text(max_size=60), st.sampled_from(["Battery", "Mains", "\x00", ""]))
def test_find_battery_skips_unusable_supply_names(listing, kind):
    # was: a NUL in adb's listing reached subprocess ("embedded null byte" ValueError)
    from hw.android import find_battery
    from hw.base import MeterError

    class Phone:
        def shell(self, argv):
            assert all("\x00" not in a for a in argv)
            return listing if argv[0] == "ls" else kind

    try:
        path = find_battery(Phone())
    except MeterError as exc:
        assert "\n" not in str(exc)
    else:
        assert path.startswith("/sys/class/power_supply/") and kind == "Battery"


def test_predict_failed_write_keeps_the_old_output(tmp_path, capsys, monkeypatch):
    # was: to_csv straight into --out: a full disk left half a file (and lost an input named as --out too)
    import errno

    import pandas as pd

    src = tmp_path / "rows.csv"
    src.write_text("profile,workload,target\nphone_sd845,resnet18,gpu\n")
    before = src.read_bytes()

    def full_disk(self, path, *a, **k):
        Path(path).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk)
    _one_line_exit_2(capsys, ["predict", "--csv", str(src), "--out", str(src)], "No space left")
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_collect_out_must_be_parquet(tmp_path, capsys):
    # was: Parquet bytes written under trace.csv (no CSV reader opens it), after minutes of measuring
    _one_line_exit_2(capsys, ["collect", "--adapter", "none", "--workloads", "resnet18", "--out",
                              str(tmp_path / "trace.csv")], "ending in .parquet")
    assert list(tmp_path.iterdir()) == []
