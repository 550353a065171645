"""Real latency measurement of the workloads on this host's CPU.

``time_workload`` is the runner behind ``python -m bench collect`` on a host:
warm-up runs, then timed runs with ``time.perf_counter_ns`` under
``torch.inference_mode``; the median is ``latency_ms`` and the 95th percentile
``latency_p95_ms``. No energy is invented here: energy comes from a meter
(``hw``) wrapped around the timed runs, or stays NaN with ``meter: none``.

The ``profile`` stage measures with **hygiene** (:class:`Hygiene`,
:class:`HostTimer`): warm-up until three consecutive runs agree (or a cap),
then timed runs until the 95% confidence interval of the median is within
``ci_rel`` of it (or a cap). A workload whose interval never tightens, or whose
robust spread is large, is flagged noisy, and the flags go into the trace
metadata (``hygiene``, ``noisy_workloads``, ``warning``) and the notebook — a
loaded machine is reported, never silently fitted. :func:`measure_classes`
then splits each workload's latency into operator classes with forward hooks
(:func:`bench.world.opclasses.class_times_ms`), which the host fit uses.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

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


@dataclass(frozen=True)
class Hygiene:
    """How long to warm up and how many runs to time (the ``profile`` section of params.yaml)."""

    max_warmup: int = 30
    """Cap on warm-up runs; warm-up ends earlier once three consecutive runs agree within ``warmup_tol``."""
    warmup_tol: float = 0.05
    """Relative spread (max/min - 1) of three consecutive warm-up runs that counts as stable."""
    max_repeats: int = 200
    """Cap on timed runs; the minimum is the stage's ``repeats``."""
    ci_rel: float = 0.02
    """Stop timing once the 95% confidence interval of the median is within +-ci_rel of it."""
    noisy_cv: float = 0.10
    """Robust coefficient of variation (IQR / 1.349 / median) above which a workload is flagged noisy."""
    class_runs: int = 10
    """Hooked runs per workload for the per-operator-class split."""
    fit_quantile: float = 0.10
    """Quantile of the timed runs the host fit uses: other load only ever adds time, so a low quantile
    estimates the machine's own cost better than the median on a shared machine (the trace keeps the median)."""
    fit_on_cpu_time: bool = True
    """With one intra-op thread, fit the calling thread's CPU time (median) instead: it counts only the time the
    inference ran, so other load that deschedules it does not inflate it (the trace keeps wall-clock latency)."""


def median_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics (binomial ranks)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n < 3:
        return float(x[0]), float(x[-1])
    lo = int(binom.ppf((1 - level) / 2, n, 0.5))
    hi = int(binom.ppf(1 - (1 - level) / 2, n, 0.5))
    return float(x[max(lo - 1, 0)]), float(x[min(hi, n - 1)])


def warm_until_stable(fn: Callable[[], object], min_runs: int, h: Hygiene) -> dict[str, Any]:
    """Untimed-for-the-result runs until three consecutive ones agree within ``h.warmup_tol`` (at most ``h.max_warmup``)."""
    last: list[float] = []
    n = 0
    stable = False
    cap = max(min_runs, h.max_warmup)
    while n < cap:
        t0 = time.perf_counter_ns()
        fn()
        last = (last + [(time.perf_counter_ns() - t0) / 1e6])[-3:]
        n += 1
        if n >= max(min_runs, 3) and max(last) / max(min(last), 1e-9) - 1 <= h.warmup_tol:
            stable = True
            break
    return {"warmup_runs": n, "warmup_stable": stable}


def time_wall_and_cpu(fn: Callable[[], object], repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and calling-thread CPU time (ms) of ``repeats`` calls of ``fn``."""
    wall, cpu = np.empty(repeats), np.empty(repeats)
    for i in range(repeats):
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        fn()
        cpu[i] = (time.thread_time_ns() - c0) / 1e6
        wall[i] = (time.perf_counter_ns() - t0) / 1e6
    return wall, cpu


def time_until_tight(fn: Callable[[], object], min_runs: int, h: Hygiene,
                     cpu_out: list | None = None) -> tuple[np.ndarray, bool]:
    """Timed runs until the median's 95% CI is within ``h.ci_rel`` (at least ``min_runs``, at most ``h.max_repeats``).

    Returns the wall-clock samples; the calling thread's CPU time of the same runs
    is appended to ``cpu_out`` when given.
    """
    samples: list[float] = []
    cpu: list[float] = []
    n = max(min_runs, 3)
    while True:
        w, c = time_wall_and_cpu(fn, n)
        samples += list(w)
        cpu += list(c)
        x = np.asarray(samples)
        lo, hi = median_ci(x)
        med = float(np.median(x))
        done = (hi - lo) / 2 <= h.ci_rel * med
        if done or len(samples) >= h.max_repeats:
            if cpu_out is not None:
                cpu_out.extend(cpu)
            return x, done
        n = min(max(len(samples) // 4, 3), h.max_repeats - len(samples))


def hygiene_stats(samples: np.ndarray, reached: bool, h: Hygiene, cpu: np.ndarray | None = None,
                  single_thread: bool = False) -> dict[str, Any]:
    """Summary of a timed series with its confidence interval and the noise verdict.

    ``latency_fit_ms`` is what the host fit uses: the median thread CPU time when
    the run was single-threaded and ``h.fit_on_cpu_time``, else the
    ``h.fit_quantile`` quantile of the wall-clock samples.
    """
    med = float(np.median(samples))
    lo, hi = median_ci(samples)
    q1, q3 = np.percentile(samples, [25, 75])
    use_cpu = bool(single_thread and h.fit_on_cpu_time and cpu is not None and len(cpu))
    cv = float((q3 - q1) / 1.349 / med) if med > 0 else math.nan
    reasons = []
    if not reached:
        reasons.append(f"the median's 95% CI stayed wider than +-{h.ci_rel:.0%} after {len(samples)} runs")
    if cv > h.noisy_cv:
        reasons.append(f"robust spread {cv:.1%} above {h.noisy_cv:.0%}")
    return {"latency_ms": med, "latency_p95_ms": float(np.percentile(samples, 95)), "n_runs": int(len(samples)),
            "latency_min_ms": float(np.min(samples)),
            "cpu_ms": float(np.median(cpu)) if cpu is not None and len(cpu) else math.nan,
            "fit_clock": "thread CPU time" if use_cpu else f"wall clock, q{h.fit_quantile:g}",
            "latency_fit_ms": float(np.median(cpu)) if use_cpu else float(np.quantile(samples, h.fit_quantile)),
            "ci_low_ms": lo, "ci_high_ms": hi, "ci_rel": float((hi - lo) / 2 / med) if med > 0 else math.nan,
            "robust_cv": cv, "noisy": bool(reasons), "noise_reasons": "; ".join(reasons)}


class HostTimer:
    """A ``time_fn`` for ``hw.cli`` that measures with :class:`Hygiene` and keeps each workload's statistics.

    ``hw.cli`` calls it twice per workload: a warm-up call (``repeats == 1``,
    ``warmup > 0``) and a timed call (``warmup == 0``); the model built in the
    first is reused in the second so the warm state carries over.
    """

    def __init__(self, hygiene: Hygiene):
        self.hygiene = hygiene
        self.records: dict[str, dict[str, Any]] = {}
        self._models: dict[str, tuple[Any, Any]] = {}

    def _model(self, name: str, threads: int) -> tuple[Any, Any]:
        import torch

        from bench.world.workloads import build

        if threads:
            torch.set_num_threads(threads)
        if name not in self._models:
            self._models[name] = build(name)
        return self._models[name]

    def prepare(self, name: str, threads: int = 0) -> Callable[[int, int], dict[str, Any]]:
        """``hw.cli``'s ``prepare_fn``: build the model now (before any energy window opens)."""
        self._model(name, threads)
        return lambda warmup, repeats: self(name, warmup, repeats, threads)

    def __call__(self, name: str, warmup: int, repeats: int, threads: int = 0) -> dict[str, Any]:
        import torch

        model, example = self._model(name, threads)
        run = lambda: model(example)  # noqa: E731
        with torch.inference_mode():
            if warmup > 0 and repeats == 1:  # hw.cli's warm-up call
                self.records.setdefault(name, {}).update(warm_until_stable(run, warmup, self.hygiene))
                return {}
            rec = self.records.setdefault(name, {"warmup_runs": 0, "warmup_stable": False})
            if warmup:
                rec.update(warm_until_stable(run, warmup, self.hygiene))
            cpu: list[float] = []
            samples, reached = time_until_tight(run, repeats, self.hygiene, cpu)
        self._models.pop(name, None)
        stats = hygiene_stats(samples, reached, self.hygiene, np.asarray(cpu), single_thread=torch.get_num_threads() == 1)
        rec.update(stats)
        if not rec.get("warmup_stable", False):
            rec["noisy"] = True
            rec["noise_reasons"] = "; ".join(filter(None, [rec["noise_reasons"], "warm-up never settled"]))
        return {"latency_ms": stats["latency_ms"], "latency_p95_ms": stats["latency_p95_ms"],
                "n_runs": stats["n_runs"], "cpu_mhz": host_cpu_mhz()}

    def metadata(self) -> dict[str, Any]:
        noisy = sorted(n for n, r in self.records.items() if r.get("noisy"))
        warning = ("" if not noisy else
                   f"NOISY MACHINE: {len(noisy)} of {len(self.records)} workloads did not reach a stable, tight "
                   f"measurement ({', '.join(noisy)}); latencies and the host fit may be inflated by other load")
        return {"hygiene": {"settings": asdict(self.hygiene), "workloads": self.records},
                "noisy_workloads": noisy, "warning": warning}


def measure_classes(workloads: Iterable[str], hygiene: Hygiene, threads: int = 0,
                    latency_ms: dict[str, float] | None = None) -> "pd.DataFrame":
    """Per-operator-class split (ms) of each workload's latency, from hooked runs.

    Each class's time is the ``hygiene.fit_quantile`` quantile over the hooked
    runs (thread CPU time when single-threaded and ``hygiene.fit_on_cpu_time``). Hooks add a few microseconds per module, so the class times are scaled
    to sum to the hook-free ``latency_ms[workload]`` where given (the timer's
    ``latency_fit_ms``), else to the hooked quantile. Columns: ``workload,
    latency_ms, hooked_ms, cpu_mhz, class_ms_<class>``.
    """
    import pandas as pd
    import torch

    from bench.world.opclasses import OP_CLASSES, class_times_ms
    from bench.world.workloads import build

    if threads:
        torch.set_num_threads(threads)
    rows = []
    for name in workloads:
        model, example = build(name)
        with torch.inference_mode():
            warm_until_stable(lambda: model(example), 1, hygiene)
        clock = "cpu" if hygiene.fit_on_cpu_time and torch.get_num_threads() == 1 else "wall"
        totals, splits = class_times_ms(model, example, max(hygiene.class_runs, 3), clock=clock)
        hooked = float(np.quantile(totals, hygiene.fit_quantile))
        target = float((latency_ms or {}).get(name, hooked))
        row = {"workload": name, "latency_ms": target, "hooked_ms": hooked, "cpu_mhz": host_cpu_mhz()}
        for c in OP_CLASSES:
            row[f"class_ms_{c}"] = float(np.quantile([s[c] for s in splits], hygiene.fit_quantile))
        parts = sum(row[f"class_ms_{c}"] for c in OP_CLASSES)
        for c in OP_CLASSES:
            row[f"class_ms_{c}"] *= target / parts if parts > 0 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def measure_host(workloads: Iterable[str], warmup: int, repeats: int, threads: int = 0, adapter: str = "auto",
                 out_path: str | Path = "host_trace.parquet", replay_log: str = "", progress: bool = False,
                 hygiene: Hygiene | None = None):
    """Measure every workload on this host through ``hw`` and write the trace to ``out_path``.

    With ``hygiene``, each workload is timed by :class:`HostTimer` (warm-up until
    stable, repeats until the median is tight) and the trace metadata carries the
    per-workload statistics and a noisy-machine ``warning``.
    Energy comes from the meter ``adapter`` names (``auto``: the best one available,
    ``none``: latency only). The sweep is crash-safe: ``hw.collect`` journals every
    finished workload in a working directory keyed by the sweep's settings, so
    rerunning after a crash or Ctrl-C resumes without redoing finished workloads,
    and a run with other settings never mixes with it. Returns the trace frame.
    """
    import contextlib
    import hashlib
    import io
    import json
    import logging
    import platform
    import shutil

    from hw.traces import read_trace, write_trace
    from hw import cli as hw_cli

    names = list(workloads)
    settings = {"workloads": names, "warmup": warmup, "repeats": repeats, "threads": threads, "adapter": adapter,
                "replay_log": replay_log, "hygiene": asdict(hygiene) if hygiene is not None else None}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    out_path = Path(out_path)
    work = out_path.parent / f".collect-{key}" / out_path.name
    argv = ["--adapter", adapter, "--out", str(work), "--workloads", *names, "--repeats", str(repeats),
            "--warmup", str(warmup), "--threads", str(threads), "--device", f"host:{platform.node()}"]
    if replay_log:
        argv += ["--replay", replay_log]
    if not progress:
        argv.append("--no-progress")
    timer = HostTimer(hygiene) if hygiene is not None else None
    from bench.world.workloads import WORKLOADS

    # the runner builds each model before its energy window opens (prepare), never inside it;
    # the CLI's closing line names the working directory: keep machine paths out of notebook outputs
    with contextlib.redirect_stdout(io.StringIO()) as said:
        code = hw_cli.main(argv, prepare_fn=timer.prepare if timer is not None else prepare_workload,
                           known_workloads=list(WORKLOADS))
    logging.getLogger(__name__).info("%s", said.getvalue().strip().replace(str(work), out_path.name))
    if code != 0:
        raise RuntimeError(f"host measurement failed (exit {code}, see the message above); every finished workload "
                           f"is kept in {work.parent} and a rerun with the same parameters resumes from there")
    frame, meta = read_trace(work)
    extra = timer.metadata() if timer is not None else {}
    write_trace(frame, out_path, {**meta, "profile_settings": settings, **extra})
    shutil.rmtree(work.parent)
    return frame


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()
