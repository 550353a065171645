"""scripts/autoscale_reference.py: the non-anticipative reference averages the request's hidden draws, never reads
the realised one, and reports captured shares as the README's per-family table does."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from script_modules import load_script


def _script():
    return load_script("autoscale_reference")


class _FakeSim:
    """Two actions; action 0 meets QoS iff the sampled jitter is <= 1 (half the draws), action 1 always, dearer."""

    def __init__(self):
        self.seen_rows = None

    def draw(self, k, rng):
        return SimpleNamespace(jit=rng.permutation(np.r_[np.full(k // 2, 0.5), np.full(k - k // 2, 1.5)]))

    def evaluate(self, states, actions, draws, phases=True):
        assert actions is None and not phases
        self.seen_rows = states
        k = len(draws.jit)
        energy = np.column_stack([np.full(k, 100.0), np.full(k, 400.0)])
        ok = np.column_stack([draws.jit <= 1.0, np.ones(k, dtype=bool)])
        return SimpleNamespace(energy_mj=energy, qos_ok=ok)


class _Rows:
    def take(self, rows):
        return np.asarray(rows)


def test_expected_costs_average_the_hidden_draw_so_the_risky_cheap_action_loses_to_the_sure_one():
    """Action 0 costs 100 mJ and misses half the time (λ = 1000): expected 600 > 400 of the sure action 1. A policy
    with foresight of the draw would take action 0 on the lucky half; the reference takes the expectation."""
    ref = _script()
    sim = _FakeSim()
    exp = ref.expected_costs(sim, _Rows(), t=7, k=64, rng=np.random.default_rng(0), lam=1000.0)
    assert exp.tolist() == [600.0, 400.0]
    assert int(np.argmin(exp)) == 1
    assert sim.seen_rows.tolist() == [7] * 64  # every sample is the current request's own row (its carried state)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 1e3), st.floats(0, 1e3)), min_size=1, max_size=8))
def test_captured_is_one_at_the_end_zero_at_the_static_and_orders_schedules(pairs):
    ref = _script()
    for static_minus_end, gain in pairs:
        static, end = 1000.0, 1000.0 - static_minus_end
        assert ref.captured(static, end, end) == 1.0
        assert ref.captured(static, static, end) == 0.0
        assert ref.captured(static, static - gain, end) >= ref.captured(static, static - gain / 2, end)


def test_the_pooled_row_is_the_mean_over_seeds_then_the_share():
    ref = _script()
    df = pd.DataFrame({"seed": [1, 1, 2, 2], "autoscale": [10.0, 12.0, 20.0, 22.0], "reference": [10.0] * 4,
                       "best_found": [8.0] * 4, "best_static_dnn": [30.0] * 4, "distilled": [40.0] * 4})
    out = ref.summarise(df, pd.Series({1: 5.0, 2: 5.0}))
    assert out.loc[1, "autoscale"] == 11.0 and out.loc["pooled", "autoscale"] == 16.0
    assert np.isclose(out.loc["pooled", "autoscale_vs_lower"], (30.0 - 16.0) / (30.0 - 5.0))
    assert np.isclose(out.loc["pooled", "reference_vs_found"], (30.0 - 10.0) / (30.0 - 8.0))


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    ref = _script()
    assert ref.main(["--results", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("autoscale_reference:")
    assert ref.main(["--draws", "0"]) == 2
    assert ref.main(["--scenarios", "no_such_scenario", "--results", str(tmp_path)]) == 2
