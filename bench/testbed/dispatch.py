"""The testbed's own per-request dispatch overhead, measured before the requests and given to the twin.

A live request's latency runs from its arrival to its answer (:class:`bench.testbed.live.Dispatcher`); in
between, beside the parts the twin models (compute, transfer, the waits for the CPU, the transmitter and the
server), the testbed itself spends time the kernel knows nothing of: the dispatcher's own work from the arrival
to the hand-off (``issue_ms``: the radios' quiet times, the observation, the policy's choice), the worker
thread's wake-up on the edge's CPUs (``worker_start_ms``; together, never less than the lateness the dispatcher
saw, ``dispatch_late_ms``) and what no timing point covers inside the worker (``other_ms``: the meter reads and
the thread hand-offs around the work). On the idle host's 40-request checks (results/testbed/check40_local_nice-10)
it came to a median 1.2-1.5 ms (p95 4 ms), the same for local and offloaded requests (the same code path up to
the worker); the twin, predicting a paced local request's latency as its compute alone, under-predicted every
one by it.

So, before the requests, :func:`measure` dispatches ``jobs`` real requests (the served workloads, locally,
in turn) through a :class:`~bench.testbed.live.Dispatcher` like the requests' (same pacing, the same worker
pool on the edge's CPUs, the dispatcher's thread where the requests' runs, the same ``serve`` function and its
timing points, the co-runners at the first request's load), and :func:`estimate` takes each part's median over
the good samples (finite, non-negative parts; a job that failed or timed out is dropped and counted). The twin
adds the total (:data:`TOTAL`) to every request's predicted latency as its own part, ``pred_dispatch_ms``
(:func:`apply`): never fitted on the requests it is compared with. Without the measurement (a DVFO split run,
``--dispatch-jobs 0``, a run written before it) the twin adds 0 and the summary says so (:func:`not_measured`).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
import pandas as pd

#: the measured parts of the overhead (columns of a request's row); their total is :data:`TOTAL`
PARTS = ("dispatch_late_ms", "issue_ms", "worker_start_ms", "other_ms")
#: latency less every part the twin models: the lateness of the worker's start plus the unaccounted rest
TOTAL = "dispatch_ms"
#: a part this far below 0 is rounding (``other_ms`` is a difference of sums of clock readings), beyond it a bad sample
NEG_TOL_MS = 1e-6


def overhead_parts(rows: pd.DataFrame) -> pd.DataFrame:
    """Per row (a calibration job or a request): the overhead's parts and its total, ``dispatch_ms`` = latency
    less the modelled parts (local compute, transfer, server compute, the waits for the CPU/transmitter/server)
    = ``dispatch_late_ms + other_ms``. ``other_ms`` is computed where a row lacks it."""
    d = pd.DataFrame(index=rows.index)
    modelled = rows[["local_ms", "transfer_ms", "server_ms", "edge_queue_ms", "server_queue_ms"]].sum(axis=1,
                                                                                                      min_count=5)
    d[TOTAL] = rows["latency_ms"] - modelled
    for c in ("dispatch_late_ms", "issue_ms", "worker_start_ms"):
        d[c] = rows[c] if c in rows else np.nan
    d["other_ms"] = d[TOTAL] - d["dispatch_late_ms"]
    return d


def estimate(rows: pd.DataFrame) -> dict[str, Any]:
    """The overhead the twin adds: each part's median (ms) over the good jobs, ``samples`` and ``dropped`` (a
    job with a non-finite or negative part - a clock that went wrong, a job that failed - or that timed out).
    No good job: :func:`not_measured`."""
    if rows is None or not len(rows):
        return not_measured("no calibration job ran")
    d = overhead_parts(rows)
    vals = d[[TOTAL, *PARTS]].to_numpy(dtype=float)
    good = np.isfinite(vals).all(axis=1) & (vals >= -NEG_TOL_MS).all(axis=1)
    if "timed_out" in rows:
        good &= ~rows["timed_out"].fillna(True).astype(bool).to_numpy()
    if not good.any():
        return not_measured(f"all {len(rows)} calibration jobs were bad (non-finite or negative parts)",
                            dropped=int(len(rows)))
    g = d[good]
    out: dict[str, Any] = {"measured": True, "samples": int(good.sum()), "dropped": int((~good).sum())}
    out[TOTAL] = float(g[TOTAL].median())
    out["dispatch_p95_ms"] = float(g[TOTAL].quantile(0.95))
    for c in PARTS:
        out[c] = float(g[c].median())
    return out


def not_measured(why: str, dropped: int = 0) -> dict[str, Any]:
    """The record of a run without the measurement: the twin adds 0 (the behaviour before it), and says why."""
    return {"measured": False, "samples": 0, "dropped": int(dropped), TOTAL: 0.0,
            "note": f"dispatch overhead not measured ({why}): the twin adds 0 ms"}


def apply(df: pd.DataFrame, est: dict[str, Any]) -> None:
    """Give the twin the measured overhead, the same for every request (local or offloaded: the same dispatcher
    and worker path; the check40 cloud_only run paid a median 1.45 ms against 1.2 ms local):
    ``pred_dispatch_ms`` (the total) is added to ``pred_latency_ms``; of it, the late dispatch goes to
    ``pred_queue_ms`` (the measured ``queue_ms`` counts ``dispatch_late_ms``), the rest is the predicted
    ``other_ms`` (``pred_other_ms``). The measured side gets ``dispatch_ms`` (:func:`overhead_parts`). The
    overhead is added after the kernel, not fed into its queues: the worker's start delays a request's use of
    the CPU by about 1 ms, small against the 200 ms between arrivals."""
    total = float(est.get(TOTAL, 0.0)) if est.get("measured") else 0.0
    late = float(est.get("dispatch_late_ms", 0.0)) if est.get("measured") else 0.0
    df[TOTAL] = overhead_parts(df)[TOTAL]
    df["pred_dispatch_ms"] = total
    df["pred_latency_ms"] = df["pred_latency_ms"] + total
    if "pred_queue_ms" in df:
        df["pred_queue_ms"] = df["pred_queue_ms"] + late
    df["pred_other_ms"] = total - late


def measure(make_clock: Callable[[], Any], serve: Callable[..., dict[str, Any]], workloads, jobs: int,
            before_submit: Callable[[], Any] | None = None,
            after_submit: Callable[[], Any] | None = None,
            at_arrival: Callable[[int], Any] | None = None) -> pd.DataFrame:
    """``jobs`` local requests through a fresh dispatcher (``make_clock()``, a
    :class:`~bench.testbed.live.Dispatcher`), paced as it is, issued as the live loop issues a request:
    ``wait_for``, the dispatcher's own work before the hand-off (``before_submit``: the loop's per-request steps
    that have no side effect on the run), ``submit(serve, arrival, late, k, workload, "", turn)``, then the
    dispatcher's work after the hand-off (``after_submit``: the twin's step; it holds the GIL the starting worker
    needs, so it is part of the worker's start: without it, the first smoke run's calibration measured a median
    0.2 ms worker start against 0.8 ms live). ``at_arrival(k)``: on a thread of its own, called at job ``k``'s
    arrival, as the live shaper shapes the world at each request's (it too competes for the GIL then). Returns the
    jobs' rows (``serve``'s row plus the dispatcher's timing columns), in order."""
    wls = list(workloads)
    if int(jobs) <= 0 or not wls:
        return pd.DataFrame()
    clock = make_clock()
    stop = threading.Event()
    errors: list[BaseException] = []

    def arrivals() -> None:
        try:
            for k in range(1, int(jobs)):  # job 0's world is the one already set, as request 0's
                wait = clock.arrival(k) - time.perf_counter()
                if wait > 0 and stop.wait(wait):
                    return
                at_arrival(k)
        except BaseException as exc:  # noqa: BLE001 - raised on the calling thread below
            errors.append(exc)

    shaper = threading.Thread(target=arrivals, name="calibration-shaper", daemon=True) if at_arrival else None
    clock.start()
    if shaper is not None:
        shaper.start()
    try:
        for k in range(int(jobs)):
            arrival, late_ms = clock.wait_for(k)
            if before_submit is not None:
                before_submit()
            clock.submit(serve, arrival, late_ms, -1 - k, wls[k % len(wls)], "", clock.turn(""))
            if after_submit is not None:
                after_submit()
        rows = clock.results()  # shuts the calibration's pool down
    finally:
        stop.set()
        if shaper is not None:
            shaper.join()
    if errors:
        raise errors[0]
    return pd.DataFrame(rows)
