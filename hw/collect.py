"""Trace sweeps (workload × target × frequency) that survive Ctrl-C, ``kill -9`` and power loss.

:func:`collect` runs one caller-supplied ``run_cell(cell) -> dict`` per cell, measures
energy around it through :class:`hw.sampler.Sampler` when a meter is given, and
writes one trace row per cell (schema: :mod:`hw.traces`).

Crash safety — an append-only journal ``<out>.journal.jsonl`` next to the output:

* after each cell, one line ``{"cell_id": ..., "row": {...}}`` is appended, flushed
  and ``fsync``'d; a crash loses at most the cell in flight;
* on start, the journal is read, finished cells are skipped, a torn last line (the
  write a crash interrupted) is cut off, and a finished cell is never run or
  written twice;
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

import hashlib
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from hw.traces import TRACE_COLUMNS, run_metadata, trace_frame, utc_now, write_trace

from .base import DeviceGoneError, DvfsController, Meter
from .sampler import Sampler

Cell = Mapping[str, Any]
FREQ_COLUMNS = ("cpu_mhz", "gpu_mhz", "mem_mhz")


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


def read_journal(path: str | os.PathLike, repair: bool = False) -> dict[str, dict[str, Any]]:
    """cell_id -> row from a journal; a torn tail (crash mid-write) is ignored, and cut off when ``repair``.

    Every complete write ends with a newline, so bytes after the last newline are a
    torn write. A later line for the same cell (``retry_failed``) replaces the earlier.
    """
    path = Path(path)
    if not path.exists():
        return {}
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    good_end = len(data) - len(tail)
    done: dict[str, dict[str, Any]] = {}
    offset = 0
    for n, raw in enumerate(lines):
        if raw.strip():
            try:
                entry = json.loads(raw)
                done[entry["cell_id"]] = entry["row"]
            except (ValueError, KeyError, TypeError):
                if any(x.strip() for x in lines[n + 1:]):
                    raise ValueError(f"{path}: line {n + 1} is corrupt and not the last line; fix or delete it") from None
                good_end = offset  # garbage tail (e.g. zero-filled block after power loss)
                break
        offset += len(raw) + 1
    if repair and good_end < len(data):
        with open(path, "r+b") as fh:
            fh.truncate(good_end)
            fh.flush()
            os.fsync(fh.fileno())
    return done


class Journal:
    """Append-only, fsync'd JSON-lines record of finished cells."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done = read_journal(self.path, repair=True)
        self._fh = open(self.path, "ab")

    def append(self, cid: str, row: Mapping[str, Any]) -> None:
        if cid in self.done:
            return
        line = json.dumps({"cell_id": cid, "row": dict(row)}, sort_keys=True, default=_json_default) + "\n"
        self._fh.write(line.encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done[cid] = dict(row)

    def close(self) -> None:
        self._fh.close()


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return str(obj)


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def compact(out_path: str | os.PathLike, order: Sequence[str] | None = None, metadata: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Journal -> parquet + sidecar (atomic). ``order`` lists cell ids (journal order otherwise)."""
    done = read_journal(journal_path(out_path))
    ids = [c for c in (order or []) if c in done] + [c for c in done if c not in set(order or [])]
    frame = trace_frame([done[c] for c in ids]) if ids else trace_frame([])
    write_trace(frame, out_path, {**run_metadata(), **dict(metadata or {}), "cell_ids": ids})
    return frame


def collect(cells: Iterable[Cell], run_cell: Callable[[Cell], Mapping[str, Any]], out_path: str | os.PathLike,
            meter: Meter | None = None, *, warm_cell: Callable[[Cell], Any] | None = None, rate_hz: float = 50.0,
            device: str = "host", adapter: str | None = None, dvfs: DvfsController | None = None,
            freq_domains: Mapping[str, str] | None = None, retry_failed: bool = False, progress: bool = True,
            metadata: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Run every cell not yet journaled, then compact the journal to ``out_path`` (parquet).

    ``run_cell(cell)`` returns trace columns for the measured calls it made — at least
    ``n_runs`` (inferences in the call) and usually ``latency_ms``/``latency_p95_ms``.
    ``warm_cell(cell)``, when given, runs first, unmeasured. With a ``meter``, the
    energy of the ``run_cell`` call is measured and ``energy_mj`` (per inference) and
    ``power_w`` (mean) are filled unless the runner returned them. With ``dvfs``,
    cell keys named in ``freq_domains`` (e.g. ``{"cpu_mhz": "cpu_policy0"}``) are
    set before the cell and everything is restored at the end.
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
    meta = {"adapter": adapter, "device": device, "rate_hz": rate_hz,
            "meter_settings": meter.settings() if meter is not None else {}, **dict(metadata or {})}
    journal = Journal(journal_path(out_path))
    if retry_failed:
        journal.done = {k: v for k, v in journal.done.items() if not v.get("error")}
    todo = [(cid, c) for cid, c in zip(ids, cells) if cid not in journal.done]
    sampler = Sampler(meter, rate_hz) if meter is not None else None
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), disable=not progress, desc=f"collect {device}")
    gone: DeviceGoneError | None = None
    try:
        if sampler is not None:
            sampler.start()
        for cid, cell in todo:
            row, gone = _run_one(cell, run_cell, warm_cell, sampler, dvfs, freq_domains or {}, device, adapter)
            journal.append(cid, row)
            bar.update(1)
            if gone is not None:
                break
    finally:
        bar.close()
        if sampler is not None:
            sampler.stop()
        journal.close()
        try:
            if dvfs is not None:
                dvfs.restore()
        finally:
            frame = compact(out_path, ids, meta)  # also on Ctrl-C: what is done is on disk
    if gone is not None:
        raise gone
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
