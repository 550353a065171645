"""Sweeps that outgrow one machine: a grid trained and evaluated on an engine, resumable.

``sweep.grids`` in params.yaml expands to *train jobs* (learner x profile x config
variant) and *cells* (every train job x policy x scenario x seed). Both are pure
functions of plain data, run by :func:`bench.pipeline.engine.map_ordered` on local
processes or a Dask cluster:

1. train jobs run first; each returns its artefact *as bytes* (the learner's safe
   files: JSON / npz / safetensors), so workers need no shared file system;
2. cells run next; a learner's cell carries its artefact's bytes and unpacks them
   into a private temporary directory on the worker.

The store (``results/sweep/store/``) keeps one entry per train job and one parquet
file per cell, named by a hash of the job's or cell's *full definition* — every
field of the cell, the train job it depends on, and a fingerprint of the model code
and data (bench/world, bench/sim, bench/policies, data/) — written atomically by the
driver as each result arrives. A rerun after an interruption (Ctrl-C, a lost
machine) computes only what the store lacks; a changed model changes every key, so
stale results are never reused. Tasks lost with a worker are re-run by Dask.

Outputs: ``results.parquet`` — one tidy table, the evaluation results of every cell
with its keys (``grid, learner, profile, config, policy, scenario, seed``) in grid
order, so its bytes do not depend on the backend; ``summary.csv`` — per (grid,
profile, config, policy) the mean energy, latency and QoS violations; and
``summary.json`` (counts: cells total / computed now / reused from the store).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from bench.paths import DATA_DIR, REPO_ROOT
from bench.pipeline.engine import Engine, map_ordered, session
from bench.pipeline.evaluate import Cell, run_cell
from bench.seeding import derive_seeds

KEY_COLUMNS = ("grid", "learner", "profile", "config", "policy", "scenario", "seed")
#: what the model is made of: a change in any of these files changes every key
MODEL_SOURCES = ("bench/world", "bench/sim", "bench/policies", "bench/pipeline/evaluate.py", "bench/pipeline/training.py")
MODEL_DATA = ("profiles", "scenarios", "network", "workloads", "dvfo")


def model_fingerprint() -> str:
    """A hash of the simulator's code and data (file paths and bytes, in sorted order)."""
    h = hashlib.sha256()
    roots = [REPO_ROOT / s for s in MODEL_SOURCES] + [DATA_DIR / d for d in MODEL_DATA]
    for root in roots:
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f.name).encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=list).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TrainJob:
    """One learner trained on one profile under one config variant."""

    grid: str
    learner: str
    profile: str
    config: str
    overrides_json: str  # the learner's config fields (params' train.<learner> + the variant), JSON
    root_seed: int
    fingerprint: str

    @property
    def key(self) -> str:
        return "train-" + _digest(dataclasses.asdict(self))

    @property
    def run_name(self) -> str:
        return f"sweep/{self.grid}/{self.profile}/{self.config}"


@dataclass(frozen=True)
class SweepCell:
    """One evaluation episode of the sweep: the grid's keys + the evaluation cell."""

    grid: str
    config: str
    cell: Cell
    train_key: str
    fingerprint: str

    @property
    def key(self) -> str:
        # the artefact path is a worker-local detail: the train job's key stands for it
        definition = {**dataclasses.asdict(self), "cell": {**dataclasses.asdict(self.cell), "artefact": ""}}
        return "cell-" + _digest(definition)


# --------------------------------------------------------------------------- work done on workers

def train_job(job: TrainJob) -> dict[str, Any]:
    """Train in a private temporary directory; return ``train.json``'s summary and the artefact's files."""
    from bench.pipeline.training import train_run

    with tempfile.TemporaryDirectory(prefix="bench-sweep-train-") as tmp:
        train_run(job.run_name, job.learner, job.profile, json.loads(job.overrides_json), job.root_seed, tmp)
        files = {str(p.relative_to(tmp)): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}
    return {"files": files}


def run_sweep_cell(task: tuple[SweepCell, Mapping[str, bytes]]) -> pd.DataFrame:
    """Evaluate one cell; a learner's artefact arrives as bytes and is unpacked on this worker."""
    scell, files = task
    cell = scell.cell
    if not files:
        frame = run_cell(cell)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-sweep-cell-") as tmp:
            _unpack(files, Path(tmp))
            frame = run_cell(dataclasses.replace(cell, artefact=str(Path(tmp) / "policy")))
    frame = frame.drop(columns=["suite"])
    for i, (col, value) in enumerate((("grid", scell.grid), ("learner", cell.learner), ("config", scell.config))):
        frame.insert(i, col, value)
    return frame


def _unpack(files: Mapping[str, bytes], root: Path) -> None:
    for name, blob in files.items():
        path = (root / name).resolve()
        if not path.is_relative_to(root.resolve()):  # an artefact never writes outside its directory
            raise ValueError(f"artefact file {name!r} points outside its directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)


# --------------------------------------------------------------------------- the grid

def expand(params) -> tuple[list[TrainJob], list[SweepCell]]:
    """Train jobs and cells of ``params.sweep`` in grid order (grid, profile, config, policy, scenario, seed)."""
    from bench.config import as_dict
    from bench.pipeline.training import make_config

    fp = model_fingerprint()
    jobs: list[TrainJob] = []
    cells: list[SweepCell] = []
    for gname, grid in sorted(params.sweep.grids.items()):
        base = as_dict(params.train.learner_config(grid.learner))
        for profile in grid.profiles:
            for vname, over in sorted(grid.configs.items()):
                fields = {**base, **dict(over)}
                fields.pop("seed", None)
                job = TrainJob(gname, grid.learner, profile, vname, json.dumps(fields, sort_keys=True),
                               params.seed, fp)
                jobs.append(job)
                config = make_config(grid.learner, profile, fields, params.seed, job.run_name)
                env_kwargs = json.dumps(config.env_kwargs(), sort_keys=True, default=list)
                seeds = derive_seeds(params.seed, params.sweep.seeds, "sweep", gname, profile, vname)
                suite = f"{gname}/{profile}/{vname}"
                policies = [grid.learner] + [p for p in grid.policies if p != grid.learner]
                for pol in policies:
                    for sc in grid.scenarios:
                        for s in seeds:
                            cell = Cell(suite, grid.learner, profile, pol, sc, s, params.sweep.steps, env_kwargs,
                                        "learner" if pol == grid.learner else "")
                            cells.append(SweepCell(gname, vname, cell, job.key if pol == grid.learner else "", fp))
    return jobs, cells


# --------------------------------------------------------------------------- the store

class Store:
    """One file per finished job/cell under ``root``, named by its key; atomic writes."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "train").mkdir(parents=True, exist_ok=True)
        (self.root / "cells").mkdir(parents=True, exist_ok=True)

    def _cell_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.parquet"

    def has_cell(self, key: str) -> bool:
        return self._cell_path(key).exists()

    def put_cell(self, key: str, frame: pd.DataFrame) -> None:
        _atomic_write(self._cell_path(key), lambda p: frame.to_parquet(p, index=False))

    def get_cell(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(self._cell_path(key))

    def has_train(self, key: str) -> bool:
        return (self.root / "train" / key / "DONE").exists()

    def put_train(self, key: str, files: Mapping[str, bytes]) -> None:
        d = self.root / "train" / key
        d.mkdir(parents=True, exist_ok=True)
        _unpack(files, d)
        _atomic_write(d / "DONE", lambda p: Path(p).write_text(json.dumps(sorted(files)) + "\n"))

    def get_train(self, key: str) -> dict[str, bytes]:
        d = self.root / "train" / key
        names = json.loads((d / "DONE").read_text())
        return {n: (d / n).read_bytes() for n in names}


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- the stage

def run_sweep(params, out_dir: str | Path, engine: Engine | None = None, progress: bool = False,
              limit: int | None = None) -> dict[str, Any]:
    """Train what the store lacks, evaluate what it lacks, write the tidy table and the summary.

    ``limit`` stops after that many newly computed cells (tests use it to interrupt a sweep).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = engine or params.engine
    store = Store(out_dir / "store")
    summary: dict[str, Any] = {"enabled": bool(params.sweep.enabled), "backend": engine.backend}
    if not params.sweep.enabled:
        _write_outputs(out_dir, pd.DataFrame(columns=list(KEY_COLUMNS)), {**summary, "cells": 0, "computed": 0,
                                                                         "reused": 0, "train_jobs": 0})
        return summary
    jobs, cells = expand(params)
    todo_jobs = [j for j in jobs if not store.has_train(j.key)]
    todo = [c for c in cells if not store.has_cell(c.key)]
    if limit is not None:
        todo = todo[:limit]
    with session(engine) as client:  # one cluster for both maps
        map_ordered(train_job, todo_jobs, engine, keys=[j.key for j in todo_jobs], progress=progress,
                    desc="sweep: train", client=client,
                    on_result=lambda i, r: store.put_train(todo_jobs[i].key, r["files"]))
        artefacts = {j.key: store.get_train(j.key) for j in jobs if any(c.train_key == j.key for c in todo)}
        tasks = [(c, artefacts.get(c.train_key, {})) for c in todo]
        map_ordered(run_sweep_cell, tasks, engine, keys=[c.key for c in todo], progress=progress,
                    desc="sweep: evaluate", client=client, on_result=lambda i, frame: store.put_cell(todo[i].key, frame))
    done = [c for c in cells if store.has_cell(c.key)]
    results = pd.concat([store.get_cell(c.key) for c in done], ignore_index=True) if done else \
        pd.DataFrame(columns=list(KEY_COLUMNS))
    summary.update({"cells": len(cells), "computed": len(todo), "reused": len(done) - len(todo),
                    "missing": len(cells) - len(done), "train_jobs": len(jobs), "trained": len(todo_jobs)})
    _write_outputs(out_dir, results, summary)
    return summary


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Per (grid, learner, profile, config, policy): mean energy/latency, p95 latency, QoS violations, cells."""
    if results.empty:
        return pd.DataFrame(columns=["grid", "learner", "profile", "config", "policy", "energy_mj", "latency_ms",
                                     "latency_p95_ms", "qos_violation_rate", "requests"])
    g = results.groupby(["grid", "learner", "profile", "config", "policy"], sort=True)
    return g.agg(energy_mj=("energy_mj", "mean"), latency_ms=("latency_ms", "mean"),
                 latency_p95_ms=("latency_ms", lambda x: float(x.quantile(0.95))),
                 qos_violation_rate=("qos_ok", lambda x: float(1.0 - x.mean())),
                 requests=("energy_mj", "size")).reset_index()


def _write_outputs(out_dir: Path, results: pd.DataFrame, summary: Mapping[str, Any]) -> None:
    for col in ("grid", "learner", "config", "profile", "policy", "scenario"):
        if col in results:
            results[col] = results[col].astype("string")
    _atomic_write(out_dir / "results.parquet", lambda p: results.to_parquet(p, index=False))
    summarise(results).to_csv(out_dir / "summary.csv", index=False, float_format="%.6g")
    (out_dir / "summary.json").write_text(json.dumps(dict(summary), indent=2, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench sweep [--params FILE] [--out DIR] [--backend B] [--address A] [--workers N]``."""
    import argparse

    from bench.config import apply_world, load_params
    from bench.paths import PARAMS_FILE, RESULTS_DIR

    ap = argparse.ArgumentParser(prog="python -m bench sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(PARAMS_FILE))
    ap.add_argument("--out", default=str(RESULTS_DIR / "sweep"))
    ap.add_argument("--backend", help="override engine.backend")
    ap.add_argument("--address", help="override engine.address (a running Dask scheduler)")
    ap.add_argument("--workers", type=int, help="override engine.workers")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    apply_world(params)  # the radio profile of params.yaml for this stage and its workers
    over = {k: v for k, v in (("backend", args.backend), ("address", args.address), ("workers", args.workers))
            if v is not None}
    try:
        engine = dataclasses.replace(params.engine, **over)
    except ValueError as exc:
        from bench.errors import ConfigError

        raise ConfigError(f"python -m bench sweep: {exc}") from None
    summary = run_sweep(params, args.out, engine, progress=not args.no_progress)
    print(json.dumps(summary, sort_keys=True))
    return 0
