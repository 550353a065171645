"""The edge-cloud simulator: vectorised core (:mod:`.core`), table builders
(:mod:`.system`) and the gymnasium environments (:mod:`.envs`).

Importing this package registers ``bench/AutoScale-v0`` and ``bench/DVFO-v0``.
"""

from bench.sim.core import ActionTables, Draws, Outcome, Route, Simulator, States, best_actions
from bench.sim.envs import AUTOSCALE_ID, DVFO_ID, AutoScaleEnv, DVFOEnv, register_envs
from bench.sim.system import System, autoscale_system, dvfo_system, load_accuracy_curve

register_envs()

__all__ = ["ActionTables", "Draws", "Outcome", "Route", "Simulator", "States", "best_actions", "AUTOSCALE_ID",
           "DVFO_ID", "AutoScaleEnv", "DVFOEnv", "register_envs", "System", "autoscale_system", "dvfo_system",
           "load_accuracy_curve"]
