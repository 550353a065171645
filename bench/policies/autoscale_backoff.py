"""AutoScale's back-off: coarser Q-tables for states the full table never visited.

The full table indexes every bucketed feature; a request whose combination of
buckets never occurred in training has no estimates there. Instead of a row that
ignores the runtime context (the per-DNN pooled row), the learner backs off
through a hierarchy of coarser tables, all learned from the same samples:

* a coarser table merges the states that differ only in the dropped features;
  its entry is the sample average of the TD targets of the merged (state, action)
  pairs (``target_sum / visits`` summed over the merged states) - exactly the
  table a sample-average learner over the coarser state would learn from the
  same samples;
* the drop order is measured, not chosen: from the current kept set, each
  droppable feature's *informativeness* is the visit-weighted share of the
  kept table's states whose greedy action changes when that feature is merged
  away; the least informative goes first (ties: the later feature in the state
  layout), and so on until only the protected features are left;
* protected features are never dropped: the DNN's (a Q-value is meaningless
  without knowing the network) and the radio signals (offloading is decided by
  them). The coarsest table is therefore DNN x Wi-Fi x LTE;
* at decision time a state the full table never visited reads the finest
  coarser table that saw it (it decides among the actions tried there); if even
  the coarsest table has none for that (DNN, signal) cell, the nearest signal
  cell of the same DNN that has one (distance in buckets, weaker signal first on
  ties) - the last rung still reads signal. A visited state keeps to its own
  samples (filling its untried actions from coarser tables was measured worse). A DNN never seen in training has no estimates at any
  level (the full table's initial row decides, as without back-off).

Everything here is numpy on the dense (state, action) arrays: one build is a few
axis sums over the table (tenths of a second for the shipped grid). The drop order
is measured when the hierarchy is built (after training, on load); an update after
that adds its sample to every level (the order stays until :meth:`rebuild`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

#: level label of an action value read from the nearest signal cell of the coarsest table
NEIGHBOUR = "signal_neighbour"


@dataclass(frozen=True)
class Level:
    """One coarser table: the features it keeps (positions in the state layout) and its statistics.

    It keeps the sums of TD targets and the sample counts (not the averages), so an update after the
    build adds to them (:meth:`add`) and the level stays the sample-average table of every sample seen.
    """

    kept: tuple[int, ...]
    dropped: str  # the feature this level merged away (relative to the previous, finer one)
    informativeness: float  # visit-weighted share of greedy actions that changed when it was dropped
    sums: np.ndarray  # (n_level_states, A) sums of TD targets
    counts: np.ndarray  # (n_level_states, A) samples
    strides: tuple[int, ...]  # mixed-radix strides of the kept features
    min_visits: int

    def state_id(self, buckets: list[int]) -> int:
        return sum(buckets[p] * st for p, st in zip(self.kept, self.strides))

    def row(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """(sample averages, seen mask) of level state ``j``."""
        c = self.counts[j]
        seen = c >= self.min_visits
        return np.where(seen, self.sums[j] / np.maximum(c, 1), 0.0), seen

    def add(self, buckets: list[int], action: int, target: float) -> None:
        j = self.state_id(buckets)
        self.sums[j, action] += target
        self.counts[j, action] += 1


def _strides(sizes: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(sizes):
        out.append(acc)
        acc *= n
    return tuple(reversed(out))


def _greedy(sums: np.ndarray, visits: np.ndarray, min_visits: int) -> np.ndarray:
    """Greedy action per state over the actions with estimates (argmax of the sample averages)."""
    seen = visits >= min_visits
    means = np.where(seen, sums / np.maximum(visits, 1), -np.inf)
    return means.argmax(axis=-1)


def build_levels(target_sum: np.ndarray, visits: np.ndarray, sizes: tuple[int, ...], names: tuple[str, ...],
                 protected: tuple[int, ...], min_visits: int) -> list[Level]:
    """The back-off hierarchy, finest first (see the module docstring).

    ``target_sum`` / ``visits``: (n_states, A) sums of TD targets and sample counts of the full table,
    whose state id is the mixed radix over ``sizes`` (one per feature, named ``names``).
    """
    n_actions = visits.shape[1]
    shape = (*sizes, n_actions)
    sums = target_sum.reshape(shape)
    cnt = visits.reshape(shape).astype(np.int64)
    kept = list(range(len(sizes)))  # axes of the current (kept) arrays, as feature positions
    # a feature with one bucket (no edges: ignored) merges nothing: it leaves first, without a level of its own
    # (one would repeat the full table)
    for p in [p for p in kept if p not in protected and sizes[p] == 1]:
        ax = kept.index(p)
        cnt, sums = cnt.sum(axis=ax), sums.sum(axis=ax)
        kept.remove(p)
    droppable = [p for p in kept if p not in protected]
    levels: list[Level] = []
    while droppable:
        weight = cnt.sum(axis=-1)
        total = weight.sum()
        g_parent = _greedy(sums, cnt, min_visits)
        scores = {}
        for p in droppable:
            ax = kept.index(p)
            c_child, s_child = cnt.sum(axis=ax, keepdims=True), sums.sum(axis=ax, keepdims=True)
            changed = g_parent != _greedy(s_child, c_child, min_visits)  # broadcast over the merged axis
            scores[p] = float((weight * changed).sum() / total) if total else 0.0
        # least informative first; ties: the feature later in the layout (the runtime context's tail)
        p = min(droppable, key=lambda q: (scores[q], -q))
        ax = kept.index(p)
        cnt, sums = cnt.sum(axis=ax), sums.sum(axis=ax)
        kept.remove(p)
        droppable.remove(p)
        levels.append(Level(tuple(kept), names[p], scores[p], sums.reshape(-1, n_actions).copy(),
                            cnt.reshape(-1, n_actions).copy(), _strides(tuple(sizes[k] for k in kept)), min_visits))
    return levels


def neighbour_cells(buckets: list[int], level: Level, sizes: tuple[int, ...], signal: tuple[int, ...]):
    """State ids of ``level`` for the same non-signal buckets and other signal buckets, nearest first.

    Distance is the sum of bucket steps over the signal features; ties go to the weaker signal (lower
    buckets), the pessimistic side for an offload decision.
    """
    ranges = [range(sizes[p]) for p in signal]
    cells = []
    for combo in product(*ranges):
        dist = sum(abs(c - buckets[p]) for c, p in zip(combo, signal))
        if dist == 0:
            continue
        b = list(buckets)
        for c, p in zip(combo, signal):
            b[p] = c
        cells.append((dist, sum(combo), level.state_id(b)))
    return [sid for _, _, sid in sorted(cells)]
