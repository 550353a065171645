"""No single cell decides a verdict (issue 21): a difference between two policies, split by scenario.

Pure arithmetic on per-scenario metrics (no simulator), so the claims table and README can use it
without pulling the evaluation machinery in.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

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
