"""Sensitivity of every verdict to every assumption: which `assumed:` constant can flip a claim.

Every number in data/ that the simulator reads and that is a modelling assumption carries
``{value, source: "assumed: why"}``. This module

1. **enumerates** them (:func:`assumed_constants`): the numeric ``{value, source}`` leaves whose
   source starts with ``assumed:`` in the files the simulator reads — the active radio profile
   (``data/network/<world.radio_profile>/``), ``data/sim/``, ``data/dvfo/model.yaml``, the device
   profiles ``data/profiles/*.yaml`` and the interference model ``data/scenarios/_model.yaml``;
2. builds **perturbed worlds**: one constant at a time x0.5 and x2, and a joint Latin-hypercube
   sample over all of them (log-uniform in [x0.5, x2], seeded from params' ``seed``);
3. evaluates each world cheaply (``sensitivity.seeds`` x ``sensitivity.steps`` on the suites'
   held-out scenarios and the scenarios the claims name) with the non-learner references and the
   learners *as trained* (``results/train/<run>/policy``; never retrained per world);
4. recomputes every claim of the papers-vs-suite table (:mod:`bench.pipeline.claims`), every
   learner verdict (:func:`bench.pipeline.claims.what_learners_add`) and the headline ratios, and
   records per (world, quantity) the value, the unperturbed value and whether the verdict flipped.

How a world is perturbed: data/ is copied to a temporary directory, the one YAML file holding the
constant is rewritten there with the leaf scaled, and the world is evaluated in a **fresh Python
process** whose ``BENCH_DATA_DIR`` points at the copy (:mod:`bench.paths`). Every loader then reads
the perturbed data through its ordinary path (no loader needs an in-memory hook, no cache can leak a
value between worlds) and data/ itself is never written. The engine (:mod:`bench.pipeline.engine`)
runs the worlds in parallel, locally or on Dask.

Outputs (``results/sensitivity/``): ``sensitivity.csv`` (one row per world x quantity),
``constants.csv`` (what was perturbed, and what was not and why), ``lhs_samples.csv`` (the joint
sample's factors), ``summary.json`` and ``figures/tornado_<quantity>.png``. docs/sensitivity.md explains
how to read them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from bench.paths import DATA_DIR, REPO_ROOT
from bench.seeding import derive_seed

#: columns of sensitivity.csv (the empty table of a disabled stage has them too)
COLUMNS = ("world", "kind", "constant", "factor", "quantity", "value", "baseline_value", "verdict",
           "baseline_verdict", "flipped", "status")
# reading the results back (report, README) lives in bench.pipeline.robustness; re-exported here for the stage
from bench.pipeline.robustness import (CLAIM, COMMITTED_RUN, HEADLINE, LEARNER, RERUN_COMMAND,  # noqa: E402,F401
                                       RUN_RECORD, input_digests, simulator_files)
#: verdicts that say the quantity was not measured: such a quantity is "not assessed", never "robust"
NOT_ASSESSED = {"not measured", "n/a"}


# --------------------------------------------------------------------------- what is assumed

@dataclass(frozen=True)
class Constant:
    """One ``{value, source: "assumed: ..."}`` leaf of a data file."""

    file: str  # relative to data/, e.g. "network/era2018/lte.yaml"
    path: tuple  # keys (and list indices) from the file's root to the leaf's mapping
    value: Any  # a number or a list of numbers
    source: str
    perturbed: bool = True
    why_not: str = ""  # when not perturbed: why

    @property
    def key(self) -> str:
        return f"{self.file}:{'.'.join(map(str, self.path))}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _scan(node: Any, path: tuple, out: list[tuple[tuple, Mapping]]) -> None:
    if isinstance(node, Mapping):
        if "value" in node and "source" in node:
            out.append((path, node))
            return
        for k, v in node.items():
            _scan(v, path + (k,), out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _scan(v, path + (i,), out)


def _why_not(value: Any) -> str:
    """Why a numeric assumed leaf is not scaled ('' = it is)."""
    vals = value if isinstance(value, list) else [value]
    if not vals or not all(_is_number(v) for v in vals):
        return "not numeric"
    if any(v < 0 for v in vals):
        return "a logarithmic level (dB/dBm, negative): scaling it has no physical meaning"
    if not any(v > 0 for v in vals):
        return "zero: scaling leaves it unchanged"
    return ""


def assumed_constants(radio_profile: str = "era2018", data_dir: Path = DATA_DIR,
                      include_skipped: bool = False) -> list[Constant]:
    """Every assumed numeric leaf of the simulator's data files, in file order (a number, or a list of
    numbers scaled as a whole); with ``include_skipped`` also the assumed leaves that are not perturbed
    (non-numeric, or dB levels), each saying why."""
    data_dir = Path(data_dir)
    out: list[Constant] = []
    for f in simulator_files(radio_profile, data_dir):
        leaves: list[tuple[tuple, Mapping]] = []
        _scan(yaml.safe_load(f.read_text()), (), leaves)
        for path, node in leaves:
            source = str(node["source"])
            if not source.startswith("assumed:"):
                continue
            why = _why_not(node["value"])
            if not why and path and str(path[-1]) == "freq_mhz":
                # a frequency level names an action (dsp@1000): scaled, the trained learners' saved actions no
                # longer exist in the env and cannot be replayed
                why = "an action-space level (it names an action of the trained learners): not perturbed"
            if why and not include_skipped:
                continue
            out.append(Constant(f.relative_to(data_dir).as_posix(), path, node["value"], source, not why, why))
    return out


# --------------------------------------------------------------------------- perturbed worlds

def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, list):
        return [_scaled(v, factor) for v in value]
    out = float(value) * factor
    return int(round(out)) if isinstance(value, int) and float(out).is_integer() else out


def perturb_tree(tree: Any, path: Sequence, factor: float) -> Any:
    """A copy of a loaded YAML tree with the ``{value, source}`` leaf at ``path`` scaled by ``factor``."""
    tree = copy.deepcopy(tree)
    node = tree
    for k in path:
        node = node[k]
    node["value"] = _scaled(node["value"], factor)
    return tree


def write_perturbed_data(dest: Path, factors: Mapping[str, float], src: Path = DATA_DIR) -> Path:
    """Copy ``src`` (data/) to ``dest`` and scale each constant ``file:path`` of ``factors`` there.

    Only the files holding a perturbed constant are rewritten (YAML via safe_dump; the loaders read
    values, not comments); ``src`` is never written."""
    dest = Path(dest)
    shutil.copytree(src, dest, dirs_exist_ok=True)
    by_file: dict[str, list[tuple[tuple, float]]] = {}
    for key, factor in factors.items():
        file, dotted = key.split(":", 1)
        path = tuple(int(p) if p.lstrip("-").isdigit() else p for p in dotted.split("."))
        by_file.setdefault(file, []).append((path, float(factor)))
    for file, edits in by_file.items():
        tree = yaml.safe_load((Path(src) / file).read_text())
        for path, factor in edits:
            tree = perturb_tree(tree, path, factor)
        (dest / file).write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True))
    return dest


def lhs_factors(n_constants: int, n_samples: int, root_seed: int, low: float = 0.5, high: float = 2.0) -> np.ndarray:
    """``n_samples x n_constants`` factors, a Latin hypercube log-uniform in [low, high], seeded from the root seed
    (``derive_seed(root, "sensitivity", "lhs")``): the same params give the same sample."""
    from scipy.stats import qmc

    if n_samples <= 0 or n_constants <= 0:
        return np.empty((max(n_samples, 0), max(n_constants, 0)))
    u = qmc.LatinHypercube(d=n_constants, seed=derive_seed(root_seed, "sensitivity", "lhs")).random(n_samples)
    return np.exp(np.log(low) + u * (np.log(high) - np.log(low)))


@dataclass(frozen=True)
class World:
    """One perturbed world: a name, its kind (baseline / oat / lhs) and the factor per constant key."""

    name: str
    kind: str
    factors_json: str  # {constant key: factor}, JSON (plain data for any engine)
    constant: str = ""  # the one constant of an oat world
    factor: float = 1.0  # its factor


def one_sided(factor: float, refused: str | None) -> float:
    """A joint-sample factor folded onto the side the data accepts: ``refused="up"`` (the data's validation refused
    this constant's one-at-a-time increase, e.g. a fraction that may not exceed 1) maps f > 1 to 1/f, so the
    constant only moves down (log-uniform in [1/high, 1]); ``"down"`` the mirror image; None leaves it."""
    if refused == "up" and factor > 1:
        return 1.0 / factor
    if refused == "down" and factor < 1:
        return 1.0 / factor
    return factor


def refused_directions(ws: Sequence[World], results: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Constant -> ``up`` / ``down``: the direction in which the data's own validation refused its one-at-a-time
    change (an ``invalid`` world); a constant refused both ways is left out (the joint sample cannot move it
    either way, and says so by its invalid worlds)."""
    up, down = set(), set()
    for w, r in zip(ws, results):
        if w.kind == "oat" and str(r.get("status", "")).startswith("invalid"):
            (up if w.factor > 1 else down).add(w.constant)
    return {**{k: "up" for k in up - down}, **{k: "down" for k in down - up}}


def worlds(constants: Sequence[Constant], factors: Sequence[float], lhs_samples: int, root_seed: int,
           refused: Mapping[str, str] | None = None) -> list[World]:
    """The baseline, every constant x every factor (one at a time), then the joint sample (each constant's factor
    folded by :func:`one_sided` onto the side the data accepts, when ``refused`` names it)."""
    out = [World("baseline", "baseline", "{}")]
    for c in constants:
        for f in factors:
            out.append(World(f"oat:{c.key}:x{f:g}", "oat", json.dumps({c.key: f}), c.key, float(f)))
    refused = refused or {}
    sample = lhs_factors(len(constants), lhs_samples, root_seed)
    for i, row in enumerate(sample):
        out.append(World(f"lhs:{i:03d}", "lhs", json.dumps({c.key: one_sided(float(x), refused.get(c.key))
                                                           for c, x in zip(constants, row)})))
    return out


# --------------------------------------------------------------------------- evaluating one world

def _suite_specs(params, train_dir: Path, policies: Sequence[str], claims: Sequence[Mapping]) -> list[dict]:
    """Per suite: what one world evaluates (env arguments, policies, scenarios; the trained learner when present)."""
    from bench.pipeline.training import config_class, make_config

    out = []
    for suite, s in params.evaluate.suites.items():
        run = params.train.runs[s.run]
        learner = run.learner
        run_dir = train_dir / s.run
        trained = (run_dir / "train.json").is_file() and (run_dir / "policy").exists()
        if trained:
            info = json.loads((run_dir / "train.json").read_text())
            config = config_class(learner).from_dict(info["config"])
        else:
            over = dataclasses.asdict(params.train.learner_config(learner))
            config = make_config(learner, run.profile, over, params.seed, s.run)
        scenarios = list(s.heldout_scenarios) or list(s.scenarios)
        scenarios = list(dict.fromkeys(scenarios + [c["scenario"] for c in claims
                                                    if c["suite"] == suite and c.get("scenario")]))
        pols = [p for p in s.policies if p in policies or (p == "greedy_oracle" and "oracle" in policies)
                or (p == "oracle" and "greedy_oracle" in policies)]
        out.append({"suite": suite, "learner": learner, "profile": run.profile, "run_config": dataclasses.asdict(config)
                    if not trained else info["config"], "env_kwargs_json": json.dumps(config.env_kwargs(), sort_keys=True,
                                                                                       default=list),
                    "artefact": str(run_dir / "policy") if trained else "", "policies": pols, "scenarios": scenarios,
                    "heldout": list(s.heldout_scenarios)})
    return out


def _cells(spec: Mapping, seeds: int, steps: int, root_seed: int) -> list:
    from bench.pipeline.evaluate import Cell, fitted_policy_kwargs
    from bench.seeding import derive_seeds
    from bench.world.scenarios import load_scenario

    eval_seeds = derive_seeds(root_seed, seeds, "sensitivity", spec["suite"])
    names = ([spec["learner"]] if spec["artefact"] else []) + list(spec["policies"])
    run_config = json.loads(json.dumps(spec["run_config"], default=list))
    length = {sc: min(int(steps), load_scenario(sc).steps) for sc in spec["scenarios"]}
    out = []
    for pol in names:
        fitted = json.dumps(fitted_policy_kwargs(pol, spec["suite"], run_config, spec["scenarios"], eval_seeds, steps,
                                                 root_seed), sort_keys=True, default=list)
        for sc in spec["scenarios"]:
            for s in eval_seeds:
                out.append(Cell(spec["suite"], spec["learner"], spec["profile"], pol, sc, s, length[sc],
                                spec["env_kwargs_json"], spec["artefact"] if pol == spec["learner"] else "", fitted))
    return out


def headline_ratio_names(metrics: Mapping) -> dict[str, str]:
    """Suite -> its headline ratio (efficiency against the on-device baseline, as results/metrics.json)."""
    from bench.pipeline.evaluate import HEADLINE_RATIOS

    out = {}
    for suite, v in metrics.items():
        r = next((r for r in HEADLINE_RATIOS if any(r in e for e in v["overall"].values())), None)
        if r:
            out[suite] = r
    return out


def quantities(metrics: Mapping, results: pd.DataFrame | None, claims: Sequence[Mapping], n_boot: int,
               seed: int) -> list[dict[str, Any]]:
    """Every recorded quantity of one world: each claim (value = the suite's point estimate, verdict =
    the claims table's), each learner verdict (value = the learner's energy saving, verdict = better / tie /
    no) and each policy's headline ratio (verdict: whether it beats the on-device baseline, ratio > 1)."""
    from bench.pipeline.claims import papers_vs_suite, what_learners_add

    out = []
    table = papers_vs_suite(metrics, results=results, n_boot=n_boot, seed=seed, claims=claims)
    for c, row in zip(claims, table.itertuples(index=False)):
        out.append({"kind": CLAIM, "quantity": f"claim:{c['id']}", "value": row.suite_mean, "verdict": row.verdict})
    learners = what_learners_add(metrics)
    for row in learners.itertuples(index=False):
        out.append({"kind": LEARNER, "quantity": f"learner:{row.suite}:{row.learner}_vs_{row.reference}",
                    "value": row.learner_saving, "verdict": row.learner_better})
    for suite, ratio in sorted(headline_ratio_names(metrics).items()):
        for pol, entry in sorted(metrics[suite]["overall"].items()):
            v = entry.get(ratio)
            if isinstance(v, Mapping) and v.get("mean") is not None:
                # its verdict: does the policy use less energy than the suite's on-device baseline (point estimate)
                out.append({"kind": HEADLINE, "quantity": f"headline:{suite}:{pol}:{ratio}",
                            "value": float(v["mean"]), "verdict": "" if pol in ratio else
                            ("beats baseline" if float(v["mean"]) > 1 else "does not beat baseline")})
    for q in out:
        v = q["value"]
        q["value"] = float(v) if v is not None and np.isfinite(v) else float("nan")
    return out


def evaluate_world(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """In *this* process (whose data/ is the world's): run the cells and return :func:`quantities`.

    Optional keys of ``spec`` (the local runner's, :class:`_LocalRunner`): ``run_suites`` (run the cells of these
    suites only), ``reuse_frames`` (suite -> Parquet file: the results of a suite not run, taken from the unperturbed
    world, which a world that changes no file the suite reads reproduces byte for byte), ``save_frames`` (a folder:
    write each run suite's results there) and ``cells_only`` (stop after the cells: no quantities)."""
    from bench.pipeline.claims import load_claims
    from bench.pipeline.evaluate import _concat_results, metrics, run_cells

    run = spec.get("run_suites")
    run = [s["suite"] for s in spec["suites"]] if run is None else list(run)
    frames = []
    for s in spec["suites"]:
        if s["suite"] not in run and spec.get("cells_only"):
            continue
        if s["suite"] in run:
            suite_results = run_cells(_cells(s, spec["seeds"], spec["steps"], spec["seed"]), workers=1,
                                      progress=False)
            if spec.get("save_frames"):
                suite_results.to_parquet(Path(spec["save_frames"]) / f"{s['suite']}.parquet")
        else:
            suite_results = pd.read_parquet(spec["reuse_frames"][s["suite"]])
        frames.append(suite_results)
    if spec.get("cells_only"):
        return []
    # one table in cell order, as one run_cells over every suite's cells would return it
    results = _concat_results(frames)
    heldout = {s["suite"]: s["heldout"] for s in spec["suites"]}
    m = metrics(results, spec["n_boot"], spec["seed"], heldout)
    claims = load_claims(REPO_ROOT / "data" / "claims.yaml") if spec.get("claims_file") is None \
        else load_claims(spec["claims_file"])
    return quantities(m, results, claims, spec["n_boot"], spec["seed"])


def _world_result(rc: int, stdout: str, stderr: str, cpu: float) -> dict[str, Any]:
    """A world process's outcome: ``{"status": "ok", "quantities": [...]}``, or ``invalid: <the loader's one-line
    message>`` (exit 2: a perturbed value the data's own validation refuses), or ``error: ...`` (a crash)."""
    if rc == 0:
        return {"status": "ok", "quantities": json.loads(stdout.strip().splitlines()[-1]), "cpu_s": cpu}
    lines = [ln for ln in (stderr or "").strip().splitlines() if ln.strip()]
    msg = lines[-1] if lines else f"exit {rc}"
    return {"status": f"invalid: {msg[:300]}" if rc == 2 else f"error: {msg[:300]}", "cpu_s": cpu}


def run_world(task: tuple[World, dict[str, Any]]) -> dict[str, Any]:
    """Evaluate one perturbed world in a fresh process pointed at a perturbed copy of data/ (pure; any engine).

    Returns ``{"status": "ok", "quantities": [...]}`` or ``{"status": "invalid: <the loader's one-line
    message>"}`` when a perturbed value is refused by the data's own validation (e.g. a fraction above 1).
    On this machine's processes the stage uses :class:`_LocalRunner` instead (same results, less work)."""
    import resource

    world, spec = task
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="bench-sensitivity-") as tmp:
        data = write_perturbed_data(Path(tmp) / "data", json.loads(world.factors_json), Path(spec["data_dir"]))
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "BENCH_DATA_DIR": str(data), "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
        proc = subprocess.run([sys.executable, "-m", "bench.pipeline.sensitivity", "--world-spec",
                               str(Path(tmp) / "spec.json")], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the world's CPU time (its process): run.json sums it, also over worlds a resumed run read from its cache
    cpu = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
    return _world_result(proc.returncode, proc.stdout, proc.stderr, cpu)


def changed_files(world: World) -> set[str]:
    """The data files (relative to data/) a world rewrites: those holding one of its perturbed constants."""
    return {key.split(":", 1)[0] for key in json.loads(world.factors_json)}


class _LocalRunner:
    """The worlds on this machine's processes, with the same results as :func:`run_world` and less work.

    * **Preloaded processes.** ``workers`` world servers (:mod:`bench.pipeline.world_server`) import the
      third-party libraries once and fork a fresh process per world, pointed at its copy of data/ as before.
    * **Only the suites a world can change.** The unperturbed world is evaluated first one suite per process
      (plus one process for the quantities), recording the data files each opens. The evaluation is a
      deterministic function of the files it reads, so a suite none of whose files a world rewrites gives the
      unperturbed results in that world, byte for byte: the world's process runs the cells of the other suites
      only and takes that suite's results from the unperturbed world (its Parquet table). A world that rewrites
      no file any suite or the quantities read (none at present) is the unperturbed world. One process per suite
      makes each read set complete: no cache of another suite's evaluation in the same process can hide a read.
    """

    def __init__(self, spec: Mapping[str, Any], workers: int):
        import queue
        import threading

        self.spec = dict(spec)
        self.workers = max(1, int(workers))
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-sensitivity-"))
        self._idle: "queue.SimpleQueue[subprocess.Popen]" = queue.SimpleQueue()
        self._servers: list[subprocess.Popen] = []
        self._lock = threading.Lock()  # the list of servers
        self._plan_lock = threading.Lock()  # one thread makes the plan, the others wait for it
        self._plan: dict[str, Any] | None = None
        self.setup_cpu_s = 0.0  # the unperturbed world's per-suite processes (besides the worlds' own cpu_s)

    # -- the preloaded processes
    def _run(self, data_dir: Path, spec: Mapping[str, Any], reads: bool = False) -> tuple[int, str, str, float, list]:
        """One world's process on a free server: (exit code, stdout, stderr, CPU s, data files it opened)."""
        import queue
        import uuid

        try:
            server = self._idle.get_nowait()
        except queue.Empty:  # start one: at most one per worker thread
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)}
            env.pop("BENCH_DATA_DIR", None)
            from bench.pipeline import world_server  # (imports nothing of bench: named here for the code deps)

            server = subprocess.Popen([sys.executable, "-m", world_server.__name__], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
            with self._lock:
                self._servers.append(server)
        job = self.tmp / f"job-{uuid.uuid4().hex}"
        job.mkdir()
        try:
            (job / "spec.json").write_text(json.dumps(spec))
            req = {"data_dir": str(data_dir), "spec": str(job / "spec.json"), "stdout": str(job / "stdout"),
                   "stderr": str(job / "stderr"), "reads": str(job / "reads.json") if reads else ""}
            server.stdin.write(json.dumps(req) + "\n")
            server.stdin.flush()
            line = server.stdout.readline()
            if not line:
                raise RuntimeError("a sensitivity world server stopped unexpectedly")
            answer = json.loads(line)
            self._idle.put(server)
            read = json.loads((job / "reads.json").read_text()) if reads and (job / "reads.json").is_file() else []
            return (int(answer["rc"]), (job / "stdout").read_text(), (job / "stderr").read_text(),
                    float(answer["cpu_s"]), read)
        finally:
            shutil.rmtree(job, ignore_errors=True)

    def close(self) -> None:
        for server in self._servers:
            try:
                server.stdin.close()
                server.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                server.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the unperturbed world, per suite
    def plan(self) -> dict[str, Any]:
        """What each suite and the quantities read in the unperturbed world, its per-suite results and quantities;
        ``{"full": True}`` when that could not be made (every world then evaluates every suite)."""
        with self._plan_lock:
            if self._plan is None:
                self._plan = self._make_plan()
            return self._plan

    def _make_plan(self) -> dict[str, Any]:
        from concurrent.futures import ThreadPoolExecutor

        base = write_perturbed_data(self.tmp / "unperturbed" / "data", {}, Path(self.spec["data_dir"]))
        frames = self.tmp / "unperturbed" / "frames"
        frames.mkdir()
        suites = [s["suite"] for s in self.spec["suites"]]

        def one(suite: str):
            return self._run(base, {**self.spec, "run_suites": [suite], "save_frames": str(frames),
                                    "cells_only": True}, reads=True)

        with ThreadPoolExecutor(self.workers) as pool:
            per_suite = list(pool.map(one, suites))
        plan: dict[str, Any] = {"full": True}
        cpu = sum(r[3] for r in per_suite)
        if all(r[0] == 0 for r in per_suite):
            reuse = {s: str(frames / f"{s}.parquet") for s in suites}
            rc, out, err, c, read = self._run(base, {**self.spec, "run_suites": [], "reuse_frames": reuse}, reads=True)
            cpu += c
            if rc == 0:
                plan = {"full": False, "reads": {s: set(r[4]) for s, r in zip(suites, per_suite)},
                        "quantity_reads": set(read), "frames": reuse,
                        "baseline": _world_result(rc, out, err, 0.0)["quantities"]}
        if plan["full"]:  # said, not silent: every world then costs what it cost before
            failed = [r for r in per_suite if r[0] != 0] or [(rc, out, err)]
            last = [ln for ln in failed[0][2].strip().splitlines() if ln.strip()][-1:] or ["?"]
            print(f"warning: the unperturbed world's per-suite evaluation failed ({last[0][:200]}): every world "
                  f"evaluates every suite", file=sys.stderr)
        self.setup_cpu_s += cpu
        return plan

    # -- one world
    def run_world(self, world: World) -> dict[str, Any]:
        plan = self.plan()
        spec = dict(self.spec)
        suites_run = [s["suite"] for s in self.spec["suites"]]
        if not plan["full"]:
            changed = changed_files(world)
            suites_run = [s for s in suites_run if plan["reads"][s] & changed]
            if not suites_run and not plan["quantity_reads"] & changed:
                return {"status": "ok", "quantities": plan["baseline"], "cpu_s": 0.0}
            spec.update({"run_suites": suites_run, "reuse_frames": plan["frames"]})
        with tempfile.TemporaryDirectory(prefix="world-", dir=self.tmp) as tmp:
            data = write_perturbed_data(Path(tmp) / "data", json.loads(world.factors_json), Path(spec["data_dir"]))
            rc, out, err, cpu, _ = self._run(data, spec)
        return _world_result(rc, out, err, cpu)

    def map(self, ws: Sequence[World], on_result, progress: bool) -> list[dict[str, Any]]:
        """Every world's result in order (``on_result(j, value)`` as each arrives), ``workers`` at a time."""
        from concurrent.futures import ThreadPoolExecutor, as_completed

        from tqdm.auto import tqdm

        out: list[Any] = [None] * len(ws)
        with tqdm(total=len(ws), desc="sensitivity", disable=not progress) as bar, \
                ThreadPoolExecutor(self.workers) as pool:
            futures = {pool.submit(self.run_world, w): j for j, w in enumerate(ws)}
            for fut in as_completed(futures):
                j = futures[fut]
                out[j] = fut.result()
                on_result(j, out[j])
                bar.update(1)
        return out


# --------------------------------------------------------------------------- the table

def flip_table(baseline: Sequence[Mapping], perturbed: Sequence[tuple[World, Mapping]]) -> pd.DataFrame:
    """One row per (perturbed world, quantity): its value and verdict next to the baseline's, and ``flipped``
    (the verdict differs; a quantity without a verdict never flips). A world that could not be built
    gives one row with its status and no quantity."""
    base = {q["quantity"]: q for q in baseline}
    rows = []
    for world, res in perturbed:
        common = {"world": world.name, "kind": world.kind, "constant": world.constant,
                  "factor": world.factor if world.kind == "oat" else float("nan")}
        if res.get("status") != "ok":
            rows.append({**common, "quantity": "", "value": float("nan"), "baseline_value": float("nan"),
                         "verdict": "", "baseline_verdict": "", "flipped": False, "status": res.get("status", "")})
            continue
        for q in res["quantities"]:
            b = base.get(q["quantity"], {})
            bv = b.get("verdict", "")
            flipped = bool(q["verdict"]) and bool(bv) and q["verdict"] != bv
            rows.append({**common, "quantity": q["quantity"], "value": q["value"],
                         "baseline_value": b.get("value", float("nan")), "verdict": q["verdict"],
                         "baseline_verdict": bv, "flipped": flipped, "status": "ok"})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def robustness(table: pd.DataFrame) -> dict[str, str]:
    """Quantity -> ``robust`` or ``sensitive (to: key1, key2)``: the constants whose one-at-a-time change
    flips its verdict, and ``joint sample`` when only the joint Latin-hypercube sample flips it; ``not assessed``
    when the unperturbed world did not measure it."""
    out: dict[str, str] = {}
    ok = table[(table["status"] == "ok") & (table["baseline_verdict"].astype(str) != "")]
    for q, g in ok.groupby("quantity", sort=True):
        if set(g["baseline_verdict"].astype(str)) <= NOT_ASSESSED:
            out[str(q)] = "not assessed"  # not measured in the unperturbed world (e.g. no trained learner)
            continue
        keys = list(dict.fromkeys(g.loc[(g["kind"] == "oat") & g["flipped"], "constant"]))
        if not keys and ((g["kind"] == "lhs") & g["flipped"]).any():
            keys = ["joint sample"]
        out[str(q)] = f"sensitive (to: {', '.join(keys)})" if keys else "robust"
    return out


def lhs_influence(table: pd.DataFrame, samples: pd.DataFrame, top: int = 3) -> dict[str, list[list]]:
    """Quantity -> the ``top`` constants with the largest |Spearman rho| between log factor and value over the
    joint sample (what drives it when everything moves at once)."""
    from scipy.stats import spearmanr

    out: dict[str, list[list]] = {}
    lhs = table[(table["kind"] == "lhs") & (table["status"] == "ok")]
    if lhs.empty or samples.empty:
        return out
    for q, g in lhs.groupby("quantity", sort=True):
        g = g.dropna(subset=["value"])
        x = samples.set_index("world").reindex(g["world"])
        if len(g) < 4 or g["value"].nunique() < 2:
            continue
        rhos = []
        for col in x.columns:
            rho = spearmanr(np.log(x[col].to_numpy(float)), g["value"].to_numpy(float)).statistic
            if np.isfinite(rho):
                rhos.append([col, round(float(rho), 3)])
        out[str(q)] = sorted(rhos, key=lambda r: -abs(r[1]))[:top]
    return out


def tornado(table: pd.DataFrame, quantity: str, top: int = 15, title: str | None = None):
    """A tornado figure of one quantity: per constant (largest swing on top), a bar from the baseline to its value
    at x0.5 and one to its value at x2; a hatched bar flips the verdict. Returns a matplotlib Figure (no pyplot)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    g = table[(table["quantity"] == quantity) & (table["kind"] == "oat") & (table["status"] == "ok")]
    fig = Figure(figsize=(8, 0.35 * min(top, max(g["constant"].nunique(), 1)) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title or quantity, fontsize=9)
    if g.empty or not np.isfinite(g["baseline_value"]).any():
        ax.text(0.5, 0.5, "no one-at-a-time results for this quantity", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    base = float(g["baseline_value"].dropna().iloc[0])
    piv = g.pivot_table(index="constant", columns="factor", values="value", aggfunc="first")
    flips = g.pivot_table(index="constant", columns="factor", values="flipped", aggfunc="any")
    swing = (piv.sub(base).abs().max(axis=1)).fillna(0).sort_values(ascending=False).head(top)
    names = list(swing.index)[::-1]
    colours = {f: c for f, c in zip(sorted(piv.columns), ("tab:blue", "tab:orange", "tab:green", "tab:red"))}
    for y, name in enumerate(names):
        for f in sorted(piv.columns):
            v = piv.loc[name, f]
            if not np.isfinite(v):
                continue
            flipped = bool(flips.loc[name, f]) if f in flips.columns else False
            ax.barh(y, v - base, left=base, height=0.6, color=colours[f], alpha=0.8,
                    hatch="///" if flipped else None, edgecolor="black" if flipped else colours[f])
    ax.axvline(base, color="black", lw=1)
    ax.set_yticks(range(len(names)), [n.replace(".yaml:", ": ") for n in names], fontsize=7)
    ax.set_xlabel(f"{quantity.split(':', 1)[-1]} (unperturbed: {base:.3g})")
    handles = [Patch(color=c, label=f"x{f:g}") for f, c in colours.items()]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="verdict flips"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    return fig


def figure_quantities(table: pd.DataFrame) -> list[str]:
    """The quantities that get a tornado: every measured claim, and per suite the headline ratio of the learner
    (when trained) and of the oracle."""
    ok = table[(table["status"] == "ok") & table["baseline_value"].notna()]
    qs = sorted(set(ok["quantity"]))
    keep = [q for q in qs if q.startswith("claim:")]
    keep += [q for q in qs if q.startswith("headline:") and q.split(":")[2] in ("autoscale", "dvfo", "oracle",
                                                                               "greedy_oracle")]
    return keep


# --------------------------------------------------------------------------- the stage

def _write(out_dir: Path, table: pd.DataFrame, summary: Mapping, constants: pd.DataFrame,
           samples: pd.DataFrame) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "sensitivity.csv", index=False, float_format="%.6g")
    constants.to_csv(out_dir / "constants.csv", index=False)
    samples.to_csv(out_dir / "lhs_samples.csv", index=False, float_format="%.6g")
    (out_dir / "summary.json").write_text(json.dumps(dict(summary), indent=1, sort_keys=True, default=str) + "\n")


def _shown(path: str) -> str:
    """A path as the summary shows it: relative to the repository when inside it (same bytes on every clone)."""
    p = Path(path)
    return p.relative_to(REPO_ROOT).as_posix() if p.is_relative_to(REPO_ROOT) else p.name


def _figures(out_dir: Path, table: pd.DataFrame) -> None:
    """figures/: one tornado per headline quantity, and index.md listing them (so the folder always exists)."""
    fig_dir = out_dir / "figures"
    if fig_dir.exists():
        shutil.rmtree(fig_dir)
    fig_dir.mkdir(parents=True)
    lines = ["# Tornado figures of the sensitivity stage (docs/sensitivity.md)", ""]
    for q in figure_quantities(table):
        name = f"tornado_{q.replace(':', '_')}.png"
        tornado(table, q).savefig(fig_dir / name, dpi=110)
        lines.append(f"* `{q}`: {name}")
    if len(lines) == 2:
        lines.append("(none: the stage is disabled or measured no headline quantity)")
    (fig_dir / "index.md").write_text("\n".join(lines) + "\n")


def constants_frame(constants: Iterable[Constant]) -> pd.DataFrame:
    return pd.DataFrame([{"constant": c.key, "file": c.file, "value": json.dumps(c.value), "perturbed": c.perturbed,
                          "why_not": c.why_not, "source": c.source} for c in constants],
                        columns=["constant", "file", "value", "perturbed", "why_not", "source"])


def world_cache_key(world: World, spec: Mapping[str, Any], inputs: Mapping[str, str] | None = None) -> str:
    """What a world's result depends on as a short hash: its factors, the evaluation spec (without this checkout's
    paths) and the digests of the data and trained learners (:func:`input_digests`), so a cached result is reused
    only for the same world under the same spec, data and learners, wherever the checkout lives."""
    import hashlib

    def portable(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: portable(v) for k, v in node.items() if k not in ("data_dir", "artefact")}
        if isinstance(node, list):
            return [portable(v) for v in node]
        return node

    blob = json.dumps({"factors": json.loads(world.factors_json), "spec": portable(spec), "inputs": inputs or {}},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


#: status of a world a ``--cached-only`` run did not evaluate (it is not a result: robustness ignores it)
NOT_RUN = "not run: out of budget (--cached-only)"


def _map_worlds(ws: Sequence[World], spec: Mapping[str, Any], engine, progress: bool,
                cache_dir: Path | None, cached_only: bool = False,
                first_is_baseline: bool = True, inputs: Mapping[str, str] | None = None,
                runner: "_LocalRunner | None" = None) -> list[dict[str, Any]]:
    """Every world's result, in order; with ``cache_dir`` each result is written there as it arrives and a
    result already there (same world, same spec) is read instead of recomputed, so a long run that is
    interrupted resumes where it stopped. ``cached_only``: compute nothing, mark the worlds not in the cache
    :data:`NOT_RUN` (the unperturbed world, ``first_is_baseline``, must be there)."""
    from bench.pipeline.engine import map_ordered

    keys = [world_cache_key(w, spec, inputs) for w in ws]
    out: list[dict[str, Any] | None] = [None] * len(ws)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        for i, k in enumerate(keys):
            f = cache_dir / f"{k}.json"
            if f.is_file():
                try:
                    out[i] = json.loads(f.read_text())["result"]
                except (ValueError, KeyError, TypeError):
                    out[i] = None  # a torn write: recompute it
                if out[i] is not None and str(out[i].get("status", "")).startswith("error"):
                    out[i] = None  # a crash (or a killed process) is not a result of the world: recompute it
    todo = [i for i, r in enumerate(out) if r is None]
    if cached_only:
        if first_is_baseline and 0 in todo:
            from bench.errors import ConfigError  # a user's choice of flags: one line, exit 2

            raise ConfigError(f"python -m bench sensitivity --cached-only: the unperturbed world is not in the cache "
                              f"{cache_dir}; allowed: a --cache folder a run without --cached-only has filled")
        for i in todo:
            out[i] = {"status": NOT_RUN}
        return out  # type: ignore[return-value]

    def save(j: int, value: dict[str, Any]) -> None:
        if cache_dir is not None and not str(value.get("status", "")).startswith("error"):
            i = todo[j]
            tmp = cache_dir / f"{keys[i]}.json.tmp"
            tmp.write_text(json.dumps({"world": ws[i].name, "result": value}))
            tmp.replace(cache_dir / f"{keys[i]}.json")

    if runner is not None:
        done = runner.map([ws[i] for i in todo], save, progress)
    else:
        done = map_ordered(run_world, [(ws[i], spec) for i in todo], engine, keys=[f"sens-{keys[i]}" for i in todo],
                           on_result=save, progress=progress, desc="sensitivity")
    for i, r in zip(todo, done):
        out[i] = r
    return out  # type: ignore[return-value]


def run_sensitivity(params, out_dir: str | Path, engine=None, progress: bool = False,
                    train_dir: str | Path | None = None, limit: int | None = None,
                    only: str | None = None, cache_dir: str | Path | None = None,
                    cached_only: bool = False) -> dict[str, Any]:
    """The ``sensitivity`` stage: off (``sensitivity.enabled: false``) it writes the empty table and a summary
    saying so; on, it evaluates every world on ``engine`` and writes the table, the summary and the tornados.
    ``limit`` keeps only the first ``limit`` constants and ``only`` (a regular expression) those whose key matches
    it (a quick look; the summary says so)."""
    from bench.pipeline.claims import load_claims
    from bench.paths import RESULTS_DIR

    out_dir = Path(out_dir)
    sp = params.sensitivity
    engine = engine or params.engine
    empty = pd.DataFrame(columns=list(COLUMNS))
    summary: dict[str, Any] = {"enabled": bool(sp.enabled)}
    if not sp.enabled:
        _write(out_dir, empty, {**summary, "worlds": 0, "constants": 0}, constants_frame([]), pd.DataFrame())
        _figures(out_dir, empty)
        return summary
    t0 = time.perf_counter()
    radio = params.world.radio_profile
    found = assumed_constants(radio, DATA_DIR, include_skipped=True)
    constants = [c for c in found if c.perturbed]
    if only:
        import re

        from bench.errors import ConfigError

        try:
            pattern = re.compile(only)
        except re.error as exc:
            raise ConfigError(f"python -m bench sensitivity --only {only!r}: not a regular expression ({exc}); "
                              f"allowed: a Python regular expression matched against 'file:key.path'") from None
        constants = [c for c in constants if pattern.search(c.key)]
    if limit is not None:
        constants = constants[:limit]
    claims = load_claims()
    train_dir = Path(train_dir) if train_dir else RESULTS_DIR / "train"
    suites = _suite_specs(params, train_dir, sp.policies, claims)
    untrained = [s["suite"] for s in suites if not s["artefact"]]
    if untrained:
        # said before the long run, not only in its summary: a checkout without the trained learners (no `dvc pull`,
        # a fresh worktree) would otherwise spend the whole budget on a run that assesses no learner claim
        print(f"warning: no trained learner in {train_dir} for {', '.join(untrained)}: their learners are left out "
              f"and their claims not assessed (--train-dir DIR points at trained learners)", file=sys.stderr)
    spec = {"suites": suites, "seeds": sp.seeds, "steps": sp.steps, "seed": params.seed, "n_boot": sp.n_boot,
            "data_dir": str(DATA_DIR)}
    # two phases: the baseline and every constant one at a time, then the joint sample, whose range for each
    # constant excludes the direction the data's own validation refused one at a time (a fraction above 1, ...):
    # otherwise nearly every joint world moves some bounded constant out of range and is refused as a whole
    cache = Path(cache_dir) if cache_dir else None
    inputs = input_digests(suites, radio, DATA_DIR)
    ws = worlds(constants, sp.factors, 0, params.seed)
    # on this machine: preloaded world processes that re-run only the suites a world can change (_LocalRunner)
    runner = _LocalRunner(spec, engine.n_workers) if engine.backend == "local-processes" else None
    try:
        res = _map_worlds(ws, spec, engine, progress, cache, cached_only, inputs=inputs, runner=runner)
        refused = refused_directions(ws, res)
        joint = [w for w in worlds(constants, sp.factors, sp.lhs_samples, params.seed, refused) if w.kind == "lhs"]
        ws, res = ws + joint, res + _map_worlds(joint, spec, engine, progress, cache, cached_only,
                                                first_is_baseline=False, inputs=inputs, runner=runner)
    finally:
        if runner is not None:
            runner.close()
    if res[0].get("status") != "ok":
        raise RuntimeError(f"the unperturbed world failed: {res[0].get('status')}")
    baseline = res[0]["quantities"]
    table = flip_table(baseline, list(zip(ws[1:], res[1:])))
    samples = pd.DataFrame([{"world": w.name, **json.loads(w.factors_json)} for w in ws if w.kind == "lhs"])
    rob = robustness(table)
    per_file: dict[str, int] = {}
    for c in constants:
        per_file[c.file] = per_file.get(c.file, 0) + 1
    flips = table[table["flipped"]]
    summary.update({
        "radio_profile": radio, "constants": len(constants), "constants_per_file": per_file,
        "not_perturbed": {c.key: c.why_not for c in found if not c.perturbed},
        "factors": list(sp.factors), "lhs_samples": sp.lhs_samples, "worlds": len(ws), "seeds": sp.seeds,
        "steps": sp.steps, "limited_to_first_constants": limit, "only_matching": only,
        "learners": {s["suite"]: f"as trained ({_shown(s['artefact'])}), not retrained per world" if s["artefact"]
                     else "no trained artefact in results/train: not evaluated (its claims are not assessed)"
                     for s in suites},
        "invalid_worlds": {w.name: r["status"] for w, r in zip(ws, res) if r.get("status") not in ("ok", NOT_RUN)},
        # a run cut short (--cached-only): what it did not evaluate, so "robust" reads "robust to what was run"
        "worlds_not_run": sum(r.get("status") == NOT_RUN for r in res),
        "lhs_not_run": sum(r.get("status") == NOT_RUN for w, r in zip(ws, res) if w.kind == "lhs"),
        "joint_sample_one_sided": dict(sorted(refused.items())),
        "constants_not_tested": sorted({w.constant for w, r in zip(ws, res) if w.kind == "oat" and
                                        r.get("status") == NOT_RUN}),
        "baseline": {q["quantity"]: {"value": q["value"], "verdict": q["verdict"]} for q in baseline},
        "robustness": rob,
        "flips": [{"world": r.world, "quantity": r.quantity, "from": r.baseline_verdict, "to": r.verdict}
                  for r in flips.itertuples(index=False)],
        "lhs_flip_rate": {str(q): float(g["flipped"].mean()) for q, g in
                          table[(table["kind"] == "lhs") & (table["status"] == "ok") &
                                (table["baseline_verdict"].astype(str) != "")].groupby("quantity")},
        "lhs_influence": lhs_influence(table, samples),
        # what the verdicts rest on, so a committed run can say whether it still describes today's world
        "inputs": inputs,
        "artefacts": {s["suite"]: _shown(s["artefact"]) for s in suites if s["artefact"]},
    })
    _write(out_dir, table, summary, constants_frame(found), samples)
    _figures(out_dir, table)
    # wall and CPU time are measurements of this machine: printed and put in run.json, kept out of summary.json
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    summary["worlds_cpu_s"] = round(sum(float(r.get("cpu_s") or 0) for r in res) +
                                    (runner.setup_cpu_s if runner is not None else 0.0), 1)
    return summary


def _write_run_record(out_dir: Path, summary: Mapping[str, Any], argv: Sequence[str]) -> None:
    """run.json: when, how and at what cost this run was made (a record of this machine, not a result)."""
    import datetime
    import platform
    import resource

    # the driver's own CPU time only: each world's process is reaped by this process (or by a pool worker that this
    # process reaps), so RUSAGE_CHILDREN would count the worlds a second time next to worlds_cpu_s
    cpu = sum(getattr(resource.getrusage(resource.RUSAGE_SELF), f) for f in ("ru_utime", "ru_stime"))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=False).stdout.strip()
    except OSError:
        rev = ""
    record = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "command": "python -m bench sensitivity " + " ".join(argv), "git_revision": rev,
              "cpu_s": round(cpu, 1), "worlds_cpu_s": summary.get("worlds_cpu_s"), "wall_s": summary.get("wall_s"), "host": platform.node(),
              "cores": os.cpu_count(), "load_average_at_end": list(os.getloadavg())}
    (out_dir / RUN_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench sensitivity [--params FILE] [--out DIR] [--workers N] [--limit K] [--no-progress]``."""
    import argparse

    from bench.config import load_params
    from bench.paths import PARAMS_FILE, RESULTS_DIR

    ap = argparse.ArgumentParser(prog="python -m bench sensitivity", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default=str(PARAMS_FILE))
    ap.add_argument("--out", default=str(RESULTS_DIR / "sensitivity"))
    ap.add_argument("--workers", type=int, help="override engine.workers")
    ap.add_argument("--limit", type=int, help="perturb only the first K constants (a quick look)")
    ap.add_argument("--only", help="perturb only the constants whose key matches this regular expression")
    ap.add_argument("--enable", action="store_true", help="run even where params say sensitivity.enabled: false")
    ap.add_argument("--train-dir", help="the trained learners to replay (default: results/train)")
    ap.add_argument("--cache", help="keep each world's result in this folder and reuse it on a rerun (resumable)")
    ap.add_argument("--cached-only", action="store_true",
                    help="evaluate no new world: write the results of the worlds in --cache (the others: not run)")
    ap.add_argument("--world-spec", help=argparse.SUPPRESS)  # internal: evaluate one world in this process
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.limit is not None and args.limit < 1:  # a negative K would silently drop the last constants
        ap.error(f"--limit must be >= 1, got {args.limit}")
    if args.workers is not None and args.workers < 0:
        ap.error(f"--workers must be >= 0 (0 = one per core), got {args.workers}")
    if args.cached_only and not args.cache:
        ap.error("--cached-only needs --cache FOLDER (the worlds a previous run kept)")
    if args.world_spec:
        print(json.dumps(evaluate_world(json.loads(Path(args.world_spec).read_text()))))
        return 0
    params = load_params(args.params)
    if args.enable:
        params = dataclasses.replace(params, sensitivity=dataclasses.replace(params.sensitivity, enabled=True))
    try:
        engine = params.engine if args.workers is None else dataclasses.replace(params.engine, workers=args.workers)
    except ValueError as exc:  # the engine's own range check (e.g. --workers 99999999999): one line, exit 2
        ap.error(f"--workers: {exc}")
    summary = run_sensitivity(params, args.out, engine, progress=not args.no_progress, limit=args.limit,
                               only=args.only, train_dir=args.train_dir, cache_dir=args.cache,
                               cached_only=args.cached_only)
    if summary.get("enabled"):
        _write_run_record(Path(args.out), summary, argv if argv is not None else sys.argv[1:])
    print(json.dumps({k: summary[k] for k in ("enabled", "constants", "worlds", "wall_s") if k in summary}))
    return 0


if __name__ == "__main__":
    # a world's process: a perturbed value the loaders refuse is a one-line error and exit 2 (the driver
    # records the world as invalid), like every other bad input of the suite
    from bench.errors import BenchError

    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
