"""AutoScale's sample-efficiency options: optimistic initialisation and per-DNN sharing."""

from __future__ import annotations

import numpy as np

from bench.policies.autoscale import AutoScaleConfig, AutoScaleLearner

ACTIONS = ["cpu", "gpu", "cloud"]
# obs: conv, fc, recurrent, attention, log10 FLOPs, cpu load, mem load, wifi dBm, lte dBm, qos ms, acc bound
DNN_A_QUIET = np.array([50, 1, 0, 0, 9.0, 0.0, 0.0, -50, -80, 100, 0.02], dtype=np.float32)
DNN_A_BUSY = np.array([50, 1, 0, 0, 9.0, 0.9, 0.9, -86, -115, 100, 0.02], dtype=np.float32)
DNN_B_BUSY = np.array([0, 2, 2, 0, 7.0, 0.9, 0.9, -86, -115, 100, 0.02], dtype=np.float32)


def _learner(**kw) -> AutoScaleLearner:
    return AutoScaleLearner(AutoScaleConfig(scenarios=("random_walk",), **kw), ACTIONS)


def test_optimistic_init_makes_greedy_try_every_untried_action():
    learner = _learner(optimistic_init=1e4)
    s = learner.bins.state_id(DNN_A_QUIET)
    tried = []
    assert learner.act(DNN_A_QUIET) == 0  # evaluation with nothing known: the plain table's choice
    for _ in range(len(ACTIONS)):
        a = int(learner.row(s, training=True).argmax())
        tried.append(a)
        learner.update_ids(s, a, reward=5.0 + a, s_next=s, terminated=False)
    assert sorted(tried) == [0, 1, 2]
    assert learner.act(DNN_A_QUIET) == 2  # then the best sample wins: the optimism is gone after one visit
    assert np.allclose(learner.q[s], [5.0, 6.0, 7.0])


def test_greedy_evaluation_never_picks_an_action_it_has_no_estimate_for():
    learner = _learner(optimistic_init=1e4)
    s = learner.bins.state_id(DNN_A_QUIET)
    learner.update_ids(s, 1, reward=-3.0, s_next=s, terminated=False)
    assert learner.act(DNN_A_QUIET) == 1
    assert int(learner.row(s, training=True).argmax()) == 0  # while training, the untried ones come first


def test_zero_init_without_sharing_keeps_the_table_as_it_was():
    learner = _learner()
    assert not learner.q.any() and learner.q_dnn is None
    s = learner.bins.state_id(DNN_A_QUIET)
    learner.update_ids(s, 2, reward=3.0, s_next=s, terminated=False)
    assert learner.q[s, 2] == 3.0 and learner.act(DNN_A_BUSY) == 0  # an unseen state knows nothing


def test_per_dnn_sharing_lets_an_unseen_context_start_from_the_dnns_experience():
    learner = _learner(share_dnn=True)
    quiet, busy = learner.bins.state_id(DNN_A_QUIET), learner.bins.state_id(DNN_A_BUSY)
    assert quiet != busy and quiet // learner._n_runtime == busy // learner._n_runtime
    for a, r in ((0, 1.0), (1, 2.0), (2, 9.0)):
        learner.update_ids(quiet, a, reward=r, s_next=quiet, terminated=False)
    assert learner.act(DNN_A_BUSY) == 2  # pooled over DNN A's contexts
    assert learner.act(DNN_B_BUSY) == 0  # another DNN shares nothing
    # once the context has its own samples, they decide
    for a, r in ((0, 8.0), (1, 1.0), (2, -5.0)):
        learner.update_ids(busy, a, reward=r, s_next=busy, terminated=False)
    assert learner.act(DNN_A_BUSY) == 0


def test_sharing_survives_save_and_load(tmp_path):
    learner = _learner(share_dnn=True, optimistic_init=50.0)
    s = learner.bins.state_id(DNN_A_QUIET)
    learner.update_ids(s, 1, reward=80.0, s_next=s, terminated=False)
    loaded = AutoScaleLearner.load(learner.save(tmp_path / "as"))
    assert np.array_equal(loaded.q_dnn, learner.q_dnn) and np.array_equal(loaded.visits_dnn, learner.visits_dnn)
    assert loaded.act(DNN_A_BUSY) == learner.act(DNN_A_BUSY) == 1
