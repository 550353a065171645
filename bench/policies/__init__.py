"""Schedulers: the learned ones (AutoScale, DVFO) and everything they are compared to.

Importing this package registers every policy in :data:`REGISTRY`.
"""

from bench.policies.base import (LEARNERS, REGISTRY, Learner, LearnerSpec, Policy, PolicyInfo, Transition, make_policy,
                                 live_excluded, policy_info, privileged_policies, register)

__all__ = ["REGISTRY", "LEARNERS", "Learner", "LearnerSpec", "Policy", "PolicyInfo", "Transition", "make_policy",
           "live_excluded", "policy_info", "privileged_policies", "register"]


# registered first, as when bench.policies.dvfo registered it (the registry's order); not live: its action set is a
# Jetson's GPU and memory clocks, which the testbed's host does not have
@register("dvfo", order=20, colour="#9c27b0", marker="o", live=False)
def dvfo_policy(env, path=None, **config) -> Learner:
    """DVFO's registry factory: an untrained learner from ``DVFOConfig`` fields, or a saved one via ``path=``
    (:func:`bench.policies.dvfo.make_dvfo`).

    Registered here and importing :mod:`bench.policies.dvfo` only when called (issue 25): that module imports
    torch, 2-4 CPU-s in every ``python -m bench`` command and stage that imports this package (all of them) and
    builds no DVFO learner. Params validation reads ``DVFOConfig`` from :mod:`bench.policies.dvfo_config`."""
    from bench.policies.dvfo import make_dvfo

    return make_dvfo(env, path=path, **config)


from bench.policies import autoscale, baselines, oracle  # noqa: E402,F401  (registers)
from bench.policies import appealnet, bound, distilled, drldo, neurosurgeon, static  # noqa: E402,F401  (registers)
