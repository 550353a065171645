"""`python -m bench` entry points as a person would use them."""

import subprocess
import sys

from bench import cli
from bench.cli import main
from bench.world.profiles import list_profiles, load_profile


def test_profiles_prints_targets_and_levels(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    for name in list_profiles():
        assert f"== {name}" in out
    phone = load_profile("phone_sd845")
    assert f"{phone.targets['cpu'].freq_mhz[0]:g} .. {phone.targets['cpu'].freq_mhz[-1]:g}" in out
    assert "dsp" in out and "int8" in out


def test_params_check_and_describe(capsys):
    assert main(["params"]) == 0
    assert main(["params", "--describe"]) == 0
    out = capsys.readouterr().out
    assert "profile.repeats" in out and "ok" in out


def test_bad_params_file_exits_2_with_message(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    bad.write_text("profile:\n  adapter: multimeter\n")
    assert main(["params", "--file", str(bad)]) == 2
    assert "profile.adapter" in capsys.readouterr().err


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "bench", "profiles", "cloud_rtx3080"], capture_output=True, text=True)
    assert proc.returncode == 0 and "cloud_rtx3080" in proc.stdout


def test_env_yml_check_passes():
    assert main(["env-yml", "--check"]) == 0


def test_collect_passes_options_through_and_writes_a_trace(tmp_path):
    from pathlib import Path

    from hw.traces import read_trace

    log = Path(__file__).resolve().parents[1] / "data/samples/tegrastats/tegra_burn_6core_vdd_cpu_gpu_cv.log"
    out = tmp_path / "trace.parquet"
    code = main(["collect", "--adapter", "replay", "--replay", str(log), "--workloads", "lstm_text",
                 "--repeats", "2", "--warmup", "0", "--out", str(out), "--no-progress"])
    assert code == 0
    frame, meta = read_trace(out)
    assert frame.workload.tolist() == ["lstm_text"] and frame.meter[0] == "replay"
    assert frame.energy_mj[0] > 0 and meta["adapter"] == "replay"


def test_collect_unavailable_meter_exits_2_with_reason(capsys, tmp_path):
    assert main(["collect", "--adapter", "rapl", "--rapl-root", str(tmp_path / "none"), "--workloads", "lstm_text",
                 "--out", str(tmp_path / "t.parquet")]) == 2
    assert "rapl" in capsys.readouterr().err


# --------------------------------------------------------------------------- user mistakes: one line, exit 2

import errno  # noqa: E402

import pytest  # noqa: E402
from cli_checks import one_line_exit_2 as _one_line_exit_2  # noqa: E402


def _bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for p, c in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("content,needles", [
    (b"seed: 1\nseed: 2\n", ["line 2", "duplicate key 'seed'"]),
    (b"seed: 1\nprofile: {adapter: \xff}\n", ["line 2", "not UTF-8"]),
    (b"- seed\n", ["top level"]),
    (_bomb().encode(), ["aliases are expanded"]),
    (b"seed: .nan\n", ["seed", "must be of type int"]),
    (b"train:\n  dvfo: {w_energy: .nan}\n", ["train.dvfo.w_energy", "finite"]),
    (b"train:\n  runs: {'../../x': {learner: dvfo, profile: jetson_xavier_nx}}\n", ["not a safe name"]),
    (b"evaluate:\n  suites: {s: {run: autoscale_phone, policies: []}}\n", ["evaluate.suites.s.policies"]),
    (b"profile: {adapter: replay, replay_log: no/such.log}\n", ["profile.replay_log", "no such file"]),
])
def test_params_mistakes(tmp_path, capsys, content, needles):
    bad = tmp_path / "params.yaml"
    bad.write_bytes(content)
    _one_line_exit_2(capsys, ["params", "--file", str(bad)], *needles)


@pytest.mark.parametrize("argv,needles", [
    ([], ["the following arguments are required"]),
    (["frobnicate"], ["invalid choice"]),
    (["params", "--file"], ["expected one argument"]),
    (["params", "--file", "/no/such/params.yaml"], ["no such file"]),
    (["profiles", "phone_mars"], ["phone_mars", "phone_sd845"]),
    (["profiles", "../../etc/passwd"], ["no device profile"]),
    (["notebook", "deploy"], ["unknown stage", "'deploy'", "train"]),
    (["notebook", "train"], ["--run", "autoscale_phone"]),
    (["notebook", "train", "--run", "../../x"], ["--run", "'../../x'"]),
    (["workloads", "--bogus"], ["unrecognized arguments"]),
    (["readme", "--colour"], ["unrecognized arguments"]),
    (["perf", "--repeats", "0"], ["--repeats must be >= 1"]),
    (["perf", "--workers", "many"], ["invalid int value"]),
    (["env-yml", "--fix"], ["unrecognized arguments"]),
    (["collect", "--no-such-option"], ["collect"]),
    (["sweep", "--no-such-option"], ["unrecognized arguments"]),
])
def test_every_sub_command_reports_mistakes_on_one_line(capsys, argv, needles):
    _one_line_exit_2(capsys, argv, *needles)


def test_readme_without_results_exits_2(tmp_path, capsys):
    assert main(["readme", "--results", str(tmp_path)]) == 2
    assert "metrics_overall.json" in capsys.readouterr().err  # names the evaluate stage's file it lacks


def test_os_errors_on_user_paths_are_one_line(capsys, monkeypatch):
    from bench import cli

    def read_only(*_):
        raise PermissionError(errno.EACCES, "Permission denied", "/results/metrics.json")

    def disk_full(*_):
        raise OSError(errno.ENOSPC, "No space left on device", "/results/trace.parquet")

    def bug(*_):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setitem(cli.COMMANDS, "readme", cli.Command("test", read_only))
    _one_line_exit_2(capsys, ["readme"], "/results/metrics.json", "Permission denied")
    monkeypatch.setitem(cli.COMMANDS, "readme", cli.Command("test", disk_full))
    _one_line_exit_2(capsys, ["readme"], "No space left")
    monkeypatch.setitem(cli.COMMANDS, "readme", cli.Command("test", bug))
    with pytest.raises(OSError):  # not a user's mistake: the traceback stays
        main(["readme"])
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    monkeypatch.setitem(cli.COMMANDS, "readme", cli.Command("test", read_only))
    with pytest.raises(PermissionError):
        main(["readme"])


def test_argparse_is_restored_after_a_sub_command():
    import argparse

    before = argparse.ArgumentParser.error
    main(["env-yml", "--check"])
    assert argparse.ArgumentParser.error is before


def test_subprocess_user_mistake_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("seed: 1\ntrain:\n  dvfo: {n_cpu_levels: 0}\n")
    proc = subprocess.run([sys.executable, "-m", "bench", "params", "--file", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "train.dvfo.n_cpu_levels" in proc.stderr


def test_help_lists_every_command_once(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert sum(line.split()[0] == name for line in out.splitlines() if line.strip()) == 1, name


def test_passthrough_commands_name_themselves_in_their_usage(capsys):
    for name in ("collect", "predict", "calibrate", "sweep", "readme", "dvc-deps"):
        assert cli.main([name, "--help"]) == 0
        assert f"usage: python -m bench {name}" in capsys.readouterr().out, name
