"""AutoScale's sample-efficiency options: optimistic initialisation and per-DNN sharing."""

from __future__ import annotations

import numpy as np

from bench.policies.autoscale import AutoScaleConfig, AutoScaleLearner

try:  # named observation fields (when the env names them)
    from bench.sim.envs import AUTOSCALE_OBS_FIELDS as FIELDS
except ImportError:
    FIELDS = ("n_conv", "n_fc", "n_recurrent", "n_attention", "log10_flops", "cpu_load", "mem_load", "wifi_dbm",
              "lte_dbm", "qos_ms", "max_accuracy_loss")

ACTIONS = ["cpu", "gpu", "cloud"]


def _obs(**values) -> np.ndarray:
    base = dict(n_conv=50, n_fc=1, n_recurrent=0, n_attention=0, log10_flops=9.0, cpu_load=0.0, mem_load=0.0,
                gpu_load=0.0, wifi_dbm=-50, lte_dbm=-80, qos_ms=100, max_accuracy_loss=0.02, local_busy_ms=0.0,
                radio_busy_ms=0.0, cpu_busy_ms=0.0, gpu_busy_ms=0.0, dsp_busy_ms=0.0)
    base.update(values)
    return np.array([base[f] for f in FIELDS], dtype=np.float32)


DNN_A_QUIET = _obs()
DNN_A_BUSY = _obs(cpu_load=0.9, mem_load=0.9, wifi_dbm=-86, lte_dbm=-115)
DNN_B_BUSY = _obs(n_conv=0, n_fc=2, n_recurrent=2, log10_flops=7.0, cpu_load=0.9, mem_load=0.9, wifi_dbm=-86,
                  lte_dbm=-115)


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


def test_training_with_sharing_is_reproducible_and_fills_the_pooled_table():
    from bench.policies.autoscale import train

    cfg = AutoScaleConfig(scenarios=("random_walk",), total_steps=600, episode_steps=200, share_dnn=True,
                          optimistic_init=100.0, epsilon_decay_steps=300)
    a, b = train(cfg).learner, train(cfg).learner
    assert np.array_equal(a.q, b.q) and np.array_equal(a.q_dnn, b.q_dnn)
    assert a.visits_dnn.sum() == a.visits.sum() == 600  # every sample also lands in the pooled table
