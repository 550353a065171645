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

    def flaky(name, threads):
        calls.append(name)
        if name == "resnet18":
            raise RuntimeError("simulated failure")
        return lambda warmup, repeats: {"latency_ms": 1.0, "latency_p95_ms": 1.5, "n_runs": repeats}

    monkeypatch.setattr(measure, "prepare_workload", flaky)
    frame = measure.measure_host(["resnet18", "lstm_text"], 0, 1, adapter="none", out_path=out)
    assert len(frame) == 2
    assert "simulated failure" in frame.set_index("workload").error["resnet18"]  # a failed workload is a row


def test_measure_host_says_how_to_resume(tmp_path, monkeypatch):
    from hw import cli as hw_cli

    monkeypatch.setattr(hw_cli, "main", lambda argv, **runner: 3)
    with pytest.raises(RuntimeError, match="resumes"):
        measure.measure_host(["lstm_text"], 0, 1, adapter="none", out_path=tmp_path / "t.parquet")


def test_host_cpu_mhz_is_a_number():
    mhz = measure.host_cpu_mhz()
    assert np.isnan(mhz) or mhz > 100


# --------------------------------------------------------------------------- measurement hygiene

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1e4, allow_nan=False), min_size=1, max_size=300))
def test_median_ci_brackets_the_median(xs):
    lo, hi = measure.median_ci(np.array(xs))
    assert lo <= np.median(xs) <= hi
    assert min(xs) <= lo and hi <= max(xs)


def test_steady_timings_stop_at_the_minimum_and_are_not_noisy():
    h = measure.Hygiene(max_repeats=50, ci_rel=1e6, noisy_cv=1e6)  # any interval is tight enough
    samples, reached = measure.time_until_tight(lambda: None, 5, h)
    assert reached and len(samples) == 5
    stats = measure.hygiene_stats(samples, reached, h)
    assert not stats["noisy"] and stats["ci_low_ms"] <= stats["latency_ms"] <= stats["ci_high_ms"]
    assert stats["latency_min_ms"] <= stats["latency_fit_ms"] <= stats["latency_ms"]


def test_erratic_timings_hit_the_cap_and_are_flagged():
    h = measure.Hygiene(max_repeats=12, ci_rel=0.0, noisy_cv=0.05)
    stats = measure.hygiene_stats(np.array([1.0, 9.0] * 6), False, h)
    assert stats["noisy"] and "CI stayed wider" in stats["noise_reasons"] and "spread" in stats["noise_reasons"]
    samples, reached = measure.time_until_tight(lambda: None, 3, h)
    assert not reached and len(samples) == 12  # ci_rel 0 is never met: the cap ends it


def test_warm_up_stops_once_stable_and_respects_its_cap():
    calls = []
    out = measure.warm_until_stable(lambda: calls.append(1), 2, measure.Hygiene(max_warmup=40, warmup_tol=10.0))
    assert out["warmup_stable"] and out["warmup_runs"] == 3 == len(calls)
    out = measure.warm_until_stable(lambda: None, 2, measure.Hygiene(max_warmup=4, warmup_tol=-1.0))
    assert not out["warmup_stable"] and out["warmup_runs"] == 4


def test_host_timer_writes_hygiene_and_a_noise_warning_into_the_trace(tmp_path):
    from hw.traces import read_trace

    h = measure.Hygiene(max_repeats=4, ci_rel=0.0, max_warmup=3, class_runs=3)  # ci 0: always "not tight"
    out = tmp_path / "t.parquet"
    measure.measure_host(["lstm_text"], 1, 3, adapter="none", out_path=out, hygiene=h)
    frame, meta = read_trace(out)
    rec = meta["hygiene"]["workloads"]["lstm_text"]
    assert rec["n_runs"] == 4 and frame.n_runs[0] == 4 and rec["noisy"]
    assert meta["noisy_workloads"] == ["lstm_text"] and "NOISY MACHINE" in meta["warning"]


def test_class_split_adds_up_to_the_given_latency():
    h = measure.Hygiene(class_runs=3, max_warmup=2)
    cls = measure.measure_classes(["lstm_text"], h, latency_ms={"lstm_text": 5.0})
    row = cls.iloc[0]
    parts = [row[f"class_ms_{c}"] for c in ("conv", "dwconv", "matmul", "attention", "recurrent", "elementwise")]
    assert sum(parts) == pytest.approx(5.0)
    assert row["class_ms_recurrent"] > row["class_ms_conv"] == 0.0
