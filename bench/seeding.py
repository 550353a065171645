"""One seed fans out to every generator: ``numpy.random.SeedSequence`` keyed by purpose.

``derive_seed(root, "train", "autoscale_phone")`` gives the same integer for the
same root and names on every machine and never the same stream for different
names, so training, evaluation and each run draw independent randomness from
the single ``seed`` in params.yaml.
"""

from __future__ import annotations

import zlib

import numpy as np


def _key(names: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(zlib.crc32(str(n).encode()) for n in names)  # stable across processes (unlike hash())


def seed_sequence(root: int, *names: str) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=int(root), spawn_key=_key(names))


def derive_seed(root: int, *names: str) -> int:
    """A 31-bit integer seed for the purpose ``names`` (fits every library's seed argument)."""
    return int(seed_sequence(root, *names).generate_state(1, dtype=np.uint32)[0] >> 1)


def derive_seeds(root: int, n: int, *names: str) -> list[int]:
    """``n`` distinct 31-bit seeds for the purpose ``names``.

    The first ``n`` words of the purpose's stream, halved to 31 bits; a value already
    taken (31-bit values collide for a few percent of lists of 10,000) is replaced by the
    stream's next unused word. ``generate_state`` is a prefix-stable stream, so a list
    without a collision is exactly what it always was (same params -> same bytes).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"derive_seeds: n={n} must be >= 0")
    ss = seed_sequence(root, *names)
    want = n
    while True:
        seeds: list[int] = []
        seen: set[int] = set()
        for word in ss.generate_state(want, dtype=np.uint32):
            s = int(word >> 1)
            if s not in seen:
                seen.add(s)
                seeds.append(s)
                if len(seeds) == n:
                    return seeds
        if n == 0:
            return seeds
        want = 2 * want + 16  # more of the same stream (its prefix is unchanged)
