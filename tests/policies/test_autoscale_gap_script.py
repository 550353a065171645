"""scripts/autoscale_gap.py: the gap ladder's per-state rung picks each state's least mean one-step cost."""


import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from script_modules import load_script


def _script():
    return load_script("autoscale_gap")


def test_state_best_is_the_least_mean_cost_per_state_and_pick_reads_it():
    gap = _script()
    names = ["a", "b"]
    ref = pd.DataFrame({"state": [0, 0, 1, 1], "c:a": [1.0, 3.0, 5.0, 5.0], "c:b": [2.5, 2.0, 1.0, 9.0]})
    best = gap.state_best(ref, names)
    assert best.to_dict() == {0: "a", 1: "a"}  # state 0: a 2.0 < b 2.25; state 1: a 5.0 = b 5.0 -> the first
    df = pd.DataFrame({"state": [0, 1, 7], "one_step_cost": [9.0, 9.0, 4.0], "c:a": [1.0, 6.0, 0.5],
                       "c:b": [2.0, 1.0, 0.1]})
    # a state the reference never saw keeps the policy's own cost
    assert gap._pick(df, best).tolist() == [1.0, 6.0, 4.0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 1e4), st.floats(0, 1e4)), min_size=1, max_size=40))
def test_the_state_best_rung_never_costs_more_than_the_policy_on_its_own_data(rows):
    """On the data it was chosen from, the per-state argmin is at most any fixed-per-state choice (the
    ladder's second and third rungs never lie above a policy that decides by state)."""
    gap = _script()
    df = pd.DataFrame(rows, columns=["state", "c:a", "c:b"])
    own = np.where(df["state"] % 2 == 0, df["c:a"], df["c:b"])  # a policy that decides by state
    df["one_step_cost"] = own
    assert gap._pick(df, gap.state_best(df, ["a", "b"])).mean() <= own.mean() + 1e-9 * max(1.0, own.mean())


@settings(max_examples=10, deadline=None)
@given(st.text(alphabet="abcxyz_-", min_size=1, max_size=12))
def test_a_missing_artefact_is_one_line_and_exit_2(tmp_path_factory, name):
    gap = _script()
    missing = tmp_path_factory.mktemp("gap") / name
    assert gap.main([str(missing)]) == 2
