"""``python -m bench predict``: latency, power and energy of a DNN on a device target, from a profile.

Batch form: ``--csv IN --out OUT`` reads rows with columns ``profile, workload,
target`` and optionally ``level_mhz`` (a core clock, or ``max``/empty for the
highest level), ``mem_level_mhz`` (likewise) and ``precision`` (must equal the
target's), and writes the same rows plus ``latency_ms, power_w, energy_mj,
runtime, source, error``. A row that cannot be predicted keeps its place with
``error`` saying why (and NaN numbers); the count goes to stderr. A ragged row (more or
fewer cells than the header) cannot be placed in the columns: it is left out of the output
and counted in a ``warning:`` line naming its file line; a file without one usable row is
refused (exit 2).

Single-row form: ``--profile P --workload W --target T [--level-mhz F]
[--mem-level-mhz F] [--precision P] [--json]``.

``profile`` is a shipped profile name (``python -m bench profiles``) or the path
of a profile YAML; ``workload`` is a suite workload or a reference model with
op-class features (``data/workloads/op_classes.csv``).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


from bench.validate import read_utf8
from bench.world.float_path import resolve
from bench.world.profiles import DeviceProfile, ProfileError, Work, load_profile

OUTPUT_COLUMNS = ("latency_ms", "power_w", "energy_mj", "runtime", "source", "error")


class PredictError(ValueError):
    """A request that cannot be predicted; the message says which field and what is allowed."""


def _blank(text: Any) -> bool:
    return text is None or (isinstance(text, float) and math.isnan(text)) or str(text).strip() == ""


def _level(text: Any, levels: Sequence[float], what: str) -> float:
    if text is None or (isinstance(text, float) and math.isnan(text)) or str(text).strip().lower() in ("", "max"):
        return float(levels[-1])
    try:
        value = float(text)
    except ValueError:
        raise PredictError(f"{what}={text!r} is not a number or 'max'") from None
    lo, hi = float(min(levels)), float(max(levels))
    if not lo <= value <= hi:
        raise PredictError(f"{what}={value:g} is outside the target's range [{lo:g}, {hi:g}] MHz")
    return value


def _either_level(text: Any, run_levels: Sequence[float], asked_levels: Sequence[float], what: str) -> float:
    """A clock for a request an int8 target hands on (bench/world/float_path.py): within the range of the
    processor that runs it, it is used; a clock of the target asked for means that processor's top level."""
    try:
        return _level(text, run_levels, what)
    except PredictError:
        _level(text, asked_levels, what)  # neither range: the asked target's message
        return float(run_levels[-1])


def _nan_reason(t: Any, latency: float, power: float) -> str:
    """Why a number of a prediction is NaN ("" when all are finite): the profile's own source for it."""
    reasons = []
    if not math.isfinite(latency):
        reasons.append("latency not computable from this profile")
    if not math.isfinite(power):
        unmeasured = [f"{k} ({t.sources.get(k, 'no source')})" for k in
                      ("static_power_w", "dynamic_power_w_at_max", "mem_power_w_at_max")
                      if not math.isfinite(float(getattr(t, k)))]
        reasons.append("power and energy not available: " + ("; ".join(unmeasured) or "power model gives NaN"))
    return "; ".join(reasons)


#: how many skipped line numbers a warning lists before "... (N more)"
SKIPPED_LINES_SHOWN = 8


@dataclass(frozen=True)
class InputRows:
    """A predict input CSV as read: its usable rows (strings), each row's file line, and the skipped lines."""

    frame: pd.DataFrame
    lines: tuple[int, ...]
    #: (file line, why) of each row that could not be read into the columns (a ragged row)
    skipped: tuple[tuple[int, str], ...]

    def skipped_text(self) -> str:
        """The skipped rows in a few words: ``2 ragged rows skipped (line 3: 5 cells ..., line 9: ...)``."""
        shown = ", ".join(f"line {line}: {why}" for line, why in self.skipped[:SKIPPED_LINES_SHOWN])
        more = f", ... ({len(self.skipped) - SKIPPED_LINES_SHOWN} more)" if len(self.skipped) > SKIPPED_LINES_SHOWN else ""
        return f"{len(self.skipped)} ragged row{'s' if len(self.skipped) != 1 else ''} skipped ({shown}{more})"


def read_input(path: str | Path) -> InputRows:
    """The input CSV as strings. A ragged row (more or fewer cells than the header) is skipped and counted with its
    file line; not UTF-8, not CSV, a NUL, no header or a duplicate column is one clean :class:`PredictError`."""
    path = Path(path)
    text = read_utf8(path, PredictError, prefix="--csv ")
    if "\x00" in text:
        raise PredictError(f"--csv {path.name}: holds a NUL character at offset {text.index(chr(0))}; allowed: CSV text")
    reader = csv.reader(io.StringIO(text, newline=""))
    table: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for row in reader:
            table.append((start, row))  # the line the row starts on (a quoted cell may span lines)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise PredictError(f"--csv {path.name}: line {reader.line_num}: not CSV ({exc}); allowed: CSV text") from None
    table = [(line, row) for line, row in table if any(c.strip() for c in row)]
    if not table:
        raise PredictError(f"--csv {path.name}: empty file; allowed: a header 'profile,workload,target[,level_mhz,"
                           f"mem_level_mhz,precision]' and rows")
    header = [h.strip() for h in table[0][1]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise PredictError(f"--csv {path.name}: line {table[0][0]}: duplicate column(s) {dup}; allowed: each column once")
    good = [(line, row) for line, row in table[1:] if len(row) == len(header)]
    skipped = tuple((line, f"{len(row)} cells but the header has {len(header)}") for line, row in table[1:]
                    if len(row) != len(header))
    return InputRows(pd.DataFrame([row for _, row in good], columns=header, dtype=str),
                     tuple(line for line, _ in good), skipped)


def read_rows(path: str | Path) -> pd.DataFrame:
    """The usable rows of a predict CSV (input or output) as strings; see :func:`read_input`."""
    return read_input(path).frame


def json_safe(obj: Any) -> Any:
    """A copy that ``json.dumps(allow_nan=False)`` accepts: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _suite_acc_int8() -> dict[str, float]:
    """The suite workloads' published int8 accuracy (NaN: no int8 model), as the simulator reads it."""
    from bench.paths import DATA_DIR
    path = DATA_DIR / "workloads" / "workloads.csv"
    if not path.exists():
        return {}
    table = pd.read_csv(path, usecols=["workload", "acc_int8"])
    return {str(w): float(a) for w, a in zip(table["workload"], table["acc_int8"])}


class Predictor:
    """Caches profiles and the op-class table across rows."""

    def __init__(self, features: pd.DataFrame | None = None):
        if features is None:
            from bench.world.opclasses import load_op_classes
            features = load_op_classes()
        self.features = features.set_index("model")
        self._profiles: dict[str, DeviceProfile] = {}
        self.acc_int8 = _suite_acc_int8()

    def profile(self, name: str) -> DeviceProfile:
        if name not in self._profiles:
            try:
                self._profiles[name] = load_profile(name)
            except ProfileError as exc:
                raise PredictError(str(exc)) from None
        return self._profiles[name]

    def predict(self, profile: str, workload: str, target: str, level_mhz: Any = None, mem_level_mhz: Any = None,
                precision: Any = None, cpu_level_mhz: Any = None) -> dict[str, Any]:
        prof = self.profile(str(profile).strip())
        if target not in prof.targets:
            raise PredictError(f"target={target!r}: profile {prof.name} has targets {sorted(prof.targets)}")
        t = prof.targets[target]
        if workload not in self.features.index:
            raise PredictError(f"workload={workload!r} has no op-class features; known: {', '.join(sorted(self.features.index))}")
        # an int8 target cannot run a DNN that has no int8 model: the runtime runs it elsewhere
        # (bench/world/float_path.py); that target's own top clock then applies
        run_on, why = resolve(prof, target, workload, acc_int8=self.acc_int8.get(workload))
        if not _blank(precision) and str(precision).strip() != run_on.precision:
            raise PredictError(f"precision={precision!r}: target {prof.name}/{target} runs {run_on.precision} "
                               f"({run_on.runtime or 'runtime not stated'})" + (f"; {workload}: {why}" if why else ""))
        if why:  # a clock of the processor that runs it, or of the target asked for (then the top one)
            f = _either_level(level_mhz, run_on.freq_mhz, t.freq_mhz, "level_mhz")
            fm = _either_level(mem_level_mhz, run_on.mem_freq_mhz, t.mem_freq_mhz, "mem_level_mhz")
            t = run_on
        else:
            f = _level(level_mhz, t.freq_mhz, "level_mhz")
            fm = _level(mem_level_mhz, t.mem_freq_mhz, "mem_level_mhz")
        cpu = None
        if not _blank(cpu_level_mhz):
            if "cpu" not in prof.targets or target == "cpu":
                raise PredictError(f"cpu_level_mhz={cpu_level_mhz!r}: only for an accelerator target of a profile "
                                   f"with a cpu target (the host CPU that launches its kernels)")
            cpu = _level(cpu_level_mhz, prof.targets["cpu"].freq_mhz, "cpu_level_mhz")
        lat, power, source = t.estimate(workload, Work.from_features(self.features.loc[workload]), f, fm,
                                        cpu_freq_mhz=cpu)
        return {"profile": prof.name, "workload": workload, "target": target, "level_mhz": f, "mem_level_mhz": fm,
                "precision": t.precision, "runtime": t.runtime, "latency_ms": lat, "power_w": power,
                "energy_mj": lat * power, "source": f"{source}; {why}" if why else source,
                "error": _nan_reason(t, lat, power)}


def predict_frame(rows: pd.DataFrame, predictor: Predictor | None = None, where: str = "input",
                  lines: Sequence[int] | None = None) -> tuple[pd.DataFrame, int]:
    """The rows plus the output columns; the number of rows that failed (their ``error`` says why, naming the
    row's file line from ``lines``, or its position + 2 -- the header is line 1 -- without)."""
    for col in ("profile", "workload", "target"):
        if col not in rows.columns:
            raise PredictError(f"{where} lacks column {col!r}; needed: profile, workload, target "
                               f"[, level_mhz, mem_level_mhz, precision]")
    predictor = predictor or Predictor()
    out = rows.copy()
    results: list[Mapping[str, Any]] = []
    failed = 0
    for k, (i, r) in enumerate(rows.iterrows()):
        try:
            res = predictor.predict(str(r["profile"]), str(r["workload"]), str(r["target"]), r.get("level_mhz"),
                                    r.get("mem_level_mhz"), r.get("precision"), r.get("cpu_level_mhz"))
            results.append({k: res[k] for k in OUTPUT_COLUMNS})
        except PredictError as exc:
            failed += 1
            results.append({"latency_ms": math.nan, "power_w": math.nan, "energy_mj": math.nan, "runtime": "",
                            "source": "", "error": f"row {lines[k] if lines is not None else k + 2}: {exc}"})
    for col in OUTPUT_COLUMNS:
        out[col] = [r[col] for r in results]
    return out, failed


def write_predictions(src: str | Path, out_path: str | Path) -> tuple[int, int, InputRows]:
    """Predict every row of the CSV ``src`` and write them to ``out_path`` (the batch form above); returns
    (rows written, rows that failed, the input as read: its ``skipped`` ragged rows are not written). A bad
    ``out_path``, or an input without one usable row, raises :class:`PredictError` (one line)."""
    out_dir = Path(out_path).parent
    if not out_dir.is_dir():
        raise PredictError(f"--out {out_path}: directory {str(out_dir)!r} does not exist; allowed: a file "
                           f"in an existing directory")
    if Path(out_path).is_dir():
        raise PredictError(f"--out {out_path}: is a directory; allowed: a file path")
    rows = read_input(src)
    if rows.frame.empty:  # nothing to predict: a user's mistake, not an empty output
        raise PredictError(f"--csv {src}: no usable row"
                           + (f": {rows.skipped_text()}; allowed: one cell per header column (quote cells that hold "
                              f"commas)" if rows.skipped else " under the header; allowed: one or more rows"))
    if rows.skipped and Path(out_path).exists() and os.path.samefile(src, out_path):  # would drop the user's rows
        raise PredictError(f"--out {out_path} is the --csv file and {rows.skipped_text()}: writing would lose "
                           f"them; allowed: another --out (or fix those rows)")
    out, failed = predict_frame(rows.frame, where=f"--csv {src}", lines=rows.lines)
    tmp = Path(out_path).with_name(f".{Path(out_path).name}.{os.getpid()}.tmp")
    try:
        # a cell holding a bare CR must be quoted too (csv quotes only the line terminator's characters);
        # written beside and renamed: a failed write (a full disk) never leaves a half file, nor loses an
        # input the user named as --out too
        out.to_csv(tmp, index=False, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
        os.replace(tmp, out_path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PredictError(f"--out {out_path}: cannot write ({exc.strerror or exc})") from None
    return len(out), failed, rows


def describe(res: Mapping[str, Any]) -> str:
    """One prediction (:meth:`Predictor.predict`) as one line of text."""
    return (f"{res['profile']}/{res['target']} @ {res['level_mhz']:g} MHz ({res['runtime']}): {res['workload']} "
            f"{res['latency_ms']:.3f} ms, {res['power_w']:.3f} W, {res['energy_mj']:.3f} mJ ({res['source']})"
            + (f" [{res['error']}]" if res["error"] else ""))
