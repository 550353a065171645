"""Testbed pieces that need neither root nor namespaces: models, wire formats, proxy, observation, config."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bench.testbed import models as m  # noqa: E402
from bench.testbed import loop  # noqa: E402
from bench.testbed.proxy import DelayProxy  # noqa: E402
from bench.world.network import load_link  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mobilenet():
    torch.set_num_threads(1)
    return m.warm("mobilenet_v2", with_split=True, runs=0)


def test_split_head_tail_equals_full_model(mobilenet):
    w = mobilenet
    assert w.cut == m.split_point("mobilenet_v2") != ""
    with torch.inference_mode():
        full = w.model(w.example)
        split = w.tail(w.head(w.example))
    assert torch.allclose(full, split, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("xi", [0.0, 0.3, 1.0])
def test_feature_share_round_trip(mobilenet, xi):
    with torch.inference_mode():
        f = mobilenet.head(mobilenet.example)
    body, idx = m.encode_share(f, xi)
    assert len(idx) == round(xi * f.shape[1])
    back = m.decode_share(body)
    assert back.shape == f.shape
    keep = np.setdiff1d(np.arange(f.shape[1]), idx)
    assert torch.all(back[:, keep] == 0)
    if len(idx):
        sub = f[:, idx]
        scale = float((sub.max().clamp(min=0) - sub.min().clamp(max=0)) / 255)
        assert float((back[:, idx] - sub).abs().max()) <= scale / 2 + 1e-5
        # payload: one byte per offloaded element plus a small header
        assert sub.numel() <= len(body) < sub.numel() + 4096


def test_input_wire_format_sizes_match_the_simulator():
    from bench.world.workloads import load_workloads

    wl = load_workloads().set_index("workload")
    for name, factor in (("mobilenet_v2", 0.25), ("lstm_text", 1.0)):
        w = m.warm(name, runs=0)
        assert len(m.encode_input(w)) == int(wl.at[name, "input_bytes"] * factor)
        x = m.decode_input(w, m.encode_input(w))
        assert tuple(x.shape) == tuple(w.example.shape)


def test_fuse_weights_local_by_kept_share():
    a, b = np.ones(4), np.zeros(4)
    assert np.allclose(m.fuse(a, b, 0.25), 0.75)


def test_bandwidth_estimate_maps_back_to_the_signal():
    links = {r: load_link(r) for r in ("wifi", "lte")}
    est = loop.BandwidthEstimator(links)
    assert est.signal_dbm("wifi") == -140.0  # nothing measured yet
    for radio, signals in (("wifi", [-81.0, -75.0, -70.0]), ("lte", [-112.0, -100.0, -92.0])):
        for s in signals:
            est.update(radio, float(links[radio].uplink_goodput_mbps(s)))
            back = est.signal_dbm(radio)
            assert abs(float(links[radio].uplink_goodput_mbps(back)) / float(links[radio].uplink_goodput_mbps(s)) - 1) < 0.05
    est.update("wifi", 1e6)  # above the curve's top: the weakest signal giving the top goodput, not the grid's end
    assert est.signal_dbm("wifi") < -40


def test_proxy_forwards_bytes_intact_and_in_order():
    async def main():
        async def echo(r, w):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
            w.close()

        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        proxy = DelayProxy({"wifi": ("127.0.0.1", 0)}, ("127.0.0.1", port))
        await proxy.start()
        proxy.set_rtt("wifi", 2.0)
        pport = proxy._servers[0].sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", pport)
        payload = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
        w.write(payload)
        await w.drain()
        w.write_eof()
        got = bytearray()
        while data := await r.read(65536):
            got += data
        w.close()
        await proxy.close()
        srv.close()
        return bytes(got), payload

    got, payload = asyncio.run(main())
    assert got == payload


def test_proxy_rejects_bad_delay():
    p = DelayProxy({"wifi": ("127.0.0.1", 0)}, ("127.0.0.1", 1))
    with pytest.raises(KeyError):
        p.set_rtt("lte", 10)
    with pytest.raises(ValueError):
        p.set_rtt("wifi", -1)


def test_config_refuses_privileged_policies():
    with pytest.raises(loop.TestbedError, match="privileged"):
        loop.TestbedConfig(policy="oracle", scenario="wifi_strong")
    with pytest.raises(loop.TestbedError, match="requests"):
        loop.TestbedConfig(policy="cpu_only", scenario="wifi_strong", requests=0)


def test_restricted_scenario(tmp_path):
    from bench.world.scenarios import load_scenario

    path = loop.restricted_scenario("cpu_corunner", ["lstm_text"], 10, tmp_path)
    scen = load_scenario(path)
    assert scen.workloads == ["lstm_text"]
    with pytest.raises(loop.TestbedError, match="none is among"):
        loop.restricted_scenario("dvfo_trickle_5mbps", ["lstm_text"], 10, tmp_path)


def test_cli_user_mistake_exits_2_with_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "bench", "testbed", "--policy", "oracle", "--scenario", "wifi_strong",
                          "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "privileged" in res.stderr


def test_params_testbed_off_by_default_and_validated():
    from bench.config import ParamsError, load_params, params_from_dict

    params = load_params(REPO / "params.yaml")
    assert params.testbed.enabled is False
    with pytest.raises(ParamsError, match="oracle"):
        params_from_dict({"testbed": {"policies": ["cpu_only", "oracle"]}})


def test_disabled_stage_writes_an_empty_table(tmp_path):
    import pandas as pd

    from bench.config import params_from_dict
    from bench.testbed.compare import COLUMNS, run_stage

    table = run_stage(params_from_dict({}), tmp_path)
    assert table.empty and list(pd.read_csv(tmp_path / "sim_vs_testbed.csv").columns) == COLUMNS
    assert (tmp_path / "sim_vs_testbed.png").exists()
