"""Schedulers: the learned ones (AutoScale, DVFO) and everything they are compared to.

Importing this package registers every policy in :data:`REGISTRY`.
"""

from bench.policies.base import (LEARNERS, REGISTRY, Learner, LearnerSpec, Policy, PolicyInfo, Transition, make_policy,
                                 live_excluded, policy_info, privileged_policies, register)

__all__ = ["REGISTRY", "LEARNERS", "Learner", "LearnerSpec", "Policy", "PolicyInfo", "Transition", "make_policy",
           "live_excluded", "policy_info", "privileged_policies", "register"]
from bench.policies import dvfo  # noqa: F401  (registers)
from bench.policies import autoscale, baselines, oracle  # noqa: E402,F401  (registers)
from bench.policies import appealnet, bound, distilled, drldo, neurosurgeon, static  # noqa: E402,F401  (registers)
