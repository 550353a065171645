"""Real latency measurement of the workloads on this host's CPU.

``time_workload`` is the runner behind the ``profile`` stage and behind
``python -m bench collect`` on a host: warm-up runs, then timed runs with
``time.perf_counter_ns`` under ``torch.inference_mode``; the median is
``latency_ms`` and the 95th percentile ``latency_p95_ms``. No energy is
invented here: energy comes from a meter (``hw``) wrapped around the timed runs,
or stays NaN with ``meter: none``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np


def host_cpu_mhz() -> float:
    """Current CPU clock of this host (cpufreq if exposed, else /proc/cpuinfo), NaN if unknown."""
    cur = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    try:
        return float(cur.read_text().strip()) / 1e3
    except (OSError, ValueError):
        pass
    try:
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.lower().startswith("cpu mhz")]
        return float(np.mean(mhz)) if mhz else float("nan")
    except (OSError, ValueError, IndexError):
        return float("nan")


def time_callable(fn: Callable[[], object], warmup: int, repeats: int) -> np.ndarray:
    """Wall-clock latencies (ms) of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - t0) / 1e6
    return out


def summarise_latencies(samples_ms: np.ndarray) -> dict[str, float]:
    return {
        "latency_ms": float(np.median(samples_ms)),
        "latency_p95_ms": float(np.percentile(samples_ms, 95)),
        "n_runs": int(len(samples_ms)),
    }


def time_workload(name: str, warmup: int = 2, repeats: int = 10, threads: int = 0) -> dict[str, float]:
    """Median and p95 latency (ms) of one batch-1 inference of workload ``name`` on the host CPU."""
    import torch

    from bench.workloads import build

    if threads:
        torch.set_num_threads(threads)
    model, example = build(name)
    with torch.inference_mode():
        samples = time_callable(lambda: model(example), warmup, repeats)
    return summarise_latencies(samples)


def host_rows(workloads: Iterable[str], warmup: int, repeats: int, threads: int = 0,
              progress: bool = True) -> list[dict]:
    """Trace rows (bench.traces schema) for every workload on the host CPU, latency only.

    A workload that fails becomes a row with ``error`` set; the sweep goes on.
    """
    import platform

    from bench.traces import utc_now

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    names = list(workloads)
    it = tqdm(names, desc="host latency", disable=not progress) if tqdm else names
    device = f"host:{platform.node()}"
    rows = []
    for name in it:
        row = {"device": device, "adapter": "none", "workload": name, "target": "cpu",
               "cpu_mhz": host_cpu_mhz(), "batch": 1, "source": "measured", "meter": "none",
               "timestamp": utc_now()}
        try:
            row.update(time_workload(name, warmup, repeats, threads))
        except Exception as exc:  # keep the row: nothing is silently dropped
            row.update(n_runs=0, error=f"{type(exc).__name__}: {exc}")
        rows.append(row)
    return rows


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
