"""Where things live, resolved from the package location (not the working directory),
so notebooks run from notebooks/, DVC stages run from the repo root and tests
from anywhere all agree."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"
PROFILES_DIR = DATA_DIR / "profiles"
RESULTS_DIR = REPO_ROOT / "results"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PARAMS_FILE = REPO_ROOT / "params.yaml"
