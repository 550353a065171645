"""DVFO's split on the testbed (``python -m bench testbed --policy dvfo:XI ...``).

Each request runs DVFO's way (:meth:`bench.testbed.edge.EdgeRunner.split`): the head
up to the simulator's cut (:func:`bench.testbed.models.split_point`) here, the
``XI`` share of the least important feature-map channels quantised to uint8 and
sent over the emulated Wi-Fi to the server's tail, the rest of the tail here in
parallel, the two predictions fused. A workload without a split point runs
locally (DVFO's ``xi = 0``) and is counted as such.

What this host cannot give DVFO, said in the summary rather than faked:

* **DVFS**: DVFO picks CPU, GPU and memory frequencies with ``xi``; a host without
  ``cpufreq`` (this VM) and without a GPU has one operating point, so only ``xi``
  varies here (:func:`dvfs_reason`);
* **a twin**: the simulator's DVFO system (:func:`bench.sim.system.dvfo_system`)
  models an edge with CPU and GPU targets; an x86 host with a CPU only has no DVFO
  twin, so requests are measured per part (head and local tail, exposed transfer,
  exposed server time) without a prediction, and ``latency_mape`` is null.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.testbed.loop import niceness, parse_xi

CPUFREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq")


def dvfs_reason() -> str:
    """Which DVFS this host offers DVFO (one line)."""
    avail = CPUFREQ / "scaling_available_frequencies"
    if avail.is_file():
        return f"cpufreq levels: {avail.read_text().strip()} (not switched by the testbed; no GPU)"
    return f"none: {CPUFREQ} does not exist (a VM without cpufreq) and the host has no GPU; only xi varies"


def run(cfg, out: Path, progress: bool = False) -> dict[str, Any]:
    """One live DVFO-split episode over the scenario's Wi-Fi; writes requests.parquet and summary.json."""
    xi = parse_xi(cfg.policy)
    own_cpus = os.sched_getaffinity(0)
    with niceness(cfg.nice):
        try:
            return _run(cfg, out, xi, progress)
        finally:  # the caller's process gets its CPUs back
            os.sched_setaffinity(0, own_cpus)


def _run(cfg, out: Path, xi: float, progress: bool) -> dict[str, Any]:
    from bench.testbed.edge import ClientPool, CoRunners, EdgeRunner
    from bench.testbed.live import MAX_IN_FLIGHT, Dispatcher, pin_thread, radio_rates, support_cpus
    from bench.testbed.link import Link
    from bench.testbed.loop import RADIOS, host_profiles, restricted_scenario, twin_env, with_fit_gap
    from bench.testbed.server import ServerProcess
    from bench.world.network import load_link

    load_start = os.getloadavg()
    support = support_cpus(cfg.edge_cpus, os.sched_getaffinity(0))  # the loop's own work off the edge (as loop.py)
    out.mkdir(parents=True, exist_ok=True)
    scen_path = restricted_scenario(cfg.scenario, cfg.workloads, cfg.requests, out)
    cfg = with_fit_gap(cfg, scen_path)
    edge_path, cloud_path, _ = host_profiles(cfg, out)
    env = twin_env(scen_path, edge_path, cloud_path, cfg.requests)  # the scenario's trace, same seed as the others
    env.reset(seed=cfg.seed)
    trace = env.unwrapped.trace
    timeout_of = dict(zip(env.unwrapped.sim.tables.workloads, env.unwrapped.sim.tables.timeout_ms))
    wifi = load_link("wifi")
    ia_ms = float(trace.interarrival_ms)
    with Link(dict(cfg.ports)) as link, \
            ServerProcess(link, cfg.workloads, port=cfg.server_port, threads=cfg.threads, cpus=cfg.server_cpus) as srv:
        corun = (CoRunners(cpus=cfg.edge_cpus, wrap=tuple(link.ns_cmd([])), cycle_cpus=tuple(sorted(support)))
                 if cfg.corunners else None)
        if corun is not None:
            corun.__enter__()
        try:
            edge = EdgeRunner(cfg.workloads, threads=cfg.threads, cpus=cfg.edge_cpus, with_split=True)
            pool = ClientPool(link.ns_ip, cfg.ports["wifi"])
            for r in RADIOS:
                srv.control(r, load_link(r).rtt_ms)
            clock = Dispatcher(ia_ms, pace=cfg.pace, workers=min(cfg.requests, MAX_IN_FLIGHT), cpus=cfg.edge_cpus)

            def serve(wl: str, split: bool, turn) -> dict[str, Any]:
                if not split:
                    tim = edge.local(wl, turn=turn)
                else:
                    client = pool.get()
                    try:
                        tim = edge.split(wl, xi, client, timeout_ms=float(timeout_of[wl]), turn=turn)
                    finally:
                        pool.put(client)
                return {"local_ms": tim.local_ms, "transfer_ms": tim.transfer_ms, "server_ms": tim.server_ms,
                        "server_queue_ms": tim.server_queue_ms, "edge_queue_ms": tim.wait_ms,
                        "timed_out": tim.timed_out, "bytes_up": tim.bytes_up, "bytes_down": tim.bytes_down}

            pin_thread(support)  # the loop (its tc calls included) off the edge's CPUs; the requests on them
            clock.start()
            meta = []
            for t in range(cfg.requests):
                up, down = radio_rates(wifi, trace, "wifi", t)
                link.set_rate("wifi", up, down)
                if corun is not None:
                    corun.set_load(float(trace.cpu_load[t]), float(trace.mem_load[t]))
                arrival, late_ms = clock.wait_for(t)
                wl = str(trace.workload[t])
                split = edge.models[wl].head is not None
                clock.submit(serve, arrival, late_ms, wl, split, clock.turn())  # DVFO's composite edge resource
                meta.append({"step": t, "workload": wl, "xi": xi if split else 0.0, "split": split,
                             "shaped_up_mbps": up, "signal_dbm": float(trace.signal_dbm["wifi"][t]),
                             "cpu_load_trace": float(trace.cpu_load[t])})
                if progress:
                    print(f"[{t + 1}/{cfg.requests}] {wl} xi={meta[-1]['xi']:.2f} (issued {late_ms:.0f} ms late)",
                          flush=True)
            rows = [{**m, **done} for m, done in zip(meta, clock.results())]
            pool.close()
        finally:
            if corun is not None:
                corun.close()
    df = pd.DataFrame(rows)
    df["queue_ms"] = df["dispatch_late_ms"] + df["edge_queue_ms"] + df["server_queue_ms"]
    df.insert(0, "scenario", trace.scenario)
    df.insert(0, "policy", cfg.policy)
    df.to_parquet(out / "requests.parquet", index=False)
    lat = df["latency_ms"].to_numpy()
    parts = {f"{p}_measured_median_ms": float(df[f"{p}_ms"].median()) for p in ("local", "transfer", "server", "queue")}
    summary = {"policy": cfg.policy, "scenario": trace.scenario, "requests": int(len(df)), "seed": cfg.seed,
               "nice": cfg.nice, "xi": xi, "split_share": float(df["split"].mean()), "timeouts": int(df["timed_out"].sum()),
               "latency_median_ms": float(np.median(lat)), "latency_p95_ms": float(np.percentile(lat, 95)),
               "bytes_up_median": float(df["bytes_up"].median()), **parts,
               "latency_mape": None,
               "twin": "none: the simulator's DVFO system needs an edge with CPU and GPU targets "
                       "(bench.sim.system.dvfo_system); this host has a CPU only",
               "dvfs": dvfs_reason(), "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
