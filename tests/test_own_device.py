"""Bring your own device, as README walks through it: measure this host (a real, small
measurement; energy from the shipped tegrastats recording replayed, so it runs anywhere) ->
fit a profile -> measure idle power with the measurement API -> train on the profile *path*
-> evaluate it beside the baselines. No step needs a shipped profile name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from bench.config import ParamsError, params_from_dict
from bench.paths import DATA_DIR

REPLAY_LOG = DATA_DIR / "samples" / "tegrastats" / "tegra_burn_6core_vdd_cpu_gpu_cv.log"


def test_measure_fit_train_evaluate_on_a_profile_path(tmp_path):
    from bench.pipeline.evaluate import run_cells, suite_cells
    from bench.pipeline.measure import measure_host
    from bench.pipeline.training import train_run
    from bench.world.fit import host_profile
    from bench.world.profiles import load_profile, profile_to_dict
    from bench.world.opclasses import load_op_classes
    from hw.measurement import EnergyMonitor
    from hw.replay import ReplayMeter

    # 1. measure (three light workloads, two runs each) with the replayed Jetson log as meter
    trace = measure_host(["lstm_text", "mobilenet_v2", "transformer_text"], warmup=1, repeats=2, threads=1,
                         adapter="replay", replay_log=str(REPLAY_LOG), out_path=tmp_path / "host_trace.parquet")
    assert (trace["error"].fillna("") == "").all() and trace["power_w"].notna().all()
    # 2. fit
    prof, fit, _ = host_profile(trace, load_op_classes(), name="my_host")
    data = profile_to_dict(prof)
    path = tmp_path / "my_host.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    run = {"learner": "autoscale", "profile": str(path)}
    with pytest.raises(ParamsError, match=r"not measured \(NaN\): \['idle_power_w'\]"):
        params_from_dict({"train": {"runs": {"mine": run}}})
    # 3. idle power from a window of the same meter; radios the device has
    with EnergyMonitor(ReplayMeter.from_file(REPLAY_LOG, speed=20), rate_hz=50) as mon, mon.window("idle") as w:
        import time

        time.sleep(0.3)
    data["idle_power_w"] = {"value": round(w.power_w, 3), "source": f"measured: idle window, meter {w.meter}"}
    data["radios"] = ["wifi"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    params = params_from_dict({"train": {"runs": {"mine": run}}})
    assert params.train.runs["mine"].profile == str(path)
    assert load_profile(path).idle_power_w == pytest.approx(w.power_w, abs=1e-3)
    # 4. train on the path
    out = tmp_path / "train" / "mine"
    summary = train_run("mine", "autoscale", str(path), {"total_steps": 400, "scenarios": ["wifi_strong"]},
                        root_seed=1, out_dir=out)
    assert summary["profile"] == str(path) and (out / "policy").exists()
    # 5. evaluate it beside the baselines
    cells = suite_cells("mine", out, ["cpu_only", "cloud_only", "oracle"], ["wifi_strong"], seeds=1, steps=30,
                        root_seed=1)
    results = run_cells(cells, workers=1, progress=False)
    assert set(results["policy"]) == {"autoscale", "cpu_only", "cloud_only", "oracle"}
    assert np.isfinite(results["energy_mj"]).all()
    assert (results["profile"] == str(path)).all()
    assert json.loads((out / "train.json").read_text())["config"]["edge"] == str(path)
