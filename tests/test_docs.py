"""The docs hold: every Python example in docs/extending.md runs as written (from a copy of the
repository's data, in a scratch directory), README's measurement and RL examples run, and no
document points outside the repository."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def _run(code: str, tmp_path: Path) -> str:
    # a subprocess per example: examples register things process-wide, as a user's script would
    (tmp_path / "data").symlink_to(ROOT / "data")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    env.pop("EDGEBENCH_PLUGINS", None)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"example failed:\n{code}\n--- stderr ---\n{proc.stderr[-3000:]}"
    return proc.stdout


EXTENDING = _blocks(ROOT / "docs" / "extending.md")


def test_extending_has_an_example_per_extension():
    text = (ROOT / "docs" / "extending.md").read_text()
    for title in ("Add a device profile", "Add a DNN", "Add a scenario", "Add a policy", "Add a meter"):
        assert f"## {title}" in text
    assert len(EXTENDING) >= 5


@pytest.mark.parametrize("code", EXTENDING, ids=[f"extending-{i}" for i in range(len(EXTENDING))])
def test_extending_examples_run(code, tmp_path):
    _run(code, tmp_path)


def test_readme_examples_run(tmp_path):
    blocks = [b for b in _blocks(ROOT / "README.md") if "EnergyMonitor" in b or "gym.make" in b]
    assert len(blocks) >= 2
    for i, code in enumerate(blocks):
        d = tmp_path / str(i)
        d.mkdir()
        _run(code, d)


def test_no_reference_outside_the_repository():
    pattern = re.compile(r"/work/shared|(?<![\w/])(DESIGN|PAPERS)\.md")
    offenders = []
    for path in [*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md"), *(ROOT / "bench").rglob("*.py"),
                 *(ROOT / "hw").rglob("*.py"), *(ROOT / "data").rglob("*.md"), *(ROOT / "data").rglob("*.yaml")]:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
