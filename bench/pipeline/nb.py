"""Notebook set-up shared by the stage notebooks (kept here so the notebooks stay thin).

:func:`setup` shows figures inline (the kernel's inline backend, also under papermill),
sends the suite's log messages to the cell output as plain lines, and :func:`where`
names an output directory without the machine's absolute path (executed notebooks
are shared and archived, so they should not leak local paths).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from bench.paths import REPO_ROOT

log = logging.getLogger("bench")


def setup(level: int = logging.INFO) -> logging.Logger:
    """Inline figures, ``bench`` log records as plain lines on stdout; returns the ``bench`` logger."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None:
            shell.run_line_magic("matplotlib", "inline")
    except ImportError:  # pragma: no cover - IPython comes with ipykernel
        pass
    if not any(getattr(h, "_bench_nb", False) for h in log.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._bench_nb = True  # type: ignore[attr-defined]
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
    return log


def where(path: str | Path) -> str:
    """``path`` relative to the repository when inside it, else ``<temporary dir>/NAME``."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return f"<temporary dir>/{path.name}"
