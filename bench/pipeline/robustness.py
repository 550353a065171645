"""Reading the sensitivity stage's results back: which run the report and README show, whether it still describes
today's world, and which verdicts are robust or sensitive (to which assumed constant, in which direction).

Kept apart from :mod:`bench.pipeline.sensitivity` (which runs the perturbed worlds and imports the whole
evaluation) so that the report and ``python -m bench readme`` read the results without importing the simulator.
docs/sensitivity.md explains the files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from bench.paths import DATA_DIR, REPO_ROOT
from hw.atomic import file_sha256

#: the kinds of quantity recorded per world: a claim of data/claims.yaml, a learner verdict, a headline ratio
CLAIM, LEARNER, HEADLINE = "claim", "learner", "headline"


def simulator_files(radio_profile: str, data_dir: Path = DATA_DIR) -> list[Path]:
    """The YAML files the simulator reads that can hold assumed constants (the active radio profile only:
    the other profile is not part of the world being tested)."""
    data_dir = Path(data_dir)
    groups = [sorted((data_dir / "network" / radio_profile).glob("*.yaml")), sorted((data_dir / "sim").glob("*.yaml")),
              [data_dir / "dvfo" / "model.yaml"], sorted((data_dir / "profiles").glob("*.yaml")),
              [data_dir / "scenarios" / "_model.yaml"]]
    return [f for g in groups for f in g if f.is_file()]



def world_files(data_dir: Path = DATA_DIR) -> list[Path]:
    """The other files a world's evaluation reads and that hold no assumed constant: the scenarios (scripted and
    trace-driven), the throughput traces, the workload tables DVFO's measured curves and the float path of INT8 targets. A change to any of them
    changes the verdicts as much as a refitted profile does, so a committed run records their digest too."""
    data_dir = Path(data_dir)
    groups = [(data_dir / "scenarios").glob("*.yaml"), (data_dir / "traces").glob("*.csv"),
              (data_dir / "workloads").glob("*.csv"), (data_dir / "dvfo").glob("*.csv"),
              # where a request for a DNN without an INT8 model runs when sent to an INT8 target (bench/world/float_path.py)
              (data_dir / "calibration").glob("float_path.yaml")]
    return sorted(f for g in groups for f in g if f.is_file())

#: the committed run the report and README fall back to when the stage itself is off (docs/sensitivity.md)
COMMITTED_RUN = "sensitivity_run"
#: how the committed run is remade (params.yaml's sensitivity budget; the learners in results/train)
RERUN_COMMAND = f"python -m bench sensitivity --enable --out results/{COMMITTED_RUN} --workers 2"
#: a record of one run (date, budget, CPU time, what its inputs were): kept apart from summary.json, whose bytes
#: depend on params and data only
RUN_RECORD = "run.json"


def find_results(results_dir: str | Path) -> Path | None:
    """The folder whose sensitivity results the report and README show: the stage's own output
    (``results/sensitivity/``) when it ran enabled, else the committed run (``results/sensitivity_run/``) when
    present; None when neither holds an enabled run's summary."""
    for d in (Path(results_dir) / "sensitivity", Path(results_dir) / COMMITTED_RUN):
        try:
            summary = json.loads((d / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(summary, Mapping) and summary.get("enabled") and isinstance(summary.get("robustness"), Mapping):
            return d
    return None


def input_digests(suites: Sequence[Mapping[str, Any]] | None = None, radio_profile: str = "era2018",
                  data_dir: Path = DATA_DIR) -> dict[str, str]:
    """Short hashes of what a run's verdicts rest on: the simulator's data files, the claims, and each suite's
    trained learner (what it acts on: :func:`learner_digest`). The report compares them with today's to say whether a committed run
    still describes the current world."""
    import hashlib

    def digest(files: Iterable[Path]) -> str:
        h = hashlib.sha256()
        for f in sorted(files):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        return h.hexdigest()[:16]

    out = {"data": digest(simulator_files(radio_profile, data_dir)), "claims": digest([Path(data_dir) / "claims.yaml"]),
           "world": digest(world_files(data_dir))}
    for s in suites or []:
        art = Path(s["artefact"]) if s.get("artefact") else None
        if art is not None and art.exists():
            out[f"learner:{s['suite']}"] = learner_digest(art) or \
                digest([f for f in art.rglob("*") if f.is_file()] if art.is_dir() else [art])
    return out


#: written beside a trained learner's files by the train stage (:func:`write_learner_digest`): its
#: :func:`learner_digest` and the sha256 of each file it was computed from
DIGEST_FILE = "acting_digest.json"


def _learner_files(artefact: Path):
    """(files, policy_digest) of the learner whose files ``artefact`` holds, or None."""
    # DVFO's file names and digest from its torch-free module (issue 25: the report then imports no torch)
    from bench.policies import autoscale
    from bench.policies import dvfo_config as dvfo

    for files, policy_digest in (((dvfo.CONFIG_FILE, dvfo.WEIGHTS_FILE), dvfo.policy_digest),
                                 ((autoscale.META_FILE, autoscale.Q_FILE), autoscale.policy_digest)):
        if all((artefact / f).is_file() for f in files):
            return files, policy_digest
    return None


def learner_digest(artefact: Path) -> str | None:
    """What a trained learner acts on (its loader's ``policy_digest``: tensors, action table, acting configuration;
    not training-only keys or file metadata), or None for an artefact no learner here recognises (then its files'
    bytes are digested). A learner is stale when its decisions can differ, not when its files were rewritten.

    The train stage stores the digest beside the files (:data:`DIGEST_FILE`): it is read back when every file it
    was computed from still has the bytes it had (a sha256 of the compressed files, ~0.1 CPU-s), instead of
    decompressing and hashing the tables again (AutoScale's dense tables: ~1 GB, ~6 CPU-s per report/readme)."""
    artefact = Path(artefact)
    if not artefact.is_dir():
        return None
    found = _learner_files(artefact)
    if found is None:
        return None
    files, policy_digest = found
    stored = _stored_digest(artefact, files)
    if stored is not None:
        return stored
    try:
        return policy_digest(artefact)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable as that learner: fall back to the files' bytes


def _stored_digest(artefact: Path, files: Sequence[str]) -> str | None:
    """The digest :func:`write_learner_digest` stored, when it was computed from exactly these files' bytes."""
    try:
        record = json.loads((artefact / DIGEST_FILE).read_text())
        hashes, value = record["files"], record["digest"]
        if not isinstance(value, str) or not isinstance(hashes, Mapping) or set(hashes) != set(files):
            return None
        if all(file_sha256(artefact / f) == hashes[f] for f in files):
            return value
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def write_learner_digest(artefact: Path) -> str | None:
    """Compute a saved learner's :func:`learner_digest` once (at training) and store it beside its files, with the
    sha256 of each, so readers (report, readme, the sensitivity stage) need not decompress its tables again."""
    artefact = Path(artefact)
    found = _learner_files(artefact) if artefact.is_dir() else None
    if found is None:
        return None
    files, policy_digest = found
    value = policy_digest(artefact)
    record = {"digest": value, "files": {f: file_sha256(artefact / f) for f in files}}
    (artefact / DIGEST_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return value


def current_inputs(summary: Mapping[str, Any], repo_root: Path = REPO_ROOT) -> dict[str, str]:
    """Today's :func:`input_digests` for the inputs a run's summary recorded (its radio profile and the trained
    artefacts it replayed, at the same paths)."""
    suites = [{"suite": s, "artefact": str(repo_root / a)} for s, a in (summary.get("artefacts") or {}).items()]
    return input_digests(suites, str(summary.get("radio_profile", "era2018")), DATA_DIR)


def figure_index(fig_dir: str | Path) -> list[tuple[str, Path]]:
    """(quantity, PNG path) of every tornado that ``figures/index.md`` lists and that exists; lines that are not
    a ``* `quantity`: file.png`` entry (the title, a note) are skipped."""
    import re

    fig_dir = Path(fig_dir)
    try:
        lines = (fig_dir / "index.md").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out = []
    for line in lines:
        m = re.fullmatch(r"\* `([^`]+)`: ([A-Za-z0-9_.\-]+\.png)\s*", line)
        if m and (fig_dir / m.group(2)).is_file():
            out.append((m.group(1), fig_dir / m.group(2)))
    return out


def run_record(run_dir: str | Path) -> dict[str, Any]:
    """A run's record (``run.json``: date, command, budget, CPU time, input digests); {} when absent or unreadable."""
    try:
        rec = json.loads((Path(run_dir) / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) else {}


def stale_inputs(summary: Mapping[str, Any], current: Mapping[str, str]) -> list[str]:
    """Which inputs recorded in a run's summary (``inputs``: ``data``, ``claims``, ``learner:<suite>``) differ from
    today's ``current`` (:func:`input_digests`); [] when all match or the summary has no digests."""
    rec = summary.get("inputs") or {}
    return sorted(k for k in rec if k in current and rec[k] != current[k]) + \
        sorted(k for k in current if k.startswith("learner:") and rec and k not in rec)


def _oat_world(name: str) -> tuple[str, float] | None:
    """(constant key, factor) of a one-at-a-time world's name ``oat:<file>:<key>:x<factor>``; None for others."""
    if not name.startswith("oat:") or ":x" not in name:
        return None
    key, factor = name[len("oat:"):].rsplit(":x", 1)
    try:
        return key, float(factor)
    except ValueError:
        return None


def flips_by_quantity(summary: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Quantity -> its one-at-a-time flips, each ``{constant, factor, to}`` (the direction: the constant halved
    or doubled, and the verdict it then gets), from summary.json's ``flips``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for f in summary.get("flips") or []:
        parsed = _oat_world(str(f.get("world", "")))
        if parsed is None:
            continue
        out.setdefault(str(f.get("quantity", "")), []).append(
            {"constant": parsed[0], "factor": parsed[1], "to": str(f.get("to", ""))})
    return out


def describe_quantity(quantity: str, claims: Sequence[Mapping] = ()) -> str:
    """A quantity's name for a reader: a claim by its paper and text, a learner verdict as 'suite: learner vs
    reference', a headline ratio as 'suite: policy, ratio'."""
    kind, _, rest = quantity.partition(":")
    if kind == CLAIM:
        c = next((c for c in claims if c.get("id") == rest), None)
        if c is not None:
            where = f", {c['scenario']}" if c.get("scenario") else ""
            return f"{c['paper']}: {c['claim']} ({c['suite']}{where})"
        return rest
    if kind == LEARNER:
        suite, _, pair = rest.partition(":")
        return f"{suite}: {pair.replace('_vs_', ' vs ', 1)}"
    if kind == HEADLINE:
        parts = rest.split(":")
        return f"{parts[0]}: {parts[1]}, {':'.join(parts[2:])}" if len(parts) >= 3 else rest
    return quantity


def short_constant(key: str) -> str:
    """``network/era2018/lte.yaml:tail_mw`` -> ``era2018/lte.yaml: tail_mw``: the file's last folder kept, so
    ``dvfo/model.yaml`` and ``sim/model.yaml`` stay apart (the full path is in constants.csv)."""
    file, _, path = key.partition(":")
    return f"{'/'.join(file.split('/')[-2:])}: {path}" if path else key


def flip_text(flips: Sequence[Mapping[str, Any]], short: bool = True) -> str:
    """'lte.yaml: tail x2 (-> differs); wifi.yaml: beta x0.5, x2 (-> close)': per constant, the factors that flip
    the verdict and the verdicts they give."""
    by_const: dict[str, list[tuple[float, str]]] = {}
    for f in flips:
        by_const.setdefault(str(f["constant"]), []).append((float(f["factor"]), str(f["to"])))
    parts = []
    for key, fs in by_const.items():
        fs = sorted(set(fs))
        tos = ", ".join(dict.fromkeys(to for _, to in fs))
        parts.append(f"{short_constant(key) if short else key} {', '.join(f'x{x:g}' for x, _ in fs)} (-> {tos})")
    return "; ".join(parts)


def robustness_table(summary: Mapping[str, Any], claims: Sequence[Mapping] = ()) -> pd.DataFrame:
    """One row per recorded quantity that has a verdict: what it is, its verdict in the unperturbed world, its
    robustness, the one-at-a-time flips (constant, direction, new verdict) and the share of joint samples that
    flip it."""
    flips = flips_by_quantity(summary)
    base = summary.get("baseline") or {}
    lhs = summary.get("lhs_flip_rate") or {}
    rows = []
    for q, rob in sorted((summary.get("robustness") or {}).items()):
        b = base.get(q) or {}
        rate = lhs.get(q)
        rows.append({"quantity": q, "kind": q.split(":", 1)[0], "what": describe_quantity(q, claims),
                     "verdict": str(b.get("verdict", "")), "value": b.get("value"), "robustness": str(rob),
                     "flips (one at a time)": flip_text(flips.get(q, [])),
                     "joint-sample flip rate": float(rate) if rate is not None else float("nan")})
    return pd.DataFrame(rows, columns=["quantity", "kind", "what", "verdict", "value", "robustness",
                                       "flips (one at a time)", "joint-sample flip rate"])


def learners_text(summary: Mapping[str, Any]) -> str:
    """Which suites' learners the run replayed (summary.json's ``learners``), and which it could not (no trained
    artefact: their learner claims are not assessed)."""
    learners = summary.get("learners")
    if not isinstance(learners, Mapping) or not learners:
        return "learners as trained (not retrained per world)"  # a summary from before ``learners`` was recorded
    replayed = [s for s, v in learners.items() if str(v).startswith("as trained")]
    text = (f"the learners of {len(replayed)} of {len(learners)} suites replayed as trained (not retrained per world)"
            if replayed else "no learner replayed")
    missing = sorted(set(learners) - set(replayed))
    if missing:
        text += f"; no trained learner for {', '.join(missing)}, whose learner claims are not assessed"
    return text


def budget_text(summary: Mapping[str, Any], record: Mapping[str, Any] | None = None) -> str:
    """One sentence: what the run perturbed, at which budget, when, and at what CPU cost."""
    record = record or {}
    inv = summary.get("invalid_worlds") or {}
    factors = " and x".join(f"{float(f):g}" for f in summary.get("factors", []))
    seeds = summary.get("seeds", "?")
    text = (f"{summary.get('constants', '?')} assumed constants x{factors} one at a time plus "
            f"{summary.get('lhs_samples', 0)} joint Latin-hypercube worlds ({summary.get('worlds', '?')} worlds, "
            f"{len(inv)} refused by the data's validation), {seeds} seed{'' if seeds == 1 else 's'} x "
            f"{summary.get('steps', '?')} requests per cell on the held-out scenarios and those a claim names, "
            f"{learners_text(summary)}")
    if summary.get("limited_to_first_constants") is not None or summary.get("only_matching"):
        text += " - a partial run (--limit/--only)"
    untested, lhs_missing = summary.get("constants_not_tested") or [], int(summary.get("lhs_not_run") or 0)
    if summary.get("worlds_not_run"):
        text += (f" - cut short: {summary['worlds_not_run']} worlds not run ({len(untested)} constants not tested "
                 f"one at a time, {lhs_missing} joint worlds missing), so 'robust' means no flip among the worlds run")
    if record.get("date"):
        cpu = float(record.get("cpu_s") or 0) + float(record.get("worlds_cpu_s") or 0)
        text += f"; run {record['date'][:10]}" + (f", {cpu / 60:.0f} CPU-minutes" if cpu else "")
    return text + "."
