"""environment.yml is derived from pyproject.toml's pinned list, never edited by hand.

``python -m bench env-yml`` rewrites it; ``--check`` (and tests/test_environment.py)
fails when the two have drifted apart.
"""

from __future__ import annotations

import sys
import tomllib

from bench.paths import REPO_ROOT
from hw.atomic import atomic_write_text

HEADER = ("# Generated from pyproject.toml by `python -m bench env-yml`; do not edit by hand.\n"
          "# conda env create -f environment.yml && conda activate edge-inference-bench\n")


def pinned_dependencies() -> list[str]:
    """The runtime pins, then every extra's pins (the extras that only name other extras are skipped)."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as fh:
        project = tomllib.load(fh)["project"]
    deps = list(project["dependencies"])
    for pins in project.get("optional-dependencies", {}).values():
        deps += [d for d in pins if not d.startswith(project["name"] + "[") and d not in deps]
    return deps


def render() -> str:
    lines = [HEADER, "name: edge-inference-bench", "channels:", "  - conda-forge", "dependencies:",
             "  - python=3.11", "  - pip", "  - pip:"]
    lines += [f"      - {dep}" for dep in pinned_dependencies()]
    lines += ["      - -e ."]
    return "\n".join(lines[:1]) + "\n".join(lines[1:]) + "\n"


def main(argv: list[str]) -> int:
    path = REPO_ROOT / "environment.yml"
    text = render()
    if "--check" in argv:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print("environment.yml is out of date with pyproject.toml; run `python -m bench env-yml`", file=sys.stderr)
            return 1
        print("environment.yml matches pyproject.toml")
        return 0
    atomic_write_text(path, text)  # a crash mid-write keeps the old file whole
    print(f"wrote {path}")
    return 0
