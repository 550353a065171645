"""The trace schema: one row per measured configuration, long format, parquet.

Every adapter, the host measurement in the ``profile`` stage and ``hw.collect``
write traces through this module so that the schema (docs/architecture.md, "Contracts")
lives in one place. Units are in the column names. Nothing is silently dropped:
a configuration that failed is a row whose ``error`` column says why.

A trace file ``X.parquet`` has a metadata sidecar ``X.meta.json`` (host, OS,
library versions, adapter settings, git revision).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from hw import provenance as _provenance
from hw.atomic import atomic_write_bytes  # noqa: F401  (re-exported: hw.collect writes through it)
from hw.provenance import cpu_model, git_revision  # noqa: F401  (re-exported: one provenance helper)

#: Column -> pandas dtype, in the order the files are written.
TRACE_COLUMNS: dict[str, str] = {
    "device": "string",
    "adapter": "string",
    "workload": "string",
    "target": "string",
    "cpu_mhz": "float64",
    "gpu_mhz": "float64",
    "mem_mhz": "float64",
    "batch": "int64",
    "latency_ms": "float64",  # median over n_runs
    "latency_p95_ms": "float64",
    "energy_mj": "float64",  # per inference; NaN where no meter exists
    "power_w": "float64",  # mean over the measured window; NaN without a meter
    "n_runs": "int64",
    "source": "string",  # measured | modeled | reference
    "meter": "string",  # which meter gave energy/power ("none" when none)
    "timestamp": "string",  # ISO 8601, UTC
    "error": "string",  # empty when the configuration succeeded
}
SOURCES = ("measured", "modeled", "reference")
REQUIRED = ("device", "adapter", "workload", "target", "source", "meter")

#: Packages whose versions every metadata sidecar records.
_VERSIONED = ("torch", "torchvision", "numpy", "pandas", "pyarrow", "gymnasium", "nvidia-ml-py")


class TraceSchemaError(ValueError):
    """A trace row or file does not follow the schema."""


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def trace_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a schema-conforming frame from row dicts.

    Missing optional columns become NA; an unknown column, a missing required
    column or a bad ``source`` raises :class:`TraceSchemaError` naming it.
    """
    rows = list(rows)
    for i, row in enumerate(rows):
        unknown = set(row) - set(TRACE_COLUMNS)
        if unknown:
            raise TraceSchemaError(
                f"trace row {i}: unknown column(s) {sorted(unknown)}; allowed: {list(TRACE_COLUMNS)}"
            )
        missing = [c for c in REQUIRED if row.get(c) in (None, "")]
        if missing:
            raise TraceSchemaError(f"trace row {i}: missing required column(s) {missing}")
        if row["source"] not in SOURCES:
            raise TraceSchemaError(f"trace row {i}: source={row['source']!r}; allowed: {list(SOURCES)}")
    frame = pd.DataFrame(rows, columns=list(TRACE_COLUMNS))
    return coerce(frame)


def coerce(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast columns to the schema dtypes (int columns become nullable Int64)."""
    out = frame.reindex(columns=list(TRACE_COLUMNS))
    for col, dtype in TRACE_COLUMNS.items():
        out[col] = out[col].astype("Int64" if dtype == "int64" else dtype)
    out["error"] = out["error"].fillna("")
    return out


def library_versions(names: Iterable[str] = _VERSIONED) -> dict[str, str]:
    return _provenance.library_versions(names)


def run_metadata(**extra: Any) -> dict[str, Any]:
    """Host, OS, library versions and git revision, plus ``extra`` (adapter settings...)."""
    meta = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "processor": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python_executable": sys.executable,
        "versions": library_versions(),
        "git_revision": git_revision(),
        "created": utc_now(),
    }
    meta.update(extra)
    return meta


def sidecar_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def write_trace(frame: pd.DataFrame, path: str | os.PathLike, metadata: Mapping[str, Any]) -> Path:
    """Write ``frame`` as parquet plus its ``.meta.json`` sidecar, both atomically."""
    import io

    path = Path(path)
    buf = io.BytesIO()
    coerce(frame).to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_bytes(sidecar_path(path), (json.dumps(dict(metadata), indent=2, sort_keys=True, default=str) + "\n").encode())
    return path


def read_trace(path: str | os.PathLike) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a trace and its sidecar (empty dict when the sidecar is absent)."""
    path = Path(path)
    frame = coerce(pd.read_parquet(path))
    side = sidecar_path(path)
    meta = json.loads(side.read_text()) if side.exists() else {}
    return frame, meta
