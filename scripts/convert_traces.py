"""Convert public throughput / signal traces once into the suite's small CSV format (data/traces/).

Output format (documented in data/traces/README.md): a header row, then one row per sample,
``time_s`` ascending from 0, ``mbps`` (goodput, Mbit/s) and, where the source logs it,
``rsrp_dbm`` (LTE reference signal received power).

Sources (pass local copies; nothing is downloaded here):

* ``--mahimahi DIR``: the ``traces/`` files of github.com/ravinet/mahimahi (GPL-3.0-or-later,
  recorded with Saturator: Winstein et al., NSDI 2013). Each line is a millisecond timestamp giving
  one 1500-byte delivery opportunity; we count opportunities per 1 s bin -> Mbit/s.
* ``--ucc5g ZIP``: ``5G-production-dataset.zip`` of github.com/uccmisl/5Gdataset (GPL-3.0; Raca et al.,
  MMSys 2020), G-NetTrack Pro logs of an Irish operator's LTE/5G-NSA network. We keep rows in LTE or
  5G (NSA) mode, average each 1 s timestamp, and write ``DL_bitrate`` (kbit/s -> Mbit/s) and ``RSRP``
  (the LTE cell's RSRP; in NSA mode the NR signal is in NRxRSRP, which we do not use). Rows with a
  missing cell ('-') or another network mode are skipped and counted.

    python scripts/convert_traces.py --mahimahi /path/to/mahimahi/traces --ucc5g 5G-production-dataset.zip
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "data" / "traces"
MTU_BITS = 1500 * 8

#: mahimahi file -> output name
MAHIMAHI = {"ATT-LTE-driving.up": "mahimahi_att_lte_driving_up",
            "ATT-LTE-driving-2016.up": "mahimahi_att_lte_driving_2016_up",
            "TMobile-LTE-short.up": "mahimahi_tmobile_lte_short_up",
            "Verizon-LTE-short.up": "mahimahi_verizon_lte_short_up"}
#: member of the UCC zip -> output name
UCC = {"5G-production-dataset/Download/Static/B_2020.01.16_10.43.34.csv": "ucc_lte_static_download",
       "5G-production-dataset/Download/Driving/B_2019.12.16_07.22.43.csv": "ucc_lte_driving_download"}


def mahimahi_to_rows(text: str) -> list[tuple[float, float]]:
    """Delivery opportunities (ms timestamps) -> (time_s, Mbit/s) per 1 s bin."""
    ms = np.array([int(line) for line in text.split() if line.strip()], dtype=np.int64)
    counts = np.bincount(ms // 1000, minlength=int(ms.max() // 1000) + 1)
    return [(float(i), float(c * MTU_BITS / 1e6)) for i, c in enumerate(counts)]


def ucc_to_rows(text: str) -> tuple[list[tuple[float, float, float]], int]:
    """G-NetTrack rows -> (time_s, DL Mbit/s, RSRP dBm) per 1 s, and how many rows were skipped."""
    reader = csv.DictReader(io.StringIO(text))
    per_s: dict[int, list[tuple[float, float]]] = {}
    skipped, t0 = 0, None
    for row in reader:
        try:
            if row["NetworkMode"] not in ("LTE", "5G"):
                raise ValueError(row["NetworkMode"])
            t = datetime.strptime(row["Timestamp"], "%Y.%m.%d_%H.%M.%S").timestamp()
            mbps, rsrp = float(row["DL_bitrate"]) / 1e3, float(row["RSRP"])
        except (ValueError, KeyError, TypeError):
            skipped += 1
            continue
        t0 = t if t0 is None else t0
        per_s.setdefault(int(t - t0), []).append((mbps, rsrp))
    rows = [(float(s), float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals])))
            for s, vals in sorted(per_s.items())]
    return rows, skipped


def write(name: str, header: list[str], rows: list[tuple], out: Path) -> dict:
    path = out / f"{name}.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows([f"{v:.4g}" if i else f"{v:g}" for i, v in enumerate(r)] for r in rows)
    mbps = np.array([r[1] for r in rows])
    return {"file": path.name, "rows": len(rows), "duration_s": rows[-1][0] + 1, "mean_mbps": round(float(mbps.mean()), 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mahimahi", type=Path, help="directory holding mahimahi's traces/ files")
    ap.add_argument("--ucc5g", type=Path, help="5G-production-dataset.zip of uccmisl/5Gdataset")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    summary = {}
    if args.mahimahi:
        for src, name in MAHIMAHI.items():
            summary[name] = write(name, ["time_s", "mbps"], mahimahi_to_rows((args.mahimahi / src).read_text()), args.out)
    if args.ucc5g:
        with zipfile.ZipFile(args.ucc5g) as z:
            for member, name in UCC.items():
                rows, skipped = ucc_to_rows(z.read(member).decode("utf-8"))
                summary[name] = {**write(name, ["time_s", "mbps", "rsrp_dbm"], rows, args.out), "skipped_rows": skipped}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
