"""The report deduplicates a results column in C before iterating it (issue 25: speed); the policy order and the
learner a suite is for must not depend on whether a column or a plain list comes in."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pipeline import report
from bench.policies import REGISTRY

NAMES = st.sampled_from(sorted(REGISTRY)[:8] + ["dvfo", "autoscale", "zeta_custom", "alpha_custom", "nan"])


@settings(max_examples=40, deadline=None)
@given(st.lists(NAMES, max_size=30), st.sampled_from(["object", "string", "category"]))
def test_ordered_is_the_same_for_a_column_and_a_list(names, dtype):
    column = pd.Series(names, dtype=dtype)
    assert report.ordered(column) == report.ordered(list(names))
    assert report.ordered(column.to_numpy()) == report.ordered(list(names))


@settings(max_examples=30, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=30), st.sampled_from(["object", "string", "category"]))
def test_suite_learner_reads_the_distinct_policies(names, dtype):
    frame = pd.DataFrame({"policy": pd.Series(names, dtype=dtype)})
    learners = [p for p in report.learner_names() if p in set(names)]
    assert report.suite_learner(frame) == (learners[0] if learners else "autoscale")
