"""``collect`` command line: sweep workloads on this host (or a phone) and write a trace.

    python -m bench collect --adapter auto --out traces/host.parquet --workloads resnet18 mobilenet_v3_small

``main(argv) -> int`` (the lead wires it as ``python -m bench collect``). Exit codes:
0 success (failed cells are rows with ``error``), 2 bad arguments / meter not
available (the reason is printed), 3 device gone mid-run (rows so far kept),
130 interrupted (rows so far kept; rerun the same command to resume).

The host runner is ``bench.pipeline.measure.prepare_workload(name, threads)``, which
builds the model once and returns ``run(warmup, repeats)``: building and warm-up run
before each cell's energy window opens (also with ``--warmup 0``), and only the timed
inferences run inside it. Workload names are checked against the runner's before
anything runs; the host runner measures the CPU, so ``--targets`` other than ``cpu``
are refused rather than mislabelled. A rerun resumes only with the same settings
(``--fresh`` starts anew). With ``--adapter android`` the workload runs on the phone:
``--phone-command`` is a template (``{workload}``, ``{target}``, ``{batch}``,
``{cpu_mhz}``, ``{gpu_mhz}`` are substituted; other braces stay as typed) timed on
the phone. Disk full, a read-only directory or ``--out`` naming a directory end in a
one-line error and exit 2.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import DVFS, METERS, best_available_meter
from .base import DeviceGoneError, DvfsController, Meter, MeterError
from .collect import collect, sweep


def adapter_names() -> list[str]:
    """What ``--adapter`` accepts: every registered meter (plugins included), ``none`` and ``auto``."""
    return [*METERS.names(), "none", "auto"]


TimeFn = Callable[[str, int, int, int], dict]
#: ``prepare(workload, threads) -> run(warmup, repeats) -> dict``: build once, time many
PrepareFn = Callable[[str, int], Callable[[int, int], dict]]


def add_meter_arguments(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--adapter``, ``--rate-hz`` and every meter's options (shared by ``collect`` and ``monitor``);
    :func:`make_meter` reads them."""
    p.add_argument("--adapter", choices=adapter_names(), default="auto",
                   help="meter to measure energy with (default: auto; plugins add names)")
    p.add_argument("--rate-hz", type=float, default=50.0, help="meter sampling rate (default: 50)")
    g = p.add_argument_group("adapter options")
    g.add_argument("--replay", metavar="LOG", help="recorded tegrastats log or samples .jsonl (adapter replay)")
    g.add_argument("--replay-speed", type=float, default=1.0)
    g.add_argument("--rapl-root", default="/sys/class/powercap")
    g.add_argument("--sysfs-root", default="/", help="root of sysfs for jetson/cpufreq (tests)")
    g.add_argument("--tegrastats-interval-ms", type=int, default=100)
    g.add_argument("--nvml-index", type=int, default=0)
    g.add_argument("--serial", help="adb serial (adapter android)")
    g.add_argument("--adb", default="adb", help="adb binary")
    g.add_argument("--allow-charging", action="store_true", help="measure the phone even while it charges")
    g.add_argument("--meter-option", action="append", default=[], metavar="KEY=VALUE",
                   help="constructor argument of a plugin meter (repeatable; values parsed as YAML scalars)")
    return g


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench collect", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output trace (.parquet); a .journal.jsonl beside it makes reruns resume")
    p.add_argument("--workloads", nargs="+", required=True, help="workload names (bench.world.workloads)")
    p.add_argument("--targets", nargs="+", default=["cpu"], help="execution targets (default: cpu)")
    p.add_argument("--repeats", type=int, default=20, help="measured inferences per cell (default: 20)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured inferences before each cell (default: 3)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default=None, help="device name in the trace (default: host name)")
    p.add_argument("--cpu-mhz", type=float, nargs="+", help="CPU levels to sweep (needs a DVFS-capable adapter and root)")
    p.add_argument("--gpu-mhz", type=float, nargs="+", help="GPU levels to sweep (jetson)")
    p.add_argument("--cpu-domain", default="cpu_policy0", help="cpufreq policy pinned by --cpu-mhz (default: cpu_policy0)")
    p.add_argument("--retry-failed", action="store_true", help="on resume, rerun cells that failed before")
    p.add_argument("--fresh", action="store_true",
                   help="start a new sweep even if the journal beside --out was written with other settings "
                        "(the old journal is kept as *.old); without it such a rerun is refused")
    p.add_argument("--no-progress", action="store_true")
    g = add_meter_arguments(p)
    g.add_argument("--dvfs", choices=DVFS.names(), default=None,
                   help="DVFS controller for --cpu-mhz/--gpu-mhz (default: android with --adapter android, else sysfs)")
    g.add_argument("--phone-command", help="command run on the phone per cell, e.g. "
                   "'/data/local/tmp/benchmark_model --graph=/data/local/tmp/{workload}.tflite'")
    return p


def _jetson(args: argparse.Namespace) -> Meter:
    from .jetson import Ina3221Meter, TegrastatsMeter

    if Ina3221Meter.probe(args.sysfs_root):
        return Ina3221Meter(args.sysfs_root)
    return TegrastatsMeter(args.tegrastats_interval_ms)


def _replay(args: argparse.Namespace) -> Meter:
    if not args.replay:
        raise MeterError("--adapter replay needs --replay LOG (a tegrastats log or a samples .jsonl)")
    return METERS["replay"].from_file(args.replay, speed=args.replay_speed)  # type: ignore[attr-defined]


def _android(args: argparse.Namespace) -> Meter:
    from .android import AdbDevice

    return METERS["android"](AdbDevice(args.serial, args.adb), allow_charging=args.allow_charging)


#: how the built-in meters take their command-line options; any other registered meter is
#: built as ``cls(**meter_options)`` from ``--meter-option KEY=VALUE``
BUILDERS: dict[str, Callable[[argparse.Namespace], Meter]] = {
    "replay": _replay,
    "rapl": lambda a: METERS["rapl"](root=a.rapl_root),
    "nvml": lambda a: METERS["nvml"](index=a.nvml_index),
    "jetson": _jetson,
    "jetson-ina3221": lambda a: METERS["jetson-ina3221"](a.sysfs_root),
    "android": _android,
}


def meter_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: yaml scalar v}``; a pair without ``=`` raises MeterError."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MeterError(f"--meter-option {pair!r}: expected KEY=VALUE")
        try:
            out[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError as exc:
            raise MeterError(f"--meter-option {pair!r}: value is not a YAML scalar ({' '.join(str(exc).split())[:80]})"
                             f"; allowed: KEY=VALUE with a number, word or quoted string") from None
    return out


def make_meter(args: argparse.Namespace) -> Meter | None:
    """The meter the arguments ask for (``None`` for ``none``); raises MeterError when it cannot run."""
    options = meter_options(getattr(args, "meter_option", []) or [])  # a malformed pair is refused whatever the meter
    if options and (args.adapter in ("none", "auto") or args.adapter in BUILDERS):
        # a built-in meter takes its settings from its own options: a --meter-option would be silently dropped
        raise MeterError(f"--meter-option {sorted(options)}: adapter {args.adapter!r} takes no --meter-option; "
                         f"allowed: --meter-option with a plugin meter (its constructor arguments)")
    if args.adapter == "none":
        return None
    if args.adapter == "auto":
        reasons: dict[str, str] = {}
        meter = best_available_meter(reasons, rapl={"root": args.rapl_root}, nvml={"index": args.nvml_index},
                                     **{"jetson-ina3221": {"root": args.sysfs_root},
                                        "jetson": {"interval_ms": args.tegrastats_interval_ms}})
        if meter is None:
            print("auto: no meter available, energy will be NaN. Why: "
                  + "; ".join(f"{k}: {v}" for k, v in reasons.items()), file=sys.stderr)
        return meter
    if args.adapter not in METERS:
        raise MeterError(METERS.unknown_message(args.adapter))
    builder = BUILDERS.get(args.adapter)
    if builder is not None:
        return builder(args)
    try:
        return METERS[args.adapter](**options)
    except TypeError as exc:  # wrong option names for the plugin's constructor
        raise MeterError(f"meter {args.adapter!r}: {exc}") from None


def make_dvfs(args: argparse.Namespace, meter: Meter | None) -> DvfsController | None:
    if not (args.cpu_mhz or args.gpu_mhz):
        return None
    name = getattr(args, "dvfs", None) or ("android" if args.adapter == "android" else "sysfs")
    if name == "android":
        return DVFS[name](device=getattr(meter, "device", None))
    return DVFS[name](root=args.sysfs_root)  # plain cpufreq on non-Jetson hosts


#: placeholders --phone-command may use; any other brace is left as typed (e.g. awk '{print $1}')
PHONE_PLACEHOLDERS = ("workload", "target", "batch", "cpu_mhz", "gpu_mhz")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PHONE_PLACEHOLDERS) + r")\}")


def phone_argv(template: str, cell: dict[str, Any]) -> list[str]:
    """``--phone-command`` with the cell's values put in for the known placeholders, split like a shell would."""
    def sub(mm: re.Match) -> str:
        value = cell.get(mm.group(1))
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return "" if value is None else str(value)
    return shlex.split(_PLACEHOLDER.sub(sub, template))


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _check_args(args: argparse.Namespace) -> str:
    """Why the arguments cannot run ("" when they can)."""
    if args.repeats < 1 or args.warmup < 0:
        return f"--repeats={args.repeats} must be >= 1 and --warmup={args.warmup} >= 0"
    if args.batch < 1 or args.threads < 0:
        return f"--batch={args.batch} must be >= 1 and --threads={args.threads} >= 0"
    if not (math.isfinite(args.rate_hz) and 0 < args.rate_hz <= 1000):
        return f"--rate-hz={args.rate_hz}: allowed: a number in (0, 1000]"
    if not (math.isfinite(args.replay_speed) and args.replay_speed > 0):
        return f"--replay-speed={args.replay_speed}: allowed: a finite number > 0"
    for flag in ("cpu_mhz", "gpu_mhz"):
        for f in getattr(args, flag) or []:
            if not (math.isfinite(f) and f > 0):
                return f"--{flag.replace('_', '-')} {f}: allowed: finite numbers > 0"
    if args.tegrastats_interval_ms < 1:
        return f"--tegrastats-interval-ms={args.tegrastats_interval_ms}: allowed: >= 1"
    if len(set(args.workloads)) != len(args.workloads) or len(set(args.targets)) != len(args.targets):
        return f"--workloads {args.workloads} / --targets {args.targets}: each name at most once"
    out = Path(args.out)
    if out.is_dir():
        return f"--out {out} is a directory; allowed: a file path such as {out / 'trace.parquet'}"
    if out.name in ("", ".", ".."):
        return f"--out {args.out!r}: allowed: a file path such as traces/host.parquet"
    if out.suffix.lower() != ".parquet":  # a trace.csv would hold Parquet bytes that no CSV reader opens
        return f"--out {args.out!r}: the trace is written as Parquet; allowed: a path ending in .parquet"
    return ""


def main(argv: Sequence[str] | None = None, time_fn: TimeFn | None = None, *, prepare_fn: PrepareFn | None = None,
         known_workloads: Iterable[str] | None = None) -> int:
    """``collect`` entry point. hw never imports bench, so the caller supplies the host runner:

    * ``prepare_fn(workload, threads) -> run(warmup, repeats) -> dict`` (preferred): builds the
      model once, outside every energy window; ``run`` times it;
    * ``time_fn(workload, warmup, repeats, threads) -> dict`` (older protocol): each call builds
      the model, so with it the model construction is inside the window; prefer ``prepare_fn``;
    * ``known_workloads``: the names the runner knows; others exit 2 before anything runs.

    ``python -m bench collect`` passes ``bench.pipeline.measure.prepare_workload`` and the
    registry's names. On a phone (``--adapter android``) the names are the phone's, not checked.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "collect":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    why = _check_args(args)
    if why:
        return _fail(why)
    on_phone = args.adapter == "android"
    if not on_phone:
        if known_workloads is not None:
            known = sorted(set(known_workloads))
            unknown = [w for w in args.workloads if w not in known]
            if unknown:
                return _fail(f"unknown workload(s) {unknown}; allowed: {', '.join(known)}")
        if args.targets != ["cpu"]:
            return _fail(f"--targets {' '.join(args.targets)}: the host runner runs every workload on this host's CPU, "
                         "so any other target would label CPU measurements wrongly; allowed here: cpu")
        if prepare_fn is None and time_fn is None:
            return _fail("no workload runner: call through `python -m bench collect`, which supplies one")
    else:
        if not args.phone_command:
            return _fail("--adapter android runs the workload on the phone: give --phone-command")
        try:
            phone_argv(args.phone_command, {"workload": "w", "target": "t", "batch": 1})
        except ValueError as exc:
            return _fail(f"--phone-command {args.phone_command!r} does not split into words: {exc}")
        if args.targets != ["cpu"] and "{target}" not in args.phone_command:
            return _fail(f"--targets {' '.join(args.targets)}: the phone command has no {{target}} placeholder, so every "
                         "target would run the same command under a different label; add {target} or use --targets cpu")
    try:
        meter = make_meter(args)
        dvfs = make_dvfs(args, meter)
    except MeterError as exc:
        return _fail(f"{args.adapter}: {exc}")
    import socket

    device = args.device or socket.gethostname()
    freqs: list[dict[str, Any]] = [{}]
    if args.cpu_mhz:
        freqs = [{"cpu_mhz": f} for f in args.cpu_mhz]
    if args.gpu_mhz:
        freqs = [{**f, "gpu_mhz": g} for f in freqs for g in args.gpu_mhz]
    cells = sweep(args.workloads, args.targets, freqs, batch=args.batch)

    if on_phone:
        phone = meter.device  # type: ignore[union-attr]

        def run_cell(cell):
            return phone.time_command(phone_argv(args.phone_command, cell), args.repeats)

        def warm_cell(cell):
            if args.warmup:
                phone.time_command(phone_argv(args.phone_command, cell), args.warmup)
        runner = {"runner": "phone", "phone_command": args.phone_command}
    else:
        if prepare_fn is None:
            fn = time_fn
            assert fn is not None

            def prepare(name: str, threads: int) -> Callable[[int, int], dict]:
                return lambda warmup, repeats: fn(name, warmup, repeats, threads)
        else:
            prepare = prepare_fn
        prepared: dict[str, Callable[[int, int], dict]] = {}  # only the current workload's model is kept

        def warm_cell(cell):
            name = cell["workload"]
            if name not in prepared:
                prepared.clear()
                prepared[name] = prepare(name, args.threads)  # model construction: never inside a window
            if args.warmup:
                prepared[name](args.warmup, 1)

        def run_cell(cell):
            return prepared[cell["workload"]](0, args.repeats)
        runner = {"runner": "host" if prepare_fn is not None else "host-time_fn"}

    adapter_name = args.adapter if args.adapter != "auto" else (meter.name if meter else "none")
    settings = {"workloads_run_with": runner, "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads,
                "cpu_domain": args.cpu_domain if args.cpu_mhz else None}
    try:
        frame = collect(cells, run_cell, args.out, meter, warm_cell=warm_cell, rate_hz=args.rate_hz, device=device,
                        adapter=adapter_name, dvfs=dvfs,
                        freq_domains={k: v for k, v in (("cpu_mhz", args.cpu_domain), ("gpu_mhz", "gpu")) if getattr(args, k)},
                        retry_failed=args.retry_failed, progress=not args.no_progress,
                        metadata={"argv": argv}, settings=settings, fresh=args.fresh)
    except DeviceGoneError as exc:
        print(f"error: device gone mid-run: {exc}. Rows so far are in {args.out}; rerun to resume.", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"interrupted: rows so far are in {args.out}; rerun the same command to resume.", file=sys.stderr)
        return 130
    except MeterError as exc:  # JournalError (other settings), a DVFS restore that failed...
        return _fail(str(exc))
    except OSError as exc:  # disk full, read-only directory, permission denied: the user's to fix
        where = exc.filename or args.out
        return _fail(f"cannot write {where}: {exc.strerror or exc} (rows finished so far are in the journal beside "
                     f"{args.out}; free space or fix permissions, then rerun the same command to resume)")
    finally:
        if meter is not None:
            meter.close()
    failed = int((frame["error"] != "").sum())
    print(f"wrote {len(frame)} rows to {args.out} ({failed} failed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
