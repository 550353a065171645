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

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pandas as pd

from bench.seeding import derive_seeds

if TYPE_CHECKING:
    from bench.pipeline.engine import Engine


def env_id(learner: str) -> str:
    """The gymnasium id a learner trains and is evaluated on (``bench.policies.LEARNERS``)."""
    from bench.pipeline.training import learner_spec

    return learner_spec(learner).env_id

#: the baselines every comparison reports ratios against (named by the mission)
RATIO_BASELINES = {"cpu_only": "cpu_only", "cloud_only": "cloud_only"}


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


def _policy_kwargs(cell: Cell) -> dict[str, Any]:
    if cell.policy == cell.learner:
        return {"path": cell.artefact}
    return {"seed": cell.seed, "n_steps": cell.steps}


def run_cell(cell: Cell) -> pd.DataFrame:
    """Roll ``cell.policy`` out for one episode of ``cell.scenario`` (pure; safe in any worker)."""
    import bench  # noqa: F401  (registers the envs in a fresh worker)
    import bench.policies  # noqa: F401  (registers the policies)
    from bench.policies.rollout import evaluate_policy

    _single_thread_torch()
    frame = evaluate_policy(cell.policy, env_id(cell.learner), cell.scenario, [cell.seed], cell.steps,
                            policy_kwargs=_policy_kwargs(cell), env_kwargs=json.loads(cell.env_kwargs_json))
    frame.insert(0, "profile", cell.profile)
    frame.insert(0, "suite", cell.suite)
    return frame


def _single_thread_torch() -> None:
    # one process per core: torch's own thread pool would oversubscribe the cores
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def run_cells(cells: Sequence[Cell], workers: int = 0, progress: bool = True,
              engine: "Engine | Mapping[str, Any] | None" = None) -> pd.DataFrame:
    """Run every cell on ``engine`` (an :class:`~bench.pipeline.engine.Engine` or params.yaml's ``engine``
    mapping; default: local processes) with ``workers`` workers when not 0, and concatenate in cell
    order, so the table's bytes do not depend on the backend or the number of workers."""
    from bench.pipeline.engine import Engine, map_ordered

    if engine is None or isinstance(engine, Mapping):
        engine = Engine.from_dict(engine or {})
    if workers:
        engine = dataclasses.replace(engine, workers=workers)
    frames = map_ordered(run_cell, cells, engine, keys=[cell_key(c) for c in cells], progress=progress,
                         desc="evaluate")
    out = pd.concat(frames, ignore_index=True)
    for col in ("suite", "profile", "policy", "scenario", "workload", "action_name"):
        out[col] = out[col].astype("string")
    return out


def cell_key(cell: Cell) -> str:
    """A name for the cell from its full definition (same definition, same key; on every machine)."""
    blob = json.dumps(dataclasses.asdict(cell), sort_keys=True)
    return f"cell-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"


def suite_cells(suite: str, run_dir: str | Path, policies: Iterable[str], scenarios: Iterable[str], seeds: int,
                steps: int, root_seed: int) -> list[Cell]:
    """All cells of a suite: the run's learner + ``policies`` x ``scenarios`` x derived seeds."""
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "train.json").read_text())
    from bench.pipeline.training import config_class

    config = config_class(info["learner"]).from_dict(info["config"])
    env_kwargs = json.dumps(config.env_kwargs(), sort_keys=True, default=list)
    eval_seeds = derive_seeds(root_seed, seeds, "evaluate", suite)
    names = [info["learner"]] + [p for p in policies if p != info["learner"]]
    return [Cell(suite, info["learner"], info["profile"], pol, sc, s, steps, env_kwargs,
                 str(run_dir / "policy") if pol == info["learner"] else "")
            for pol in names for sc in scenarios for s in eval_seeds]


def metrics(results: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """Per suite: overall and per-scenario summaries with bootstrap 95% CIs (see :mod:`bench.pipeline.stats`)."""
    from bench.pipeline.stats import round_floats, summarise, summarise_by_scenario

    out: dict[str, Any] = {}
    for suite, frame in results.groupby("suite", sort=True):
        kw = dict(baselines=RATIO_BASELINES, n_boot=n_boot, seed=seed)
        out[str(suite)] = {"overall": summarise(frame, **kw), "by_scenario": summarise_by_scenario(frame, **kw)}
    return round_floats(out)
