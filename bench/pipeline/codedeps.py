"""The code dependencies of every DVC stage, derived from what the stage imports.

``python -m bench dvc-deps`` prints them, ``--check`` exits 1 when ``dvc.yaml`` has drifted from
them (``tests/test_codedeps.py`` runs it), ``--write`` rewrites the code entries of each stage's
``deps:`` in place (data, params and result entries are kept as they are).

How a stage's code is found (static, from the source with :mod:`ast`, so nothing is executed):

* the stage's ``cmd`` names its entry: ``python -m bench.MODULE`` that module; ``python -m bench
  SUBCOMMAND`` the modules that ``bench/cli.py``'s handler of that sub-command imports (plus the
  dispatcher itself: ``bench/__main__.py``, ``bench/cli.py`` and what ``main()`` imports); ``python
  -m bench notebook STAGE`` also every ``bench``/``hw`` module the stage's notebook imports;
* from those entries, every ``bench``/``hw`` import is followed, the ones inside functions too (a
  lazy import still runs when the stage calls it); the dispatcher's other sub-commands are not
  followed, so editing ``predict`` does not re-run ``train``;
* a package whose every module is needed is listed as its directory.

The closure over-approximates (a lazily imported module the stage never calls still counts),
which only costs a rerun; it never misses a module the stage can import.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shlex
import sys
from functools import lru_cache
from pathlib import Path

from bench.paths import REPO_ROOT
from hw.atomic import atomic_write_text

CODE_ROOTS = ("bench", "hw")
DVC_FILE = REPO_ROOT / "dvc.yaml"
#: cli.py functions that every ``python -m bench`` command runs through
_DISPATCH = ("main", "_run", "_exit_code", "_one_line_argparse", "_one_line_usage_error")


def _module_path(root: Path, module: str) -> Path | None:
    base = root.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _resolve(root: Path, module: str) -> str | None:
    """The longest importable prefix of ``module`` (``from a.b import c``: ``a.b.c`` or ``a.b``)."""
    parts = module.split(".")
    while parts:
        name = ".".join(parts)
        if _module_path(root, name) is not None:
            return name
        parts.pop()
    return None


def imports_in(nodes, pkg: str, roots: tuple[str, ...] | None = CODE_ROOTS) -> set[str]:
    """Modules imported anywhere in ``nodes`` (inside functions too), relative imports resolved against the
    package ``pkg``; ``from a import b`` counts ``a`` and ``a.b``. Only those under ``roots`` (all: None).
    The one import walker: ``tests/test_layers.py`` reads the layers with it too."""
    found: set[str] = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - sub.level + 1]
                    base = ".".join(up + ([sub.module] if sub.module else []))
                found.add(base)
                found.update(f"{base}.{a.name}" for a in sub.names)
    return {m for m in found if roots is None or m.split(".")[0] in roots}


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def module_imports(root: Path, module: str, only: tuple[str, ...] | None = None) -> set[str]:
    """``bench``/``hw`` modules ``module`` imports (all of them, or only top level + the functions ``only``)."""
    path = _module_path(root, module)
    if path is None:
        return set()
    tree = _tree(path)
    pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if only is None:
        nodes = [tree]
    else:
        nodes = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        nodes += [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in only]
    out = {_resolve(root, m) for m in imports_in(nodes, pkg)}
    return {m for m in out if m}


def _parents(module: str) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(root: Path, entries: set[str], dispatcher_only: tuple[str, ...] | None = None) -> set[str]:
    """Every module reachable from ``entries`` (``bench.cli`` followed only through ``dispatcher_only``)."""
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        only = dispatcher_only if mod == "bench.cli" and dispatcher_only is not None else None
        for dep in module_imports(root, mod, only) | set(_parents(mod)):
            if dep not in seen and _module_path(root, dep) is not None:
                todo.append(dep)
    return seen


def _cli_handlers(root: Path) -> dict[str, tuple[str, ...]]:
    """Sub-command name -> the cli.py functions that run it (its handler and the builder of its parser).

    Read from ``bench/cli.py``'s table ``COMMANDS = {"name": Command(help, handler, build), ...}``.
    """
    tree = _tree(root / "bench" / "cli.py")
    handlers: dict[str, tuple[str, ...]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            for k, v in zip(node.value.keys, node.value.values):
                if isinstance(k, ast.Constant) and isinstance(v, ast.Call):
                    handlers[str(k.value)] = tuple(a.id for a in v.args if isinstance(a, ast.Name))
    return handlers


def notebook_imports(path: Path) -> set[str]:
    """``bench``/``hw`` modules imported by a notebook's code cells."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = "".join(cell.get("source", []))
        src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
        try:
            found |= imports_in([ast.parse(src)], "")
        except SyntaxError:
            continue
    return found


def stage_modules(root: Path, cmd: str) -> set[str]:
    """The modules a stage's command can import."""
    argv = shlex.split(re.sub(r"\$\{[^}]*\}", "X", cmd))
    if len(argv) < 3 or argv[1] != "-m":
        raise ValueError(f"dvc.yaml: cannot read the entry of command {cmd!r} (expected `python -m MODULE ...`)")
    module = argv[2]
    if module != "bench":
        return closure(root, {module})
    sub = argv[3] if len(argv) > 3 else ""
    handler = _cli_handlers(root).get(sub)
    if handler is None:
        raise ValueError(f"dvc.yaml: unknown sub-command {sub!r} in {cmd!r}")
    entries = {"bench.__main__", "bench.cli"}
    mods = closure(root, entries, dispatcher_only=(*_DISPATCH, *handler))
    if sub == "notebook" and len(argv) > 4:
        from bench.pipeline.stages import NOTEBOOKS

        nb = root / "notebooks" / NOTEBOOKS[argv[4]]
        mods |= closure(root, {_resolve(root, m) for m in notebook_imports(nb)} - {None})
    return mods


def _all_modules(root: Path, package_dir: Path) -> set[str]:
    out = set()
    for p in package_dir.rglob("*.py"):
        rel = p.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.add(".".join(parts))
    return out


def as_paths(root: Path, modules: set[str]) -> list[str]:
    """Repository paths for ``modules``: a package directory where all its modules are needed."""
    files = {_module_path(root, m).relative_to(root).as_posix() for m in modules}
    dirs: list[str] = []
    for d in sorted({p.parent for p in (root / f for f in files)}, key=lambda p: len(p.parts)):
        rel = d.relative_to(root).as_posix()
        if rel in CODE_ROOTS or rel.split("/")[0] not in CODE_ROOTS:
            if rel not in CODE_ROOTS:
                continue
        if any(rel == x or rel.startswith(x + "/") for x in dirs):
            continue
        if _all_modules(root, d) <= modules:
            dirs.append(rel)
    out = set(dirs)
    for f in files:
        if not any(f.startswith(x + "/") for x in dirs):
            out.add(f)
    return sorted(out)


def _is_code(entry: str) -> bool:
    return entry.split("/")[0] in CODE_ROOTS


def _stages(text: str) -> dict[str, str]:
    """Stage name -> cmd, read from dvc.yaml with safe_load."""
    import yaml

    data = yaml.safe_load(text) or {}
    out = {}
    for name, stage in (data.get("stages") or {}).items():
        body = stage.get("do", stage)
        out[name] = body["cmd"]
    return out


def expected(root: Path = REPO_ROOT, dvc_file: Path | None = None) -> dict[str, list[str]]:
    """Stage -> its code dependencies (paths relative to the repository)."""
    text = (dvc_file or root / "dvc.yaml").read_text(encoding="utf-8")
    return {name: as_paths(root, stage_modules(root, cmd)) for name, cmd in _stages(text).items()}


def _stage_blocks(lines: list[str]):
    """(stage, index of its `deps:` line, indices of its dependency entries) for each stage."""
    stage, in_deps, deps_line, entries, indent = None, False, None, [], None
    for i, line in enumerate(lines):
        m = re.match(r"^  ([A-Za-z0-9_-]+):\s*$", line)
        if m:
            if stage is not None and deps_line is not None:
                yield stage, deps_line, entries
            stage, in_deps, deps_line, entries = m.group(1), False, None, []
            continue
        if re.match(r"^\s+deps:\s*$", line):
            in_deps, deps_line, entries, indent = True, i, [], None
            continue
        if in_deps:
            m = re.match(r"^(\s+)- (\S.*?)\s*$", line)
            if m and (indent is None or len(m.group(1)) == indent):
                indent = len(m.group(1))
                entries.append(i)
                continue
            if line.strip().startswith("#") or not line.strip():
                continue
            in_deps = False
    if stage is not None and deps_line is not None:
        yield stage, deps_line, entries


def current(text: str) -> dict[str, list[str]]:
    """Stage -> the code entries its deps list today."""
    lines = text.splitlines()
    out = {}
    for stage, _, entries in _stage_blocks(lines):
        out[stage] = sorted(e for e in (lines[i].strip()[2:].strip() for i in entries) if _is_code(e))
    return out


def rewrite(text: str, want: dict[str, list[str]]) -> str:
    """``text`` with each stage's code deps replaced by ``want[stage]`` (before its first data entry)."""
    lines = text.splitlines()
    edits = []
    for stage, deps_line, entries in _stage_blocks(lines):
        if stage not in want:
            continue
        indent = re.match(r"^(\s+)-", lines[entries[0]]).group(1) if entries else " " * 6
        code_idx = [i for i in entries if _is_code(lines[i].strip()[2:].strip())]
        first_code = code_idx[0] if code_idx else None
        insert_at = first_code if first_code is not None else (
            next((i for i in entries if not lines[i].strip()[2:].startswith("notebooks/")), deps_line + 1))
        edits.append((insert_at, code_idx, [f"{indent}- {p}" for p in want[stage]]))
    drop = {i for _, idx, _ in edits for i in idx}
    inserts = {at: new for at, _, new in edits}
    out = []
    for i, line in enumerate(lines):
        if i in inserts:
            out.extend(inserts[i])
        if i not in drop:
            out.append(line)
    # an insertion point that was itself a dropped code line is emitted above (before the drop)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _check_dvc_file(path: Path) -> None:
    """A --file that is not a dvc.yaml (not UTF-8 YAML, no ``stages`` mapping, a stage without a ``cmd``
    string) is one line naming the file and the stage, never a traceback from the parser below."""
    from bench.errors import ConfigError
    from bench.validate import read_yaml

    data = read_yaml(path, ConfigError, where=str(path))
    stages = data.get("stages")
    if not isinstance(stages, dict) or not stages:
        raise ConfigError.at(f"{path}: stages", "must be a non-empty mapping of stage name -> stage", stages,
                             "a dvc.yaml with `stages:` (https://dvc.org/doc/user-guide/project-structure/dvcyaml-files)")
    for name, stage in stages.items():
        body = stage.get("do", stage) if isinstance(stage, dict) else None
        if not isinstance(body, dict) or not isinstance(body.get("cmd"), str):
            raise ConfigError.at(f"{path}: stages.{name}", "needs a `cmd` string", stage, "cmd: <command line>")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench dvc-deps",
                                 description="Code dependencies of each DVC stage, from what it imports.")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml has drifted (names the stage)")
    mode.add_argument("--write", action="store_true", help="rewrite the code entries of dvc.yaml's deps")
    ap.add_argument("--file", default=str(DVC_FILE), help="the dvc.yaml to read (default: the repository's)")
    args = ap.parse_args(argv)
    path = Path(args.file)
    _check_dvc_file(path)
    text = path.read_text(encoding="utf-8")
    want = expected(REPO_ROOT, path)
    have = current(text)
    if args.write:
        atomic_write_text(path, rewrite(text, want))  # dvc.yaml stays whole if the write fails
        print(f"{path.name}: code dependencies of {len(want)} stages written")
        return 0
    if args.check:
        bad = []
        for stage, paths in want.items():
            missing, stale = sorted(set(paths) - set(have.get(stage, []))), sorted(set(have.get(stage, [])) - set(paths))
            if missing or stale:
                bad.append(f"{stage}: missing {missing}, stale {stale}")
        for line in bad:
            print(f"{path.name}: code deps drifted: {line} (run `python -m bench dvc-deps --write`)", file=sys.stderr)
        return 1 if bad else 0
    for stage, paths in want.items():
        print(f"{stage}:")
        for p in paths:
            print(f"  - {p}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
