"""The testbed's own dispatch overhead (bench/testbed/dispatch.py): measured before the requests, added by the twin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.testbed import dispatch, loop
from bench.testbed.live import Dispatcher


def _jobs(late, other, worker=None, issue=None, local=20.0, timed_out=None) -> pd.DataFrame:
    """Calibration rows as the dispatcher and ``serve`` write them: latency = work + late, work = local + other."""
    late, other = np.asarray(late, dtype=float), np.asarray(other, dtype=float)
    n = len(late)
    worker = late * 0.6 if worker is None else np.asarray(worker, dtype=float)
    issue = late * 0.4 if issue is None else np.asarray(issue, dtype=float)
    return pd.DataFrame({"local_ms": np.full(n, local), "transfer_ms": 0.0, "server_ms": 0.0,
                         "edge_queue_ms": 0.1, "server_queue_ms": 0.0,
                         "latency_ms": local + 0.1 + late + other, "dispatch_late_ms": late,
                         "issue_ms": issue, "worker_start_ms": worker,
                         "timed_out": np.zeros(n, bool) if timed_out is None else np.asarray(timed_out, bool)})


def _requests(n=4, pred_queue=0.0) -> pd.DataFrame:
    d = _jobs([1.0] * n, [0.5] * n)
    d["route"] = ["cpu"] * (n - 1) + ["cloud_wifi"]
    d["queue_ms"] = d["dispatch_late_ms"] + d["edge_queue_ms"] + d["server_queue_ms"]
    d["pred_latency_ms"] = 20.0
    d["pred_queue_ms"] = pred_queue
    return d


def test_estimate_is_the_median_per_part():
    e = dispatch.estimate(_jobs([1.0, 1.2, 5.0], [0.2, 0.1, 3.0]))
    assert e["measured"] and e["samples"] == 3 and e["dropped"] == 0
    assert e["dispatch_ms"] == pytest.approx(1.3)  # median of 1.2, 1.3, 8.0
    assert e["dispatch_late_ms"] == pytest.approx(1.2) and e["other_ms"] == pytest.approx(0.2)
    assert e["worker_start_ms"] == pytest.approx(0.72)


def test_estimate_ignores_bad_samples_and_counts_them():
    good = _jobs([1.0, 1.1, 1.2], [0.2, 0.2, 0.2])
    bad = _jobs([np.nan, 1.0, -3.0, 1.0, np.inf], [0.2, 0.2, 0.2, 0.2, 0.2], timed_out=[0, 1, 0, 0, 0])
    bad.loc[3, "worker_start_ms"] = -1.0  # a clock that went backwards
    e = dispatch.estimate(pd.concat([good, bad], ignore_index=True))
    assert e["samples"] == 3 and e["dropped"] == 5
    assert e["dispatch_ms"] == pytest.approx(dispatch.estimate(good)["dispatch_ms"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.0, 50.0), min_size=1, max_size=20),
       st.lists(st.sampled_from([np.nan, np.inf, -np.inf, -5.0, -1e-3]), min_size=0, max_size=20))
def test_estimate_unmoved_by_any_bad_samples(lates, bads):
    good = _jobs(lates, [0.3] * len(lates))
    rows = pd.concat([good, _jobs(bads, [0.3] * len(bads))], ignore_index=True) if bads else good
    e = dispatch.estimate(rows)
    assert e["samples"] == len(lates) and e["dropped"] == len(bads)
    assert np.isclose(e["dispatch_ms"], np.median(np.asarray(lates) + 0.3))


def test_estimate_without_good_samples_is_not_measured():
    e = dispatch.estimate(_jobs([np.nan, -1.0], [0.1, 0.1]))
    assert not e["measured"] and e["dispatch_ms"] == 0.0 and e["dropped"] == 2 and "adds 0" in e["note"]
    assert not dispatch.estimate(pd.DataFrame())["measured"]


def test_twin_adds_the_measured_overhead_to_every_request():
    df = _requests(pred_queue=0.0)
    e = dispatch.estimate(_jobs([1.0, 1.2, 1.4], [0.3, 0.3, 0.3]))
    dispatch.apply(df, e)
    # local and offloaded alike: the same dispatcher and worker path
    assert np.allclose(df["pred_latency_ms"], 20.0 + 1.5) and np.allclose(df["pred_dispatch_ms"], 1.5)
    assert np.allclose(df["pred_queue_ms"], 1.2)  # the late start, as the measured queue counts it
    assert np.allclose(df["pred_other_ms"], 0.3)
    assert np.allclose(df["dispatch_ms"], 1.5)  # the measured side: latency less the modelled parts
    errs = loop.part_errors(df)
    assert errs["dispatch_n"] == 4 and np.isclose(errs["dispatch_mae_ms"], 0.0)
    assert np.isclose(errs["dispatch_measured_median_ms"], 1.5)
    assert np.isclose(errs["dispatch_predicted_median_ms"], 1.5)


def test_without_the_measurement_the_twin_adds_nothing_and_says_so():
    df = _requests(pred_queue=2.0)
    e = dispatch.not_measured("--dispatch-jobs 0")
    dispatch.apply(df, e)
    assert np.allclose(df["pred_latency_ms"], 20.0) and np.allclose(df["pred_queue_ms"], 2.0)
    assert np.allclose(df["pred_dispatch_ms"], 0.0)
    assert not e["measured"] and "--dispatch-jobs 0" in e["note"] and "adds 0 ms" in e["note"]
    # the per-part comparison then shows the whole measured overhead as the error
    assert np.isclose(loop.part_errors(df)["dispatch_mae_ms"], 1.5)


def test_measure_runs_jobs_through_a_dispatcher_in_order():
    calls = []

    def serve(t, wl, radio, turn):
        turn.wait()
        try:
            calls.append((t, wl, radio))
            return {"local_ms": 0.0, "transfer_ms": 0.0, "server_ms": 0.0, "edge_queue_ms": 0.0,
                    "server_queue_ms": 0.0, "timed_out": False}
        finally:
            turn.release()

    steps, shaped = [], []
    rows = dispatch.measure(lambda: Dispatcher(1.0, pace=True, workers=2), serve, ["a", "b"], 5,
                            lambda: steps.append("before"), lambda: steps.append("after"),
                            at_arrival=shaped.append)
    assert len(rows) == 5 and steps == ["before", "after"] * 5
    assert shaped == [1, 2, 3, 4]  # the shaper's stand-in at every later job's arrival, on its own thread
    assert sorted(calls) == sorted([(-1 - k, "ab"[k % 2], "") for k in range(5)])
    assert {"latency_ms", "dispatch_late_ms", "worker_start_ms", "issue_ms"} <= set(rows.columns)
    e = dispatch.estimate(rows)
    assert e["measured"] and e["samples"] == 5 and e["dispatch_ms"] >= 0.0
    assert dispatch.measure(lambda: Dispatcher(1.0), serve, ["a"], 0).empty


def test_config_refuses_a_negative_job_count():
    with pytest.raises(loop.TestbedError, match="--dispatch-jobs"):
        loop.TestbedConfig(policy="cpu_only", scenario="wifi_strong", dispatch_jobs=-1)
    assert loop.TestbedConfig(policy="cpu_only", scenario="wifi_strong").dispatch_jobs > 0


def test_campaign_table_reports_the_dispatch_part_and_the_measured_overhead(tmp_path):
    from pathlib import Path

    from bench.testbed import compare

    summary = {"policy": "autoscale", "scenario": "cpu_corunner", "requests": 40, "latency_median_ms": 53.0,
               "latency_p95_ms": 68.0, "pred_latency_median_ms": 52.0, "pred_latency_p95_ms": 66.0,
               "latency_mape": 0.1, "timeouts": 0, "pred_timeouts": 0, "loadavg_start": [1.0], "loadavg_end": [1.0],
               "dispatch_measured_median_ms": 2.42, "dispatch_predicted_median_ms": 2.31, "dispatch_mae_ms": 0.9,
               "dispatch_overhead": {"measured": True, "dispatch_ms": 2.31, "samples": 12}}
    row = compare.row_from_summary(summary)
    assert row["dispatch_before_ms"] == 2.31 and row["dispatch_samples"] == 12 and row["dispatch_mae_ms"] == 0.9
    table = pd.DataFrame([row], columns=compare.COLUMNS)
    block = compare.markdown_table(table, {"loadavg_1min_min_max": [1.0, 1.0], "cpu_count": 2}, Path("r"))
    assert "| 2.4 / 2.3 |" in block


def test_a_negative_dispatch_job_count_is_one_line_and_exit_2(tmp_path, capsys):
    from bench.testbed import cli

    out = tmp_path / "out"
    rc = cli.main(["--policy", "cpu_only", "--scenario", "wifi_weak", "--dispatch-jobs", "-3", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--dispatch-jobs" in err and "-3" in err
    assert not out.exists()  # nothing half-made
