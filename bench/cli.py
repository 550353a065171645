"""``python -m bench ...`` (or ``edgebench ...``): headless entry points for devices, DVC and people.

Every sub-command is one row of :data:`COMMANDS` (name, one-line help, handler); ``python -m bench
--help`` lists them from there. Sub-commands with their own parser get their arguments untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

#: Set to 1 to see the traceback behind a one-line error (for reporting a bug in the suite).
TRACEBACK_ENV = "BENCH_TRACEBACK"


def _cmd_profiles(args) -> int:
    import pandas as pd

    from bench.world.profiles import list_profiles, load_profile

    names = args.names or list_profiles()
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        for name in names:
            try:
                prof = load_profile(name)
            except Exception as exc:  # ProfileError: one line, exit 2
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(f"== {prof.name} ({prof.kind}): {prof.description}")
            print(f"   radios: {', '.join(prof.radios) or '-'};  idle power: {prof.idle_power_w:g} W")
            print(pd.DataFrame(prof.summary()).drop(columns=["profile"]).to_string(index=False))
            print()
    return 0


def _cmd_params(args) -> int:
    from bench.config import describe, load_params

    if args.describe:
        for row in describe():
            allowed = f"  allowed: {row['allowed']}" if row["allowed"] else ""
            print(f"{row['key']:<32} {row['type']:<16} default={row['default']!r}{allowed}\n    {row['doc']}")
        return 0
    load_params(args.file)
    print(f"{args.file}: ok")
    return 0


def _cmd_notebook(args) -> int:
    from bench.pipeline.stages import run_stage

    out = run_stage(args.stage, Path(args.params), run=args.run)
    print(f"executed notebook: {out}")
    return 0


def _cmd_workloads(args) -> int:
    from bench.cli_world import run_workloads

    return run_workloads(args)


def _collect_main(argv: list[str]) -> int:
    from bench.pipeline.measure import prepare_workload
    from bench.world.workloads import WORKLOADS
    from hw import cli as hw_cli

    return hw_cli.main(argv, prepare_fn=prepare_workload, known_workloads=WORKLOADS)


def _monitor_main(argv: list[str]) -> int:
    from hw import measurement

    return measurement.main(argv)


def _cmd_plugins(args) -> int:
    import bench.policies  # noqa: F401  (fills the policy and learner registries)
    import bench.world.scenarios  # noqa: F401  (fills the scenario kinds)
    import hw
    from hw.registry import registries

    for reg in registries():
        print(f"{reg.kind} ({reg.group}): {', '.join(reg.names())}")
        for name, why in sorted(reg.errors.items()):
            print(f"    not loaded: {name}: {why}")
    del hw
    return 0


def _cmd_calibrate(args) -> int:
    from bench.cli_world import run_calibrate

    return run_calibrate(args)


def _cmd_predict(args) -> int:
    from bench.cli_world import run_predict

    return run_predict(args)


def _readme_main(argv: list[str]) -> int:
    from bench.pipeline import readme

    return readme.main(argv)


def _perf_main(argv: list[str]) -> int:
    from bench.perf import main as perf

    return perf.main(argv)


def _sweep_main(argv: list[str]) -> int:
    from bench.pipeline import sweep

    return sweep.main(argv)


def _testbed_main(argv: list[str]) -> int:
    from bench.testbed import cli as testbed_cli

    return testbed_cli.main(argv)


def _testbed_cleanup_main(argv: list[str]) -> int:
    from bench.testbed import cli as testbed_cli

    return testbed_cli.cleanup_main(argv)


def _dvc_deps_main(argv: list[str]) -> int:
    from bench.pipeline import codedeps

    return codedeps.main(argv)


def _sensitivity_main(argv: list[str]) -> int:
    from bench.pipeline import sensitivity

    return sensitivity.main(argv)


def _train_drldo_main(argv: list[str]) -> int:
    from bench.pipeline import drldo_stage

    return drldo_stage.main(argv)


def _testbed_stage_main(argv: list[str]) -> int:
    from bench.testbed import compare

    return compare.main(argv)




def _cmd_env_yml(args) -> int:
    from bench import envfile

    return envfile.main(["--check"] if args.check else [])


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``; exit 2), like every other user mistake."""

    def error(self, message):  # noqa: D401 - argparse API
        _one_line_usage_error(self, message)


def _one_line_usage_error(parser: argparse.ArgumentParser, message: str):
    print(f"error: {parser.prog}: {' '.join(message.split())} (see {parser.prog} --help)", file=sys.stderr)
    sys.exit(2)


@contextlib.contextmanager
def _one_line_argparse():
    """Sub-commands with their own argparse parsers report usage errors on one line too."""
    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = _one_line_usage_error  # type: ignore[assignment]
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original  # type: ignore[assignment]


#: OS errors that come from a path or resource the user chose (a missing or read-only file, a full disk).
_USER_OS_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.ENOSPC, errno.EROFS,
                   errno.EEXIST, errno.ENAMETOOLONG, errno.EDQUOT, errno.ELOOP}


def _run(fn, *args) -> int:
    """Run a sub-command; a user's mistake prints ``error: <one line>`` and returns 2."""
    from bench.errors import BenchError, short
    from hw.base import MeterError

    try:
        with _one_line_argparse():
            return fn(*args)
    except SystemExit as exc:  # argparse (usage error: 2, --help: 0) or a sub-command's sys.exit
        return _exit_code(exc)
    except (BenchError, MeterError) as exc:  # a user's mistake or a missing device
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        if exc.errno is None and isinstance(exc, FileNotFoundError):  # raised with a message of ours (no errno)
            print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2
        if exc.errno not in _USER_OS_ERRNOS:
            raise
        where = exc.filename if exc.filename is not None else "-"
        print(f"error: {short(str(where))[1:-1] if isinstance(where, str) else where}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(f"error: {' '.join(str(exc.code).split())}", file=sys.stderr)
    return 1


@dataclass(frozen=True)
class Command:
    """One sub-command: its one-line help and its handler."""

    help: str
    #: ``handler(argv) -> exit code`` for a sub-command that parses its own arguments, or
    #: ``handler(args) -> exit code`` with ``build(parser)`` adding the arguments here
    handler: Callable[..., int]
    build: Callable[[argparse.ArgumentParser], None] | None = None


def _build_profiles(p):
    p.add_argument("names", nargs="*", help="profile names (default: all shipped)")


def _build_params(p):
    from bench.paths import PARAMS_FILE

    p.add_argument("--file", default=str(PARAMS_FILE))
    p.add_argument("--describe", action="store_true", help="list every key, its type, default and meaning")


def _build_notebook(p):
    from bench.paths import PARAMS_FILE

    p.add_argument("stage", help="profile | train | evaluate | report")
    p.add_argument("--run", help="the train.runs entry (stage train)")
    p.add_argument("--params", default=str(PARAMS_FILE))


def _build_env_yml(p):
    p.add_argument("--check", action="store_true")


def _build_workloads(p):
    from bench.cli_world import build_workloads  # the world's parsers live in the CLI layer, not in bench/world

    build_workloads(p)


def _build_calibrate(p):
    from bench.cli_world import build_calibrate

    build_calibrate(p)


def _build_predict(p):
    from bench.cli_world import build_predict

    build_predict(p)


#: Every sub-command, in the order ``--help`` lists them: the one table of the command line.
COMMANDS: dict[str, Command] = {
    "profiles": Command("every shipped profile's targets, runtime, levels and calibration error", _cmd_profiles,
                        _build_profiles),
    "calibrate": Command("fit the shipped profiles to data/calibration (--write to write them)", _cmd_calibrate,
                         _build_calibrate),
    "predict": Command("latency, power and energy of a DNN on a profile's target (CSV or one row)", _cmd_predict,
                       _build_predict),
    "params": Command("validate params.yaml (--describe: every key with its doc)", _cmd_params, _build_params),
    "notebook": Command("run a pipeline stage's notebook via papermill (used by dvc.yaml)", _cmd_notebook,
                        _build_notebook),
    "workloads": Command("print (or recompute and write) the workload table", _cmd_workloads, _build_workloads),
    "collect": Command("sweep workloads x targets x frequencies with a meter (resumable)", _collect_main),
    "monitor": Command("energy, duration and average power of any command: monitor -- CMD ...", _monitor_main),
    "plugins": Command("every extension point and what is registered (plugins included)", _cmd_plugins,
                       lambda p: None),
    "readme": Command("refresh README's tables and figures from results/ (--check)", _readme_main),
    "sweep": Command("a resumable grid sweep on local processes or a Dask cluster (sweep in params.yaml)",
                     _sweep_main),
    "sensitivity": Command("which verdicts flip when each assumed constant is halved or doubled (sensitivity in "
                           "params.yaml)", _sensitivity_main),
    "perf": Command("simulator, decision and training benchmarks beside SB3 -> results/perf.json", _perf_main),
    "env-yml": Command("regenerate (or --check) environment.yml from pyproject.toml", _cmd_env_yml, _build_env_yml),
    "dvc-deps": Command("each DVC stage's code dependencies, from what it imports (--check, --write)",
                        _dvc_deps_main),
    "train-drldo": Command("the drldo DVC stage: DRLDO trained once per suite that evaluates it", _train_drldo_main),
    "testbed": Command("a policy live on real inference over a shaped link (root)", _testbed_main),
    "testbed-stage": Command("the testbed DVC stage: params' policies x scenarios, live vs simulated",
                             _testbed_stage_main),
    "testbed-cleanup": Command("remove namespaces, veths and qdiscs a crashed testbed run left behind",
                               _testbed_cleanup_main),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-commands with their own parsers get their arguments untouched (argparse's
    # REMAINDER would swallow nothing after a leading --option).
    if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].build is None:
        return _run(COMMANDS[argv[0]].handler, argv[1:])
    parser = _Parser(prog="python -m bench", description="Headless entry points of the edge-inference benchmark "
                     "suite for devices, DVC and people; `python -m bench COMMAND --help` for each.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    parsers = {}
    for name, cmd in COMMANDS.items():
        parsers[name] = p = sub.add_parser(name, help=cmd.help, description=cmd.help, add_help=cmd.build is not None)
        if cmd.build is not None:
            cmd.build(p)
            p.set_defaults(func=cmd.handler)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the sub-command's parser (its usage), not the top level's
            parsers[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        return _exit_code(exc)
    return _run(args.func, args)
