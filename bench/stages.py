"""Run a pipeline stage's notebook through papermill with validated parameters.

``python -m bench notebook profile`` is what ``dvc.yaml`` calls: it validates
the whole params.yaml first (a bad key stops before any work), then executes
``notebooks/01_profile.ipynb`` with the stage's section as papermill parameters
and writes the executed copy to ``results/notebooks/`` (a DVC output, never
committed). The notebook writes its data files under ``out_dir``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bench.config import as_dict, load_params
from bench.paths import NOTEBOOKS_DIR, PARAMS_FILE, RESULTS_DIR

KERNEL_NAME = "bench-suite"


@dataclass(frozen=True)
class Stage:
    notebook: str
    section: str  # params.yaml section handed to the notebook
    out_dir: str  # relative to results/


STAGES = {
    "profile": Stage("01_profile.ipynb", "profile", "profile"),
}


def kernel_name() -> str:
    """The venv's registered kernel (Makefile registers it); else the current interpreter's python3."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if KERNEL_NAME in KernelSpecManager().find_kernel_specs():
            return KERNEL_NAME
    except Exception:  # pragma: no cover - jupyter_client is a dependency
        pass
    logging.getLogger(__name__).warning(
        "kernel %r is not registered (run `make venv`); using 'python3'", KERNEL_NAME)
    return "python3"


def stage_parameters(stage: str, params_path: Path = PARAMS_FILE) -> dict:
    """The papermill parameters of ``stage``: seed, its params section and out_dir."""
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}; stages: {sorted(STAGES)}")
    spec = STAGES[stage]
    params = load_params(params_path)
    section = as_dict(getattr(params, spec.section))
    return {"seed": params.seed, **section, "out_dir": str(RESULTS_DIR / spec.out_dir)}


def run_stage(stage: str, params_path: Path = PARAMS_FILE, output: Path | None = None) -> Path:
    import papermill as pm

    parameters = stage_parameters(stage, params_path)
    spec = STAGES[stage]
    output = output or RESULTS_DIR / "notebooks" / spec.notebook
    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(NOTEBOOKS_DIR / spec.notebook), str(output), parameters=parameters,
        kernel_name=kernel_name(), cwd=str(NOTEBOOKS_DIR), progress_bar=False,
    )
    return output
