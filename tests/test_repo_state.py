"""Tests never see what an earlier `make repro`, `make lab` or test run left in the checkout.

:func:`repo_state.clean_copy` builds the repositories tests run DVC on; here it runs on a constructed
checkout that a "previous run" has filled with every kind of state (DVC's run cache and tmp, pipeline
outputs, rewritten tracked results, notebook checkpoints, the sweep store), and the copy must hold
none of it while keeping the developer's uncommitted edits. The list of files `make repro` may rewrite
(`.ci/repro-outputs.txt`, which `.ci/run` checks `git status` against) must be the one README states.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bench.paths import REPO_ROOT
from repo_state import REPRO_OUTPUTS_FILE, clean_copy, is_repro_output, leftover_state, repro_outputs

TESTS = Path(__file__).resolve().parent


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


@pytest.fixture
def used_checkout(tmp_path) -> Path:
    """A committed checkout, then everything a `make repro` + `make lab` + test run leaves behind."""
    src = tmp_path / "src"
    _write(src, ".ci/repro-outputs.txt", "# comment\ndvc.lock\nresults/metrics.json\ndocs/figures/*.png\n")
    _write(src, ".gitignore", ".venv/\n.ipynb_checkpoints/\n/results/notebooks/\n__pycache__/\n")
    _write(src, ".dvc/.gitignore", "/cache\n/tmp\n/config.local\n")
    _write(src, ".dvc/config", "[core]\n    autostage = true\n")
    _write(src, "results/.gitignore", "/evaluate\n")
    for rel, text in {"bench/mod.py": "x = 1\n", "dvc.lock": "committed lock\n", "results/metrics.json": "{}\n",
                      "docs/figures/a.png": "committed png\n", "notebooks/01.ipynb": "{}\n"}.items():
        _write(src, rel, text)
    _git(src, "init", "-q")
    _git(src, "add", "-A")
    _git(src, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    # a developer's uncommitted work: kept
    _write(src, "bench/mod.py", "x = 2\n")
    _write(src, "bench/new_mod.py", "y = 1\n")
    # what runs left behind: never copied
    _write(src, ".dvc/cache/runs/ab/cdef/0123", "run cache entry\n")
    _write(src, ".dvc/cache/files/md5/00/11", "cached output\n")
    _write(src, ".dvc/tmp/rwlock", "{}\n")
    _write(src, ".dvc/config.local", "[cache]\n")
    _write(src, "dvc.lock", "lock after make repro\n")
    _write(src, "results/metrics.json", '{"after": "make repro"}\n')
    _write(src, "results/evaluate/results.parquet", "outputs\n")
    _write(src, "results/notebooks/03_evaluate.ipynb", "{}\n")
    _write(src, "results/sweep/store/job-1/cells.parquet", "stored sweep cell\n")  # not ignored, untracked
    _write(src, "docs/figures/a.png", "refreshed png\n")
    _write(src, "docs/figures/new.png", "a new figure\n")
    _write(src, "notebooks/.ipynb_checkpoints/01-checkpoint.ipynb", "{}\n")
    _write(src, "bench/__pycache__/mod.cpython-311.pyc", "bytecode\n")
    _write(src, ".venv/bin/python", "venv\n")
    return src


def test_clean_copy_keeps_edits_and_drops_every_kind_of_run_state(used_checkout, tmp_path):
    dst = clean_copy(used_checkout, tmp_path / "dst")
    assert leftover_state(dst) == []
    assert (dst / "bench/mod.py").read_text() == "x = 2\n"  # uncommitted edit of a tracked file
    assert (dst / "bench/new_mod.py").read_text() == "y = 1\n"  # a new file git does not ignore
    # what `make repro` rewrote comes from HEAD; what it created is absent
    assert (dst / "dvc.lock").read_text() == "committed lock\n"
    assert (dst / "results/metrics.json").read_text() == "{}\n"
    assert (dst / "docs/figures/a.png").read_text() == "committed png\n"
    assert not (dst / "docs/figures/new.png").exists()
    for gone in (".dvc/cache", ".dvc/tmp", ".dvc/config.local", "results/evaluate", "results/notebooks",
                 "results/sweep", "notebooks/.ipynb_checkpoints", "bench/__pycache__", ".venv"):
        assert not (dst / gone).exists(), gone
    assert (dst / ".dvc/config").is_file() and (dst / "results/.gitignore").is_file()


def test_leftover_state_names_what_a_run_leaves(used_checkout):
    found = leftover_state(used_checkout)
    for path in (".dvc/cache", ".dvc/tmp", "results/notebooks", "results/sweep/store",
                 "notebooks/.ipynb_checkpoints", "bench/__pycache__"):
        assert path in found, (path, found)


def test_the_clean_repo_fixture_holds_no_run_state(clean_repo):
    assert leftover_state(clean_repo) == []
    for rel in _git(REPO_ROOT, "ls-files").splitlines():
        if is_repro_output(rel, repro_outputs(REPO_ROOT)) and (clean_repo / rel).is_file():
            committed = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=REPO_ROOT, capture_output=True,
                                       check=True).stdout
            assert (clean_repo / rel).read_bytes() == committed, rel


def test_no_test_copies_the_checkout_wholesale():
    """A test that needs a repository takes `clean_repo` (or repo_state.clean_copy), never a copytree of
    the root: that copies .dvc/cache and results/ from whatever ran before."""
    offenders = []
    for path in TESTS.rglob("*.py"):
        text = path.read_text()
        if re.search(r"copytree\(\s*(REPO_ROOT|ROOT|REPO)\s*[,)]", text):
            offenders.append(str(path.relative_to(TESTS)))
    assert offenders == []


def test_readme_names_every_file_make_repro_may_rewrite():
    readme = (REPO_ROOT / "README.md").read_text()
    patterns = repro_outputs(REPO_ROOT)
    assert patterns and str(REPRO_OUTPUTS_FILE) in readme
    missing = [p for p in patterns if f"`{p}`" not in readme]
    assert missing == [], f"README does not name these files `make repro` may rewrite: {missing}"
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make repro" in ci and "make test" in ci and ci.index("make repro") < ci.index("make test")
    assert str(REPRO_OUTPUTS_FILE) in ci
