"""Shared strategies of the property-based loader tests (tests/test_fuzz_*.py).

Two kinds of malformed input per loader:

* **structured**: the shipped, valid document with 1-4 random mutations at random places
  (a value replaced by NaN, inf, a huge or negative number, a string, None, a list, a
  mapping, a deep nest; a key deleted, renamed or added);
* **numeric**: 1-4 of its numbers replaced by other finite numbers of any
  magnitude and sign (the document stays well-formed, so range checks and the model's
  arithmetic are exercised);
* **textual**: the shipped file's text with random character edits (YAML punctuation,
  control characters, non-UTF-8 bytes, anchors and aliases), read from disk.

The property: the loader returns a value whose every number is finite, or raises the
layer's own error (a ``BenchError`` subclass) — never another exception. Hypothesis'
deadline bounds the time per input (generous: the CI machine is shared), so a hang fails
the test. Every test counts its inputs and outcomes in :data:`COUNTS`.
"""

from __future__ import annotations

import collections
import copy
import math
import os
import time
from datetime import timedelta
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

#: Inputs per loader and per kind (structured / textual); the report quotes these.
MAX_EXAMPLES = int(os.environ.get("BENCH_FUZZ_EXAMPLES", "300"))
#: Generous per-input bound: parsing one small file takes milliseconds; 20 s means a hang.
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=timedelta(seconds=20), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: (loader, kind) -> Counter of outcomes ("parsed" / "refused")
COUNTS: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
#: (loader, kind) -> slowest input (s); printed for the record, never asserted (no wall-clock tests)
SLOWEST: dict[tuple[str, str], float] = collections.defaultdict(float)

_SPECIAL_FLOATS = st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0.0, -1.0, 1e308, -1e308,
                                   5e-324, 1e-12, 1e12])
NASTY = st.one_of(
    _SPECIAL_FLOATS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.sampled_from([0, -1, 1, 2, -(2**63), 2**64, True, False, None, "", " ", "nan", "inf", "1e400", "medium",
                     "strong", "weak", "../../x", "/etc/passwd", "\x00", "ü" * 3, [], {}, [[]], {"kind": None},
                     {"value": float("nan"), "source": "x"}, {"value": -5, "source": "assumed: x"}]),
    st.text(max_size=12),
    st.lists(st.one_of(_SPECIAL_FLOATS, st.integers(-5, 5), st.text(max_size=3)), max_size=4),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-3, 3), _SPECIAL_FLOATS, st.none()), max_size=3),
    st.recursive(st.integers(0, 2), lambda inner: st.lists(inner, min_size=1, max_size=2), max_leaves=40),
)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, prefix + (i,))
    return out


def _parent(obj: Any, path: tuple) -> Any:
    for p in path[:-1]:
        obj = obj[p]
    return obj


@st.composite
def mutated(draw, base: dict, max_mutations: int = 4) -> dict:
    """``base`` (a parsed document) with 1..max_mutations random edits."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _parent(doc, path), path[-1]
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "rename"]))
        if op == "replace":
            parent[key] = draw(NASTY)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(NASTY)
        elif op == "add" and isinstance(parent, list):
            parent.append(draw(NASTY))
        elif op == "rename" and isinstance(parent, dict):
            value = parent.pop(key)
            parent[draw(st.one_of(st.text(max_size=8), st.integers(-2, 2)))] = value
    return doc


def _number_paths(obj: Any) -> list[tuple]:
    out = []
    for path in _paths(obj):
        v = _parent(obj, path)[path[-1]]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(path)
    return out


#: In-range-looking numbers of every magnitude and sign (the shape of a plausible typo).
NUMBERS = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e4, 1e4),
                    st.integers(-10**6, 10**6), st.sampled_from([0, 0.0, -0.0, 1, -1, 1e-300, -1e-300, 1e300]))


@st.composite
def numeric_mutated(draw, base: dict, max_mutations: int = 4) -> dict:
    """``base`` with 1..max_mutations of its numbers replaced by other finite numbers: the
    document stays well-formed, so the loader's range checks (and what it computes) are exercised."""
    doc = copy.deepcopy(base)
    paths = _number_paths(doc)
    for _ in range(draw(st.integers(1, max_mutations))):
        path = draw(st.sampled_from(paths))
        _parent(doc, path)[path[-1]] = draw(NUMBERS)
    return doc


_EDIT_CHARS = st.sampled_from(list(":-[]{},&*!|>'\"#%@`?\n\t ") + ["&a ", "*a", "<<: ", ".nan", ".inf", "-.inf", "1e999",
                                                                 "\x00", "\x1b", "\u2028", "\ufeff", "\udcff", "é"])


@st.composite
def edited_bytes(draw, text: str, max_edits: int = 6) -> bytes:
    """``text`` encoded as UTF-8 with random insertions, deletions and raw (possibly non-UTF-8) bytes."""
    data = bytearray(text.encode())
    for _ in range(draw(st.integers(1, max_edits))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["insert", "delete", "byte", "cut"]))
        if op == "insert":
            data[i:i] = draw(_EDIT_CHARS).encode("utf-8", "surrogatepass")
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 20))]
        elif op == "byte":
            data[i] = draw(st.integers(0, 255))
        else:
            del data[i:]
    return bytes(data)


def finite_numbers(obj: Any, allow_nan: Callable[[tuple], bool] = lambda path: False, path: tuple = ()) -> list[tuple]:
    """Paths of non-finite numbers anywhere in a (possibly dataclass / numpy) result."""
    import dataclasses

    bad = []
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            bad += finite_numbers(getattr(obj, f.name), allow_nan, path + (f.name,))
    elif isinstance(obj, dict) or hasattr(obj, "items") and not isinstance(obj, (str, bytes)):
        for k, v in obj.items():
            bad += finite_numbers(v, allow_nan, path + (k,))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            bad += finite_numbers(v, allow_nan, path + (i,))
    elif isinstance(obj, np.ndarray) and obj.dtype.kind in "fc":
        if not np.all(np.isfinite(obj)) and not allow_nan(path):
            bad.append(path)
    elif isinstance(obj, (float, np.floating)) and not isinstance(obj, bool):
        if not math.isfinite(obj) and not allow_nan(path):
            bad.append(path)
    return bad


def record(loader: str, kind: str, fn: Callable[[], Any], errors: tuple[type, ...]) -> Any:
    """Run one input: the outcome is a value or one of ``errors``; any other exception propagates
    (and fails the test). Counts the outcome."""
    start = time.perf_counter()
    try:
        out = fn()
    except errors as exc:
        SLOWEST[(loader, kind)] = max(SLOWEST[(loader, kind)], time.perf_counter() - start)
        msg = str(exc)
        assert "\n" not in msg and len(msg) < 2000, msg  # one line, bounded (no expanded value)
        COUNTS[(loader, kind)]["refused"] += 1
        return None
    SLOWEST[(loader, kind)] = max(SLOWEST[(loader, kind)], time.perf_counter() - start)
    COUNTS[(loader, kind)]["parsed"] += 1
    return out


def report(loader: str, kind: str) -> int:
    c = COUNTS[(loader, kind)]
    total = c["parsed"] + c["refused"]
    print(f"\nfuzz {loader}/{kind}: {total} inputs, {c['parsed']} parsed, {c['refused']} refused, "
          f"0 other exceptions, 0 non-finite results, slowest input {SLOWEST[(loader, kind)]:.3f} s")
    return total
