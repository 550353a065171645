"""Energy-efficient edge-cloud DNN inference benchmark suite (see README.md).

``import bench`` has no side effects and loads nothing heavy (no gymnasium, torch or
pandas; ``tests/test_imports.py`` checks it). The gymnasium environments
``bench/AutoScale-v0`` and ``bench/DVFO-v0`` register when :mod:`bench.sim` is imported,
so ``gym.make("bench.sim:bench/AutoScale-v0")`` works without a prior import.
"""

__version__ = "0.1.0"
