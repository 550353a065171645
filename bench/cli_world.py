"""The world's sub-commands (``workloads``, ``calibrate``, ``predict``): their arguments and what they print.

The command line is a layer of its own: ``bench/world`` holds the models (functions that take values and
return tables), this module turns parsed arguments into calls and prints the results. Each ``build_*``
adds a sub-command's arguments to the parser :mod:`bench.cli` gives it; each ``run_*`` takes the parsed
arguments and returns the exit code. Imports of the models stay inside the ``run_*`` functions, so
building the command line (``python -m bench --help``) imports no model.
"""

from __future__ import annotations

import argparse
import sys


def build_workloads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write", action="store_true", help="recompute all workloads and write the cache")
    p.add_argument("--out", default=None, help="cache directory (default: data/workloads)")


def run_workloads(args: argparse.Namespace) -> int:
    """Print the workload table; ``--write`` recomputes the cache (torch, minutes) first."""
    import pandas as pd

    from bench.errors import WorkloadError
    from bench.world.workloads import DATA_DIR, load_workloads, write_cache

    if args.out is not None and not args.out.strip():  # "" read (or --write wrote) the shipped cache
        raise WorkloadError(f"--out {args.out!r}: an empty path; allowed: a cache folder (default {DATA_DIR})")
    out = args.out or str(DATA_DIR)
    if args.write:
        for path in write_cache(out):
            print(f"wrote {path}")
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(load_workloads(out).drop(columns="acc_source", errors="ignore").to_string(index=False))
    return 0


def build_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write", action="store_true", help="write data/profiles/*.yaml and data/calibration/fit_*.csv")
    p.add_argument("--measurements", default=None, help="published measurements (CSV; default "
                   "data/calibration/measurements.csv)")
    p.add_argument("--settings", default=None, help="fit settings (YAML; default data/calibration/fit_settings.yaml)")
    p.add_argument("profiles", nargs="*", help="prior names (default: all in data/profiles/priors)")


def run_calibrate(args: argparse.Namespace) -> int:
    """Fit the shipped profiles and print (``--write``: also write) the results."""
    import pandas as pd

    from bench.errors import DataFileError
    from bench.world.fit import MEASUREMENTS_CSV, SETTINGS_YAML, calibrate_all

    for opt, value in (("--measurements", args.measurements), ("--settings", args.settings)):
        if value is not None and not value.strip():  # "" fell back to the shipped file, silently
            print(f"error: {opt} {value!r}: an empty path; allowed: a file path (or leave the option out)",
                  file=sys.stderr)
            return 2
    try:
        res = calibrate_all(args.profiles or None, write=args.write, measurements=args.measurements or MEASUREMENTS_CSV,
                            settings_path=args.settings or SETTINGS_YAML, strict=True)
    except (DataFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pct = {c: (lambda x: "-" if pd.isna(x) else f"{100 * x:.1f}%") for c in
           ("in_sample_median_abs_err", "in_sample_p90_abs_err", "loo_median_abs_err", "loo_p90_abs_err",
            "prior_median_abs_err", "prior_p90_abs_err", "heldout_median_abs_err", "rel_error")}
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_colwidth", 40):
        cols = ["profile", "target", "n_points", "in_sample_median_abs_err", "loo_median_abs_err", "loo_p90_abs_err",
                "prior_median_abs_err", "n_heldout", "heldout_median_abs_err", "peak_respected"]
        print("Per target (leave-one-model-out: every row of one DNN held out, all targets refitted):")
        print(res["summary"][cols].to_string(index=False, formatters=pct))
        print("\nPer operator class (points grouped by the class carrying most of their modelled time):")
        print(res["classes"].to_string(index=False, formatters=pct))
        held = res["heldout"]
        med = float(held["rel_error"].abs().median()) if len(held) else float("nan")
        print(f"\nHeld-out published rows (use=heldout, never fitted): n={len(held)}, median |error| {100 * med:.1f}%")
        if len(held):
            print(held.to_string(index=False, formatters=pct))
        print("\nTarget order per DNN measured on two or more targets:")
        print(res["orderings"].to_string(index=False))
    for msg in res["skipped"]:
        print(f"skipped {msg}")
    return 0


def build_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", help="input CSV (columns profile, workload, target[, level_mhz, mem_level_mhz, precision])")
    p.add_argument("--out", help="output CSV (with --csv)")
    p.add_argument("--profile")
    p.add_argument("--workload")
    p.add_argument("--target")
    p.add_argument("--level-mhz", default=None, help="core clock in MHz, or 'max' (default)")
    p.add_argument("--mem-level-mhz", default=None, help="memory clock in MHz, or 'max' (default)")
    p.add_argument("--precision", default=None, help="must equal the target's precision if given")
    p.add_argument("--cpu-level-mhz", default=None,
                   help="host CPU clock for an accelerator target (its kernel launches slow down with it)")
    p.add_argument("--json", action="store_true", help="print the single-row result as JSON")


def run_predict(args: argparse.Namespace) -> int:
    """One row (``--profile --workload --target``) or a CSV of rows (``--csv IN --out OUT``); see
    :mod:`bench.world.predict`."""
    import json

    from bench.errors import DataFileError
    from bench.world.predict import PredictError, Predictor, describe, json_safe, write_predictions

    try:
        if args.csv:
            if not args.out:
                raise PredictError("--csv needs --out")
            rows, failed, read = write_predictions(args.csv, args.out)
            print(f"wrote {args.out}: {rows - failed} rows predicted, {failed} failed (see column 'error')",
                  file=sys.stderr)
            if read.skipped:  # a ragged row cannot be placed in the columns: left out of OUT, counted here
                print(f"warning: --csv {args.csv}: {read.skipped_text()}; not in {args.out}", file=sys.stderr)
            return 0
        missing = [k for k in ("profile", "workload", "target") if not getattr(args, k)]
        if missing:
            raise PredictError(f"give --csv IN --out OUT, or --profile, --workload and --target (missing: "
                               f"{', '.join('--' + m for m in missing)})")
        res = Predictor().predict(args.profile, args.workload, args.target, args.level_mhz, args.mem_level_mhz,
                                  args.precision, args.cpu_level_mhz)
    except (PredictError, DataFileError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(json_safe(res), indent=2, allow_nan=False) if args.json else describe(res))
    return 0
