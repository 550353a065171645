"""No single cell decides a verdict (issue 21): a difference between two policies, split by scenario; and the
room for learning read from both ends of the bound's bracket.

Pure arithmetic on per-scenario metrics and the yardstick's numbers (no simulator), so the claims table,
the report and README can use it without pulling the evaluation machinery in
(:mod:`bench.pipeline.yardstick` re-exports it).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

DOMINANT_SHARE = 0.5  # "one scenario supplies more than half of a difference" (issue 21)


def breakdown(by_scenario: Mapping[str, Mapping[str, Any]], a: str, b: str, key: str = "energy_mj",
              share: float = DOMINANT_SHARE) -> dict[str, Any] | None:
    """The pooled per-inference difference ``mean_a - mean_b`` split by scenario (from per-scenario
    metrics: each policy's ``key`` mean and ``n_requests``), the scenario supplying the largest part of it,
    and, when that part exceeds ``share`` of the difference, the relative difference ``mean_a / mean_b - 1``
    without that scenario. None when a scenario lacks either policy."""
    contrib, na, sa, sb = {}, 0, {}, {}
    for sc, m in sorted(by_scenario.items()):
        if a not in m or b not in m:
            continue
        va, vb = m[a].get(key), m[b].get(key)
        va = va.get("mean") if isinstance(va, Mapping) else va
        vb = vb.get("mean") if isinstance(vb, Mapping) else vb
        n = m[a].get("n_requests") or 0
        if va is None or vb is None or not n:
            continue
        sa[sc], sb[sc] = float(va) * n, float(vb) * n
        contrib[sc] = sa[sc] - sb[sc]
        na += n
    if not contrib:
        return None
    total = sum(contrib.values())
    top = max(contrib, key=lambda s: (abs(contrib[s]), s))
    frac = contrib[top] / total if total else float("inf")
    rel = lambda keep: (sum(sa[s] for s in keep) / sum(sb[s] for s in keep) - 1) if keep else float("nan")  # noqa: E731
    out = {"difference_per_inference": total / na, "relative": rel(list(contrib)),
           "by_scenario": {s: v / na for s, v in contrib.items()}, "top_scenario": top, "top_share": frac,
           "dominated": bool(len(contrib) > 1 and (not np.isfinite(frac) or abs(frac) > share))}
    if out["dominated"]:
        out["relative_without_top"] = rel([s for s in contrib if s != top])
    return out


#: the room flag's values (:func:`room_flag`); ``None`` = unknown (the suite did not evaluate the static reference)
ROOM, NO_ROOM, UNDETERMINED = "room", "none", "undetermined"


def room_flag(headroom_bound: float, headroom_found: float, threshold: float) -> str | None:
    """Whether a scenario leaves room for learning, read from both ends of the bracket.

    ``headroom_found = 1 - J_best_found / J_static`` is a gain a real schedule achieves; ``headroom_bound =
    1 - J_bound / J_static`` is an upper estimate (the bound is a relaxation), so ``found <= bound``:

    * "room": a real schedule gains at least ``threshold`` over the best static per DNN;
    * "none" (no room for learning): even the relaxation gains less than ``threshold``;
    * "undetermined": the bracket straddles the threshold (the lower end is too loose to tell);
    * ``None``: unknown (no static reference evaluated).
    """
    if headroom_bound is None or not np.isfinite(headroom_bound):
        return None
    if headroom_found is not None and np.isfinite(headroom_found) and headroom_found >= threshold:
        return ROOM
    return NO_ROOM if headroom_bound < threshold else UNDETERMINED


def is_ranked(room) -> bool:
    """A scenario learners are ranked on: every one not marked "no room for learning" (flags written before
    the two-ended flag were booleans: True = headroom from the bound above the threshold)."""
    return room is True or room in (ROOM, UNDETERMINED)


def no_room(room) -> bool:
    """A scenario marked "no room for learning" (the two-ended flag's "none", or the older boolean False)."""
    return room is False or room == NO_ROOM


def bracket_gap(found: float, bound: float) -> float:
    """``(found - bound) / found``: the share of the best schedule found that the certified bound leaves
    unexplained (0 = the bracket is closed; NaN without a positive best found)."""
    return (found - bound) / found if np.isfinite(found) and found > 0 else float("nan")


def headroom_report(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """Per suite and scenario, from each suite's ``yardstick`` (metrics as :func:`bench.pipeline.evaluate.load_metrics`
    returns them): both ends of the bracket, the bracket gap, the headroom from each end and the room flag (the
    report's table; README renders the same rows, :func:`bench.pipeline.readme.headroom_section`)."""
    cols = ["suite", "scenario", "j_bound_mj", "j_best_found_mj", "bracket_gap", "j_best_static_dnn_mj",
            "j_distilled_mj", "headroom", "headroom_found", "room"]
    rows = []
    for suite, s in metrics.items():
        yard = s.get("yardstick") if isinstance(s, Mapping) else None
        for r in (yard or {}).get("headroom", []):
            row = {"suite": suite, **{k: r.get(k) for k in cols[1:]}}
            if isinstance(row["room"], bool):  # a yardstick.json of before the two-ended flag
                row["room"] = room_flag(r.get("headroom"), r.get("headroom_found"), yard.get("threshold", 0.05))
            if row["bracket_gap"] is None and r.get("j_best_found_mj") is not None and r.get("j_bound_mj") is not None:
                row["bracket_gap"] = bracket_gap(r["j_best_found_mj"], r["j_bound_mj"])
            rows.append(row)
    return pd.DataFrame(rows, columns=cols).rename(columns={"headroom": "headroom_from_bound"})
