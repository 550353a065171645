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
driver as each result arrives, with its size and SHA-256 in ``manifest.jsonl``. A
resumed sweep uses an entry only if its bytes are the ones recorded; anything else
(missing, truncated, garbage, another cell's file, a directory) is reported in one
line and recomputed. A lock file keeps a second sweep from writing the same store. A rerun after an interruption (Ctrl-C, a lost
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
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from bench.errors import ConfigError
from bench.paths import DATA_DIR, REPO_ROOT
from bench.pipeline.engine import Engine, EngineAddressError, map_ordered, probe_scheduler, session
from bench.pipeline.evaluate import Cell, run_cell
from bench.seeding import derive_seeds
from hw.atomic import file_sha256

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

class StoreBusyError(ConfigError):
    """Another sweep is writing to the same store (one line, exit 2)."""


class StoreCorruptError(RuntimeError):
    """An entry changed after it was verified (someone wrote to the store during the run)."""


#: the store's manifest: one JSON line per entry written, ``{"key", "files": {name: [bytes, sha256]}}``
MANIFEST = "manifest.jsonl"


class Store:
    """One file per finished cell (and one directory per train job) under ``root``, each written
    atomically (temporary file, fsync, rename, fsync of the directory) and then recorded with its
    size and SHA-256 in an append-only manifest. Reading verifies against the manifest, so a
    missing, truncated, corrupt or swapped file (or a directory in a file's place) is found,
    reported in one line and recomputed, never used. ``with Store(root):`` holds an exclusive
    ``fcntl`` lock on ``root/.lock``: a second writer is refused, not interleaved.
    """

    def __init__(self, root: str | Path, report: Callable[[str], None] | None = None):
        self.root = Path(root)
        (self.root / "train").mkdir(parents=True, exist_ok=True)
        (self.root / "cells").mkdir(parents=True, exist_ok=True)
        self.report = report or (lambda line: print(line, file=sys.stderr))
        self.repaired = 0
        self._lock_fh = None
        self._manifest: dict[str, dict[str, list]] | None = None

    # -- lock and housekeeping ---------------------------------------------------------------
    def __enter__(self) -> "Store":
        import fcntl

        fh = open(self.root / ".lock", "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            words = fh.read(200).split()
            holder = words[-1] if words and words[-1].isdigit() else ""
            fh.close()
            raise StoreBusyError(f"{self.root}: another sweep is writing to this store (pid {holder or '?'}); "
                                 "allowed: one writer at a time (wait for it, or use another --out)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock_fh = fh
        self._remove_temp_files()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fh is not None:
            self._lock_fh.close()  # closing releases the flock
            self._lock_fh = None

    def _remove_temp_files(self) -> None:
        """Temporary files of an interrupted write (never renamed in, so never in the manifest)."""
        for tmp in list(self.root.rglob(".*.tmp")):
            if tmp.is_file() or tmp.is_symlink():
                tmp.unlink()

    # -- manifest ------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, dict[str, list]]:
        if self._manifest is None:
            self._manifest, bad = {}, 0
            path = self.root / MANIFEST
            if path.is_file():
                with open(path, "rb") as fh:
                    for raw in fh:
                        try:
                            entry = json.loads(raw.decode("utf-8"))
                            key, files = entry["key"], entry["files"]
                            if not (isinstance(key, str) and isinstance(files, dict) and all(
                                    isinstance(n, str) and isinstance(v, list) and len(v) == 2 for n, v in files.items())):
                                raise ValueError(key)
                        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                            bad += 1  # a torn last line (a crash mid-append) or garbage: its entry is recomputed
                            continue
                        self._manifest[key] = files
            elif path.exists() or path.is_symlink():
                bad += 1
                self._discard(path)  # a directory (or dangling link) in the manifest's place
            if bad:
                self.report(f"sweep store: {path}: {bad} unreadable manifest line(s) skipped; their entries are recomputed")
        return self._manifest

    def _record(self, key: str, files: dict[str, Path]) -> None:
        entry = {n: [p.stat().st_size, file_sha256(p)] for n, p in files.items()}
        path = self.root / MANIFEST
        if path.exists() and not path.is_file():
            raise StoreCorruptError(f"{path} is not a file")
        line = json.dumps({"key": key, "files": entry}, sort_keys=True) + "\n"
        with open(path, "ab") as fh:
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
        self.manifest[key] = entry

    def _problem(self, key: str, files: Mapping[str, Path]) -> str:
        """Why ``key``'s files cannot be used ("" when each is the file the manifest recorded)."""
        recorded = self.manifest.get(key)
        if recorded is None:
            return "not in the manifest (an interrupted write, or put there by hand)"
        for name, (size, digest) in sorted(recorded.items()):
            path = files.get(name) if name in files else None
            if path is None:
                return f"the manifest lists {name!r}, which this entry does not have"
            if not path.exists() and not path.is_symlink():
                return f"{name}: missing"
            if path.is_symlink() or not path.is_file():
                return f"{name}: not a regular file"
            actual = path.stat().st_size
            if actual != size:
                return f"{name}: {actual} bytes, the manifest recorded {size}"
            if file_sha256(path) != digest:
                return f"{name}: content differs from what was written (SHA-256 mismatch)"
        return ""

    def _discard(self, path: Path) -> None:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()

    # -- cells -------------------------------------------------------------------------------
    def _cell_path(self, key: str) -> Path:
        return self.root / "cells" / f"{key}.parquet"

    def has_cell(self, key: str) -> bool:
        """True when the cell's file is the one the manifest recorded; a bad one is reported and removed."""
        path = self._cell_path(key)
        if key not in self.manifest and not path.exists() and not path.is_symlink():
            return False  # simply not computed yet
        why = self._problem(key, {path.name: path})
        if not why:
            return True
        self.report(f"sweep store: cell {key}: {why}; recomputing it")
        self.repaired += 1
        self.manifest.pop(key, None)
        self._discard(path)
        return False

    def put_cell(self, key: str, frame: pd.DataFrame) -> None:
        path = self._cell_path(key)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        _atomic_write(path, lambda p: frame.to_parquet(p, index=False))
        self._record(key, {path.name: path})

    def get_cell(self, key: str) -> pd.DataFrame:
        path = self._cell_path(key)
        why = self._problem(key, {path.name: path})
        if why:
            raise StoreCorruptError(f"sweep store: cell {key}: {why} (changed during this run; rerun to recompute)")
        return pd.read_parquet(path)

    # -- train artefacts ---------------------------------------------------------------------
    def _train_files(self, key: str) -> dict[str, Path]:
        d = self.root / "train" / key
        return {name: d / name for name in self.manifest.get(key, {})}

    def has_train(self, key: str) -> bool:
        d = self.root / "train" / key
        if key not in self.manifest and not d.exists() and not d.is_symlink():
            return False
        why = self._problem(key, self._train_files(key)) if key in self.manifest else \
            "not in the manifest (an interrupted write, or put there by hand)"
        if not why:
            return True
        self.report(f"sweep store: train job {key}: {why}; retraining it")
        self.repaired += 1
        self.manifest.pop(key, None)
        self._discard(d)
        return False

    def put_train(self, key: str, files: Mapping[str, bytes]) -> None:
        d = self.root / "train" / key
        if d.is_symlink() or (d.exists() and not d.is_dir()):
            self._discard(d)
        d.mkdir(parents=True, exist_ok=True)
        written: dict[str, Path] = {}
        for name, blob in sorted(files.items()):
            path = (d / name).resolve()
            if not path.is_relative_to(d.resolve()) or name.startswith("/"):
                raise ValueError(f"artefact file {name!r} points outside its directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(path, lambda p, blob=blob: Path(p).write_bytes(blob))
            written[name] = d / name
        self._record(key, written)

    def get_train(self, key: str) -> dict[str, bytes]:
        files = self._train_files(key)
        why = self._problem(key, files)
        if why:
            raise StoreCorruptError(f"sweep store: train job {key}: {why} (changed during this run; rerun to recompute)")
        return {n: p.read_bytes() for n, p in sorted(files.items())}


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file beside ``path``: fsync it, rename it in, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power cut
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the stage

def run_sweep(params, out_dir: str | Path, engine: Engine | None = None, progress: bool = False,
              limit: int | None = None) -> dict[str, Any]:
    """Train what the store lacks, evaluate what it lacks, write the tidy table and the summary.

    ``limit`` stops after that many newly computed cells (tests use it to interrupt a sweep).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    engine = engine or params.engine
    summary: dict[str, Any] = {"enabled": bool(params.sweep.enabled), "backend": engine.backend}
    if not params.sweep.enabled:
        (out_dir / "store").mkdir(exist_ok=True)  # the stage's declared output, empty while the sweep is off
        _write_outputs(out_dir, pd.DataFrame(columns=list(KEY_COLUMNS)), {**summary, "cells": 0, "computed": 0,
                                                                         "reused": 0, "train_jobs": 0})
        return summary
    if engine.backend == "dask" and engine.address:
        probe_scheduler(engine.address)  # before anything is expanded or trained
    jobs, cells = expand(params)
    with Store(out_dir / "store") as store:  # one writer at a time
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
                        desc="sweep: evaluate", client=client,
                        on_result=lambda i, frame: store.put_cell(todo[i].key, frame))
        done = [c for c in cells if c.key in store.manifest]
        results = pd.concat([store.get_cell(c.key) for c in done], ignore_index=True) if done else \
            pd.DataFrame(columns=list(KEY_COLUMNS))
        summary.update({"cells": len(cells), "computed": len(todo), "reused": len(done) - len(todo),
                        "missing": len(cells) - len(done), "train_jobs": len(jobs), "trained": len(todo_jobs),
                        "repaired": store.repaired})
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
    _atomic_write(out_dir / "summary.csv", lambda p: summarise(results).to_csv(p, index=False, float_format="%.6g"))
    text = json.dumps(dict(summary), indent=2, sort_keys=True) + "\n"
    _atomic_write(out_dir / "summary.json", lambda p: Path(p).write_text(text))


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
    try:
        summary = run_sweep(params, args.out, engine, progress=not args.no_progress)
    except EngineAddressError as exc:
        from bench.errors import ConfigError

        raise ConfigError(f"{'--address' if args.address is not None else args.params}: {exc}") from None
    print(json.dumps(summary, sort_keys=True))
    return 0
