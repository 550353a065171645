"""The twin's local base near each request in time: alone inferences timed inside the request window.

The twin's local time for a request is its workload's *uncontended* time (the base: thread CPU time of one paced
inference with no co-runner) stretched by the host-measured co-runner slowdown. A base pooled over rounds timed
before and after the requests (:func:`bench.testbed.loop.bracket_base`) meets a drift of the host's own speed that
is linear in time; one that turns within the run it cannot: in ``campaign_bracketed_nice-10``'s
autoscale/cpu_corunner (26 % latency MAPE, local 39 %) the rounds after the requests read 1.29-1.31x those before,
while the requests themselves ran at 0.80-0.85x the pooled base - fast in the middle, slow on both sides.

So the run also times alone inferences *between* its requests (:func:`bench.testbed.loop.alone_block`, every
``TestbedConfig.base_every`` requests) and each request's base is the median of the ``nearest`` alone samples of
its workload closest to its arrival in time (:func:`nearest_median`): a step or a reversing ramp is followed with a
lag of about one block, and one bad sample among the nearest moves nothing (a median, not an interpolation between
two samples). Samples that are not a time (NaN, infinite, not positive) are dropped; a request whose workload has
no usable sample keeps the pooled base (factor 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: alone samples whose median is a request's base: 3 is the fewest a median can drop one bad sample from; with one
#: sample per workload per block, they span about three blocks (assumed: resolution vs noise, not fitted to a run)
NEAREST = 3


def valid(values) -> np.ndarray:
    """The samples that are a time: finite and positive."""
    v = np.asarray(values, dtype=float)
    return np.isfinite(v) & (v > 0)


def nearest_median(sample_t, sample_v, query_t, nearest: int = NEAREST) -> np.ndarray:
    """Per query time: the median of the ``nearest`` valid samples closest to it in time (ties: the earlier
    sample first); all valid samples where there are fewer; NaN where none is valid or the query time is not
    finite. Samples with a non-finite time are dropped."""
    t, v = np.asarray(sample_t, dtype=float).reshape(-1), np.asarray(sample_v, dtype=float).reshape(-1)
    if t.shape != v.shape:
        raise ValueError(f"sample times {t.shape} and values {v.shape} differ in shape")
    if nearest < 1:
        raise ValueError(f"nearest must be >= 1, got {nearest}")
    keep = valid(v) & np.isfinite(t)
    t, v = t[keep], v[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    q = np.asarray(query_t, dtype=float).reshape(-1)
    out = np.full(len(q), np.nan)
    if not len(t):
        return out
    k = min(int(nearest), len(t))
    for i, qi in enumerate(q):
        if np.isfinite(qi):
            near = np.argsort(np.abs(t - qi), kind="stable")[:k]
            out[i] = float(np.median(v[near]))
    return out


def pooled_median(sample_v) -> float:
    """The median of the valid samples (the bracket's base), NaN where none is valid."""
    v = np.asarray(sample_v, dtype=float).reshape(-1)
    v = v[valid(v)]
    return float(np.median(v)) if len(v) else float("nan")


def request_bases(alone: pd.DataFrame, workloads, arrival_s, time_col: str, nearest: int = NEAREST,
                  pooled: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(each request's base in ms, its factor over the pooled base) from ``alone`` (columns ``workload``,
    ``run_s``: seconds on the requests' clock, and ``time_col``: the alone time, thread CPU time or wall clock).

    ``pooled``: the base per workload the twin's profile was fitted to (default: the pooled median of ``alone``);
    the factor (local / pooled) multiplies the twin's local time. Where a workload has no usable sample (or no
    pooled base) the base is the pooled one and the factor 1: the request keeps the profile's time."""
    w = np.asarray(workloads).astype(str)
    at = np.asarray(arrival_s, dtype=float)
    base, factor = np.full(len(w), np.nan), np.ones(len(w))
    groups = {str(k): g for k, g in alone.groupby("workload", sort=False)} if len(alone) else {}
    for name in np.unique(w):
        rows = w == name
        g = groups.get(name)
        ref = (pooled or {}).get(name, pooled_median(g[time_col]) if g is not None else np.nan)
        local = (nearest_median(g["run_s"], g[time_col], at[rows], nearest) if g is not None
                 else np.full(int(rows.sum()), np.nan))
        ok = np.isfinite(local) & np.isfinite(ref) & (ref > 0)
        base[rows] = np.where(ok, local, ref)
        factor[rows] = np.where(ok, local / np.where(ok, ref, 1.0), 1.0)
    return base, factor
