"""``race_to_idle``: run every inference locally, as fast as the edge device can.

Race-to-idle is the classic DVFS heuristic (finish at the top frequency, then idle); it is
a useful extra baseline between "CPU only" and the learned schedulers. The factory gets the
gymnasium env and picks one constant action from its ``action_table``, so it does not depend
on the layout of the observation vector.
"""

from __future__ import annotations

from bench.policies import Policy


class RaceToIdle(Policy):
    """Always the same action: the fastest local one."""

    name = "race_to_idle"

    def __init__(self, action: int):
        self.action = int(action)

    def act(self, obs) -> int:
        return self.action


def _autoscale_action(env) -> int:
    table = env.unwrapped.action_table
    targets = env.unwrapped.system.edge.targets
    local = table[table["kind"] == "local"]
    # peak throughput of each local action: GFLOP/s = gflops_per_ghz x f (GHz)
    peak = [targets[t].gflops_per_ghz * f / 1e3 for t, f in zip(local["target"], local["freq_mhz"])]
    return int(local.index[max(range(len(peak)), key=peak.__getitem__)])


def _dvfo_action(env) -> int:
    table = env.unwrapped.action_table
    local = table[table["xi"] == 0.0]
    top = local.sort_values(["gpu_mhz", "cpu_mhz", "mem_mhz"], ascending=False)
    return int(top.index[0])


def race_to_idle(env, **_) -> RaceToIdle:
    """Factory (the entry point): ``make_policy("race_to_idle", env)``."""
    table = env.unwrapped.action_table
    return RaceToIdle(_dvfo_action(env) if "xi" in table.columns else _autoscale_action(env))
