"""nbval's run of each notebook (``make test``: ``--nbval-lax``, the notebooks' CI-sized defaults) also checks what a
reader sees in each cell's outputs: a plotting cell shows an image, no progress-bar warning, traceback or machine
path (tests/notebook_checks.py). nbval's execution is the only one of the notebooks with their defaults (issue 25:
tests/test_pipeline.py checks the notebooks the pipeline executed), so these checks read its outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from notebook_checks import cell_problems, machine_paths  # noqa: E402


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    outputs = getattr(item, "test_outputs", None)  # nbval's IPyNbCell: what the kernel sent for this cell
    cell = getattr(item, "cell", None)
    if outputs is None or cell is None or cell.get("cell_type") != "code":
        return result
    if "parameters" in cell.get("metadata", {}).get("tags", []):
        return result
    problems = cell_problems(f"{Path(str(item.path)).name} cell {getattr(item, 'cell_num', '?')}", cell.source,
                             outputs, machine_paths())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return result
