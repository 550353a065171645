"""Shared input checks: a bounded, strict YAML reader and number/name checks.

Every YAML file the suite reads (params.yaml, scenarios, profiles, link models,
claims) goes through :func:`read_yaml`, and every number a loader takes from a
user goes through :func:`number` (or :func:`numbers`). Each failure raises the
*caller's* error class (a :class:`bench.errors.BenchError` subclass) with the
one-line message shape of :meth:`BenchError.at`: where (file, key or line),
what is wrong, the bad value (a bounded ``repr``) and what is allowed.

Why a reader of our own instead of plain ``yaml.safe_load``:

* **Encoding.** Only UTF-8 is accepted; another byte gives its offset and line
  instead of a ``UnicodeDecodeError`` traceback.
* **Size.** A file larger than ``max_bytes`` is refused before it is parsed.
* **Duplicate keys.** PyYAML keeps the last of two equal keys silently; a
  duplicated ``seed:`` would quietly change a run. Refused, naming both lines.
* **Aliases.** ``&anchor`` / ``*alias`` are expanded by reference, so a
  "billion laughs" document is small in memory but astronomically large to walk
  or to ``repr`` (an error message formatting it hangs). The composed node graph
  is measured — expanded node count, with aliases counted at their full size —
  and refused above ``max_nodes`` *before* anything is constructed or formatted;
  an alias that refers to its own ancestor (a cycle) is refused too.
* **Nesting depth.** PyYAML composes recursively; 10,000 nested ``[`` end in a
  ``RecursionError``. Depth is counted while composing and refused above
  ``max_depth``.
* **Top level.** Must be a mapping (an empty file reads as ``{}``).

This module is a low layer: it imports only the standard library, PyYAML,
numpy and :mod:`bench.errors`.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import yaml

from bench.errors import BenchError, allowed_list, short

#: Largest YAML file read (bytes). The shipped files are a few kB; params.yaml ~3 kB.
MAX_YAML_BYTES = 1 << 20
#: Deepest nesting of mappings/sequences (the shipped files nest at most 5 levels).
MAX_DEPTH = 32
#: Most nodes of a document after expanding aliases (the shipped files have < 2,000).
MAX_NODES = 100_000
#: Largest CSV trace read (bytes).
MAX_CSV_BYTES = 64 << 20

_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


# --------------------------------------------------------------------------- YAML

class _DepthError(Exception):
    def __init__(self, mark):
        self.mark = mark


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that bounds nesting depth and refuses duplicate keys."""

    max_depth = MAX_DEPTH

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise _DepthError(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<' merges are checked as the aliases they are
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # unhashable keys: PyYAML's own error follows
                key = self.construct_object(key_node, deep=False)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {short(key)} (first at line {first.line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root: yaml.Node, max_nodes: int) -> tuple[int, yaml.Node | None]:
    """Node count of ``root`` with every alias expanded (memoised by node identity, so linear in
    the composed graph); returns (count, None), or (-1, node) for an alias cycle at ``node``."""
    size: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk: a deep or self-referencing graph must not recurse
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            kids = _children(node)
            total = 1 + sum(size[id(k)] for k in kids)
            size[nid] = min(total, max_nodes + 1)  # saturate: the exact excess does not matter
            continue
        if nid in size:
            continue
        if nid in on_path:
            return -1, node
        on_path.add(nid)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in on_path:
                return -1, kid
            if id(kid) not in size:
                stack.append((kid, False))
    return size[id(root)], None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _line(mark: Any) -> str:
    return f" line {mark.line + 1}" if mark is not None else ""


def parse_yaml(text: str | bytes, error: type[BenchError], where: str, *, max_bytes: int = MAX_YAML_BYTES,
               max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES, top: str = "mapping") -> Any:
    """Parse YAML text with the checks of the module docstring; raise ``error`` naming ``where``.

    ``top="mapping"`` requires a mapping at the top level (an empty document reads as ``{}``);
    ``top="any"`` returns whatever the document holds.
    """
    if isinstance(text, (bytes, bytearray)):
        if len(text) > max_bytes:
            raise error.at(where, f"file too large ({len(text)} bytes)", allowed=f"at most {max_bytes} bytes")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            line = bytes(text[:exc.start]).count(b"\n") + 1
            raise error.at(f"{where} line {line}", f"not UTF-8 text (byte {exc.start})",
                           bytes(text[exc.start:exc.start + 4]), "UTF-8 encoded YAML") from None
    elif len(text) > max_bytes:
        raise error.at(where, f"file too large ({len(text)} characters)", allowed=f"at most {max_bytes} bytes")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise error.at(f"{where} line {text[:text.index(chr(0))].count(chr(10)) + 1}", "NUL byte in text",
                       allowed="UTF-8 encoded YAML")
    loader = None
    try:
        loader = _StrictLoader(text)  # its reader already refuses control characters
        loader.max_depth = max_depth
        node = loader.get_single_node()
        if node is None:
            data = None
        else:
            count, cycle = _expanded_size(node, max_nodes)
            if cycle is not None:
                raise error.at(f"{where}{_line(cycle.start_mark)}", "recursive YAML alias (a node contains itself)",
                               allowed="aliases to finished nodes only")
            if count > max_nodes:
                raise error.at(where, f"too large once YAML aliases are expanded (more than {max_nodes} nodes)",
                               allowed=f"at most {max_nodes} nodes after alias expansion")
            data = loader.construct_document(node)
    except BenchError:
        raise
    except _DepthError as exc:
        raise error.at(f"{where}{_line(exc.mark)}", f"nested deeper than {max_depth} levels",
                       allowed=f"at most {max_depth} levels of mappings/lists") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise error.at(f"{where}{_line(mark)}", f"not valid YAML: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text[:max(exc.position, 0)].count("\n") + 1
        raise error.at(f"{where} line {line}", "not valid YAML: a control character is not allowed",
                       allowed="printable UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise error.at(where, f"not valid YAML: {' '.join(str(exc).split())[:200]}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # e.g. an implicit timestamp that is no date (2020-13-45) raises ValueError inside PyYAML
        raise error.at(where, f"not valid YAML: {type(exc).__name__}: {str(exc)[:120]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if top == "mapping":
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise error.at(where, f"expected a mapping (key: value lines) at the top level, got a {type(data).__name__}",
                           allowed="a YAML mapping")
    return data


_CACHE: dict[tuple, Any] = {}
_CACHE_SIZE = 256


def _read_bytes(path: Path, error: type[BenchError], where: str, max_bytes: int) -> bytes:
    """A user's file as bytes, at most ``max_bytes`` of them; a missing, oversized or unreadable file is one
    ``error`` naming ``where``."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error.at(where, f"file too large ({size} bytes)", allowed=f"at most {max_bytes} bytes")
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
        if len(data) > max_bytes:  # a pipe or device reports no size: never parse a silently cut-off file
            raise error.at(where, f"file too large (more than {max_bytes} bytes)", allowed=f"at most {max_bytes} bytes")
        return data
    except FileNotFoundError:
        raise error.at(where, f"no such file: {path}") from None
    except IsADirectoryError:
        raise error.at(where, f"is a directory, not a file: {path}") from None
    except OSError as exc:
        raise error.at(where, f"cannot read {path}: {exc.strerror or exc}") from None


def read_yaml(path: str | Path, error: type[BenchError], where: str | None = None, **kw) -> Any:
    """Read a YAML file with :func:`parse_yaml`'s checks; ``where`` defaults to the file name.

    Parsed documents are cached by the hash of their bytes and returned as deep copies:
    the simulator reloads the same link and model files for every realised scenario.
    """
    path = Path(path)
    where = where or path.name
    raw = _read_bytes(path, error, where, kw.get("max_bytes", MAX_YAML_BYTES))
    key = (hashlib.sha256(raw).digest(), error, where, repr(sorted(kw.items())))
    if key in _CACHE:
        return copy.deepcopy(_CACHE[key])
    data = parse_yaml(raw, error, where, **kw)
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = copy.deepcopy(data)
    return data


# --------------------------------------------------------------------------- limits beside their fields

#: the limits a dataclass field may carry in its metadata (read by :mod:`bench.config`'s validator and
#: ``python -m bench params --describe``): ``ge``/``gt``/``le``/``lt`` bound a number (or every number of a
#: list), ``choices`` lists the allowed names (or is a function returning them, e.g. the registered
#: scenarios), ``min_len``/``max_len`` bound a list or mapping, ``int_ge``/``int_le`` bound a field that is
#: either a count or a list (``xi_levels``), ``safe_keys`` asks for file-name-safe mapping keys, ``doc``
#: documents a field that has no docstring under it.
LIMIT_KEYS = ("ge", "gt", "le", "lt", "choices", "min_len", "max_len", "int_ge", "int_le", "safe_keys", "doc")


def limits(**kw: Any) -> dict[str, Any]:
    """Field metadata holding limits (see :data:`LIMIT_KEYS`); an unknown key is a schema bug (TypeError)."""
    unknown = sorted(set(kw) - set(LIMIT_KEYS))
    if unknown:
        raise TypeError(f"unknown field limit(s) {unknown}; allowed: {list(LIMIT_KEYS)}")
    return {k: v for k, v in kw.items() if v is not None}


def bounded(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A dataclass field with its limits in its metadata, e.g. ``learning_rate: float = bounded(5e-4, gt=0, le=1)``:
    a new field is one line with its range, and the params.yaml validator reads the range from there."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults (configs are compared and hashed by value)")
    return dataclasses.field(default=default, default_factory=default_factory, metadata=limits(**kw))


# --------------------------------------------------------------------------- numbers and names

def _range_text(ge=None, gt=None, le=None, lt=None, integer=False) -> str:
    parts = [p for p in (f">= {ge:g}" if ge is not None else "", f"> {gt:g}" if gt is not None else "",
                         f"<= {le:g}" if le is not None else "", f"< {lt:g}" if lt is not None else "") if p]
    kind = "an integer" if integer else "a finite number"
    return kind + (" " + " and ".join(parts) if parts else "")


def number(where: str, value: Any, error: type[BenchError], *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, integer: bool = False) -> float:
    """``value`` as a finite float (or int when ``integer``) within the bounds; else raise ``error``.

    Booleans and strings are refused (YAML reads ``yes`` as True and ``1e3`` as a string).
    """
    allowed = _range_text(ge, gt, le, lt, integer)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise error.at(where, "expected a number", value, allowed)
    if integer:
        if isinstance(value, (float, np.floating)):
            if not (math.isfinite(value) and float(value).is_integer()):
                raise error.at(where, "expected an integer", value, allowed)
        out: float = int(value)
    else:
        try:
            out = float(value)
        except OverflowError:
            raise error.at(where, "number too large", value, allowed) from None
        if not math.isfinite(out):
            raise error.at(where, "must be finite", value, allowed)
    if ((ge is not None and not out >= ge) or (gt is not None and not out > gt)
            or (le is not None and not out <= le) or (lt is not None and not out < lt)):
        raise error.at(where, "out of range", value, allowed)
    return out


def numbers(where: str, value: Any, error: type[BenchError], *, min_len: int = 1, max_len: int = 100_000,
            ascending: str | None = None, **bounds) -> np.ndarray:
    """A list of finite numbers (each checked as :func:`number`) as a float array.

    ``ascending``: None, ``"strict"`` (each > the previous) or ``"weak"`` (never decreasing).
    """
    if not isinstance(value, (list, tuple)):
        raise error.at(where, "expected a list of numbers", value, f"{min_len} to {max_len} numbers")
    if not min_len <= len(value) <= max_len:
        raise error.at(where, f"expected {min_len} to {max_len} numbers, got {len(value)}", value)
    arr = np.array([number(f"{where}[{i}]", v, error, **bounds) for i, v in enumerate(value)], dtype=float)
    if ascending and len(arr) > 1:
        diff = np.diff(arr)
        bad = np.flatnonzero(diff <= 0 if ascending == "strict" else diff < 0)
        if len(bad):
            need = "strictly ascending" if ascending == "strict" else "never decreasing"
            raise error.at(f"{where}[{bad[0] + 1}]", f"values must be {need}", value)
    return arr


def finite_array(where: str, values: np.ndarray, error: type[BenchError], *, ge: float | None = None,
                 le: float | None = None, what: str = "value") -> np.ndarray:
    """Check a computed or read array: every entry finite and within [ge, le]; names the first bad index."""
    arr = np.asarray(values, dtype=float)
    bad = ~np.isfinite(arr)
    if ge is not None:
        bad |= arr < ge
    if le is not None:
        bad |= arr > le
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        allowed = _range_text(ge=ge, le=le)
        raise error.at(where, f"{int(bad.sum())} {what}(s) not finite or out of range (first at index {i})",
                       float(arr.ravel()[i]), allowed)
    return arr


def text(where: str, value: Any, error: type[BenchError], *, max_len: int = 10_000, empty: bool = True) -> str:
    """A string field (not a number or a mapping by mistake)."""
    if not isinstance(value, str) or len(value) > max_len or (not empty and not value.strip()):
        raise error.at(where, "expected " + ("a" if empty else "a non-empty") + " string", value,
                       f"text of at most {max_len} characters")
    return value


def choice(where: str, value: Any, options: Iterable[Any], error: type[BenchError], what: str = "name") -> Any:
    """``value`` must be one of ``options`` (hashable-safe; the message lists them)."""
    opts = list(options)
    try:
        ok = value in opts
    except TypeError:
        ok = False
    if not ok:
        raise error.at(where, f"unknown {what}", value, allowed_list(opts))
    return value


def safe_name(where: str, value: Any, error: type[BenchError]) -> str:
    """A name that becomes part of a file path (run and suite names): a letter, then letters, digits,
    ``_`` or ``-`` (at most 64 characters) — no ``/``, ``..``, absolute paths or hidden files."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise error.at(where, "not a safe name (it becomes a directory under results/)", value,
                       "a letter, then letters, digits, '_' or '-' (at most 64 characters)")
    return value


def mapping(where: str, value: Any, error: type[BenchError], *, allowed: Iterable[str] | None = None,
            required: Iterable[str] = ()) -> Mapping:
    """``value`` must be a mapping with string keys, only ``allowed`` ones and every ``required`` one."""
    if not isinstance(value, Mapping):
        raise error.at(where, "expected a mapping", value)
    if allowed is not None:
        allowed = set(allowed)
        unknown = sorted((k for k in value if k not in allowed), key=str)
        if unknown:
            raise error.at(where, f"unknown field(s) {short(unknown)}", allowed=allowed_list(sorted(allowed)))
    missing = sorted(k for k in required if k not in value)
    if missing:
        raise error.at(where, f"missing field(s) {missing}")
    return value


# --------------------------------------------------------------------------- CSV traces

def read_utf8(path: str | Path, error: type[BenchError], prefix: str = "") -> str:
    """A user's text file (a CSV of rows) as UTF-8 text, a UTF-8 byte-order mark dropped; an unreadable file or
    another encoding is one clean ``error`` naming the file (after ``prefix``, e.g. the option that named it)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:  # capped: /dev/zero or an endless pipe is refused, not read until memory ends
            data = fh.read(MAX_CSV_BYTES + 1)
    except OSError as exc:
        raise error(f"{prefix}{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_CSV_BYTES:
        raise error(f"{prefix}{path}: file too large (more than {MAX_CSV_BYTES} bytes); allowed: at most "
                    f"{MAX_CSV_BYTES} bytes (split the rows over several files)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{prefix}{path.name}: byte {exc.start} (0x{data[exc.start]:02x}) is not UTF-8; allowed: UTF-8 "
                    f"text (save the file as UTF-8; UTF-16 and Latin-1 are not read)") from None


def read_csv_column(path: str | Path, column: Any, error: type[BenchError], where: str | None = None, *,
                    max_bytes: int = MAX_CSV_BYTES, **bounds) -> np.ndarray:
    """One numeric column of a CSV trace (header row first) as a float array.

    A trace drives a simulation step by step, so a bad cell is refused (naming its line,
    the value and the allowed range) rather than skipped, which would shift every later
    step. Every value must be finite and within ``bounds`` (as :func:`number`), and every row
    must have as many cells as the header (a decimal comma would otherwise shift the columns).
    """
    import csv
    import io

    path = Path(path)
    where = where or path.name
    if not isinstance(column, str) or not column:
        raise error.at(f"{where}.column", "expected a column name", column, "a non-empty string")
    raw = _read_bytes(path, error, where, max_bytes)
    try:
        body = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise error.at(f"{where} line {line}", f"not UTF-8 text (byte {exc.start})", raw[exc.start:exc.start + 4],
                       "UTF-8 encoded CSV") from None
    if "\x00" in body:
        raise error.at(where, "NUL byte in a CSV trace", allowed="UTF-8 text")
    reader = csv.reader(io.StringIO(body, newline=""))
    try:
        header = next(reader, None)
        if not header:
            raise error.at(where, "empty CSV (no header row)", allowed=f"a header row naming {short(column)}")
        header = [h.strip() for h in header]
        if column not in header:
            raise error.at(f"{where}.column", f"no column {short(column)} in the header", header,
                           allowed_list([short(h) for h in header]))
        idx = header.index(column)
        out = []
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue  # blank line
            line = reader.line_num
            if len(row) != len(header):  # e.g. a decimal comma (1,5,-62): reading by position would shift columns
                raise error.at(f"{where} line {line}", f"row has {len(row)} cells but the header has {len(header)}",
                               row, f"exactly {len(header)} comma-separated cells per row (decimal point, "
                               "not comma; quote a cell that holds a comma)")
            cell = row[idx].strip()
            try:
                value = float(cell)
            except ValueError:
                raise error.at(f"{where} line {line}", f"{column}: not a number", cell, _range_text(**bounds)) from None
            out.append(number(f"{where} line {line}: {column}", value, error, **bounds))
    except csv.Error as exc:
        raise error.at(f"{where} line {reader.line_num}", f"malformed CSV: {str(exc)[:100]}") from None
    if not out:
        raise error.at(where, f"no rows in column {short(column)}", allowed="at least one row")
    return np.asarray(out, dtype=float)
