"""Provenance of a measurement or a run: git revision, library versions, CPU model — one helper.

Every artefact that records where it came from (trace sidecars, the HTML report, the perf table)
asks here, so the same fact is written the same way everywhere (a dirty tree is ``<sha>-dirty``,
as ``git describe --dirty`` writes it).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata as _md
from pathlib import Path
from typing import Iterable

_HERE = Path(__file__).resolve().parent


def git_revision(cwd: str | os.PathLike | None = None) -> str:
    """The checked-out commit, ``-dirty`` when tracked files changed; ``unknown`` outside a git checkout."""
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=cwd or _HERE,
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return rev or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Python's version and each distribution's installed version (``not installed`` where absent)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = _md.version(name)
        except _md.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux; ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                name = line.split(":", 1)[1].strip()
                if name and not name.isdigit():
                    return name
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
