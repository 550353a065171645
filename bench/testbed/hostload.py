"""This host's co-runner slowdown, measured by the testbed with its own stress-ng co-runners.

The simulator stretches local compute by ``1 + cpu_slowdown * u_cpu`` on its
CPU-sensitive part and ``1 + mem_slowdown * u_mem`` on its memory-bound part
(:class:`bench.world.scenarios.InterferenceModel`). The shipped constants describe
a phone's big cores; on this x86 host the co-runners are ``stress-ng`` processes
sharing the edge's CPUs, so the twin gets coefficients measured here instead:

* the served workloads run on the edge's CPUs one inference at a time, **as the live run issues them**: each
  after a pause of the scenario's inter-arrival time with the co-runner of its setting already running (no
  co-runner, the CPU stressor alone at the scenario's CPU load level, the memory stressor alone at its memory
  level; :class:`bench.testbed.edge.CoRunners`, the same duty cycle the live run uses). The settings
  alternate inference by inference (their order rotating each round), so unrelated load of the moment meets
  them all alike. Back-to-back inferences (as before) met the stressor as a CPU hog does (likely: without
  the scheduler's placement credit for a thread that slept, which each live request has): on this host they measured mobilenet_v2 at 37 ms under cpu 0.9 against 19 ms alone,
  while the live requests, 200 ms apart, took a median 22 ms (autoscale/cpu_corunner: twin 48 ms vs live 26 ms);
* each setting's stretch is the median over rounds of ``(t_cpu + r) / t0_cpu``: the inference's thread CPU time
  ``t_cpu`` plus what the stressors ran meanwhile ``r`` (``/proc/<pid>/schedstat``, read just inside the timed
  window), over its CPU time alone in the same round. Inference and stressors are pinned to the same CPU, so the
  inference's wall time is exactly ``t_cpu + r +`` unrelated work's run: this leaves out unrelated load whatever
  it does from one inference to the next. The paired wall-clock ratio ``t / t0`` (kept as ``wall_stretch_*``)
  cancels only a load that stays put for a round, and unrelated load biases it low: a burst inflates the
  baseline, not the stressed run, whose wait for the CPU the stressors already fill (at 1-min load 17,
  mobilenet_v2 waited 3.8 ms for unrelated work alone and 0.2 ms with the stressors; wall ratio 1.99,
  accounted 2.16, the live requests' own accounted stretch 2.11);
* where the scenario has both loads, the settings include **both stressors at once** (``scenario``), as the live
  run meets them, and the coefficients come from it: on this host the stressors take the inference's CPU, so
  every part of it stretches alike (mobilenet_v2 and lstm_text stretched 2.04 and 2.09 under the CPU stressor
  alone although the phone model calls 37 % and 99 % of them CPU-sensitive), so ``cpu_slowdown * u_cpu =
  mem_slowdown * u_mem = k`` with ``k`` the least-squares fit of ``t - t0 = k * (cpu- + memory-sensitive
  time)``: exact at the measured levels, linear in each load around them (a scenario whose loads vary is
  measured at its highest);
* with one load only, the simulator's model is ``t = t0 + k * load * part`` with ``part`` the time the
  load slows (``pre_cpu_ms`` or ``pre_mem_ms`` of the workload's local CPU action,
  scaled to the measured ``t0``); ``k`` is the least-squares fit through the origin
  of the measured stretches ``t - t0`` on ``load * part`` over the workloads, so a
  workload whose sensitive part is tiny (its stretch is mostly noise) weighs little.
  Per-workload ratios are kept in the file for inspection.

A memory stressor on the same CPU also takes CPU time, so the memory coefficient
here holds both effects; it is what this host's co-runner does, which is what the
twin must predict. The result is written next to the host profile as
``<profile>_interference.yaml`` in ``data/scenarios/_model.yaml``'s format, every
value with ``source: "measured: ..."``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

#: (setting, cpu stressor on, mem stressor on); ``scenario``: both at once, as the live run meets a scenario that
#: has both loads (only measured then)
SETTINGS = (("none", False, False), ("cpu", True, False), ("mem", False, True), ("scenario", True, True))
#: the pause before each timed inference is the scenario's inter-arrival time, at most this (s): the
#: scheduler's credit for a sleeping thread saturates well within it, and it bounds the measurement's length
MAX_GAP_S = 0.25


def scenario_levels(cpu_load: np.ndarray, mem_load: np.ndarray) -> tuple[float, float]:
    """The load levels at which to measure: the scenario trace's highest CPU and memory loads."""
    return float(np.max(cpu_load, initial=0.0)), float(np.max(mem_load, initial=0.0))


def time_settings(edge, corun, workloads, cpu_level: float, mem_level: float, rounds: int = 9,
                  gap_s: float = 0.2, base_only=(), phase: str = "before", only=None,
                  first_round: int = 0) -> pd.DataFrame:
    """Latency (ms, wall clock) and thread CPU time of single inferences under each setting (see the module
    docstring): per round and workload, the settings in a rotating order, each inference after ``gap_s`` with
    its setting's co-runner running. ``edge.local(w)`` returns a :class:`~bench.testbed.edge.Timing`.
    ``base_only``: workloads timed in the ``none`` setting only (the host fit's filler, never served: it needs
    no stretch); ``corun`` None: no co-runners, every workload in the ``none`` setting only.

    Each row also records where the inference stood (:data:`POSITION_COLUMNS`): ``phase`` (``before`` or
    ``after`` the requests, :func:`bench.testbed.loop.bracket_base`), ``seq`` (its place in this measurement),
    ``t_s`` (seconds from the measurement's start to the inference), ``after`` (the setting of the inference
    just before it, ``start`` for the first) and ``at_s`` (``time.perf_counter()`` at the inference: one clock
    with the requests', :mod:`bench.testbed.localbase`): what :func:`residue` and :func:`base_drift` read.

    ``only``: these settings alone (the blocks inside the request window time ``none`` and the one the fit uses,
    :func:`bench.testbed.loop.alone_block`); ``first_round``: the first round's number (it also turns the
    settings' rotation, so successive one-round blocks alternate which setting comes first)."""
    settings = [(name, cpu_on, mem_on) for name, cpu_on, mem_on in SETTINGS
                if not ((cpu_on and cpu_level <= 0) or (mem_on and mem_level <= 0))
                and (only is None or name in only)]
    if corun is None:
        settings, corun = settings[:1], _NoCoRunners()
    gap = float(np.clip(gap_s, 0.0, MAX_GAP_S))
    rows, previous, start = [], "start", time.perf_counter()
    for rnd in range(int(first_round), int(first_round) + rounds):
        for i, w in enumerate(workloads):
            own = settings[:1] if w in base_only else settings
            k = (rnd + i) % len(own)
            for setting, cpu_on, mem_on in own[k:] + own[:k]:
                corun.set_load(cpu_level if cpu_on else 0.0, mem_level if mem_on else 0.0)
                time.sleep(gap)  # the inter-arrival pause, the co-runner running (at least one duty period)
                if hasattr(corun, "refresh"):
                    corun.refresh()  # its workers, forked once it first ran (before the timed call)
                at_s = time.perf_counter()
                tim = edge.local(w, corunner_ms=getattr(corun, "run_ms", None))
                rows.append({"round": rnd, "setting": setting, "workload": w, "latency_ms": tim.local_ms,
                             "cpu_ms": tim.local_cpu_ms, "corunner_cpu_ms": tim.corunner_cpu_ms,
                             "phase": phase, "seq": len(rows), "t_s": at_s - start, "after": previous,
                             "at_s": at_s})
                previous = setting
    corun.set_load(0.0, 0.0)
    return pd.DataFrame(rows, columns=["round", "setting", "workload", "latency_ms", "cpu_ms", "corunner_cpu_ms",
                                       *POSITION_COLUMNS])


#: where each timed inference stood (:func:`time_settings`)
POSITION_COLUMNS = ("phase", "seq", "t_s", "after", "at_s")


def _alone_time(timings: pd.DataFrame) -> str:
    """The column an alone inference is timed by: its thread CPU time where every row has it, else the wall
    clock (as :func:`base_trace`)."""
    ok = "cpu_ms" in timings.columns and len(timings) and bool(np.isfinite(timings["cpu_ms"].to_numpy(float)).all())
    return "cpu_ms" if ok else "latency_ms"


def residue(timings: pd.DataFrame) -> dict[str, float]:
    """Per workload: the median alone (``none``) inference right after a co-runner setting over the median alone
    inference after another alone one (or first), each relative to the workload's alone median; NaN where either
    kind is missing. A co-runner's residue (warm caches taken, stress-ng winding down, a lower clock) would read
    above 1. Over the 12 committed accounted runs (252 alone inferences, campaign_{accounted,base,paced}_nice-10)
    it read 1.000 after a co-runner against 1.004 after none (Mann-Whitney p = 0.82): none found, so the 200 ms
    pause without co-runner that already precedes every alone inference stands and no longer gap is added.
    NaN for a workload the settings' rotation never places after another alone inference (the second of two
    served workloads)."""
    none = timings[timings["setting"] == "none"]
    if none.empty or "after" not in none.columns:
        return {}
    col = _alone_time(none)
    out = {}
    for w, g in none.groupby("workload", sort=False):
        rel = g[col].to_numpy(float) / float(np.median(g[col]))
        co = g["after"].isin([s for s, *_ in SETTINGS if s != "none"]).to_numpy()
        out[str(w)] = (float(np.median(rel[co]) / np.median(rel[~co])) if co.any() and (~co).any()
                       else float("nan"))
    return out


def base_drift(timings: pd.DataFrame) -> dict[str, float]:
    """Per workload: the median alone inference ``after`` the requests over the median ``before`` them (CPU time
    where every row has it): how far the host's own speed moved across the run (NaN without both phases)."""
    none = timings[timings["setting"] == "none"]
    if none.empty or "phase" not in none.columns:
        return {}
    col = _alone_time(none)
    out = {}
    for w, g in none.groupby("workload", sort=False):
        b, a = (g.loc[g["phase"] == ph, col].to_numpy(float) for ph in ("before", "after"))
        out[str(w)] = float(np.median(a) / np.median(b)) if len(a) and len(b) else float("nan")
    return out


class _NoCoRunners:
    """No co-runners (a scenario without them): nothing to set, nothing ran."""

    def set_load(self, cpu: float, mem: float) -> None:
        pass


def base_trace(timings: pd.DataFrame, cpu_mhz: float, threads: int = 1) -> pd.DataFrame:
    """The edge's host trace (the quick fit's columns, :func:`bench.testbed.loop.quick_host_trace`) from the
    ``none`` setting of :func:`time_settings`: per workload the median of its thread CPU time (one torch
    thread), else of its wall clock; the wall-clock median beside it.

    These are the live run's own warm models, paced, timed seconds before its requests in the same rounds as
    the co-runner settings, so the twin's local time and its co-runner stretch share one baseline. The quick fit
    at the run's start timed other instances a minute earlier: in the idle campaign
    ``campaign_accounted_nice-10`` it read mobilenet_v2 at 41.5 ms CPU time where this setting, and then the
    live requests, read 31.1 and 31.3 ms, and the twin (41.5 ms x the stretch 2.33 = 96 ms against 65 ms live)
    was 42 % off."""
    none = timings[timings["setting"] == "none"]
    cpu_time = threads == 1 and "cpu_ms" in none.columns and bool(np.isfinite(none["cpu_ms"]).all()) and len(none)
    rows = []
    for w, g in none.groupby("workload", sort=False):
        fitted = g["cpu_ms" if cpu_time else "latency_ms"].to_numpy(dtype=float)
        rows.append({"workload": w, "latency_ms": float(np.median(fitted)),
                     "latency_p95_ms": float(np.percentile(fitted, 95)), "n_runs": int(len(g)),
                     "cpu_mhz": float(cpu_mhz), "error": "", "meter": "none", "power_w": float("nan"),
                     "latency_wall_ms": float(np.median(g["latency_ms"])),
                     "timed": "thread CPU time" if cpu_time else "wall clock"})
    return pd.DataFrame(rows)


def accounted(timings: pd.DataFrame) -> bool:
    """Whether the timings hold the CPU accounting (:func:`paired_stretch`): every inference's and co-runner's
    CPU time."""
    return {"cpu_ms", "corunner_cpu_ms"} <= set(timings.columns) and bool(
        np.isfinite(timings[["cpu_ms", "corunner_cpu_ms"]].to_numpy(dtype=float)).all()) and len(timings) > 0


def paired_stretch(timings: pd.DataFrame, wall: bool = False) -> pd.DataFrame:
    """Per workload and setting: the median over rounds of the inference's time with the setting's co-runner over
    its time alone in the same round; rounds without both are left out.

    With the CPU accounting (:func:`accounted`; ``wall=False``) the time with the co-runner is the inference's CPU
    time plus what the stressors ran meanwhile, and its time alone is its CPU time: on the one CPU both are pinned
    to, the inference's wall time is exactly its own CPU time + the stressors' + unrelated work's, so this leaves
    out only the unrelated load, whatever it does from one inference to the next. The wall-clock ratio (``wall``,
    or timings without the accounting) cancels only a load that stays put for a round: at 1-min load 13 its
    paired median read 1.79 for mobilenet_v2 while rounds with an undisturbed baseline read 2.2-2.4 (a burst
    inflated the baseline, not the stressed run, whose wait for the CPU the stressors already filled)."""
    if timings.empty or "round" not in timings.columns:
        return pd.DataFrame()
    cols = ["latency_ms"] if wall or not accounted(timings) else ["cpu_ms", "corunner_cpu_ms"]
    by = timings.groupby(["workload", "setting", "round"])[cols].median()
    own = by.sum(axis=1).unstack("setting")  # with the co-runner: own CPU + the stressors' (or the wall time)
    alone = by[cols[0]].unstack("setting")
    if "none" not in own.columns:
        return pd.DataFrame()
    ratio = own.div(alone["none"], axis=0)
    return ratio.groupby(level="workload").median()


def fit(timings: pd.DataFrame, tables, cpu_action: dict[str, int], cpu_level: float, mem_level: float,
        base) -> tuple[object, pd.DataFrame]:
    """(the interference model with this host's slowdowns, per-workload coefficients); see module docstring.

    ``tables`` are the twin's :class:`bench.sim.core.ActionTables`, ``cpu_action`` the local CPU action of each
    workload, ``base`` the shipped :class:`~bench.world.scenarios.InterferenceModel` (its other fields kept)."""
    # the time alone: its CPU time where accounted (the twin's t0 is CPU time too), else the wall clock
    med = timings.groupby(["workload", "setting"])["cpu_ms" if accounted(timings) else "latency_ms"].median().unstack()
    stretch = paired_stretch(timings)
    wall_stretch = paired_stretch(timings, wall=True)  # kept beside it for inspection
    how = ("stretch = median over rounds of (its CPU time + the stressors' meanwhile) / its CPU time alone"
           if accounted(timings) else "median paired wall-clock stretch")
    off_cpu = None
    if "cpu_ms" in timings.columns and timings["cpu_ms"].notna().any():
        share = (1.0 - timings["cpu_ms"] / timings["latency_ms"]).clip(0.0, 1.0)
        off_cpu = timings.assign(share=share).groupby(["workload", "setting"])["share"].median().unstack()
    rows = []
    for w, a in cpu_action.items():
        if w not in med.index:
            continue
        i = tables.workload_index(np.array([w]))[0]
        pre, pre_cpu, pre_mem = (float(x[i, a]) for x in (tables.pre_ms, tables.pre_cpu_ms, tables.pre_mem_ms))
        row = {"workload": w, "t0_ms": float(med.at[w, "none"])}
        for setting in wall_stretch.columns:
            if setting != "none" and w in wall_stretch.index:
                row[f"wall_stretch_{setting}"] = float(wall_stretch.at[w, setting])
        if off_cpu is not None and "none" in off_cpu.columns:
            row["off_cpu_share_none"] = float(off_cpu.at[w, "none"])
        for setting, level, share in (("cpu", cpu_level, pre_cpu / pre), ("mem", mem_level, pre_mem / pre)):
            # t0 x the paired stretch: the co-runner's effect with the background of each round cancelled
            t = (row["t0_ms"] * float(stretch.at[w, setting]) if setting in stretch.columns and w in stretch.index
                 and np.isfinite(stretch.at[w, setting]) else np.nan)
            row[f"t_{setting}_ms"] = t
            row[f"stretch_{setting}"] = t / row["t0_ms"] if np.isfinite(t) else np.nan
            if off_cpu is not None and setting in off_cpu.columns:
                row[f"off_cpu_share_{setting}"] = float(off_cpu.at[w, setting])
            ok = np.isfinite(t) and level > 0 and share > 0
            row[f"k_{setting}"] = max(t / row["t0_ms"] - 1.0, 0.0) / (level * share) if ok else np.nan
        # the time each load slows, at the measured speed (the simulator's shares of its own prediction)
        row["part_cpu_ms"], row["part_mem_ms"] = row["t0_ms"] * pre_cpu / pre, row["t0_ms"] * pre_mem / pre
        rows.append(row)
    per = pd.DataFrame(rows)
    values, sources = {}, dict(base.sources)
    together = _time_sliced(per, stretch, off_cpu, cpu_level, mem_level)
    if together is not None:
        k, n = together
        for field_, level in (("cpu_slowdown", cpu_level), ("mem_slowdown", mem_level)):
            values[field_] = float(np.clip(k / level, 0.0, 100.0))
            sources[field_] = (f"measured: this host, both stress-ng stressors at once (cpu {cpu_level:.2f}, mem "
                               f"{mem_level:.2f}, duty-cycled on the edge's CPUs) as the live run meets them, single "
                               f"inferences paced at the inter-arrival time and alternated with no co-runner ({how}); "
                               f"the co-runners take the inference's CPU, so every part stretches "
                               f"alike: least-squares k of (t - t0) = k x (cpu- + mem-sensitive time) over {n} "
                               f"workload(s), {field_} = k / {level:.2f} (exact at these levels; "
                               f"bench/testbed/hostload.py)")
        return _finish(base, values, sources), per
    for setting, field_, level in (("cpu", "cpu_slowdown", cpu_level), ("mem", "mem_slowdown", mem_level)):
        d = per[per[f"t_{setting}_ms"].notna()] if len(per) and f"t_{setting}_ms" in per else per.iloc[0:0]
        x = level * d[f"part_{setting}_ms"].to_numpy(dtype=float) if len(d) else np.zeros(0)
        y = (d[f"t_{setting}_ms"] - d["t0_ms"]).to_numpy(dtype=float) if len(d) else np.zeros(0)
        if level > 0 and len(d) and float(x @ x) > 0:
            values[field_] = float(np.clip((x @ y) / (x @ x), 0.0, 100.0))
            sources[field_] = (f"measured: this host, stress-ng {setting} stressor duty-cycled at load {level:.2f} on "
                               f"the edge's CPUs, single inferences paced at the inter-arrival time and alternated "
                               f"with no co-runner ({how}); least-squares k of (t - t0) = k x load x "
                               f"{setting}-sensitive time over {len(d)} workload(s) (bench/testbed/hostload.py)")
        else:
            values[field_] = 0.0
            sources[field_] = (f"not measured: the scenario has no {setting} co-runner load, so the coefficient "
                               "never multiplies a nonzero load")
    return _finish(base, values, sources), per


def _time_sliced(per: pd.DataFrame, stretch: pd.DataFrame, off_cpu, cpu_level: float,
                 mem_level: float) -> tuple[float, int] | None:
    """(k, workloads) of the both-at-once rule (module docstring), its measurements added to ``per``; None
    where the scenario setting was not measured (one of the loads is zero)."""
    if not (cpu_level > 0 and mem_level > 0) or "scenario" not in stretch.columns or per.empty:
        return None
    t, x = [], []
    for i, row in per.iterrows():
        w = row["workload"]
        st = float(stretch.at[w, "scenario"]) if w in stretch.index else np.nan
        per.loc[i, "t_scenario_ms"] = row["t0_ms"] * st
        per.loc[i, "stretch_scenario"] = st
        if off_cpu is not None and "scenario" in off_cpu.columns:
            per.loc[i, "off_cpu_share_scenario"] = float(off_cpu.at[w, "scenario"])
        if np.isfinite(st):
            t.append(row["t0_ms"] * (st - 1.0))
            x.append(row["part_cpu_ms"] + row["part_mem_ms"])
    x, t = np.asarray(x, dtype=float), np.asarray(t, dtype=float)
    if not len(x) or float(x @ x) <= 0:
        return None
    return max(float((x @ t) / (x @ x)), 0.0), len(x)


def _finish(base, values: dict, sources: dict):
    for field_ in ("cpu_power_w", "mem_power_w"):
        values[field_] = 0.0
        sources[field_] = ("assumed: no energy meter on this host measured the co-runner's extra power "
                           "(the phone's constant does not carry over to an x86 package)")
    return dataclasses.replace(base, sources=sources, **values)


def provenance(rounds: int, gap_s: float, load_before: tuple[float, ...], nice: int, cpus) -> dict:
    """When, under what load and by what command the coefficients were measured (stored with them)."""
    import datetime
    import os
    import shlex
    import sys

    return {"measured_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "loadavg_1min_before": round(float(load_before[0]), 2),
            "loadavg_1min_after": round(float(os.getloadavg()[0]), 2),
            "command": shlex.join([os.path.basename(sys.executable), *sys.argv]),
            "niceness": int(nice), "edge_cpus": [int(c) for c in cpus], "rounds": int(rounds),
            "gap_ms": round(float(np.clip(gap_s, 0.0, MAX_GAP_S)) * 1e3, 3),
            "method": "single inferences paced at the inter-arrival time, settings alternated, CPU-accounted paired "
                      "stretch (bench/testbed/hostload.py)"}


def write(path: Path, model, per: pd.DataFrame, levels: tuple[float, float], prov: dict | None = None) -> Path:
    """The model in ``_model.yaml``'s format (loadable by :func:`read`), with the per-workload measurements and
    where given their provenance (:func:`provenance`)."""
    fields_ = ("cpu_slowdown", "mem_slowdown", "accel_cpu_coupling", "cpu_power_w", "mem_power_w", "gpu_slowdown")
    doc = {"interference_model": {f: {"value": float(getattr(model, f)), "source": str(model.sources.get(f, ""))}
                                  for f in fields_},
           "apps": {name: {"cpu": float(c), "mem": float(m), "gpu": float(g),
                           "source": str(model.sources.get(f"apps.{name}", "data/scenarios/_model.yaml"))}
                    for name, (c, m, g) in model.apps.items()},
           "measured_at": {"cpu_load": levels[0], "mem_load": levels[1], **(prov or {})},
           "per_workload": per.round(6).to_dict(orient="records")}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def read(path: Path):
    """An interference model written by :func:`write` (validated like ``_model.yaml``)."""
    from bench.validate import read_yaml
    from bench.world.scenarios import ScenarioError, interference_model_from_dict

    raw = read_yaml(path, ScenarioError, Path(path).name)
    return interference_model_from_dict({k: raw[k] for k in ("interference_model", "apps") if k in raw},
                                        Path(path).name)
