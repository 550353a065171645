"""CI-sized stand-ins for upstream stages, so every notebook runs on its own.

Under nbval (or when opened in JupyterLab without having run the pipeline) a
notebook whose inputs are missing builds them here, at a tiny size, in a
temporary directory: two learners trained for a few thousand steps and a short
evaluation. The numbers are real (computed by the same code) but small; the
pipeline's `dvc repro` never uses this module.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.pipeline.evaluate import conditions, run_cells, suite_cells
from bench.pipeline.training import train_run

CI_RUNS = {
    "autoscale_phone": ("autoscale", "phone_sd845", {"total_steps": 4000, "epsilon_decay_steps": 3000,
                                                     "scenarios": ["wifi_strong", "wifi_weak", "cpu_corunner"]}),
    "dvfo_jetson": ("dvfo", "jetson_xavier_nx", {"total_steps": 1500, "learning_starts": 200, "buffer_size": 2000,
                                                  "batch_size": 32, "hidden_sizes": [32, 32],
                                                  "scenarios": ["dvfo_trickle_5mbps"], "max_episode_steps": 100}),
}
CI_SUITES = {
    "autoscale_phone": {"run": "autoscale_phone", "policies": ["cpu_only", "cloud_only", "greedy_oracle", "best_found_schedule"],
                        "scenarios": ["wifi_strong", "mobility_walk"]},
    "dvfo_jetson": {"run": "dvfo_jetson", "policies": ["edge_gpu_max", "cloud_only", "greedy_oracle", "best_found_schedule"],
                    "scenarios": ["dvfo_trickle_5mbps"]},
}


def ci_train(out_dir: str | Path | None = None, seed: int = 0, curve_seeds: int = 1, progress: bool = False) -> Path:
    """Train both learners at CI size under ``out_dir/<run>`` (a new temp dir by default), ``curve_seeds`` each."""
    out = Path(out_dir or tempfile.mkdtemp(prefix="bench-train-"))
    for run, (learner, profile, config) in CI_RUNS.items():
        train_run(run, learner, profile, config, seed, out / run, progress=progress, curve_seeds=curve_seeds)
    return out


def ci_cells(train_dir: str | Path, seed: int = 0, steps: int = 60, seeds: int = 2):
    """The cells of :data:`CI_SUITES` for learners trained under ``train_dir``."""
    return [c for name, s in CI_SUITES.items()
            for c in suite_cells(name, Path(train_dir) / s["run"], s["policies"], s["scenarios"], seeds, steps, seed)]


def ci_results(train_dir: str | Path, seed: int = 0, steps: int = 60, seeds: int = 2):
    """A short evaluation of :data:`CI_SUITES` (serial: CI machines are small)."""
    return run_cells(ci_cells(train_dir, seed, steps, seeds), workers=1, progress=False)


def ci_conditions(train_dir: str | Path, seed: int = 0, steps: int = 60, seeds: int = 2):
    """The per-request conditions behind :func:`ci_results` (see :func:`bench.pipeline.evaluate.conditions`)."""
    return conditions(ci_cells(train_dir, seed, steps, seeds))
