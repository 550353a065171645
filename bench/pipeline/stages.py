"""Run a pipeline stage's notebook through papermill with validated parameters.

``python -m bench notebook STAGE [--run NAME]`` is what ``dvc.yaml`` calls: it
validates the whole params.yaml first (a bad key stops before any work), then
executes the stage's notebook with that stage's parameters and writes the
executed copy to ``results/notebooks/`` (a DVC output, never committed). The
notebook writes its data files under ``out_dir``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bench.config import Params, ParamsError, apply_world, as_dict, load_params
from bench.errors import allowed_list
from bench.paths import NOTEBOOKS_DIR, PARAMS_FILE, RESULTS_DIR

KERNEL_NAME = "bench-suite"
NOTEBOOKS = {"profile": "01_profile.ipynb", "train": "02_train.ipynb", "evaluate": "03_evaluate.ipynb",
             "report": "04_report.ipynb"}


def kernel_name() -> str:
    """The venv's registered kernel (the Makefile registers it); else the current interpreter's python3."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if KERNEL_NAME in KernelSpecManager().find_kernel_specs():
            return KERNEL_NAME
    except Exception:  # pragma: no cover - jupyter_client is a dependency
        pass
    logging.getLogger(__name__).warning("kernel %r is not registered (run `make venv`); using 'python3'", KERNEL_NAME)
    return "python3"


def _rel(path: Path) -> str:
    """``path`` relative to notebooks/ (papermill's cwd), so executed notebooks hold no machine paths."""
    return os.path.relpath(path, NOTEBOOKS_DIR)


def _parameters(stage: str, params: Params, run: str | None) -> dict:
    if stage == "profile":
        return {**as_dict(params.profile), "out_dir": _rel(RESULTS_DIR / "profile")}
    if stage == "train":
        if run not in params.train.runs:
            raise ParamsError.at("stage train --run", "needs the name of a run in params.yaml's train.runs", run,
                                 allowed_list(sorted(params.train.runs)))
        r = params.train.runs[run]
        return {"run": run, "learner": r.learner, "profile": r.profile,
                "config": as_dict(params.train.learner_config(r.learner)), "curve_seeds": params.train.curve_seeds,
                "out_dir": _rel(RESULTS_DIR / "train" / run)}
    if stage == "evaluate":
        ev = params.evaluate
        # steps = 0 (the default): every episode covers its whole scenario (the scenario's own `steps`)
        return {"seeds": ev.seeds, "steps": ev.steps, "workers": ev.workers, "n_boot": ev.n_boot,
                "engine": as_dict(params.engine), "objective": as_dict(params.objective),
                "headroom_threshold": ev.headroom_threshold,
                "suites": as_dict(ev.suites), "train_dir": _rel(RESULTS_DIR / "train"),
                "drldo_dir": _rel(RESULTS_DIR / "drldo"),  # the drldo stage's learners (bench/pipeline/drldo_stage.py)
                "out_dir": _rel(RESULTS_DIR / "evaluate"), "metrics_path": _rel(RESULTS_DIR / "metrics.json")}
    if stage == "report":
        # the whole params for the HTML page's run metadata (the report restates what produced it)
        return {"results_dir": _rel(RESULTS_DIR), "out_dir": _rel(RESULTS_DIR / "report"), "params": as_dict(params)}
    raise ParamsError.at("notebook", "unknown stage", stage, allowed_list(NOTEBOOKS))


def stage_parameters(stage: str, params_path: Path = PARAMS_FILE, run: str | None = None) -> dict:
    """The papermill parameters of ``stage``: the top-level seed, its params section and out_dir."""
    params = load_params(params_path)
    apply_world(params)  # the radio profile of params.yaml for this stage and its workers
    # no progress bars in executed notebooks: each update would be one more output chunk
    return {"seed": params.seed, **_parameters(stage, params, run), "progress": False}


def _validated(stage: str, params_path: Path, run: str | None) -> tuple[dict, dict[str, str]]:
    """:func:`stage_parameters` and the environment :func:`bench.config.apply_world` set (a forked child's task)."""
    before = dict(os.environ)
    parameters = stage_parameters(stage, params_path, run)
    return parameters, {k: v for k, v in os.environ.items() if before.get(k) != v}


def _import_papermill():
    """papermill, without the IRI grammar jsonschema would compile on import.

    jsonschema registers an ``iri`` format checker when ``rfc3987_syntax`` is installed (a Jupyter Server
    dependency), and that module builds an Earley parser of RFC 3987 at import: 1.5 CPU-s of every stage's
    papermill process (issue 25; `python -X importtime -c "import papermill"`). Nothing here checks an IRI:
    nbformat's notebook schemas have no ``format`` keyword and papermill and nbclient use no format checker,
    so this process marks the module absent (jsonschema then registers no ``iri`` checker, as without it).
    """
    import sys

    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
    import papermill as pm

    return pm


#: imported by a stage's kernel while params.yaml is validated (:func:`_warm_kernel`), besides the third-party
#: modules the notebook imports itself: what its ``bench`` imports load (the policies' registry imports torch)
WARM_MODULES = ("torch", "gymnasium")


def _notebook_imports(path: Path) -> list[str]:
    """The third-party modules the notebook's code cells import (``bench`` and ``hw`` left out: they read the
    stage's environment, which is set after validation)."""
    import ast
    import json

    mods: list[str] = []
    for cell in json.loads(path.read_text(encoding="utf-8")).get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse("".join(cell.get("source", "")))
        except SyntaxError:  # a magic
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                mods += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return [m for m in dict.fromkeys(mods) if m.split(".")[0] not in ("bench", "hw")]


def _warm_kernel(notebook: Path):
    """The stage's kernel, started now and importing the heavy modules its notebook will import (silently: no
    output, no execution count), while this process validates params.yaml and imports papermill (issue 25:
    ~3 CPU-s of torch, pandas and seaborn per notebook stage ran after them, on one core of two).
    ``(kernel manager, client)``, or None where it cannot be started (then papermill starts its own)."""
    try:
        import subprocess

        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=kernel_name())
        # its stderr is held back until params.yaml is valid (a bad key: one line, not the kernel's start-up notes)
        run_sync(km.start_kernel)(cwd=str(NOTEBOOKS_DIR), stderr=subprocess.PIPE)  # papermill's cwd
        km._bench_stderr = _HeldBack(km.provisioner.process.stderr)
    except Exception:  # pragma: no cover - papermill starts the kernel as before
        return None
    try:
        kc = km.client()
        kc.start_channels()
        mods = list(dict.fromkeys([*_notebook_imports(notebook), *WARM_MODULES]))
        kc.execute("def _bench_warm(mods):\n    import importlib\n    for m in mods:\n        try:\n"
                   "            importlib.import_module(m)\n        except Exception:\n            pass\n"
                   f"_bench_warm({mods!r})\ndel _bench_warm\n", silent=True, store_history=False)
        return km, kc
    except Exception:  # pragma: no cover
        _shutdown(km)
        return None


class _HeldBack:
    """Copies a kernel's stderr to this process's once :meth:`release` is called (lines before it are kept)."""

    def __init__(self, stream):
        import threading

        self._lines: list[bytes] = []
        self._released = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._copy, args=(stream,), daemon=True).start()

    def _copy(self, stream) -> None:
        import sys

        for line in iter(stream.readline, b""):
            with self._lock:
                if not self._released.is_set():
                    self._lines.append(line)
                    continue
            sys.stderr.buffer.write(line)
            sys.stderr.flush()

    def release(self) -> None:
        import sys

        with self._lock:
            for line in self._lines:
                sys.stderr.buffer.write(line)
            sys.stderr.flush()
            self._lines.clear()
            self._released.set()


def _shutdown(km, now: bool = True) -> None:
    """Stop the kernel: gracefully after its notebook ran (as papermill does with a kernel of its own), at once
    otherwise."""
    from jupyter_core.utils import run_sync

    try:
        run_sync(km.shutdown_kernel)(now=now)
    except Exception:  # pragma: no cover - already gone
        pass


def _hand_over(warm, env: dict[str, str]) -> None:
    """Give the warm kernel the stage's environment (what :func:`bench.config.apply_world` set here, which a kernel
    started now would inherit) and wait until it has run that and the imports before papermill takes it over."""
    from jupyter_core.utils import run_sync

    km, kc = warm
    km._bench_stderr.release()
    msg_id = kc.execute(f"import os as _bench_os\n_bench_os.environ.update({env!r})\ndel _bench_os\n", silent=True,
                        store_history=False)

    async def reply():
        import queue

        while True:
            try:
                msg = await kc.get_shell_msg(timeout=5)
            except queue.Empty:
                if not await km.is_alive():
                    raise RuntimeError("the stage's kernel died while importing its modules") from None
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg

    status = run_sync(reply)()["content"].get("status")
    kc.stop_channels()
    if status != "ok":
        raise RuntimeError(f"the stage's kernel could not take the stage's environment ({status})")


def run_stage(stage: str, params_path: Path = PARAMS_FILE, run: str | None = None, output: Path | None = None) -> Path:
    # The kernel starts first and imports what the notebook imports; params.yaml is validated in a forked child
    # while this process imports papermill: the three import most of what they need from scratch (the kernel
    # torch, pandas, seaborn ~3-4 CPU-s; the validation the policies' registries, torch included, ~2.3; papermill
    # ~0.7), so on 2 cores the notebook's first cells start seconds sooner (issue 25). A bad key still stops the
    # stage before any cell runs (the child's ParamsError is raised here, the kernel shut down).
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import signal
    import sys

    notebook = NOTEBOOKS.get(stage)
    warm, ran = None, False
    # until papermill takes the kernel over (it then stops it on SIGTERM and SIGINT itself), a SIGTERM unwinds
    # through the `finally` below, so the kernel started here is not left running
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as pool:
            pending = pool.submit(_validated, stage, params_path, run)  # forked before any kernel or channel exists
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
            warm = _warm_kernel(NOTEBOOKS_DIR / notebook) if notebook else None
            pm = _import_papermill()
            parameters, world_env = pending.result()
        os.environ.update(world_env)  # the world of the stage (apply_world), for the kernel and its workers
        if warm is not None:
            _hand_over(warm, world_env)
        signal.signal(signal.SIGTERM, previous)
        if output is None:
            name = notebook if run is None else notebook.replace(".ipynb", f"_{run}.ipynb")
            output = RESULTS_DIR / "notebooks" / name
        output.parent.mkdir(parents=True, exist_ok=True)
        extra = {"km": warm[0]} if warm is not None else {}
        pm.execute_notebook(str(NOTEBOOKS_DIR / notebook), str(output), parameters=parameters,
                            kernel_name=kernel_name(), cwd=str(NOTEBOOKS_DIR), progress_bar=False, **extra)
        ran = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        if warm is not None:
            _shutdown(warm[0], now=not ran)
    return output
