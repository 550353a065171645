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
* the drop order is measured (unless a fixed ``order`` chosen on training scenarios is given;
  docs/autoscale.md, Round 8): from the current kept set, each
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

Everything here is numpy: a build sums over the visited states only (the dense
table's other rows are zeros), about a quarter of a CPU-second for the shipped grid;
the levels it returns are dense (state, action) arrays. The drop order
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


#: how a droppable feature's informativeness is measured (``AutoScaleConfig.backoff_rank``)
RANKS = ("changed_share", "value_lost")


def _value_lost(sums_p, cnt_p, g_parent, sums_c, cnt_c, g_child_of_parent, min_visits: int) -> np.ndarray:
    """Per parent state: the mean TD target lost by taking the merged table's greedy action instead of its own.

    The merged action's value is the parent's own sample average where it is seen there, else the merged
    table's (the pooled estimate the back-off would act on); clipped at 0 (a merged choice can look better than
    the parent's on a pooled estimate, which is no gain). 0 for a parent state without a seen entry.
    """
    rows = np.arange(len(g_parent))
    seen_p = cnt_p >= min_visits
    mean_p = sums_p / np.maximum(cnt_p, 1)
    own = mean_p[rows, g_parent]
    c = g_child_of_parent
    pooled = sums_c / np.maximum(cnt_c, 1)
    alt = np.where(seen_p[rows, c], mean_p[rows, c], pooled[rows, c])
    return np.where(seen_p.any(axis=-1), np.maximum(own - alt, 0.0), 0.0)


def build_levels(target_sum: np.ndarray, visits: np.ndarray, sizes: tuple[int, ...], names: tuple[str, ...],
                 protected: tuple[int, ...], min_visits: int, rank: str = "changed_share",
                 order: tuple[str, ...] = ()) -> list[Level]:
    """The back-off hierarchy, finest first (see the module docstring).

    ``rank``: the informativeness measure (:data:`RANKS`). ``changed_share``: the visit-weighted share of the
    kept table's states whose greedy action changes when the feature is merged away. ``value_lost``: the
    visit-weighted mean TD target (reward) lost by acting on the merged table's greedy action instead
    (:func:`_value_lost`): a rare bucket whose merged choice costs much counts for its cost, not only its share
    (docs/autoscale.md, Round 8).

    ``order``: feature names (as in ``names``) dropped first, in this order, whatever their informativeness (still
    measured and recorded); droppable features it does not name follow, least informative first. () = measured.

    ``target_sum`` / ``visits``: (n_states, A) sums of TD targets and sample counts of the full table,
    whose state id is the mixed radix over ``sizes`` (one per feature, named ``names``).

    Computed on the states that have samples only (speed, issue 25: the shipped table has ~2,400 visited
    states of 2.6 million, and the dense axis sums took ~7 s of CPU per build, once per training run and once
    per load). Every other row is zeros and adds nothing to a sum, a visit weight or a score, so each level
    holds the same numbers as the dense axis sums: a merged entry adds its states' values in the order of the
    merged feature's bucket, as numpy's sum over that axis does (tests/policies/test_autoscale_backoff.py
    compares both).
    """
    if rank not in RANKS:
        raise ValueError(f"back-off rank {rank!r}: allowed {list(RANKS)}")
    n_actions = visits.shape[1]
    # states with samples (a TD target sum without a visit cannot occur; checked anyway, it costs one pass)
    rows = np.flatnonzero(visits.any(axis=1) | (target_sum != 0).any(axis=1))
    coords = np.stack(np.unravel_index(rows, sizes), axis=1) if len(sizes) else np.zeros((len(rows), 0), np.intp)
    sums = target_sum[rows]
    cnt = visits[rows].astype(np.int64)
    kept = list(range(len(sizes)))  # columns of ``coords``, as feature positions
    # a feature with one bucket (no edges: ignored) merges nothing: it leaves first, without a level of its own
    # (one would repeat the full table); its coordinate is always 0, so dropping it changes no entry
    for p in [p for p in kept if p not in protected and sizes[p] == 1]:
        coords = np.delete(coords, kept.index(p), axis=1)
        kept.remove(p)
    droppable = [p for p in kept if p not in protected]
    levels: list[Level] = []
    while droppable:
        weight = cnt.sum(axis=-1)
        total = weight.sum()
        g_parent = _greedy(sums, cnt, min_visits)
        scores, merged = {}, {}
        for p in droppable:
            merged[p] = _merge(coords, kept.index(p), sizes[p], sums, cnt, tuple(sizes[k] for k in kept))
            inverse, s_child, c_child, _ = merged[p]
            g_child = _greedy(s_child, c_child, min_visits)[inverse]
            if rank == "value_lost":
                lost = _value_lost(sums, cnt, g_parent, s_child[inverse], c_child[inverse], g_child, min_visits)
                scores[p] = float((weight * lost).sum() / total) if total else 0.0
            else:
                changed = g_parent != g_child
                scores[p] = float((weight * changed).sum() / total) if total else 0.0
        # a fixed order first (chosen on training scenarios); then least informative first; ties: the feature
        # later in the layout (the runtime context's tail)
        fixed = [q for q in droppable if names[q] in order]
        p = (min(fixed, key=lambda q: order.index(names[q])) if fixed
             else min(droppable, key=lambda q: (scores[q], -q)))
        _, sums, cnt, coords = merged[p]
        kept.remove(p)
        droppable.remove(p)
        level_sizes = tuple(sizes[k] for k in kept)
        strides = _strides(level_sizes)
        ids = coords @ np.asarray(strides, dtype=np.int64) if len(strides) else np.zeros(len(coords), np.int64)
        n_states = int(np.prod(level_sizes, dtype=np.int64))
        dense_sums = np.zeros((n_states, n_actions), dtype=sums.dtype)
        dense_cnt = np.zeros((n_states, n_actions), dtype=np.int64)
        dense_sums[ids], dense_cnt[ids] = sums, cnt
        levels.append(Level(tuple(kept), names[p], scores[p], dense_sums, dense_cnt, strides, min_visits))
    return levels


def _merge(coords: np.ndarray, col: int, size: int, sums: np.ndarray, cnt: np.ndarray,
           col_sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge away column ``col`` (``size`` buckets) of the entries at ``coords``.

    Returns (each entry's merged entry, merged sums, merged counts, merged coords without ``col``). The merged
    sums add the entries bucket by bucket (0, 1, ...), the order of numpy's sum over that axis of the dense
    table, so the floats are the same.
    """
    rest = [c for c in range(coords.shape[1]) if c != col]
    radix = np.asarray(_strides(tuple(col_sizes[c] for c in rest)), dtype=np.int64)
    key = coords[:, rest] @ radix if rest else np.zeros(len(coords), np.int64)
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    s_child = np.zeros((len(uniq), sums.shape[1]), dtype=sums.dtype)
    c_child = np.zeros((len(uniq), cnt.shape[1]), dtype=np.int64)
    bucket = coords[:, col]
    for b in range(size):  # within one bucket each merged entry has at most one entry: no repeated index
        m = bucket == b
        s_child[inverse[m]] += sums[m]
        c_child[inverse[m]] += cnt[m]
    return inverse.reshape(-1), s_child, c_child, coords[first][:, rest]


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
