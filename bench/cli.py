"""``python -m bench ...``: headless entry points for devices, DVC and people.

    python -m bench profiles            print every shipped profile's targets, runtime, levels and calibration error
    python -m bench calibrate [--write] fit the shipped profiles to data/calibration (and write them)
    python -m bench predict ...         latency/power/energy of a DNN on a profile's target (--help)
    python -m bench params [--describe] validate params.yaml (or list every key with its doc)
    python -m bench notebook STAGE      run a pipeline stage's notebook via papermill (used by dvc.yaml)
    python -m bench workloads [--write] print (or recompute and write) the workload table
    python -m bench collect ...         sweep workloads x targets x frequencies with a meter (hw.cli)
    python -m bench monitor -- CMD ...  energy, duration and average power of any command (hw.measurement)
    python -m bench plugins             every extension point and what is registered (plugins included)
    python -m bench readme [--check]    refresh README's tables and figures from results/ (never by hand)
    python -m bench sweep [...]         a resumable grid sweep on local processes or a Dask cluster (sweep in params.yaml)
    python -m bench sensitivity [...]   which verdicts flip when each assumed constant is halved or doubled
    python -m bench perf [--quick]      simulator/decision/training benchmarks beside SB3 -> results/perf.json
    python -m bench env-yml [--check]   regenerate (or check) environment.yml from pyproject.toml
    python -m bench testbed ...         a policy live on real inference over a shaped link (root; bench.testbed)
    python -m bench testbed-stage       the testbed DVC stage: params' policies x scenarios live vs simulated
    python -m bench testbed-cleanup     remove namespaces/veths/qdiscs a crashed testbed run left behind
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from pathlib import Path

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
            print(f"{row['key']:<32} {row['type']:<16} default={row['default']!r}\n    {row['doc']}")
        return 0
    load_params(args.file)
    print(f"{args.file}: ok")
    return 0


def _cmd_notebook(args) -> int:
    from bench.pipeline.stages import run_stage

    out = run_stage(args.stage, Path(args.params), run=args.run)
    print(f"executed notebook: {out}")
    return 0


def _workloads_main(argv: list[str]) -> int:
    from bench.world import workloads

    return workloads.main(argv)


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


def _calibrate_main(argv: list[str]) -> int:
    from bench.world import fit

    return fit.main(argv)


def _predict_main(argv: list[str]) -> int:
    from bench.world import predict

    return predict.main(argv)


def _readme_main(argv: list[str]) -> int:
    from bench.pipeline import readme

    return readme.main(argv)


def _perf_main(argv: list[str]) -> int:
    from bench.perf import main as perf

    return perf.main(argv)


def _sweep_main(argv: list[str]) -> int:
    from bench.pipeline import sweep

    return sweep.main(argv)


def _sensitivity_main(argv: list[str]) -> int:
    from bench.pipeline import sensitivity

    return sensitivity.main(argv)


def _testbed_main(argv: list[str]) -> int:
    from bench.testbed import cli as testbed_cli

    return testbed_cli.main(argv)


def _testbed_cleanup_main(argv: list[str]) -> int:
    from bench.testbed import cli as testbed_cli

    return testbed_cli.cleanup_main(argv)


def _testbed_stage_main(argv: list[str]) -> int:
    from bench.testbed import compare

    return compare.main(argv)


_PASSTHROUGH = {"workloads": _workloads_main, "collect": _collect_main, "monitor": _monitor_main,
                "readme": _readme_main, "perf": _perf_main, "sweep": _sweep_main, "sensitivity": _sensitivity_main,
                "testbed": _testbed_main, "testbed-cleanup": _testbed_cleanup_main, "testbed-stage": _testbed_stage_main,
                "calibrate": _calibrate_main, "predict": _predict_main}


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
        if exc.errno not in _USER_OS_ERRNOS or os.environ.get(TRACEBACK_ENV) == "1":
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


def main(argv: list[str] | None = None) -> int:
    from bench.paths import PARAMS_FILE

    argv = list(sys.argv[1:] if argv is None else argv)
    # Sub-commands with their own parsers get their arguments untouched (argparse's
    # REMAINDER would swallow nothing after a leading --option).
    if argv and argv[0] in _PASSTHROUGH:
        return _run(_PASSTHROUGH[argv[0]], argv[1:])
    parser = _Parser(prog="python -m bench", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("profiles", help="print device profiles")
    p.add_argument("names", nargs="*", help="profile names (default: all shipped)")
    p.set_defaults(func=_cmd_profiles)
    p = sub.add_parser("params", help="validate params.yaml")
    p.add_argument("--file", default=str(PARAMS_FILE))
    p.add_argument("--describe", action="store_true", help="list every key, its type, default and meaning")
    p.set_defaults(func=_cmd_params)
    p = sub.add_parser("notebook", help="run a stage notebook via papermill")
    p.add_argument("stage", help="profile | train | evaluate | report")
    p.add_argument("--run", help="the train.runs entry (stage train)")
    p.add_argument("--params", default=str(PARAMS_FILE))
    p.set_defaults(func=_cmd_notebook)
    sub.add_parser("workloads", help="workload table (python -m bench workloads --help)", add_help=False)
    sub.add_parser("calibrate", help="fit profiles to published measurements (python -m bench calibrate --help)",
                   add_help=False)
    sub.add_parser("predict", help="latency/power/energy from a profile (python -m bench predict --help)",
                   add_help=False)
    sub.add_parser("collect", help="trace sweep with a meter (python -m bench collect --help)", add_help=False)
    sub.add_parser("monitor", help="energy of any command (python -m bench monitor --help)", add_help=False)
    p = sub.add_parser("plugins", help="list the registries (meters, DVFS, policies, learners, scenario kinds)")
    p.set_defaults(func=_cmd_plugins)
    sub.add_parser("testbed", help="live testbed run (python -m bench testbed --help)", add_help=False)
    sub.add_parser("testbed-stage", help="the testbed DVC stage (python -m bench testbed-stage --help)",
                   add_help=False)
    sub.add_parser("testbed-cleanup", help="remove what a crashed testbed run left behind", add_help=False)
    sub.add_parser("readme", help="refresh README.md's result sections from results/", add_help=False)
    sub.add_parser("sensitivity", help="which verdicts flip when each assumed constant is halved or doubled "
                   "(python -m bench sensitivity --help)", add_help=False)
    sub.add_parser("sweep", help="grid of profiles x configs x policies x scenarios x seeds on an engine "
                   "(python -m bench sweep --help)", add_help=False)
    sub.add_parser("perf", help="speed and training cost beside Stable-Baselines3 (python -m bench perf --help)",
                   add_help=False)
    p = sub.add_parser("env-yml", help="regenerate environment.yml from pyproject.toml")
    p.add_argument("--check", action="store_true")
    p.set_defaults(func=_cmd_env_yml)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return _exit_code(exc)
    return _run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
