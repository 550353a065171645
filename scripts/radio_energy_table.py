"""Energy per megabyte of the shipped radio profiles at a few uplink rates (issue 22's closing-note table).

    python scripts/radio_energy_table.py [RATE_MBPS ...]      (default 1 5 20)

Strong signal (no weak-signal transmit-power extra), connected radio (no promotion, no tail), the
power model saturating above each profile's measured range (``power_max_mbps``).
"""

from __future__ import annotations

import sys

from bench.world.network import energy_per_mb_j, list_links, list_radio_profiles, load_link


def table(rates: list[float]) -> list[dict]:
    rows = []
    for profile in list_radio_profiles():
        for radio in list_links(profile=profile):
            link = load_link(radio, profile=profile)
            for r in rates:
                rows.append({"profile": profile, "radio": radio, "uplink_mbps": r,
                             "power_w": round(float(link.uplink_power_w(r, link.level_dbm("strong"))), 3),
                             "energy_j_per_mb": round(energy_per_mb_j(link, r), 3)})
    return rows


if __name__ == "__main__":
    rates = [float(a) for a in sys.argv[1:]] or [1.0, 5.0, 20.0]
    print("profile,radio,uplink_mbps,power_w,energy_j_per_mb")
    for row in table(rates):
        print(",".join(str(v) for v in row.values()))
