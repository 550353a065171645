"""Where things live, resolved from the package location (not the working directory),
so notebooks run from notebooks/, DVC stages run from the repo root and tests
from anywhere all agree.

From a clone (or an editable install) everything is under the repository root. From an
installed wheel there is no repository: the shipped reference data (profiles, scenarios,
network and workload tables, DVFO's measured curves, the papers' claims, sample device
logs) come from the package itself (``bench/data``, mapped from ``data/`` at build time),
and params.yaml / results/ are looked up in the working directory.
"""

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
_PARENT = _PACKAGE_DIR.parent
#: True when running from the repository (a clone or an editable install), False from a wheel
IN_REPO = (_PARENT / "pyproject.toml").is_file() and (_PARENT / "data" / "profiles").is_dir()

REPO_ROOT = _PARENT if IN_REPO else Path.cwd()
DATA_DIR = _PARENT / "data" if IN_REPO else _PACKAGE_DIR / "data"
#: BENCH_DATA_DIR: read the world from another copy of data/ (the sensitivity stage runs each perturbed
#: world in a fresh process pointed at a perturbed copy, so no loader needs a hook and data/ is never written)
if os.environ.get("BENCH_DATA_DIR"):
    DATA_DIR = Path(os.environ["BENCH_DATA_DIR"]).resolve()
PROFILES_DIR = DATA_DIR / "profiles"
RESULTS_DIR = REPO_ROOT / "results"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_FILE = REPO_ROOT / "params.yaml"
