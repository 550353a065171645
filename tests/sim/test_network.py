import numpy as np
import pytest
import yaml

from bench.world.network import (NETWORK_DIR, NetworkError, link_from_dict, list_links, list_radio_profiles, load_link,
                                  profile_dir)


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


@pytest.mark.parametrize("profile", ["era2018", "huang2012"])
def test_every_number_has_a_source(profile):
    for name in list_links(profile=profile):
        with open(profile_dir(profile) / f"{name}.yaml") as fh:
            data = yaml.safe_load(fh)
        for key, val in data.items():
            if key in ("name", "description"):
                continue
            assert val["source"].strip(), (name, key)


def test_lte_power_constants_follow_huang():
    lte = load_link("lte", profile="huang2012")
    # P = beta + alpha_u * throughput (Huang et al. 2012): 1 Mbit/s up, strong signal
    assert lte.uplink_power_w(1.0, -60.0) == pytest.approx((lte.base_mw + lte.uplink_mw_per_mbps) / 1e3)
    assert "Huang" in lte.sources["uplink_mw_per_mbps"] and "Huang" in lte.sources["tail_ms"]


def test_unknown_field_is_named():
    with open(profile_dir() / "wifi.yaml") as fh:
        data = yaml.safe_load(fh)
    data["rtt_msec"] = {"value": 1, "source": "x"}
    with pytest.raises(NetworkError, match="rtt_msec.*allowed"):
        link_from_dict(data)


def test_min_usable_signal_is_read_or_derived():
    from bench.world.network import link_from_dict, load_link
    import yaml
    from bench.paths import DATA_DIR

    assert load_link("wifi").min_usable_dbm == -82.0  # sourced in wifi.yaml
    data = yaml.safe_load((profile_dir() / "lte.yaml").read_text())
    data.pop("min_usable_dbm", None)
    lte = link_from_dict(data)
    alive = lte.signal_dbm[lte.uplink_mbps > 0]
    assert lte.min_usable_dbm == alive.min() and "derived" in lte.sources["min_usable_dbm"]


# --------------------------------------------------------------------------- radio profiles

def test_radio_profiles_ship_the_same_radios():
    assert {"era2018", "huang2012"} <= set(list_radio_profiles())
    assert list_links(profile="era2018") == list_links(profile="huang2012") == ["lte", "wifi"]
    assert list_links() == list_links(profile="era2018")  # the default profile


def test_profiles_differ_only_where_a_newer_source_exists():
    old, new = load_link("lte", profile="huang2012"), load_link("lte", profile="era2018")
    # the era-matched uplink slope comes from the Galaxy S20U measurement, and is lower than the 2012 phone's
    assert "Narayanan" in new.sources["uplink_mw_per_mbps"] and new.uplink_mw_per_mbps < old.uplink_mw_per_mbps
    # whatever was kept from 2012 says so
    for key in ("base_mw", "tail_mw", "promotion_ms"):
        assert getattr(new, key) == getattr(old, key) and new.sources[key].startswith("assumed:")
    assert "RRC-Probe" in new.sources["tail_ms"]  # the era-matched inactivity timer
    for key, src in load_link("wifi", profile="era2018").sources.items():
        if "Huang" in src:
            assert src.startswith("assumed:"), key


def test_energy_per_mb_is_lower_on_the_newer_lte_phone():
    old, new = load_link("lte", profile="huang2012"), load_link("lte", profile="era2018")
    for mbps in (1.0, 5.0, 20.0):  # energy per MB at a fixed uplink rate, strong signal (no weak-signal extra)
        e = [float(link.uplink_power_w(mbps, -70.0)) * 8.0 / mbps for link in (old, new)]
        assert e[1] < e[0]


@pytest.mark.parametrize("bad", ["era1999", "", "../network", 3])
def test_unknown_radio_profile_is_one_line(bad):
    with pytest.raises(NetworkError, match="unknown radio profile.*allowed") as exc:
        load_link("wifi", profile=bad)
    assert "\n" not in str(exc.value)


def test_energy_per_mb_follows_the_power_model():
    from bench.world.network import energy_per_mb_j

    old = load_link("lte", profile="huang2012")
    # Huang et al. Table 4: (beta + alpha_u * 1 Mbit/s) for 8 s per MB
    assert energy_per_mb_j(old, 1.0) == pytest.approx((old.base_mw + old.uplink_mw_per_mbps) * 8 / 1e3)
    # above the measured range the power is held, so energy per MB keeps falling with the rate
    new = load_link("lte")
    e = [energy_per_mb_j(new, r) for r in (1.0, 5.0, 20.0, 40.0)]
    assert all(a > b for a, b in zip(e, e[1:]))


def test_docs_energy_table_is_what_the_script_computes():
    """docs/radio-and-traces.md quotes scripts/radio_energy_table.py; a changed constant must update it."""
    import re

    from bench.paths import REPO_ROOT

    from script_modules import load_script

    mod = load_script("radio_energy_table")
    computed = {(r["profile"], r["radio"], r["uplink_mbps"]): r["energy_j_per_mb"] for r in mod.table([1.0, 5.0, 20.0])}
    doc = (REPO_ROOT / "docs" / "radio-and-traces.md").read_text()
    rows = re.findall(r"^\| (\w+) \| (lte|wifi) \| ([\d.]+) J .*?\| ([\d.]+) J .*?\| ([\d.]+) J .*?\|$", doc, re.M)
    assert len(rows) == 4
    for prof, radio, *vals in rows:
        for rate, v in zip((1.0, 5.0, 20.0), vals):
            assert float(v) == pytest.approx(computed[(prof, radio, rate)], abs=0.006)


def test_the_stage_radio_profile_reaches_every_unnamed_load(monkeypatch):
    """params.yaml's world.radio_profile travels to simulators built anywhere in the stage (env variable)."""
    from bench.config import apply_world, params_from_dict
    from bench.paths import PARAMS_FILE
    from bench.validate import read_yaml
    from bench.world.network import RADIO_PROFILE_ENV, load_link
    from bench.config import ParamsError

    monkeypatch.delenv(RADIO_PROFILE_ENV, raising=False)
    era = load_link("lte")
    data = read_yaml(PARAMS_FILE, ParamsError, "params.yaml")
    data["world"] = {**data.get("world", {}), "radio_profile": "huang2012"}
    apply_world(params_from_dict(data, base_dir=PARAMS_FILE.parent))
    old = load_link("lte")
    assert old.uplink_mw_per_mbps == load_link("lte", profile="huang2012").uplink_mw_per_mbps
    assert old.uplink_mw_per_mbps != era.uplink_mw_per_mbps
