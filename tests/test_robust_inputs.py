"""Bad input on the surfaces the second adversarial audit (reliability round 5) found unguarded.

The contract as in tests/test_robust_surfaces.py: a user's mistake is one ``error:`` line naming the file, key
or option, the bad value and what is allowed; exit status 2; no traceback; nothing written or overwritten.
Readers of many rows skip and count the bad ones (naming their lines) and keep the good ones.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from cli_checks import one_line_exit_2

FAST = settings(max_examples=20, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

HEADER = ["profile", "workload", "target"]
GOOD = ["phone_sd845", "resnet18", "cpu"]


# --------------------------------------------------------------------------- predict --csv: ragged rows

def _csv(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def test_predict_skips_ragged_rows_and_predicts_the_rest(tmp_path, capsys):
    # was: one ragged row refused the whole file (exit 2, nothing predicted)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(_csv([HEADER, GOOD, GOOD + ["extra"], []]) + _csv([["phone_sd845", "resnet18", "nope"],
                                                                     ["phone_sd845"], GOOD]))
    assert main(["predict", "--csv", str(src), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "2 ragged rows skipped" in warning[0]
    assert "line 3: 4 cells" in warning[0] and "line 6: 1 cells" in warning[0] and str(src) in warning[0]
    from bench.world.predict import read_rows
    got = read_rows(out)
    assert len(got) == 3 and list(got["target"]) == ["cpu", "nope", "cpu"]
    # a row with a bad value keeps its place and names its file line (the blank line 4 counted)
    assert got.loc[1, "error"].startswith("row 5:") and got.loc[0, "error"] == ""


def test_predict_with_no_usable_row_is_one_line(tmp_path, capsys):
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(_csv([HEADER] + [GOOD[:2]] * 20))
    line = one_line_exit_2(capsys, ["predict", "--csv", str(src), "--out", str(out)], "no usable row",
                           "20 ragged rows", "line 2: 2 cells", "(12 more)")
    assert "line 11" not in line and not out.exists()
    src.write_text(_csv([HEADER]))
    one_line_exit_2(capsys, ["predict", "--csv", str(src), "--out", str(out)], "no usable row under the header")
    assert not out.exists()


@FAST
@given(widths=st.lists(st.integers(0, 5), min_size=1, max_size=12))
def test_predict_keeps_exactly_the_rows_that_fit_the_header(tmp_path_factory, widths):
    d = tmp_path_factory.mktemp("p")
    src, out = d / "in.csv", d / "out.csv"
    rows = [(GOOD + ["x"] * 5)[:w] if w != 3 else GOOD for w in widths]
    src.write_text(_csv([HEADER] + rows))
    from bench.world.predict import read_rows
    code = main(["predict", "--csv", str(src), "--out", str(out)])
    usable = sum(w == 3 for w in widths)
    assert code == (0 if usable else 2)
    if usable:
        assert len(read_rows(out)) == usable
    else:
        assert not out.exists()


# --------------------------------------------------------------------------- outputs written atomically

class _HalfThenFull:
    """A file opened for writing that takes half of what it is given, then fails as a full disk does."""

    def __init__(self, fh):
        self._fh = fh

    def write(self, data):
        import errno

        self._fh.write(data[: len(data) // 2])
        self._fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


@pytest.fixture
def full_disk(monkeypatch, tmp_path):
    """``full_disk()``: from now on every file opened for writing in tmp_path fills the disk halfway through its
    first write (both ``open`` and ``Path.write_text``, which calls ``io.open``)."""
    import builtins
    import io as _io
    import os

    real_open = builtins.open

    def fake_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if any(c in mode for c in "wax") and os.path.dirname(os.path.abspath(file)) == str(tmp_path):
            return _HalfThenFull(fh)
        return fh

    def arm():
        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(_io, "open", fake_open)

    return arm


def _only(tmp_path, *names):
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names), "a temporary file was left behind"


@FAST
@given(old=st.binary(max_size=200), new=st.binary(max_size=200), fail=st.booleans())
def test_atomic_write_leaves_old_or_new_never_half(tmp_path_factory, old, new, fail):
    import errno
    import os
    from unittest import mock

    from hw.atomic import atomic_write_bytes

    d = tmp_path_factory.mktemp("aw")
    target = d / "out.json"
    target.write_bytes(old)
    if fail:
        with mock.patch.object(os, "fsync", side_effect=OSError(errno.ENOSPC, "No space left on device")):
            with pytest.raises(OSError) as info:
                atomic_write_bytes(target, new)
        assert target.read_bytes() == old and info.value.filename == str(target)
    else:
        atomic_write_bytes(target, new)
        assert target.read_bytes() == new
    assert [p.name for p in d.iterdir()] == ["out.json"]


def _replay_log(path: Path) -> Path:
    import json

    path.write_text("".join(json.dumps({"t_s": i * 0.05, "power_w": {"VDD_IN": 5.0}}) + "\n" for i in range(200)))
    return path


def test_monitor_json_on_a_full_disk_keeps_the_previous_file(tmp_path, capsys, full_disk):
    # was: open(--json, "w"): a failed write left half a JSON document where the previous one was
    log = _replay_log(tmp_path / "log.jsonl")
    out = tmp_path / "m.json"
    out.write_text('{"previous": true}\n')
    full_disk()
    code = main(["monitor", "--adapter", "replay", "--replay", str(log), "--json", str(out), "--allow-short", "--", "true"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left" in err and "m.json" in err and "Traceback" not in err
    assert out.read_text() == '{"previous": true}\n'
    _only(tmp_path, "m.json", "log.jsonl")


@pytest.mark.parametrize("target", ["folder", "missing/m.json", "afile/m.json"])
def test_monitor_json_target_is_checked_before_the_command_runs(tmp_path, capsys, target):
    # was: the command ran to its end, then its measurement was lost on a bad --json path
    import sys

    (tmp_path / "folder").mkdir()
    (tmp_path / "afile").write_text("x")
    log = _replay_log(tmp_path / "log.jsonl")
    marker = tmp_path / "ran"
    one_line_exit_2(capsys, ["monitor", "--adapter", "replay", "--replay", str(log), "--json", str(tmp_path / target),
                             "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')"], "--json", target)
    assert not marker.exists()


def _fake_perf(monkeypatch):
    from bench.perf import main as perf

    calls = []
    monkeypatch.setattr(perf, "run", lambda *a, **k: calls.append(a) or {"settings": {"total_wall_s": 1.0}})
    monkeypatch.setattr(perf, "render", lambda doc: "table")
    return calls


def test_perf_out_on_a_full_disk_keeps_the_previous_run(tmp_path, capsys, monkeypatch, full_disk):
    # was: out.write_text: a crash mid-write left a truncated perf.json in place of the previous run
    calls = _fake_perf(monkeypatch)
    out = tmp_path / "perf.json"
    out.write_text('{"previous": true}\n')
    full_disk()
    one_line_exit_2(capsys, ["perf", "--seed", "1", "--no-sb3", "--out", str(out)], "No space left", "perf.json")
    assert calls and out.read_text() == '{"previous": true}\n'
    _only(tmp_path, "perf.json")


def test_perf_out_under_a_file_is_refused_before_the_benchmark(tmp_path, capsys, monkeypatch):
    # was: mkdir failed after the whole benchmark (minutes) had run
    calls = _fake_perf(monkeypatch)
    (tmp_path / "afile").write_text("x")
    one_line_exit_2(capsys, ["perf", "--seed", "1", "--out", str(tmp_path / "afile" / "sub" / "p.json")],
                    "is not a folder")
    assert not calls


def test_perf_remeasure_of_a_foreign_file_is_an_error_line(tmp_path, capsys):
    (tmp_path / "p.json").write_text("[]")
    one_line_exit_2(capsys, ["perf", "--remeasure", "sim", "--out", str(tmp_path / "p.json")], "p.json",
                    "not a saved")


def test_docs_block_on_a_full_disk_keeps_the_document(tmp_path, full_disk):
    from bench.testbed.compare import update_docs

    doc = tmp_path / "doc.md"
    doc.write_bytes(b"# Doc\n\nprose the user wrote\n")
    full_disk()
    with pytest.raises(OSError):
        update_docs(doc, "| a | b |")
    assert doc.read_bytes() == b"# Doc\n\nprose the user wrote\n"
    _only(tmp_path, "doc.md")


def test_written_profile_is_whole_or_the_old_one(tmp_path, full_disk):
    from bench.world.fit import write_profile
    from bench.world.profiles import load_profile

    path = tmp_path / "p.yaml"
    path.write_bytes(b"old profile\n")
    full_disk()
    with pytest.raises(OSError):
        write_profile(load_profile("phone_sd845"), path)
    assert path.read_bytes() == b"old profile\n"


def test_dvc_deps_write_on_a_full_disk_keeps_dvc_yaml(tmp_path, capsys, full_disk):
    from bench.paths import REPO_ROOT

    dvc = tmp_path / "dvc.yaml"
    text = (REPO_ROOT / "dvc.yaml").read_text().replace("- bench/cli.py\n", "", 1)  # drifted: --write rewrites
    dvc.write_bytes(text.encode())
    full_disk()
    code = main(["dvc-deps", "--write", "--file", str(dvc)])
    assert code == 2 and dvc.read_bytes() == text.encode()
    _only(tmp_path, "dvc.yaml")


# --------------------------------------------------------------------------- testbed-stage --tabulate, no run

def test_tabulate_without_runs_says_what_it_looked_for(tmp_path, capsys):
    # was: "testbed disabled (params.yaml testbed.enabled: false)", exit 0, and an empty table written
    one_line_exit_2(capsys, ["testbed-stage", "--tabulate", "--out", str(tmp_path)], "no readable run",
                    str(tmp_path / "runs"), "no such folder")
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "b").mkdir()
    (tmp_path / "runs" / "b" / "summary.json").write_text("{")
    code = main(["testbed-stage", "--tabulate", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "found 2 run folder(s), 1 with summary.json" in err[-1]
    assert "Traceback" not in "".join(err) and sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


# --------------------------------------------------------------------------- testbed: options refused up front

@pytest.mark.parametrize("field,value", [("seed", -1), ("seed", 2**63), ("autoscale_steps", 0), ("autoscale_steps", -5)])
def test_testbed_config_refuses_out_of_range_numbers(field, value):
    # was: --seed -1 ran the quick fits, then gymnasium's traceback; --autoscale-steps -5 was accepted
    from bench.testbed.loop import TestbedConfig, TestbedError

    with pytest.raises(TestbedError, match=f"--{field.replace('_', '-')}"):
        TestbedConfig(policy="cpu_only", scenario="wifi_weak", **{field: value})


@pytest.mark.parametrize("opt,value", [("--edge-cpus", "99999"), ("--server-cpus", "-1"), ("--edge-cpus", ",")])
def test_testbed_cpu_ids_are_checked_before_the_run(tmp_path, capsys, monkeypatch, opt, value):
    # was: sched_setaffinity's EINVAL traceback after the quick fits (an empty list: the whole machine's CPUs)
    from bench.testbed import loop

    calls = []
    monkeypatch.setattr(loop, "run", lambda *a, **k: calls.append(a) or {})
    one_line_exit_2(capsys, ["testbed", "--policy", "cpu_only", "--scenario", "wifi_weak", "--out",
                             str(tmp_path / "o"), f"{opt}={value}"], opt, "CPU ids")
    assert not calls and not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- endless or oversized input files

def test_predict_csv_is_read_with_a_size_cap(tmp_path, capsys, monkeypatch):
    # was: read_bytes() without a cap: `predict --csv /dev/zero` read until memory ran out
    import bench.validate as V

    monkeypatch.setattr(V, "MAX_CSV_BYTES", 100)
    src = tmp_path / "in.csv"
    src.write_text(_csv([HEADER] + [GOOD] * 20))
    one_line_exit_2(capsys, ["predict", "--csv", str(src), "--out", str(tmp_path / "o.csv")], "file too large",
                    "at most 100 bytes")
    assert not (tmp_path / "o.csv").exists()


def test_a_device_that_reports_no_size_is_not_cut_off_silently(monkeypatch):
    # was: /dev/zero (st_size 0) read up to the cap and parsed as if that were the whole file
    import bench.validate as V
    from bench.errors import DataFileError

    with pytest.raises(DataFileError, match="too large"):
        V._read_bytes(Path("/dev/zero"), DataFileError, "zero", 64)


# --------------------------------------------------------------------------- NVML index

@pytest.mark.parametrize("index", [-1, -2**31, 2, 2**40])
def test_nvml_index_outside_the_gpus_is_refused(monkeypatch, index):
    # was: a negative index passed the `index >= count` check (and probe() called it available)
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).parent / "hw"))
    from test_hw_nvml import fake_pynvml

    from hw.base import NoDeviceError
    from hw.nvml import NvmlMeter

    fake = fake_pynvml(count=2)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert not NvmlMeter.probe(index).ok
    with pytest.raises(NoDeviceError, match="allowed: 0..1"):
        NvmlMeter(index)
    assert fake.inits == 0  # NVML shut down again


def test_sensitivity_workers_out_of_range_is_one_line(capsys):
    # was: the engine's ValueError as a traceback
    one_line_exit_2(capsys, ["sensitivity", "--workers", "99999999999"], "--workers", "100000")


@FAST
@given(st.binary(max_size=300) | st.text(alphabet=",\"\n\r ab\x00é", max_size=120).map(str.encode))
def test_predict_reader_parses_or_refuses_any_bytes(tmp_path_factory, raw):
    from bench.world.predict import PredictError, read_input

    src = tmp_path_factory.mktemp("rd") / "in.csv"
    src.write_bytes(b"profile,workload,target\n" + raw)
    try:
        rows = read_input(src)
    except PredictError as exc:
        assert "\n" not in str(exc) and "in.csv" in str(exc)
        return
    n_lines = src.read_bytes().count(b"\n") + src.read_bytes().count(b"\r") + 1
    assert len(rows.lines) == len(rows.frame) and list(rows.frame.columns) == HEADER
    assert all(2 <= line <= n_lines for line in rows.lines + tuple(line for line, _ in rows.skipped))
    assert list(rows.lines) == sorted(rows.lines)


# --------------------------------------------------------------------------- empty paths are not the default

def test_perf_out_empty_is_refused_not_the_default(tmp_path, capsys, monkeypatch):
    # was: `--out ""` is falsy: the benchmark ran and overwrote results/perf.json
    from bench.perf import main as perf

    calls = _fake_perf(monkeypatch)
    monkeypatch.setattr(perf, "DEFAULT_OUT", tmp_path / "default.json")
    one_line_exit_2(capsys, ["perf", "--seed", "1", "--out", ""], "--out", "empty path")
    one_line_exit_2(capsys, ["perf", "--remeasure", "sim", "--out", ""], "--out", "empty path")
    assert not calls and not (tmp_path / "default.json").exists()


def test_monitor_json_empty_is_refused(tmp_path, capsys):
    # was: `--json ""` is falsy: the measurement ran and no JSON was written, silently
    log = _replay_log(tmp_path / "log.jsonl")
    one_line_exit_2(capsys, ["monitor", "--adapter", "replay", "--replay", str(log), "--json", "", "--", "true"],
                    "--json", "empty path")


def test_workloads_out_empty_is_refused(capsys):
    # was: `--out ""` fell back to the shipped cache (and --write would rewrite it)
    one_line_exit_2(capsys, ["workloads", "--out", ""], "--out", "empty path")


@pytest.mark.parametrize("opt", ["--measurements", "--settings"])
def test_calibrate_empty_path_is_refused(capsys, opt):
    # was: "" fell back to the shipped file, silently (and --write would have written from it)
    one_line_exit_2(capsys, ["calibrate", opt, ""], opt, "empty path")


def test_testbed_stage_zero_requests_and_empty_docs_are_refused(tmp_path, capsys):
    # was: `--requests 0` is falsy: the campaign was dropped and params' stage ran; `--docs ""` wrote no docs
    one_line_exit_2(capsys, ["testbed-stage", "--requests", "0", "--out", str(tmp_path / "o")], "--requests", ">= 1")
    one_line_exit_2(capsys, ["testbed-stage", "--tabulate", "--out", str(tmp_path / "o"), "--docs", ""], "--docs")
    assert not (tmp_path / "o").exists()


def test_predict_out_over_its_input_never_drops_skipped_rows(tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text(_csv([HEADER, GOOD, GOOD + ["extra"]]))
    before = src.read_bytes()
    one_line_exit_2(capsys, ["predict", "--csv", str(src), "--out", str(src)], "would lose", "line 3")
    assert src.read_bytes() == before
