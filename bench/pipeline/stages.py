"""Run a pipeline stage's notebook through papermill with validated parameters.

``python -m bench notebook STAGE [--run NAME]`` is what ``dvc.yaml`` calls: it
validates the whole params.yaml first (a bad key stops before any work), then
executes the stage's notebook with that stage's parameters and writes the
executed copy to ``results/notebooks/`` (a DVC output, never committed). The
notebook writes its data files under ``out_dir``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bench.config import Params, ParamsError, apply_world, as_dict, load_params
from bench.errors import allowed_list
from bench.paths import NOTEBOOKS_DIR, PARAMS_FILE, RESULTS_DIR

KERNEL_NAME = "bench-suite"
NOTEBOOKS = {"profile": "01_profile.ipynb", "train": "02_train.ipynb", "evaluate": "03_evaluate.ipynb",
             "report": "04_report.ipynb"}


def kernel_name() -> str:
    """The venv's registered kernel (the Makefile registers it); else the current interpreter's python3."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if KERNEL_NAME in KernelSpecManager().find_kernel_specs():
            return KERNEL_NAME
    except Exception:  # pragma: no cover - jupyter_client is a dependency
        pass
    logging.getLogger(__name__).warning("kernel %r is not registered (run `make venv`); using 'python3'", KERNEL_NAME)
    return "python3"


def _rel(path: Path) -> str:
    """``path`` relative to notebooks/ (papermill's cwd), so executed notebooks hold no machine paths."""
    return os.path.relpath(path, NOTEBOOKS_DIR)


def _parameters(stage: str, params: Params, run: str | None) -> dict:
    if stage == "profile":
        return {**as_dict(params.profile), "out_dir": _rel(RESULTS_DIR / "profile")}
    if stage == "train":
        if run not in params.train.runs:
            raise ParamsError.at("stage train --run", "needs the name of a run in params.yaml's train.runs", run,
                                 allowed_list(sorted(params.train.runs)))
        r = params.train.runs[run]
        return {"run": run, "learner": r.learner, "profile": r.profile,
                "config": as_dict(params.train.learner_config(r.learner)), "curve_seeds": params.train.curve_seeds,
                "out_dir": _rel(RESULTS_DIR / "train" / run)}
    if stage == "evaluate":
        ev = params.evaluate
        # steps = 0 (the default): every episode covers its whole scenario (the scenario's own `steps`)
        return {"seeds": ev.seeds, "steps": ev.steps, "workers": ev.workers, "n_boot": ev.n_boot,
                "engine": as_dict(params.engine), "objective": as_dict(params.objective),
                "headroom_threshold": ev.headroom_threshold,
                "suites": as_dict(ev.suites), "train_dir": _rel(RESULTS_DIR / "train"),
                "drldo_dir": _rel(RESULTS_DIR / "drldo"),  # the drldo stage's learners (bench/pipeline/drldo_stage.py)
                "out_dir": _rel(RESULTS_DIR / "evaluate"), "metrics_path": _rel(RESULTS_DIR / "metrics.json")}
    if stage == "report":
        # the whole params for the HTML page's run metadata (the report restates what produced it)
        return {"results_dir": _rel(RESULTS_DIR), "out_dir": _rel(RESULTS_DIR / "report"), "params": as_dict(params)}
    raise ParamsError.at("notebook", "unknown stage", stage, allowed_list(NOTEBOOKS))


def stage_parameters(stage: str, params_path: Path = PARAMS_FILE, run: str | None = None) -> dict:
    """The papermill parameters of ``stage``: the top-level seed, its params section and out_dir."""
    params = load_params(params_path)
    apply_world(params)  # the radio profile of params.yaml for this stage and its workers
    # no progress bars in executed notebooks: each update would be one more output chunk
    return {"seed": params.seed, **_parameters(stage, params, run), "progress": False}


def _validated(stage: str, params_path: Path, run: str | None) -> tuple[dict, dict[str, str]]:
    """:func:`stage_parameters` and the environment :func:`bench.config.apply_world` set (a forked child's task)."""
    before = dict(os.environ)
    parameters = stage_parameters(stage, params_path, run)
    return parameters, {k: v for k, v in os.environ.items() if before.get(k) != v}


def _import_papermill():
    """papermill, without the IRI grammar jsonschema would compile on import.

    jsonschema registers an ``iri`` format checker when ``rfc3987_syntax`` is installed (a Jupyter Server
    dependency), and that module builds an Earley parser of RFC 3987 at import: 1.5 CPU-s of every stage's
    papermill process (issue 25; `python -X importtime -c "import papermill"`). Nothing here checks an IRI:
    nbformat's notebook schemas have no ``format`` keyword and papermill and nbclient use no format checker,
    so this process marks the module absent (jsonschema then registers no ``iri`` checker, as without it).
    """
    import sys

    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import papermill as pm

    return pm


def run_stage(stage: str, params_path: Path = PARAMS_FILE, run: str | None = None, output: Path | None = None) -> Path:
    # params.yaml is validated in a forked child while this process imports papermill: both import most of
    # what they need from scratch (the validation: the policies' registries, torch included, ~2.3 CPU-s;
    # papermill ~1.2), so on 2 cores the stage's notebook starts ~1.2 s sooner (issue 25). A bad key still
    # stops the stage before any notebook runs (the child's ParamsError is raised here).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
        pending = pool.submit(_validated, stage, params_path, run)
        pm = _import_papermill()
        parameters, world_env = pending.result()
    os.environ.update(world_env)  # the world of the stage (apply_world), for the kernel and its workers
    notebook = NOTEBOOKS[stage]
    if output is None:
        name = notebook if run is None else notebook.replace(".ipynb", f"_{run}.ipynb")
        output = RESULTS_DIR / "notebooks" / name
    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS_DIR / notebook), str(output), parameters=parameters,
                        kernel_name=kernel_name(), cwd=str(NOTEBOOKS_DIR), progress_bar=False)
    return output
