"""The sweep store verifies what it reads: every fault an adversarial user (or a crash, a full disk,
a stray copy) can leave in it is found, reported in one line and recomputed - and the sweep's
final bytes equal a clean run's."""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from bench.config import params_from_dict
from bench.paths import PARAMS_FILE
from bench.pipeline import sweep
from bench.pipeline.engine import Engine

LOCAL = Engine("local-processes", workers=1)


def _params():
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["train"]["autoscale"].update(total_steps=300, epsilon_decay_steps=200,
                                      # two training scenarios, not the shipped 13: a training run also plays one
                                      # reference episode per policy on each (its levels), and what is tested here
                                      # (the store, the engines) does not depend on how many there are
                                      scenarios=["wifi_strong", "cpu_corunner"],
                                      # without the per-processor backlog features (their default, off): the shipped
                                      # ones make the dense Q-table 4x larger, and loading it and building its
                                      # back-off levels cost ~10 CPU-s per evaluated learner cell (issue 25: one
                                      # recomputed cell 9.7 -> 0.15 CPU-s); the store and the engines do not
                                      # depend on the learner's state
                                      cpu_busy_ms_edges=[], gpu_busy_ms_edges=[], dsp_busy_ms_edges=[])
    data["sweep"] = {"enabled": True, "seeds": 2, "steps": 20, "grids": {
        "tiny": {"learner": "autoscale", "profiles": ["phone_sd845"], "configs": {"default": {}},
                 "policies": ["cpu_only"], "scenarios": ["wifi_strong"]}}}
    return params_from_dict(data)


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-clean")
    summary = sweep.run_sweep(_params(), out, LOCAL)
    assert summary["computed"] == 4 and summary["repaired"] == 0
    return out


def _copy(clean: Path, tmp: Path) -> Path:
    shutil.copytree(clean / "store", tmp / "store")
    return tmp / "store"


def _cells(store: Path) -> list[Path]:
    return sorted((store / "cells").glob("*.parquet"))


def _train_dir(store: Path) -> Path:
    (d,) = [p for p in (store / "train").iterdir() if p.is_dir()]
    return d


# each fault: (name, function(store) that damages it, how many entries it damages, whether training reruns)
def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _flip_one_byte(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[len(b) // 2] ^= 0x01
    p.write_bytes(bytes(b))


def _empty_valid_parquet(p: Path) -> None:
    pd.read_parquet(p).iloc[:0].to_parquet(p, index=False)


def _dir_in_place(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "junk").write_text("x")


def _other_cell(p: Path) -> None:
    other = [c for c in _cells(p.parent.parent) if c != p][0]
    shutil.copyfile(other, p)


def _symlink_to_other(p: Path) -> None:
    other = [c for c in _cells(p.parent.parent) if c != p][0]
    p.unlink()
    p.symlink_to(other)


CELL_FAULTS = {
    "truncated": _truncate,
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(b"\x00garbage\xff" * 100),
    "flipped byte": _flip_one_byte,
    "another valid cell": _other_cell,
    "empty valid parquet": _empty_valid_parquet,
    "directory in place": _dir_in_place,
    "missing": lambda p: p.unlink(),
    "symlink to another cell": _symlink_to_other,
}


@pytest.mark.parametrize("fault", list(CELL_FAULTS))
def test_a_damaged_cell_is_reported_and_recomputed(clean, tmp_path, capsys, fault):
    store = _copy(clean, tmp_path)
    victim = _cells(store)[1]
    CELL_FAULTS[fault](victim)
    summary = sweep.run_sweep(_params(), tmp_path, LOCAL)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("sweep store:")]
    assert len(err) == 1 and victim.stem in err[0] and "recomputing" in err[0], err
    assert summary["computed"] == 1 and summary["repaired"] == 1 and summary["trained"] == 0
    assert (tmp_path / "results.parquet").read_bytes() == (clean / "results.parquet").read_bytes()
    assert (tmp_path / "summary.csv").read_bytes() == (clean / "summary.csv").read_bytes()
    assert victim.read_bytes() == (clean / "store" / "cells" / victim.name).read_bytes()
    again = sweep.run_sweep(_params(), tmp_path, LOCAL)  # repaired for good
    assert again["computed"] == 0 and again["repaired"] == 0


TRAIN_FAULTS = {
    "truncated npz (BadZipFile)": lambda d: _truncate(d / "policy" / "q_table.npz"),
    "garbage json (UnicodeDecodeError)": lambda d: (d / "policy" / "autoscale.json").write_bytes(b"\xff\xfe\x00" * 50),
    "missing artefact file": lambda d: (d / "train.json").unlink(),
}


@pytest.mark.parametrize("fault", list(TRAIN_FAULTS))
def test_a_damaged_training_artefact_is_retrained(clean, tmp_path, capsys, fault):
    store = _copy(clean, tmp_path)
    d = _train_dir(store)
    TRAIN_FAULTS[fault](d)
    _cells(store)[0].unlink()  # one cell to evaluate, so the artefact is read too
    summary = sweep.run_sweep(_params(), tmp_path, LOCAL)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("sweep store:")]
    assert any(d.name in ln and "retraining" in ln for ln in err), err
    assert summary["trained"] == 1
    assert (tmp_path / "results.parquet").read_bytes() == (clean / "results.parquet").read_bytes()
    for f in (clean / "store" / "train" / d.name).rglob("*"):
        if f.is_file():
            assert (d / f.relative_to(clean / "store" / "train" / d.name)).read_bytes() == f.read_bytes()


@pytest.mark.parametrize("fault", ["torn last line", "garbage line", "non-utf8 line", "manifest deleted",
                                   "manifest is a directory"])
def test_a_damaged_manifest_costs_recomputation_not_correctness(clean, tmp_path, capsys, fault):
    store = _copy(clean, tmp_path)
    m = store / sweep.MANIFEST
    lines = m.read_bytes().splitlines(keepends=True)
    if fault == "torn last line":
        m.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    elif fault == "garbage line":
        m.write_bytes(b"".join(lines[:2]) + b"{not json\n" + b"".join(lines[2:]))
    elif fault == "non-utf8 line":
        m.write_bytes(b"\xff\xfe\xfd\n" + b"".join(lines))
    elif fault == "manifest deleted":
        m.unlink()
    else:
        m.unlink()
        m.mkdir()
    sweep.run_sweep(_params(), tmp_path, LOCAL)
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("sweep store:")]
    assert err and all("\n" not in ln for ln in err)
    assert (tmp_path / "results.parquet").read_bytes() == (clean / "results.parquet").read_bytes()


def test_leftover_temp_files_are_removed(clean, tmp_path):
    store = _copy(clean, tmp_path)
    leftovers = [store / "cells" / ".cell-x.parquet.123.tmp", _train_dir(store) / "policy" / ".q_table.npz.9.tmp"]
    for p in leftovers:
        p.write_bytes(b"half a write")
    summary = sweep.run_sweep(_params(), tmp_path, LOCAL)
    assert summary["computed"] == 0 and not any(p.exists() for p in leftovers)


def test_an_unrecorded_file_is_not_trusted(clean, tmp_path, capsys):
    """A cell file the manifest does not list (a crash between rename and record, or a copy) is recomputed."""
    store = _copy(clean, tmp_path)
    m = store / sweep.MANIFEST
    victim = _cells(store)[2]
    kept = [ln for ln in m.read_text().splitlines(keepends=True) if json.loads(ln)["key"] != victim.stem]
    m.write_text("".join(kept))
    summary = sweep.run_sweep(_params(), tmp_path, LOCAL)
    assert summary["computed"] == 1 and "not in the manifest" in capsys.readouterr().err
    assert (tmp_path / "results.parquet").read_bytes() == (clean / "results.parquet").read_bytes()


def test_a_second_writer_is_refused_not_interleaved(clean, tmp_path):
    store = _copy(clean, tmp_path)
    with open(store / ".lock", "a+") as fh:  # another process's sweep holds the lock (flock: per open file)
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.truncate(0)
        fh.write("4242\n")
        fh.flush()
        with pytest.raises(sweep.StoreBusyError) as exc:
            sweep.run_sweep(_params(), tmp_path, LOCAL)
    assert "\n" not in str(exc.value) and "another sweep" in str(exc.value) and "4242" in str(exc.value)
    with sweep.Store(store):  # released: the next writer gets it
        pass


def test_two_store_handles_in_one_process_exclude_each_other(tmp_path):
    with sweep.Store(tmp_path / "s"):
        with pytest.raises(sweep.StoreBusyError):
            with sweep.Store(tmp_path / "s"):
                pass


def test_put_get_round_trip_and_verified_read(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3]})
    with sweep.Store(tmp_path) as s:
        s.put_cell("cell-k", frame)
        assert s.has_cell("cell-k") and s.get_cell("cell-k").equals(frame)
        (tmp_path / "cells" / "cell-k.parquet").write_bytes(b"x")
        with pytest.raises(sweep.StoreCorruptError):
            s.get_cell("cell-k")
        s.put_train("train-k", {"policy/a.bin": b"\x00\x01", "t.json": b"{}"})
        assert s.get_train("train-k") == {"policy/a.bin": b"\x00\x01", "t.json": b"{}"}
        with pytest.raises(ValueError, match="outside"):
            s.put_train("train-evil", {"../../x": b"1"})
