"""The closed loop: a policy acting live on real inference over the shaped link.

``python -m bench testbed --policy P --scenario S --requests N --out DIR``:

1. **Host profile.** The simulator needs a profile of *this* host at the testbed's
   thread count and affinity: by default the testbed times the served workloads
   on the edge's CPUs (:func:`bench.pipeline.measure.time_workload`) and fits a
   profile with the profile stage's code (:func:`bench.world.fit.host_profile`);
   ``--host-profile`` uses a given one (e.g. ``results/profile/host_profile.yaml``).
   The server's CPUs are timed and fitted the same way for the cloud's profile.
   Power comes from the profile where a meter measured it, else from
   ``data/testbed/host_power.yaml`` (assumed, sourced).
2. **Simulator twin.** ``bench/AutoScale-v0`` over that host (targets: the CPU;
   the cloud over Wi-Fi and LTE; no peer) on the scenario with its workload mix
   restricted to the served workloads. Its trace (seeded) drives the testbed.
3. **Live loop.** Per request (arrivals paced at the scenario's inter-arrival
   time): the link's classes are shaped to the trace's goodput and RTT, the
   co-runners to its CPU/memory load; the policy observes the scenario's
   observation with the runtime features replaced by the testbed's measurements -
   co-runner load from ``/proc`` and each radio's signal inferred from its recent
   goodput estimate (from small probes in idle time) through the
   link model's goodput-vs-signal curve; the chosen action runs for real.
4. **Comparison.** The simulator's prediction for the same requests (same
   states, same actions, expected conditions: no jitter, no retransmission
   timeout) gives ``pred_latency_ms``; ``latency_mape`` is the mean absolute
   relative error against the measured latency. The same policy rolled out in
   the simulator on the same trace gives the simulated target mix.

Writes ``DIR/requests.parquet`` (one row per request), ``DIR/summary.json`` and
the host profile used; prints the summary as JSON.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bench.errors import BenchError
from bench.testbed import dispatch, localbase
from bench.testbed.edge import Client, ClientPool
from bench.testbed.live import MAX_IN_FLIGHT, Dispatcher, SupportCpu, pin_thread, radio_rates, support_cpus
from bench.paths import DATA_DIR
from bench.validate import read_yaml

POWER_FILE = DATA_DIR / "testbed" / "host_power.yaml"
RADIOS = ("wifi", "lte")
#: workloads added to the quick fit when fewer are served (the fit has three constants)
FIT_FILLERS = ("mobilenet_v2", "lstm_text", "resnet18")
#: privileged baselines see the realised episode: no live scheduler can run them
def _live_excluded() -> list[str]:
    """Registered as not live (``PolicyInfo.live``), less DVFO: this loop runs it at a fixed split (``dvfo:XI``)."""
    from bench.policies import live_excluded

    return [p for p in live_excluded() if p != "dvfo"]


class TestbedError(BenchError):
    """A user mistake in the testbed's arguments (one line, exit code 2)."""


def parse_xi(policy: str) -> float:
    """``dvfo:XI`` -> XI in [0, 1]: DVFO's split on the testbed runs one offload share."""
    _, _, text = policy.partition(":")
    try:
        xi = float(text)
    except ValueError:
        raise TestbedError(f"--policy {policy!r}: DVFO on the testbed runs one offload share, e.g. dvfo:0.4; "
                           "allowed: dvfo:XI with XI in [0, 1]") from None
    if not 0.0 <= xi <= 1.0:
        raise TestbedError(f"--policy {policy!r}: XI={xi} out of range; allowed: [0, 1]")
    return xi


def is_dvfo(policy: str) -> bool:
    """A DVFO split run (:func:`bench.testbed.dvfo_live.run`) rather than a policy on the AutoScale twin."""
    return policy.split(":", 1)[0] == "dvfo"


@dataclass
class TestbedConfig:
    """One live run."""

    policy: str
    """Registered policy name (the oracle and hindsight statics excluded); ``autoscale`` trains AutoScale
    on the simulator twin of this host first; ``autoscale:PATH`` loads a saved learner for the twin's actions."""
    scenario: str
    """Scenario name or YAML path; its workload mix is restricted to ``workloads``."""
    requests: int = 20
    """Live requests (bounded: at most the scenario's steps after restriction)."""
    seed: int = 0
    """Seeds the scenario trace, the policy's randomness and AutoScale's training."""
    workloads: tuple[str, ...] = ("mobilenet_v2", "lstm_text")
    """Workloads the edge and server keep warm; the scenario's mix is filtered to them."""
    threads: int = 1
    """Torch threads of the edge and of the server."""
    edge_cpus: tuple[int, ...] = (0,)
    """CPUs the edge (and its co-runners) are pinned to."""
    server_cpus: tuple[int, ...] = (1,)
    """CPUs the server is pinned to."""
    corunners: bool = True
    """Run stress-ng co-runners following the scenario's interference trace."""
    host_profile: str = ""
    """A host profile YAML to use; empty = fit a quick one at the testbed's threads and affinity."""
    profile_repeats: int = 9
    """Timed runs per workload for the quick fit."""
    fit_gap_ms: float | None = None
    """Pause before each timed run of the quick fits (edge and server), in ms; None = the scenario's inter-arrival
    time when the run is paced (else 0 = back to back). Live, every request arrives after the inter-arrival time,
    and a single inference after a pause takes more CPU time than one right after another (caches and branch
    predictors cold; paired and interleaved here at 1-min load 8: mobilenet_v2 +9 %, lstm_text +19 %; on the
    committed idle campaign the live requests' thread CPU time was 15 % and 27 % above the back-to-back fit, the
    idle local error), so by default the fits time the compute as a paced request meets it."""
    base_every: int = 10
    """Every this many requests (paced runs), the schedule pauses for one block of alone inferences of each served
    workload (co-runners set to nothing) and, where the scenario has co-runners, one with them at the measured
    levels (:func:`alone_block`): the twin's base for each request is then the median of the alone samples
    nearest it in time (:mod:`bench.testbed.localbase`), not one pooled over the bracket. 0 = the bracket only."""
    dispatch_jobs: int = 12
    """Local requests dispatched before the live ones through a dispatcher like theirs (same pacing, worker pool,
    ``serve`` and timing points), to measure the testbed's own per-request overhead (the worker's late start and
    the unaccounted rest) the twin then adds to every request (:mod:`bench.testbed.dispatch`). 0 = not measured:
    the twin adds 0, and the summary says so."""
    autoscale_steps: int = 20_000
    """Training steps of AutoScale on the simulator twin (policy ``autoscale``)."""
    probe_bytes: int = 32_768
    """Payload of a bandwidth probe (sent in idle time)."""
    probe_every: int = 5
    """Requests after which a radio's goodput estimate is refreshed by a probe."""
    pace: bool = True
    """Pace arrivals at the scenario's inter-arrival time (else back to back)."""
    nice: int = 0
    """Scheduling niceness of the run and everything it starts (server, co-runners inherit it); negative (root)
    shields the experiment from unrelated load on a shared host, the co-runners included so they still compete
    with the inference as the scenario says. 0 = unchanged."""
    ports: dict[str, int] = field(default_factory=lambda: {"wifi": 9001, "lte": 9002})
    """Proxy port per emulated radio (inside the namespace)."""
    server_port: int = 8000
    """Server port inside the namespace (control and unshaped access)."""

    def __post_init__(self):
        if self.requests < 1:
            raise TestbedError(f"--requests must be >= 1, got {self.requests}")
        if self.threads < 1:
            raise TestbedError(f"--threads must be >= 1, got {self.threads}")
        if self.fit_gap_ms is not None and not 0.0 <= float(self.fit_gap_ms) <= 10_000.0:
            raise TestbedError(f"--fit-gap-ms must lie in [0, 10000], got {self.fit_gap_ms}")
        if not 0 <= int(self.base_every) <= 10**6:
            raise TestbedError(f"--base-every must be >= 0 (0 = no alone inferences between requests), "
                               f"got {self.base_every}")
        if not 0 <= int(self.dispatch_jobs) <= 10_000:
            raise TestbedError(f"--dispatch-jobs must lie in [0, 10000] (0 = not measured), got {self.dispatch_jobs}")
        if not -20 <= int(self.nice) <= 19:
            raise TestbedError(f"--nice must lie in [-20, 19], got {self.nice}")
        if not 0 <= int(self.seed) < 2**63:  # refused here, not by gymnasium after the quick fits
            raise TestbedError(f"--seed must lie in [0, 2**63), got {self.seed}")
        if int(self.autoscale_steps) < 1:
            raise TestbedError(f"--autoscale-steps must be >= 1, got {self.autoscale_steps}")
        name = self.policy.split(":", 1)[0]
        excluded = _live_excluded()
        if name in excluded:
            raise TestbedError(f"policy {name!r} cannot run live (privileged: it sees the realised episode); "
                               f"excluded: {excluded}")
        if name == "dvfo":
            parse_xi(self.policy)  # DVFO's split at one offload share: dvfo:XI (bench.testbed.dvfo_live)
        self.workloads = tuple(self.workloads)
        self.edge_cpus = tuple(int(c) for c in self.edge_cpus)
        self.server_cpus = tuple(int(c) for c in self.server_cpus)


# --------------------------------------------------------------------------- scenario and host profile

def restricted_scenario(name: str, workloads, steps: int, out_dir: Path) -> Path:
    """The scenario with its mix restricted to ``workloads`` and at least ``steps`` steps, as YAML in ``out_dir``."""
    from bench.world.scenarios import ScenarioError, load_scenario

    try:
        scen = load_scenario(name)
    except (ScenarioError, FileNotFoundError) as exc:
        raise TestbedError(str(exc)) from None
    raw = read_yaml(scen.path, ScenarioError)
    mix = [m for m in raw["workload_mix"] if m["workload"] in set(workloads)]
    if not mix:
        raise TestbedError(f"scenario {scen.name!r} requests {scen.workloads}; none is among the testbed's workloads "
                           f"{list(workloads)} (pass --workloads)")
    raw["workload_mix"] = mix
    raw["steps"] = max(int(raw["steps"]), int(steps))
    raw["description"] = f"{raw.get('description', '')} [testbed: mix restricted to {sorted({m['workload'] for m in mix})}]"
    out = Path(out_dir) / f"scenario_{scen.name}.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def _check_inputs(cfg: TestbedConfig) -> None:
    """Load the scenario and the host profile the run names (each raises its one-line error), so a mistake in
    either leaves no half-made output directory behind."""
    from bench.world.profiles import load_profile
    from bench.world.scenarios import ScenarioError, load_scenario

    try:
        scen = load_scenario(cfg.scenario)
    except (ScenarioError, FileNotFoundError) as exc:
        raise TestbedError(str(exc)) from None
    if not set(scen.workloads) & set(cfg.workloads):
        raise TestbedError(f"scenario {scen.name!r} requests {scen.workloads}; none is among the testbed's workloads "
                           f"{list(cfg.workloads)} (pass --workloads)")
    if cfg.host_profile:
        load_profile(cfg.host_profile)


def _power() -> dict[str, tuple[float, str]]:
    raw = read_yaml(POWER_FILE, TestbedError)
    return {k: (float(v["value"]), str(v["source"])) for k, v in raw.items()}


def quick_host_trace(workloads, threads: int, repeats: int, warmup: int = 2, gap_s: float = 0.0) -> pd.DataFrame:
    """Time ``workloads`` on this process's CPUs (trace columns the fit reads).

    With one torch thread the fitted time is the inference thread's CPU time (median), as the profile stage
    does (``profile.fit_on_cpu_time``): other load on a shared host only deschedules the thread, and the
    fit happens seconds before the requests it predicts, under other load than theirs (at load 11 the wall
    time of mobilenet_v2 here was 53-93 ms while its CPU time, then and live, was 21-23 ms). The wall-clock
    median is kept as ``latency_wall_ms``; the live side's off-CPU share says how much load the run met."""
    import torch

    from bench.pipeline.measure import host_cpu_mhz
    from bench.world.workloads import build

    torch.set_num_threads(threads)
    built = {w: build(w) for w in workloads}
    wall = {w: np.empty(repeats) for w in workloads}
    cpu = {w: np.empty(repeats) for w in workloads}
    with torch.inference_mode():
        for w, (model, example) in built.items():
            for _ in range(warmup):
                model(example)
        # round by round, the workloads in turn (not one workload's runs in a row): a burst of unrelated load
        # during the fit then meets every workload alike instead of inflating one workload's median (at 1-min
        # load 12 five runs in a row gave mobilenet_v2 a CPU-time median of 40 ms against 23-29 ms otherwise)
        for i in range(repeats):
            for w, (model, example) in built.items():
                if gap_s > 0:
                    time.sleep(gap_s)  # as a paced live request meets the model (TestbedConfig.fit_gap_ms)
                t0, c0 = time.perf_counter(), time.thread_time()
                model(example)
                wall[w][i], cpu[w][i] = (time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3
    rows = []
    for w in workloads:
        wall_w, cpu_w = wall[w], cpu[w]
        fitted = cpu_w if threads == 1 else wall_w
        rows.append({"workload": w, "latency_ms": float(np.median(fitted)),
                     "latency_p95_ms": float(np.percentile(fitted, 95)), "n_runs": int(repeats),
                     "cpu_mhz": host_cpu_mhz(), "error": "", "meter": "none", "power_w": float("nan"),
                     "latency_wall_ms": float(np.median(wall_w)),
                     "timed": "thread CPU time" if threads == 1 else "wall clock"})
    return pd.DataFrame(rows)


def fit_workloads(cfg: TestbedConfig) -> list[str]:
    """The workloads a quick fit times: the served ones, filled up to three (the fit has three constants)."""
    names = list(dict.fromkeys([*cfg.workloads, *FIT_FILLERS]))
    return names[:max(3, len(cfg.workloads))]


def server_quick_trace(host: str, port: int, workloads, repeats: int, warmup: int = 2,
                       cpu_time: bool = True, gap_s: float = 0.0) -> pd.DataFrame:
    """Time ``workloads`` *in the running server process*, through its own ``/infer`` on the unshaped port:
    the server's reported compute (``x-server-ms``: the model call under its lock, in its worker thread, on
    its CPUs, beside its event loop) - what the live run's server part measures - in the trace's columns;
    with ``cpu_time`` (one torch thread) the fitted time is its thread's CPU time (``x-server-cpu-ms``)."""
    from bench.testbed import models as m
    from bench.testbed.edge import Client

    client = Client(host, port)
    rows = []
    try:
        bodies = {w: m.encode_input(m.warm(w, runs=0)) for w in workloads}
        walls, cpus = {w: [] for w in workloads}, {w: [] for w in workloads}
        for w, body in bodies.items():
            for _ in range(warmup):
                client.post(f"/infer/{w}", body)
        for _ in range(repeats):  # round by round, the workloads in turn (see quick_host_trace)
            for w, body in bodies.items():
                if gap_s > 0:
                    time.sleep(gap_s)
                walls[w].append(client.post(f"/infer/{w}", body)[2])
                cpus[w].append(client.last_server_cpu_ms)
        for w in workloads:
            wall, cpu = np.array(walls[w]), np.array(cpus[w])
            fitted = cpu if cpu_time and np.isfinite(cpu).all() else wall  # see quick_host_trace
            rows.append({"workload": w, "latency_ms": float(np.median(fitted)),
                         "latency_p95_ms": float(np.percentile(fitted, 95)), "n_runs": int(repeats),
                         "cpu_mhz": _cpu_mhz(), "error": "", "meter": "none", "power_w": float("nan"),
                         "latency_wall_ms": float(np.median(wall)),
                         "timed": "thread CPU time (x-server-cpu-ms)" if fitted is cpu else "wall clock"})
    finally:
        client.close()
    return pd.DataFrame(rows)


def _cpu_mhz() -> float:
    from bench.pipeline.measure import host_cpu_mhz

    return host_cpu_mhz()


def server_profile(cfg: TestbedConfig, host: str, edge_path: Path, cloud_path: Path, info: dict[str, Any]) -> None:
    """The twin's cloud: the server process's own compute, measured by the testbed through the running server
    (:func:`server_quick_trace`) and fitted like the edge, written to ``cloud_path`` and stored with the host
    profile as ``<profile>_server.yaml``; with ``--host-profile``, the one stored beside it where there is one.

    The edge's quick fit times the workloads in the testbed's own process; the server's compute differs (its
    worker thread, the proxy's event loop beside it, its own process's warm state), so timing the edge's
    process on the server's CPUs (as before) predicted its compute 35-140 % off."""
    import shutil

    from bench.world.fit import host_profile
    from bench.world.opclasses import load_op_classes
    from bench.world.profiles import load_profile, profile_to_dict

    sidecar = edge_path.with_name(f"{edge_path.stem}_server.yaml")
    if cfg.host_profile:
        given = Path(cfg.host_profile)
        stored = given.with_name(f"{given.stem}_server.yaml")
        if stored.is_file():
            load_profile(stored)  # validated before the twin reads it
            shutil.copyfile(stored, cloud_path)
            shutil.copyfile(stored, sidecar)
            info["server_profile"] = f"stored with the host profile: {stored}"
            return
    trace = server_quick_trace(host, cfg.server_port, fit_workloads(cfg), cfg.profile_repeats,
                               cpu_time=cfg.threads == 1, gap_s=cfg.fit_gap_ms / 1e3)
    trace.to_csv(cloud_path.with_name("host_quick_trace_server_process.csv"), index=False)
    p, fit, _ = host_profile(trace, load_op_classes(), name="testbed_server",
                             description=f"this host's server process at {cfg.threads} thread(s) on CPUs "
                                         f"{list(cfg.server_cpus)}, timed through its /infer (x-server-ms)")
    cloud = load_profile(cloud_path)  # the powered cloud written by host_profiles: keep its power, swap the timing
    target = p.primary_target
    cpu = cloud.primary_target
    timed = dataclasses.replace(target, static_power_w=cpu.static_power_w,
                                dynamic_power_w_at_max=cpu.dynamic_power_w_at_max,
                                sources={**target.sources,
                                         **{k: cpu.sources[k] for k in ("static_power_w", "dynamic_power_w_at_max")
                                            if k in cpu.sources}})
    cloud = dataclasses.replace(cloud, targets={"cpu": timed},
                                description=f"{cloud.description}; compute measured in the server process "
                                            f"through its /infer (x-server-ms), {cfg.profile_repeats} runs each, "
                                            f"1-min load {os.getloadavg()[0]:.2f}")
    cloud_path.write_text(yaml.safe_dump(profile_to_dict(cloud), sort_keys=False))
    shutil.copyfile(cloud_path, sidecar)
    info["server_profile"] = "measured here: the server process through its /infer (x-server-ms)"
    info["server_process_fit_median_abs_err"] = fit["in_sample_median_abs_err"]


def with_fit_gap(cfg: TestbedConfig, scenario_path: Path) -> TestbedConfig:
    """``cfg`` with its quick fits' pause resolved: as given, else the scenario's inter-arrival time when paced."""
    if cfg.fit_gap_ms is not None:
        return cfg
    gap = float(read_yaml(scenario_path, TestbedError, Path(scenario_path).name).get("interarrival_ms", 0.0))
    return dataclasses.replace(cfg, fit_gap_ms=gap if cfg.pace else 0.0)


def host_profiles(cfg: TestbedConfig, out_dir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(edge profile path, cloud profile path, provenance) for the simulator twin (see module docstring)."""
    from bench.world.fit import host_profile
    from bench.world.profiles import load_profile, profile_to_dict
    from bench.world.opclasses import load_op_classes

    if cfg.host_profile:
        prof = server_prof = load_profile(cfg.host_profile)
        info = {"host_profile": str(cfg.host_profile), "fitted_here": False}
    else:
        names = fit_workloads(cfg)
        fitted, info = [], {"host_profile": "fitted here", "fitted_here": True, "threads": cfg.threads,
                            "fit_gap_ms": float(cfg.fit_gap_ms)}
        own = os.sched_getaffinity(0)
        try:  # the edge's and the server's CPUs each timed where that role runs (their loads differ)
            for role, cpus in (("edge", cfg.edge_cpus), ("server", cfg.server_cpus)):
                os.sched_setaffinity(0, set(cpus))
                trace = quick_host_trace(names, cfg.threads, cfg.profile_repeats, gap_s=cfg.fit_gap_ms / 1e3)
                trace.to_csv(out_dir / f"host_quick_trace_{role}.csv", index=False)
                p, fit, _ = host_profile(trace, load_op_classes(), name=f"testbed_{role}",
                                         description=f"this host at {cfg.threads} thread(s) on CPUs {list(cpus)}")
                fitted.append(p)
                info[f"{role}_fit_median_abs_err"] = fit["in_sample_median_abs_err"]
                info[f"{role}_fit_loo_median_abs_err"] = fit["loo_median_abs_err"]
                info[f"{role}_cpus"] = list(cpus)
        finally:
            os.sched_setaffinity(0, own)
        prof, server_prof = fitted
    edge = dataclasses.replace(_powered(prof, cfg.threads), name="testbed_edge", kind="host", radios=RADIOS)
    cloud = dataclasses.replace(_powered(server_prof, cfg.threads), name="testbed_cloud", kind="cloud", radios=(),
                                description="the testbed's server: this host's CPU in its own namespace")
    paths = []
    for p in (edge, cloud):
        path = out_dir / f"{p.name}.yaml"
        path.write_text(yaml.safe_dump(profile_to_dict(p), sort_keys=False))
        paths.append(path)
    return paths[0], paths[1], info


def _powered(p, threads: int):
    """Profile ``p`` with the testbed's power constants where its fit measured none (no meter here)."""
    power = _power()
    p_active, src_active = power["active_power_w_per_thread"]
    cpu = p.primary_target
    if not np.isfinite(cpu.dynamic_power_w_at_max):
        sources = dict(cpu.sources)
        sources["static_power_w"] = "assumed: all active power in the dynamic term (see dynamic_power_w_at_max)"
        sources["dynamic_power_w_at_max"] = f"{src_active} (x {threads} thread(s))"
        cpu = dataclasses.replace(cpu, static_power_w=0.0, dynamic_power_w_at_max=p_active * threads,
                                  sources=sources)
    idle, idle_src = (p.idle_power_w, p.idle_power_source)
    if not np.isfinite(idle):
        idle, idle_src = power["idle_power_w"]
    return dataclasses.replace(p, targets={"cpu": cpu}, idle_power_w=idle, idle_power_source=idle_src)


def edge_profile_from_base(trace: pd.DataFrame, edge_path: Path, threads: int, info: dict[str, Any],
                           with_corunners: bool = True) -> None:
    """Rewrite the twin's edge (``edge_path``) from ``trace``: the live run's own models timed paced just before
    its requests (:func:`bench.testbed.hostload.base_trace`), the same baseline the co-runner stretch is
    measured against. The start's quick fit (kept as ``<edge>_provisional.yaml`` and
    ``host_quick_trace_edge_provisional.csv``) only sets up the scenario's action tables and load levels.

    Why: the twin's local time under co-runners is its base x the measured stretch; with the base from the quick
    fit a minute earlier (other model instances, before the server, the co-runners and AutoScale's training) and
    the stretch paired against this later baseline, the two disagreed by up to 33 % on an idle host (the campaign's
    42 % autoscale/cpu_corunner cell, :func:`bench.testbed.hostload.base_trace`)."""
    from bench.world.fit import host_profile
    from bench.world.opclasses import load_op_classes
    from bench.world.profiles import profile_to_dict

    out = edge_path.parent
    old_trace = out / "host_quick_trace_edge.csv"
    # the start's fit is kept as provisional; a later rewrite (the bracketed base, :func:`bracket_base`) keeps the
    # one before the requests as ``_before_requests`` instead of overwriting the start's
    tag = "provisional" if not edge_path.with_name(f"{edge_path.stem}_provisional.yaml").exists() else "before_requests"
    if old_trace.is_file():
        old_trace.replace(out / f"host_quick_trace_edge_{tag}.csv")
    if edge_path.is_file():
        edge_path.replace(edge_path.with_name(f"{edge_path.stem}_{tag}.yaml"))
    trace.to_csv(old_trace, index=False)
    p, fit, _ = host_profile(trace, load_op_classes(), name="testbed_edge",
                             description=f"this host at {threads} thread(s): the live run's own models, paced, "
                                         "timed just before its requests (no co-runner)")
    edge = dataclasses.replace(_powered(p, threads), name="testbed_edge", kind="host", radios=RADIOS)
    edge_path.write_text(yaml.safe_dump(profile_to_dict(edge), sort_keys=False))
    info["edge_base"] = ("the live run's own models, paced at the inter-arrival time, timed just before its "
                         "requests" + (" (the co-runner measurement's no-co-runner setting)" if with_corunners
                                       else " (no co-runner in this scenario)"))
    info["edge_fit_median_abs_err"] = fit["in_sample_median_abs_err"]
    info["edge_fit_loo_median_abs_err"] = fit["loo_median_abs_err"]
    info["edge_base_ms"] = {str(r.workload): float(r.latency_ms) for r in trace.itertuples()}


def twin_env(scenario_path: Path, edge_path: Path, cloud_path: Path, steps: int, interference=None):
    """The AutoScale env over this host; ``interference``: the host-measured co-runner model (else the shipped one)."""
    import gymnasium as gym

    from bench.sim.envs import AUTOSCALE_ID

    extra = {} if interference is None else {"interference": interference}
    return gym.make(AUTOSCALE_ID, scenario=str(scenario_path), max_episode_steps=int(steps), edge=str(edge_path),
                    peer=None, cloud=str(cloud_path), max_levels_per_target=None, **extra)


#: a policy renamed across branches: either name runs whichever this build registers
RENAMED = {"bound_schedule": "best_found_schedule", "best_found_schedule": "bound_schedule"}


def registered_name(name: str) -> str:
    """``name`` if registered, else its other name where it was renamed and that one is (else ``name``)."""
    from bench.policies.base import REGISTRY

    if name in REGISTRY:
        return name
    other = RENAMED.get(name)
    return other if other is not None and other in REGISTRY else name


def make_live_policy(cfg: TestbedConfig, env, scenario_path: Path, edge_path: Path, cloud_path: Path, out_dir: Path,
                     interference=None):
    """The policy for the twin's action set (AutoScale trained on the twin, host interference included, when asked)."""
    from bench.policies.base import REGISTRY, make_policy
    from bench.seeding import derive_seed

    name, _, path = cfg.policy.partition(":")
    name = registered_name(name)
    if name not in REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        raise TestbedError(f"unknown policy {name!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                           f"allowed: {sorted(set(REGISTRY) - set(_live_excluded()))}")
    if name == "autoscale":
        if path:
            return make_policy("autoscale", env, path=path)
        from bench.policies.autoscale import AutoScaleConfig, train

        conf = AutoScaleConfig(seed=derive_seed(cfg.seed, "testbed", "autoscale"), total_steps=cfg.autoscale_steps,
                               epsilon_decay_steps=max(cfg.autoscale_steps // 3, 1), scenarios=(str(scenario_path),),
                               edge=str(edge_path), peer=None, cloud=str(cloud_path), max_levels_per_target=None)
        if interference is not None:  # train on the same twin it is compared with (not a config field: not saved)
            shipped = conf.env_kwargs
            conf.env_kwargs = lambda: {**shipped(), "interference": interference}
        result = train(conf)
        result.learner.save(out_dir / "policy")
        return result.learner
    if name == "dvfo":
        raise TestbedError("policy 'dvfo' runs through bench.testbed.dvfo_live.run (dvfo:XI), not the AutoScale twin")
    return make_policy(name, env, **policy_kwargs(REGISTRY[name], env, cfg, name))


def policy_kwargs(factory, env, cfg: TestbedConfig, name: str) -> dict[str, Any]:
    """What a policy's factory asks for: its seed, and for the best found schedule (registered as
    ``bound_schedule`` or, renamed, ``best_found_schedule``) params.yaml's violation cost and the run's length
    (it replays the schedule the hindsight search found on the twin's realisation of this trace)."""
    import inspect

    from bench.seeding import derive_seed

    kw: dict[str, Any] = {"seed": derive_seed(cfg.seed, "testbed", name)}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return kw
    if "violation_cost_mj" in params:
        from bench.config import load_params

        kw["violation_cost_mj"] = float(load_params().objective.violation_cost_mj)
    if "n_steps" in params:
        kw["n_steps"] = int(cfg.requests)
    return kw


# --------------------------------------------------------------------------- live observation

class BandwidthEstimator:
    """Per radio: latest goodput (Mbit/s) and RTT (ms) estimates, mapped to an equivalent signal level."""

    def __init__(self, links: dict):
        self.links = links
        self.mbps: dict[str, float] = {}
        self.rtt_ms: dict[str, float] = {}
        self.age: dict[str, int] = {r: 10**9 for r in links}
        grid = np.arange(-140.0, -20.0, 0.25)
        self._grid = {r: (grid, np.maximum.accumulate(lk.uplink_goodput_mbps(grid))) for r, lk in links.items()}

    def tick(self) -> None:
        for r in self.age:
            self.age[r] += 1

    def update(self, radio: str, mbps: float, rtt_ms: float | None = None) -> None:
        if np.isfinite(mbps) and mbps > 0:
            self.mbps[radio] = float(mbps)
            self.age[radio] = 0
        if rtt_ms is not None and np.isfinite(rtt_ms):
            self.rtt_ms[radio] = float(rtt_ms)

    def signal_dbm(self, radio: str) -> float:
        """The weakest signal at which the link model's goodput reaches the estimate (-140 dBm when none)."""
        mbps = self.mbps.get(radio)
        if mbps is None:
            return -140.0
        grid, good = self._grid[radio]
        # at or above the curve's top, the weakest signal that already gives the top goodput
        i = min(int(np.searchsorted(good, mbps, side="left")), int(np.argmax(good >= good[-1] * (1 - 1e-3))))
        return float(grid[i])


#: a probe's payload is sized to about this much airtime at the radio's last estimate (a probe shares the
#: radio with the requests; on a nearly dead link a fixed 32 KiB probe would hold it for half a minute)
PROBE_AIRTIME_S = 0.05
PROBE_MIN_BYTES = 512


def probe_size(mbps: float | None, most: int) -> int:
    """Bytes of the next probe: ``PROBE_AIRTIME_S`` at the estimate ``mbps``, within [PROBE_MIN_BYTES, most]."""
    if mbps is None or not np.isfinite(mbps):
        return int(most)
    return int(np.clip(mbps * 1e6 / 8 * PROBE_AIRTIME_S, PROBE_MIN_BYTES, max(most, PROBE_MIN_BYTES)))


def _probe(client, nbytes: int) -> tuple[float, float]:
    """(RTT ms, uplink goodput Mbit/s) from empty requests and one of ``nbytes`` to the server's sink.

    The difference between the two round trips cancels the RTT and the HTTP overheads; the least of
    two empty round trips is the RTT, since CPU contention only ever adds time."""
    small = min(client.post("/sink", b"")[1] for _ in range(2))
    _, big, _, _ = client.post("/sink", bytes(nbytes))
    return small, nbytes * 8 / max(big - small, 1e-3) / 1e3


# --------------------------------------------------------------------------- energy

class EnergyMeter:
    """RAPL through ``hw`` where readable, else None with the reason (``skip_reason``)."""

    def __init__(self):
        self.meter, self.skip_reason, self.idle_w = None, "", float("nan")
        try:
            from hw.rapl import RaplMeter

            avail = RaplMeter.probe()
            if avail:
                self.meter = RaplMeter()
            else:
                self.skip_reason = f"no RAPL package counter readable here: {avail.reason}"
        except Exception as exc:  # noqa: BLE001 - no meter is a normal outcome on VMs
            self.meter, self.skip_reason = None, f"RAPL unusable here: {exc}"

    def read_j(self) -> float | None:
        if self.meter is None:
            return None
        return self.meter.read().total_energy_j()

    def measure_idle(self, seconds: float = 1.0) -> None:
        """The package's idle power (W) over ``seconds`` with nothing of the testbed running (the baseline that
        every request window's energy is taken above, like the simulator's energy above idle)."""
        if self.meter is None:
            return
        e0, t0 = self.read_j(), time.perf_counter()
        time.sleep(seconds)
        self.idle_w = (self.read_j() - e0) / (time.perf_counter() - t0)


def modeled_energy_mj(df: pd.DataFrame, phases: dict) -> np.ndarray:
    """Energy above idle of each *measured* request, in the simulator's accounting (:mod:`bench.sim.core`):
    the simulator's powers for that request (``phases``: local and fallback power, promotion, upload,
    download and tail power, and its marginal tail energy ``tail_mj``) times the measured durations - local
    compute, a promotion where the radio had been quiet for a whole tail, upload and download at the shaped
    goodput, the rest of the transfer and the server time at the connected (tail) power, plus the tail.
    No idle power x latency term: the idle baseline is the same for every policy and is not charged per request."""
    ph = {k: np.asarray(v, dtype=float) for k, v in phases.items()}
    fb = df["fallback_ms"].to_numpy(dtype=float)
    e = ph["local_w"] * (df["local_ms"].to_numpy() - fb) + ph["fallback_w"] * fb
    off = df["bytes_up"].to_numpy() > 0
    if off.any():
        up = np.maximum(df["shaped_up_mbps"].to_numpy(dtype=float), 1e-3)
        down = np.maximum(df["shaped_down_mbps"].to_numpy(dtype=float), 1e-3)
        transfer = df["transfer_ms"].to_numpy()
        t_up = np.minimum(df["bytes_up"].to_numpy() * 8 / (up * 1e3), transfer)
        t_down = np.minimum(df["bytes_down"].to_numpy() * 8 / (down * 1e3), np.maximum(transfer - t_up, 0.0))
        promo = np.nan_to_num(ph["promo_ms"])
        wait = np.maximum(transfer + df["server_ms"].to_numpy() + df["server_queue_ms"].to_numpy()
                          - promo - t_up - t_down, 0.0)
        # the kernel's accounting (bench/sim/kernel.py): between bursts and while the server works the radio
        # sits at its connected/tail power; the request's tail is its marginal tail energy (``tail_mj``)
        radio = (ph["promo_w"] * promo + ph["up_w"] * t_up + ph["tail_w"] * wait + ph["down_w"] * t_down
                 + ph["tail_mj"])
        e = e + np.where(off, np.nan_to_num(radio), 0.0)
    return e


# --------------------------------------------------------------------------- the loop

def run(cfg: TestbedConfig, out_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    """Run one live episode; write ``requests.parquet`` and ``summary.json``; return the summary."""
    import torch

    own_cpus, own_threads = os.sched_getaffinity(0), torch.get_num_threads()
    with niceness(cfg.nice):
        try:
            return _run(cfg, Path(out_dir), progress)
        finally:  # the caller's process gets its CPUs and threads back
            os.sched_setaffinity(0, own_cpus)
            torch.set_num_threads(own_threads)


#: this process's scheduling group under sched_autogroup ("/autogroup-N nice K") and the switch that enables it
AUTOGROUP = Path("/proc/self/autogroup")
AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


def autogroup_nice(path: Path = AUTOGROUP, enabled: Path = AUTOGROUP_ENABLED) -> int | None:
    """The niceness of this process's autogroup, or None where the kernel does not group by session."""
    try:
        if enabled.read_text().strip() != "1":
            return None
        return int(path.read_text().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


def _set_autogroup_nice(nice: int, path: Path = AUTOGROUP) -> bool:
    try:
        path.write_text(str(int(nice)))
        return True
    except OSError:
        return False


@contextlib.contextmanager
def niceness(nice: int, path: Path = AUTOGROUP, enabled: Path = AUTOGROUP_ENABLED):
    """This process at niceness ``nice`` (children started meanwhile inherit it), restored afterwards.

    With ``sched_autogroup`` on (``/proc/sys/kernel/sched_autogroup_enabled``; it is on this kind of VM) the
    scheduler first shares a CPU fairly between *sessions* and only then between a session's tasks by their
    niceness, so a task's niceness does not shield it from another session's load. Measured here at 1-min load
    6.8 (a pure-Python loop pinned to CPU 0, wall / CPU time): 2.8 at niceness 0, the same with only the task
    at -10, 1.15 with the session's group at -10; a CPU stressor in the same session then took half the CPU
    (2.0), one in a session of its own almost none (1.25). So the session's group gets ``nice`` too (restored
    afterwards; a SIGKILLed run leaves the launching session's group at ``nice`` until that session ends), and
    the co-runners stay in the testbed's session (:class:`bench.testbed.edge.CoRunners`)."""
    if not nice:
        yield
        return
    own = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, int(nice))
    except PermissionError:
        raise TestbedError(f"--nice {nice}: not permitted (a negative niceness needs root)") from None
    group = autogroup_nice(path, enabled)
    grouped = group is not None and _set_autogroup_nice(nice, path)
    try:
        yield
    finally:
        if grouped:
            _set_autogroup_nice(group, path)
        os.setpriority(os.PRIO_PROCESS, 0, own)


def scheduling_groups(enabled: Path = AUTOGROUP_ENABLED, path: Path = AUTOGROUP) -> str:
    """One line for the summary: how the kernel groups tasks for fairness and this run's group's niceness."""
    group = autogroup_nice(path, enabled)
    if group is None:
        return "no session autogroups (sched_autogroup off or absent): tasks share a CPU by their niceness"
    return (f"sched_autogroup on: sessions share a CPU first; this run's session group at nice {group}, "
            "the co-runners and server in it")


def host_interference(cfg: TestbedConfig, edge, corun, tables, acts: pd.DataFrame, levels: tuple[float, float],
                      edge_path: Path, gap_s: float = 0.2, prof_info: dict[str, Any] | None = None,
                      timed: list | None = None):
    """The twin's interference model for this host (:mod:`bench.testbed.hostload`) and its provenance.

    Unless a stored host profile is given, the same paced rounds also time the edge's base (``none`` setting,
    every workload of the fit) and the twin's edge profile is refitted from it (:func:`edge_profile_from_base`,
    recorded in ``prof_info``): the base and the co-runner stretch then come from one measurement. ``timed``: a
    list the paced rounds' timings are appended to (the base's first half, :func:`bracket_base`), nothing where
    none were timed (a stored host profile)."""
    from bench.testbed import hostload
    from bench.world.scenarios import load_interference_model

    base = load_interference_model()
    sidecar = edge_path.with_name(f"{edge_path.stem}_interference.yaml")
    if cfg.host_profile:
        given = Path(cfg.host_profile)
        stored = given.with_name(f"{given.stem}_interference.yaml")
        if stored.is_file():
            model = hostload.read(stored)
            sidecar.write_text(stored.read_text())
            return model, {"interference": f"stored with the host profile: {stored}"}
    measure = corun is not None and max(levels) > 0
    load_before = os.getloadavg()
    if cfg.host_profile and not measure:  # the given profile's base stands; nothing to time
        timings = None
    else:
        served = [w for w in cfg.workloads if w in edge.models]
        fillers = [w for w in fit_workloads(cfg) if w not in served and w in edge.models]
        # with co-runners at the arrivals' pace (as the stretch must be), else at the quick fits' pause
        gap = base_gap_s(cfg, measure, gap_s)
        timings = hostload.time_settings(edge, corun if measure else None, served + fillers,
                                         *(levels if measure else (0.0, 0.0)), gap_s=gap, base_only=fillers)
        if timed is not None:
            timed.append(timings)
        if not cfg.host_profile:
            edge_profile_from_base(hostload.base_trace(timings, _cpu_mhz(), cfg.threads), edge_path, cfg.threads,
                                   prof_info if prof_info is not None else {}, with_corunners=measure)
    if not measure:
        why = "co-runners off" if corun is None else "the scenario has no co-runner load"
        model, per = hostload.fit(pd.DataFrame(columns=["workload", "setting", "latency_ms"]), tables, {}, 0.0, 0.0,
                                  base)
        model = dataclasses.replace(model, cpu_slowdown=0.0, mem_slowdown=0.0)
        hostload.write(sidecar, model, per, levels)
        return model, {"interference": f"none ({why})"}
    local = acts[(acts["kind"] == "local") & (acts["target"] == "cpu")].index
    cpu_action = {w: int(local[-1]) for w in cfg.workloads}
    timings.to_csv(edge_path.with_name(f"{edge_path.stem}_interference_timings.csv"), index=False)
    model, per = hostload.fit(timings, tables, cpu_action, *levels, base)
    prov = hostload.provenance(int(timings["round"].max()) + 1, gap_s, load_before, cfg.nice, cfg.edge_cpus)
    hostload.write(sidecar, model, per, levels, prov)
    return model, {"interference": f"measured here at cpu {levels[0]:.2f} / mem {levels[1]:.2f}",
                   "cpu_slowdown": model.cpu_slowdown, "mem_slowdown": model.mem_slowdown,
                   "interference_measured": prov}


def base_gap_s(cfg: TestbedConfig, measure: bool, interarrival_s: float) -> float:
    """The pause before each alone inference of the base: with co-runners at the arrivals' pace (as the stretch
    must be), else at the quick fits' pause; the same on both sides of the requests (:func:`bracket_base`)."""
    return float(interarrival_s) if measure else float(cfg.fit_gap_ms or 0.0) / 1e3


def bracket_base(cfg: TestbedConfig, edge, corun, before: pd.DataFrame, edge_path: Path,
                 prof_info: dict[str, Any], gap_s: float, with_corunners: bool = True,
                 during: pd.DataFrame | None = None, origin_s: float | None = None) -> pd.DataFrame:
    """The twin's edge base from alone inferences on both sides of the requests: the rounds timed before them
    (:func:`host_interference`'s ``none`` setting) and as many rounds right after them, the co-runners set to
    nothing first, same models, same pause; the edge profile is refitted from the pooled median
    (:func:`edge_profile_from_base`) and ``prof_info`` gains ``edge_base_drift`` (after over before, per workload)
    and ``edge_base_residue`` (:func:`bench.testbed.hostload.residue`). ``during``: the blocks timed between the
    requests (:func:`alone_block`), whose alone samples join the pool (and give each request its time-local base,
    :func:`request_bases`); their paired co-runner stretch is recorded beside the one the twin uses. ``origin_s``:
    the requests' clock start (``time.perf_counter()``): every timing gets ``run_s``, its time on that clock.
    Returns the pooled alone timings (also written as ``<edge>_base_timings.csv``; the blocks' every timing as
    ``<edge>_interleaved_timings.csv``).

    Why (campaign_base_nice-10, autoscale/cpu_corunner at 25 %): the host's own speed moved during the run - the
    live requests' CPU time in the last quarter was 0.66 (lstm_text) / 0.74 (mobilenet_v2) of the first quarter's,
    the same factor as live over the twin's base (0.62 / 0.83) - while neither a co-runner's residue
    (:func:`bench.testbed.hostload.residue`: 1.000 vs 1.004) nor the rounds' count (the 9-round median's
    bootstrap error 5 %, at most 8 %) explained it. A base timed only before the requests reads the host as it was
    before them; with equal rounds before and after, a drift linear in time is met at the run's middle, and the
    pooled median always lies between the two sides' medians. What the bracket cannot cancel (a drift that is
    not monotone, campaign_bracketed_nice-10's 26 % cell) ``edge_base_drift`` shows; the blocks between the
    requests follow it (:mod:`bench.testbed.localbase`). No constant is fitted to it."""
    from bench.testbed import hostload

    if corun is not None:
        corun.set_load(0.0, 0.0)  # the alone setting, as before the requests
    alone = before[before["setting"] == "none"]
    served = [w for w in cfg.workloads if w in edge.models]
    fillers = [w for w in alone["workload"].unique() if w not in served]
    rounds = int(alone["round"].max()) + 1 if len(alone) else 0
    after = hostload.time_settings(edge, None, served + fillers, 0.0, 0.0, rounds=rounds, gap_s=gap_s,
                                   base_only=fillers, phase="after")
    inside = during[during["setting"] == "none"] if during is not None and len(during) else after.iloc[0:0]
    pooled = pd.concat([alone, inside, after], ignore_index=True)
    edge_profile_from_base(hostload.base_trace(pooled, _cpu_mhz(), cfg.threads), edge_path, cfg.threads, prof_info,
                           with_corunners=with_corunners)
    prof_info["edge_base"] += (f"; bracketed: {rounds} round(s) before the requests and {rounds} right after them, "
                               "pooled median (loop.bracket_base)")
    prof_info["edge_base_drift"] = hostload.base_drift(pooled)
    prof_info["edge_base_residue"] = hostload.residue(before)
    if origin_s is not None and "at_s" in pooled.columns:
        pooled["run_s"] = pooled["at_s"] - origin_s
    if len(inside):
        blocks = int(during["round"].nunique())
        prof_info["edge_base"] += (f"; {blocks} block(s) of alone inferences between the requests (every "
                                   f"{cfg.base_every}), each request's base the median of the "
                                   f"{localbase.NEAREST} alone samples nearest it in time "
                                   "(loop.alone_block, bench.testbed.localbase)")
        prof_info["edge_base_blocks"] = blocks
        prof_info.update(interleaved_stretch(before, during))
        if origin_s is not None:
            during = during.assign(run_s=during["at_s"] - origin_s)
        during.to_csv(edge_path.with_name(f"{edge_path.stem}_interleaved_timings.csv"), index=False)
    pooled.to_csv(edge_path.with_name(f"{edge_path.stem}_base_timings.csv"), index=False)
    return pooled


def interleaved_stretch(before: pd.DataFrame, during: pd.DataFrame) -> dict[str, Any]:
    """The co-runner stretch paired inside each block between the requests (alone and with the co-runners at the
    measured levels, seconds apart) next to the one the twin uses (paired over the rounds before the requests,
    :func:`bench.testbed.hostload.paired_stretch`), per workload, and their ratio: recorded, not used. The twin
    keeps the stretch of the rounds before the requests: a ratio of the inference's time with and without
    co-runners on the same host, it moves with the host's speed only where the two move apart (both scale alike
    to first order), and 9 paired rounds give it a steadier median than one pair per block."""
    from bench.testbed import hostload

    out: dict[str, Any] = {}
    inside, prior = hostload.paired_stretch(during), hostload.paired_stretch(before)
    co = [c for c in inside.columns if c != "none"]
    if inside.empty or not co:
        return out
    setting = co[0]  # one co-runner setting per block (fit_setting)
    out["edge_stretch_setting"] = setting
    out["edge_stretch_interleaved"] = {str(w): float(v) for w, v in inside[setting].items() if np.isfinite(v)}
    if setting in prior.columns:
        out["edge_stretch_before"] = {str(w): float(prior.at[w, setting]) for w in inside.index if w in prior.index}
        out["edge_stretch_interleaved_over_before"] = {
            w: out["edge_stretch_interleaved"][w] / out["edge_stretch_before"][w]
            for w in out["edge_stretch_interleaved"] if out["edge_stretch_before"].get(w, 0) > 0}
    return out


def fit_setting(levels: tuple[float, float]) -> str | None:
    """The co-runner setting the twin's slowdown comes from (:func:`bench.testbed.hostload.fit`): both stressors
    where the scenario has both loads, else the one it has; None without co-runner load."""
    cpu, mem = levels
    if cpu > 0 and mem > 0:
        return "scenario"
    return "cpu" if cpu > 0 else "mem" if mem > 0 else None


def alone_block(edge, corun, workloads, levels: tuple[float, float], gap_s: float, block: int,
                runner=None) -> pd.DataFrame:
    """One block of timed inferences between the requests, while the schedule is held and the edge's CPU is
    this block's: each served workload alone (co-runners set to nothing, after ``gap_s``: the base's own pause)
    and, where the scenario has co-runner load, once with them at the measured ``levels`` (the setting the fit
    uses, :func:`fit_setting`), the two in an order that alternates block by block. ``runner``: an executor
    whose thread runs on the edge's CPUs (the dispatcher's own thread runs elsewhere). Rows as
    :func:`bench.testbed.hostload.time_settings`, ``phase`` ``during``, ``round`` the block's number; the
    co-runners are left at nothing (the caller restores the world's load)."""
    from bench.testbed import hostload

    setting = fit_setting(levels) if corun is not None else None
    only = ("none",) if setting is None else ("none", setting)
    call = (hostload.time_settings, edge, corun if setting else None, list(workloads),
            *(levels if setting else (0.0, 0.0)))
    kw = {"rounds": 1, "gap_s": gap_s, "phase": "during", "only": only, "first_round": int(block)}
    return runner.submit(*call, **kw).result() if runner is not None else call[0](*call[1:], **kw)


def request_bases(pooled: pd.DataFrame, df: pd.DataFrame, prof_info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(each request's base in ms, the factor its twin's local time gets: that base over the pooled one the edge
    profile was fitted to). With alone samples between the requests (``phase`` ``during``) the base is the median
    of the :data:`~bench.testbed.localbase.NEAREST` samples of its workload nearest its arrival
    (:func:`bench.testbed.localbase.request_bases`); without them (``--base-every 0``, a stored host profile) the
    pooled base and factor 1, the bracket as before."""
    from bench.testbed import hostload

    ref = prof_info.get("edge_base_ms", {})
    pooled_ms = np.array([ref.get(str(w), np.nan) for w in df["workload"]], dtype=float)
    if pooled is None or not len(pooled) or "run_s" not in pooled.columns or not (pooled["phase"] == "during").any():
        return pooled_ms, np.ones(len(df))
    alone = pooled[pooled["setting"] == "none"]
    return localbase.request_bases(alone, df["workload"], df["arrival_s"], hostload._alone_time(alone),
                                   pooled=ref)


def _run(cfg: TestbedConfig, out: Path, progress: bool) -> dict[str, Any]:
    from bench.policies.rollout import evaluate_policy
    from bench.testbed import hostload
    from bench.testbed.edge import CoRunners, EdgeRunner
    from bench.testbed.link import Link
    from bench.testbed.proxy import link_state_constants
    from bench.testbed.server import ServerProcess
    from bench.world.network import load_link

    load_start = os.getloadavg()
    # the testbed's own work runs off the edge's CPUs (where the host has others): see live.support_cpus
    support = support_cpus(cfg.edge_cpus, os.sched_getaffinity(0))
    _check_inputs(cfg)  # a bad scenario or host profile is one line before anything is written under --out
    out.mkdir(parents=True, exist_ok=True)
    scen_path = restricted_scenario(cfg.scenario, cfg.workloads, cfg.requests, out)
    cfg = with_fit_gap(cfg, scen_path)
    edge_path, cloud_path, prof_info = host_profiles(cfg, out)
    os.sched_setaffinity(0, set(cfg.edge_cpus))
    n = cfg.requests
    # the shipped interference's twin: the scenario trace (same seed, same trace) and the action tables
    env0 = twin_env(scen_path, edge_path, cloud_path, n)
    env0.reset(seed=cfg.seed)
    u0 = env0.unwrapped
    levels = hostload.scenario_levels(u0.trace.cpu_load[:n], u0.trace.mem_load[:n])
    links = {r: load_link(r) for r in RADIOS}
    meter = EnergyMeter()
    meter.measure_idle()
    rows = []
    with Link(dict(cfg.ports)) as link, \
            ServerProcess(link, fit_workloads(cfg), port=cfg.server_port, threads=cfg.threads,
                          cpus=cfg.server_cpus) as srv:
        # the server's compute as the server process does it (stored with the host profile), before any load
        server_profile(cfg, link.ns_ip, edge_path, cloud_path, prof_info)
        corun = (CoRunners(cpus=cfg.edge_cpus, wrap=tuple(link.ns_cmd([])), cycle_cpus=tuple(sorted(support)))
                 if cfg.corunners else None)
        if corun is not None:
            corun.__enter__()
        shaper, stop_shaping = None, threading.Event()  # the thread that shapes the link at the arrivals
        try:
            # the served models and the host fit's filler, timed with the co-runner settings just before the requests
            edge = EdgeRunner(fit_workloads(cfg), threads=cfg.threads, cpus=cfg.edge_cpus)
            timed: list[pd.DataFrame] = []
            interference, inter_info = host_interference(cfg, edge, corun, u0.sim.tables, u0.action_table, levels,
                                                         edge_path, gap_s=float(u0.trace.interarrival_ms) / 1e3,
                                                         prof_info=prof_info, timed=timed)
            env = twin_env(scen_path, edge_path, cloud_path, n, interference)
            policy = make_live_policy(cfg, env, scen_path, edge_path, cloud_path, out, interference)
            u = env.unwrapped
            acts = u.action_table
            obs, _ = env.reset(seed=cfg.seed)
            policy.reset()
            trace = u.trace
            ia_ms = float(trace.interarrival_ms)
            radio_of = {i: u.sim.links[u.sim.routes[int(r)].radio].name for i, r in enumerate(acts["route"])
                        if int(r) >= 0}
            sim_radios = [lk.name for lk in u.sim.links]
            timeout_of = dict(zip(u.sim.tables.workloads, np.asarray(u.sim.tables.timeout_ms, dtype=float)))
            fallback = u.sim.on_timeout == "local"
            states = link_state_constants(cfg.ports)  # the proxy's radio state machine, seen from the edge
            pools = {r: ClientPool(link.ns_ip, p, states.get(r)) for r, p in cfg.ports.items()}
            prober = ThreadPoolExecutor(max_workers=len(RADIOS), thread_name_prefix="probe", initializer=pin_thread,
                                        initargs=(support,))
            probe_clients = {r: Client(link.ns_ip, p) for r, p in cfg.ports.items()}
            est = BandwidthEstimator(links)
            shaped: dict[str, tuple[float, float, float]] = {}
            # the requests on the edge's CPUs; the dispatching thread itself moves off them as the clock starts
            clock = Dispatcher(ia_ms, pace=cfg.pace, radios=RADIOS, workers=min(n, MAX_IN_FLIGHT), cpus=cfg.edge_cpus)

            def shape(t: int) -> None:
                """The world at request t: each radio's goodput (capped) and RTT, the co-runners' load."""
                for r in RADIOS:
                    up, down = radio_rates(links[r], trace, r, t)
                    if shaped.get(r) != (up, down, links[r].rtt_ms):
                        link.set_rate(r, up, down)
                        srv.control(r, links[r].rtt_ms)
                        shaped[r] = (up, down, links[r].rtt_ms)
                if corun is not None:
                    corun.set_load(float(trace.cpu_load[t]), float(trace.mem_load[t]))

            def probe(r: str, nbytes: int) -> None:
                with pools[r].borrow_radio(probe_clients[r]) as client:  # probes are radio traffic
                    rtt, mbps = _probe(client, nbytes)
                est.update(r, mbps, rtt)

            probing: dict[str, Future | None] = {r: None for r in RADIOS}

            def maybe_probe(r: str) -> None:
                """A probe in the background (never holding up an arrival) when due and the radio is idle."""
                f = probing[r]
                if f is not None:
                    if not f.done():
                        return
                    f.result()  # a failed probe is a failed run
                if pools[r].in_flight == 0 and est.age[r] >= cfg.probe_every:
                    probing[r] = prober.submit(own_cpu.timed, "probes", probe, r,
                                               probe_size(est.mbps.get(r), cfg.probe_bytes))

            def serve(t: int, wl: str, radio: str, turn) -> dict[str, Any]:
                """Request t on a worker thread: its turn on the CPU or the radio's transmitter, then the work."""
                e0, w0 = meter.read_j(), time.perf_counter()
                if radio:
                    client = pools[radio].get()
                    try:
                        tim = edge.offload(wl, client, timeout_ms=timeout_of[wl], fallback=fallback, transmitter=turn,
                                           radio=pools[radio])
                    finally:
                        pools[radio].put(client)
                else:
                    tim = edge.local(wl, turn=turn, corunner_ms=corun.run_ms if corun is not None else None)
                e1, w1 = meter.read_j(), time.perf_counter()
                row = {"local_ms": tim.local_ms, "transfer_ms": tim.transfer_ms, "server_ms": tim.server_ms,
                       "edge_queue_ms": tim.wait_ms, "server_queue_ms": tim.server_queue_ms,
                       "timed_out": tim.timed_out, "fallback_ms": tim.fallback_ms,
                       "bytes_up": tim.bytes_up, "bytes_down": tim.bytes_down,
                       "local_cpu_ms": tim.local_cpu_ms, "server_cpu_ms": tim.server_cpu_ms,
                       "corunner_cpu_ms": tim.corunner_cpu_ms}
                if e0 is not None and e1 is not None:  # RAPL: the whole package above its idle power
                    row["energy_rapl_mj"] = ((e1 - e0) - meter.idle_w * (w1 - w0)) * 1e3
                return row

            shape(0)
            for r in RADIOS:  # first estimates before the clock starts: small, then sized to the first estimate
                probe(r, PROBE_MIN_BYTES)
                probe(r, probe_size(est.mbps.get(r), cfg.probe_bytes))
            if corun is not None:
                corun.measured_load()
            def shape_at_arrivals() -> None:
                """Request t's world from its arrival on (the twin's rates change at arrivals too): on its own
                thread, so a request already uploading moves at the new rate and no arrival waits for ``tc``.
                While the schedule is held for alone inferences (:func:`alone_block`) the arrival is unknown:
                the wait is re-checked in short slices."""
                for t in range(1, n):
                    while (wait := clock.arrival(t) - time.perf_counter()) > 0:
                        if stop_shaping.wait(min(wait, 0.05)):
                            return
                    shape(t)
                    shaped_up_to[0] = t

            # alone inferences between the requests (TestbedConfig.base_every): on a thread on the edge's CPUs
            served = [w for w in cfg.workloads if w in edge.models]
            every = int(cfg.base_every) if cfg.pace and not cfg.host_profile and timed else 0
            block_runner = (ThreadPoolExecutor(max_workers=1, thread_name_prefix="alone", initializer=pin_thread,
                                               initargs=(set(cfg.edge_cpus),)) if every else None)
            measured_co = corun is not None and max(levels) > 0
            block_gap_s = base_gap_s(cfg, measured_co, ia_ms / 1e3)
            blocks: list[pd.DataFrame] = []
            shaped_up_to = [0]  # the last request whose world the shaper set

            def between_requests(t: int) -> None:
                """Before request t: hold the schedule, wait for the edge's CPU (the earlier requests' local work
                ends first, FIFO), time one block (:func:`alone_block`), give the co-runners the world's load back
                and let them run it for one inter-arrival time (the next request's measured load reads that
                window, as any request's), then request t arrives one inter-arrival time later (as after any
                request: the dispatcher's own work before it - the load read, the probes - precedes it, so it is
                not issued late) and all later ones as much later (the twin is told: ``pause_before_ms``)."""
                clock.hold(t)
                # request t-1's world is set before the block (else the shaper could start the co-runners inside it)
                while shaping is not None and shaped_up_to[0] < t - 1 and not shaping.done():
                    time.sleep(0.001)
                turn = clock.cpu.turn()
                turn.wait()
                try:
                    blocks.append(alone_block(edge, corun if measured_co else None, served, levels, block_gap_s,
                                              len(blocks), runner=block_runner))
                finally:
                    turn.release()
                if corun is not None:
                    corun.set_load(float(trace.cpu_load[t - 1]), float(trace.mem_load[t - 1]))
                    corun.measured_load()  # its window restarts with the world's load
                time.sleep(ia_ms / 1e3)
                clock.resume(t, time.perf_counter() + ia_ms / 1e3)

            def request_meta(t, arrival_s, wl, a, radio, quiet, load, live, obs, twin_choice) -> dict[str, Any]:
                """Request t's record as the dispatcher writes it right after the hand-off."""
                return {"step": t, "arrival_s": arrival_s,
                        "workload": wl, "action": a, "action_name": str(acts.at[a, "name"]),
                        "target": str(acts.at[a, "target"]), "radio": radio,
                        "qos_ms": float(trace.qos_ms[t]),
                        "shaped_up_mbps": radio_rates(links[radio], trace, radio, t)[0] if radio else np.nan,
                        "shaped_down_mbps": radio_rates(links[radio], trace, radio, t)[1] if radio else np.nan,
                        "rtt_ms": links[radio].rtt_ms if radio else np.nan,
                        "signal_dbm": float(trace.signal_dbm[radio][t]) if radio else np.nan,
                        **{f"quiet_{r}_ms": quiet[r] for r in RADIOS},
                        "cpu_load_trace": float(trace.cpu_load[t]), "mem_load_trace": float(trace.mem_load[t]),
                        "cpu_load_measured": load["cpu"], "mem_load_measured": load["mem"],
                        "obs_wifi_dbm": float(live[7]), "obs_lte_dbm": float(live[8]),
                        "twin_obs_action": twin_choice,
                        "twin_obs_wifi_dbm": float(obs[7]), "twin_obs_lte_dbm": float(obs[8])}

            pin_thread(support)  # the dispatcher's loop (policy, twin step, probes' scheduling) off the edge's CPUs
            own_cpu = SupportCpu()
            stateless = cfg.policy.startswith("autoscale")  # greedy on a Q-table: act() has no side effects

            # a twin of its own for the calibration's steps: the run's twin (and the policy's state) stay untouched
            cal_env = twin_env(scen_path, edge_path, cloud_path, n, interference)
            cal_obs = [cal_env.reset(seed=cfg.seed)[0]]
            local_action = int(np.flatnonzero(acts["kind"].to_numpy() == "local")[0])
            cal_seen: dict[str, Any] = {"k": 0}

            def dispatcher_steps() -> None:
                """The loop's own work between an arrival and the hand-off that leaves the run as it is (the
                policy's choice only where it has no side effect): the calibration jobs' stand-in for it."""
                now = time.perf_counter()
                cal_seen["quiet"] = {r: pools[r].quiet_ms(now) for r in RADIOS}
                live = cal_seen["live"] = np.array(cal_obs[0], dtype=np.float32).copy()
                if stateless:
                    policy.act(live)

            def calibration_shape(k: int) -> None:
                """At a calibration job's arrival, what the shaper does at a request's: the world of request k
                (its rates, its co-runner load), from the shaper's CPUs."""
                pin_thread(support)
                shape(k % n)

            def dispatcher_after() -> None:
                """The loop's own work right after the hand-off, while the worker starts (the worker needs the
                GIL the dispatcher's thread holds): the twin's choice, the request's record (thrown away) and the
                twin's step, on the calibration's own twin, then the next iteration's steps up to its first read of
                a file (the co-runners' load, where the dispatcher's thread lets the GIL go)."""
                k = cal_seen["k"] = cal_seen["k"] + 1
                choice = int(policy.act(np.array(cal_obs[0], dtype=np.float32))) if stateless else -1
                request_meta(k % n, 0.0, str(trace.workload[k % n]), local_action, "", cal_seen["quiet"],
                             {"cpu": 0.0, "mem": 0.0}, cal_seen["live"], cal_obs[0], choice)
                o, _, _, truncated, _ = cal_env.step(local_action)
                cal_obs[0] = cal_env.reset(seed=cfg.seed)[0] if truncated else o
                for r in RADIOS:
                    pools[r].in_flight  # noqa: B018 - maybe_probe's check, as in the loop
                if corun is not None:
                    corun.measured_load()

            # the testbed's own per-request overhead, measured before the requests on the very path they take
            calib = dispatch.measure(
                lambda: Dispatcher(ia_ms, pace=cfg.pace, radios=RADIOS, workers=min(n, MAX_IN_FLIGHT),
                                   cpus=cfg.edge_cpus),
                serve, [w for w in cfg.workloads if w in edge.models], cfg.dispatch_jobs, dispatcher_steps,
                dispatcher_after, at_arrival=calibration_shape)
            shape(0)  # request 0's world back
            disp = dispatch.estimate(calib) if cfg.dispatch_jobs else dispatch.not_measured("--dispatch-jobs 0")
            if len(calib):
                calib.to_parquet(out / "dispatch_calibration.parquet", index=False)
            if corun is not None:
                corun.measured_load()  # the first request's load window starts after the calibration
            loop_cpu0 = time.thread_time()
            clock.start()
            shaper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shaper", initializer=pin_thread,
                                        initargs=(support,))
            shaping = shaper.submit(own_cpu.timed, "shaper", shape_at_arrivals) if cfg.pace else None
            meta = []
            for t in range(n):
                if every and t and t % every == 0:
                    between_requests(t)
                if shaping is None:  # back to back: the arrival is now
                    shape(t)
                for r in RADIOS:
                    maybe_probe(r)
                # the co-runners' demand over the window before this arrival, read before it (off the request's path)
                load = corun.measured_load() if corun is not None else {"cpu": 0.0, "mem": 0.0}
                arrival, late_ms = clock.wait_for(t)
                now = time.perf_counter()
                # each radio's quiet time as the request arrives (NaN: a request in flight on it): the twin is told it
                quiet = {r: pools[r].quiet_ms(now) for r in RADIOS}
                live = np.array(obs, dtype=np.float32).copy()
                live[5], live[6] = load["cpu"], load["mem"]
                live[7], live[8] = est.signal_dbm("wifi"), est.signal_dbm("lte")
                a = int(policy.act(live))
                wl = str(trace.workload[t])
                radio = radio_of.get(a, "")
                # the request is issued now, on its own thread: it waits where the simulator says it waits
                clock.submit(serve, arrival, late_ms, t, wl, radio, clock.turn(radio))
                # what the same (greedy, stateless) policy picks on the twin's own observation of this step (the
                # trace's loads and signals instead of the measured ones), off the request's path
                twin_choice = int(policy.act(np.array(obs, dtype=np.float32))) if stateless else -1
                est.tick()
                meta.append(request_meta(t, arrival - clock.t0, wl, a, radio, quiet, load, live, obs, twin_choice))
                obs, _, _, truncated, _ = env.step(a)
                if progress:
                    print(f"[{t + 1}/{n}] {wl} -> {meta[-1]['action_name']} (issued {late_ms:.0f} ms late)", flush=True)
                if truncated and t + 1 < n:
                    raise RuntimeError("the twin's episode ended before the live run; this is a bug")
            own_cpu.add("dispatcher", (time.thread_time() - loop_cpu0) * 1e3)
            pauses = clock.pause_ms(n)
            for m_row, done, pause in zip(meta, clock.results(), pauses):
                rows.append({**m_row, **done, "pause_before_ms": float(pause)})
            if block_runner is not None:
                block_runner.shutdown(wait=True)
            # the base's second half, right after the requests on the same warm models (see bracket_base)
            rebased = not cfg.host_profile and bool(timed)
            pooled = None
            if rebased:
                measured = corun is not None and max(levels) > 0
                pooled = bracket_base(cfg, edge, corun, timed[0], edge_path, prof_info,
                                      base_gap_s(cfg, measured, float(u0.trace.interarrival_ms) / 1e3),
                                      with_corunners=measured,
                                      during=pd.concat(blocks, ignore_index=True) if blocks else None,
                                      origin_s=clock.t0)
            if shaping is not None:
                shaping.result()  # every arrival shaped (a failed tc call is a failed run)
            support_info = {"support_cpus": sorted(support), "edge_cpus": list(cfg.edge_cpus),
                            "support_cpu_ms_per_request": own_cpu.per_request(n)}
            prober.shutdown(wait=True)
            for f in probing.values():
                if f is not None:
                    f.result()
            for c in (*probe_clients.values(), *pools.values()):
                c.close()
        finally:
            if shaper is not None:
                stop_shaping.set()
                shaper.shutdown(wait=True)
            if corun is not None:
                corun.close()

    df = pd.DataFrame(rows)
    # the measured queue: the dispatcher's own lateness, the turn on the CPU or transmitter, the server's lock
    df["queue_ms"] = df["dispatch_late_ms"] + df["edge_queue_ms"] + df["server_queue_ms"]
    # what no part accounts for (thread hand-offs): latency is arrival to answer, as in the simulator
    df["other_ms"] = df["latency_ms"] - df[["local_ms", "transfer_ms", "server_ms", "queue_ms"]].sum(axis=1)
    idx = np.arange(len(df))
    states = u.episode().states.take(idx)
    if df["pause_before_ms"].to_numpy().any():  # the twin's requests keep the live gaps (pauses for alone blocks)
        gaps = np.asarray(states.interarrival_ms, dtype=float).copy()
        gaps[:-1] += df["pause_before_ms"].to_numpy(dtype=float)[1:]
        states = dataclasses.replace(states, interarrival_ms=gaps)
    # each request's local base: time-local where alone inferences were timed between the requests
    df["pred_base_ms"], df["pred_base_factor"] = request_bases(pooled, df, prof_info)
    if rebased:  # the twin that predicts the requests gets the bracketed base (the live policy kept its own)
        env_pred = twin_env(scen_path, edge_path, cloud_path, n, interference)
        env_pred.reset(seed=cfg.seed)
        u = env_pred.unwrapped
    # the twin meets the radio state the live radios were in (quiet time since their last traffic)
    quiet = np.column_stack([df[f"quiet_{r}_ms"].to_numpy(dtype=float) if r in RADIOS else np.full(len(df), np.nan)
                             for r in sim_radios])
    pred = twin_sequence(u.sim, states, df["action"].to_numpy(), quiet,
                         local_factor=df["pred_base_factor"].to_numpy(dtype=float))
    df["pred_latency_ms"] = pred.latency_ms
    df["pred_energy_mj"] = pred.energy_mj
    df["pred_timed_out"] = np.asarray(pred.timed_out, dtype=bool)
    add_predicted_parts(df, u.sim, pred)
    dispatch.apply(df, disp)  # the testbed's own overhead, measured before the requests (0 where not measured)
    df["energy_mj"] = modeled_energy_mj(df, {**pred.phases, "tail_mj": pred.tail_mj})
    df["energy_source"] = "modeled: measured durations x the simulator's powers, above idle"
    df["qos_ok"] = (df["latency_ms"] <= df["qos_ms"]) & ~df["timed_out"]
    df["route"] = _route_labels(acts)[df["action"].to_numpy()]
    df.insert(0, "scenario", trace.scenario)
    df.insert(0, "policy", cfg.policy)
    df.to_parquet(out / "requests.parquet", index=False)

    # the same policy in the simulator on the same trace: its own choices, its own latencies
    sim_env = twin_env(scen_path, edge_path, cloud_path, n, interference)
    sim_policy = policy if cfg.policy.startswith("autoscale") else make_live_policy(
        cfg, sim_env, scen_path, edge_path, cloud_path, out, interference)
    sim_df = evaluate_policy(sim_policy, sim_env, None, [cfg.seed], n)
    sim_df["target"] = acts["target"].to_numpy()[sim_df["action"].to_numpy()]
    sim_df["route"] = _route_labels(acts)[sim_df["action"].to_numpy()]
    sim_df.to_parquet(out / "simulated.parquet", index=False)
    world = {"radio_state_machine": {r: {"promotion_ms": pm, "tail_ms": tm}
                                     for r, (pm, tm) in link_state_constants(RADIOS).items()},
             "drx": "not emulated: data/network has no DRX wake-up constant (the tail power is long-DRX power)",
             "offload_timeout_ms": {str(k): float(v) for k, v in timeout_of.items()},
             "on_timeout": u.sim.on_timeout,
             "link_rate": "live: the shaper takes request k's rates at its arrival (its own thread); the twin gives "
                          "each upload the mean goodput of the rates in force while it runs (loop.UploadTimeline)",
             "transmitter": "held until the upload's bytes have left the shaped link, plus the promotion the proxy "
                            "imposes on a burst that found the radio quiet for a tail (the kernel: promotion + upload)",
             "server_compute": prof_info.get("server_profile", ""),
             "queues": "both sides: requests issued at their arrivals; one inference at a time on the edge's CPU, "
                       "one transmitter per radio, the server one request at a time (FIFO); latency from arrival",
             **inter_info}
    summary = summarise(df, sim_df, cfg, prof_info, meter)
    summary.update(support_info)
    summary["dispatch_overhead"] = disp
    summary.update({"world": world, "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg()),
                    "cpu_count": os.cpu_count(), "nice": cfg.nice,
                    "scheduling_groups": scheduling_groups()})
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


PARTS = ("local", "transfer", "server", "queue", "dispatch")


@dataclass
class UploadTimeline:
    """The uplink goodput of every route over the run's time: the live shaper holds request k's rates from its
    arrival to the next one's (:func:`bench.testbed.live.radio_rates`), whatever request is uploading then.

    The kernel gives a request the goodput at its own arrival for its whole upload; live, an upload that
    queued for the transmitter or outlasts the next arrival moves at the rates of the moments it runs. Near
    saturation the difference decides timeouts (mobility_walk: a 1.1 Mbit/s step followed by 3.6 Mbit/s made
    the twin's upload 1.16 s against 0.39 s live, and its queue then held 1-2 s for twenty requests)."""

    arrival_ms: np.ndarray  # (N,) request k's arrival from the first
    up_good: np.ndarray  # (N, Q) the route's goodput (Mbit/s) from arrival k on
    up_phy: np.ndarray  # (N, Q)
    down_good: np.ndarray  # (N, Q)
    down_phy: np.ndarray  # (N, Q)
    route: np.ndarray  # (A,) an action's route (-1: local)
    route_radio: np.ndarray  # (Q,)
    n_radios: int

    @staticmethod
    def of(sim, states) -> "UploadTimeline":
        from bench.sim.core import Draws

        n = len(states)
        x = sim.request_inputs(states, Draws.neutral(n, len(sim.links)))
        ia = np.asarray(states.interarrival_ms, dtype=float).reshape(-1)
        arrival = np.concatenate([[0.0], np.cumsum(ia[:-1])]) if n else np.zeros(0)
        return UploadTimeline(arrival, x.up_good, x.up_phy, x.down_good, x.down_phy,
                              np.asarray(sim.kernel.route), np.asarray(sim.kernel.route_radio), len(sim.links))

    def effective_mbps(self, t: int, q: int, start_ms: float, bits: float) -> float:
        """The mean goodput of ``bits`` sent on route ``q`` from ``start_ms`` after request ``t``'s arrival."""
        t0 = self.arrival_ms[t] + start_ms
        k = max(int(np.searchsorted(self.arrival_ms, t0, side="right")) - 1, 0)
        now, left = t0, bits
        while True:
            rate = float(self.up_good[k, q]) * 1e3  # bits per ms
            end = self.arrival_ms[k + 1] if k + 1 < len(self.arrival_ms) else np.inf
            if rate > 0 and now + left / rate <= end:
                now += left / rate
                break
            if not np.isfinite(end):
                return 0.0  # a dead link to the end of the run
            left -= rate * (end - now)
            now, k = end, k + 1
        return bits / (now - t0) / 1e3

    def draws(self, t: int, action: int, phases: dict):
        """Draws that give request ``t``'s upload its effective goodput (None: no upload, or the rate never
        changes under it). The twin's upload starts after its promotion (the kernel's ``radio_start_ms`` +
        ``promo_ms``); the download (the answer, a few KB) keeps its arrival's rate."""
        from bench.sim.core import Draws

        q = int(self.route[action])
        up_ms = float(np.asarray(phases["up_ms"]).reshape(-1)[0]) if q >= 0 else 0.0
        if q < 0 or not (0 < up_ms < np.inf):
            return None
        good, phy = float(self.up_good[t, q]), float(self.up_phy[t, q])
        start = float(np.asarray(phases["radio_start_ms"]).reshape(-1)[0] + np.asarray(phases["promo_ms"]).reshape(-1)[0])
        eff = self.effective_mbps(t, q, start, up_ms * good * 1e3)
        if abs(eff - good) <= 1e-9 * good or phy <= 0:
            return None
        j = int(self.route_radio[q])
        one = lambda: np.ones((1, self.n_radios))  # noqa: E731 - own arrays (neutral() shares one between fields)
        d = Draws(one(), one(), one(), one(), np.ones(1), np.ones(1))
        # goodput = min(phy x factor, cap): the factor alone sets it when the cap is lifted (see request_inputs);
        # the download's factor keeps its own goodput
        d.up_factor[0, j] = max(eff, 1e-9) / phy
        d.down_factor[0, j] = float(self.down_good[t, q]) / max(float(self.down_phy[t, q]), 1e-12)
        return d


def twin_sequence(sim, states, actions: np.ndarray, quiet_ms: np.ndarray, rate_in_time: bool = True,
                  local_factor: np.ndarray | None = None):
    """The twin's prediction of a live run: the requests in order through the kernel (expected conditions:
    :meth:`Draws.neutral`), each meeting the queues the twin's own earlier requests left (one inference at a
    time on each local resource, one transmitter per radio, a FIFO queue per server route) - the waits the
    live side meets - and each radio in the state the live radio was in as the request arrived
    (``quiet_ms`` (N, R): its quiet time, probes included; NaN where a request was in flight on it live,
    so the twin's own carried radio state stands). ``local_factor`` (N,): each request's local time over the
    profile's (its time-local base over the pooled one, :func:`request_bases`; default 1). Returns an
    :class:`~bench.sim.core.Outcome` over the N."""
    from bench.sim.core import Draws, Outcome
    from bench.sim.kernel import OUTCOME_FIELDS, Carry

    n = len(actions)
    carry = Carry.fresh(1, sim.kernel)
    neutral = Draws.neutral(1, len(sim.links))
    timeline = UploadTimeline.of(sim, states) if rate_in_time else None
    outs = []
    for t in range(n):
        idle = carry.radio_idle.copy()
        known = np.isfinite(quiet_ms[t]) | np.isinf(quiet_ms[t])
        idle[0, known] = quiet_ms[t, known]
        carry = Carry(carry.local_free, carry.tx_free, idle, carry.server_free, carry.throttled, carry.heat_w)
        st = states.take(np.array([t])).with_carry(carry)
        act = np.asarray(actions[t:t + 1], dtype=np.int64)
        local = np.ones(1) if local_factor is None else np.asarray(local_factor[t:t + 1], dtype=float)
        out = sim.evaluate(st, act, dataclasses.replace(neutral, local_factor=local))
        if timeline is not None:  # the upload at the rates in force while it runs, not only at its arrival
            draws = timeline.draws(t, int(act[0]), out.phases)
            if draws is not None:  # the factors set the goodput alone: the cap is in the effective rate already
                draws = dataclasses.replace(draws, local_factor=local)
                out = sim.evaluate(dataclasses.replace(st, cap_mbps=np.full(1, np.inf)), act, draws)
        outs.append(out)
        carry = sim.advance(carry, out, st.interarrival_ms)
    cat = lambda xs: np.concatenate([np.atleast_1d(np.asarray(x)) for x in xs])  # noqa: E731
    return Outcome(*(cat([getattr(o, f) for o in outs]) for f in OUTCOME_FIELDS),
                   phases={k: cat([o.phases[k] for o in outs]) for k in outs[0].phases})


def add_predicted_parts(df: pd.DataFrame, sim, pred) -> None:
    """The prediction split like the measurement (:mod:`bench.sim.kernel`'s phases): ``pred_local_ms`` (edge
    compute, interference and a timeout's local fallback included), ``pred_server_ms`` (the cloud's compute;
    0 for a timed-out offload, whose wait is all transfer, as measured), ``pred_queue_ms`` (the kernel's
    waits: for the local resource, the radio's transmitter and the server) and ``pred_transfer_ms``
    (promotion, upload, RTT, download: the radio path less the server's wait and compute)."""
    ph = {k: np.asarray(v, dtype=float) for k, v in pred.phases.items()}
    t = sim.tables
    w = t.workload_index(df["workload"].to_numpy())
    a = df["action"].to_numpy()
    off = np.asarray(t.offloads[w, a], dtype=bool)
    timed = np.asarray(pred.timed_out, dtype=bool)
    local = ph["local_ms"] + ph["fallback_ms"]
    queue = np.nan_to_num(ph["queue_ms"])
    # the offload's waits: for the transmitter (from the hand-off after its local part) and for the server
    tx_wait = np.where(off, np.maximum(np.nan_to_num(ph["radio_start_ms"]) - ph["local_start_ms"] - ph["local_ms"],
                                       0.0), 0.0)
    srv_wait = np.where(off, np.maximum(queue - ph["local_start_ms"] - tx_wait, 0.0), 0.0)
    server = np.where(off & ~timed, np.minimum(t.remote_ms[w, a], np.maximum(ph["wait_ms"] - srv_wait, 0.0)), 0.0)
    path = np.nan_to_num(ph["promo_ms"] + ph["up_ms"] + ph["wait_ms"] + ph["down_ms"])
    df["pred_local_ms"] = local
    df["pred_server_ms"] = server
    df["pred_transfer_ms"] = np.where(off, np.maximum(path - server - srv_wait, 0.0), 0.0)
    df["pred_promotion_ms"] = np.where(off, np.nan_to_num(ph["promo_ms"]), 0.0)
    df["pred_queue_ms"] = queue


def _timed_out_either_side(df: pd.DataFrame) -> pd.Series:
    """Requests that timed out live or in the twin (``pred_timed_out``)."""
    false = pd.Series(False, index=df.index)
    live = df["timed_out"].astype(bool) if "timed_out" in df.columns else false
    twin = df["pred_timed_out"].astype(bool) if "pred_timed_out" in df.columns else false
    return live | twin


def _part_rows(df: pd.DataFrame, part: str) -> pd.Series:
    """The requests that have ``part`` and are compared on it: a request that timed out on either side is left
    out of every part (its "transfer" is the wait for the timeout on one side and a transfer on the other, its
    server part is missing on one side, and its local fallback is compared with nothing where only one side fell
    back); its latency, arrival to answer on both sides, stays in ``latency_mape``."""
    local = df["route"] == "cpu"
    keep = ~_timed_out_either_side(df)
    if part == "local":
        return local & keep
    if part in ("server", "transfer"):
        return ~local & keep
    return keep


def part_errors(df: pd.DataFrame) -> dict[str, float]:
    """Per part (local, transfer, server, queue, dispatch: :mod:`bench.testbed.dispatch`), over the requests that have it and timed out on neither side:
    measured and predicted median and p95 (ms) and the mean absolute relative error (``<part>_mape``); the
    queue and the dispatch overhead, near zero on both sides, get the mean absolute error in ms (``queue_mae_ms``,
    ``dispatch_mae_ms``) instead.
    ``parts_skipped_timed_out`` counts the requests left out for a timeout (live or in the twin): in a run with
    many timeouts the per-part errors cover only the rest (one timed-out transfer against a predicted
    completed one made a run's transfer error 10064 %)."""
    out: dict[str, float] = {"parts_skipped_timed_out": int(_timed_out_either_side(df).sum())}
    for part in PARTS:
        if f"pred_{part}_ms" not in df.columns:
            continue
        d = df[_part_rows(df, part)]
        meas, pred = d[f"{part}_ms"].to_numpy(dtype=float), d[f"pred_{part}_ms"].to_numpy(dtype=float)
        out[f"{part}_n"] = int(len(d))
        for name, v in (("measured", meas), ("predicted", pred)):
            out[f"{part}_{name}_median_ms"] = float(np.median(v)) if len(v) else float("nan")
            out[f"{part}_{name}_p95_ms"] = float(np.percentile(v, 95)) if len(v) else float("nan")
        if part in ("queue", "dispatch"):  # ~1 ms on both sides: the error in ms
            out[f"{part}_mae_ms"] = float(np.abs(pred - meas).mean()) if len(d) else float("nan")
        else:
            ok = meas > 0
            out[f"{part}_mape"] = float((np.abs(pred[ok] - meas[ok]) / meas[ok]).mean()) if ok.any() else float("nan")
    return out


def off_cpu_shares(df: pd.DataFrame) -> dict[str, float]:
    """Per compute part: the median share of its wall time its thread did *not* run (1 - CPU time / wall time).

    Near 0 on a quiet host; other load (and, on the edge, the scenario's own co-runners, which the twin models)
    raises it. A part whose error comes with a high share is load-driven: the twin predicts the compute, not
    when a shared host lets it run. NaN where the part was not measured (more than one torch thread)."""
    out = {}
    for part in ("local", "server"):
        wall = df[f"{part}_ms"].to_numpy(dtype=float) if f"{part}_ms" in df else np.zeros(0)
        cpu = df[f"{part}_cpu_ms"].to_numpy(dtype=float) if f"{part}_cpu_ms" in df else np.full(len(wall), np.nan)
        keep = np.isfinite(cpu) & (wall > 0)  # an offload's local encoding is not timed so: NaN, left out
        share = np.clip(1.0 - cpu[keep] / wall[keep], 0.0, 1.0)
        out[f"{part}_off_cpu_share_median"] = float(np.median(share)) if len(share) else float("nan")
    # the local part's off-CPU time split: the co-runners' run (the twin models it) and the rest (unrelated load)
    if "corunner_cpu_ms" in df and "local_cpu_ms" in df:
        wall, cpu, co = (df[c].to_numpy(dtype=float) for c in ("local_ms", "local_cpu_ms", "corunner_cpu_ms"))
        keep = np.isfinite(cpu) & np.isfinite(co) & (wall > 0) & (cpu > 0)
        if keep.any():
            out["local_corunner_share_median"] = float(np.median(np.clip(co[keep] / wall[keep], 0.0, 1.0)))
            out["local_unrelated_share_median"] = float(np.median(np.clip(1.0 - (cpu[keep] + co[keep]) / wall[keep],
                                                                          0.0, 1.0)))
            # the co-runners' stretch of the inference as measured live, unrelated load left out (hostload's)
            out["local_corunner_stretch_median"] = float(np.median((cpu[keep] + co[keep]) / cpu[keep]))
    return out


def energy_check(df: pd.DataFrame, meter: EnergyMeter) -> dict:
    """RAPL package energy above idle vs the twin's energy, over the local-only requests (else why not)."""
    if meter.meter is None or "energy_rapl_mj" not in df.columns:
        return {"skipped": meter.skip_reason or "no energy meter"}
    d = df[(df["route"] == "cpu") & df["energy_rapl_mj"].notna()]
    if d.empty:
        return {"skipped": "no local-only request in this run"}
    meas, pred = d["energy_rapl_mj"].to_numpy(), d["pred_energy_mj"].to_numpy()
    ok = meas > 0
    return {"requests": int(len(d)), "idle_power_w": meter.idle_w,
            "measured_median_mj": float(np.median(meas)), "predicted_median_mj": float(np.median(pred)),
            "mape": float((np.abs(pred[ok] - meas[ok]) / meas[ok]).mean()) if ok.any() else float("nan"),
            "note": "RAPL counts the whole package (co-runners and the server's CPU included)"}


def _route_labels(acts: pd.DataFrame) -> np.ndarray:
    """Per action: the local target (``cpu``) or the offload route (``cloud_wifi``, ``cloud_lte``)."""
    return np.where(acts["kind"] == "local", acts["target"], acts["name"]).astype(str)


def action_agreement(df: pd.DataFrame) -> dict[str, Any]:
    """How often the policy picked, on the twin's observation of a step, the action it picked live on the
    measured one (``twin_obs_action``; -1 where not recorded), and the observed signals' median gap (live minus
    twin, dB): the twin's own rollout (``target_mix_sim``) differs from the live one by these choices."""
    if "twin_obs_action" not in df or not (df["twin_obs_action"] >= 0).any():
        return {}
    d = df[df["twin_obs_action"] >= 0]
    gap = {r: float((d[f"obs_{r}_dbm"] - d[f"twin_obs_{r}_dbm"]).median()) for r in RADIOS
           if f"twin_obs_{r}_dbm" in d}
    return {"action_agreement_twin_obs": float((d["twin_obs_action"] == d["action"]).mean()),
            "obs_signal_gap_db_median": gap}


def _mix(targets: pd.Series) -> dict[str, float]:
    return {str(k): round(float(v), 4) for k, v in targets.value_counts(normalize=True).sort_index().items()}


def local_base_record(df: pd.DataFrame) -> dict[str, Any]:
    """What each request's time-local base did (``pred_base_ms``, :func:`request_bases`): per workload, the live
    local requests' median CPU time over the base each used (the drift left after it; compare
    ``local_cpu_over_base_median``, against the pooled base) and the range of the bases over the pooled one; the
    pauses the alone blocks added to the schedule."""
    if "pred_base_ms" not in df:
        return {}
    out: dict[str, Any] = {"pause_total_ms": float(df["pause_before_ms"].sum()) if "pause_before_ms" in df else 0.0}
    f = df.groupby("workload")["pred_base_factor"]
    out["pred_base_factor_range"] = {str(w): [float(g.min()), float(g.max())] for w, g in f}
    if "local_cpu_ms" in df and "target" in df:
        local = df[(df["target"] == "cpu") & ~df["timed_out"].astype(bool) & df["local_cpu_ms"].notna()
                   & (df["pred_base_ms"] > 0)]
        out["local_cpu_over_pred_base_median"] = {str(w): float((g["local_cpu_ms"] / g["pred_base_ms"]).median())
                                                  for w, g in local.groupby("workload")}
    return out


def local_cpu_over_base(df: pd.DataFrame, base_ms: dict[str, float]) -> dict[str, float]:
    """Per workload: the live local requests' median thread CPU time over the twin's base for it (the edge fit's
    time). Off 1 by x, the twin's local time is off by about x before any co-runner stretch: the campaign's 42 %
    cell read 0.76 (mobilenet_v2) and 0.67 (lstm_text) against the start's quick fit; 1.01 and 0.88 against
    the base timed just before the requests."""
    if "local_cpu_ms" not in df or "target" not in df or not base_ms:
        return {}
    local = df[(df["target"] == "cpu") & ~df["timed_out"].astype(bool) & df["local_cpu_ms"].notna()]
    return {str(w): float(g["local_cpu_ms"].median() / base_ms[w]) for w, g in local.groupby("workload")
            if base_ms.get(w, 0) > 0}


def summarise(df: pd.DataFrame, sim_df: pd.DataFrame, cfg: TestbedConfig, prof_info: dict, meter) -> dict:
    meas, pred = df["latency_ms"].to_numpy(), df["pred_latency_ms"].to_numpy()
    ape = np.abs(pred - meas) / meas
    e_meas, e_pred = df["energy_mj"].to_numpy(), df["pred_energy_mj"].to_numpy()
    return {
        "policy": cfg.policy, "scenario": str(df["scenario"].iloc[0]), "requests": int(len(df)), "seed": cfg.seed,
        "latency_median_ms": float(np.median(meas)), "latency_p95_ms": float(np.percentile(meas, 95)),
        "pred_latency_median_ms": float(np.median(pred)), "pred_latency_p95_ms": float(np.percentile(pred, 95)),
        "latency_mape": float(ape.mean()), "latency_median_ape": float(np.median(ape)), **part_errors(df),
        **off_cpu_shares(df),
        "local_ms_mean": float(df["local_ms"].mean()), "transfer_ms_mean": float(df["transfer_ms"].mean()),
        "server_ms_mean": float(df["server_ms"].mean()), "queue_ms_mean": float(df["queue_ms"].mean()),
        "timeouts": int(df["timed_out"].sum()), "pred_timeouts": int(df["pred_timed_out"].sum()),
        "pred_promotions": int((df["pred_promotion_ms"] > 0).sum()),
        "qos_rate": float(df["qos_ok"].mean()), "energy_mj_mean": float(e_meas.mean()),
        "pred_energy_mj_mean": float(e_pred.mean()),
        "energy_mape": float(np.mean(np.abs(e_pred - e_meas) / np.maximum(e_meas, 1e-9))),
        "energy_source": "modeled (measured durations x the simulator's powers, above idle)",
        "energy_check": energy_check(df, meter),
        "target_mix_live": _mix(df["route"]), "target_mix_sim": _mix(sim_df["route"]),
        **action_agreement(df),
        "sim_own_latency_median_ms": float(sim_df["latency_ms"].median()),
        "sim_own_latency_p95_ms": float(sim_df["latency_ms"].quantile(0.95)),
        "local_cpu_over_base_median": local_cpu_over_base(df, prof_info.get("edge_base_ms", {})),
        "base_every": int(cfg.base_every), **local_base_record(df),
        **{f"profile_{k}": v for k, v in prof_info.items()},
    }
