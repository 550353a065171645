"""Host latency measurement: timing maths, failure rows, and a real measurement."""

import time

import numpy as np
import pytest

from bench import measure
from bench.traces import trace_frame


def test_time_callable_counts_and_excludes_warmup():
    calls = []
    samples = measure.time_callable(lambda: calls.append(1), warmup=3, repeats=5)
    assert len(calls) == 8 and samples.shape == (5,)


def test_time_callable_measures_real_time():
    samples = measure.time_callable(lambda: time.sleep(0.02), warmup=0, repeats=3)
    assert np.all(samples >= 19.0) and np.all(samples < 200.0)


def test_summary_is_median_and_p95():
    s = measure.summarise_latencies(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert s["latency_ms"] == 3.0 and s["n_runs"] == 5
    assert s["latency_p95_ms"] == pytest.approx(np.percentile([1, 2, 3, 4, 100], 95))


def test_host_rows_measure_a_real_model_and_keep_failures(monkeypatch):
    rows = measure.host_rows(["lstm_text"], warmup=1, repeats=2, progress=False)
    row = rows[0]
    assert row["latency_ms"] > 0 and row["n_runs"] == 2 and row["meter"] == "none"
    assert "energy_mj" not in row  # no meter, no energy: never an invented number

    def broken(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(measure, "time_workload", broken)
    rows = measure.host_rows(["resnet18", "lstm_text"], 0, 1, progress=False)
    frame = trace_frame(rows)
    assert len(frame) == 2 and (frame.error.str.contains("simulated failure")).all()


def test_host_cpu_mhz_is_a_number():
    mhz = measure.host_cpu_mhz()
    assert np.isnan(mhz) or mhz > 100
