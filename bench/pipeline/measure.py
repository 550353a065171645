"""Real latency measurement of the workloads on this host's CPU.

``time_workload`` is the runner behind the ``profile`` stage and behind
``python -m bench collect`` on a host: warm-up runs, then timed runs with
``time.perf_counter_ns`` under ``torch.inference_mode``; the median is
``latency_ms`` and the 95th percentile ``latency_p95_ms``. No energy is
invented here: energy comes from a meter (``hw``) wrapped around the timed runs,
or stays NaN with ``meter: none``.
"""

from __future__ import annotations

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


def prepare_workload(name: str, threads: int = 0) -> Callable[[int, int], dict[str, float]]:
    """Build workload ``name`` once and return ``run(warmup, repeats)``, which times batch-1
    inferences of it on the host CPU (median/p95 latency in ms, CPU clock read right after).

    ``hw.cli`` (``python -m bench collect``) calls this before a cell's energy window opens,
    so model construction is never measured as inference energy.
    """
    import torch

    from bench.world.workloads import build

    if threads:
        torch.set_num_threads(threads)
    model, example = build(name)

    def run(warmup: int, repeats: int) -> dict[str, float]:
        with torch.inference_mode():
            samples = time_callable(lambda: model(example), warmup, repeats)
        return {**summarise_latencies(samples), "cpu_mhz": host_cpu_mhz()}

    return run


def time_workload(name: str, warmup: int = 2, repeats: int = 10, threads: int = 0) -> dict[str, float]:
    """Median and p95 latency (ms) of one batch-1 inference of workload ``name`` on the host CPU,
    with the CPU clock read right after the timed runs."""
    return prepare_workload(name, threads)(warmup, repeats)


def measure_host(workloads: Iterable[str], warmup: int, repeats: int, threads: int = 0, adapter: str = "auto",
                 out_path: str | Path = "host_trace.parquet", replay_log: str = "", progress: bool = False):
    """Measure every workload on this host through ``hw`` and write the trace to ``out_path``.

    Energy comes from the meter ``adapter`` names (``auto``: the best one available,
    ``none``: latency only). The sweep is crash-safe: ``hw.collect`` journals every
    finished workload in a working directory keyed by the sweep's settings, so
    rerunning after a crash or Ctrl-C resumes without redoing finished workloads,
    and a run with other settings never mixes with it. Returns the trace frame.
    """
    import hashlib
    import json
    import platform
    import shutil

    from hw.traces import read_trace, write_trace
    from hw import cli as hw_cli

    names = list(workloads)
    settings = {"workloads": names, "warmup": warmup, "repeats": repeats, "threads": threads, "adapter": adapter,
                "replay_log": replay_log}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    out_path = Path(out_path)
    work = out_path.parent / f".collect-{key}" / out_path.name
    argv = ["--adapter", adapter, "--out", str(work), "--workloads", *names, "--repeats", str(repeats),
            "--warmup", str(warmup), "--threads", str(threads), "--device", f"host:{platform.node()}"]
    if replay_log:
        argv += ["--replay", replay_log]
    if not progress:
        argv.append("--no-progress")
    code = hw_cli.main(argv, time_fn=time_workload)
    if code != 0:
        raise RuntimeError(f"host measurement failed (exit {code}, see the message above); every finished workload "
                           f"is kept in {work.parent} and a rerun with the same parameters resumes from there")
    frame, meta = read_trace(work)
    write_trace(frame, out_path, {**meta, "profile_settings": settings})
    shutil.rmtree(work.parent)
    return frame


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()
