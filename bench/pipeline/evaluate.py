"""Every policy x every scenario x seeds, on the devices a learner was trained for.

A *cell* is one (suite, policy, scenario, seed) episode. :func:`run_cell` is pure:
its result depends only on the cell (and the files it names), so cells run in
any order, in local processes or on a Dask cluster (:mod:`bench.pipeline.engine`) —
``map(run_cell, cells)`` is the whole contract. :func:`run_cells`
concatenates results in cell order, so the table's bytes do not depend on which
worker finished first.

The tidy results table (docs/architecture.md, "Results") has one row per request: ``suite,
profile, policy, scenario, seed, step, workload, action, action_name, energy_mj,
remote_energy_mj, latency_ms, qos_ok, accuracy, reward``. Everything else is
derived from it (:mod:`bench.pipeline.stats`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pandas as pd

from bench.seeding import derive_seed, derive_seeds

if TYPE_CHECKING:
    from bench.pipeline.engine import Engine


def env_id(learner: str) -> str:
    """The gymnasium id a learner trains and is evaluated on (``bench.policies.LEARNERS``)."""
    from bench.pipeline.training import learner_spec

    return learner_spec(learner).env_id


#: the baselines every comparison reports paired energy ratios against (``efficiency_vs_<label>``, with CIs):
#: the mission's CPU-only and cloud-only, DVFO's edge-only (on the Jetson GPU), the references a learner must
#: beat to matter, and DVFO's published baselines; a label whose policy a suite lacks is skipped
RATIO_BASELINES = {"cpu_only": "cpu_only", "cloud_only": "cloud_only", "edge_gpu_max": "edge_gpu_max",
                   "best_static_dnn": "best_static_dnn", "best_static_dnn_signal": "best_static_dnn_signal",
                   "distilled": "distilled", "neurosurgeon": "neurosurgeon", "drldo": "drldo",
                   "appealnet": "appealnet"}


@dataclass(frozen=True)
class Cell:
    """One evaluation episode; everything :func:`run_cell` needs, as plain data."""

    suite: str
    learner: str  # the suite's learner (a bench.policies.LEARNERS name; selects the env)
    profile: str
    policy: str
    scenario: str
    seed: int
    steps: int
    env_kwargs_json: str  # the trained run's env arguments (devices, levels, reward), JSON
    artefact: str = ""  # saved learner directory, for the learned policy
    policy_kwargs_json: str = ""  # extra arguments of a fitted baseline (what it is fitted on), JSON


def _policy_kwargs(cell: Cell) -> dict[str, Any]:
    if cell.policy == cell.learner:
        return {"path": cell.artefact}
    return {"seed": cell.seed, "n_steps": cell.steps, **json.loads(cell.policy_kwargs_json or "{}")}


def fitted_policy_kwargs(policy: str, suite: str, run_config: dict[str, Any], scenarios: Sequence[str],
                         eval_seeds: Sequence[int], steps: int, root_seed: int,
                         violation_cost_mj: float | None = None) -> dict[str, Any]:
    """What a fitted baseline of a suite is fitted on (the same for all its cells, so one fit per suite).

    * hindsight statics: every evaluation scenario x seed of the suite (``steps`` requests each);
    * the distilled rule: the run's *training* scenarios, with as many seeds as the evaluation has, drawn
      for the purpose (``derive_seeds(root, n, "distill", suite)``: never the evaluation's);
    * DRLDO: the DVFO run's config (training scenarios, steps, hyper-parameters) with a seed of its own;
    * the bound's schedule: the declared objective's λ (params ``objective``; it searches each episode itself).
    """
    if policy in ("best_found_schedule", "bound_schedule"):  # the latter: its deprecated alias
        if violation_cost_mj is None:
            from bench.config import load_params

            violation_cost_mj = load_params().objective.violation_cost_mj
        return {"violation_cost_mj": float(violation_cost_mj)}
    if policy in ("best_static_dnn", "best_static_dnn_signal"):
        return {"fit_scenarios": list(scenarios), "fit_seeds": [int(s) for s in eval_seeds], "n_steps": int(steps)}
    if policy == "distilled":
        return {"train_scenarios": list(run_config["scenarios"]), "n_steps": int(steps),
                "train_seeds": derive_seeds(root_seed, len(eval_seeds), "distill", suite)}
    if policy == "drldo":
        from bench.pipeline.drldo_stage import fit_kwargs  # the drldo stage trains on the same arguments

        return fit_kwargs(suite, run_config, root_seed)
    return {}


#: the policies that replay the best schedule the episode's bound search found (the latter: its deprecated alias)
BOUND_SCHEDULES = ("best_found_schedule", "bound_schedule")


def run_cell(cell: Cell, bound: Any = None) -> pd.DataFrame:
    """Roll ``cell.policy`` out for one episode of ``cell.scenario`` (pure; safe in any worker).

    ``bound``: for a :data:`BOUND_SCHEDULES` cell, the :class:`~bench.policies.bound.Bound` of its episode
    already searched (:func:`run_cells_and_bounds`), replayed instead of searching it again (same rows)."""
    import bench.sim  # noqa: F401  (registers the envs in a fresh worker)
    import bench.policies  # noqa: F401  (registers the policies)
    from bench.policies.rollout import evaluate_policy

    _single_thread_torch()
    env = _episode_env(env_id(cell.learner), cell.scenario, cell.steps, cell.env_kwargs_json)
    policy = _saved_learner(cell.learner, cell.artefact, env) if cell.policy == cell.learner else cell.policy
    kwargs = None if cell.policy == cell.learner else _policy_kwargs(cell)
    if bound is not None:
        if cell.policy not in BOUND_SCHEDULES:
            raise ValueError(f"a bound is only handed to {BOUND_SCHEDULES} cells, not {cell.policy!r}")
        kwargs = {**kwargs, "bound": bound}
    frame = evaluate_policy(policy, env, cell.scenario, [cell.seed], cell.steps, policy_kwargs=kwargs,
                            label=cell.policy)
    frame.insert(0, "profile", cell.profile)
    frame.insert(0, "suite", cell.suite)
    return frame


@lru_cache(maxsize=64)
def _episode_env(env_name: str, scenario: str, steps: int, env_kwargs_json: str):
    """One env per (env, scenario, length, arguments) in this process, shared by the cells that play it.

    Building an env builds its simulator's tables (most of a cheap cell's time) and depends on none of
    the policy, the seed or earlier episodes: ``reset(seed=...)`` draws the whole episode from the seed
    (the same contract :func:`~bench.policies.rollout.evaluate_policy` relies on across seeds), so a
    reused env gives the same rows as a fresh one (tests/test_pipeline_units.py compares them).
    """
    from bench.policies.rollout import make_env

    return make_env(env_name, scenario, steps, **json.loads(env_kwargs_json))


def _files_digest(path: str) -> str:
    """sha256 over the names and bytes of every file under ``path`` (a saved learner's directory, or one file)."""
    root = Path(path)
    files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root) if root.is_dir() else f.name).encode() + b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()


def _saved_learner(learner: str, artefact: str, env):
    """The suite's trained learner loaded from ``artefact``, once per process and file contents.

    Loading is most of a learner cell's cost (AutoScale: decompressing its tables and measuring its back-off
    order, ~1 CPU-s; its 1000 greedy decisions: ~2 ms). Evaluation never updates a learner, and what ``act``
    caches (AutoScale's greedy choice per state, its back-off levels) is a function of the saved tables only,
    so the cells of a process share one instance and decide exactly as a fresh load would
    (tests/test_pipeline_units.py compares them). Keyed by the files' bytes, so a retrained artefact at the
    same path is loaded anew; and by the env's action names, which the load checks the artefact against.
    """
    names = tuple(str(n) for n in env.unwrapped.action_table["name"])
    return _load_learner(learner, str(Path(artefact).resolve()), _files_digest(artefact), names, env)


_LEARNERS: dict[tuple, Any] = {}


def _load_learner(learner: str, path: str, digest: str, names: tuple, env):
    from bench.policies import make_policy

    key = (learner, path, digest, names)
    if key not in _LEARNERS:
        if len(_LEARNERS) >= 8:  # a few suites' learners per process; a long-lived worker does not grow
            _LEARNERS.clear()
        _LEARNERS[key] = make_policy(learner, env, path=path)
    return _LEARNERS[key]


def run_cell_group(cells: Sequence[Cell]) -> list[pd.DataFrame]:
    """:func:`run_cell` for each cell of a task (:func:`task_groups`), in order: one process, one fit."""
    return [run_cell(c) for c in cells]


#: policies whose per-suite fit is a training run (minutes, e.g. DRLDO's DQN): their task starts first,
#: so the other workers fill in around it instead of waiting for it at the end
TRAINED_FITS = ("drldo",)


def task_groups(cells: Sequence[Cell]) -> list[list[int]]:
    """Indices of the cells that run together in one task, in the order the tasks are submitted.

    Cells of a fitted baseline fitted on the same data (same suite, env and fit arguments; the two hindsight
    statics share theirs) form one task: the fit (hindsight episodes, the distilled rule's data, DRLDO's
    training) then runs once per suite, not once in every worker that meets one of its cells. Other cells
    group by (suite, policy, scenario): the seeds of one kind of episode. Training fits go first, then the
    other fitted tasks, then the rest, so no long task starts last. Results do not depend on the grouping
    (every cell is pure); :func:`run_cells` puts them back in cell order.
    """
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(cells):
        fitted = c.policy != c.learner and c.policy_kwargs_json not in ("", "{}")
        key = (("fit", c.suite, c.learner, c.env_kwargs_json, c.policy_kwargs_json) if fitted
               else ("cells", c.suite, c.policy, c.scenario))
        groups.setdefault(key, []).append(i)

    def rank(item: tuple[tuple, list[int]]) -> int:
        key, idx = item
        if key[0] != "fit":
            return 2
        return 0 if any(cells[i].policy in TRAINED_FITS for i in idx) else 1

    return [idx for _, idx in sorted(groups.items(), key=rank)]  # stable: first-seen order within a rank


def _recording(inner, name: str | None = None):
    """``inner`` acting as before, keeping every observation it acted on (``.obs``, cleared at reset): the oracle's
    and the learner cells' rollouts hand them on instead of being rolled out again."""
    from bench.policies.base import Policy

    class Recorded(Policy):
        def __init__(self):
            self.inner, self.obs = inner, []

        def reset(self) -> None:
            self.inner.reset()
            self.obs = []

        def act(self, obs) -> int:
            self.obs.append(obs)
            return self.inner.act(obs)

    if name is not None:
        Recorded.name = name
    return Recorded()


def _single_thread_torch() -> None:
    # one process per core: torch's own thread pool would oversubscribe the cores
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


@contextlib.contextmanager
def _torch_single_threaded():
    """torch on one thread for the block (as in the cells' workers and in training), then as before.

    A learner's one-request forward pass is a few small matrix products: on torch's default pool
    (one thread per core) each spends more time waking and joining threads than computing, and on a
    loaded machine the spinning threads get descheduled (profiled on 2 cores: 2.4 ms per forward on
    2 threads, 45 us on 1; feature importance's rollouts are ~100k of them)."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def run_cells(cells: Sequence[Cell], workers: int = 0, progress: bool = True,
              engine: "Engine | Mapping[str, Any] | None" = None) -> pd.DataFrame:
    """Run every cell on ``engine`` (an :class:`~bench.pipeline.engine.Engine` or params.yaml's ``engine``
    mapping; default: local processes) with ``workers`` workers when not 0, and concatenate in cell
    order, so the table's bytes do not depend on the backend or the number of workers. Cells travel in
    tasks (:func:`task_groups`): a suite's fitted baseline is fitted once, in the worker running its task."""
    from bench.pipeline.engine import Engine, map_ordered

    if engine is None or isinstance(engine, Mapping):
        engine = Engine.from_dict(engine or {})
    if workers:
        engine = dataclasses.replace(engine, workers=workers)
    groups = task_groups(cells)
    done = map_ordered(run_cell_group, [[cells[i] for i in g] for g in groups], engine,
                       keys=[group_key([cells[i] for i in g]) for g in groups], progress=progress, desc="evaluate")
    frames: list[pd.DataFrame] = [pd.DataFrame()] * len(cells)
    for idx, group_frames in zip(groups, done):
        for i, frame in zip(idx, group_frames):
            frames[i] = frame
    return _concat_results(frames)


def _concat_results(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The cells' frames, in cell order, as one results table (the text columns as pandas strings)."""
    out = pd.concat(frames, ignore_index=True)
    for col in ("suite", "profile", "policy", "scenario", "workload", "action_name"):
        out[col] = out[col].astype("string")
    return out


#: the policy whose rollout is the bound search's first proposal (:func:`bench.policies.bound.greedy_schedule`)
GREEDY = "greedy_oracle"


def _joins_bound(cell: Cell, key: tuple) -> bool:
    """Whether ``cell`` runs in the task of the bound searched for ``key`` (its episode and λ): a best-found cell
    (it replays the bound's best schedule; its own search would be ``hindsight_bound(env, Objective(λ), steps)``
    on the same episode) or the greedy oracle's (its rollout is the search's greedy proposal)."""
    if cell.policy == GREEDY:
        return True
    if cell.policy not in BOUND_SCHEDULES:
        return False
    kw = _policy_kwargs(cell)
    return float(kw.get("violation_cost_mj", float("nan"))) == float(key[-1]) and int(kw["n_steps"]) == int(key[4])


def _greedy_cell(cell: Cell, neutral: tuple | None = None) -> tuple[pd.DataFrame, Any]:
    """:func:`run_cell` of a greedy-oracle cell, and its rollout as the fitted baselines' replay keeps it
    (:class:`~bench.policies.episodes.EpisodeData`: the observation before each request, the realised states and
    draws, the oracle's actions): :func:`bench.policies.episodes.replay` of the same episode is the same rollout
    (``env.reset(seed)`` on an env of the same class and arguments, the same oracle acting until the episode
    ends), so the hindsight statics fit on these instead of rolling the oracle through every episode again.
    ``neutral``: the fresh carry's outcomes of this very episode (:func:`bench.policies.oracle.greedy_actions`)."""
    import numpy as np

    import bench  # noqa: F401  (registers the envs and policies in a fresh worker)
    from bench.policies import make_policy
    from bench.policies.episodes import EpisodeData
    from bench.policies.oracle import PlannedGreedyOracle
    from bench.policies.rollout import evaluate_policy

    _single_thread_torch()
    env = _episode_env(env_id(cell.learner), cell.scenario, cell.steps, cell.env_kwargs_json)
    # the oracle's decisions for the whole episode at reset: the step-by-step oracle's actions, 2-5x less CPU
    inner = (PlannedGreedyOracle(env, cell.steps, neutral) if cell.policy == GREEDY
             else make_policy(cell.policy, env, **_policy_kwargs(cell)))
    policy = _recording(inner, cell.policy)  # the oracle, keeping what it observed
    frame = evaluate_policy(policy, env, cell.scenario, [cell.seed], cell.steps, label=cell.policy)
    frame.insert(0, "profile", cell.profile)
    frame.insert(0, "suite", cell.suite)
    ep = env.unwrapped.episode()
    idx = np.arange(len(policy.obs))
    episode = EpisodeData(env.unwrapped.scenario.name, int(cell.seed), np.asarray(policy.obs, dtype=np.float32),
                          ep.states.take(idx), ep.draws.take(idx), frame["action"].to_numpy(dtype=np.int64))
    return frame, episode


def _bound_task(task: tuple) -> tuple[dict[str, Any], pd.DataFrame, list[pd.DataFrame], Any]:
    """One episode's bound (the yardstick's row and per-request bounds) with the cells that share its work: the
    greedy oracle's rollout first (handed to the search as its greedy proposal), then the best-found cells
    (replaying the search's best schedule). Frames in the order of the task's cells, and the greedy oracle's
    rollout (:func:`_greedy_cell`; None without a greedy cell) for the fits of the statics."""
    key, cells = task
    suite, learner, scenario, seed, steps, env_kwargs_json, lam = key
    import bench  # noqa: F401  (registers the envs and policies in a fresh worker)
    from bench.pipeline.yardstick import bound_rows
    from bench.policies.bound import episode_variants, hindsight_bound
    from bench.sim.objective import Objective

    frames: dict[int, pd.DataFrame] = {}
    greedy = episode = None
    env = _episode_env(env_id(learner), scenario, int(steps), env_kwargs_json)  # the cells' own (cached) env
    env.reset(seed=int(seed))  # the same reset as every policy's episode of this cell
    # every action under the bound's favourable states, once: the greedy oracle's plan reads the first (the fresh
    # carry's outcomes, which it would otherwise batch itself) and the search gets them all
    variants = episode_variants(env, int(steps))
    for i, c in enumerate(cells):
        if c.policy == GREEDY:
            frames[i], episode = _greedy_cell(c, (variants.energy_mj[0], variants.qos_ok[0]))
            if len(frames[i]) == int(steps):  # an episode cut short: the search rolls its own
                greedy = tuple(frames[i][col].to_numpy() for col in ("action", "energy_mj", "qos_ok"))
    env.reset(seed=int(seed))  # the same reset as every policy's episode of this cell
    b = hindsight_bound(env, Objective(lam), int(steps), greedy=greedy, variants=variants)
    row, req = bound_rows(key, b)
    for i, c in enumerate(cells):
        if i not in frames:
            frames[i] = run_cell(c, bound=b)
    return row, req, [frames[i] for i in range(len(cells))], episode


#: the fitted baselines whose fit replays the greedy oracle through exactly the evaluation's episodes
#: (:func:`bench.pipeline.evaluate.fitted_policy_kwargs`): they fit on the greedy-oracle cells' rollouts
STATICS = ("best_static_dnn", "best_static_dnn_signal")


def _statics_task(payload: tuple) -> list[pd.DataFrame]:
    """:func:`run_cell_group` of a hindsight-statics task, its fit reading the greedy oracle's ``episodes``
    (:func:`bench.policies.episodes.supplied`) instead of replaying them."""
    cells, episodes = payload
    import bench  # noqa: F401  (registers the envs and policies in a fresh worker)
    from bench.policies.episodes import supplied

    c = cells[0]
    kw = _policy_kwargs(c)
    env = _episode_env(env_id(c.learner), c.scenario, c.steps, c.env_kwargs_json)
    with supplied(env, kw["fit_scenarios"], kw["fit_seeds"], kw.get("n_steps"), episodes):
        return run_cell_group(cells)


def _run_task(task: tuple) -> Any:
    kind, payload = task
    if kind == "statics":
        return _statics_task(payload)
    if kind == "importance":
        return _importance_task(payload)
    if kind == "learner":
        return _learner_task(payload)
    return run_cell_group(payload) if kind == "cells" else _bound_task(payload)


def _statics_episodes(group: Sequence[Cell], greedy_of: Mapping[tuple, int]) -> list[int] | None:
    """For a task of hindsight-statics cells: the index of the greedy-oracle cell (:data:`GREEDY`) playing each of
    its fit's episodes, in the fit's order (scenario, then seed); None when one is missing or not the whole
    episode the fit replays (then the fit replays them itself, as before)."""
    from bench.policies.episodes import scenario_steps

    c = group[0]
    if c.policy not in STATICS or any(g.policy not in STATICS or g.policy_kwargs_json != c.policy_kwargs_json
                                      for g in group):
        return None
    kw = json.loads(c.policy_kwargs_json or "{}")
    if not kw.get("fit_scenarios") or kw.get("fit_seeds") is None:
        return None
    out = []
    for sc in kw["fit_scenarios"]:
        limit = int(kw.get("n_steps") or 0) or scenario_steps(sc)
        for sd in kw["fit_seeds"]:
            i = greedy_of.get((c.suite, c.learner, c.env_kwargs_json, str(sc), int(sd), limit))
            if i is None:
                return None
            out.append(i)
    return out


def run_cells_and_bounds(cells: Sequence[Cell], objective: Any, workers: int = 0, progress: bool = True,
                         engine: "Engine | Mapping[str, Any] | None" = None
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """:func:`run_cells` and :func:`bench.pipeline.yardstick.bound_cells` of ``cells`` in one pass, each episode's
    bound searched once: ``(results, bounds, bound_requests)``, the same tables as the two calls.

    A best-found-schedule cell replays the best schedule of its episode's bound search; run apart, it searched
    the episode again (half of the stage's time), and the search rolled the greedy oracle out once more. Here one
    task per episode runs the greedy oracle's cell, searches the bound from its rollout, writes the yardstick's
    row and hands the result to the episode's best-found cells, with the greedy oracle's rollout. The tasks run in
    two maps on ``engine`` (one session): first the fitted baselines' tasks (as :func:`task_groups` orders them),
    then the bounds, then the rest; then the hindsight statics (:data:`STATICS`), fitted on the greedy oracle's
    rollouts of the first map (their fit replays exactly those episodes: :func:`_statics_episodes`) instead of
    rolling the oracle through every evaluation episode once more (a statics task whose episodes lack a greedy
    cell runs in the first map and replays them itself).
    """
    return run_evaluation(cells, objective, (), workers, progress, engine)[:3]


def run_evaluation(cells: Sequence[Cell], objective: Any, importance: Sequence[tuple] = (), workers: int = 0,
                   progress: bool = True, engine: "Engine | Mapping[str, Any] | None" = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The evaluate stage's work on ``engine`` in one session: :func:`run_cells_and_bounds` of ``cells`` and
    :func:`feature_importances` of the ``importance`` tasks (``(suite, run_dir, scenarios, seeds, steps,
    root_seed)`` each; empty: an empty table). The importance tasks start with the first map, so they share the
    workers with the cells instead of running after them; every table is the one the separate calls give.
    ``(results, bounds, bound_requests, importance)``.
    """
    from bench.pipeline.engine import Engine, map_ordered, session
    from bench.pipeline.yardstick import bound_key, bound_tables

    if engine is None or isinstance(engine, Mapping):
        engine = Engine.from_dict(engine or {})
    if workers:
        engine = dataclasses.replace(engine, workers=workers)
    keys = list(dict.fromkeys(bound_key(c, objective) for c in cells))
    replays: dict[tuple, list[int]] = {k: [] for k in keys}
    for i, c in enumerate(cells):
        k = bound_key(c, objective)
        if _joins_bound(c, k):
            replays[k].append(i)
    taken = {i for idx in replays.values() for i in idx}
    rest = [i for i in range(len(cells)) if i not in taken]
    groups = [[rest[j] for j in g] for g in task_groups([cells[i] for i in rest])]
    greedy_of = {(c.suite, c.learner, c.env_kwargs_json, c.scenario, int(c.seed), int(c.steps)): i
                 for i in taken if (c := cells[i]).policy == GREEDY}
    later: list[tuple[list[int], list[int]]] = []  # (a static's cells, the greedy cells playing its fit episodes)
    first = []
    for g in groups:
        eps = _statics_episodes([cells[i] for i in g], greedy_of)
        if eps is None:
            first.append(g)
        else:  # one task per static (each fits its own table on the episodes): the second map has tasks to balance
            later += [([i for i in g if cells[i].policy == p], eps) for p in dict.fromkeys(cells[i].policy for i in g)]
    groups = first
    fitted = [g for g in groups if cells[g[0]].policy != cells[g[0]].learner
              and cells[g[0]].policy_kwargs_json not in ("", "{}") and cells[g[0]].policy not in BOUND_SCHEDULES]
    plain = [g for g in groups if g not in fitted]
    imp = _importance_tasks(importance)
    # a suite's learner cells run in its importance task where they play exactly its episodes (one load of the
    # learner; the importance reads their rollouts): :func:`_learner_task`
    imp_order: list[tuple[str, Any]] = []
    for t in imp:
        idx = _learner_cells(t, cells, [i for g in plain for i in g])
        if idx is None:
            imp_order.append(("importance", t))
            continue
        imp_order.append(("learner", (t, idx)))
        plain = [kept for g in plain if (kept := [i for i in g if i not in set(idx)])]
    # training fits first (the longest tasks), then the other fits and the importance, the bounds, the rest
    order = ([("cells", g) for g in fitted] + imp_order + [("bound", k) for k in keys]
             + [("cells", g) for g in plain])
    tasks, names = [], []
    for kind, what in order:
        if kind == "cells":
            tasks.append(("cells", [cells[i] for i in what]))
            names.append(group_key(tasks[-1][1]))
        elif kind == "importance":
            tasks.append(("importance", what))
            names.append(_importance_key(what))
        elif kind == "learner":
            t, idx = what
            tasks.append(("learner", (t, [cells[i] for i in idx])))
            names.append(f"learner-{_importance_key(t)}-{group_key(tasks[-1][1][1])}")
        else:
            tasks.append(("bound", (what, [cells[i] for i in replays[what]])))
            blob = json.dumps([list(what), [cell_key(cells[i]) for i in replays[what]]])
            names.append(f"bound-cells-{hashlib.sha256(blob.encode()).hexdigest()[:20]}")
    frames: list[pd.DataFrame] = [pd.DataFrame()] * len(cells)
    outs, episodes, imp_frames = [], {}, []
    with session(engine) as client:
        done = map_ordered(_run_task, tasks, engine, keys=names, progress=progress, desc="evaluate", client=client)
        for (kind, what), value in zip(order, done):
            if kind == "importance":
                imp_frames.append(value)
                continue
            if kind == "learner":
                group_frames, table = value
                imp_frames.append(table)
                for i, frame in zip(what[1], group_frames):
                    frames[i] = frame
                continue
            if kind == "cells":
                idx, group_frames = what, value
            else:
                row, req, group_frames, episode = value
                outs.append((row, req))
                idx = replays[what]
                for i in idx:
                    if cells[i].policy == GREEDY:
                        episodes[i] = episode
            for i, frame in zip(idx, group_frames):
                frames[i] = frame
        tasks = [("statics", ([cells[i] for i in g], [episodes[j] for j in eps])) for g, eps in later]
        names = [f"statics-{group_key(t[1][0])}" for t in tasks]
        done = map_ordered(_run_task, tasks, engine, keys=names, progress=progress, desc="evaluate statics",
                           client=client)
        for (g, _), group_frames in zip(later, done):
            for i, frame in zip(g, group_frames):
                frames[i] = frame
    importance_table = pd.concat(imp_frames, ignore_index=True) if imp_frames else pd.DataFrame()
    return _concat_results(frames), *bound_tables(outs), importance_table


def cell_key(cell: Cell) -> str:
    """A name for the cell from its full definition (same definition, same key; on every machine)."""
    blob = json.dumps(dataclasses.asdict(cell), sort_keys=True)
    return f"cell-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def group_key(cells: Sequence[Cell]) -> str:
    """A name for a task of cells (from their definitions; same cells, same key)."""
    blob = "\n".join(cell_key(c) for c in cells)
    return f"cells-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def suite_cells(suite: str, run_dir: str | Path, policies: Iterable[str], scenarios: Iterable[str], seeds: int,
                steps: int, root_seed: int, violation_cost_mj: float | None = None,
                drldo_dir: str | Path | None = None) -> list[Cell]:
    """All cells of a suite: the run's learner + ``policies`` x ``scenarios`` x derived seeds.

    ``drldo_dir``: DRLDO's cells play the learner the drldo stage saved under ``drldo_dir/suite``
    (:mod:`bench.pipeline.drldo_stage`: trained on the same arguments, checked) instead of training it in the
    worker that runs them; without it (CI-sized runs, sweeps) DRLDO trains in the evaluation as before."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "train.json").read_text())
    from bench.pipeline.training import config_class

    config = config_class(info["learner"]).from_dict(info["config"])
    env_kwargs = json.dumps(config.env_kwargs(), sort_keys=True, default=list)
    eval_seeds = derive_seeds(root_seed, seeds, "evaluate", suite)
    names = [info["learner"]] + [p for p in policies if p != info["learner"]]
    scenarios = list(scenarios)
    fitted = {p: json.dumps(fitted_policy_kwargs(p, suite, info["config"], scenarios, eval_seeds, steps, root_seed,
                                                 violation_cost_mj), sort_keys=True, default=list) for p in names}
    if drldo_dir and "drldo" in fitted:
        from bench.pipeline.drldo_stage import saved_fit

        fitted["drldo"] = saved_fit(drldo_dir, suite, fitted["drldo"])
    from bench.world.scenarios import load_scenario

    # steps <= 0: the whole scenario (its own length); a positive value caps it (CI-sized runs only)
    length = {sc: (load_scenario(sc).steps if steps <= 0 else min(int(steps), load_scenario(sc).steps))
              for sc in scenarios}
    return [Cell(suite, info["learner"], info["profile"], pol, sc, s, length[sc], env_kwargs,
                 str(run_dir / "policy") if pol == info["learner"] else "", fitted[pol])
            for pol in names for sc in scenarios for s in eval_seeds]


#: what a forked child of :func:`_fork_map` reads (set just before the fork; the parent's data, never pickled)
_FORKED: dict[str, Any] = {}


def _forked_call(i: int) -> Any:
    return _FORKED["fn"](_FORKED["items"][i])


def _fork_map(fn, items: Sequence[Any], workers: int) -> list[Any]:
    """``[fn(x) for x in items]``, in up to ``workers`` forked processes (0: one per core) that read ``fn``, the
    items and whatever ``fn`` closes over from this process's memory instead of receiving them pickled (a stage's
    results table is ~1e6 rows); only the return values travel. One worker, one item, or inside a daemonic worker
    (a sweep's or sensitivity run's pool, where no child may be started): here, one after the other."""
    import multiprocessing

    from bench.config import local_cores

    workers = min(workers or local_cores(), len(items))
    if workers <= 1 or multiprocessing.current_process().daemon:
        return [fn(x) for x in items]
    _FORKED.update(fn=fn, items=list(items))
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_forked_call, range(len(items)), chunksize=1)
    finally:
        _FORKED.clear()


def metrics(results: pd.DataFrame, n_boot: int, seed: int,
            heldout: Mapping[str, Sequence[str]] | None = None, bounds: pd.DataFrame | None = None,
            violation_cost_mj: float | None = None, headroom_threshold: float = 0.05,
            workers: int = 1) -> dict[str, Any]:
    """Per suite: summaries with bootstrap 95% CIs (see :mod:`bench.pipeline.stats`).

    ``overall`` is the headline: over the suite's *held-out* scenarios (``heldout[suite]``: scenarios no
    learner trained on) when it has any, else over every scenario evaluated; ``seen`` (only with held-out
    scenarios) is the same summary over the scenarios the learner trained on; ``by_scenario`` covers all.
    With ``violation_cost_mj`` (λ) and ``bounds`` (:func:`bench.pipeline.yardstick.bound_cells`), every
    policy also gets the objective and its gap to the bound, and each suite the yardstick
    (:func:`yardstick_metrics`: headroom per scenario, headroom captured, per-scenario breakdowns).

    The suites are independent (each summary seeds its own bootstrap with ``seed``): with ``workers`` other than
    1 (0: one per core) they are summarised in forked processes (:func:`_fork_map`), the same numbers.
    """
    from bench.pipeline.stats import round_floats

    frames = dict(list(results.groupby("suite", sort=True)))

    def one(suite) -> dict[str, Any]:
        return _suite_metrics(suite, frames[suite], n_boot, seed, heldout, bounds, violation_cost_mj,
                              headroom_threshold)

    names = list(frames)
    return round_floats({str(s): e for s, e in zip(names, _fork_map(one, names, workers))})


def _suite_metrics(suite: Any, frame: pd.DataFrame, n_boot: int, seed: int, heldout: Mapping[str, Sequence[str]] | None,
                   bounds: pd.DataFrame | None, violation_cost_mj: float | None,
                   headroom_threshold: float) -> dict[str, Any]:
    """One suite's entry of :func:`metrics`."""
    from bench.pipeline.stats import summarise, summarise_by_scenario

    sb = None if bounds is None else bounds[bounds["suite"].astype(str) == str(suite)]
    kw = dict(baselines=RATIO_BASELINES, n_boot=n_boot, seed=seed, bounds=sb, violation_cost_mj=violation_cost_mj)
    held = set((heldout or {}).get(str(suite), ()))
    is_held = frame["scenario"].isin(held)
    entry: dict[str, Any] = {}
    if held and is_held.any():
        entry["overall"] = summarise(frame[is_held], **kw)
        entry["split"] = {"headline": "held-out scenarios", "heldout": sorted(held & set(frame["scenario"].unique())),
                          "seen": sorted(set(frame.loc[~is_held, "scenario"].unique()))}
        if (~is_held).any():
            entry["seen"] = summarise(frame[~is_held], **kw)
    else:
        entry["overall"] = summarise(frame, **kw)
        entry["split"] = {"headline": "all evaluated scenarios", "heldout": [],
                          "seen": sorted(set(frame["scenario"].unique()))}
    entry["by_scenario"] = summarise_by_scenario(frame, **kw)
    if sb is not None and violation_cost_mj is not None:
        from bench.pipeline.yardstick import yardstick_metrics

        yardstick_metrics(entry, frame, sb, violation_cost_mj, headroom_threshold, n_boot, seed, RATIO_BASELINES)
    return entry


def feature_importance(suite: str, run_dir: str | Path, scenarios: Iterable[str], seeds: int, steps: int | None,
                       root_seed: int, n_repeats: int = 5, rolled: tuple | None = None) -> pd.DataFrame:
    """Permutation importance of the suite's trained learner on its evaluation scenarios and seeds.

    The same episodes as the suite's cells (:func:`suite_cells`); one row per observation field
    (:func:`bench.policies.importance.permutation_importance`), with ``suite`` and ``learner`` columns. The
    evaluate stage writes the suites' tables to ``results/evaluate/feature_importance.csv``. ``rolled``: the learner's
    rollouts of these episodes when the caller has them (:func:`_learner_task`;
    :func:`bench.policies.importance.permutation_importance`).
    """
    import bench.sim  # noqa: F401  (registers the envs)
    import bench.policies  # noqa: F401  (registers the policies)
    from bench.policies.importance import permutation_importance
    from bench.policies.rollout import make_env
    from bench.pipeline.training import config_class

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "train.json").read_text())
    config = config_class(info["learner"]).from_dict(info["config"])
    scenarios = list(scenarios)
    from bench.world.scenarios import load_scenario

    # steps 0/None: every step of each scenario (as the suite's cells); a positive value caps it
    steps = int(steps) if steps else None
    env = make_env(env_id(info["learner"]), scenarios[0], steps or load_scenario(scenarios[0]).steps,
                   **config.env_kwargs())
    # the learner the cells of this process play (loaded once per process: AutoScale's load and back-off levels
    # cost seconds); acting never updates it, so it decides as a fresh load would
    policy = _saved_learner(info["learner"], str(run_dir / "policy"), env)
    eval_seeds = derive_seeds(root_seed, seeds, "evaluate", suite)
    with _torch_single_threaded():
        df = permutation_importance(policy, env, scenarios, eval_seeds, steps, n_repeats=n_repeats,
                                    seed=derive_seed(root_seed, "importance", suite), rolled=rolled)
    df.insert(0, "learner", info["learner"])
    df.insert(0, "suite", suite)
    return df


def _importance_task(args: tuple) -> pd.DataFrame:
    return feature_importance(*args)


def _learner_cells(task: tuple, cells: Sequence[Cell], candidates: Sequence[int]) -> list[int] | None:
    """For an importance task ``(suite, run_dir, scenarios, seeds, steps, root_seed)``: the indices (among
    ``candidates``) of the suite's learner cells playing exactly the episodes its rollout plays, in its order
    (scenario, then seed), with the same learner files, env arguments and lengths; None when they are not all there."""
    from bench.policies.episodes import scenario_steps

    suite, run_dir, scenarios, seeds, steps, root_seed = task
    mine = [i for i in candidates if cells[i].suite == suite and cells[i].policy == cells[i].learner]
    if not mine:
        return None
    info = json.loads((Path(run_dir) / "train.json").read_text())
    from bench.pipeline.training import config_class

    env_kwargs = json.dumps(config_class(info["learner"]).from_dict(info["config"]).env_kwargs(), sort_keys=True,
                            default=list)
    by_episode = {(cells[i].scenario, int(cells[i].seed)): i for i in mine}
    out = []
    for sc in scenarios:
        for sd in derive_seeds(root_seed, seeds, "evaluate", suite):
            i = by_episode.get((str(sc), int(sd)))
            if i is None:
                return None
            c = cells[i]
            if (c.learner != info["learner"] or c.env_kwargs_json != env_kwargs or c.artefact != str(Path(run_dir) / "policy")
                    or int(c.steps) != int(steps or scenario_steps(sc))):
                return None
            out.append(i)
    return out if len(out) == len(mine) else None


def _learner_task(payload: tuple) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """A suite's learner cells (:func:`run_cell`'s frames, in order) and its :func:`feature_importance`, which reads
    their rollouts (the learner's observation before each request, the realised states and draws: what
    :func:`bench.policies.importance.rollout` gives for the same episodes - ``env.reset(seed)`` on an env of the same
    class and arguments, the same learner acting greedily until the episode ends) instead of rolling it out again;
    one process loads the learner once for both."""
    task, cells = payload
    import numpy as np

    import bench  # noqa: F401  (registers the envs and policies in a fresh worker)
    from bench.policies.importance import _concat
    from bench.policies.rollout import evaluate_policy
    from bench.sim.core import Draws, States

    _single_thread_torch()
    frames, obs, states, draws = [], [], [], []
    for cell in cells:
        env = _episode_env(env_id(cell.learner), cell.scenario, cell.steps, cell.env_kwargs_json)
        policy = _recording(_saved_learner(cell.learner, cell.artefact, env))  # keeping what it observed
        frame = evaluate_policy(policy, env, cell.scenario, [cell.seed], cell.steps, label=cell.policy)
        frame.insert(0, "profile", cell.profile)
        frame.insert(0, "suite", cell.suite)
        frames.append(frame)
        ep = env.unwrapped.episode()  # read after the rollout, as the importance's own rollout reads it
        idx = np.arange(len(policy.obs))
        obs.append(np.asarray(policy.obs, dtype=np.float32))
        states.append(ep.states.take(idx))
        draws.append(ep.draws.take(idx))
    rolled = (np.concatenate(obs), _concat(states, States), _concat(draws, Draws))
    return frames, feature_importance(*task, rolled=rolled)


def _importance_tasks(tasks: Sequence[tuple]) -> list[tuple]:
    """``(suite, run_dir, scenarios, seeds, steps, root_seed)`` tasks as plain data (paths as strings)."""
    return [(str(t[0]), str(t[1]), list(t[2]), int(t[3]), t[4], int(t[5])) for t in tasks]


def _importance_key(task: tuple) -> str:
    return f"importance-{hashlib.sha256(json.dumps(task).encode()).hexdigest()[:20]}"


def feature_importances(tasks: Sequence[tuple], workers: int = 0, progress: bool = False,
                        engine: "Engine | Mapping[str, Any] | None" = None) -> pd.DataFrame:
    """:func:`feature_importance` of each ``(suite, run_dir, scenarios, seeds, steps, root_seed)`` on ``engine``
    (one suite per task, as :func:`run_cells` runs cells), concatenated in task order: the same table as
    calling it suite by suite (each suite's permutations draw from their own seed), with the suites side by
    side on the engine's workers. Each task runs torch on one thread, so the workers do not oversubscribe
    the cores (on torch's default pool they did: a one-request forward pass costs ~50x more)."""
    from bench.pipeline.engine import Engine, map_ordered

    if engine is None or isinstance(engine, Mapping):
        engine = Engine.from_dict(engine or {})
    if workers:
        engine = dataclasses.replace(engine, workers=workers)
    tasks = _importance_tasks(tasks)
    keys = [_importance_key(t) for t in tasks]
    frames = map_ordered(_importance_task, tasks, engine, keys=keys, progress=progress, desc="importance")
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- conditions of every request

def _cell_conditions(key: tuple[str, str, str, int, int, str]) -> pd.DataFrame:
    suite, learner, scenario, seed, steps, env_kwargs_json = key
    import bench  # noqa: F401  (registers the envs)

    env = _episode_env(env_id(learner), scenario, int(steps), env_kwargs_json)  # the cells' own (cached) env
    env.reset(seed=int(seed))  # the same reset as every policy's episode of this cell
    core = env.unwrapped
    states = core.episode().states
    n = min(int(steps), len(states))
    up = core.sim.link_state(states)["up_mbps"][:n]
    cap = states.cap_mbps[:n]
    frame = pd.DataFrame({"suite": suite, "scenario": scenario, "seed": int(seed), "step": range(n)})
    for j, link in enumerate(core.sim.links):
        frame[f"{link.name}_dbm"] = states.signal_dbm[:n, j]
    # what the best radio can carry right now (Mbps), after any scripted bandwidth cap
    frame["uplink_mbps"] = [min(u, c) for u, c in zip(up.max(axis=1), cap)]
    frame["qos_ms"] = states.qos_ms[:n]
    frame["cpu_load"] = states.cpu_load[:n]
    frame["mem_load"] = states.mem_load[:n]
    return frame


def _conditions_of(keys: Sequence[tuple]) -> list[pd.DataFrame]:
    return [_cell_conditions(k) for k in keys]


def conditions(cells: Sequence[Cell], workers: int = 1) -> pd.DataFrame:
    """Signal, uplink bandwidth, QoS deadline and load of every request of every (suite, scenario, seed).

    Every policy of a cell sees the same realisation (common random numbers), so one reset of the
    cell's env gives the conditions behind all its policies' rows; the report bins energy and QoS
    against them. Columns: ``suite, scenario, seed, step, wifi_dbm, lte_dbm, uplink_mbps, qos_ms,
    cpu_load, mem_load``. With ``workers`` other than 1 (0: one per core), consecutive runs of the episodes
    are reset in forked processes (:func:`_fork_map`) and concatenated in the same order: the same table.
    """
    from bench.config import local_cores

    keys = list(dict.fromkeys((c.suite, c.learner, c.scenario, c.seed, c.steps, c.env_kwargs_json) for c in cells))
    n = max(1, min(workers or local_cores(), len(keys)))
    chunks = [keys[len(keys) * i // n:len(keys) * (i + 1) // n] for i in range(n)]  # consecutive: envs reused
    out = pd.concat([f for part in _fork_map(_conditions_of, chunks, n) for f in part], ignore_index=True)
    for col in ("suite", "scenario"):
        out[col] = out[col].astype("string")
    return out


# --------------------------------------------------------------------------- metrics files

#: the per-policy numbers of results/metrics.json (means; intervals live in metrics_overall.json) ...
HEADLINE_KEYS = ("energy_mj", "qos_violation_rate", "objective_mj", "gap_to_bound", "headroom_captured",
                 "headroom_captured_found")
#: ... plus the efficiency against the suite's on-device baseline: CPU-only, or edge-only on the Jetson GPU
#: (DVFO's space), whichever the suite evaluates first in this order
HEADLINE_RATIOS = ("efficiency_vs_cpu_only", "efficiency_vs_edge_gpu_max")


def headline(m: dict[str, Any], keys: Sequence[str] = HEADLINE_KEYS) -> dict[str, dict[str, dict[str, float]]]:
    """Suite -> policy -> a few means, 4 significant digits: what `dvc metrics show` / `dvc exp show` compare."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for suite, v in m.items():
        out[suite] = {}
        ratio = next((r for r in HEADLINE_RATIOS if any(r in e for e in v["overall"].values())), None)
        for pol, entry in v["overall"].items():
            row = {}
            for k in (*keys, ratio) if ratio else keys:
                if k not in entry and k in ("objective_mj", "gap_to_bound", "headroom_captured", "headroom_captured_found"):
                    continue  # learners only (headroom captured); without a bound (objective, gap)
                val = entry.get(k)
                val = val.get("mean") if isinstance(val, dict) else val
                row[k] = None if val is None else float(f"{val:.4g}")
            out[suite][pol] = row
    return out


def write_metrics(m: dict[str, Any], metrics_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """``metrics_path``: the headline (:func:`headline`); ``out_dir``: ``metrics_overall.json`` (with 95% CIs)
    and ``metrics_by_scenario.json``. Returns the paths written."""
    out_dir = Path(out_dir)
    paths = {"headline": Path(metrics_path), "overall": out_dir / "metrics_overall.json",
             "by_scenario": out_dir / "metrics_by_scenario.json"}
    dump = lambda obj: json.dumps(obj, indent=1, sort_keys=True) + "\n"  # noqa: E731
    paths["headline"].write_text(dump(headline(m)))
    paths["overall"].write_text(dump({s: v["overall"] for s, v in m.items()}))
    paths["by_scenario"].write_text(dump({s: v["by_scenario"] for s, v in m.items()}))
    paths["seen"] = out_dir / "metrics_seen.json"  # the scenarios the learners trained on, and the split
    paths["seen"].write_text(dump({s: {"split": v.get("split", {}), "seen": v.get("seen", {})} for s, v in m.items()}))
    if any("yardstick" in v for v in m.values()):  # headroom per scenario, headroom captured, breakdowns
        paths["yardstick"] = out_dir / "yardstick.json"
        paths["yardstick"].write_text(dump({s: v.get("yardstick", {}) for s, v in m.items()}))
    return paths


def load_metrics(evaluate_dir: str | Path) -> dict[str, Any]:
    """The evaluate stage's numbers as :func:`metrics` returns them (suite -> overall, by_scenario)."""
    evaluate_dir = Path(evaluate_dir)
    overall = json.loads((evaluate_dir / "metrics_overall.json").read_text())
    by_scenario = json.loads((evaluate_dir / "metrics_by_scenario.json").read_text())
    seen_file = evaluate_dir / "metrics_seen.json"
    seen = json.loads(seen_file.read_text()) if seen_file.exists() else {}
    yard_file = evaluate_dir / "yardstick.json"
    yard = json.loads(yard_file.read_text()) if yard_file.exists() else {}
    return {s: {"overall": overall[s], "by_scenario": by_scenario.get(s, {}), **seen.get(s, {}),
                **({"yardstick": yard[s]} if s in yard else {})} for s in overall}
