"""Energy-efficient edge-cloud DNN inference benchmark suite (see README.md)."""

__version__ = "0.1.0"
