"""The learner digest the train stage stores beside a learner's files (bench/pipeline/robustness.py,
``write_learner_digest``) is read back only while those files keep the bytes it was computed from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.pipeline import robustness as R
from bench.policies import autoscale, dvfo


def _dvfo(tmp_path: Path) -> Path:
    learner = dvfo.DVFOLearner(dvfo.DVFOConfig(hidden_sizes=(4,), buffer_size=1000, batch_size=8, learning_starts=8),
                               obs_dim=18, n_actions=6)
    return learner.save(tmp_path / "dvfo")


def test_the_stored_digest_is_the_computed_one_and_is_read_back(tmp_path, monkeypatch):
    art = _dvfo(tmp_path)
    assert R.write_learner_digest(art) == dvfo.policy_digest(art) == R.learner_digest(art)
    record = json.loads((art / R.DIGEST_FILE).read_text())
    assert set(record["files"]) == {dvfo.CONFIG_FILE, dvfo.WEIGHTS_FILE}
    # read back without recomputing: a stored value is what is returned while the files are unchanged
    record["digest"] = "0123456789abcdef"
    (art / R.DIGEST_FILE).write_text(json.dumps(record))
    assert R.learner_digest(art) == "0123456789abcdef"


def test_a_changed_file_makes_the_stored_digest_ignored(tmp_path):
    from safetensors.torch import load_file, save_file

    art = _dvfo(tmp_path)
    R.write_learner_digest(art)
    tensors = load_file(str(art / dvfo.WEIGHTS_FILE))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, str(art / dvfo.WEIGHTS_FILE), metadata={"format": "bench.dvfo/1"})
    fresh = dvfo.policy_digest(art)
    assert R.learner_digest(art) == fresh != json.loads((art / R.DIGEST_FILE).read_text())["digest"]


def test_an_autoscale_table_changed_after_training_is_digested_anew(tmp_path):
    cfg = autoscale.AutoScaleConfig(scenarios=["wifi_strong"], total_steps=10)
    learner = autoscale.AutoScaleLearner(cfg, ["a", "b", "c"])
    art = learner.save(tmp_path / "as")
    stored = R.write_learner_digest(art)
    assert stored == autoscale.policy_digest(art) == R.learner_digest(art)
    learner.q[0, 1] = 5.0
    learner.save(art)
    assert R.learner_digest(art) == autoscale.policy_digest(art) != stored


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=st.one_of(st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                        st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                         max_size=3),
                                     max_leaves=8).map(json.dumps)))
def test_a_garbled_record_is_ignored_not_an_error(tmp_path, record):
    art = tmp_path / "dvfo"
    if not art.exists():
        _dvfo(tmp_path)
    (art / R.DIGEST_FILE).write_text(record)
    assert R.learner_digest(art) == dvfo.policy_digest(art)
    assert np.isscalar(R.learner_digest(art))
