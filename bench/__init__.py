"""Energy-efficient edge-cloud DNN inference benchmark suite (see README.md).

Importing ``bench`` registers the gymnasium environments ``bench/AutoScale-v0``
and ``bench/DVFO-v0``.
"""

__version__ = "0.1.0"

from bench.sim import envs as _envs  # noqa: E402,F401  (registers the environments)
