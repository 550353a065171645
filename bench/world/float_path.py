"""Which target really runs a DNN that has no int8 model, when an int8 target is asked for.

An int8 target (the phone's Hexagon 685 DSP) runs quantised networks only. The suite's rule for
"has an int8 model" is torchvision's published quantised weights (``acc_int8`` in
``data/workloads/workloads.csv``). For a DNN without one, a phone's NN runtime (NNAPI) does not
run it on the DSP: its vendor driver places the float graph on another processor, and TFLite's
NNAPI delegate asks for fp32 arithmetic by default. ``data/calibration/float_path.yaml`` says, per
profile and int8 target, which target that is and at what precision, each with its source; where a
profile has no entry, the DNN runs on the profile's CPU (the runtime's CPU fallback).

:func:`resolve` returns the target that is modelled, so ``python -m bench predict`` and the
simulator charge the same processor for the same request.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import bench.validate as V
from bench.errors import DataFileError
from bench.paths import DATA_DIR
from bench.world.profiles import PRECISION_BYTES, PRECISIONS, DeviceProfile, Target

FLOAT_PATH_YAML = DATA_DIR / "calibration" / "float_path.yaml"


class FloatPathError(DataFileError):
    """``float_path.yaml`` is malformed; the message names the file, key and allowed values."""


@dataclass(frozen=True)
class FloatPath:
    """Where an int8 target's float request runs: ``runs_on`` (a target of the same profile) at
    ``precision``, its compute rate scaled by ``compute_ratio`` relative to that target's own."""

    runs_on: str
    precision: str
    compute_ratio: float
    source: str


@dataclass(frozen=True)
class FloatPaths:
    int8_models: frozenset[str]
    paths: Mapping[tuple[str, str], FloatPath]


def _sourced(where: str, entry: Any) -> tuple[Any, str]:
    V.mapping(where, entry, FloatPathError, allowed=("value", "source"), required=("value", "source"))
    src = V.text(f"{where}.source", entry["source"], FloatPathError, empty=False)
    return entry["value"], src


def parse_float_paths(raw: Any, where: str = "float_path.yaml") -> FloatPaths:
    """Validate the parsed YAML (a mapping ``int8_models`` and ``paths``); one clean error per fault."""
    V.mapping(where, raw, FloatPathError, allowed=("int8_models", "paths"), required=("int8_models", "paths"))
    models, _ = _sourced(f"{where}: int8_models", raw["int8_models"])
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        raise FloatPathError.at(f"{where}: int8_models.value", "expected a list of model names", models)
    paths_raw = raw["paths"]
    if not isinstance(paths_raw, list):
        raise FloatPathError.at(f"{where}: paths", "expected a list of {profile, target, runs_on, precision, "
                                "compute_ratio}", paths_raw)
    paths: dict[tuple[str, str], FloatPath] = {}
    for i, p in enumerate(paths_raw):
        at = f"{where}: paths[{i}]"
        V.mapping(at, p, FloatPathError, allowed=("profile", "target", "runs_on", "precision", "compute_ratio"),
                  required=("profile", "target", "runs_on", "precision", "compute_ratio"))
        prof = V.text(f"{at}.profile", p["profile"], FloatPathError, empty=False, max_len=200)
        tgt = V.text(f"{at}.target", p["target"], FloatPathError, empty=False, max_len=200)
        runs_on, s1 = _sourced(f"{at}.runs_on", p["runs_on"])
        runs_on = V.text(f"{at}.runs_on.value", runs_on, FloatPathError, empty=False, max_len=200)
        precision, s2 = _sourced(f"{at}.precision", p["precision"])
        V.choice(f"{at}.precision.value", precision, PRECISIONS, FloatPathError, what="precision")
        ratio, s3 = _sourced(f"{at}.compute_ratio", p["compute_ratio"])
        ratio = V.number(f"{at}.compute_ratio.value", ratio, FloatPathError, gt=0, le=1)
        if (prof, tgt) in paths:
            raise FloatPathError.at(at, "duplicate entry for", f"{prof}/{tgt}", "one entry per profile and target")
        paths[(prof, tgt)] = FloatPath(runs_on, precision, ratio, f"{s1}; {s2}; {s3}")
    return FloatPaths(frozenset(m.strip() for m in models), paths)


_CACHE: dict[Path, FloatPaths] = {}


def load_float_paths(path: Path | str = FLOAT_PATH_YAML) -> FloatPaths:
    path = Path(path)
    if path not in _CACHE:
        _CACHE[path] = parse_float_paths(V.read_yaml(path, FloatPathError), path.name)
    return _CACHE[path]


def float_target(profile: DeviceProfile, target: str, paths: FloatPaths) -> tuple[Target, str]:
    """The target that runs a float DNN sent to the int8 ``target`` of ``profile``, and why."""
    fp = paths.paths.get((profile.name, target))
    if fp is None or fp.runs_on not in profile.targets:
        if "cpu" not in profile.targets:
            return profile.targets[target], "no int8 model and no float path: modelled on the int8 target"
        return profile.targets["cpu"], "no int8 model: the runtime falls back to the CPU"
    host = profile.targets[fp.runs_on]
    r = fp.compute_ratio
    # the same processor, computing at `precision`: its compute rate (and the datasheet peak) scale by r,
    # its tensors by the bytes per value of `precision` (Target.parts_ms reads them from `precision`)
    t = dataclasses.replace(host, precision=fp.precision, gflops_per_ghz=host.gflops_per_ghz * r,
                            peak_gflops_per_ghz=host.peak_gflops_per_ghz * r,
                            runtime=(f"float path of {target}: the float graph on the {fp.runs_on} in {fp.precision} "
                                     f"(its constants fitted to: {host.runtime})"),
                            measurements={})
    return t, (f"no int8 model: {target} runs it as a float graph on the {fp.runs_on} in {fp.precision} "
               f"(data/calibration/float_path.yaml)")


def has_int8_model(workload: str, paths: FloatPaths, acc_int8: float | None = None) -> bool:
    """Whether an int8 model of ``workload`` exists: the workload table's ``acc_int8`` where given, else the list."""
    if acc_int8 is not None:
        return bool(acc_int8 == acc_int8)  # NaN: none published
    return workload in paths.int8_models


def resolve(profile: DeviceProfile, target: str, workload: str, paths: FloatPaths | None = None,
            acc_int8: float | None = None) -> tuple[Target, str]:
    """(the target that runs ``workload`` when ``target`` is asked for, "" or why it differs)."""
    t = profile.targets[target]
    if t.precision != "int8":
        return t, ""
    paths = paths or load_float_paths()
    if has_int8_model(workload, paths, acc_int8):
        return t, ""
    return float_target(profile, target, paths)


__all__ = ["FLOAT_PATH_YAML", "FloatPath", "FloatPathError", "FloatPaths", "float_target", "has_int8_model",
           "load_float_paths", "parse_float_paths", "resolve", "PRECISION_BYTES"]
