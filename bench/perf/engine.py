"""Scaling of the evaluation engine (``python -m bench.perf.engine``, part of ``python -m bench perf``).

Measured on this machine, for real evaluation cells (the AutoScale suite's cells:
a baseline policy, ``steps`` requests each):

* cells/s with 1 and 2 workers on a local Dask cluster (and the local process pool);
* the scheduler's overhead per task: the time per no-op task through the Dask
  scheduler (submit → run → gather), the floor any cell pays;
* bytes of one cell's result as it travels back to the driver (parquet-equivalent
  in memory), the other cost that grows with the grid.

From those, on paper (the model is stated with the numbers): a sweep of ``N``
cells on ``W`` workers takes about ``max(N · t_cell / W, N · t_sched, N · bytes /
B_driver)`` — compute spread over the workers, the single scheduler's per-task
work, and result gathering through the driver's network link — and the largest
term says where the bottleneck moves.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from typing import Any, Sequence


def _noop(x: int) -> int:
    return x


def _cells(n: int, steps: int, root_seed: int) -> list:
    from bench.pipeline.evaluate import Cell
    from bench.policies.autoscale import AutoScaleConfig
    from bench.seeding import derive_seeds

    env_kwargs = json.dumps(AutoScaleConfig().env_kwargs(), sort_keys=True, default=list)
    seeds = derive_seeds(root_seed, n, "perf", "engine")
    policies = ("cpu_only", "gpu_only", "cloud_only", "random")
    return [Cell("perf", "autoscale", "phone_sd845", policies[i % len(policies)], "random_walk", s, steps,
                 env_kwargs) for i, s in enumerate(seeds)]


def measure(n_cells: int = 24, steps: int = 200, n_noop: int = 300, root_seed: int = 0,
            driver_gbps: float = 10.0) -> dict[str, Any]:
    """Cells/s for 1 and 2 workers, scheduler overhead per task, result bytes per cell, and the estimate."""
    from distributed import Client, LocalCluster

    from bench.pipeline.engine import Engine, map_ordered
    from bench.pipeline.evaluate import run_cell

    cells = _cells(n_cells, steps, root_seed)
    out: dict[str, Any] = {"n_cells": n_cells, "steps_per_cell": steps}
    t = time.perf_counter()
    frames = map_ordered(run_cell, cells[: max(2, n_cells // 4)], Engine("local-processes", workers=1))
    out["cell_s_in_process"] = (time.perf_counter() - t) / len(frames)
    out["result_bytes_per_cell"] = statistics.median(int(f.memory_usage(deep=True).sum()) for f in frames)
    for w in (1, 2):
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=":0",
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            client.run(lambda: __import__("bench.pipeline.evaluate"))  # warm: imports are not the cells' cost
            engine = Engine("dask", address=cluster.scheduler_address)
            t = time.perf_counter()
            map_ordered(run_cell, cells, engine, keys=[f"c{w}-{i}" for i in range(len(cells))], client=client)
            out[f"cells_per_s_{w}_workers"] = len(cells) / (time.perf_counter() - t)
            if w == 1:
                t = time.perf_counter()
                map_ordered(_noop, list(range(n_noop)), engine, keys=[f"n{i}" for i in range(n_noop)], client=client)
                out["scheduler_s_per_task"] = (time.perf_counter() - t) / n_noop
    out["speedup_2_vs_1"] = out["cells_per_s_2_workers"] / out["cells_per_s_1_workers"]
    out["estimate_100k_cells_100_workers"] = estimate(100_000, 100, 1.0 / out["cells_per_s_1_workers"],
                                                      out["scheduler_s_per_task"], out["result_bytes_per_cell"],
                                                      driver_gbps)
    return out


def estimate(n_cells: int, workers: int, cell_s: float, sched_s: float, bytes_per_cell: float,
             driver_gbps: float) -> dict[str, Any]:
    """Time of ``n_cells`` on ``workers`` by the three-term model in the module docstring."""
    terms = {"compute_s": n_cells * cell_s / workers, "scheduler_s": n_cells * sched_s,
             "gather_s": n_cells * bytes_per_cell * 8 / (driver_gbps * 1e9)}
    bottleneck = max(terms, key=terms.get)
    return {**terms, "total_s": max(terms.values()), "bottleneck": bottleneck.removesuffix("_s"),
            "assumed": f"driver link {driver_gbps:g} Gbit/s; scheduler per-task cost as measured here with 1 worker "
                       "(the scheduler is one process: its per-task work does not shrink with more workers)"}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf.engine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=24)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args(argv)
    print(json.dumps(measure(args.cells, args.steps), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
