import numpy as np
import pandas as pd
import pytest

from bench.sim.system import autoscale_system, dvfo_system


@pytest.fixture(scope="session")
def placeholder_curve():
    """In-test placeholder accuracy-vs-xi curve (the shipped one is measured elsewhere)."""
    xi = np.linspace(0, 1, 6)
    loss = 0.03 * xi**2
    return pd.DataFrame({"xi": xi, "accuracy": 0.95 - loss, "accuracy_loss": loss})


@pytest.fixture(scope="session")
def autoscale():
    return autoscale_system(max_levels_per_target=6)


@pytest.fixture(scope="session")
def dvfo(placeholder_curve):
    return dvfo_system(accuracy_curve=placeholder_curve, n_cpu_levels=3, n_gpu_levels=3, n_mem_levels=2, xi_levels=6)
