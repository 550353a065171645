"""Host latency measurement: timing maths, failure rows, and a real measurement."""

import time

import numpy as np
import pytest

from bench.pipeline import measure


def test_time_callable_counts_and_excludes_warmup():
    calls = []
    samples = measure.time_callable(lambda: calls.append(1), warmup=3, repeats=5)
    assert len(calls) == 8 and samples.shape == (5,)


def test_time_callable_measures_real_time():
    samples = measure.time_callable(lambda: time.sleep(0.02), warmup=0, repeats=3)
    assert np.all(samples >= 19.0) and np.all(samples < 2000.0)  # milliseconds, not seconds or µs


def test_summary_is_median_and_p95():
    s = measure.summarise_latencies(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert s["latency_ms"] == 3.0 and s["n_runs"] == 5
    assert s["latency_p95_ms"] == pytest.approx(np.percentile([1, 2, 3, 4, 100], 95))


def test_measure_host_is_real_resumable_and_keeps_failures(tmp_path, monkeypatch):
    out = tmp_path / "host_trace.parquet"
    frame = measure.measure_host(["lstm_text"], warmup=1, repeats=2, adapter="none", out_path=out)
    row = frame.iloc[0]
    assert row.latency_ms > 0 and row.n_runs == 2 and row.meter == "none" and row.error == ""
    assert np.isnan(row.energy_mj)  # no meter, no energy: never an invented number
    assert not list(tmp_path.glob(".collect-*"))  # the journal is cleared after a complete sweep

    calls = []

    def flaky(name, warmup, repeats, threads):
        calls.append(name)
        if name == "resnet18":
            raise RuntimeError("simulated failure")
        return {"latency_ms": 1.0, "latency_p95_ms": 1.5, "n_runs": repeats}

    monkeypatch.setattr(measure, "time_workload", flaky)
    frame = measure.measure_host(["resnet18", "lstm_text"], 0, 1, adapter="none", out_path=out)
    assert len(frame) == 2
    assert "simulated failure" in frame.set_index("workload").error["resnet18"]  # a failed workload is a row


def test_measure_host_says_how_to_resume(tmp_path, monkeypatch):
    from hw import cli as hw_cli

    monkeypatch.setattr(hw_cli, "main", lambda argv, time_fn=None: 3)
    with pytest.raises(RuntimeError, match="resumes"):
        measure.measure_host(["lstm_text"], 0, 1, adapter="none", out_path=tmp_path / "t.parquet")


def test_host_cpu_mhz_is_a_number():
    mhz = measure.host_cpu_mhz()
    assert np.isnan(mhz) or mhz > 100
