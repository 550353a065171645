import numpy as np
import pytest
import yaml

from bench.world.network import NETWORK_DIR, NetworkError, link_from_dict, list_links, load_link


@pytest.mark.parametrize("name", ["wifi", "lte"])
def test_weaker_signal_means_slower_lossier_costlier(name):
    link = load_link(name)
    s = np.array([link.level_dbm(k) for k in ("strong", "medium", "weak")])
    up = link.uplink_goodput_mbps(s)
    assert np.all(np.diff(up) < 0)
    assert np.all(np.diff(link.loss_prob(s)) > 0)
    bits = 8e6  # 1 MB
    e = link.transfer(bits, s)["energy_mj"]
    assert np.all(np.diff(e) > 0)


def test_every_number_has_a_source():
    for name in list_links():
        with open(NETWORK_DIR / f"{name}.yaml") as fh:
            data = yaml.safe_load(fh)
        for key, val in data.items():
            if key in ("name", "description"):
                continue
            assert val["source"].strip(), (name, key)


def test_lte_power_constants_follow_huang():
    lte = load_link("lte")
    # P = beta + alpha_u * throughput (Huang et al. 2012): 1 Mbit/s up, strong signal
    assert lte.uplink_power_w(1.0, -60.0) == pytest.approx((lte.base_mw + lte.uplink_mw_per_mbps) / 1e3)
    assert "Huang" in lte.sources["uplink_mw_per_mbps"] and "Huang" in lte.sources["tail_ms"]


def test_unknown_field_is_named():
    with open(NETWORK_DIR / "wifi.yaml") as fh:
        data = yaml.safe_load(fh)
    data["rtt_msec"] = {"value": 1, "source": "x"}
    with pytest.raises(NetworkError, match="rtt_msec.*allowed"):
        link_from_dict(data)


def test_min_usable_signal_is_read_or_derived():
    from bench.world.network import link_from_dict, load_link
    import yaml
    from bench.paths import DATA_DIR

    assert load_link("wifi").min_usable_dbm == -82.0  # sourced in wifi.yaml
    data = yaml.safe_load((DATA_DIR / "network" / "lte.yaml").read_text())
    data.pop("min_usable_dbm", None)
    lte = link_from_dict(data)
    alive = lte.signal_dbm[lte.uplink_mbps > 0]
    assert lte.min_usable_dbm == alive.min() and "derived" in lte.sources["min_usable_dbm"]
