"""Testbed pieces that need neither root nor namespaces: models, wire formats, proxy, observation, config."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
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
    # the exclusions are what each policy registered (PolicyInfo.live), not a hand list: the hindsight statics,
    # which the old list missed, are refused; the best found schedule, registered live, is not
    for name in ("greedy_oracle", "best_static_dnn", "best_static_dnn_signal"):
        with pytest.raises(loop.TestbedError, match="privileged"):
            loop.TestbedConfig(policy=name, scenario="wifi_strong")
    assert loop.TestbedConfig(policy="best_found_schedule", scenario="wifi_strong").policy == "best_found_schedule"
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


# --------------------------------------------------------------------------- the same world on both sides

def _burst_client(radio_states, rtt_ms=4.0):
    """A proxy over a tiny request/answer server: ``exchange()`` sends one request, waits for the answer."""
    async def setup():
        async def answer(r, w):
            while data := await r.read(65536):
                if data.endswith(b"!"):
                    w.write(b"ok")
                    await w.drain()
            w.close()

        srv = await asyncio.start_server(answer, "127.0.0.1", 0)
        proxy = DelayProxy({"wifi": ("127.0.0.1", 0)}, ("127.0.0.1", srv.sockets[0].getsockname()[1]),
                           radio_states=radio_states)
        await proxy.start()
        proxy.set_rtt("wifi", rtt_ms)
        r, w = await asyncio.open_connection("127.0.0.1", proxy._servers[0].sockets[0].getsockname()[1])
        return srv, proxy, r, w
    return setup


def test_proxy_promotes_a_radio_quiet_for_a_whole_tail_only():
    import time

    promo_ms, tail_ms = 60.0, 150.0

    async def main():
        srv, proxy, r, w = await _burst_client({"wifi": (promo_ms, tail_ms)})()

        async def exchange():
            t0 = time.perf_counter()
            w.write(b"x" * 2000 + b"!")
            await w.drain()
            await r.readexactly(2)
            return (time.perf_counter() - t0) * 1e3

        first = await exchange()  # never active: idle, promoted
        after_first = dict(proxy.promotions)
        pair = [await exchange(), await exchange()]  # back to back: inside the tail, no promotion
        after_pair = dict(proxy.promotions)
        await asyncio.sleep(tail_ms * 1.5 / 1e3)
        isolated = await exchange()  # quiet longer than the tail: promoted again
        w.close()
        await proxy.close()
        srv.close()
        return first, after_first, pair, after_pair, isolated, dict(proxy.promotions)

    first, after_first, pair, after_pair, isolated, after = asyncio.run(main())
    assert after_first == {"wifi": 1} and after_pair == {"wifi": 1} and after == {"wifi": 2}
    # a promotion is physical: never shorter than the constant (CPU contention only ever adds time)
    assert first >= promo_ms and isolated >= promo_ms


def test_proxy_radio_constants_come_from_the_link_models():
    from bench.testbed.proxy import link_state_constants

    consts = link_state_constants(["wifi", "lte", "nonexistent"])
    for radio in ("wifi", "lte"):
        lk = load_link(radio)
        assert consts[radio] == (lk.promotion_ms, lk.tail_ms)
    assert "nonexistent" not in consts  # an unknown radio gets no state machine
    p = DelayProxy({"wifi": ("127.0.0.1", 0)}, ("127.0.0.1", 1))
    assert p.radio_states["wifi"] == consts["wifi"]


def test_offload_past_its_deadline_falls_back_to_local():
    import os
    import socket
    import threading

    from bench.testbed.edge import Client, EdgeRunner

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    held = []
    stop = threading.Event()

    def accept():  # accepts and reads, never answers
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = silent.accept()
                held.append(conn)
            except OSError:
                pass

    th = threading.Thread(target=accept, daemon=True)
    th.start()
    own = os.sched_getaffinity(0)
    try:
        edge = EdgeRunner(["lstm_text"], threads=1, cpus=tuple(sorted(own)))
        client = Client("127.0.0.1", silent.getsockname()[1])
        tim = edge.offload("lstm_text", client, timeout_ms=150.0)
        dropped = edge.offload("lstm_text", client, timeout_ms=150.0, fallback=False)
    finally:
        os.sched_setaffinity(0, own)
        stop.set()
        th.join()
        for c in held:
            c.close()
        silent.close()
    assert tim.timed_out and tim.transfer_ms >= 150.0 and tim.server_ms == 0
    assert tim.fallback_ms > 0 and tim.local_ms >= tim.fallback_ms and tim.output is not None
    assert np.isclose(tim.latency_ms, tim.local_ms + tim.transfer_ms)
    assert dropped.timed_out and dropped.fallback_ms == 0 and dropped.output is None


def _phases(n, **over):
    base = {"local_w": 2.0, "fallback_w": 2.0, "promo_w": 0.5, "promo_ms": 0.0, "up_w": 1.0,
            "down_w": 0.8, "tail_w": 0.1, "tail_ms": 200.0, "tail_mj": 20.0}
    base.update(over)
    return {k: np.full(n, float(v)) for k, v in base.items()}


def test_modeled_energy_is_above_idle_only():
    import pandas as pd

    rows = pd.DataFrame({"local_ms": [10.0, 10.0], "fallback_ms": [0.0, 0.0], "bytes_up": [0, 0],
                         "bytes_down": [0, 0], "transfer_ms": [0.0, 0.0], "server_ms": [0.0, 0.0],
                         "server_queue_ms": [0.0, 0.0], "shaped_up_mbps": [np.nan] * 2,
                         "shaped_down_mbps": [np.nan] * 2, "latency_ms": [10.0, 10.0], "queue_ms": [0.0, 500.0]})
    e = loop.modeled_energy_mj(rows, _phases(2))
    # local power x local time, whatever the wait around it: no idle power x latency term
    assert np.allclose(e, 20.0)
    off = rows.assign(bytes_up=[1000, 1000], bytes_down=[4000, 4000], transfer_ms=[50.0, 50.0],
                      server_ms=[5.0, 5.0], shaped_up_mbps=[8.0, 8.0], shaped_down_mbps=[8.0, 8.0])
    e_off = loop.modeled_energy_mj(off, _phases(2))
    t_up, t_down = 1000 * 8 / 8e3, 4000 * 8 / 8e3
    expect = 20.0 + 1.0 * t_up + 0.8 * t_down + 0.1 * (50 + 5 - t_up - t_down) + 0.1 * 200
    assert np.allclose(e_off, expect)
    shorter = loop.modeled_energy_mj(off, _phases(2, tail_mj=5.0))
    assert np.allclose(e_off - shorter, 15.0)  # the request's marginal tail, as the kernel attributes it


def test_part_errors_per_part():
    import pandas as pd

    df = pd.DataFrame({"route": ["cpu", "cpu", "cloud_wifi", "cloud_wifi"], "timed_out": [False] * 4,
                       "local_ms": [10.0, 20.0, 1.0, 1.0], "pred_local_ms": [11.0, 18.0, 0.0, 0.0],
                       "transfer_ms": [0.0, 0.0, 100.0, 200.0], "pred_transfer_ms": [0.0, 0.0, 110.0, 200.0],
                       "server_ms": [0.0, 0.0, 10.0, 10.0], "pred_server_ms": [0.0, 0.0, 10.0, 12.0],
                       "queue_ms": [0.0, 4.0, 0.0, 0.0], "pred_queue_ms": [0.0] * 4})
    e = loop.part_errors(df)
    assert np.isclose(e["local_mape"], (0.1 + 0.1) / 2) and e["local_n"] == 2
    assert np.isclose(e["transfer_mape"], 0.05) and np.isclose(e["server_mape"], 0.1)
    assert np.isclose(e["queue_mae_ms"], 1.0) and e["queue_n"] == 4
    assert e["transfer_measured_median_ms"] == 150.0 and e["transfer_predicted_median_ms"] == 155.0


def test_part_errors_leave_out_timed_out_requests_and_count_them():
    import pandas as pd

    # request 2 timed out live (its transfer is the 2.5 s wait, its local the fallback), request 3 only in the
    # twin (predicted transfer: the wait), request 4 on both sides; only requests 0 and 1 are compared per part
    df = pd.DataFrame({"route": ["cpu", "cloud_wifi", "cloud_wifi", "cloud_wifi", "cloud_wifi"],
                       "timed_out": [False, False, True, False, True],
                       "pred_timed_out": [False, False, False, True, True],
                       "local_ms": [10.0, 1.0, 20.0, 1.0, 20.0], "pred_local_ms": [12.0, 0.0, 0.0, 20.0, 20.0],
                       "transfer_ms": [0.0, 100.0, 2500.0, 50.0, 2500.0],
                       "pred_transfer_ms": [0.0, 120.0, 1.0, 2500.0, 2500.0],
                       "server_ms": [0.0, 10.0, 0.0, 10.0, 0.0], "pred_server_ms": [0.0, 11.0, 10.0, 0.0, 0.0],
                       "queue_ms": [1.0, 3.0, 900.0, 0.0, 0.0], "pred_queue_ms": [0.0, 0.0, 0.0, 700.0, 0.0]})
    e = loop.part_errors(df)
    assert e["parts_skipped_timed_out"] == 3
    assert e["local_n"] == 1 and np.isclose(e["local_mape"], 0.2)
    assert e["transfer_n"] == 1 and np.isclose(e["transfer_mape"], 0.2)
    assert e["server_n"] == 1 and np.isclose(e["server_mape"], 0.1)
    assert e["queue_n"] == 2 and np.isclose(e["queue_mae_ms"], 2.0)
    # without the twin's column (a run written before it) only the live timeouts are left out
    e = loop.part_errors(df.drop(columns="pred_timed_out"))
    assert e["parts_skipped_timed_out"] == 2 and e["transfer_n"] == 2
    # every request timed out: nothing compared, said so (NaN), no error raised
    e = loop.part_errors(df.assign(timed_out=True))
    assert e["parts_skipped_timed_out"] == 5 and e["transfer_n"] == 0 and np.isnan(e["transfer_mape"])


def test_unknown_policies_are_skipped_with_a_reason(capsys):
    from bench.testbed.compare import runnable_policies

    assert runnable_policies(["cpu_only", "bound_schedule_not_here", "cloud_only"]) == ["cpu_only", "cloud_only"]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "bound_schedule_not_here" in out[0] and "skipping" in out[0]


class _Tables:
    """The three local-time tables the slowdown fit reads, for two workloads and one CPU action."""

    workloads = ["a", "b"]
    pre_ms = np.array([[10.0], [20.0]])
    pre_cpu_ms = np.array([[10.0], [10.0]])  # b: half its time CPU-sensitive
    pre_mem_ms = np.array([[5.0], [20.0]])

    def workload_index(self, names):
        return np.array([self.workloads.index(n) for n in names])


def _timings(kc: float, km: float, cpu: float, mem: float):
    import pandas as pd

    t = _Tables()
    rows = []
    for i, w in enumerate(t.workloads):
        pre, pc, pm = t.pre_ms[i, 0], t.pre_cpu_ms[i, 0], t.pre_mem_ms[i, 0]
        for setting, lat in (("none", pre), ("cpu", pre + kc * cpu * pc), ("mem", pre + km * mem * pm)):
            rows += [{"round": r, "setting": setting, "workload": w, "latency_ms": lat} for r in range(3)]
    return pd.DataFrame(rows)


def test_host_slowdown_fit_recovers_the_coefficients():
    import pandas as pd

    from bench.testbed import hostload
    from bench.world.scenarios import load_interference_model

    base = load_interference_model()
    model, per = hostload.fit(_timings(1.1, 0.6, 0.9, 0.2), _Tables(), {"a": 0, "b": 0}, 0.9, 0.2, base)
    assert np.isclose(model.cpu_slowdown, 1.1) and np.isclose(model.mem_slowdown, 0.6)
    assert model.sources["cpu_slowdown"].startswith("measured:") and model.apps == base.apps
    assert model.cpu_power_w == 0 and "assumed" in model.sources["cpu_power_w"]
    assert len(per) == 2
    # no memory load in the scenario: not measured, zero, and said so
    none, _ = hostload.fit(_timings(1.1, 0.0, 0.9, 0.0).query("setting != 'mem'"), _Tables(), {"a": 0, "b": 0},
                           0.9, 0.0, base)
    assert none.mem_slowdown == 0 and none.sources["mem_slowdown"].startswith("not measured")
    # no co-runner at all (what the loop fits for a scenario without one): nothing measured, no error
    empty, per = hostload.fit(pd.DataFrame(columns=["workload", "setting", "latency_ms"]), _Tables(), {}, 0.0, 0.0,
                              base)
    assert empty.cpu_slowdown == 0 and empty.mem_slowdown == 0 and per.empty


@settings(max_examples=25, deadline=None)
@given(kc=st.floats(0, 5), km=st.floats(0, 5), cpu=st.floats(0.05, 1), mem=st.floats(0.05, 1))
def test_host_slowdown_file_round_trips(tmp_path_factory, kc, km, cpu, mem):
    from bench.testbed import hostload
    from bench.world.scenarios import load_interference_model

    model, per = hostload.fit(_timings(kc, km, cpu, mem), _Tables(), {"a": 0, "b": 0}, cpu, mem,
                              load_interference_model())
    path = hostload.write(tmp_path_factory.mktemp("hl") / "edge_interference.yaml", model, per, (cpu, mem))
    back = hostload.read(path)
    assert np.isclose(back.cpu_slowdown, kc, atol=1e-6) and np.isclose(back.mem_slowdown, km, atol=1e-6)
    assert back.apps == model.apps and back.sources["cpu_slowdown"] == model.sources["cpu_slowdown"]


def test_host_slowdown_file_with_a_bad_value_names_the_key(tmp_path):
    import yaml

    from bench.testbed import hostload
    from bench.world.scenarios import ScenarioError, load_interference_model

    model, per = hostload.fit(_timings(1.0, 1.0, 0.5, 0.5), _Tables(), {"a": 0, "b": 0}, 0.5, 0.5,
                              load_interference_model())
    path = hostload.write(tmp_path / "x_interference.yaml", model, per, (0.5, 0.5))
    doc = yaml.safe_load(path.read_text())
    doc["interference_model"]["cpu_slowdown"]["value"] = -1
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ScenarioError, match="cpu_slowdown"):
        hostload.read(path)


def test_campaign_overrides_params_and_checks_names():
    from bench.config import ParamsError, load_params
    from bench.testbed.compare import campaign_params

    base = load_params(REPO / "params.yaml")
    p = campaign_params(base, ["cpu_only", "bound_schedule"], ["wifi_weak"], 7)
    assert p.testbed.enabled and p.testbed.policies == ("cpu_only", "bound_schedule") and p.testbed.requests == 7
    assert p.testbed.scenarios == ("wifi_weak",) and p.testbed.workloads == base.testbed.workloads
    with pytest.raises(ParamsError, match="no_such_scenario"):
        campaign_params(base, scenarios=["no_such_scenario"])
    with pytest.raises(ParamsError, match="oracle"):
        campaign_params(base, policies=["oracle"])


def test_dvfo_on_the_testbed_takes_one_offload_share():
    from bench.testbed.dvfo_live import dvfs_reason
    from bench.testbed.loop import parse_xi

    assert parse_xi("dvfo:0.4") == 0.4
    for bad in ("dvfo", "dvfo:x", "dvfo:1.5"):
        with pytest.raises(loop.TestbedError, match="dvfo"):
            loop.TestbedConfig(policy=bad, scenario="wifi_weak")
    assert loop.TestbedConfig(policy="dvfo:0.5", scenario="wifi_weak").policy == "dvfo:0.5"
    assert dvfs_reason().startswith(("none:", "cpufreq levels:"))


def test_a_run_without_a_twin_tabulates(tmp_path):
    import json

    import pandas as pd

    from bench.testbed.compare import COLUMNS, tabulate, write

    run = tmp_path / "runs" / "wifi_weak__dvfo"
    run.mkdir(parents=True)
    pd.DataFrame({"policy": ["dvfo:0.5"] * 2, "scenario": ["wifi_weak"] * 2, "latency_ms": [30.0, 40.0],
                  "local_ms": [10.0, 10.0], "transfer_ms": [15.0, 25.0], "server_ms": [5.0, 5.0]}).to_parquet(
        run / "requests.parquet")
    (run / "summary.json").write_text(json.dumps({"policy": "dvfo:0.5", "scenario": "wifi_weak", "requests": 2,
                                                  "latency_median_ms": 35.0, "latency_p95_ms": 39.5,
                                                  "latency_mape": None}))
    table, requests = tabulate([run])
    assert list(table.columns) == COLUMNS and table.iloc[0]["median_error"] is None
    write(table, requests, tmp_path, enabled=True)
    assert (tmp_path / "sim_vs_testbed.csv").exists()


def test_the_quick_fits_pause_is_checked_and_paces_the_timed_runs(monkeypatch):
    from bench.testbed.loop import TestbedConfig, TestbedError

    for bad in (-1.0, 1e6):
        with pytest.raises(TestbedError, match="fit-gap-ms"):
            TestbedConfig(policy="cpu_only", scenario="wifi_weak", fit_gap_ms=bad)
    sleeps = []
    monkeypatch.setattr(loop.time, "sleep", lambda s: sleeps.append(s))
    trace = loop.quick_host_trace(["lstm_text"], threads=1, repeats=3, warmup=1, gap_s=0.2)
    assert sleeps == [0.2] * 3 and len(trace) == 1 and trace["latency_ms"].iloc[0] > 0
    sleeps.clear()
    loop.quick_host_trace(["lstm_text"], threads=1, repeats=2, warmup=0)
    assert sleeps == []  # 0: back to back, as before


def test_niceness_is_checked_and_restored():
    import os

    with pytest.raises(loop.TestbedError, match="nice"):
        loop.TestbedConfig(policy="cpu_only", scenario="wifi_strong", nice=-21)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with loop.niceness(min(own + 1, 19)):
        assert os.getpriority(os.PRIO_PROCESS, 0) == min(own + 1, 19)
    if os.geteuid() == 0:  # raising it back needs root
        assert os.getpriority(os.PRIO_PROCESS, 0) == own


class _FakeCoRunners:
    def __init__(self):
        self.load = {"cpu": 0.0, "mem": 0.0}

    def set_load(self, cpu, mem):
        self.load = {"cpu": cpu, "mem": mem}


class _FakeEdge:
    """Latency = the workload's time x the co-runner's stretch x an unrelated background that drifts between
    inferences (what a shared host does); CPU time = the workload's time alone. ``sliced``: the co-runners take
    the inference's CPU, so every part stretches alike and the loads add (this host); else each load slows its
    own part (the phone model's form)."""

    def __init__(self, corun, kc, km, drift, sliced=False):
        self.corun, self.kc, self.km, self.drift, self.sliced, self.calls = corun, kc, km, drift, sliced, []

    def local(self, w, corunner_ms=None):
        from bench.testbed.edge import Timing

        t = _Tables()
        i = t.workloads.index(w)
        pre, pc, pm = t.pre_ms[i, 0], t.pre_cpu_ms[i, 0], t.pre_mem_ms[i, 0]
        lo = self.corun.load
        if self.sliced:
            own = pre + (self.kc * lo["cpu"] + self.km * lo["mem"]) * (pc + pm)
        else:
            own = pre + self.kc * lo["cpu"] * pc + self.km * lo["mem"] * pm
        self.calls.append((w, dict(lo)))
        return Timing(local_ms=own * self.drift(len(self.calls)), local_cpu_ms=pre)


@settings(max_examples=20, deadline=None)
@given(kc=st.floats(0, 4), km=st.floats(0, 4), cpu=st.floats(0.1, 1), mem=st.floats(0.1, 1),
       rounds=st.integers(3, 7), both=st.booleans())
def test_host_slowdown_is_measured_alternated_and_paired_against_a_drifting_background(kc, km, cpu, mem, rounds,
                                                                                       both):
    from bench.testbed import hostload
    from bench.world.scenarios import load_interference_model

    corun = _FakeCoRunners()
    if not both:
        mem = 0.0  # a scenario with one load: that stressor alone is its setting
    # the background doubles the host's times for a whole stretch of the measurement (a burst of other work)
    edge = _FakeEdge(corun, kc, km, lambda k: 1.0 + 0.02 * (k % 3) if k < 9 else 2.0, sliced=both)
    timings = hostload.time_settings(edge, corun, ["a", "b"], cpu, mem, rounds=rounds, gap_s=0.0)
    n_settings = 4 if both else 2
    assert len(timings) == rounds * 2 * n_settings and corun.load == {"cpu": 0.0, "mem": 0.0}
    # every inference met its own setting's co-runner and only it; the settings' order rotates
    for (w, lo), (_, r) in zip(edge.calls, timings.iterrows()):
        assert w == r["workload"] and lo == {"none": {"cpu": 0.0, "mem": 0.0}, "cpu": {"cpu": cpu, "mem": 0.0},
                                             "mem": {"cpu": 0.0, "mem": mem},
                                             "scenario": {"cpu": cpu, "mem": mem}}[r["setting"]]
    firsts = timings.groupby(["round", "workload"])["setting"].first()
    assert firsts.nunique() == min(n_settings, 2 * rounds)
    assert {"cpu_ms", "latency_ms"} <= set(timings.columns)
    model, per = hostload.fit(timings, _Tables(), {"a": 0, "b": 0}, cpu, mem, load_interference_model())
    # the paired stretch cancels the background (the doubling); a median of the unpaired times would not. What
    # is left is the 2 % jitter between neighbours: on the stretch itself (k x load), so compared there
    if both:  # both stressors at once, as live: each part stretches by the measured (kc cpu + km mem) alike
        k = kc * cpu + km * mem
        assert np.isclose(model.cpu_slowdown * cpu, k, rtol=0.05, atol=0.05)
        assert np.isclose(model.mem_slowdown * mem, k, rtol=0.05, atol=0.05)
        assert "at once" in model.sources["cpu_slowdown"] and "stretch_scenario" in per.columns
    else:
        assert np.isclose(model.cpu_slowdown * cpu, kc * cpu, rtol=0.05, atol=0.05)
        assert "alternated" in model.sources["cpu_slowdown"]
    assert (per["off_cpu_share_none"] >= 0).all()


def test_host_slowdown_stores_its_provenance(tmp_path):
    import yaml

    from bench.testbed import hostload
    from bench.world.scenarios import load_interference_model

    model, per = hostload.fit(_timings(1.0, 1.0, 0.5, 0.5), _Tables(), {"a": 0, "b": 0}, 0.5, 0.5,
                              load_interference_model())
    prov = hostload.provenance(9, 5.0, (3.5, 2.0, 1.0), -10, (0,))
    path = hostload.write(tmp_path / "x_interference.yaml", model, per, (0.5, 0.5), prov)
    at = yaml.safe_load(path.read_text())["measured_at"]
    assert at["loadavg_1min_before"] == 3.5 and at["niceness"] == -10 and at["rounds"] == 9
    assert at["gap_ms"] == hostload.MAX_GAP_S * 1e3  # the pause is bounded
    assert at["measured_utc"].endswith("Z") and at["command"] and at["cpu_load"] == 0.5
    assert np.isclose(hostload.read(path).cpu_slowdown, 1.0)


def test_the_testbeds_own_work_runs_off_the_edges_cpus():
    from bench.testbed.live import SupportCpu, support_cpus

    assert support_cpus((0,), {0, 1}) == {1}
    assert support_cpus((0, 1), {0, 1, 2, 3}) == {2, 3}
    assert support_cpus((0,), {0}) == {0}  # a one-CPU host: nowhere else to go
    own = SupportCpu()
    own.add("shaper", 30.0)
    own.add("shaper", 10.0)
    assert own.timed("probes", lambda x: x + 1, 1) == 2
    per = own.per_request(4)
    assert per["shaper"] == 10.0 and per["probes"] >= 0 and per["children"] >= 0


def test_host_slowdown_fit_weighs_a_workload_by_how_much_the_load_can_slow_it():
    from bench.testbed import hostload
    from bench.world.scenarios import load_interference_model

    t = _timings(1.0, 1.0, 0.5, 0.5)
    # workload a's memory-bound part is 5 ms of 10: a 20 % noise on its stretch moves the fit a little;
    # a workload whose memory part were tiny would hardly move it at all (least squares on the slowed time)
    noisy = t.copy()
    sel = (noisy["workload"] == "a") & (noisy["setting"] == "mem")
    noisy.loc[sel, "latency_ms"] += 0.2 * 0.5 * 5.0
    model, per = hostload.fit(noisy, _Tables(), {"a": 0, "b": 0}, 0.5, 0.5, load_interference_model())
    x = np.array([0.5 * 5.0, 0.5 * 20.0])
    y = np.array([0.5 * 5.0 * 1.2, 0.5 * 20.0])
    assert np.isclose(model.mem_slowdown, (x @ y) / (x @ x))
    assert {"part_cpu_ms", "part_mem_ms", "k_cpu", "k_mem"} <= set(per.columns)


@settings(max_examples=50, deadline=None)
@given(text=st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=8)))
def test_dvfo_share_parser_accepts_exactly_the_unit_interval(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None and 0.0 <= value <= 1.0:
        assert loop.parse_xi(f"dvfo:{text}") == value
    else:
        with pytest.raises(loop.TestbedError, match="dvfo"):
            loop.parse_xi(f"dvfo:{text}")


# --------------------------------------------------------------------------- the queue on both sides

@given(st.lists(st.booleans(), min_size=1, max_size=10))
@settings(max_examples=40, deadline=None)
def test_fifo_resource_serves_turns_in_order_and_a_given_up_turn_keeps_no_place(give_up):
    from bench.testbed.edge import FifoResource

    res = FifoResource("cpu")
    turns = [res.turn() for _ in give_up]
    kept = [turns[0]]  # the first turn is granted at once: it cannot give up
    for turn, g in zip(turns[1:], give_up[1:]):
        if g:
            assert not turn.wait(0.0)  # still queued behind the held one: gives up
        else:
            kept.append(turn)
    for i, turn in enumerate(kept):
        assert turn.wait(0.0)
        if i + 1 < len(kept):
            assert not kept[i + 1]._ev.is_set()  # the next one waits until this one is released
        turn.release()
        turn.release()  # idempotent
    assert res.turn().wait(0.0)  # all released: the next request is served at once


def _twin(n=24, ia_ms=5.0, seed=1):
    import dataclasses

    import gymnasium as gym

    import bench.sim  # noqa: F401
    from bench.sim.envs import AUTOSCALE_ID

    env = gym.make(AUTOSCALE_ID, scenario="wifi_strong")
    env.reset(seed=seed)
    u = env.unwrapped
    states = u.episode().states.take(np.arange(n))
    states = dataclasses.replace(states, interarrival_ms=np.full(n, ia_ms))
    return u, states


def test_twin_sequence_is_the_kernels_queued_episode():
    """The twin's prediction of a live run is the kernel's own carried sequence (queues, transmitters,
    server queues) when it is told nothing about the radios, and it queues overlapping requests."""
    from bench.sim.core import Draws

    u, states = _twin()
    n, acts = len(states), u.action_table
    rng = np.random.default_rng(0)
    actions = rng.integers(0, len(acts), n)
    unknown = np.full((n, len(u.sim.links)), np.nan)
    pred = loop.twin_sequence(u.sim, states, actions, unknown)
    ref = u.sim.run_sequence(states, actions, Draws.neutral(n, len(u.sim.links)))
    np.testing.assert_allclose(pred.latency_ms, ref.latency_ms, rtol=1e-9)
    np.testing.assert_allclose(pred.phases["queue_ms"], ref.phases["queue_ms"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(pred.energy_mj, ref.energy_mj, rtol=1e-9)
    # back-to-back local requests (5 ms apart, each longer): each waits for the one before, FIFO
    local = int(acts.index[(acts["kind"] == "local")][0])
    same = np.full(n, local)
    q = loop.twin_sequence(u.sim, states, same, unknown)
    wait, dur = q.phases["queue_ms"], q.phases["local_ms"]
    assert wait[0] == 0 and (dur > 5.0).all()
    np.testing.assert_allclose(wait[1:], wait[:-1] + dur[:-1] - 5.0, rtol=1e-9)
    np.testing.assert_allclose(q.latency_ms, wait + dur, rtol=1e-9)


def test_twin_meets_the_live_radios_measured_state():
    """A radio the live side saw quiet for less than its tail needs no promotion; one quiet for longer does."""
    u, states = _twin(n=3, ia_ms=2000.0)
    acts = u.action_table
    off = int(acts.index[acts["kind"] != "local"][0])
    r = int(u.sim.routes[int(acts.at[off, "route"])].radio)
    tail = float(u.sim.links[r].tail_ms)
    quiet = np.full((3, len(u.sim.links)), np.nan)
    quiet[:, r] = [tail / 2, tail * 2, np.inf]
    pred = loop.twin_sequence(u.sim, states, np.full(3, off), quiet)
    promo = np.nan_to_num(pred.phases["promo_ms"])
    assert promo[0] == 0 and promo[1] > 0 and promo[2] > 0


def test_predicted_parts_add_up_to_the_predicted_latency():
    import pandas as pd

    u, states = _twin(n=30, ia_ms=20.0)
    acts = u.action_table
    rng = np.random.default_rng(3)
    actions = rng.integers(0, len(acts), 30)
    pred = loop.twin_sequence(u.sim, states, actions, np.full((30, len(u.sim.links)), np.nan))
    df = pd.DataFrame({"workload": np.asarray(u.sim.tables.workloads)[states.workload], "action": actions})
    loop.add_predicted_parts(df, u.sim, pred)
    ok = ~np.asarray(pred.timed_out, dtype=bool)
    total = df[["pred_local_ms", "pred_transfer_ms", "pred_server_ms", "pred_queue_ms"]].sum(axis=1).to_numpy()
    np.testing.assert_allclose(total[ok], pred.latency_ms[ok], rtol=1e-6, atol=1e-6)
    assert (df["pred_queue_ms"] > 0).any()  # 20 ms apart: some requests wait


def test_the_best_found_schedule_runs_under_either_name():
    from bench.policies.base import REGISTRY
    from bench.testbed.compare import runnable_policies

    names = {"bound_schedule", "best_found_schedule"}
    if not names & set(REGISTRY):
        pytest.skip("no best-found schedule policy in this build")
    assert runnable_policies(sorted(names), say=False) == sorted(names)
    assert all(loop.registered_name(n) in REGISTRY for n in names)
    assert loop.registered_name("cpu_only") == "cpu_only"


@given(st.floats(0.0, 1e4), st.floats(0.0, 1e4), st.integers(512, 1 << 20))
@settings(max_examples=60, deadline=None)
def test_a_probe_is_sized_to_a_bounded_airtime(a, b, most):
    lo, hi = sorted((a, b))
    s_lo, s_hi = loop.probe_size(lo, most), loop.probe_size(hi, most)
    assert loop.PROBE_MIN_BYTES <= s_lo <= s_hi <= most  # more goodput, a bigger probe, never past the cap
    assert loop.probe_size(None, most) == most
    if s_hi < most and hi > 0:
        assert s_hi * 8 / (hi * 1e6) <= loop.PROBE_AIRTIME_S * 1.0001 or s_hi == loop.PROBE_MIN_BYTES


def test_campaign_table_block_in_the_docs_is_generated_and_replaced(tmp_path):
    import pandas as pd

    from bench.testbed import compare

    summary = {"policy": "cpu_only", "scenario": "wifi_weak", "requests": 100, "latency_median_ms": 80.0,
               "latency_p95_ms": 120.0, "pred_latency_median_ms": 70.0, "pred_latency_p95_ms": 90.0,
               "latency_mape": 0.25, "local_mape": 0.2, "queue_mae_ms": 4.0, "timeouts": 0, "pred_timeouts": 1,
               "loadavg_start": [9.0, 8.0, 7.0], "loadavg_end": [11.0, 9.0, 7.0], "nice": -10}
    table = pd.DataFrame([compare.row_from_summary(summary)], columns=compare.COLUMNS)
    block = compare.markdown_table(table, {"loadavg_1min_min_max": [9.0, 11.0], "cpu_count": 2,
                                           "latency_mape_all": 0.25}, Path("results/testbed/c"))
    assert "| cpu_only / wifi_weak | 80 / 70 | 120 / 90 | 25% | 20% |  |  | 4 |  | 0 / 1 | 9.0-11.0 |" in block
    skipped = compare.markdown_table(
        pd.DataFrame([compare.row_from_summary({**summary, "parts_skipped_timed_out": 1})], columns=compare.COLUMNS),
        {"loadavg_1min_min_max": [9.0, 11.0], "cpu_count": 2}, Path("results/testbed/c"))
    assert "| 4 |  | 0 / 1 (1 out of parts) | 9.0-11.0 |" in skipped
    assert "load 9.0-11.0" in block and "niceness -10" in block
    doc = tmp_path / "doc.md"
    doc.write_text(f"# T\n\nbefore\n\n{compare.DOCS_START}\nold\n{compare.DOCS_END}\n\nafter\n")
    compare.update_docs(doc, block)
    compare.update_docs(doc, block)  # idempotent: one block, replaced in place
    text = doc.read_text()
    assert text.count(compare.DOCS_START) == 1 and "old" not in text and block in text
    assert text.index("before") < text.index(block) < text.index("after")
    res = subprocess.run([sys.executable, "-m", "bench", "testbed-stage", "--tabulate", "--out", str(tmp_path),
                          "--docs", str(tmp_path / "missing.md")], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "missing.md" in res.stderr


# --------------------------------------------------------------------------- rate in time, promotion hold

def _timeline(rates, ia_ms=100.0):
    rates = np.asarray(rates, dtype=float).reshape(-1, 1)
    n = len(rates)
    return loop.UploadTimeline(np.arange(n) * ia_ms, rates, rates, rates, rates, np.array([-1, 0]), np.array([0]), 1)


@given(st.lists(st.floats(0.05, 50.0), min_size=1, max_size=12), st.floats(0.0, 300.0), st.floats(1e3, 1e7))
@settings(max_examples=80, deadline=None)
def test_an_upload_moves_at_the_rates_in_force_while_it_runs(rates, start, bits):
    """The effective goodput sends exactly ``bits`` through the piecewise-constant rates from ``start``: it
    lies between the least and greatest rate the upload met, and equals the rate where that never changes."""
    tl = _timeline(rates)
    eff = tl.effective_mbps(0, 0, start, bits)
    dur = bits / (eff * 1e3)
    t0, t1 = start, start + dur
    sent = 0.0
    met = []
    for k, r in enumerate(rates):  # integrate the timeline over [t0, t1] independently of the implementation
        lo, hi = k * 100.0, (k + 1) * 100.0 if k + 1 < len(rates) else np.inf
        overlap = max(min(hi, t1) - max(lo, t0), 0.0)
        if overlap > 0 or (lo <= t0 < hi):
            met.append(r)
        sent += r * 1e3 * overlap
    assert sent == pytest.approx(bits, rel=1e-6)
    assert min(met) * (1 - 1e-9) <= eff <= max(met) * (1 + 1e-9)
    assert tl.effective_mbps(0, 0, start, bits) == pytest.approx(eff)
    const = _timeline([rates[0]] * len(rates))
    assert const.effective_mbps(0, 0, start, bits) == pytest.approx(rates[0], rel=1e-9)


def test_a_dead_link_to_the_end_never_finishes_the_upload():
    assert _timeline([5.0, 0.0, 0.0]).effective_mbps(0, 0, 0.0, 1e7) == 0.0


def test_the_twin_gives_an_upload_the_rates_of_its_time():
    """Without rate in time the twin is the kernel's sequence; with it, an upload that outlasts the next arrival
    finishes sooner when the rate rises meanwhile and later when it falls; a constant rate changes nothing."""
    import dataclasses

    u, states = _twin(n=4, ia_ms=100.0)
    acts = u.action_table
    off = next(int(i) for i in acts.index[acts["kind"] != "local"]
               if u.sim.links[u.sim.routes[int(acts.at[i, "route"])].radio].name == "wifi")
    n, unknown = len(states), np.full((len(states), len(u.sim.links)), np.nan)
    r = int(u.sim.routes[int(acts.at[off, "route"])].radio)

    big = u.sim.tables.workload_index(np.array(["mobilenet_v2"] * n))  # a 150 KB upload

    def with_caps(caps):
        return dataclasses.replace(states, cap_mbps=np.asarray(caps, dtype=float), workload=big)

    actions = np.array([off, 0, 0, 0])  # one offload, then local requests (nothing else on the radio)
    flat = loop.twin_sequence(u.sim, with_caps([2.0] * n), actions, unknown)
    kernel = loop.twin_sequence(u.sim, with_caps([2.0] * n), actions, unknown, rate_in_time=False)
    np.testing.assert_allclose(flat.latency_ms, kernel.latency_ms, rtol=1e-9)
    up = flat.phases["up_ms"][0]
    assert up > 100.0, "the test needs an upload that outlasts the next arrival"
    faster = loop.twin_sequence(u.sim, with_caps([2.0, 20.0, 20.0, 20.0]), actions, unknown)
    slower = loop.twin_sequence(u.sim, with_caps([2.0, 1.0, 1.0, 1.0]), actions, unknown)
    assert faster.phases["up_ms"][0] < up < slower.phases["up_ms"][0]
    assert faster.latency_ms[0] < flat.latency_ms[0] < slower.latency_ms[0]
    assert r >= 0


def test_a_radio_promotes_only_an_exchange_that_finds_it_quiet_for_a_tail():
    """The edge's view of the proxy's state machine: promotion only when nothing is active and the last exchange
    ended at least a tail ago; a radio never used is idle; no state machine, no promotion."""
    import time

    from bench.testbed.edge import Client, ClientPool

    pool = ClientPool("127.0.0.1", 9, radio_state=(80.0, 50.0))
    a, b = Client("127.0.0.1", 9), Client("127.0.0.1", 9)
    assert pool.begin_exchange() == 80.0  # never used: idle
    assert pool.begin_exchange() == 0.0  # another exchange is active
    a.last_end = b.last_end = time.perf_counter()
    pool.end_exchange(a)
    pool.end_exchange(b)
    assert pool.begin_exchange() == 0.0  # within the tail
    a.last_end = time.perf_counter() - 0.2
    pool.end_exchange(a)
    pool.last_end = time.perf_counter() - 0.2
    assert pool.begin_exchange() == 80.0  # quiet for longer than the tail
    assert ClientPool("127.0.0.1", 9).begin_exchange() == 0.0


def test_the_transmitter_is_held_through_the_promotion():
    """The proxy acknowledges the bytes as the shaper passes them and sends them a promotion later: the next
    upload may start only once the promoted one has left the emulated radio."""
    import os
    import threading
    import time

    from bench.testbed.edge import ClientPool, EdgeRunner, FifoResource

    class Fake:  # the socket drains at once; the answer comes 0.3 s later
        last_end = -np.inf
        last_server_cpu_ms = float("nan")  # what a real client holds when the server sent no CPU time

        def post(self, path, body, timeout_ms=None, on_uploaded=None):
            if on_uploaded is not None:
                on_uploaded()
            time.sleep(0.3)
            self.last_end = time.perf_counter()
            return np.zeros(4, dtype=np.float32).tobytes(), 300.0, 1.0, 0.0

    own = os.sched_getaffinity(0)
    try:
        edge = EdgeRunner(["lstm_text"], threads=1, cpus=tuple(sorted(own)))
    finally:
        os.sched_setaffinity(0, own)
    tx = FifoResource("tx")
    pool = ClientPool("127.0.0.1", 9, radio_state=(120.0, 1.0))
    first, second = tx.turn(), tx.turn()
    th = threading.Thread(target=edge.offload, args=("lstm_text", Fake()), kwargs={"transmitter": first, "radio": pool})
    t0 = time.perf_counter()
    th.start()
    assert second.wait(5.0)
    waited = time.perf_counter() - t0
    second.release()
    th.join()
    assert 0.12 <= waited < 0.3, waited  # held through the 120 ms promotion, released before the answer
    assert pool.active == 0


def test_the_server_profile_stored_with_the_host_profile_is_reused(tmp_path):
    """``--host-profile P``: the server's compute measured by an earlier run, stored beside P as
    ``<P>_server.yaml``, becomes the twin's cloud (validated; no server timing); a bad one is refused."""
    from bench.paths import DATA_DIR
    from bench.world.profiles import ProfileError, load_profile

    stored_dir, out = tmp_path / "stored", tmp_path / "out"
    stored_dir.mkdir()
    out.mkdir()
    (stored_dir / "testbed_edge.yaml").write_text((DATA_DIR / "profiles" / "peer_laptop.yaml").read_text())
    server = (DATA_DIR / "profiles" / "cloud_rtx3080.yaml").read_text()
    (stored_dir / "testbed_edge_server.yaml").write_text(server)
    cfg = loop.TestbedConfig(policy="cpu_only", scenario="wifi_weak",
                             host_profile=str(stored_dir / "testbed_edge.yaml"))
    info: dict = {}
    loop.server_profile(cfg, "192.0.2.1", out / "testbed_edge.yaml", out / "testbed_cloud.yaml", info)
    assert info["server_profile"].startswith("stored with the host profile")
    assert (out / "testbed_cloud.yaml").read_text() == server == (out / "testbed_edge_server.yaml").read_text()
    assert load_profile(out / "testbed_cloud.yaml").name == load_profile(stored_dir / "testbed_edge_server.yaml").name
    (stored_dir / "testbed_edge_server.yaml").write_text("name: broken\n")
    with pytest.raises(ProfileError):
        loop.server_profile(cfg, "192.0.2.1", out / "testbed_edge.yaml", out / "testbed_cloud.yaml", {})


def test_off_cpu_share_says_how_much_of_a_part_other_work_held():
    import pandas as pd

    df = pd.DataFrame({"local_ms": [10.0, 20.0, 40.0, 1.0], "local_cpu_ms": [10.0, 10.0, 10.0, np.nan],
                       "server_ms": [0.0, 8.0, 8.0, 8.0], "server_cpu_ms": [np.nan, 8.0, 8.4, 2.0]})
    out = loop.off_cpu_shares(df)
    assert out["local_off_cpu_share_median"] == pytest.approx(0.5)  # shares 0, 0.5, 0.75; the NaN row left out
    assert out["server_off_cpu_share_median"] == pytest.approx(0.0)  # 0, 0 (clipped), 0.75
    assert np.isnan(loop.off_cpu_shares(df.drop(columns=["local_cpu_ms"]))["local_off_cpu_share_median"])


def test_niceness_sets_and_restores_the_sessions_autogroup(tmp_path):
    """With sched_autogroup on, a task's niceness does not reach across sessions: the run's session group gets it
    too, and gets its own back afterwards; with it off (or absent) nothing is written."""
    group, enabled = tmp_path / "autogroup", tmp_path / "enabled"
    group.write_text("/autogroup-7 nice 3\n")
    enabled.write_text("1\n")
    own = os.getpriority(os.PRIO_PROCESS, 0)
    nice = min(own + 1, 19)  # raising the niceness needs no root
    assert loop.autogroup_nice(group, enabled) == 3
    with loop.niceness(nice, path=group, enabled=enabled):
        assert group.read_text().strip() == str(nice)
    assert group.read_text().strip() == "3"  # what the kernel's file takes (it then reads "/autogroup-7 nice 3")
    group.write_text("/autogroup-7 nice 3\n")
    assert "nice 3" in loop.scheduling_groups(enabled, group)
    enabled.write_text("0\n")
    group.write_text("/autogroup-7 nice 3\n")
    with loop.niceness(nice, path=group, enabled=enabled):
        assert group.read_text().startswith("/autogroup-7")
    assert loop.autogroup_nice(group, enabled) is None and "off" in loop.scheduling_groups(enabled, group)
    assert loop.autogroup_nice(tmp_path / "absent", enabled) is None
    if os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, 0, own)


def test_quick_fits_pause_the_scenarios_inter_arrival_time_unless_told(tmp_path):
    scen = tmp_path / "s.yaml"
    scen.write_text("interarrival_ms: 150\n")
    cfg = loop.TestbedConfig(policy="cpu_only", scenario="wifi_weak")
    assert loop.with_fit_gap(cfg, scen).fit_gap_ms == 150.0
    assert loop.with_fit_gap(dataclasses.replace(cfg, pace=False), scen).fit_gap_ms == 0.0
    assert loop.with_fit_gap(dataclasses.replace(cfg, fit_gap_ms=20.0), scen).fit_gap_ms == 20.0


class _AccountedCoRunners(_FakeCoRunners):
    """Co-runners whose CPU time the fake edge advances while an inference runs (``run_ms``)."""

    def __init__(self):
        super().__init__()
        self.ran_ms = 0.0

    def run_ms(self):
        return self.ran_ms


@settings(max_examples=20, deadline=None)
@given(kc=st.floats(0, 4), km=st.floats(0, 4), cpu=st.floats(0.1, 1), mem=st.floats(0.1, 1),
       bursts=st.lists(st.floats(0, 50), min_size=40, max_size=40))
def test_host_slowdown_by_cpu_accounting_leaves_out_any_unrelated_load(kc, km, cpu, mem, bursts):
    """Each inference's wall time = its CPU time + the stressors' meanwhile + an unrelated burst of any size, drawn
    per inference (no round-long background to pair away): the CPU-accounted stretch sees only the stressors."""
    from bench.testbed import hostload
    from bench.world.scenarios import load_interference_model

    corun = _AccountedCoRunners()
    t = _Tables()
    calls = []

    class Edge:
        def local(self, w, corunner_ms=None):
            from bench.testbed.edge import Timing

            i = t.workloads.index(w)
            pre, part = t.pre_ms[i, 0], t.pre_cpu_ms[i, 0] + t.pre_mem_ms[i, 0]
            lo = corun.load
            stressors = (kc * lo["cpu"] + km * lo["mem"]) * part
            r0 = corunner_ms()
            corun.ran_ms += stressors
            calls.append(w)
            return Timing(local_ms=pre + stressors + bursts[len(calls) % len(bursts)], local_cpu_ms=pre,
                          corunner_cpu_ms=corunner_ms() - r0)

    timings = hostload.time_settings(Edge(), corun, ["a", "b"], cpu, mem, rounds=5, gap_s=0.0)
    assert hostload.accounted(timings)
    model, per = hostload.fit(timings, t, {"a": 0, "b": 0}, cpu, mem, load_interference_model())
    k = kc * cpu + km * mem
    assert np.isclose(model.cpu_slowdown * cpu, k, rtol=1e-6, atol=1e-9)
    assert np.isclose(model.mem_slowdown * mem, k, rtol=1e-6, atol=1e-9)
    assert np.allclose(per["t0_ms"], [10.0, 20.0]) and "stressors' meanwhile" in model.sources["cpu_slowdown"]
    assert {"wall_stretch_scenario", "stretch_scenario"} <= set(per.columns)


class _BaseEdge:
    """An edge whose inference takes ``base[w]`` ms of its own CPU time, and whose co-runners (at any load) run
    ``k`` x that meanwhile (CPU-accounted, as on this host: they take the inference's CPU)."""

    def __init__(self, corun, base, k):
        self.corun, self.base, self.k, self.models = corun, base, k, dict.fromkeys(base)

    def local(self, w, corunner_ms=None):
        from bench.testbed.edge import Timing

        own = self.base[w]
        r0 = corunner_ms() if corunner_ms is not None else np.nan
        if any(v > 0 for v in self.corun.load.values()):
            self.corun.ran_ms += self.k * own
        r1 = corunner_ms() if corunner_ms is not None else np.nan
        return Timing(local_ms=own + (r1 - r0 if corunner_ms is not None else 0.0), local_cpu_ms=own,
                      corunner_cpu_ms=r1 - r0)


def _write_testbed_profiles(trace, out):
    """(edge path, cloud path) as the start's quick fit writes them, from ``trace``."""
    import yaml

    from bench.world.profiles import load_profile, profile_to_dict

    edge = out / "testbed_edge.yaml"
    loop.edge_profile_from_base(trace, edge, 1, {})
    cloud = out / "testbed_cloud.yaml"
    p = dataclasses.replace(load_profile(edge), name="testbed_cloud", kind="cloud", radios=())
    cloud.write_text(yaml.safe_dump(profile_to_dict(p), sort_keys=False))
    return edge, cloud


def test_the_twins_local_time_under_co_runners_is_its_base_times_the_stretch_from_one_measurement(tmp_path):
    """The campaign's 42 % cell (autoscale/cpu_corunner, campaign_accounted_nice-10): the twin predicted local
    compute as the start's quick fit (mobilenet_v2 41.5 ms CPU time) x the co-runner stretch measured later
    against its own baseline (31.1 ms, and 31.3 ms live): 96 ms against 65 ms live. Now the base is refitted
    from the same paced rounds that measure the stretch, so the twin's time is that baseline x that stretch,
    whatever the start's fit read; the fit's filler is timed without co-runners only."""
    import pandas as pd

    from bench.testbed import hostload

    base = {"mobilenet_v2": 31.1, "lstm_text": 10.2, "resnet18": 60.0}
    k = 1.2  # the stressors run 1.2 x the inference's CPU time meanwhile: stretch 2.2 for every workload
    start = pd.DataFrame([{"workload": w, "latency_ms": t * 1.33, "latency_p95_ms": t * 1.4, "n_runs": 9,
                           "cpu_mhz": 2600.0, "error": "", "meter": "none", "power_w": np.nan,
                           "latency_wall_ms": t * 1.33, "timed": "thread CPU time"} for w, t in base.items()])
    edge_path, cloud_path = _write_testbed_profiles(start, tmp_path)
    cfg = loop.TestbedConfig(policy="cpu_only", scenario="cpu_corunner")
    n = 12
    scen = loop.restricted_scenario(cfg.scenario, cfg.workloads, n, tmp_path)
    env0 = loop.twin_env(scen, edge_path, cloud_path, n)
    env0.reset(seed=cfg.seed)
    u0 = env0.unwrapped
    levels = hostload.scenario_levels(u0.trace.cpu_load[:n], u0.trace.mem_load[:n])
    assert min(levels) > 0  # both stressors: the scenario's own setting
    corun = _AccountedCoRunners()
    edge = _BaseEdge(corun, base, k)
    prof: dict = {}
    model, info = loop.host_interference(cfg, edge, corun, u0.sim.tables, u0.action_table, levels, edge_path,
                                         gap_s=0.0, prof_info=prof)
    assert info["interference"].startswith("measured here")
    assert prof["edge_base_ms"] == pytest.approx(base)
    assert (tmp_path / "testbed_edge_provisional.yaml").is_file()
    assert (tmp_path / "host_quick_trace_edge_provisional.csv").is_file()
    timings = pd.read_csv(tmp_path / "testbed_edge_interference_timings.csv")
    assert set(timings.loc[timings["workload"] == "resnet18", "setting"]) == {"none"}  # the filler: base only
    assert set(timings.loc[timings["workload"] == "mobilenet_v2", "setting"]) == {"none", "cpu", "mem", "scenario"}

    env = loop.twin_env(scen, edge_path, cloud_path, n, model)
    env.reset(seed=cfg.seed)
    u = env.unwrapped
    acts = u.action_table
    cpu = int(acts[(acts["kind"] == "local") & (acts["target"] == "cpu")].index[-1])
    states = u.episode().states.take(np.arange(n))
    states = dataclasses.replace(states, interarrival_ms=np.full(n, 1e4))  # no queueing: compute alone
    pred = loop.twin_sequence(u.sim, states, np.full(n, cpu), np.full((n, len(u.sim.links)), np.nan))
    df = pd.DataFrame({"workload": np.asarray(u.sim.tables.workloads)[states.workload], "action": cpu})
    loop.add_predicted_parts(df, u.sim, pred)
    at_level = (np.isclose(u.trace.cpu_load[:n], levels[0]) & np.isclose(u.trace.mem_load[:n], levels[1]))
    assert at_level.any()
    for w, p_ms in zip(df["workload"][at_level], df["pred_local_ms"][at_level]):
        assert p_ms == pytest.approx(base[w] * (1 + k), rel=0.03)  # the measured baseline x the measured stretch
        assert abs(p_ms / (base[w] * 1.33 * (1 + k)) - 1) > 0.2  # not the start's fit x it (the 42 % cell)


@settings(max_examples=30, deadline=None)
@given(cpu=st.lists(st.floats(1, 100), min_size=6, max_size=6), stretch=st.floats(1, 3))
def test_the_edges_base_is_the_median_cpu_time_without_co_runners(cpu, stretch):
    import pandas as pd

    from bench.testbed import hostload

    rows = []
    for r, c in enumerate(cpu):
        for w, f in (("a", 1.0), ("b", 0.5)):
            rows.append({"round": r, "setting": "none", "workload": w, "latency_ms": c * f + 1, "cpu_ms": c * f,
                         "corunner_cpu_ms": 0.0})
            rows.append({"round": r, "setting": "scenario", "workload": w, "latency_ms": c * f * stretch,
                         "cpu_ms": c * f * 1.1, "corunner_cpu_ms": c * f * (stretch - 1)})
    t = hostload.base_trace(pd.DataFrame(rows), 2600.0).set_index("workload")
    assert t.at["a", "latency_ms"] == pytest.approx(float(np.median(cpu)))
    assert t.at["b", "latency_ms"] == pytest.approx(0.5 * float(np.median(cpu)))
    assert t.at["a", "latency_wall_ms"] == pytest.approx(float(np.median(cpu)) + 1)
    assert (t["n_runs"] == 6).all() and (t["timed"] == "thread CPU time").all()
    # more than one torch thread: the wall clock (the thread's CPU time is not the inference's)
    assert hostload.base_trace(pd.DataFrame(rows), 2600.0, threads=2).at[0, "timed"] == "wall clock"


def test_live_cpu_time_over_the_twins_base_per_workload():
    import pandas as pd

    df = pd.DataFrame({"workload": ["a", "a", "a", "b", "b"], "target": ["cpu", "cpu", "cpu", "cpu", "cloud"],
                       "timed_out": [False, False, True, False, False], "local_cpu_ms": [30.0, 32.0, 90.0, 9.0, 1.0]})
    assert loop.local_cpu_over_base(df, {"a": 40.0, "b": 10.0}) == pytest.approx({"a": 31.0 / 40.0, "b": 0.9})
    assert loop.local_cpu_over_base(df, {}) == {}


def test_without_co_runners_the_edges_base_is_still_timed_just_before_the_requests(tmp_path):
    import pandas as pd

    base = {"mobilenet_v2": 25.0, "lstm_text": 7.0, "resnet18": 50.0}
    start = pd.DataFrame([{"workload": w, "latency_ms": t * 0.8, "latency_p95_ms": t, "n_runs": 9,
                           "cpu_mhz": 2600.0, "error": "", "meter": "none", "power_w": np.nan,
                           "latency_wall_ms": t * 0.8, "timed": "thread CPU time"} for w, t in base.items()])
    edge_path, cloud_path = _write_testbed_profiles(start, tmp_path)
    cfg = loop.TestbedConfig(policy="cpu_only", scenario="wifi_weak")
    scen = loop.restricted_scenario(cfg.scenario, cfg.workloads, 4, tmp_path)
    u0 = loop.twin_env(scen, edge_path, cloud_path, 4).unwrapped
    for corun in (None, _AccountedCoRunners()):  # co-runners off, or on with a scenario that loads nothing
        edge, prof = _BaseEdge(_AccountedCoRunners(), base, 1.0), {}
        model, info = loop.host_interference(cfg, edge, corun, u0.sim.tables, u0.action_table, (0.0, 0.0),
                                             edge_path, gap_s=0.0, prof_info=prof)
        assert info["interference"].startswith("none") and model.cpu_slowdown == 0
        assert prof["edge_base_ms"] == pytest.approx(base) and "no co-runner" in prof["edge_base"]
        assert not (tmp_path / "testbed_edge_interference_timings.csv").exists()


class _DriftingEdge(_BaseEdge):
    """:class:`_BaseEdge` on a host whose own speed moves with time: the ``k``-th inference of the whole run takes
    ``speed(k)`` x its base (what campaign_base_nice-10's autoscale/cpu_corunner met: the live CPU time's last
    quarter 0.66-0.74 of its first). Records the co-runners' load each inference met."""

    def __init__(self, corun, base, k, speed):
        super().__init__(corun, base, k)
        self.speed, self.calls, self.loads = speed, 0, []

    def local(self, w, corunner_ms=None):
        tim = super().local(w, corunner_ms)
        f = self.speed(self.calls)
        self.calls += 1
        self.loads.append(dict(self.corun.load))
        return dataclasses.replace(tim, local_ms=tim.local_ms * f, local_cpu_ms=tim.local_cpu_ms * f,
                                   corunner_cpu_ms=tim.corunner_cpu_ms * f)


def test_alone_rounds_record_their_position_in_the_measurement():
    """Every timed inference says where it stood (phase, place, time, the setting just before it): what tells a
    co-runner's residue (hostload.residue) and a drifting host (hostload.base_drift) from the rest."""
    from bench.testbed import hostload

    corun = _AccountedCoRunners()
    edge = _BaseEdge(corun, {"a": 10.0, "b": 20.0}, 1.0)
    t = hostload.time_settings(edge, corun, ["a", "b"], 0.9, 0.2, rounds=3, gap_s=0.0, phase="after")
    assert set(hostload.POSITION_COLUMNS) <= set(t.columns) and (t["phase"] == "after").all()
    assert list(t["seq"]) == list(range(len(t))) and (np.diff(t["t_s"].to_numpy()) >= 0).all()
    assert t["after"].iloc[0] == "start" and list(t["after"].iloc[1:]) == list(t["setting"].iloc[:-1])


def test_the_twins_base_is_bracketed_around_the_requests_on_a_host_whose_speed_drifts(tmp_path):
    """The 25 % cell (campaign_base_nice-10, autoscale/cpu_corunner): the host's speed moved during the run, so a
    base timed only before the requests read it as it was then (live over base 0.62 / 0.83). With as many alone
    rounds right after the requests (co-runners set to nothing first), the pooled median meets a drift linear in
    time in the requests' window; the drift is recorded, the start's fit and the before-only base are kept."""
    import pandas as pd

    base = {"mobilenet_v2": 31.1, "lstm_text": 10.2, "resnet18": 60.0}
    start = pd.DataFrame([{"workload": w, "latency_ms": t, "latency_p95_ms": t, "n_runs": 9, "cpu_mhz": 2600.0,
                           "error": "", "meter": "none", "power_w": np.nan, "latency_wall_ms": t,
                           "timed": "thread CPU time"} for w, t in base.items()])
    edge_path, cloud_path = _write_testbed_profiles(start, tmp_path)
    (tmp_path / "testbed_edge.yaml").replace(tmp_path / "start.yaml")  # the start's fit, as host_profiles leaves it
    (tmp_path / "start.yaml").replace(edge_path)
    cfg = loop.TestbedConfig(policy="cpu_only", scenario="cpu_corunner")
    n = 8
    scen = loop.restricted_scenario(cfg.scenario, cfg.workloads, n, tmp_path)
    u0 = loop.twin_env(scen, edge_path, cloud_path, n).unwrapped
    levels = (0.9, 0.2)
    corun = _AccountedCoRunners()
    total = 9 * (2 * 4 + 1) + 40 + 9 * 3  # before (2 served x 4 settings + the filler), 40 requests, after
    edge = _DriftingEdge(corun, base, 1.0, lambda k: 1.0 - 0.35 * k / total)  # 35 % faster by the run's end
    prof: dict = {}
    timed: list = []
    loop.host_interference(cfg, edge, corun, u0.sim.tables, u0.action_table, levels, edge_path, gap_s=0.0,
                           prof_info=prof, timed=timed)
    before_only = dict(prof["edge_base_ms"])
    corun.set_load(0.9, 0.2)  # the requests' co-runners
    live = {w: [] for w in base}
    for i in range(40):
        w = ("mobilenet_v2", "lstm_text")[i % 2]
        live[w].append(edge.local(w).local_cpu_ms)
    n_before = edge.calls
    pooled = loop.bracket_base(cfg, edge, corun, timed[0], edge_path, prof, gap_s=0.0)
    assert all(lo == {"cpu": 0.0, "mem": 0.0} for lo in edge.loads[n_before:])  # alone: the co-runners set to 0
    assert set(pooled["phase"]) == {"before", "after"} and set(pooled["setting"]) == {"none"}
    assert (pooled["phase"] == "after").sum() == (pooled["phase"] == "before").sum() == 9 * 3
    for w in ("mobilenet_v2", "lstm_text"):
        mid = float(np.median(live[w]))
        assert prof["edge_base_ms"][w] == pytest.approx(mid, rel=0.03)  # the requests' own speed
        assert abs(before_only[w] / mid - 1) > 0.1  # what the old base (before only) read: >10 % off
        assert prof["edge_base_drift"][w] == pytest.approx(0.7, abs=0.08)  # recorded, not corrected
    # the residue ratio is recorded per workload (NaN where no alone inference followed another alone one)
    assert {"mobilenet_v2", "lstm_text", "resnet18"} <= set(prof["edge_base_residue"])
    assert "bracketed" in prof["edge_base"]
    assert (tmp_path / "testbed_edge_provisional.yaml").is_file()  # the start's fit, not overwritten
    assert (tmp_path / "testbed_edge_before_requests.yaml").is_file()
    assert (tmp_path / "testbed_edge_base_timings.csv").is_file()
    from bench.world.profiles import load_profile

    assert load_profile(edge_path).name == "testbed_edge"


def _alone(values_before, values_after, after_setting):
    import pandas as pd

    rows = []
    for phase, vals in (("before", values_before), ("after", values_after)):
        for i, v in enumerate(vals):
            rows.append({"round": i, "setting": "none", "workload": "w", "latency_ms": v + 1.0, "cpu_ms": v,
                         "corunner_cpu_ms": 0.0, "phase": phase, "seq": i, "t_s": float(i),
                         "after": after_setting(i)})
    return pd.DataFrame(rows)


@settings(max_examples=40, deadline=None)
@given(before=st.lists(st.floats(1, 200), min_size=1, max_size=12),
       after=st.lists(st.floats(1, 200), min_size=1, max_size=12))
def test_the_bracketed_base_lies_between_both_sides_and_the_drift_is_their_ratio(before, after):
    from bench.testbed import hostload

    t = _alone(before, after, lambda i: "start")
    b, a = float(np.median(before)), float(np.median(after))
    base = float(hostload.base_trace(t, 2600.0).at[0, "latency_ms"])
    assert min(a, b) * (1 - 1e-12) <= base <= max(a, b) * (1 + 1e-12)
    assert hostload.base_drift(t)["w"] == pytest.approx(a / b, rel=1e-9)
    assert np.isnan(hostload.base_drift(t[t["phase"] == "before"])["w"])  # one side only: no drift to read


@settings(max_examples=40, deadline=None)
@given(vals=st.lists(st.floats(1, 200), min_size=4, max_size=20), f=st.floats(0.5, 2.0),
       pattern=st.lists(st.sampled_from(["none", "cpu", "mem", "scenario", "start"]), min_size=20, max_size=20))
def test_a_co_runners_residue_scales_the_residue_ratio_by_itself(vals, f, pattern):
    """Alone inferences after a co-runner setting read ``f`` x slower: the residue ratio moves by exactly ``f``
    (it is a ratio of medians, each relative to the workload's median), whatever the values and the order."""
    from bench.testbed import hostload

    t = _alone(vals, [], lambda i: pattern[i])
    co = t["after"].isin(["cpu", "mem", "scenario"])
    r0 = hostload.residue(t)["w"]
    if not co.any() or co.all():
        assert np.isnan(r0)
        return
    t2 = t.assign(cpu_ms=np.where(co, t["cpu_ms"] * f, t["cpu_ms"]))
    assert hostload.residue(t2)["w"] == pytest.approx(f * r0, rel=1e-9)
    assert hostload.residue(t.drop(columns=["after"])) == {}  # timings from before positions were recorded


@settings(max_examples=40, deadline=None)
@given(drift=st.dictionaries(st.sampled_from(["a", "b", "c"]),
                             st.one_of(st.floats(0.1, 10), st.just(float("nan"))), max_size=3))
def test_the_campaign_table_shows_each_runs_base_drift_farthest_from_one(drift):
    from bench.testbed.compare import base_drift

    finite = [v for v in drift.values() if np.isfinite(v)]
    got = base_drift({"profile_edge_base_drift": drift})
    if not finite:
        assert got is None
    else:
        assert got in finite and all(abs(got - 1) >= abs(v - 1) for v in finite)
    assert base_drift({}) is None  # a run from before the bracket


@settings(max_examples=40, deadline=None)
@given(ranges=st.dictionaries(st.sampled_from(["a", "b"]),
                              st.lists(st.one_of(st.floats(0.1, 10), st.just(float("nan"))), min_size=2, max_size=2),
                              max_size=2))
def test_the_campaign_table_shows_how_far_each_runs_local_base_moved(ranges):
    from bench.testbed.compare import base_factor_span

    finite = [v for lo_hi in ranges.values() for v in lo_hi if np.isfinite(v)]
    got = base_factor_span({"pred_base_factor_range": ranges})
    assert got == ((min(finite), max(finite)) if finite else (None, None))
    assert base_factor_span({}) == (None, None)  # a run without alone blocks


# --------------------------------------------------------------------------- the time-local base (issue 24)

def _speed(shape: str, peak: float, t, span: float):
    """A host's speed factor over the request window [0, span]: 1 outside it; ``step``: ``peak`` over its middle
    third; ``ramp``: from 1 to ``peak`` at the middle and back (both turn within the run, as in
    campaign_bracketed_nice-10's 26 % cell: slow on both sides, fast in the middle)."""
    t = np.asarray(t, dtype=float)
    x = np.clip(t / span, 0.0, 1.0)
    if shape == "step":
        return np.where((x >= 1 / 3) & (x < 2 / 3), peak, 1.0)
    return 1.0 + (peak - 1.0) * (1.0 - np.abs(2.0 * x - 1.0))


@settings(max_examples=40, deadline=None)
@given(base=st.floats(5.0, 100.0), peak=st.one_of(st.floats(0.6, 0.85), st.floats(1.2, 1.6)),
       shape=st.sampled_from(["step", "ramp"]), spacing=st.floats(0.5, 4.0), n_blocks=st.integers(12, 24),
       noise=st.lists(st.floats(-0.01, 0.01), min_size=64, max_size=64))
def test_the_local_base_follows_a_drift_that_turns_within_the_run_and_the_pooled_one_does_not(
        base, peak, shape, spacing, n_blocks, noise):
    """Alone samples before the requests, one per block between them and after them on a host whose speed steps
    or ramps and turns back within the run: each request's base (the median of the 3 samples nearest it in time)
    is the host's speed then, to within the drift over two blocks and the samples' noise; the pooled base (the
    bracket) misses the middle by the whole excursion."""
    from bench.testbed import localbase

    span = (n_blocks + 1) * spacing
    t = np.concatenate([np.linspace(-5.0, -0.5, 9), spacing * np.arange(1, n_blocks + 1),
                        span + np.linspace(0.5, 5.0, 9)])
    v = base * _speed(shape, peak, t, span) * (1.0 + np.resize(np.asarray(noise), len(t)))
    q = np.linspace(0.0, span, 10 * (n_blocks + 1))
    truth = base * _speed(shape, peak, q, span)
    local = localbase.nearest_median(t, v, q)
    pooled = localbase.pooled_median(v)
    err = np.abs(local / truth - 1.0)
    if shape == "step":  # away from the steps, the three nearest samples all lie on the request's side
        edges = np.array([span / 3, 2 * span / 3])
        far = np.abs(q[:, None] - edges[None, :]).min(axis=1) > 2.0 * spacing
        assert far.any()
        assert (err[far] <= 0.011 / min(peak, 1.0) + 1e-9).all()
    else:  # within the ramp's drift over two blocks (the nearest three lie within that) plus the noise
        slope = 2.0 * abs(peak - 1.0) / span
        assert (err <= (slope * 2.0 * spacing + 0.011 * max(peak, 1.0)) / min(peak, 1.0) + 1e-9).all()
    old = np.abs(pooled / truth - 1.0)
    assert old.max() >= 0.1  # the bracket's pooled base misses the middle of the run
    assert err.mean() < old.mean() / 2  # (at a step itself the nearest samples lag it by up to a block)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0.1, 1e3)),
                       min_size=0, max_size=20),
       q=st.floats(-50, 50), nearest=st.integers(1, 5))
def test_the_local_base_drops_samples_that_are_not_a_time(values, q, nearest):
    """NaN, infinite, zero or negative samples never enter a base; with none usable the base is NaN (the caller
    then keeps the pooled one); otherwise it lies within the usable samples."""
    from bench.testbed import localbase

    t = np.arange(len(values), dtype=float)
    v = np.asarray(values, dtype=float)
    out = localbase.nearest_median(t, v, [q], nearest)
    ok = v[np.isfinite(v) & (v > 0)] if len(v) else v
    if not len(ok):
        assert np.isnan(out[0]) and np.isnan(localbase.pooled_median(v))
    else:
        assert ok.min() - 1e-9 <= out[0] <= ok.max() + 1e-9
        assert ok.min() - 1e-9 <= localbase.pooled_median(v) <= ok.max() + 1e-9


def test_one_bad_sample_among_the_nearest_moves_no_base_and_missing_workloads_keep_the_pooled_one():
    import pandas as pd

    from bench.testbed import localbase

    t = np.arange(6, dtype=float)
    v = np.array([10.0, 10.0, 10.0, 100.0, 10.0, 10.0])  # one inference descheduled for long, among the nearest
    assert localbase.nearest_median(t, v, [3.0])[0] == pytest.approx(10.0)
    assert np.isnan(localbase.nearest_median(t, v, [np.nan])[0])  # a request without an arrival time: none
    assert np.isnan(localbase.nearest_median([], [], [1.0])[0])
    with pytest.raises(ValueError):
        localbase.nearest_median([1.0, 2.0], [1.0], [1.0])
    with pytest.raises(ValueError):
        localbase.nearest_median(t, v, [1.0], nearest=0)
    alone = pd.DataFrame({"workload": ["a"] * 4 + ["b"] * 2, "run_s": [0.0, 1.0, 2.0, 3.0, 0.0, 1.0],
                          "cpu_ms": [10.0, 10.0, 20.0, 20.0, np.nan, -1.0]})
    base, factor = localbase.request_bases(alone, ["a", "a", "b", "c"], [0.0, 3.0, 0.5, 0.5], "cpu_ms",
                                           pooled={"a": 15.0, "b": 7.0})
    assert base[0] == pytest.approx(10.0) and factor[0] == pytest.approx(10.0 / 15.0)
    assert base[1] == pytest.approx(20.0) and factor[1] == pytest.approx(20.0 / 15.0)
    assert base[2] == 7.0 and factor[2] == 1.0  # no usable sample of b: its pooled base, unchanged
    assert np.isnan(base[3]) and factor[3] == 1.0  # a workload never timed alone: the profile's time stands


def test_the_schedule_holds_for_an_alone_block_and_every_later_arrival_moves_by_it():
    from bench.testbed.live import Dispatcher

    clock = Dispatcher(200.0, pace=True, workers=1)
    clock.start()
    t0 = clock.t0
    assert clock.arrival(3) == pytest.approx(t0 + 0.6)
    clock.hold(3)
    assert clock.arrival(2) == pytest.approx(t0 + 0.4) and clock.arrival(3) == np.inf  # the shaper waits
    assert clock.resume(3, t0 + 2.0) == pytest.approx(1400.0)
    assert clock.arrival(3) == pytest.approx(t0 + 2.0) and clock.arrival(4) == pytest.approx(t0 + 2.2)
    clock.hold(6)
    assert clock.resume(6, t0) == 0.0  # a block that ended before the arrival adds no pause
    np.testing.assert_allclose(clock.pause_ms(7), [0, 0, 0, 1400.0, 0, 0, 0])
    clock.results()
    with pytest.raises(loop.TestbedError, match="base-every"):
        loop.TestbedConfig(policy="cpu_only", scenario="cpu_corunner", base_every=-1)


def test_the_twins_local_time_takes_each_requests_base_factor():
    u, states = _twin(n=4, ia_ms=1e4)  # no queueing: each request's compute alone
    acts = u.action_table
    cpu = int(acts[(acts["kind"] == "local") & (acts["target"] == "cpu")].index[-1])
    unknown = np.full((4, len(u.sim.links)), np.nan)
    same = loop.twin_sequence(u.sim, states, np.full(4, cpu), unknown)
    moved = loop.twin_sequence(u.sim, states, np.full(4, cpu), unknown,
                               local_factor=np.array([1.0, 0.8, 1.25, 1.0]))
    np.testing.assert_allclose(moved.phases["local_ms"], same.phases["local_ms"] * [1.0, 0.8, 1.25, 1.0], rtol=1e-9)
    np.testing.assert_allclose(loop.twin_sequence(u.sim, states, np.full(4, cpu), unknown,
                                                  local_factor=np.ones(4)).latency_ms, same.latency_ms, rtol=1e-12)


def test_alone_blocks_between_the_requests_give_each_its_base_on_a_host_fast_in_the_middle(tmp_path, monkeypatch):
    """campaign_bracketed_nice-10's 26 % cell: the alone rounds after the requests read 1.3x those before, the
    requests ran at 0.80-0.85x the pooled base - the host fast in the middle, slow on both sides, which the bracket
    cannot cancel. With a block of alone inferences every 5 requests (co-runners set to nothing; one inference with
    them at the measured levels beside it) each request's base follows the host's speed where the pooled one
    (the old code's) is off by up to the whole excursion; the blocks' stretch is recorded beside the twin's."""
    import types

    import pandas as pd

    from bench.testbed import hostload

    # The host's clock moves only as its inferences run (each by its own latency): the bases are interpolated in
    # time, and with the real clock a CI host that stalled between two blocks moved them apart (0.134 > 0.12, once)
    clock = types.SimpleNamespace(now=1000.0)
    fake_time = types.SimpleNamespace(perf_counter=lambda: clock.now, thread_time=lambda: clock.now,
                                      sleep=lambda s: None)
    monkeypatch.setattr(hostload, "time", fake_time)
    monkeypatch.setattr(loop, "time", fake_time)

    class _TimedDriftingEdge(_DriftingEdge):
        def local(self, w, corunner_ms=None):
            tim = super().local(w, corunner_ms)
            clock.now += tim.local_ms / 1e3
            return tim

    base = {"mobilenet_v2": 31.1, "lstm_text": 10.2, "resnet18": 60.0}
    start = pd.DataFrame([{"workload": w, "latency_ms": t, "latency_p95_ms": t, "n_runs": 9, "cpu_mhz": 2600.0,
                           "error": "", "meter": "none", "power_w": np.nan, "latency_wall_ms": t,
                           "timed": "thread CPU time"} for w, t in base.items()])
    edge_path, cloud_path = _write_testbed_profiles(start, tmp_path)
    cfg = loop.TestbedConfig(policy="cpu_only", scenario="cpu_corunner", base_every=5)
    n, k = 40, 1.2
    scen = loop.restricted_scenario(cfg.scenario, cfg.workloads, n, tmp_path)
    u0 = loop.twin_env(scen, edge_path, cloud_path, n).unwrapped
    levels = (0.9, 0.2)
    corun = _AccountedCoRunners()
    before = 9 * (2 * 4 + 1)  # before the requests: 2 served x 4 settings + the filler
    window = n + (n // 5 - 1) * 2 * 2  # the requests and 7 blocks of 2 workloads x 2 settings
    edge = _TimedDriftingEdge(corun, base, k, lambda c: 1.0 if not before <= c < before + window
                              else float(_speed("ramp", 0.75, c - before, window)))
    prof: dict = {}
    timed: list = []
    loop.host_interference(cfg, edge, corun, u0.sim.tables, u0.action_table, levels, edge_path, gap_s=0.0,
                           prof_info=prof, timed=timed)
    served = list(cfg.workloads)
    time_perf = fake_time.perf_counter
    origin = time_perf()
    arrivals, workloads, live, blocks = [], [], [], []
    for i in range(n):
        if i and i % cfg.base_every == 0:
            calls = edge.calls
            blocks.append(loop.alone_block(edge, corun, served, levels, 0.0, len(blocks)))
            got = blocks[-1]
            loads = edge.loads[calls:]
            assert [lo == {"cpu": 0.0, "mem": 0.0} for lo in loads] == list(got["setting"] == "none")
            assert corun.load == {"cpu": 0.0, "mem": 0.0}  # left at nothing: the caller gives the world's back
            assert set(got["setting"]) == {"none", "scenario"} and (got["phase"] == "during").all()
        corun.set_load(*levels)  # the requests' co-runners
        w = served[i % 2]
        arrivals.append(time_perf() - origin)
        workloads.append(w)
        live.append(edge.local(w).local_cpu_ms)
    assert edge.calls == before + window
    first = [b["setting"].iloc[0] for b in blocks]
    assert first[0] != first[1]  # the order within a block alternates
    pooled = loop.bracket_base(cfg, edge, corun, timed[0], edge_path, prof, gap_s=0.0,
                               during=pd.concat(blocks, ignore_index=True), origin_s=origin)
    assert set(pooled["phase"]) == {"before", "during", "after"} and (pooled["setting"] == "none").all()
    assert "run_s" in pooled.columns and (pooled.loc[pooled["phase"] == "before", "run_s"] < 0).all()
    df = pd.DataFrame({"workload": workloads, "arrival_s": arrivals})
    got, factor = loop.request_bases(pooled, df, prof)
    live = np.asarray(live)
    local_err = np.abs(got / live - 1.0)
    pooled_ms = np.array([prof["edge_base_ms"][w] for w in workloads])
    old_err = np.abs(pooled_ms / live - 1.0)  # the bracket's pooled base, the old code's
    assert old_err.max() > 0.2 and np.median(local_err) < 0.05 and local_err.max() < 0.12
    assert local_err.mean() < old_err.mean() / 2
    np.testing.assert_allclose(got, pooled_ms * factor, rtol=1e-9)
    assert prof["edge_base_blocks"] == 7 and "nearest it in time" in prof["edge_base"]
    assert prof["edge_stretch_setting"] == "scenario"
    for w in served:  # the blocks' stretch, paired one inference apart (the host moves a little between them)
        assert prof["edge_stretch_interleaved"][w] == pytest.approx(1 + k, rel=0.03)
        assert prof["edge_stretch_interleaved_over_before"][w] == pytest.approx(1.0, rel=0.03)
    inter = pd.read_csv(tmp_path / "testbed_edge_interleaved_timings.csv")
    assert len(inter) == 7 * 2 * 2 and "run_s" in inter.columns
    # without blocks (--base-every 0): the pooled base, factor 1 - the bracket as before
    same, one = loop.request_bases(pooled[pooled["phase"] != "during"], df, prof)
    assert (one == 1.0).all() and np.allclose(same, pooled_ms)


@pytest.mark.parametrize("entry", ["testbed", "testbed-stage"])
def test_a_negative_base_every_is_one_line_and_exit_2(entry, tmp_path, capsys):
    from bench.testbed import cli, compare

    out = tmp_path / "out"
    if entry == "testbed":
        rc = cli.main(["--policy", "cpu_only", "--scenario", "wifi_weak", "--base-every", "-1", "--out", str(out)])
    else:
        rc = compare.main(["--base-every", "-1", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--base-every" in err and "-1" in err
    assert not out.exists()  # nothing half-made
