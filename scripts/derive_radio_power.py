"""Recompute the era2018 LTE power slopes (data/network/era2018/lte.yaml) from their public source.

Source: Narayanan et al., "A Variegated Look at 5G in the Wild", SIGCOMM 2021, Fig. 11; data in
https://github.com/SIGCOMM21-5G/artifact (commit 35aaf2857550c7f4c736fe9b01e894253a777e4e),
``Data-Transfer-Power/MN-Transfer/data-processed/MN-Transfer_combined.csv`` (Galaxy S20 Ultra,
Verizon LTE, Monsoon power monitor, iPerf at fixed target rates). That repository carries no
licence, so its data are not shipped here: pass the path of your own copy.

    python scripts/derive_radio_power.py MN-Transfer_combined.csv [RRC-Probe/data/S20US_162_Verizon_4G.csv ...]

Prints, per direction, the least-squares slope (mW per Mbit/s) of whole-device power on
throughput over every LTE row, and the highest per-target median uplink throughput
(the range the linear model was measured over).

Optional further arguments: RRC-Probe logs of the same repository (``RRC-Probe/data/*_4G.csv``, Fig. 10):
a probe packet is sent after an idle interval (0-19.9 s in 0.1 s steps); once the interval exceeds the
RRC inactivity timer, the radio has demoted to idle and the round trip pays the paging cycle and the
promotion, so the median RTT jumps. The LTE tail time is the first interval whose median RTT exceeds
twice the largest median RTT seen at intervals below 1 s (kept rows only).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def derive(path: str) -> dict[str, float]:
    d = pd.read_csv(path)
    lte = d[d["network type"] == "LTE"]
    out = {}
    for direction in ("uplink", "downlink"):
        rows = lte[lte["direction"] == direction]
        slope, intercept = np.polyfit(rows["throughput"], rows["avg_power"], 1)
        out[f"{direction}_mw_per_mbps"] = float(slope)
        out[f"{direction}_intercept_mw"] = float(intercept)
        out[f"{direction}_rows"] = int(len(rows))
    up = lte[lte["direction"] == "uplink"].groupby("target bandwidth")["throughput"].median()
    out["power_max_mbps"] = float(up.max())
    return out


def inactivity_timer_s(path: str) -> float:
    """The first probe interval (s) whose median RTT exceeds twice the largest median RTT below 1 s."""
    d = pd.read_csv(path)
    rtt = d[d["KeepOrDrop"] == "YEP"].groupby("interval")["RTT1"].median()
    connected = float(rtt[rtt.index < 1.0].max())
    return float(rtt.index[rtt > 2 * connected][0])


def measured_energy_per_mb(path: str) -> pd.DataFrame:
    """Per uplink target: median throughput, median whole-device power and whole-device J/MB (the source's own
    numbers, display and SoC included: an upper bound on the radio's share)."""
    d = pd.read_csv(path)
    up = d[(d["network type"] == "LTE") & (d["direction"] == "uplink")]
    g = up.groupby("target bandwidth").agg(mbps=("throughput", "median"), device_w=("avg_power", "median"))
    g["device_w"] /= 1e3
    g["device_j_per_mb"] = g["device_w"] * 8.0 / g["mbps"]
    return g.round(3)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for k, v in derive(sys.argv[1]).items():
        print(f"{k}: {v:.4g}")
    print(measured_energy_per_mb(sys.argv[1]).to_csv())
    for probe in sys.argv[2:]:
        print(f"tail (inactivity timer) of {probe}: {inactivity_timer_s(probe):.1f} s")
