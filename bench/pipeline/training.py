"""Train one run of params.yaml's ``train.runs``: a learner on a device profile.

The stage notebook calls :func:`train_run`; it builds the learner's config from
params (seed fanned out from the top-level seed, the run's profile as the edge
device), trains, and writes the policy artefact (safe formats only) and the
learning curve (CSV, a DVC plot).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.seeding import derive_seed


def learner_spec(learner: str):
    """The :class:`bench.policies.LearnerSpec` registered as ``learner`` (plugins included)."""
    from bench.policies import LEARNERS

    if learner not in LEARNERS:
        raise ValueError(LEARNERS.unknown_message(learner))
    return LEARNERS[learner]


def learner_module(learner: str):
    return learner_spec(learner).load_module()


def config_class(learner: str):
    return learner_spec(learner).config_class()


def make_config(learner: str, profile: str, overrides: dict[str, Any], root_seed: int, run: str):
    """The learner's config: params overrides + the run's profile + a seed derived for this run."""
    fields = dict(overrides)
    fields.pop("seed", None)
    fields["edge"] = profile
    fields["seed"] = derive_seed(root_seed, "train", run)
    return config_class(learner).from_dict(fields)


def train_run(run: str, learner: str, profile: str, overrides: dict[str, Any], root_seed: int,
              out_dir: str | Path, progress: bool = False) -> dict[str, Any]:
    """Train and write ``out_dir/policy/`` (the artefact), ``curve.csv`` and ``train.json``; returns the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = make_config(learner, profile, overrides, root_seed, run)
    result = learner_spec(learner).train(config, progress=progress)
    result.learner.save(out_dir / "policy")
    curve = result.curve.copy()
    curve.insert(0, "learner", learner)
    curve.insert(0, "run", run)
    curve.to_csv(out_dir / "curve.csv", index=False, float_format="%.6g")
    summary = {"run": run, "learner": learner, "profile": profile, "env_steps": int(result.env_steps),
               "episodes": int(len(result.curve)), "config": json.loads(json.dumps(dataclasses.asdict(config), default=list))}
    # wall time is a measurement of this machine: reported, but kept out of the reproducible files
    (out_dir / "train.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return {**summary, "wall_time_s": result.wall_time_s}


def load_curve(out_dir: str | Path) -> pd.DataFrame:
    return pd.read_csv(Path(out_dir) / "curve.csv")
