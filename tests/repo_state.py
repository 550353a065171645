"""Clean copies of the repository for tests that run DVC or the CLI on a whole checkout.

A test must not depend on what the user ran before it: ``make repro`` fills ``.dvc/cache`` (whose run
cache then *restores* stages instead of running them), ``.dvc/tmp``, ``results/`` and rewrites a few
tracked files; ``make lab`` leaves notebook checkpoints; the sweep keeps its store under
``results/sweep/store``. :func:`clean_copy` therefore copies only what ``git`` knows about, as a fresh
clone of HEAD plus the working tree's uncommitted edits would have it:

* tracked files and untracked files git does not ignore (a new module being written is tested), from
  the working tree;
* except the files ``make repro`` refreshes (``.ci/repro-outputs.txt``) and anything under ``results/``:
  those come from HEAD, whatever the last ``make repro`` wrote;
* never an ignored path (``.dvc/cache``, ``.dvc/tmp``, ``.venv``, checkpoints, pipeline outputs).
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

REPRO_OUTPUTS_FILE = Path(".ci") / "repro-outputs.txt"
#: paths that hold what a previous run left behind: never copied from the working tree (HEAD's copy or none)
STATE_PREFIXES = ("results/", ".dvc/cache/", ".dvc/tmp/")
#: names that are state wherever they occur (never copied, even if someone tracked one by mistake)
STATE_NAMES = (".ipynb_checkpoints", ".pytest_cache", "__pycache__", ".hypothesis")


def repro_outputs(root: Path) -> list[str]:
    """The globs of tracked files ``make repro`` may rewrite (``.ci/repro-outputs.txt`` of ``root``)."""
    path = Path(root) / REPRO_OUTPUTS_FILE
    lines = (ln.strip() for ln in path.read_text().splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def is_repro_output(rel: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) for p in patterns)


def _git(root: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True).stdout


def clean_copy(src: Path, dst: Path) -> Path:
    """Copy the git-visible files of the checkout ``src`` to ``dst`` (see the module doc); returns ``dst``."""
    src, dst = Path(src), Path(dst)
    patterns = repro_outputs(src)
    listed = _git(src, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split(b"\0")
    head = set(_git(src, "ls-tree", "-r", "-z", "--name-only", "HEAD").split(b"\0"))
    for raw in dict.fromkeys(listed):
        if not raw:
            continue
        rel = raw.decode()
        if any(part in STATE_NAMES for part in Path(rel).parts):
            continue
        target = dst / rel
        from_head = rel.startswith(STATE_PREFIXES) or is_repro_output(rel, patterns)
        if from_head:
            if raw not in head:
                continue  # written by a run, never committed
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_git(src, "show", f"HEAD:{rel}"))
        elif (src / rel).is_file():  # a tracked file deleted in the working tree stays deleted
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, target)
    return dst


def leftover_state(root: Path) -> list[str]:
    """Paths under ``root`` that only a previous run creates (what :func:`clean_copy` must never produce)."""
    root = Path(root)
    found = [p for p in (".dvc/cache", ".dvc/tmp", ".venv", "results/notebooks", "results/sweep/store")
             if (root / p).exists()]
    found += [str(p.relative_to(root)) for name in STATE_NAMES for p in root.rglob(name)]
    return sorted(found)
