"""Tests for bench.world.workloads: counting, partitions, and the shipped cache.

Expected values are derived from layer shapes (hand FLOP counts), published
architecture definitions, or torchvision's own metadata — never copied from
the cache under test. Only the cheap models are recomputed here.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from bench.world import workloads as wl

CHEAP = ["lstm_text", "mobilenet_v2", "resnet18", "transformer_text"]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fresh():
    """(workloads, partitions) recomputed for the cheap models."""
    return wl.workload_table(CHEAP)


@pytest.fixture(scope="module")
def cache():
    return wl.load_workloads(), wl.load_partitions()


def test_flop_counter_matches_hand_count_for_conv_and_linear():
    cin, cout, k, h, w, classes = 3, 8, 3, 16, 16, 10
    model = nn.Sequential(nn.Conv2d(cin, cout, k, padding=1), nn.Flatten(),
                          nn.Linear(cout * h * w, classes))
    # 2 FLOPs per MAC: each output pixel of each out-channel does Cin*k*k MACs.
    expected = 2 * cout * cin * k * k * h * w + 2 * (cout * h * w) * classes
    assert wl.count_flops(model, torch.zeros(1, cin, h, w)) == expected


def test_lstm_text_flops_equal_hand_count(fresh):
    # Per step, an LSTM layer does a (4H x I) and a (4H x H) mat-vec.
    t, e, hid = wl.TEXT_SEQ_LEN, wl.LSTM_EMBED_DIM, wl.LSTM_HIDDEN
    layers = [2 * t * 4 * hid * (e + hid)] + [2 * t * 4 * hid * (hid + hid)] * (wl.LSTM_LAYERS - 1)
    expected = sum(layers) + 2 * hid * wl.TEXT_CLASSES
    row = fresh[0].set_index("workload").loc["lstm_text"]
    assert row["flops"] == expected
    assert row["macs"] * 2 == expected


def test_transformer_text_flops_equal_hand_count(fresh):
    n, d, ff = wl.TEXT_SEQ_LEN, wl.BERT_DIM, wl.BERT_FF
    qkv = 2 * n * d * 3 * d
    attention = 2 * (2 * n * n * d)  # QK^T and AV over all heads
    out_proj = 2 * n * d * d
    ffn = 2 * (2 * n * d * ff)
    head = 2 * d * d + 2 * d * wl.TEXT_CLASSES  # pooler + classifier on [CLS]
    expected = wl.BERT_LAYERS * (qkv + attention + out_proj + ffn) + head
    assert fresh[0].set_index("workload").loc["transformer_text", "flops"] == expected


def test_resnet18_layer_counts_follow_architecture():
    # He et al. 2016, Table 1: ResNet-18 = stem conv + [2, 2, 2, 2] basic blocks
    # of two 3x3 convs; stages 2-4 halve resolution and change width, so their
    # first block has a 1x1 downsample conv; one fc classifier.
    blocks = [2, 2, 2, 2]
    expected_conv = 1 + 2 * sum(blocks) + (len(blocks) - 1)
    model, _ = wl.build("resnet18")
    counts = wl.layer_counts(model)
    assert counts == {"n_conv": expected_conv, "n_fc": 1, "n_recurrent": 0, "n_attention": 0}


def _check_partitions(row, parts):
    assert list(parts["point"]) == list(range(len(parts)))
    assert len(parts) == row["n_partition_points"]
    flops = list(parts["flops_before"])
    assert flops[0] == 0
    assert all(a <= b for a, b in zip(flops, flops[1:])), "flops_before must be monotone"
    assert flops[-1] == row["flops"]
    assert parts["activation_bytes"].iloc[0] == row["input_bytes"]
    assert parts["activation_bytes"].iloc[-1] == row["output_bytes"]
    assert (parts["activation_bytes"] > 0).all()
    assert parts["name"].is_unique


@pytest.mark.parametrize("name", CHEAP)
def test_fresh_partition_invariants(fresh, name):
    workloads, partitions = fresh
    row = workloads.set_index("workload").loc[name]
    _check_partitions(row, partitions[partitions["workload"] == name])


def test_cached_partition_invariants_for_all_workloads(cache):
    workloads, partitions = cache
    assert sorted(workloads["workload"]) == sorted(wl.WORKLOADS)
    for name, row in workloads.set_index("workload").iterrows():
        _check_partitions(row, partitions[partitions["workload"] == name])


def test_resnet_partition_points_are_block_boundaries(fresh):
    parts = fresh[1][fresh[1]["workload"] == "resnet18"]
    blocks = [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert list(parts["name"]) == ["input", "maxpool", *blocks, "avgpool", "fc"]


def test_cache_rows_equal_fresh_recomputation(fresh):
    """The shipped CSVs are computed: the cheap models' lines match a rerun byte for byte."""
    for fresh_df, csv in zip(fresh, [wl.WORKLOADS_CSV, wl.PARTITIONS_CSV]):
        shipped = (wl.DATA_DIR / csv).read_text().splitlines()
        recomputed = wl.to_csv_text(fresh_df).splitlines()
        assert shipped[0] == recomputed[0]  # header
        shipped_cheap = [line for line in shipped[1:] if line.split(",")[0] in CHEAP]
        assert shipped_cheap == recomputed[1:]


def test_cache_matches_torchvision_published_ops_and_params(cache):
    """Independent check: torchvision's meta lists GMACs ('_ops') and parameter counts."""
    import torchvision.models

    workloads = cache[0].set_index("workload")
    for name, spec in wl.WORKLOADS.items():
        if spec.acc_fp32_enum is None:
            continue
        enum_name, member = spec.acc_fp32_enum.split(".")
        meta = getattr(getattr(torchvision.models, enum_name), member).meta
        row = workloads.loc[name]
        assert round(row["macs"] / 1e9, 3) == pytest.approx(meta["_ops"], abs=1e-3), name
        if name == "inception_v3":  # built without the training-only auxiliary head
            assert row["params"] < meta["num_params"]
        else:
            assert row["params"] == meta["num_params"], name
        assert row["acc_fp32"] == pytest.approx(meta["_metrics"]["ImageNet-1K"]["acc@1"])


def test_accuracy_nan_only_where_unpublished(cache):
    workloads = cache[0].set_index("workload")
    for name, spec in wl.WORKLOADS.items():
        row = workloads.loc[name]
        assert math.isnan(row["acc_fp32"]) == (spec.acc_fp32_enum is None)
        assert math.isnan(row["acc_int8"]) == (spec.acc_int8_enum is None)
        if spec.acc_int8_enum is not None:
            assert spec.acc_int8_enum in row["acc_source"]
            assert 0 < row["acc_int8"] <= row["acc_fp32"] + 1.0
        if math.isnan(row["acc_int8"]):
            assert "NaN" in row["acc_source"]


def test_layer_type_counts_in_cache(cache):
    workloads = cache[0].set_index("workload")
    assert workloads.loc["lstm_text", "n_recurrent"] == wl.LSTM_LAYERS
    assert workloads.loc["transformer_text", "n_attention"] == wl.BERT_LAYERS
    assert workloads.loc["vit_b_16", "n_attention"] > 0
    vision = workloads[workloads["domain"] == "vision"]
    assert (vision["n_conv"] > 0).all() and (vision["n_recurrent"] == 0).all()


def test_build_is_seeded_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    (m1, x1), (m2, x2) = wl.build("lstm_text"), wl.build("lstm_text")
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(x1, x2) and x1.shape == wl.WORKLOADS["lstm_text"].input_shape
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    m3, _ = wl.build("lstm_text", seed=1)
    assert not torch.equal(m3.state_dict()["head.weight"], s1["head.weight"])
    assert not m1.training


def test_analyse_restores_attention_fastpath(fresh):
    assert torch.backends.mha.get_fastpath_enabled()


@pytest.mark.parametrize("call", [wl.build, wl.analyse, lambda n: wl.workload_table([n])])
def test_unknown_workload_names_allowed_values(call):
    with pytest.raises(ValueError) as err:
        call("resnet1000")
    msg = str(err.value)
    assert "resnet1000" in msg
    assert all(name in msg for name in wl.WORKLOADS)


def test_loading_cache_does_not_import_torch():
    code = ("import sys; from bench.world import workloads as w; w.load_workloads(); "
            "w.load_partitions(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                   env={"PYTHONPATH": str(REPO), "PATH": ""})


def test_missing_cache_error_says_how_to_regenerate(tmp_path):
    with pytest.raises(FileNotFoundError, match="--write"):
        wl.load_workloads(tmp_path)


def test_workloads_command_prints_shipped_table(capsys):
    from bench.cli import main

    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in wl.WORKLOADS)
