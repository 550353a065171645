"""``python -m bench testbed ...`` and ``python -m bench testbed-cleanup``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _csv_ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated CPU ids, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    from bench.testbed.link import TestbedUnavailable
    from bench.testbed.loop import TestbedConfig, TestbedError, is_dvfo, run

    p = argparse.ArgumentParser(prog="python -m bench testbed",
                                description="Run a policy live: real inference over a real, shaped link on this machine "
                                            "(needs root, network namespaces, tc; stress-ng for co-runners).")
    p.add_argument("--policy", required=True, help="registered policy (oracle excluded); autoscale trains on the twin; "
                                                  "dvfo:XI runs DVFO's split at offload share XI (measured only)")
    p.add_argument("--scenario", required=True, help="scenario name or YAML path")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--out", required=True, help="output directory (requests.parquet, summary.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workloads", nargs="+", default=["mobilenet_v2", "lstm_text"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--edge-cpus", type=_csv_ints, default=(0,))
    p.add_argument("--server-cpus", type=_csv_ints, default=(1,))
    p.add_argument("--no-corunners", action="store_true")
    p.add_argument("--no-pace", action="store_true", help="requests back to back instead of at the inter-arrival time")
    p.add_argument("--host-profile", default="", help="host profile YAML (default: fit a quick one here)")
    p.add_argument("--autoscale-steps", type=int, default=20_000)
    p.add_argument("--fit-gap-ms", type=float, default=None,
                   help="pause before each timed run of the quick fits (default: the scenario's inter-arrival time "
                        "when paced, the compute as a paced request meets it); 0 = back to back")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness of the run, its server and co-runners (negative, as root: shields the experiment "
                        "from unrelated load on a shared host; recorded in the summary)")
    p.add_argument("--base-every", type=int, default=10,
                   help="every this many requests (paced), one block of alone inferences between them gives the twin "
                        "a time-local base (bench/testbed/localbase.py); 0 = the before/after bracket only")
    p.add_argument("--dispatch-jobs", type=int, default=12,
                   help="local requests dispatched before the live ones to measure the testbed's own per-request "
                        "overhead, which the twin adds (bench/testbed/dispatch.py); 0 = not measured, the twin adds 0")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    usable = sorted(os.sched_getaffinity(0))
    for opt, cpus in (("--edge-cpus", args.edge_cpus), ("--server-cpus", args.server_cpus)):
        if not cpus or not set(cpus) <= set(usable):  # refused up front, not by sched_setaffinity mid-run
            p.error(f"{opt} {','.join(map(str, cpus)) or repr('')}: allowed: CPU ids this process may use {usable}")
    try:
        cfg = TestbedConfig(policy=args.policy, scenario=args.scenario, requests=args.requests, seed=args.seed,
                            workloads=tuple(args.workloads), threads=args.threads, edge_cpus=args.edge_cpus,
                            server_cpus=args.server_cpus, corunners=not args.no_corunners, pace=not args.no_pace,
                            host_profile=args.host_profile, autoscale_steps=args.autoscale_steps,
                            nice=args.nice, fit_gap_ms=args.fit_gap_ms, base_every=args.base_every,
                            dispatch_jobs=args.dispatch_jobs)
        if is_dvfo(cfg.policy):  # DVFO's split: its own loop, measured only (no CPU-only DVFO twin)
            from bench.testbed import dvfo_live

            summary = dvfo_live.run(cfg, Path(args.out), progress=args.progress)
        else:
            summary = run(cfg, args.out, progress=args.progress)
    except (TestbedError, TestbedUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def cleanup_main(argv: list[str] | None = None) -> int:
    from bench.testbed.link import cleanup_all, unavailable_reason

    p = argparse.ArgumentParser(prog="python -m bench testbed-cleanup",
                                description="Remove every testbed namespace, veth and qdisc (and the processes in "
                                            "those namespaces) left behind by a crashed run.")
    p.add_argument("--netns", nargs="+", metavar="NAME", help="only these testbed namespaces (default: every bt<N>)")
    args = p.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"error: {reason}", file=sys.stderr)
        return 2
    found = cleanup_all(names=args.netns)
    print(json.dumps({"removed": found}))
    return 0
