"""Train DRLDO once per suite, in its own cached DVC stage (``python -m bench train-drldo``).

DRLDO (:mod:`bench.policies.drldo`) is a fitted baseline whose fit is a whole DQN training (~100 CPU-s
per suite at the shipped budget). Trained inside the evaluate stage, it ran again every time anything the
evaluation depends on changed (a suite's scenarios, the number of seeds, the objective); here it depends
only on what it trains on: the DVFO run's config (``seed``, ``world``, ``train``) and which suites evaluate it.

What is trained is exactly what the evaluate stage would train in a worker
(:func:`bench.pipeline.evaluate.fitted_policy_kwargs`: the DVFO run's config from
:func:`bench.pipeline.training.make_config`, with DRLDO's own seed ``derive_seed(seed, "train", "drldo",
suite)``), so the saved learner decides as the in-stage one did: its float tensors are written and read
back exactly (safetensors). Each suite writes ``<out>/<suite>/policy/`` (the learner, as
:meth:`bench.policies.dvfo.DVFOLearner.save`) and ``<out>/<suite>/drldo.json`` (the fit's arguments, which the
evaluate stage checks against its own before using the learner). Suites train in parallel, one process each
(up to one per core): the suites' trainings are the same length, so both cores stay busy.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

#: the file beside a suite's saved learner that records what it was fitted on
FIT_FILE = "drldo.json"
POLICY_DIR = "policy"


def fit_kwargs(suite: str, run_config: Mapping[str, Any], root_seed: int) -> dict[str, Any]:
    """What a suite's DRLDO is fitted on (:func:`bench.pipeline.evaluate.fitted_policy_kwargs` asks here): the DVFO
    run's config (training scenarios, steps, hyper-parameters) with a seed of its own. Kept here, not in the
    evaluate module, so this stage does not depend on (and retrain with every edit of) the evaluation's code."""
    from bench.seeding import derive_seed

    return {"config": dict(run_config), "train_seed": derive_seed(root_seed, "train", "drldo", suite)}


def fit_arguments(suite: str, run_config: Mapping[str, Any], root_seed: int) -> str:
    """The evaluate stage's ``policy_kwargs_json`` of a suite's DRLDO cells (what it trains on), as JSON."""
    return json.dumps(fit_kwargs(suite, run_config, root_seed), sort_keys=True, default=list)


def suite_jobs(params) -> list[dict[str, Any]]:
    """One job per suite of ``params.evaluate.suites`` that evaluates DRLDO: its name, run and fit arguments.

    The run's config is built as the train stage builds it (:func:`bench.pipeline.training.make_config`) and
    passed through JSON as the train stage writes it to ``train.json``, which the evaluate stage reads."""
    from bench.config import as_dict
    from bench.pipeline.training import make_config

    jobs = []
    for suite, spec in params.evaluate.suites.items():
        if "drldo" not in spec.policies:
            continue
        run = params.train.runs[spec.run]
        config = make_config(run.learner, run.profile, as_dict(params.train.learner_config(run.learner)), params.seed,
                             spec.run)
        run_config = json.loads(json.dumps(dataclasses.asdict(config), default=list))
        jobs.append({"suite": suite, "run": spec.run, "fit": fit_arguments(suite, run_config, params.seed)})
    return jobs


def train_suite(job: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Train one suite's DRLDO as the evaluate stage's worker would, and save it (a worker's task)."""
    from bench.policies.drldo import train_drldo
    from bench.policies.dvfo import DVFOConfig

    fit = json.loads(job["fit"])
    fields = dict(fit["config"])
    fields["seed"] = int(fit["train_seed"])  # as bench.policies.drldo.drldo builds it from the same arguments
    config = DVFOConfig.from_dict(fields)
    _single_thread_torch()
    learner = train_drldo(config.to_dict())
    suite_dir = Path(out_dir) / job["suite"]
    learner.save(suite_dir / POLICY_DIR)
    record = {"suite": job["suite"], "run": job["run"], "fit": fit, "train_steps": int(learner.steps)}
    (suite_dir / FIT_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _single_thread_torch() -> None:
    # as in the evaluate stage's workers (one process per core; no torch thread pool per process)
    import torch

    torch.set_num_threads(1)


def train_all(jobs: Sequence[Mapping[str, Any]], out_dir: str | Path, workers: int = 0) -> list[dict[str, Any]]:
    """Every job's DRLDO, ``workers`` processes at a time (0: one per core); in job order."""
    from bench.config import local_cores

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = min(workers or local_cores(), len(jobs))
    if workers <= 1:
        return [train_suite(j, out_dir) for j in jobs]
    # the training module (torch) imported once here, before the fork, so the workers inherit it instead of each
    # importing it (validating params.yaml no longer imports torch: issue 25)
    import bench.policies.dvfo  # noqa: F401

    # forked, like the train stage's side work: the world chosen by apply_world (an environment variable) and
    # plugin learners registered here are there too
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(train_suite, jobs, [out_dir] * len(jobs)))


def saved_fit(drldo_dir: str | Path, suite: str, fit_json: str) -> str:
    """The evaluate stage's ``policy_kwargs_json`` for a suite's DRLDO cells playing the learner saved under
    ``drldo_dir/suite``: ``{"path": ...}``. Refuses (ValueError, one line) a learner fitted on other arguments
    than ``fit_json`` (the stage's params changed and it was not rerun)."""
    suite_dir = Path(drldo_dir) / suite
    record_path = suite_dir / FIT_FILE
    if not record_path.exists():
        raise ValueError(f"{record_path} does not exist: run the drldo stage first (`dvc repro train_drldo` or "
                         f"`python -m bench train-drldo`)")
    saved = json.loads(record_path.read_text())
    if json.dumps(saved.get("fit"), sort_keys=True, default=list) != fit_json:
        raise ValueError(f"{record_path}: DRLDO was trained on other arguments than this evaluation's "
                         f"({saved.get('fit')} != {fit_json}); rerun the drldo stage (`dvc repro train_drldo`)")
    return json.dumps({"path": str(suite_dir / POLICY_DIR)}, sort_keys=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench train-drldo [--params FILE] [--out DIR] [--workers N]``."""
    import argparse
    import sys

    from bench.config import apply_world, load_params
    from bench.paths import PARAMS_FILE, RESULTS_DIR

    ap = argparse.ArgumentParser(prog="python -m bench train-drldo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(PARAMS_FILE))
    ap.add_argument("--out", default=str(RESULTS_DIR / "drldo"))
    ap.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    args = ap.parse_args(argv)
    if args.workers < 0:
        ap.error(f"--workers must be >= 0, got {args.workers}")
    params = load_params(args.params)
    apply_world(params)  # the radio profile of params.yaml for this process and its workers
    out = Path(args.out)
    jobs = suite_jobs(params)
    # a suite no longer evaluating DRLDO leaves no stale learner behind (DVC also clears the output first)
    for old in (out.iterdir() if out.is_dir() else ()):
        if old.is_dir() and (old / FIT_FILE).exists() and old.name not in {j["suite"] for j in jobs}:
            import shutil

            shutil.rmtree(old)
    records = train_all(jobs, out, args.workers or int(os.environ.get("BENCH_TRAIN_WORKERS", "0") or 0))
    out.mkdir(parents=True, exist_ok=True)
    # the suites trained, for people; also keeps the output a non-empty directory when no suite evaluates DRLDO
    (out / "index.json").write_text(json.dumps({"suites": [r["suite"] for r in records]}, indent=2) + "\n")
    print(json.dumps({"suites": [r["suite"] for r in records], "out": str(out)}), file=sys.stdout)
    return 0
