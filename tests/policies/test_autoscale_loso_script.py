"""scripts/autoscale_loso.py: the leave-one-scenario-out protocol that chooses AutoScale's back-off drop order."""

import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.paths import REPO_ROOT
from script_modules import load_script
from bench.policies.autoscale import AutoScaleConfig


def _script():
    return load_script("autoscale_loso")


def test_candidates_are_the_measures_and_every_order_of_the_features_with_edges():
    loso = _script()
    config = AutoScaleConfig(scenarios=("random_walk",), backoff=True)
    orders = loso.all_orders(config)
    assert len(orders) == len(set(orders)) == 24  # cpu, mem, gpu load and qos have edges; radio_busy_ms none
    assert loso._candidate(config, orders[0]).backoff_order == ("cpu_load", "mem_load", "gpu_load", "qos_ms")
    assert loso._candidate(config, "value_lost").backoff_rank == "value_lost"


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2), st.floats(-5, 5), st.integers(0, 1)),
                min_size=1, max_size=30))
def test_a_fold_holds_exactly_the_other_scenarios_samples_as_sample_averages(samples):
    """The fold's full table is the sample average of the kept samples, and nothing of the left-out scenario."""
    loso = _script()
    config = AutoScaleConfig(scenarios=("random_walk",), backoff=True)
    state, action, target, scen = (np.asarray(x) for x in zip(*samples))
    data = {"state": state.astype(np.int64), "action": action.astype(np.int64), "target": target.astype(float),
            "scenario": scen}
    keep = scen != 0
    learner = loso.fold_learner(config, ["cpu", "gpu", "cloud"], data, keep, "changed_share")
    for s in range(3):
        for a in range(3):
            m = keep & (state == s) & (action == a)
            assert learner.visits[s, a] == m.sum()
            if m.any():
                assert np.isclose(learner.q[s, a], target[m].mean(), atol=1e-9)


def test_a_missing_training_directory_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "autoscale_loso.py"), "log", str(tmp_path),
                          "--out", str(tmp_path / "s.npz")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.returncode == 2 and "train.json" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_the_measured_and_coverage_candidates_change_only_their_own_setting():
    """``measured`` is round 8's incumbent (no fixed order) even when the artefact's config names one; ``coverage``
    keeps the config's ranking and order (docs/autoscale.md, Round 10)."""
    from dataclasses import replace

    loso = _script()
    shipped = AutoScaleConfig(scenarios=("random_walk",), backoff=True,
                              backoff_order=("cpu_load", "gpu_load", "mem_load", "qos_ms"))
    assert loso._candidate(shipped, "measured") == replace(shipped, backoff_order=())
    assert loso._candidate(shipped, "coverage") == replace(shipped, backoff_coverage=True)
    assert loso._candidate(shipped, "changed_share") == shipped
