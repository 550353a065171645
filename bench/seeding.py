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
    """``n`` distinct 31-bit seeds for the purpose ``names``."""
    state = seed_sequence(root, *names).generate_state(n, dtype=np.uint32)
    seeds = [int(s >> 1) for s in state]
    if len(set(seeds)) != n:  # astronomically unlikely; fail loudly rather than reuse a seed
        raise RuntimeError("seed collision; choose another root seed")
    return seeds
