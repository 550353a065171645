"""The suite's one objective: episode device energy plus a price per missed deadline.

Declared once in params.yaml (``objective.violation_cost_mj``, λ; docs/bound.md) and computed here, so
the headline metric, the hindsight bound (:mod:`bench.policies.bound`), the baselines' choice rules and
the learners' reward shaping read the same thing:

* **Lagrangian**: ``J = sum_i E_i + λ · V`` with ``E_i`` the device energy above idle of request ``i``
  (radio promotion and tail included, what every results table calls ``energy_mj``) and ``V`` the number
  of requests that miss their latency target or accuracy bound (``qos_ok`` false);
* **QoS-first**: least ``sum_i E_i`` among schedules that meet every deadline that can be met at all
  (the lexicographic limit λ -> inf, restricted to feasible requests).

A reward derived from it is ``-(E + λ·miss) / scale`` with a per-request positive ``scale``: a
per-request rescaling keeps each request's argmin (a contextual bandit learns the same choice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Objective:
    """λ (mJ per missed deadline) and the two variants' costs."""

    violation_cost_mj: float

    def __post_init__(self):
        lam = float(self.violation_cost_mj)
        if not np.isfinite(lam) or lam < 0:
            raise ValueError(f"objective.violation_cost_mj: {self.violation_cost_mj!r}; allowed: a finite number >= 0")
        object.__setattr__(self, "violation_cost_mj", lam)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> "Objective":
        """From params.yaml's ``objective`` section (already validated by :mod:`bench.config`)."""
        if not isinstance(m, Mapping) or "violation_cost_mj" not in m:
            raise ValueError(f"objective: {m!r}; allowed: a mapping with violation_cost_mj (mJ per missed deadline)")
        return cls(float(m["violation_cost_mj"]))

    def cost(self, energy_mj, qos_ok):
        """Per-request Lagrangian cost ``E + λ·miss`` (arrays or scalars)."""
        ok = np.asarray(qos_ok, dtype=bool)
        return np.asarray(energy_mj, dtype=float) + self.violation_cost_mj * (~ok)

    def episode_cost(self, energy_mj, qos_ok) -> float:
        """``sum E + λ·V`` over an episode."""
        return float(np.sum(self.cost(energy_mj, qos_ok)))

    def reward(self, energy_mj, qos_ok, scale_mj=1.0):
        """A learner's reward derived from the objective: ``-(E + λ·miss) / scale`` (scale > 0 per request)."""
        return -self.cost(energy_mj, qos_ok) / np.asarray(scale_mj, dtype=float)
