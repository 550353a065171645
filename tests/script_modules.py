"""The repository's scripts/ are files, not a package: a test that checks one imports it here, by path."""
from __future__ import annotations

import importlib.util
from types import ModuleType

from bench.paths import REPO_ROOT


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a fresh module (executed on each call, so a test never sees another's state)."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
