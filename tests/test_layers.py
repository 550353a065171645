"""The package's layers import one way:
hw <- validate <- world <- sim <- policies <- config <- pipeline <- perf/testbed <- cli.

Parsed from the source (``ast``), so the test sees every import, including the lazy
ones inside functions, and fails on a cycle between modules or a layer importing
upwards (e.g. ``hw`` importing ``bench``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bench.pipeline.codedeps import imports_in

ROOT = Path(__file__).resolve().parents[1]
# rank of each layer: a module may import only modules of its own rank or lower
LAYERS = {"hw": 0, "bench.paths": 0, "bench.seeding": 0, "bench.errors": 0, "bench.validate": 0, "bench.world": 1,
          "bench.sim": 2, "bench.policies": 3, "bench.config": 4, "bench.envfile": 4, "bench.pipeline": 5,
          "bench.perf": 6, "bench.testbed": 6, "bench.cli": 7, "bench.cli_world": 7, "bench.__main__": 7, "bench": 7}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in ("bench", "hw") for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, name: str, roots: tuple[str, ...] | None = ("bench", "hw")) -> set[str]:
    """Every import of the module (the lazy ones too), read by the walker the DVC code deps use."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in([tree], pkg, roots)


def _rank(module: str) -> int:
    best = max((k for k in LAYERS if module == k or module.startswith(k + ".")), key=len, default=None)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return LAYERS[best]


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: {m for m in _imports(p, name) if m in mods and m != name} for name, p in mods.items()}


def test_every_layer_names_a_module():
    """No stale entries: each key of LAYERS is a module or package that exists."""
    mods = _modules()
    stale = sorted(k for k in LAYERS if k not in mods)
    assert not stale, f"LAYERS names modules that do not exist: {stale}"


def test_hw_imports_nothing_from_bench():
    bad = [(n, m) for n, deps in _graph().items() if n.startswith("hw") for m in deps if m.startswith("bench")]
    assert not bad, f"hw must not import bench: {bad}"


def test_imports_go_down_the_layers():
    upward = [(n, m) for n, deps in _graph().items() for m in deps
              if _rank(m) > _rank(n) and not n.startswith(m + ".")]  # a package may not import its parent
    assert not upward, "imports against the layer order (module -> imported): " + ", ".join(f"{a} -> {b}" for a, b in upward)


def test_no_import_cycles():
    graph = _graph()
    # a package importing its own submodules (re-exports in __init__) is not a cycle
    for n in graph:
        graph[n] = {m for m in graph[n] if not m.startswith(n + ".")}
    seen: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        seen[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if seen.get(m) == 1:
                cycle = stack[stack.index(m):] + [m]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if m not in seen:
                visit(m)
        stack.pop()
        seen[n] = 2

    for n in sorted(graph):
        if n not in seen:
            visit(n)


def test_model_layers_build_no_argument_parsers():
    """The command line is the CLI layer's (bench/cli.py, bench/cli_world.py): a model, policy or simulator
    module takes values, not argv. Module entry points of DVC stages (``python -m bench.world.attention``,
    its ``cmd`` in dvc.yaml) and ``opclasses`` are the known exceptions."""
    allowed = {"bench.world.attention", "bench.world.opclasses"}
    parsers = sorted(name for name, path in _modules().items()
                     if name.startswith(("bench.world", "bench.sim", "bench.policies")) and name not in allowed
                     and "argparse" in _imports(path, name, roots=None))
    assert not parsers, f"argument parsers in model modules (move them to the CLI layer): {parsers}"
