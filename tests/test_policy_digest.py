"""A trained learner is stale when what it acts on changed, not when its files were rewritten.

``policy_digest`` (bench/policies/dvfo.py, autoscale.py) and the sensitivity run's input digests
(bench/pipeline/robustness.py) cover tensors / tables, the action space and the acting configuration; a training-only
config key, a metadata header or the npz's compression do not count.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pipeline import robustness as R
from bench.policies import artefact, autoscale, dvfo


def _dvfo(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "claims.yaml").write_text("[]\n")  # input_digests' data folder: no data but the claims
    learner = dvfo.DVFOLearner(dvfo.DVFOConfig(hidden_sizes=(4,), buffer_size=1000, batch_size=8, learning_starts=8), obs_dim=18, n_actions=6)
    return learner.save(tmp_path / "dvfo")


def _edit_config(path: Path, **changes) -> None:
    meta = json.loads((path / dvfo.CONFIG_FILE).read_text())
    for k, v in changes.items():
        if v is KeyError:
            meta["config"].pop(k, None)
        else:
            meta["config"][k] = v
    (path / dvfo.CONFIG_FILE).write_text(json.dumps(meta, indent=3))  # another layout too


def _stale(art: Path, before: dict) -> list[str]:
    return R.stale_inputs({"inputs": before}, R.input_digests([{"suite": "s", "artefact": str(art)}], "none",
                                                             art.parent))


def test_dvfo_training_only_key_and_metadata_do_not_make_it_stale(tmp_path):
    from safetensors.torch import load_file, save_file

    art = _dvfo(tmp_path)
    before = R.input_digests([{"suite": "s", "artefact": str(art)}], "none", tmp_path)
    d0 = dvfo.policy_digest(art)
    assert before["learner:s"] == d0
    _edit_config(art, learning_rate_end=KeyError)  # an artefact saved before the key existed
    assert dvfo.policy_digest(art) == d0
    _edit_config(art, learning_rate_end=None, total_steps=7, learning_rate=0.1, scenarios=["wifi_weak"])
    assert dvfo.policy_digest(art) == d0
    tensors = load_file(str(art / dvfo.WEIGHTS_FILE))
    save_file(dict(reversed(list(tensors.items()))), str(art / dvfo.WEIGHTS_FILE),
              metadata={"z": "1", "format": "other", "a": "2"})  # another header: order, metadata
    assert dvfo.policy_digest(art) == d0
    assert _stale(art, before) == []


def test_dvfo_changed_tensor_or_acting_config_makes_it_stale(tmp_path):
    from safetensors.torch import load_file, save_file

    art = _dvfo(tmp_path)
    before = R.input_digests([{"suite": "s", "artefact": str(art)}], "none", tmp_path)
    tensors = load_file(str(art / dvfo.WEIGHTS_FILE))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1e-3
    save_file(tensors, str(art / dvfo.WEIGHTS_FILE), metadata={"format": f"bench.dvfo/{dvfo.FORMAT_VERSION}"})
    assert _stale(art, before) == ["learner:s"]
    art2 = _dvfo(tmp_path / "b")
    d0 = dvfo.policy_digest(art2)
    _edit_config(art2, obs_clip=3.0)  # the observation normalisation's clip: decisions can change
    assert dvfo.policy_digest(art2) != d0


def test_autoscale_training_only_key_and_compression_do_not_make_it_stale(tmp_path):
    names = ["cpu@1000", "gpu@500", "cloud_wifi"]
    learner = autoscale.AutoScaleLearner(autoscale.AutoScaleConfig(), names)
    art = learner.save(tmp_path / "autoscale")
    d0 = autoscale.policy_digest(art)
    meta = json.loads((art / autoscale.META_FILE).read_text())
    meta["config"]["total_steps"] = 123
    meta["config"]["epsilon_end"] = 0.01
    (art / autoscale.META_FILE).write_text(json.dumps(meta))
    with np.load(art / autoscale.Q_FILE) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(art / autoscale.Q_FILE, **arrays)  # uncompressed: other bytes, same tables
    assert autoscale.policy_digest(art) == d0
    arrays["q"] = arrays["q"].copy()
    arrays["q"][0, 1] += 1.0
    np.savez_compressed(art / autoscale.Q_FILE, **arrays)
    assert autoscale.policy_digest(art) != d0
    meta["action_names"] = ["cpu@1000", "gpu@500", "cloud_lte"]
    (art / autoscale.META_FILE).write_text(json.dumps(meta))
    assert autoscale.policy_digest(art) != d0


def test_an_unknown_artefact_falls_back_to_its_bytes(tmp_path):
    art = tmp_path / "policy"
    art.mkdir()
    (art / "w.bin").write_bytes(b"1")
    assert R.learner_digest(art) is None
    (art / dvfo.CONFIG_FILE).write_text("{}")
    (art / dvfo.WEIGHTS_FILE).write_bytes(b"not safetensors")  # unreadable: its bytes, not a crash
    assert R.learner_digest(art) is None
    with pytest.raises(ValueError, match="not a safetensors file"):
        artefact.safetensors_tensors(art / dvfo.WEIGHTS_FILE)


_ARRAYS = st.dictionaries(st.text("abcxyz_.", min_size=1, max_size=6),
                          st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=5), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None)
@given(arrays=_ARRAYS, meta=st.dictionaries(st.text("abc", min_size=1, max_size=3), st.text(max_size=4), max_size=3))
def test_safetensors_parser_reads_what_was_written_whatever_the_header(arrays, meta):
    from safetensors.numpy import save

    tensors = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    blob = save(tensors, metadata=meta or None)
    blob2 = save(dict(reversed(list(tensors.items()))), metadata={"other": "x"})
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a.safetensors", Path(tmp) / "b.safetensors"
        a.write_bytes(blob)
        b.write_bytes(blob2)
        got = artefact.safetensors_tensors(a)
        assert set(got) == set(tensors)
        for k, t in tensors.items():
            assert got[k] == ("F32", t.shape, t.tobytes())
        assert artefact.digest(got, {}) == artefact.digest(artefact.safetensors_tensors(b), {})
