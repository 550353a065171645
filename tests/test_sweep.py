"""The sweep stage and the engines: same bytes on every backend, resumable, survives a lost worker."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest
import yaml

from bench.config import params_from_dict
from bench.paths import PARAMS_FILE
from bench.pipeline import sweep
from bench.pipeline.engine import Engine, map_ordered

distributed = pytest.importorskip("distributed")


def _tiny_params(**sweep_over):
    data = yaml.safe_load(PARAMS_FILE.read_text())
    data["train"]["autoscale"].update(total_steps=1500, epsilon_decay_steps=1000,
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
                 "policies": ["cpu_only", "cloud_only"], "scenarios": ["wifi_strong"]}}, **sweep_over}
    return params_from_dict(data)


@pytest.fixture(scope="module")
def cluster(dask_engine):
    """The module's local Dask cluster (tests/conftest.py: starting one costs seconds, torch imports)."""
    return dask_engine


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-local")
    summary = sweep.run_sweep(_tiny_params(), out, Engine("local-processes", workers=1))
    return out, summary


def test_grid_expands_to_every_combination_once():
    jobs, cells = sweep.expand(_tiny_params())
    assert len(jobs) == 1
    assert len(cells) == 3 * 1 * 2  # (learner + 2 baselines) x 1 scenario x 2 seeds
    assert len({c.key for c in cells}) == len(cells)
    assert {c.cell.policy for c in cells} == {"autoscale", "cpu_only", "cloud_only"}


def test_local_sweep_writes_tidy_table_and_summary(local_run):
    out, summary = local_run
    assert summary["cells"] == 6 and summary["computed"] == 6 and summary["reused"] == 0 and summary["missing"] == 0
    results = pd.read_parquet(out / "results.parquet")
    assert set(sweep.KEY_COLUMNS) <= set(results.columns)
    assert len(results.groupby(["policy", "seed"])) == 6 and len(results) == 6 * 20
    table = pd.read_csv(out / "summary.csv")
    assert set(table["policy"]) == {"autoscale", "cpu_only", "cloud_only"}


def test_dask_cluster_gives_the_same_bytes_as_local_processes(local_run, cluster, tmp_path):
    out, _ = local_run
    sweep.run_sweep(_tiny_params(), tmp_path, cluster)
    assert (tmp_path / "results.parquet").read_bytes() == (out / "results.parquet").read_bytes()
    assert (tmp_path / "summary.csv").read_bytes() == (out / "summary.csv").read_bytes()


def test_interrupted_sweep_resumes_without_recomputing(local_run, tmp_path):
    out, _ = local_run
    first = sweep.run_sweep(_tiny_params(), tmp_path, Engine("local-processes", workers=1), limit=2)
    assert first["computed"] == 2 and first["missing"] == 4
    second = sweep.run_sweep(_tiny_params(), tmp_path, Engine("local-processes", workers=1))
    assert second["computed"] == 4 and second["reused"] == 2 and second["trained"] == 0
    assert (tmp_path / "results.parquet").read_bytes() == (out / "results.parquet").read_bytes()


def test_a_changed_definition_is_not_reused(tmp_path):
    a = sweep.expand(_tiny_params())[1]
    b = sweep.expand(_tiny_params(steps=25))[1]
    assert not {c.key for c in a} & {c.key for c in b}


def test_sweep_survives_a_killed_worker_with_every_cell_exactly_once(local_run, cluster, tmp_path, monkeypatch):
    out, _ = local_run
    killed: list[int] = []
    put = sweep.Store.put_cell

    def put_and_kill_a_worker(self, key, frame):
        put(self, key, frame)
        if not killed:  # after the first result: SIGKILL one worker process (its tasks are lost with it)
            client = distributed.get_client()
            pids = sorted(client.run(os.getpid).values())
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    monkeypatch.setattr(sweep.Store, "put_cell", put_and_kill_a_worker)
    summary = sweep.run_sweep(_tiny_params(), tmp_path, cluster)
    assert killed and summary["missing"] == 0 and summary["computed"] == 6
    results = pd.read_parquet(tmp_path / "results.parquet")
    assert results.groupby(["policy", "seed"]).size().eq(20).all() and len(results) == 6 * 20
    assert (tmp_path / "results.parquet").read_bytes() == (out / "results.parquet").read_bytes()


def test_disabled_sweep_writes_a_stub(tmp_path):
    summary = sweep.run_sweep(_tiny_params(enabled=False), tmp_path)
    assert summary["enabled"] is False
    assert pd.read_parquet(tmp_path / "results.parquet").empty
    assert (tmp_path / "store").is_dir()  # the stage's declared output exists even while the sweep is off


def test_map_ordered_keeps_item_order_on_every_backend(dask_engine):
    items = list(range(7))
    assert map_ordered(abs, [-i for i in items], Engine("local-processes", workers=2)) == items
    assert map_ordered(abs, [-i for i in items], dask_engine, keys=[f"k{i}" for i in items]) == items
    # the embedded cluster `engine.backend: dask` starts and stops around one map when no address is given
    assert map_ordered(abs, [-i for i in items], Engine("dask", workers=2), keys=[f"e{i}" for i in items]) == items


def test_a_local_session_runs_its_maps_in_one_pool_of_processes(monkeypatch):
    """The evaluate stage's two maps share the session's processes (and so their imports and caches)."""
    from bench.pipeline import engine as engine_mod

    pools = []

    class Counted(engine_mod.ProcessPoolExecutor):
        def __init__(self, *a, **kw):
            pools.append(self)
            super().__init__(*a, **kw)

    monkeypatch.setattr(engine_mod, "ProcessPoolExecutor", Counted)
    engine = Engine("local-processes", workers=2)
    with engine_mod.session(engine) as pool:
        first = map_ordered(_pid, range(4), engine, client=pool)
        second = map_ordered(_pid, range(4), engine, client=pool)
    assert len(pools) == 1 and os.getpid() not in first + second
    map_ordered(_pid, range(4), engine)  # no session: a pool of its own
    assert len(pools) == 2
    with engine_mod.session(Engine("local-processes", workers=1)) as none:  # one worker: in this process
        assert none is None and map_ordered(_pid, range(2), Engine("local-processes", workers=1)) == [os.getpid()] * 2


def _pid(_: int) -> int:
    return os.getpid()


def test_engine_refuses_unknown_backend_and_misplaced_address():
    with pytest.raises(ValueError, match="allowed"):
        Engine("spark")
    with pytest.raises(ValueError, match="only used with backend 'dask'"):
        Engine("local-processes", address="tcp://127.0.0.1:8786")
