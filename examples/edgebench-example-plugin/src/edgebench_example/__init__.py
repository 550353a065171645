"""Example plugin for edge-inference-bench: a policy and a meter registered through entry points."""

__version__ = "0.1.0"
