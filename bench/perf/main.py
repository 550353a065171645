"""``python -m bench perf``: speed and training cost of the suite, beside Stable-Baselines3.

One table (also ``--json``), saved with the machine's details to ``results/perf.json``
(``--out``) and rendered into README's "Performance" section by ``python -m bench readme``:

* vectorised simulator decisions/s on one core, one gym step (µs), peak memory
  (:mod:`bench.perf.sim`);
* ``act`` latency of AutoScale and of DVFO on CPU (p50 / p99 µs) and the share of
  DVFO's decision time hidden by thinking-while-moving
  (:mod:`bench.perf.autoscale`, :mod:`bench.perf.dvfo`);
* per env, our learner and SB3 DQN / PPO trained with the same env-step budget,
  seed and training scenarios, measured on the declared objective (E + λ·misses)
  against the certified hindsight bound and the best schedule found on the same
  evaluation episodes: env steps and training wall time until within 10% of the
  best found, final gap to the bound and to the best found, headroom captured
  against the best static action per DNN, QoS violations, whole-budget wall time,
  peak memory (:mod:`bench.perf.learn`);
* CPU overhead of the power sampler at 100 Hz (:mod:`bench.perf.sampler`);
* time of the hindsight bound on one 1,000-request episode per suite (:mod:`bench.perf.bound`).

Simulator, gym-step and vector-env timings are process CPU time, the best of ``repeats`` (the gym
step also its median: the machine is shared, and CPU time of the least disturbed repeat is what one
core delivers); the other timings are medians over ``repeats``; training figures are medians over
``train_seeds`` seeds (one by default). Training runs first, in ``workers``
processes (one per core by default, one fresh process per run, so each run's peak
RSS is its own); the micro-benchmarks run after, alone. ``--quick`` is a
seconds-long smoke run (tiny budgets; its numbers mean little).
Without the optional ``perf`` dependency group (``pip install -e .[perf]``) the SB3
columns read "not installed".
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from bench.paths import RESULTS_DIR
from hw.atomic import atomic_write_text

COLUMNS = ("measure", "ours", "goal", "sb3_dqn", "sb3_ppo", "note")
DEFAULT_OUT = RESULTS_DIR / "perf.json"


@dataclass(frozen=True)
class Settings:
    """Sizes of the benchmark. The default fits in 5 minutes on 2 cores; see :meth:`quick`."""

    budget_autoscale: int = 150_000
    """Env steps of every learner on AutoScale-v0 (params.yaml trains 300,000; halved to fit 5 minutes)."""
    budget_dvfo: int = 30_000
    """Env steps of every learner on DVFO-v0 (params.yaml trains 100,000; cut to fit 5 minutes)."""
    eval_every_autoscale: int = 2_500
    """Env steps between greedy evaluations (gap to the bound and the best found) on AutoScale-v0: the resolution of
    "env steps until within 10%" (fine enough to tell 1/5 of SB3's steps apart)."""
    eval_every_dvfo: int = 1_500
    """Env steps between greedy evaluations on DVFO-v0."""
    eval_seeds: int = 2
    """Evaluation episodes per training scenario (seeds derived for perf, never used in training)."""
    eval_steps: int = 250
    """Requests per evaluation episode."""
    target_gap: float = 0.10
    """'Within 10% of the best found': J / J_best_found - 1 at most this (J = E + λ·misses, the declared objective)."""
    train_seeds: int = 1
    """Training seeds per (env, learner); the table shows medians over them."""
    repeats: int = 5
    """Repeats of every timing; the table shows the best (simulator, gym step, vector envs) or the median."""
    sim_batch: int = 50_000
    """Requests per vectorised simulator call (independent rows)."""
    queue_episodes: int = 2_500
    """Episodes stepped in lock-step by the batch path with the queue (one numpy call per operation for all)."""
    queue_steps: int = 200
    """Requests per lock-step episode (the envs' episode length)."""
    gym_steps: int = 2_000
    """Env steps per gym-step timing."""
    vec_sizes: tuple[int, ...] = (1, 16, 256)
    """Copies N of the vector-env throughput measurement (gymnasium.make_vec, one batch call per step)."""
    vec_steps: int = 40_000
    """Env steps (over all copies, at least 20 vector steps) per vector-env timing."""
    act_obs: int = 5_000
    """Observations per act() timing pass."""
    hidden_steps: int = 500
    """Requests per thinking-while-moving run."""
    sampler_seconds: float = 1.0
    """Seconds per sampler-overhead window (one with, one without the sampler, per repeat)."""
    sampler_rate_hz: float = 100.0
    """Sampling rate of the overhead measurement."""
    workers: int = 0
    """Processes for the training runs; 0 = one per core, 1 = in this process."""
    engine_cells: int = 24
    """Evaluation cells per engine-scaling measurement (1 and 2 Dask workers); 0 skips it."""
    engine_steps: int = 200
    """Requests per cell in the engine-scaling measurement."""
    bound_steps: int = 1000
    """Requests of the episode the hindsight bound is timed on (goal: <= 2 s at 1,000)."""

    @classmethod
    def quick(cls, **overrides) -> "Settings":
        """Tiny budgets (seconds): a smoke test of the whole benchmark, not a measurement."""
        # vec_steps too (issue 25): the default's 40,000 env steps per vector-env timing ran the N = 1 copy at
        # ~4,000 steps/s, ~20 CPU-s of the quick run's ~46 (tests/test_perf.py); 2,000 still times every size
        # (N = 256 at the floor of 20 vector steps, 5,120 env steps)
        base = dict(budget_autoscale=2048, budget_dvfo=2048, eval_every_autoscale=1024, eval_every_dvfo=1024,
                    eval_seeds=1, eval_steps=30, repeats=1, sim_batch=2_000, queue_episodes=50, queue_steps=20, gym_steps=200, act_obs=300,
                    hidden_steps=50, sampler_seconds=0.2, workers=1, engine_cells=0, bound_steps=60, vec_steps=2_000)
        base.update(overrides)
        return cls(**base)


# --------------------------------------------------------------------------- machine

def vector_isa() -> str | None:
    """The widest x86 vector extension the CPU reports (``/proc/cpuinfo`` flags; None elsewhere): numpy's kernels
    dispatch on it, so the simulator's numbers depend on it."""
    try:
        flags = next((ln.split(":", 1)[1].split() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("flags")), [])
    except OSError:
        return None
    return next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"),
                                         ("sse4_2", "SSE4.2")) if flag in flags), None)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    from hw.provenance import cpu_model, git_revision, library_versions

    cpu = cpu_model()
    versions = library_versions(["torch", "numpy", "gymnasium", "stable-baselines3"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"cpu": cpu, "vector_isa": vector_isa(), "cores": cores, "python": versions.pop("python"), "torch": versions.pop("torch"),
            "numpy": versions["numpy"], "gymnasium": versions["gymnasium"],
            "stable_baselines3": versions["stable-baselines3"], "os": platform.platform(),
            "date": _dt.date.today().isoformat(), "git_revision": git_revision(),
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


# --------------------------------------------------------------------------- training runs

def _jobs(settings: Settings, root_seed: int, learners: Sequence[str], save_root: Path) -> list:
    from bench.perf.learn import Job
    from bench.seeding import derive_seed, derive_seeds

    jobs = []
    for env in ("autoscale", "dvfo"):
        budget = settings.budget_autoscale if env == "autoscale" else settings.budget_dvfo
        every = settings.eval_every_autoscale if env == "autoscale" else settings.eval_every_dvfo
        eval_seeds = tuple(derive_seeds(root_seed, settings.eval_seeds, "perf", "eval", env))
        for k in range(settings.train_seeds):
            seed = derive_seed(root_seed, "perf", "train", env, str(k))  # the same seed for every learner
            for learner in learners:
                save = str(save_root / f"{env}_{k}") if learner == "ours" else None
                jobs.append(Job(env, learner, budget, seed, every, eval_seeds, settings.eval_steps,
                                settings.target_gap, save))
    # longest first (SB3 on AutoScale), so two workers finish together
    cost = {("autoscale", "ours"): 1, ("dvfo", "ours"): 4, ("dvfo", "dqn"): 3, ("dvfo", "ppo"): 3,
            ("autoscale", "dqn"): 4, ("autoscale", "ppo"): 4}
    return sorted(jobs, key=lambda j: -cost.get((j.env, j.learner), 1) * j.budget)


def run_training(jobs: list, workers: int) -> list[dict[str, Any]]:
    """Every job, in ``workers`` fresh processes (0 = one per core; 1 = here), results in job order."""
    from bench.perf.learn import run_job

    workers = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if workers <= 1:
        return [run_job(j) for j in jobs]
    ctx = multiprocessing.get_context("spawn")  # a clean process per run: its own peak RSS, no forked torch state
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1) as pool:
        return list(pool.map(run_job, jobs))


def _median_or_none(values: Sequence[float | None]) -> float | None:
    """Median where a missing value (target never met) counts as +inf; None if the median is missing."""
    vals = [math.inf if v is None else float(v) for v in values]
    if not vals:
        return None
    m = statistics.median(vals)
    return None if math.isinf(m) else m


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """{env: {learner: medians over seeds of the training figures}}."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    from bench.perf.learn import FINAL_KEYS

    keys = ("steps_to_target", "wall_s_to_target", "cpu_s_to_target", *(f"final_{k}" for k in FINAL_KEYS),
            "train_wall_s", "train_cpu_s", "env_steps", "max_rss_mib")
    for r in runs:
        out.setdefault(r["env"], {}).setdefault(r["learner"], {"runs": []})["runs"].append(r)
    for env in out.values():
        for entry in env.values():
            rs = entry.pop("runs")
            entry.update({k: _median_or_none([r.get(k) for r in rs]) for k in keys})
            entry["reached"] = sum(r.get("steps_to_target") is not None for r in rs)
            entry["n_seeds"] = len(rs)
            if "hyperparameters" in rs[0]:
                entry["hyperparameters"] = rs[0]["hyperparameters"]
            entry["yardstick"] = rs[0].get("yardstick")  # the evaluation episodes' references (same for every learner)
    return out


# --------------------------------------------------------------------------- micro-benchmarks

def micro(settings: Settings, save_root: Path, root_seed: int) -> dict[str, Any]:
    """Simulator, act() and sampler timings (alone on the machine: run after the training pool)."""
    from bench.perf.sim import measure
    from bench.policies.autoscale import AutoScaleLearner
    from bench.policies.dvfo import DVFOLearner, hidden_decision_share
    from bench.policies.dvfo import make_env as dvfo_env
    from bench.perf.autoscale import act_latency_us as as_act
    from bench.perf.dvfo import act_latency_us as dvfo_act
    from bench.seeding import derive_seed
    from bench.perf.sampler import sampler_overhead

    r = settings.repeats
    seed = derive_seed(root_seed, "perf", "micro")
    out: dict[str, Any] = {"sim": measure(settings.sim_batch, "random_walk", r, seed, settings.gym_steps,
                                          settings.vec_sizes, settings.vec_steps, settings.queue_episodes,
                                          settings.queue_steps)}
    as_learner = AutoScaleLearner.load(save_root / "autoscale_0")
    out["autoscale_act"] = as_act(as_learner, settings.act_obs, seed, repeats=r)
    dvfo = DVFOLearner.load(save_root / "dvfo_0")
    env = dvfo_env(dvfo.config, dvfo.config.scenarios[-1])
    out["dvfo_act"] = dvfo_act(dvfo, env, n=settings.act_obs, seed=seed, repeats=r)
    shares = [hidden_decision_share(dvfo, env, settings.hidden_steps, seed=seed + i) for i in range(r)]
    out["dvfo_hidden"] = {k: statistics.median(s[k] for s in shares) for k in shares[0]}
    env.close()
    out["sampler"] = sampler_overhead(settings.sampler_seconds, settings.sampler_rate_hz, r)
    from bench.perf.bound import measure as bound_measure

    out["bound"] = bound_measure(settings.bound_steps, r, seed)
    if settings.engine_cells:
        from bench.perf.engine import measure as engine_measure

        out["engine"] = engine_measure(settings.engine_cells, settings.engine_steps, root_seed=seed)
    return out


# --------------------------------------------------------------------------- the table

def _num(v: float | None, fmt: str, missing: str = "not reached") -> str:
    return missing if v is None else fmt.format(v)


def _gaps(entry: dict) -> str:
    """'gap to the bound / gap to the best found (violations)' of one learner's final evaluation."""
    return (f"{_num(entry.get('final_gap_to_bound'), '{:+.1%}', 'n/a')} / "
            f"{_num(entry.get('final_gap_to_best_found'), '{:+.1%}', 'n/a')} "
            f"({_num(entry.get('final_qos_violation'), '{:.1%}', 'n/a')} viol.)")


def _captured(entry: dict) -> str:
    """'headroom captured against the bound / against the best found' (undefined: no headroom)."""
    return (f"{_num(entry.get('final_headroom_captured'), '{:.2f}', 'undefined')} / "
            f"{_num(entry.get('final_headroom_captured_found'), '{:.2f}', 'undefined')}")


def _no_room(y: dict | None, threshold: float) -> bool:
    """The evaluation episodes are marked "no room for learning" (:func:`bench.pipeline.breakdown.room_flag`)."""
    from bench.pipeline.breakdown import NO_ROOM, room_flag

    return bool(y) and room_flag(y.get("headroom"), y.get("headroom_found"), threshold) == NO_ROOM


def _yardstick_note(y: dict | None, threshold: float) -> str:
    """The evaluation episodes' references in words (per request, on the objective)."""
    if not y:
        return "no yardstick"
    from bench.pipeline.breakdown import NO_ROOM, room_flag

    h, hf = y.get("headroom"), y.get("headroom_found")
    flag = room_flag(h, hf, threshold)
    words = {NO_ROOM: f"no room for learning (headroom < {threshold:.0%})", None: "room unknown"}
    return (f"J per request: certified bound {y['bound_objective_mj']:.1f} mJ, best schedule found "
            f"{y['best_found_objective_mj']:.1f}, {y['static_policy']} {y['static_objective_mj']:.1f} "
            f"({y['static_qos_violation']:.1%} viol.); headroom 1 − J_bound / J_static = "
            f"{_num(h, '{:.1%}', 'n/a')} (best found: {_num(hf, '{:.1%}', 'n/a')}): "
            f"{words.get(flag, flag)}")


def _headroom_threshold() -> float:
    """params.yaml's evaluate.headroom_threshold (the 'no room for learning' line of the evaluate stage)."""
    from bench.config import load_params

    return float(load_params().evaluate.headroom_threshold)


def build_table(m: dict[str, Any], training: dict[str, dict[str, dict]], settings: Settings,
                sb3_note: str, sb3_version: str | None = None) -> list[dict[str, Any]]:
    """The rows of the Performance table (strings, formatted from the raw numbers)."""
    sb3_label = (f"SB3 {sb3_version} DQN / PPO: defaults, our discount, VecNormalize'd observations, same seed, "
                 f"budget and scenarios" if sb3_version else f"SB3 {sb3_note}")
    sim, a_act, d_act, hid, smp = m["sim"], m["autoscale_act"], m["dvfo_act"], m["dvfo_hidden"], m["sampler"]
    threshold = _headroom_threshold()

    def row(measure, ours, goal="—", dqn="—", ppo="—", note=""):
        return dict(zip(COLUMNS, (measure, ours, goal, dqn, ppo, note)))

    def met(ok: bool) -> str:
        return "goal met" if ok else "goal not met"

    g_as, g_dv = sim["gym"]["autoscale"], sim["gym"]["dvfo"]
    vec = sim["vector_steps_per_s"]
    sizes = sim["vector_sizes"]
    rows = [
        row("Batch simulator, decisions/s (one core)", f"{sim['lean_decisions_per_s']:,.0f}", "≥ 2,000,000",
            note=f"{met(sim['lean_decisions_per_s'] >= 2e6)}; batch path with the queue, end to end "
                 f"({sim.get('queue_episodes', 0):,} episodes x {sim.get('queue_steps', 0)} requests in lock-step, queue, "
                 f"radio and thermal state carried, per-request inputs computed in the call; with them precomputed, "
                 f"as the vector envs do at reset: {sim.get('kernel_decisions_per_s', float('nan')):,.0f}/s), "
                 f"{sim.get('timing', 'median wall time')}, AutoScale system, {sim['n_actions']} actions; independent rows "
                 f"(batch {sim['batch']:,}), full batch path with the per-phase "
                 f"ledger arrays: {sim['decisions_per_s']:,.0f}/s; all actions per request: "
                 f"{sim['decisions_per_s_all_actions']:,.0f}/s; greedy oracle: {sim['oracle_requests_per_s']:,.0f} requests/s"),
        row("Batch simulator, bytes moved per decision / share of the core's bandwidth",
            f"{sim['bytes_per_decision']:,.0f} B / {sim['bandwidth_fraction']:.0%}", "—",
            note=f"every numpy operation's inputs + output, counted on one call; bandwidth: numpy triad on "
                 f"arrays beyond the caches, {sim['stream_bandwidth_gb_s']:.1f} GB/s"
                 + (" (above 100%: the batch's temporaries partly stay in cache)" if sim["bandwidth_fraction"] > 1
                    else "") + "; at this many bytes the "
                 f"bandwidth alone caps the rate at {sim['stream_bandwidth_gb_s'] * 1e9 / sim['bytes_per_decision']:,.0f}"
                 f" decisions/s"),
        row("One gym step, AutoScale-v0 (µs)", f"{g_as['step_us']:.1f}", "≤ 10",
            note=f"{met(g_as['step_us'] <= 10)}; median of repeats, process CPU time, best repeat {g_as['step_us_best']:.1f} µs; "
                 f"scalar step (the kernel's source specialised to Python scalars), "
                 f"random actions, gym.make wrappers incl. TimeLimit; reset {g_as['reset_ms']:.1f} ms apart ({g_as['step_us_with_resets']:.1f} µs per step "
                 f"with resets over 200-step episodes)"),
        row("One gym step, DVFO-v0 (µs)", f"{g_dv['step_us']:.1f}", "≤ 20",
            note=f"{met(g_dv['step_us'] <= 20)}; best repeat {g_dv['step_us_best']:.1f} µs; as above; reset {g_dv['reset_ms']:.1f} ms "
                 f"({g_dv['step_us_with_resets']:.1f} µs per step with resets)"),
    ]
    for k, label in (("autoscale", "AutoScale-v0"), ("dvfo", "DVFO-v0")):
        rows.append(row(f"Vector env {label}, env steps/s for N = {' / '.join(map(str, sizes))}",
                        " / ".join(f"{vec[f'{k}_{nv}']:,.0f}" for nv in sizes), "reported",
                        note="gymnasium.make_vec (vector_entry_point): N copies per batch call, autoresets "
                             "included, random actions"))
    rows += [
        row("AutoScale act, p50 / p99 (CPU µs)", f"{a_act['p50_us']:.2f} / {a_act['p99_us']:.2f}", "≤ 5 µs median",
            note=f"{met(a_act['p50_us'] <= 5)}; trained table, observations from training envs; per-call thread "
                 f"CPU time net of the clock's own {a_act['clock_cost_us']:.2f} µs, median of {settings.repeats} "
                 f"passes; wall time {a_act['wall_p50_us']:.2f} / {a_act['wall_p99_us']:.2f} µs (clock included; "
                 f"an upper bound under load)"),
        row("DVFO act on CPU, p50 / p99 (CPU µs)", f"{d_act['act_us_p50']:.1f} / {d_act['act_us_p99']:.1f}",
            "≤ 500 µs median", note=f"{met(d_act['act_us_p50'] <= 500)}; one observation, 1 torch thread; per-call "
                                    f"thread CPU time net of the clock's own {d_act['clock_cost_us']:.2f} µs; wall "
                                    f"time {d_act['act_us_wall_p50']:.1f} / {d_act['act_us_wall_p99']:.1f} µs (an "
                                    f"upper bound under load)"),
        row("DVFO decision time hidden by concurrent control", f"{hid['share_hidden']:.1%}",
            note=f"thinking-while-moving: exposed {hid['exposed_us_sequential_mean']:.0f} µs sequential -> "
                 f"{hid['exposed_us_concurrent_mean']:.1f} µs concurrent per request; decision times in wall time (the latency a controller sees is the "
                 f"point), medians of {settings.repeats} runs: under load they are upper bounds, so the share hidden "
                 f"is a lower bound"),
    ]
    for env, label in (("autoscale", "AutoScale-v0"), ("dvfo", "DVFO-v0")):
        t = training.get(env, {})
        ours = t.get("ours")
        sb3 = {a: t.get(a) for a in ("dqn", "ppo")}
        budget = settings.budget_autoscale if env == "autoscale" else settings.budget_dvfo

        def cells(key, fmt, missing="not reached"):
            vals = [None if e is None else _num(e[key], fmt, missing) for e in (ours, sb3["dqn"], sb3["ppo"])]
            return [sb3_note if v is None else v for v in vals]

        def beats(key, factor: float = 1.0) -> str:
            best = [e[key] for e in sb3.values() if e is not None and e[key] is not None]
            if ours is None or not any(e is not None for e in sb3.values()):
                return "no SB3 comparison"
            if ours[key] is None:
                return met(False)
            if not best:
                return met(True) + " (SB3 never reached it)"
            ratio = min(best) / ours[key] if ours[key] else math.inf
            return met(ours[key] * factor <= min(best) if factor > 1 else ours[key] < min(best)) + \
                f" (best SB3 / ours = {ratio:.2f}x)"

        every = settings.eval_every_autoscale if env == "autoscale" else settings.eval_every_dvfo
        yard = next((e.get("yardstick") for e in (ours, sb3["dqn"], sb3["ppo"]) if e and e.get("yardstick")), None)
        lam = f"λ = {yard['violation_cost_mj']:g} mJ" if yard else "λ from params.yaml"
        o, d, p = cells("steps_to_target", "{:,.0f}")
        rows.append(row(f"{label}: env steps until within {settings.target_gap:.0%} of the best schedule found "
                        f"(objective)", o, "≤ 1/5 of best SB3", d, p,
                        note=f"{beats('steps_to_target', 5.0)}; J / J_best_found − 1 ≤ {settings.target_gap:g} with "
                             f"J = E + λ·misses ({lam}) and J_best_found the best schedule the hindsight search found "
                             f"for the same evaluation episodes (the best found, not the certified bound: no schedule "
                             f"need reach the bound); budget {budget:,} steps, evaluated every {every:,}; {sb3_label}"))
        o, d, p = cells("cpu_s_to_target", "{:.1f}")
        wall_o, wall_d, wall_p = cells("wall_s_to_target", "{:.1f}")
        rows.append(row(f"{label}: training time until within {settings.target_gap:.0%} (CPU s)", o,
                        "less than best SB3", d, p,
                        note=f"{beats('cpu_s_to_target')}; process CPU time of each run's own process (ours and SB3's "
                             f"alike, in the same run), evaluation time excluded; wall time {wall_o} / {wall_d} / "
                             f"{wall_p} s (ours / DQN / PPO; it also counts other jobs on a shared machine)"))
        o, d, p = [sb3_note if e is None else _gaps(e) for e in (ours, sb3["dqn"], sb3["ppo"])]
        rows.append(row(f"{label}: final gap to the certified bound / to the best schedule found (objective)", o, "—",
                        d, p, note=f"after the whole budget; J / J_ref − 1 on {settings.eval_seeds} evaluation "
                                   f"episode(s) of {settings.eval_steps} requests per training scenario, never trained "
                                   f"on (docs/bound.md); " + _yardstick_note(yard, threshold)))
        # as the evaluate stage: no learner is ranked on episodes with no room for learning (a share of a near-zero
        # headroom is noise); the values stay in the JSON (raw.training)
        no_room = _no_room(yard, threshold)
        o, d, p = [sb3_note if e is None else ("n/a (no room)" if no_room else _captured(e))
                   for e in (ours, sb3["dqn"], sb3["ppo"])]
        rows.append(row(f"{label}: final headroom captured, against the bound / the best found", o, "—", d, p,
                        note="(J_static − J) / (J_static − J_ref), J_static = the best static action per DNN fitted "
                             "on the same episodes (as the evaluate stage); 1 = reaches the reference, 0 = no better "
                             "than the static choice, < 0 = worse; the bound's end is conservative, the best "
                             "found's optimistic" + ("; not shown: these episodes leave no room for learning (headroom "
                                                    f"< {threshold:.0%}), so the share is not a ranking; the values "
                                                    "are in results/perf.json" if no_room else "")))
        o, d, p = cells("train_cpu_s", "{:.1f}")
        wall_o, wall_d, wall_p = cells("train_wall_s", "{:.1f}")
        rows.append(row(f"{label}: training time, whole budget (CPU s)", o, "—", d, p,
                        note="process CPU time, evaluation excluded; wall time "
                             f"{wall_o} / {wall_d} / {wall_p} s; env steps: "
                             + " / ".join(_num(e["env_steps"], "{:,.0f}", "-") if e else "-"
                                          for e in (ours, sb3["dqn"], sb3["ppo"]))))
        o, d, p = cells("max_rss_mib", "{:.0f}")
        rows.append(row(f"{label}: peak memory while training (MiB, max RSS)", o, "—", d, p,
                        note="whole process incl. torch" if settings.workers != 1 else
                             "in-process run: max RSS of the shared process"))
    rows.append(row("Peak memory, simulator batch (MiB traced)", f"{sim['peak_traced_mib']:.0f}",
                    note=f"all {sim['n_actions']} actions of {sim['batch']:,} requests + greedy oracle"))
    rows.append(row(f"Sampler overhead at {smp['rate_hz']:g} Hz (% of one core)", f"{smp['overhead_pct']:.2f}",
                    "≤ 1", note=f"{met(smp['overhead_pct'] <= 1.0)}; "
                    f"meter: {smp['meter']}; {smp['samples_per_s']:.0f} samples/s achieved; "
                    + (f"the sampling thread's own CPU time per second of wall time (its CPU clock), median of "
                       f"{smp['repeats']} windows of {smp['seconds']:g} s; process CPU with the sampler minus without "
                       f"(a baseline next to each window, which also carries the other threads' noise): "
                       f"{smp['overhead_pct_process']:.2f}%" if smp.get("clock") == "thread" else
                       f"process CPU time per second of wall time with the sampler minus without (a baseline next to "
                       f"each window), median of {smp['repeats']} windows of {smp['seconds']:g} s")))
    bnd = m.get("bound")
    if bnd:
        for kind, label in (("autoscale", "AutoScale-v0 (phone)"), ("dvfo", "DVFO-v0 (Jetson)")):
            b = bnd[kind]
            # judged on CPU time: the wall time of a shared machine also counts the other jobs holding the core
            cpu = b.get("cpu_seconds", b["seconds"])
            rows.append(row(f"Hindsight bound, one {bnd['n_steps']:,}-request episode, {label} (CPU s)",
                            f"{cpu:.2f}", "≤ 2",
                            note=f"{met(cpu <= 2.0)}; wall time {b['seconds']:.2f} s (it also counts other jobs on a "
                                 f"shared machine); {b['scenario']}: certified lower bound "
                                 f"{b['lower_lagrangian'] / b['requests']:.1f} mJ/inference, best schedule found "
                                 f"{b['upper_lagrangian'] / b['requests']:.1f} (gap {b['gap_lagrangian']:+.1%}, "
                                 f"objective E + {bnd['violation_cost_mj']:g} mJ × misses; docs/bound.md)"))
    eng = m.get("engine")
    if eng:
        est = eng["estimate_100k_cells_100_workers"]
        rows.append(row("Sweep engine (Dask, local cluster): cells/s with 1 / 2 workers",
                        f"{eng['cells_per_s_1_workers']:.1f} / {eng['cells_per_s_2_workers']:.1f}",
                        note=f"wall time (parallel scaling is the point; under load an upper bound and the "
                             f"speedup a lower bound); speedup {eng['speedup_2_vs_1']:.2f}x; scheduler overhead "
                             f"{eng['scheduler_s_per_task'] * 1e3:.2f} ms per task; result "
                             f"{eng['result_bytes_per_cell'] / 1024:.0f} KiB per cell ({eng['steps_per_cell']} requests)"))
        rows.append(row("Sweep of 100,000 cells on 100 workers (estimate, min)", f"{est['total_s'] / 60:.1f}",
                        note=f"bottleneck: {est['bottleneck']}; compute {est['compute_s'] / 60:.1f} min, scheduler "
                             f"{est['scheduler_s'] / 60:.1f} min, gathering {est['gather_s'] / 60:.1f} min "
                             f"(assumed: {est['assumed']})"))
    return rows


def run(settings: Settings, root_seed: int, with_sb3: bool = True) -> dict[str, Any]:
    """The whole benchmark: training runs, then micro-benchmarks; the JSON document."""
    from bench.perf.learn import sb3_available

    t0 = time.perf_counter()
    machine = machine_info()
    sb3_version = sb3_available() if with_sb3 else None
    learners = ["ours"] + (["dqn", "ppo"] if sb3_version else [])
    sb3_note = "not installed" if with_sb3 and not sb3_version else "skipped"
    with tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp:
        save_root = Path(tmp)
        t_train = time.perf_counter()
        runs = run_training(_jobs(settings, root_seed, learners, save_root), settings.workers)
        train_s = time.perf_counter() - t_train
        training = summarise_runs(runs)
        m = micro(settings, save_root, root_seed)
    table = build_table(m, training, settings, sb3_note, sb3_version)
    machine["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    gammas = {"autoscale": "AutoScale discount", "dvfo": "DVFO gamma"}
    doc_settings = {
        **dataclasses.asdict(settings), "root_seed": root_seed,
        "learners": "ours = params.yaml train.<learner> config with total_steps = the budget",
        "target": f"objective J = E + λ·misses within {settings.target_gap:.0%} of the best schedule found "
                  f"(J / J_best_found - 1 <= {settings.target_gap:g}), greedy, on every training scenario x eval seeds",
        "sb3": {"version": sb3_version, "algorithms": ["DQN", "PPO"] if sb3_version else [], "policy": "MlpPolicy",
                "device": "cpu", "torch_threads": 1,
                "hyperparameters": "SB3 defaults; gamma = our learner's (" + ", ".join(gammas.values()) + "); "
                                   "VecNormalize(norm_obs=True, norm_reward=False)",
                "per_run": {f"{env}/{a}": e.get("hyperparameters") for env, t in training.items()
                            for a, e in t.items() if a != "ours"},
                "scenarios": "ScenarioCycle: one training scenario per episode, the same episode seeds as ours",
                "note": None if sb3_version else sb3_note},
        "training_wall_s": train_s, "total_wall_s": time.perf_counter() - t0,
    }
    return {"machine": machine, "settings": doc_settings, "table": table,
            "raw": {"micro": m, "training": training, "runs": runs}}


#: micro-benchmark entries that ``--remeasure`` can redo alone (none of them needs the trained learners)
REMEASURABLE = ("sim", "sampler", "bound", "engine")


def remeasure(doc: dict[str, Any], names: Sequence[str], root_seed: int) -> dict[str, Any]:
    """``doc`` (a saved run) with the micro-benchmark entries ``names`` measured again on today's code, in this
    process, with the run's own settings, and its table rebuilt from the stored raw figures. The training rows
    and every other entry stay the run's; ``machine.remeasured`` records, per entry, when, at which revision and
    under which load it was measured (the rendered header says so)."""
    from hw.provenance import cpu_model, git_revision

    unknown = [n for n in names if n not in REMEASURABLE]
    if unknown:
        raise ValueError(f"cannot remeasure {unknown}; allowed: {', '.join(REMEASURABLE)}")
    fields = {f.name for f in dataclasses.fields(Settings)}
    stored = doc["settings"]
    settings = Settings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in stored.items() if k in fields})
    seed = __import__("bench.seeding", fromlist=["derive_seed"]).derive_seed(root_seed, "perf", "micro")
    m = doc["raw"]["micro"]
    load0 = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    for name in names:
        if name == "sim":
            from bench.perf.sim import measure

            m["sim"] = measure(settings.sim_batch, "random_walk", settings.repeats, seed, settings.gym_steps,
                               settings.vec_sizes, settings.vec_steps, settings.queue_episodes, settings.queue_steps)
        elif name == "sampler":
            from bench.perf.sampler import sampler_overhead

            m["sampler"] = sampler_overhead(settings.sampler_seconds, settings.sampler_rate_hz, settings.repeats)
        elif name == "bound":
            from bench.perf.bound import measure as bound_measure

            m["bound"] = bound_measure(settings.bound_steps, settings.repeats, seed)
        elif name == "engine" and settings.engine_cells:
            from bench.perf.engine import measure as engine_measure

            m["engine"] = engine_measure(settings.engine_cells, settings.engine_steps, root_seed=seed)
    sb3_version = stored.get("sb3", {}).get("version")
    sb3_note = stored.get("sb3", {}).get("note") or "skipped"
    doc["table"] = build_table(m, doc["raw"]["training"], settings, sb3_note, sb3_version)
    # the CPU too: a row measured again on another machine must not read as the run's machine's
    when = {"date": _dt.date.today().isoformat(), "git_revision": git_revision(), "cpu": cpu_model(),
            "vector_isa": vector_isa(), "load_average_at_start": load0,
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    doc["machine"].setdefault("remeasured", {}).update({n: when for n in names})
    return doc


def render(doc: dict[str, Any]) -> str:
    """The table as markdown, as the README shows it."""
    from bench.pipeline.readme import perf_section

    return perf_section(doc)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench perf", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny budgets: a smoke run in seconds (numbers mean little)")
    ap.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    ap.add_argument("--out", default=None, help=f"where to save the JSON (default {DEFAULT_OUT}; --quick: not saved)")
    ap.add_argument("--no-sb3", action="store_true", help="skip the Stable-Baselines3 runs")
    ap.add_argument("--workers", type=int, default=None, help="training processes (0 = one per core, 1 = in-process)")
    ap.add_argument("--train-seeds", type=int, default=None, help="training seeds per learner (medians shown)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats of every timing (medians shown)")
    ap.add_argument("--seed", type=int, default=None, help="root seed (default: params.yaml's seed)")
    ap.add_argument("--remeasure", default=None, metavar="ENTRIES",
                    help=f"measure only these comma-separated entries ({', '.join(REMEASURABLE)}) again on today's "
                         f"code into the saved run at --out (default {DEFAULT_OUT}); its other rows stay the run's")
    args = ap.parse_args(argv)
    if args.remeasure is not None:
        return _remeasure_main(ap, args)
    over = {k: v for k, v in {"workers": args.workers, "train_seeds": args.train_seeds,
                              "repeats": args.repeats}.items() if v is not None}
    for k, v in over.items():
        if v < (0 if k == "workers" else 1):
            ap.error(f"--{k.replace('_', '-')} must be >= {0 if k == 'workers' else 1}, got {v}")
    if args.seed is not None and not 0 <= args.seed < 2**63:  # numpy's SeedSequence takes no negative seed
        ap.error(f"--seed must be in [0, 2**63), got {args.seed}")
    if args.out is not None:  # refused up front, not after minutes of benchmarking
        _check_out(ap, Path(args.out))
    settings = Settings.quick(**over) if args.quick else Settings(**over)
    if args.seed is None:
        from bench.config import load_params

        root_seed = load_params().seed
    else:
        root_seed = args.seed
    doc = run(settings, root_seed, with_sb3=not args.no_sb3)
    out = Path(args.out) if args.out is not None else (None if args.quick else DEFAULT_OUT)
    if out is not None:  # atomic: a crash mid-write keeps the previous run whole
        atomic_write_text(out, json.dumps(doc, indent=1, default=_json_default) + "\n")
    if args.json:
        print(json.dumps(doc, indent=1, default=_json_default))
    else:
        print(render(doc))
        print(f"\ntotal {doc['settings']['total_wall_s']:.0f} s" + (f"; saved {out}" if out else ""), file=sys.stderr)
    return 0


def _check_out(ap: argparse.ArgumentParser, out: Path) -> None:
    """``--out`` must name a file whose nearest existing ancestor is a folder (missing folders are created)."""
    if not str(out).strip() or out == Path("."):  # `--out ""` fell back to results/perf.json, overwriting the run
        ap.error("--out: an empty path; allowed: a JSON file path")
    if out.is_dir():
        ap.error(f"--out {out} is a directory; allowed: a JSON file path")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        ap.error(f"--out {out}: {str(parent)!r} is not a folder; allowed: a JSON file path under a folder")


def _remeasure_main(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.remeasure.split(",") if n.strip()]
    bad = [n for n in names if n not in REMEASURABLE]
    if not names or bad:
        ap.error(f"--remeasure {args.remeasure!r}: allowed entries are {', '.join(REMEASURABLE)} (comma-separated)")
    if args.quick or args.no_sb3 or any(v is not None for v in (args.workers, args.train_seeds, args.repeats)):
        ap.error("--remeasure uses the saved run's settings: it takes no --quick, --no-sb3, --workers, --train-seeds "
                 "or --repeats")
    if args.out is not None:
        _check_out(ap, Path(args.out))
    out = Path(args.out) if args.out is not None else DEFAULT_OUT
    try:
        doc = json.loads(out.read_text())
        doc["settings"], doc["raw"]["micro"], doc["raw"]["training"], doc["machine"]  # noqa: B018 - shape check
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {out}: not a saved `python -m bench perf` run ({type(exc).__name__}: {exc}); run the whole "
              f"benchmark first", file=sys.stderr)
        return 2
    missing = _fields_today_needs(doc)
    if missing:
        print(f"error: {out}: written by an older `python -m bench perf` (its entries lack {', '.join(missing)}, which "
              f"today's table reads); run the whole benchmark first, then --remeasure", file=sys.stderr)
        return 2
    root_seed = doc["settings"].get("root_seed") if args.seed is None else args.seed
    doc = remeasure(doc, names, int(root_seed))
    atomic_write_text(out, json.dumps(doc, indent=1, default=_json_default) + "\n")
    print(render(doc))
    print(f"\nremeasured {', '.join(names)}; saved {out}", file=sys.stderr)
    return 0


def _fields_today_needs(doc: dict[str, Any]) -> list[str]:
    """What today's table reads and a saved run lacks (``[]``: none), found by building the table from the run's
    stored figures before the minutes of remeasuring, so an older run is refused up front, not at the end."""
    fields = {f.name for f in dataclasses.fields(Settings)}
    try:
        settings = Settings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in doc["settings"].items()
                               if k in fields})
        stored = doc["settings"].get("sb3", {}) if isinstance(doc["settings"].get("sb3"), dict) else {}
        build_table(doc["raw"]["micro"], doc["raw"]["training"], settings, stored.get("note") or "skipped",
                    stored.get("version"))
    except KeyError as exc:
        return [repr(exc.args[0]) if exc.args else "an entry"]
    except (TypeError, ValueError, AttributeError) as exc:
        return [f"a readable entry ({type(exc).__name__}: {exc})"]
    return []


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
