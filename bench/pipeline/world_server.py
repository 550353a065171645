"""A preloaded parent of the sensitivity stage's world processes (``python -m bench.pipeline.world_server``).

Each perturbed world is evaluated in a fresh process whose ``BENCH_DATA_DIR`` points at its perturbed copy of
data/ (docs/sensitivity.md). Started as a new interpreter, a world spent about a quarter of its CPU time importing
torch, pandas, scipy and gymnasium before it read a single file. This server imports those third-party libraries
once, then *forks* one child per world: the child is still a fresh process for the suite (no ``bench`` module
other than this one and the empty package ``__init__`` files is imported before the fork, so ``bench.paths``
resolves the world's ``BENCH_DATA_DIR`` in the child and no loader cache exists before it), it only skips the
imports. Nothing here reads data/.

Protocol (one request at a time, JSON lines): the driver writes ``{"data_dir", "spec", "stdout", "stderr",
"reads"}`` on stdin; the server forks, the child runs ``python -m bench.pipeline.sensitivity --world-spec SPEC``'s
``main`` with its output in the ``stdout`` / ``stderr`` files (exit 2 and ``error: <message>`` for a value the
data's validation refuses, as the module's ``__main__`` does) and, when ``reads`` names a file, writes there the
data files (relative to ``data_dir``) the world opened. The server answers ``{"rc", "cpu_s"}`` (the child's exit
code and CPU time) on stdout.
"""

from __future__ import annotations

import json
import os
import sys

#: what every world imports and what its cost is (torch._dynamo: the DVFO learner's optimizer imports it on load)
#: the module whose ``main --world-spec`` evaluates one world (what ``python -m bench.pipeline.sensitivity`` runs)
WORLD_MODULE = "bench.pipeline.sensitivity"
PRELOAD = ("numpy", "pandas", "scipy.stats", "scipy.optimize", "yaml", "gymnasium", "torch", "torch._dynamo")


def _track_reads(root: str, out: set[str]) -> None:
    """Record every file under ``root`` this process opens (the ``open`` audit event covers Python's and C
    extensions' opens through ``io.open`` / ``os.open``)."""
    root = os.path.realpath(root) + os.sep

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path.startswith(root):
                out.add(path[len(root):].replace(os.sep, "/"))

    sys.addaudithook(hook)


def _child(req: dict) -> int:
    """The world's process: redirect its output, point bench at the world's data and run the world's main."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        f = os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    os.environ["BENCH_DATA_DIR"] = req["data_dir"]
    reads: set[str] = set()
    if req.get("reads"):
        _track_reads(req["data_dir"], reads)
    rc = 1
    try:
        import importlib

        from bench.errors import BenchError

        # named, not imported at the top: bench.pipeline.sensitivity imports this module (no cycle for the layers)
        world = importlib.import_module(WORLD_MODULE)
        try:
            rc = int(world.main(["--world-spec", req["spec"]]) or 0)
        except BenchError as exc:  # as bench.pipeline.sensitivity's __main__: one line, exit 2
            print(f"error: {exc}", file=sys.stderr)
            rc = 2
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001  (a crash is reported, as a subprocess's traceback would be)
        import traceback

        traceback.print_exc()
        rc = 1
    if req.get("reads"):
        with open(req["reads"], "w") as f:
            json.dump(sorted(reads), f)
    sys.stdout.flush()
    sys.stderr.flush()
    return rc


def serve() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # pragma: no cover  (an optional library: the child imports what it needs)
            pass
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the world's process
            rc = 1
            try:
                rc = _child(req)
            finally:
                os._exit(rc)
        _, status, usage = os.wait4(pid, 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status),
                          "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}), flush=True)


if __name__ == "__main__":
    serve()
