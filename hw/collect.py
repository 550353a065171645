"""Trace sweeps (workload × target × frequency) that survive Ctrl-C, ``kill -9`` and power loss.

:func:`collect` runs one caller-supplied ``run_cell(cell) -> dict`` per cell, measures
energy around it through :class:`hw.sampler.Sampler` when a meter is given, and
writes one trace row per cell (schema: :mod:`hw.traces`).

Crash safety — an append-only journal ``<out>.journal.jsonl`` next to the output:

* after each cell, one line ``{"cell_id": ..., "row": {...}}`` is appended, flushed
  and ``fsync``'d; a crash loses at most the cell in flight;
* the journal's first line records the sweep's full settings (the resume key); a
  rerun with other settings is refused rather than mixing rows measured differently
  (``fresh=True`` / ``--fresh`` moves the old journal aside and starts anew);
* on start, the journal is read, finished cells are skipped, a torn last line (the
  write a crash interrupted) is cut off, a corrupt line or one with an unknown column
  is moved to a quarantine side file (so a rerun never needs a hand edit), and a
  finished cell is never run or written twice;
* at the end (and on Ctrl-C) the journal is compacted to parquet + ``.meta.json``
  with :func:`hw.traces.write_trace` (temporary file + rename).

A cell is a dict; its id is the hash of its canonical JSON unless it has an ``id``
key. Cell keys that are trace columns (``workload``, ``target``, ``cpu_mhz``...)
go into the row; other keys only parameterise the runner. A failed cell is a
row with ``error`` filled, never dropped; ``retry_failed=True`` runs such cells
again on resume. A meter that disappears (:class:`~hw.base.DeviceGoneError`)
journals the failed cell and ends the sweep with that error, keeping every row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from hw.traces import REQUIRED, SOURCES, TRACE_COLUMNS, atomic_write_bytes, run_metadata, trace_frame, utc_now, write_trace

from .base import DeviceGoneError, DvfsController, Meter, MeterError
from .sampler import Sampler

Cell = Mapping[str, Any]
FREQ_COLUMNS = ("cpu_mhz", "gpu_mhz", "mem_mhz")
#: meter settings that describe a run, not how it measures: left out of the resume key
VOLATILE_METER_SETTINGS = ("lines_read", "lines_skipped")


def cell_id(cell: Cell) -> str:
    """Stable id of a cell: its ``id`` key, else a hash of its canonical JSON."""
    if "id" in cell:
        return str(cell["id"])
    blob = json.dumps(dict(cell), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sweep(workloads: Sequence[str], targets: Sequence[str] = ("cpu",), frequencies: Sequence[Mapping[str, float]] = ({},),
          batch: int = 1, **extra: Any) -> list[dict[str, Any]]:
    """Cartesian product workload × target × frequency setting, as cells.

    ``frequencies`` holds dicts with any of ``cpu_mhz``/``gpu_mhz``/``mem_mhz``.
    """
    cells = []
    for wl, tgt, freq in itertools.product(workloads, targets, frequencies):
        bad = set(freq) - set(FREQ_COLUMNS)
        if bad:
            raise ValueError(f"frequency setting {dict(freq)}: unknown key(s) {sorted(bad)}; allowed: {list(FREQ_COLUMNS)}")
        cells.append({"workload": wl, "target": tgt, "batch": batch, **dict(freq), **extra})
    return cells


def journal_path(out_path: str | os.PathLike) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.stem + ".journal.jsonl")


def quarantine_path(journal: str | os.PathLike) -> Path:
    """Side file where unusable journal lines are moved (with the reason), never lost."""
    journal = Path(journal)
    return journal.with_name(journal.name.removesuffix(".jsonl") + ".quarantine.jsonl")


def settings_key(settings: Mapping[str, Any]) -> str:
    """Hash of the canonical JSON of a sweep's settings: the journal's resume key."""
    blob = json.dumps(dict(settings), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class JournalError(MeterError):
    """A journal cannot be resumed as asked (other settings); the message says what differs and what to do."""


_NUMERIC = {c for c, t in TRACE_COLUMNS.items() if t in ("float64", "int64")}


def check_row(row: Any) -> str:
    """Why ``row`` cannot be a trace row ("" when it can): the journal's own light schema check."""
    if not isinstance(row, dict):
        return f"row is {type(row).__name__}; allowed: an object"
    unknown = set(row) - set(TRACE_COLUMNS)
    if unknown:
        return f"unknown column(s) {sorted(map(str, unknown))[:5]}; allowed: {list(TRACE_COLUMNS)}"
    missing = [c for c in REQUIRED if row.get(c) in (None, "")]
    if missing:
        return f"missing required column(s) {missing}"
    if row["source"] not in SOURCES:
        return f"source={str(row['source'])[:40]!r}; allowed: {list(SOURCES)}"
    for col, value in row.items():
        if value is None:
            continue
        if col in _NUMERIC:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"{col}={str(value)[:40]!r}; allowed: a finite number or null"
            if TRACE_COLUMNS[col] == "int64" and (not float(value).is_integer() or abs(value) > 2**53):
                return f"{col}={value!r}; allowed: an integer"
        elif not isinstance(value, str):
            return f"{col}={str(value)[:40]!r}; allowed: a string or null"
    return ""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_journal_line(raw: bytes) -> tuple[str, Any]:
    """``("header", settings)``, ``("row", (cell_id, row))``; ValueError saying why for anything else."""
    try:
        entry = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(entry, dict):
        raise ValueError(f"a JSON {type(entry).__name__}; allowed: an object")
    if set(entry) == {"settings", "key"}:
        if not isinstance(entry["settings"], dict) or entry["key"] != settings_key(entry["settings"]):
            raise ValueError("header whose key does not match its settings")
        return "header", entry["settings"]
    if set(entry) != {"cell_id", "row"} or not isinstance(entry["cell_id"], str) or not entry["cell_id"]:
        raise ValueError(f"keys {sorted(map(str, entry))[:5]}; allowed: cell_id (a string) and row")
    why = check_row(entry["row"])
    if why:
        raise ValueError(why)
    return "row", (entry["cell_id"], entry["row"])


@dataclasses.dataclass
class JournalState:
    """What a journal holds: its settings header (None: no header yet), finished rows, what was set aside."""

    settings: dict[str, Any] | None = None
    done: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    quarantined: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line number, reason)
    torn_tail: bool = False


def scan_journal(path: str | os.PathLike, repair: bool = False) -> JournalState:
    """Read a journal; never raises on its content.

    Every complete write ends with a newline, so bytes after the last newline are a
    torn write (a crash mid-append): ignored, and cut off when ``repair``. A line that
    is not a header or a valid row (corrupt bytes, unknown column, non-finite number)
    is *quarantined*: with ``repair`` it is appended, with its reason, to
    :func:`quarantine_path` and removed from the journal (atomic rewrite), so one bad
    line never blocks a rerun. A later line for the same cell (``retry_failed``)
    replaces the earlier.
    """
    path = Path(path)
    state = JournalState()
    if not path.exists():
        return state
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    state.torn_tail = bool(tail)
    keep: list[bytes] = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            kind, value = parse_journal_line(raw)
            if kind == "header" and state.settings is not None:
                raise ValueError("a second settings header")
        except ValueError as exc:
            state.quarantined.append((n, str(exc)[:300]))
            if repair:
                _quarantine(path, n, raw, str(exc))
            continue
        keep.append(raw)
        if kind == "header":
            state.settings = value
        else:
            cid, row = value
            state.done[cid] = row
    if repair and (state.quarantined or state.torn_tail):
        atomic_write_bytes(path, b"".join(r + b"\n" for r in keep))
    return state


def _quarantine(journal: Path, lineno: int, raw: bytes, reason: str) -> None:
    entry = {"journal": journal.name, "line": lineno, "reason": reason[:300], "raw": raw.decode("utf-8", "replace")}
    with open(quarantine_path(journal), "ab") as fh:
        fh.write((json.dumps(entry, sort_keys=True) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())


def read_journal(path: str | os.PathLike, repair: bool = False) -> dict[str, dict[str, Any]]:
    """cell_id -> row from a journal (see :func:`scan_journal`)."""
    return scan_journal(path, repair=repair).done


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    parts = [f"{k}: {str(old.get(k, '<unset>'))[:60]} -> {str(new.get(k, '<unset>'))[:60]}" for k in keys
             if old.get(k, "<unset>") != new.get(k, "<unset>")]
    return "; ".join(parts[:6])


class Journal:
    """Append-only, fsync'd JSON-lines record of finished cells, headed by the sweep's settings.

    The first line is ``{"key": ..., "settings": {...}}``. Resuming with other settings
    would mix rows measured differently under metadata that names only the new ones,
    so it is refused (:class:`JournalError`) unless ``fresh``: then the old journal is
    moved aside to ``<journal>.<key>.old`` and a new one begins.
    """

    def __init__(self, path: str | os.PathLike, settings: Mapping[str, Any] | None = None, fresh: bool = False):
        self.path = Path(path)
        self.settings = json.loads(json.dumps(dict(settings or {}), sort_keys=True, default=str))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = scan_journal(self.path, repair=True)
        self.quarantined = state.quarantined
        if state.done or state.settings is not None:
            old = state.settings if state.settings is not None else {}
            if old != self.settings:
                if state.done and not fresh:
                    raise JournalError(
                        f"{self.path} holds {len(state.done)} row(s) measured with other settings ({_diff(old, self.settings)}); "
                        "rerun with the same settings to resume, or start a new sweep (CLI: --fresh, which keeps the old "
                        "journal as *.old)")
                aside = self.path.with_name(f"{self.path.name}.{settings_key(old)}.old")
                os.replace(self.path, aside)
                state = JournalState()
        self.done = state.done
        self._fh = open(self.path, "ab")
        if state.settings is None:
            self._write({"key": settings_key(self.settings), "settings": self.settings})

    def _write(self, entry: Mapping[str, Any]) -> None:
        line = json.dumps(dict(entry), sort_keys=True, default=_json_default, allow_nan=False) + "\n"
        self._fh.write(line.encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, cid: str, row: Mapping[str, Any]) -> None:
        if cid in self.done:
            return
        self._write({"cell_id": cid, "row": dict(row)})
        self.done[cid] = dict(row)

    def close(self) -> None:
        self._fh.close()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)


def _clean(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def compact(out_path: str | os.PathLike, order: Sequence[str] | None = None, metadata: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Journal -> parquet + sidecar (atomic). ``order`` lists cell ids (journal order otherwise)."""
    state = scan_journal(journal_path(out_path))
    done = state.done
    ids = [c for c in (order or []) if c in done] + [c for c in done if c not in set(order or [])]
    frame = trace_frame([done[c] for c in ids]) if ids else trace_frame([])
    write_trace(frame, out_path, {**run_metadata(), **dict(metadata or {}), "cell_ids": ids,
                                  "journal_settings": state.settings})
    return frame


def collect(cells: Iterable[Cell], run_cell: Callable[[Cell], Mapping[str, Any]], out_path: str | os.PathLike,
            meter: Meter | None = None, *, warm_cell: Callable[[Cell], Any] | None = None, rate_hz: float = 50.0,
            device: str = "host", adapter: str | None = None, dvfs: DvfsController | None = None,
            freq_domains: Mapping[str, str] | None = None, retry_failed: bool = False, progress: bool = True,
            metadata: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None,
            fresh: bool = False) -> pd.DataFrame:
    """Run every cell not yet journaled, then compact the journal to ``out_path`` (parquet).

    ``run_cell(cell)`` returns trace columns for the measured calls it made — at least
    ``n_runs`` (inferences in the call) and usually ``latency_ms``/``latency_p95_ms``.
    ``warm_cell(cell)``, when given, runs first, unmeasured: everything that is not the
    measured inference (building the model, warm-up runs) belongs there, so that it
    never falls inside the energy window. With a ``meter``, the energy of the
    ``run_cell`` call is measured and ``energy_mj`` (per inference) and ``power_w``
    (mean) are filled unless the runner returned them. With ``dvfs``, cell keys named
    in ``freq_domains`` (e.g. ``{"cpu_mhz": "cpu_policy0"}``) are set before the cell
    and everything is restored at the end — on every exit path.

    The resume key is the full settings: ``settings`` (the caller's, e.g. repeats and
    warm-up) plus device, adapter, meter settings, rate and DVFS domains. A journal
    written with other settings is refused (:class:`JournalError`) unless ``fresh``.
    Returns the compacted trace frame.
    """
    from tqdm.auto import tqdm

    cells = [dict(c) for c in cells]
    ids = [cell_id(c) for c in cells]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"duplicate cells (same id) in the sweep: {dup}")
    for key in freq_domains or {}:
        if key not in FREQ_COLUMNS:
            raise ValueError(f"freq_domains key {key!r}; allowed: {list(FREQ_COLUMNS)}")
    adapter = adapter or (meter.name if meter is not None else "none")
    meter_settings = meter.settings() if meter is not None else {}
    resume_key = {"device": device, "adapter": adapter, "meter": meter.name if meter is not None else "none",
                  "meter_settings": {k: v for k, v in meter_settings.items() if k not in VOLATILE_METER_SETTINGS},
                  "rate_hz": rate_hz, "freq_domains": dict(freq_domains or {}), **dict(settings or {})}
    meta = {"adapter": adapter, "device": device, "rate_hz": rate_hz, "meter_settings": meter_settings,
            "settings": dict(settings or {}), **dict(metadata or {})}
    journal = Journal(journal_path(out_path), resume_key, fresh=fresh)
    if retry_failed:
        journal.done = {k: v for k, v in journal.done.items() if not v.get("error")}
    todo = [(cid, c) for cid, c in zip(ids, cells) if cid not in journal.done]
    sampler = Sampler(meter, rate_hz) if meter is not None else None
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), disable=not progress, desc=f"collect {device}")
    gone: DeviceGoneError | None = None
    failed = True
    try:
        if sampler is not None:
            sampler.start()
        for cid, cell in todo:
            row, gone = _run_one(cell, run_cell, warm_cell, sampler, dvfs, freq_domains or {}, device, adapter)
            journal.append(cid, row)
            bar.update(1)
            if gone is not None:
                break
        failed = False
    finally:
        # every step runs whatever the others do: DVFS clocks first, since a host left pinned at a
        # low clock is the costliest thing to leave behind; then the journal; then the compaction
        errors: list[BaseException] = []
        frame = None
        for step in (bar.close, sampler.stop if sampler is not None else None,
                     dvfs.restore if dvfs is not None else None, journal.close):
            if step is None:
                continue
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - finish the others, then report
                errors.append(exc)
        try:
            frame = compact(out_path, ids, meta)  # also on Ctrl-C: what is done is on disk
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        if errors and not failed:  # an exception already in flight wins; these would only mask it
            raise errors[0]
    if gone is not None:
        raise gone
    assert frame is not None
    return frame


def _run_one(cell: dict[str, Any], run_cell, warm_cell, sampler: Sampler | None, dvfs, freq_domains, device: str,
             adapter: str) -> tuple[dict[str, Any], DeviceGoneError | None]:
    row: dict[str, Any] = {k: v for k, v in cell.items() if k in TRACE_COLUMNS}
    row.setdefault("device", device)
    row.setdefault("adapter", adapter)
    row.setdefault("source", "measured")
    row["meter"] = sampler.meter.name if sampler is not None else "none"
    gone = None
    try:
        if dvfs is not None:
            for col, domain in freq_domains.items():
                if cell.get(col) is not None:
                    dvfs.set_frequency(domain, float(cell[col]))
        if warm_cell is not None:
            warm_cell(cell)
        if sampler is not None:
            with sampler.window() as w:
                result = dict(run_cell(cell))
        else:
            result, w = dict(run_cell(cell)), None
        bad = set(result) - set(TRACE_COLUMNS)
        if bad:
            raise ValueError(f"run_cell returned unknown trace column(s) {sorted(bad)}; allowed: {list(TRACE_COLUMNS)}")
        row.update(result)
        if w is not None:
            n = row.get("n_runs") or 1
            row.setdefault("energy_mj", w.energy_j * 1e3 / n)
            row.setdefault("power_w", w.power_w)
    except DeviceGoneError as exc:
        gone = exc
        row["error"] = f"DeviceGoneError: {exc} ({len(exc.samples)} samples kept)"
    except Exception as exc:  # noqa: BLE001 - a failed cell is a row, never a crash of the sweep
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["timestamp"] = utc_now()
    return {k: _clean(v) for k, v in row.items()}, gone
