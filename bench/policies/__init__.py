"""Schedulers: the learned ones (AutoScale, DVFO) and everything they are compared to.

Importing this package registers every policy in :data:`REGISTRY`.
"""

from bench.policies.base import (LEARNERS, REGISTRY, Learner, LearnerSpec, Policy, Transition, make_policy,
                                 register)

__all__ = ["REGISTRY", "LEARNERS", "Learner", "LearnerSpec", "Policy", "Transition", "make_policy", "register"]
from bench.policies import dvfo  # noqa: F401  (registers)
from bench.policies import autoscale, baselines, oracle  # noqa: E402,F401  (registers)
from bench.policies import appealnet, bound, distilled, drldo, neurosurgeon, static  # noqa: E402,F401  (registers)
