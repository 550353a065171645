"""Measure what measuring costs: sampler CPU overhead and the time of one ``read()`` per meter.

    python -m bench.perf.sampler [--seconds 3] [--rate-hz 100]

* **sampler overhead** — process CPU time / wall time while the main thread sleeps
  and a :class:`hw.sampler.Sampler` polls at ``--rate-hz``, minus the same ratio
  with no sampler (baseline). Reported as % of one core.
* **read time** — median and p95 of ``meter.read()`` over many calls.

Meters run on real hardware where it exists (``/sys/class/powercap``, INA3221
sysfs, NVML) and otherwise on fake sysfs trees built in a temporary directory
(reported as ``fake tree``): the fake figures measure this code plus the kernel's
file I/O, not the hardware's latency.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench.paths import DATA_DIR
from hw.base import Meter
from hw.jetson import Ina3221Meter, parse_tegrastats
from hw.rapl import RaplMeter
from hw.replay import ReplayMeter
from hw.sampler import Sampler

FIXTURE_LOG = DATA_DIR / "samples" / "tegrastats" / "llm_pipeline_12core_orin_rails.log"
SAMPLE_LINE = ("08-14-2025 15:00:57 RAM 12574/62841MB (lfb 258x4MB) SWAP 0/31420MB (cached 0MB) CPU [2%@1036,0%@806,"
               "3%@806,0%@806,4%@1036,0%@1036,16%@1036,62%@1036,off,off,off,off] EMC_FREQ 3%@665 GR3D_FREQ 43%@[305,0] "
               "NVENC off NVDEC off APE 174 cpu@51.031C soc2@48C gpu@47.875C tj@51.031C VDD_GPU_SOC 2797mW/2797mW "
               "VDD_CPU_CV 799mW/799mW VIN_SYS_5V0 3215mW/3215mW")


def _write(p: Path, value: object) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"{value}\n")


def fake_rapl(root: Path) -> Path:
    for d, name in {"intel-rapl:0": "package-0", "intel-rapl:0:0": "core", "intel-rapl:0:1": "dram"}.items():
        _write(root / d / "name", name)
        _write(root / d / "energy_uj", 123456789)
        _write(root / d / "max_energy_range_uj", 262143328850)
    return root


def fake_ina3221(root: Path) -> Path:
    hw = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    for k, label in enumerate(["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"], 1):
        _write(hw / f"in{k}_label", label)
        _write(hw / f"in{k}_input", 5000)
        _write(hw / f"curr{k}_input", 700)
    return root


def time_calls(fn: Callable[[], object], n: int = 2000) -> tuple[float, float]:
    """Median and p95 of one call, µs."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e6)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def cpu_fraction(seconds: float, sampler: Sampler | None) -> tuple[float, int]:
    """Process CPU time / wall time over ``seconds`` of sleeping (with ``sampler`` polling if given)."""
    if sampler is not None:
        sampler.start()
    c0, w0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    c1, w1 = time.process_time(), time.monotonic()
    n = 0
    if sampler is not None:
        n = sampler.n_reads
        sampler.stop()
    return (c1 - c0) / (w1 - w0), n


def meters(tmp: Path) -> dict[str, tuple[Meter, str]]:
    out: dict[str, tuple[Meter, str]] = {}
    if RaplMeter.probe():
        out["rapl"] = (RaplMeter(), "real")
    out["rapl (fake tree)"] = (RaplMeter(fake_rapl(tmp / "powercap")), "fake tree")
    if Ina3221Meter.probe():
        out["jetson-ina3221"] = (Ina3221Meter(), "real")
    out["jetson-ina3221 (fake tree)"] = (Ina3221Meter(fake_ina3221(tmp / "jetson")), "fake tree")
    if FIXTURE_LOG.exists():
        out["replay (tegrastats log)"] = (ReplayMeter.from_file(FIXTURE_LOG), "recorded log")
    try:
        from .nvml import NvmlMeter

        if NvmlMeter.probe():
            out["nvml"] = (NvmlMeter(), "real")
    except Exception:  # noqa: BLE001 - no NVML here is the normal case
        pass
    return out


#: meters tried for the overhead figure, best first (real hardware before the fake tree)
OVERHEAD_METERS = ("rapl", "nvml", "jetson-ina3221", "rapl (fake tree)")


def sampler_overhead(seconds: float = 2.0, rate_hz: float = 100.0, repeats: int = 3) -> dict[str, object]:
    """CPU cost of a :class:`Sampler` polling at ``rate_hz``: median over ``repeats`` of
    (process CPU / wall with the sampler) - (same without), in % of one core.

    Uses the first meter of :data:`OVERHEAD_METERS` that exists here; returns ``overhead_pct``,
    ``samples_per_s`` (achieved), ``meter`` and its ``kind`` (real / fake tree).
    """
    if seconds <= 0 or rate_hz <= 0 or repeats < 1:
        raise ValueError(f"need seconds > 0, rate_hz > 0, repeats >= 1; got {seconds}, {rate_hz}, {repeats}")
    with tempfile.TemporaryDirectory() as d:
        ms = meters(Path(d))
        name = next(n for n in OVERHEAD_METERS if n in ms)
        meter, kind = ms[name]
        overheads, rates = [], []
        cpu_fraction(min(seconds, 0.5), None)  # settle: the first window still carries start-up work
        for _ in range(repeats):  # baseline next to each measurement: background load drifts
            base, _ = cpu_fraction(seconds, None)
            frac, n = cpu_fraction(seconds, Sampler(meter, rate_hz))
            overheads.append(100 * (frac - base))
            rates.append(n / seconds)
        for m, _ in ms.values():
            m.close()
    return {"overhead_pct": statistics.median(overheads), "samples_per_s": statistics.median(rates),
            "meter": name, "kind": kind, "rate_hz": rate_hz, "seconds": seconds, "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.perf.sampler", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rate-hz", type=float, default=100.0)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        ms = meters(Path(d))
        print("read() time per meter (µs, median / p95 over 2000 calls)")
        for name, (m, kind) in ms.items():
            med, p95 = time_calls(m.read)
            print(f"  {name:32s} {med:9.1f} / {p95:9.1f}   [{kind}]")
        med, p95 = time_calls(lambda: parse_tegrastats(SAMPLE_LINE))
        print(f"  {'parse_tegrastats (one line)':32s} {med:9.1f} / {p95:9.1f}   [per tegrastats line]")
        base, _ = cpu_fraction(args.seconds, None)
        print(f"\nsampler CPU overhead at {args.rate_hz:g} Hz over {args.seconds:g} s "
              f"(process CPU / wall, baseline {100 * base:.2f}% subtracted)")
        for name in ("rapl (fake tree)", "replay (tegrastats log)", "rapl", "nvml"):
            if name in ms:
                frac, n = cpu_fraction(args.seconds, Sampler(ms[name][0], args.rate_hz))
                print(f"  {name:32s} {100 * (frac - base):6.2f}% of one core, {n / args.seconds:6.1f} samples/s achieved")
        for m, _ in ms.values():
            m.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
