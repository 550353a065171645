"""`python -m bench` entry points as a person would use them."""

import subprocess
import sys

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
