"""Per-call CPU time of short calls (``act``), robust to a shared machine.

A call of a few µs timed with the wall clock counts the time another job held the core whenever the
scheduler preempts it in the middle; the thread's CPU clock (``CLOCK_THREAD_CPUTIME_ID``, ns resolution
on Linux) does not. Reading that clock costs a few hundred ns itself (a system call, not the vDSO), which
for a 1 µs call is not negligible: the clock's own cost, measured the same way around an empty call, is
subtracted (its median), and the result reported beside it.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np


def clock_cost_ns(n: int = 20_000) -> float:
    """Median thread-CPU time between two consecutive clock reads around nothing (ns)."""
    clock = time.thread_time_ns
    d = np.empty(n)
    for i in range(n):
        t0 = clock()
        d[i] = clock() - t0
    return float(np.median(d))


def per_call_cpu_us(fn: Callable[[object], object], args: Sequence[object], n: int, repeats: int = 1,
                    warmup: int = 50) -> dict[str, float]:
    """p50 / p99 of ``fn(args[i % len(args)])`` in thread CPU time (µs, net of the clock's own cost), the median
    over ``repeats`` passes of ``n`` calls of each percentile; also the same figures in wall time
    (``perf_counter``, an upper bound under load) and the clock cost subtracted."""
    cpu, wall = time.thread_time_ns, time.perf_counter_ns
    for i in range(warmup):
        fn(args[i % len(args)])
    cost = clock_cost_ns()
    c, w = np.empty(n), np.empty(n)
    p = {"p50": [], "p99": [], "wall_p50": [], "wall_p99": []}
    m = len(args)
    for _ in range(max(1, repeats)):
        for i in range(n):
            a = args[i % m]
            w0 = wall()
            c0 = cpu()
            fn(a)
            c[i] = cpu() - c0
            w[i] = wall() - w0
        for key, arr in (("", c - cost), ("wall_", w)):
            p[f"{key}p50"].append(np.percentile(arr, 50) / 1e3)
            p[f"{key}p99"].append(np.percentile(arr, 99) / 1e3)
    out = {f"{k}_us": float(np.median(v)) for k, v in p.items()}
    out["clock_cost_us"] = cost / 1e3
    return out
