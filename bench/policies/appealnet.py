"""AppealNet (Li et al., DAC 2021, arXiv 2105.04104) on the DVFO env - one of DVFO's published baselines.

**Confirmed (paper).** A two-head edge network: one head classifies, the other
predicts whether the input is too hard for the edge model; hard inputs "appeal"
to the (larger) cloud model, the rest finish on the edge. No DVFS: the edge runs
at its default frequencies. Reported up to >40 % energy savings without accuracy
loss on image classification.

**Suite choices.**

* Which inputs appeal: the simulator has no per-input difficulty, so the appeal
  head is taken as *ideal*: it appeals exactly the inputs the edge model would
  misclassify. The appeal rate of a DNN is therefore its published top-1 error
  at xi = 0 (1 - accuracy, from the workload table with its source); which
  request appeals is a seeded Bernoulli draw with that rate. A DNN with no
  published accuracy never appeals (it behaves as ``edge_gpu_max``).
* Where: a non-appealed input runs everything on the edge at the highest
  frequencies (``edge_gpu_max``); an appealed one takes the largest offload
  share of DVFO's action space at the highest frequencies (the head still runs
  on the edge, as AppealNet's edge pass precedes the appeal; the rest of the
  edge pass is not charged - favourable to AppealNet).
* The appeal head's own compute is not charged (small next to the backbone).
"""

from __future__ import annotations

import numpy as np

from bench.policies.base import Policy, register
from bench.policies.baselines import WorkloadFromObs, _dvfo_top, edge_gpu_max_action, env_kind


class AppealNet(Policy):
    """Per request: appeal to the cloud with the DNN's edge error rate, else finish on the edge."""

    name = "appealnet"

    def __init__(self, env, seed: int):
        if env_kind(env) != "dvfo":
            raise ValueError("appealnet applies to the DVFO env only (it is one of DVFO's baselines)")
        u = env.unwrapped
        acts = u.action_table
        top = _dvfo_top(acts)
        self.edge_action = edge_gpu_max_action(env)
        self.appeal_action = int(top[acts.loc[top, "xi"].to_numpy().argmax()])
        acc = u.sim.tables.accuracy[:, self.edge_action]
        self.appeal_rate = np.where(np.isfinite(acc), 1.0 - np.nan_to_num(acc, nan=1.0), 0.0)
        self.seed = int(seed)
        self._workload = WorkloadFromObs(env)
        self.reset()

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def act(self, obs) -> int:
        w = self._workload(obs)
        return self.appeal_action if self.rng.random() < self.appeal_rate[w] else self.edge_action


@register("appealnet", order=120, colour="#bcbd22", marker="^", label="AppealNet")
def appealnet(env, seed: int | None = None, **_) -> AppealNet:
    if seed is None:
        raise ValueError("appealnet needs seed=<int> (which requests appeal is a seeded draw)")
    return AppealNet(env, seed)
