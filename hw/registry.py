"""Named registries for the suite's extension points, filled from the package and from plugins.

One :class:`Registry` per extension point; each maps a name (what params.yaml and the
command line use) to a class or factory. Registry — entry-point group — value:

* ``hw.METERS`` — ``edge_inference_bench.meters`` — a :class:`hw.base.Meter` subclass
* ``hw.DVFS`` — ``edge_inference_bench.dvfs`` — ``factory(**options) -> DvfsController``
* ``bench.policies.REGISTRY`` — ``edge_inference_bench.policies`` — ``factory(env, **kwargs) -> Policy``
* ``bench.policies.LEARNERS`` — ``edge_inference_bench.learners`` — a ``bench.policies.LearnerSpec``
* ``bench.world.scenarios.PROCESS_KINDS`` — ``edge_inference_bench.scenario_kinds`` — a ``ProcessKind``
* ``bench.world.scenarios.INTERFERENCE_KINDS`` — ``edge_inference_bench.interference_kinds`` — an
  ``InterferenceKind``

Plugins come from two places, loaded the first time a registry is read:

* **installed distributions**: an entry point in one of the groups above, e.g. in a
  plugin's ``pyproject.toml``::

      [project.entry-points."edge_inference_bench.policies"]
      greedy_wifi = "my_plugin.policies:GreedyWifi"

  The entry point's name is the registered name; its object is the value.
* **files or modules of your own project**: ``EDGEBENCH_PLUGINS`` (``os.pathsep``-separated
  ``.py`` paths or importable module names) or ``plugins:`` in params.yaml. Such a module
  registers at import, e.g. with ``@bench.policies.register("greedy_wifi")`` or
  ``hw.METERS.register("mymeter", MyMeter)``.

A plugin that fails to import does not break the suite: the registry warns once with
the reason and records it in :attr:`Registry.errors`. This module imports nothing from
``bench`` (the device layer stays a layer).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import warnings
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

ENTRY_POINT_PREFIX = "edge_inference_bench."
PLUGINS_ENV = "EDGEBENCH_PLUGINS"

T = TypeVar("T")
_ALL: list["Registry"] = []
_loaded_user_plugins: set[str] = set()


class PluginError(ValueError):
    """A plugin could not be loaded or registered; the message names it and why."""


def _module_name_for(path: Path) -> str:
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"edgebench_user_plugin_{stem}"


def _why(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r}) while being imported (a plugin only registers at import)"
    return f"{type(exc).__name__}: {exc}"


def load_plugin(spec: str, base_dir: str | os.PathLike | None = None) -> None:
    """Import a plugin: a ``.py`` file (relative to ``base_dir``, else the working directory) or a module name.

    The file's or module's import-time code registers what it provides. The plugin is
    also appended to ``$EDGEBENCH_PLUGINS``, so worker processes and notebook kernels
    started from here load it too. Loading the same plugin twice is a no-op.
    """
    spec = str(spec).strip()
    if not spec:
        return
    is_file = spec.endswith(".py") or os.sep in spec or "/" in spec
    key = spec
    if is_file:
        path = Path(spec)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        path = path.resolve()
        key = str(path)
        if key in _loaded_user_plugins:
            return
        if not path.is_file():
            raise PluginError(f"plugin {spec!r}: no such file ({path})")
        name = _module_name_for(path)
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:  # pragma: no cover - a .py path always has a loader
            raise PluginError(f"plugin {spec!r}: cannot import {path}")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        _loaded_user_plugins.add(key)
        try:
            mod_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:  # a plugin's sys.exit() must not end (or pass) validation
            _loaded_user_plugins.discard(key)
            sys.modules.pop(name, None)
            raise PluginError(f"plugin {spec!r}: {_why(exc)}") from None
    else:
        if key in _loaded_user_plugins:
            return
        _loaded_user_plugins.add(key)
        try:
            importlib.import_module(spec)
        except (Exception, SystemExit) as exc:
            _loaded_user_plugins.discard(key)
            raise PluginError(f"plugin {spec!r}: {_why(exc)}") from None
    current = [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p]
    if key not in current:
        os.environ[PLUGINS_ENV] = os.pathsep.join([*current, key])


def _load_env_plugins() -> None:
    for spec in [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p]:
        try:
            load_plugin(spec)
        except PluginError as exc:
            warnings.warn(f"${PLUGINS_ENV}: {exc}", RuntimeWarning, stacklevel=3)


class Registry(MutableMapping):
    """``name -> value`` for one extension point, plus the entry points of installed plugins.

    Reading it (``in``, ``[]``, iteration, ``len``) first loads ``$EDGEBENCH_PLUGINS`` and
    the entry points of :attr:`group` (once). :meth:`register` works as a call or a decorator.
    """

    def __init__(self, kind: str, group: str, check: Callable[[str, Any], None] | None = None):
        self.kind = kind  # what the values are, for messages ("meter", "policy", ...)
        self.group = group if "." in group else ENTRY_POINT_PREFIX + group
        self.errors: dict[str, str] = {}  # entry point -> why it could not be loaded
        self._items: dict[str, Any] = {}
        self._check = check
        self._loaded = False
        self._loading = False
        _ALL.append(self)

    # -- registration ---------------------------------------------------------------
    def register(self, name: str, value: Any = None, *, replace: bool = False) -> Any:
        """Register ``value`` as ``name``; without ``value``, a decorator. A name taken by
        another value raises :class:`PluginError` unless ``replace=True``."""
        if value is None:
            def deco(obj: T) -> T:
                self.register(name, obj, replace=replace)
                return obj

            return deco
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise PluginError(f"{self.kind} name {name!r}: must be a non-empty string without spaces")
        old = self._items.get(name)
        if old is not None and old is not value and not replace:
            raise PluginError(f"{self.kind} name {name!r} is already registered (by {_where(old)}); "
                              f"choose another name or pass replace=True")
        if self._check is not None:
            self._check(name, value)
        self._items[name] = value
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        self.register(name, value)

    def __delitem__(self, name: str) -> None:
        del self._items[name]

    # -- plugins ------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Load ``$EDGEBENCH_PLUGINS`` and this group's entry points (idempotent)."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            _load_env_plugins()
            for ep in importlib.metadata.entry_points(group=self.group):
                if ep.name in self._items and getattr(self._items[ep.name], "__module__", None) == ep.module:
                    continue  # its module registered it already at import
                try:
                    self.register(ep.name, ep.load())
                except (Exception, SystemExit) as exc:  # a broken plugin must not break (or exit) the suite
                    dist = getattr(ep, "dist", None)
                    why = f"{ep.value} ({dist.name if dist else 'unknown distribution'}): {_why(exc)}"
                    self.errors[ep.name] = why
                    warnings.warn(f"{self.group}: plugin {ep.name!r} not loaded: {why}", RuntimeWarning, stacklevel=3)
            self._loaded = True
        finally:
            self._loading = False

    def reload(self) -> None:
        """Forget that plugins were loaded (after installing one in a running process)."""
        self._loaded = False
        self.load_entry_points()

    # -- reading --------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        self.load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self.load_entry_points()
        return iter(list(self._items))

    def __len__(self) -> int:
        self.load_entry_points()
        return len(self._items)

    def names(self) -> list[str]:
        return sorted(self)

    def unknown_message(self, name: str) -> str:
        """``unknown meter 'x' (did you mean 'y'?); registered meters: [...]``."""
        names = sorted(self._items)
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; allowed (registered {self.plural}): {names}"

    @property
    def plural(self) -> str:
        return self.kind[:-1] + "ies" if self.kind.endswith("y") else self.kind + "s"

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r}, names={sorted(self._items)})"


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def registries() -> list[Registry]:
    """Every registry created so far (for ``python -m bench plugins``)."""
    return list(_ALL)
